"""SIP dialogs (RFC 3261 section 12): the state a UA keeps between INVITE and BYE.

`Dialog` holds Call-ID, local/remote tag, local/remote CSeq, remote target and route set; it is
made from the INVITE and a response with a To tag (UAC, 12.1.2) or from the INVITE and our tag
(UAS, 12.1.1), builds in-dialog requests (12.2.1.1: BYE, re-INVITE, INFO; the ACK for a 2xx,
13.2.2.4, with the INVITE's CSeq number) and checks in-dialog requests (12.2.2: a lower CSeq is
refused with 500). Its life cycle is a transition table like the transactions'.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable

from common.sip.message import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    Uri,
    Via,
)
from common.sip.transaction import LocalProtocolError, Refuse, Transition

__all__ = ["Dialog", "DialogEvent", "DialogState", "DIALOG_TABLE"]

Address = tuple[str, int]


class DialogState(enum.Enum):
    EARLY = "Early"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class DialogEvent(enum.Enum):
    PROVISIONAL = "1xx with To tag"
    SUCCESS = "2xx"
    FAILURE = "300-699 to the INVITE"
    REFRESH_FAILED = "481 or 408 to an in-dialog request"
    BYE = "BYE sent or received"


_D, _E = DialogState, DialogEvent
DIALOG_TABLE: dict[tuple[DialogState, DialogEvent], Transition | Refuse] = {
    (_D.EARLY, _E.PROVISIONAL): Transition(_D.EARLY),       # type: ignore[arg-type]
    (_D.EARLY, _E.SUCCESS): Transition(_D.CONFIRMED),       # type: ignore[arg-type]
    (_D.EARLY, _E.FAILURE): Transition(_D.TERMINATED),      # type: ignore[arg-type]
    (_D.EARLY, _E.REFRESH_FAILED): Transition(_D.TERMINATED),  # type: ignore[arg-type]
    (_D.EARLY, _E.BYE): Transition(_D.TERMINATED),          # type: ignore[arg-type]
    (_D.CONFIRMED, _E.PROVISIONAL): Transition(_D.CONFIRMED),  # type: ignore[arg-type]
    (_D.CONFIRMED, _E.SUCCESS): Transition(_D.CONFIRMED),   # type: ignore[arg-type]
    (_D.CONFIRMED, _E.FAILURE): Transition(_D.CONFIRMED),   # a failed re-INVITE keeps the dialog
    (_D.CONFIRMED, _E.REFRESH_FAILED): Transition(_D.TERMINATED),  # type: ignore[arg-type]
    (_D.CONFIRMED, _E.BYE): Transition(_D.TERMINATED),      # type: ignore[arg-type]
    **{(_D.TERMINATED, e): Refuse("the dialog has terminated") for e in DialogEvent},
}


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: Uri
    local_seq: int | None = None
    remote_seq: int | None = None
    route_set: list[NameAddr] = field(default_factory=list)
    state: DialogState = DialogState.EARLY

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- creation ------------------------------------------------------------------------

    @classmethod
    def from_uac(cls, invite: SipRequest, response: SipResponse) -> Dialog:
        """UAC side: our INVITE and a 1xx/2xx carrying a To tag and a Contact (12.1.2)."""
        to = response.to
        if to.tag is None:
            raise SipParseError("To: a dialog-creating response needs a tag", header="To")
        contacts = response.contacts
        if len(contacts) != 1:
            raise SipParseError("Contact: a dialog-creating response needs exactly one", header="Contact")
        from_ = invite.from_
        return cls(
            call_id=invite.call_id, local_tag=from_.tag or "", remote_tag=to.tag,
            local_uri=NameAddr(from_.uri, from_.display_name), remote_uri=NameAddr(to.uri, to.display_name),
            remote_target=contacts[0].uri, local_seq=invite.cseq.seq, remote_seq=None,
            route_set=list(reversed(response.record_routes)),
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY)

    @classmethod
    def from_uas(cls, invite: SipRequest, local_tag: str, *, confirmed: bool = False) -> Dialog:
        """UAS side: the INVITE we answer with `local_tag` in To (12.1.1)."""
        contacts = invite.contacts
        if len(contacts) != 1:
            raise SipParseError("Contact: a dialog-creating request needs exactly one", header="Contact")
        from_, to = invite.from_, invite.to
        if from_.tag is None:
            raise SipParseError("From: a dialog-creating request needs a tag", header="From")
        return cls(
            call_id=invite.call_id, local_tag=local_tag, remote_tag=from_.tag,
            local_uri=NameAddr(to.uri, to.display_name), remote_uri=NameAddr(from_.uri, from_.display_name),
            remote_target=contacts[0].uri, local_seq=None, remote_seq=invite.cseq.seq,
            route_set=list(invite.record_routes),
            state=DialogState.CONFIRMED if confirmed else DialogState.EARLY)

    # -- life cycle ----------------------------------------------------------------------

    def handle(self, event: DialogEvent) -> DialogState:
        entry = DIALOG_TABLE[(self.state, event)]
        if isinstance(entry, Refuse):
            raise LocalProtocolError(f"dialog {self.call_id} in {self.state.value}: {event.value}: {entry.reason}")
        self.state = entry.target  # type: ignore[assignment]
        return self.state

    def update_from_response(self, response: SipResponse) -> DialogState:
        """A response within the dialog (to the INVITE or a later request)."""
        if 200 <= response.status < 300 and response.cseq.method == "INVITE":
            contacts = response.contacts
            if contacts:
                self.remote_target = contacts[0].uri  # target refresh (12.2.1.2)
        if response.status in (408, 481) and response.cseq.method != "INVITE" or (
                response.status in (408, 481) and self.state is DialogState.CONFIRMED):
            return self.handle(DialogEvent.REFRESH_FAILED)
        if response.status < 200:
            return self.handle(DialogEvent.PROVISIONAL)
        if response.status < 300:
            return self.handle(DialogEvent.SUCCESS)
        return self.handle(DialogEvent.FAILURE) if response.cseq.method == "INVITE" else self.state

    def receive_request(self, request: SipRequest) -> None:
        """Check and record an in-dialog request (12.2.2): raises SipParseError(500) for a CSeq
        below the last one; re-INVITE refreshes the remote target; BYE ends the dialog."""
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and seq <= self.remote_seq and request.method != "ACK":
                raise SipParseError(f"CSeq {seq} is not above {self.remote_seq}", status=500, header="CSeq")
            self.remote_seq = seq
        if request.method == "INVITE" and request.contacts:
            self.remote_target = request.contacts[0].uri
        if request.method == "BYE":
            self.handle(DialogEvent.BYE)

    # -- in-dialog requests --------------------------------------------------------------

    def _request(self, method: str, seq: int, *, local: Address, branch: str, transport: str,
                 headers: Iterable[tuple[str, str]], body: bytes, content_type: str | None) -> SipRequest:
        h = Headers()
        h.add("Via", str(Via(transport.upper(), local[0], local[1], {"branch": branch, "rport": None})))
        h.add("Max-Forwards", "70")
        routes = [str(r) for r in self.route_set]
        uri = self.remote_target
        if self.route_set and not getattr(self.route_set[0].uri, "lr", False):
            # Strict routing (12.2.1.1): first route becomes the Request-URI, target goes last.
            uri = self.route_set[0].uri
            routes = routes[1:] + [f"<{self.remote_target}>"]
        for route in routes:
            h.add("Route", route)
        h.add("To", str(self.remote_uri.with_tag(self.remote_tag)))
        h.add("From", str(self.local_uri.with_tag(self.local_tag)))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{seq} {method}")
        for name, value in headers:
            h.add(name, value)
        if body:
            h.add("Content-Type", content_type or "application/sdp")
        return SipRequest(method, uri, h, body)

    def create_request(self, method: str, *, local: Address, branch: str, transport: str = "UDP",
                       headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                       content_type: str | None = None, first_seq: int = 1) -> SipRequest:
        """BYE, re-INVITE, INFO...: CSeq one above the last local one."""
        if method in ("ACK", "CANCEL"):
            raise LocalProtocolError(f"{method} is not built with create_request")
        if self.state is DialogState.TERMINATED:
            raise LocalProtocolError(f"dialog {self.call_id} has terminated")
        self.local_seq = first_seq if self.local_seq is None else self.local_seq + 1
        return self._request(method, self.local_seq, local=local, branch=branch, transport=transport,
                             headers=headers, body=body, content_type=content_type)

    def create_ack(self, invite_seq: int, *, local: Address, branch: str, transport: str = "UDP",
                   body: bytes = b"", content_type: str | None = None) -> SipRequest:
        """The ACK for a 2xx to the INVITE with CSeq `invite_seq` (13.2.2.4), a new branch."""
        return self._request("ACK", invite_seq, local=local, branch=branch, transport=transport,
                             headers=(), body=body, content_type=content_type)
