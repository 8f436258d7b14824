"""The CTA's calls towards its SC (seed FIG. 4 from the CTA's side), sans I/O.

    agent = CallAgent(ua)                        # ua: ctad.signaling.CtaUserAgent (attached)
    call_id = agent.place_call("+15551230002", sdp, now, line="+15551230001")
    agent.answer(call_id, sdp, now); agent.reject(call_id, now); agent.hangup(call_id, now)
    ua.datagrams_to_send()                       # everything goes out on the SC channel
    agent.next_event()                           # IncomingCall / CallKeysReady / CallRinging /
                                                 # CallEstablished / CallEnded
    agent.get_timer(), agent.handle_timer(now)   # also drive the UA's timers

Every call is one SIP dialog with the SC (the SC is a B2BUA). The SC delivers the call's
sub-key in a `Kerbtel-Call-Key` header: to the callee (role "B") in the INVITE, to the caller
(role "A") in the 18x/2xx that follow the callee's verified acknowledgement. The agent checks the
key's form, derives the CTA-to-CTA ESP SA pair and the media keys (`CallKeysReady`), and
acknowledges with `Kerbtel-Call-Key-Ack`: B in every 18x/2xx it sends (a 180 goes out at once),
A in its ACK. An INVITE without a key is refused 488, a malformed one 400; a 2xx without a key
is ACKed and hung up at once ("no call key"). SDP is passed through as bytes (the media relay
rewrites it); the remote media address is read from the peer's SDP.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Union

from common.callkey import ACK_HEADER, KEY_HEADER, CallKey, CallKeyError, make_ack
from common.esp import DirectionKeys, Suite
from common.sip.dialog import Dialog, DialogEvent, DialogState
from common.sip.message import (
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    check_request,
    make_response,
    response_for_error,
)
from common.sip.sdp import SdpParseError, SessionDescription
from common.sip.transaction import (
    AckReceived,
    LocalProtocolError,
    RequestReceived,
    ResponseReceived,
    TransactionKey,
)
from common.sip.ua import build_cancel, build_request
from common.srtp import MediaKeys
from ctad.signaling import CtaUserAgent

__all__ = ["CallAgent", "CallEnded", "CallEstablished", "CallKeysReady", "CallRinging", "IncomingCall"]

Address = tuple[str, int]


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingCall:
    call_id: str
    line: str  # the called number
    caller: str  # the calling number as the SC states it ("anonymous" for unprovisioned CTAs)
    sdp: bytes


@dataclass(frozen=True)
class CallKeysReady:
    """The call's keys, derived from the SC's sub-key (no key bytes in the repr)."""

    call_id: str
    call_ref: str  # the call reference every SC and both CTAs share
    role: str  # "A" caller, "B" callee
    spi: int  # A -> B SPI (B -> A is spi + 1)
    media_profile: str
    media_tx: MediaKeys
    media_rx: MediaKeys
    esp_suite: Suite
    esp_out: DirectionKeys  # the CTA-to-CTA SA this CTA sends with
    esp_in: DirectionKeys
    remote_media: Address | None  # from the peer's SDP, when already known


@dataclass(frozen=True)
class CallRinging:
    call_id: str


@dataclass(frozen=True)
class CallEstablished:
    call_id: str
    remote_sdp: bytes
    remote_media: Address | None


@dataclass(frozen=True)
class CallEnded:
    call_id: str
    reason: str
    status: int | None = None  # the SIP status that ended it, when one did


Event = Union[IncomingCall, CallKeysReady, CallRinging, CallEstablished, CallEnded]


def _media_address(body: bytes) -> Address | None:
    if not body:
        return None
    try:
        sd = SessionDescription.parse(body)
    except SdpParseError:
        return None
    audio = sd.audio()
    return None if audio is None else sd.media_address(audio)


@dataclass
class _Call:
    call_id: str
    role: str  # "A" | "B"
    line: str | None
    invite: SipRequest
    local_tag: str
    tx: TransactionKey | None = None
    dialog: Dialog | None = None
    key: CallKey | None = None
    state: str = "calling"  # calling | incoming | answered | established | ended
    provisional: bool = False
    cancel_pending: bool = False
    final: int | None = None
    ack: SipRequest | None = None
    ok: SipResponse | None = None
    ok_due: float | None = None
    ok_interval: float = 0.0
    ok_deadline: float | None = None
    remote_sdp: bytes = b""


class CallAgent:
    """The CTA's calls over its `CtaUserAgent` (module docstring)."""

    def __init__(self, ua: CtaUserAgent) -> None:
        self.ua = ua
        self.ids = ua.ids
        self.calls: dict[str, _Call] = {}
        self._by_tx: dict[TransactionKey, _Call] = {}
        self._events: deque[Event] = deque()
        ua.call_handler = self

    # -- outputs --------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[bytes]:
        return self.ua.datagrams_to_send()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.ua.get_timer(),) if t is not None]
        for call in self.calls.values():
            deadlines += [t for t in (call.ok_due, call.ok_deadline) if t is not None]
        return min(deadlines) if deadlines else None

    # -- API ------------------------------------------------------------------------------

    @property
    def _local(self) -> Address:
        return (self.ua.local_host, self.ua.local_port)

    def _contact(self, line: str | None) -> NameAddr:
        return NameAddr(SipUri(host=self.ua.local_host, port=self.ua.local_port, user=line))

    def place_call(self, dialed: str, sdp: bytes, now: float, *, line: str | None = None) -> str:
        """INVITE `dialed` from `line` (None: an unprovisioned CTA without lines) with the
        softphone's SDP offer. Returns the call's SIP Call-ID."""
        domain = self.ua.domain
        tag = self.ids.tag()
        call_id = self.ids.call_id(self.ua.local_host)
        invite = build_request(
            "INVITE", SipUri(host=domain, user=dialed),
            from_=NameAddr(SipUri(host=domain, user=line or "anonymous")).with_tag(tag),
            to=NameAddr(SipUri(host=domain, user=dialed)), call_id=call_id, cseq=self.ids.cseq(),
            local=self._local, branch=self.ids.branch(), contact=self._contact(line), body=sdp,
            content_type="application/sdp" if sdp else None)
        call = _Call(call_id, "A", line, invite, tag)
        call.tx = self.ua.layer.send_request(invite, self.ua.peer, now)
        self.calls[call_id] = call
        self._by_tx[call.tx] = call
        return call_id

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        call = self.calls[call_id]
        if call.role != "B" or call.state != "incoming":
            raise LocalProtocolError(f"call {call_id} is not an incoming call waiting for an answer")
        call.state = "answered"
        call.final = 200
        call.ok = self._respond(call, call.invite, 200, body=sdp, now=now)
        call.ok_interval = self.ua.t1
        call.ok_due = now + self.ua.t1
        call.ok_deadline = now + 64 * self.ua.t1
        if call.dialog is not None:
            call.dialog.handle(DialogEvent.SUCCESS)

    def reject(self, call_id: str, now: float, status: int = 486) -> None:
        call = self.calls[call_id]
        if call.role != "B" or call.state != "incoming":
            raise LocalProtocolError(f"call {call_id} is not an incoming call waiting for an answer")
        call.final = status
        self._respond(call, call.invite, status, now=now)
        self._end(call, "rejected", status)

    def hangup(self, call_id: str, now: float) -> None:
        """BYE an established call, CANCEL an outgoing one, refuse (603) an incoming one."""
        call = self.calls.get(call_id)
        if call is None:
            return
        if call.role == "B" and call.state == "incoming":
            self.reject(call_id, now, 603)
            return
        if call.role == "A" and call.final is None:
            if call.provisional:
                self.ua.layer.send_request(build_cancel(call.invite), self.ua.peer, now)
            else:
                call.cancel_pending = True
            self._end(call, "hung up", None, keep=True)
            return
        self._bye(call, now)
        self._end(call, "hung up", None)

    # -- inputs from the UA ---------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        self.ua.handle_timer(now)
        for call in list(self.calls.values()):
            if call.ok_deadline is not None and call.ok_deadline <= now:
                call.ok_due = call.ok_deadline = None
                self._bye(call, now)
                self._end(call, "no ACK from the SC", None)
            elif call.ok_due is not None and call.ok_due <= now and call.ok is not None:
                call.ok_interval = min(2 * call.ok_interval, 4.0)
                call.ok_due = now + call.ok_interval
                try:
                    self.ua.layer.send_response(call.ok, now)
                except LocalProtocolError:
                    call.ok_due = None

    def on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        try:
            check_request(request)
            if request.method == "INVITE" and request.to.tag is None:
                self._incoming(event, now)
                return
            if request.method == "CANCEL":
                call = next((c for c in self.calls.values() if c.tx == event.cancels and c.tx is not None), None)
                if call is None:
                    raise SipParseError("no such transaction", status=481)
                self.ua.layer.send_response(make_response(request, 200, to_tag=call.local_tag), now)
                if call.final is None:
                    call.final = 487
                    self._respond(call, call.invite, 487, now=now)
                    self._end(call, "cancelled by the caller", 487)
                return
            call = self.calls.get(request.call_id)
            if call is None or call.dialog is None:
                raise SipParseError("no such dialog", status=481)
            call.dialog.receive_request(request)
            if request.method == "BYE":
                self.ua.layer.send_response(make_response(request, 200, to_tag=call.local_tag), now)
                self._end(call, "hung up by the other party", None)
            else:
                raise SipParseError(f"{request.method} is not taken on the SC channel", status=501)
        except SipParseError as exc:
            response = response_for_error(request, exc)
            if exc.status in (481, 501) and response is not None:
                response.reason = {481: "Call/Transaction Does Not Exist", 501: "Not Implemented"}[exc.status]
            if response is not None:
                try:
                    self.ua.layer.send_response(response, now)
                except LocalProtocolError:
                    pass

    def on_ack(self, event: AckReceived, now: float) -> None:
        call = self.calls.get(event.request.call_id)
        if call is None or call.role != "B" or call.state != "answered":
            return
        call.ok_due = call.ok_deadline = None
        call.state = "established"
        self._events.append(CallEstablished(call.call_id, call.remote_sdp, _media_address(call.remote_sdp)))

    def on_response(self, event: ResponseReceived, now: float) -> None:
        call = self._by_tx.get(event.key)
        response = event.response
        status = response.status
        if call is None or status == 100:
            return
        if status >= 300:
            call.final = status
            if call.state != "ended":
                self._end(call, f"{status} {response.reason}", status)
            self._forget(call)
            return
        if response.to.tag is not None and len(response.contacts) == 1:
            if call.dialog is None:
                call.dialog = Dialog.from_uac(call.invite, response)
            else:
                call.dialog.update_from_response(response)
        if response.body:
            call.remote_sdp = response.body
        if status < 200:
            call.provisional = True
            if call.cancel_pending:
                call.cancel_pending = False
                self.ua.layer.send_request(build_cancel(call.invite), self.ua.peer, now)
                return
        elif call.final is None:
            call.final = status
        if call.state != "ended":
            value = response.headers.get(KEY_HEADER)
            if value is not None and call.key is None:
                try:
                    self._accept_key(call, CallKey.parse(value))
                except CallKeyError as exc:
                    if status >= 200:
                        self._ack(call, now)
                    self._fail(call, f"bad call key from the SC: {exc}", now)
                    return
        if status < 200:
            if call.state == "calling" and status in (180, 183):
                self._events.append(CallRinging(call.call_id))
            return
        self._ack(call, now)
        if call.state == "ended":
            self._bye(call, now)  # answered after we gave up
            self._forget(call)
            return
        if call.key is None:
            self._fail(call, "no call key from the SC", now)
            return
        call.state = "established"
        self._events.append(CallEstablished(call.call_id, call.remote_sdp, _media_address(call.remote_sdp)))

    def on_timeout(self, event, now: float) -> None:
        call = self._by_tx.get(event.key)
        if call is not None and call.final is None:
            call.final = 408
            if call.state != "ended":
                self._end(call, "no answer from the SC", 408)
            self._forget(call)

    # -- internals ------------------------------------------------------------------------

    def _incoming(self, event: RequestReceived, now: float) -> None:
        request = event.request
        value = request.headers.get(KEY_HEADER)
        if value is None:
            raise SipParseError(f"no {KEY_HEADER}", status=488)
        try:
            key = CallKey.parse(value)
        except CallKeyError as exc:
            raise SipParseError(f"{KEY_HEADER}: {exc}") from None
        line = request.to.uri.user if isinstance(request.to.uri, SipUri) else None
        call = _Call(request.call_id, "B", line, request, self.ids.tag(), tx=event.key, state="incoming",
                     remote_sdp=request.body)
        call.dialog = Dialog.from_uas(request, call.local_tag)
        self.calls[call.call_id] = call
        caller = request.from_.uri.user if isinstance(request.from_.uri, SipUri) else None
        self._events.append(IncomingCall(call.call_id, line or "", caller or "anonymous", request.body))
        self._accept_key(call, key)
        self._respond(call, request, 180, now=now)  # seed 454: the acknowledgement goes back at once

    def _accept_key(self, call: _Call, key: CallKey) -> None:
        call.key = key
        media = key.media_keys()
        esp = key.esp_keys()
        tx, rx = media.for_cta(call.role)  # type: ignore[arg-type]
        out, inb = esp.for_cta(call.role)  # type: ignore[arg-type]
        self._events.append(CallKeysReady(
            call.call_id, key.ref, call.role, key.spi, key.profile, tx, rx, key.suite, out, inb,
            _media_address(call.remote_sdp)))

    def _respond(self, call: _Call, request: SipRequest, status: int, *, body: bytes = b"",
                 now: float) -> SipResponse | None:
        headers: list[tuple[str, str]] = []
        if 100 < status < 300:
            headers.append(("Contact", str(self._contact(call.line))))
            if call.key is not None:
                headers.append((ACK_HEADER, make_ack(call.key, "B").header_value()))
        response = make_response(request, status, to_tag=call.local_tag, headers=headers, body=body,
                                 content_type="application/sdp" if body else None)
        try:
            self.ua.layer.send_response(response, now)
        except LocalProtocolError:
            return None
        return response

    def _ack(self, call: _Call, now: float) -> None:
        if call.ack is None:
            if call.dialog is None:
                return
            headers = [(ACK_HEADER, make_ack(call.key, "A").header_value())] if call.key is not None else []
            ack = call.dialog.create_ack(call.invite.cseq.seq, local=self._local, branch=self.ids.branch())
            for name, value in headers:
                ack.headers.add(name, value)
            call.ack = ack
        self.ua.layer.send_request(call.ack, self.ua.peer, now)

    def _bye(self, call: _Call, now: float) -> None:
        dialog = call.dialog
        if dialog is None or dialog.state is not DialogState.CONFIRMED:
            return
        bye = dialog.create_request("BYE", local=self._local, branch=self.ids.branch())
        dialog.handle(DialogEvent.BYE)
        self.ua.layer.send_request(bye, self.ua.peer, now)

    def _fail(self, call: _Call, reason: str, now: float) -> None:
        self._bye(call, now)
        self._end(call, reason, None)

    def _end(self, call: _Call, reason: str, status: int | None, *, keep: bool = False) -> None:
        if call.state != "ended":
            call.state = "ended"
            call.ok_due = call.ok_deadline = None
            self._events.append(CallEnded(call.call_id, reason, status))
        if not keep:
            self.calls.pop(call.call_id, None)
            if call.final is not None:
                self._forget(call)

    def _forget(self, call: _Call) -> None:
        if call.tx is not None:
            self._by_tx.pop(call.tx, None)
        if call.state == "ended":
            self.calls.pop(call.call_id, None)
