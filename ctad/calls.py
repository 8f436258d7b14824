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

The direct CTA-to-CTA channel (seed: "CTA to CTA messages" in the CTA-to-CTA ESP SA pair). With
the key comes `Kerbtel-Esp-Peer`, the other CTA's ESP endpoint as its SC saw it. Both CTAs then
hold an end-to-end dialog of their own (Call-ID = the call reference, tags from role and SPI,
`common.callkey.e2e_tags`) with one transaction layer per call, whose datagrams the adapter
carries in the call's SA pair (`direct_datagrams_to_send()` -> `DirectDatagram(spi=outbound)`,
`receive_direct(inbound_spi, data, now)`). In-dialog requests go that way:
- BYE: the CTA hanging up sends BYE directly to the other CTA *and* on its SC leg (the SC must
  see the end: lawful intercept, the B2BUA's other leg). The CTA that gets the direct BYE ends the
  call at once and waits for its SC's BYE (answered 200); if none comes within 64*T1 it sends
  its own BYE on the SC leg. A direct BYE for a call that already ended is answered 200.
- INFO (`send_info`; received ones become `InfoReceived`), answered 200.
- re-INVITE (`refresh`): a session refresh with the same SDP, answered 200 with ours and ACKed
  directly; a re-INVITE that changes the media is refused 488 (media changes are not relayed).
The initial INVITE's ACK stays on the SC leg: it carries the caller's key acknowledgement. After a
call ends its channel lingers 64*T1 for retransmissions, then `DirectChannelClosed` tells the
adapter to drop the SA pair.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Union

from common.callkey import (
    ACK_HEADER,
    KEY_HEADER,
    PEER_HEADER,
    CallKey,
    CallKeyError,
    e2e_tags,
    make_ack,
    parse_peer,
)
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
    Timeout,
    TimerConfig,
    TransactionKey,
    TransactionLayer,
    TransportError,
)
from common.sip.ua import build_cancel, build_request
from common.srtp import MediaKeys
from ctad.signaling import CtaUserAgent

__all__ = ["CallAgent", "CallEnded", "CallEstablished", "CallKeysReady", "CallRinging", "DirectChannelClosed",
           "DirectDatagram", "IncomingCall", "InfoReceived"]

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
    peer_esp: Address | None = None  # the other CTA's ESP endpoint (Kerbtel-Esp-Peer); None: no direct channel


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


@dataclass(frozen=True)
class InfoReceived:
    """An INFO from the other CTA on the direct channel (answered 200 already)."""

    call_id: str
    content_type: str | None
    body: bytes


@dataclass(frozen=True)
class DirectChannelClosed:
    """The call's direct channel is gone: drop its SA pair."""

    call_id: str
    spi_out: int
    spi_in: int


@dataclass(frozen=True)
class DirectDatagram:
    """SIP for the other CTA: protect with the outbound SA `spi`, send to `peer`."""

    call_id: str
    spi: int
    peer: Address
    data: bytes


Event = Union[IncomingCall, CallKeysReady, CallRinging, CallEstablished, CallEnded, InfoReceived,
              DirectChannelClosed]


def _peer_of(message) -> Address | None:
    value = message.headers.get(PEER_HEADER)
    if value is None:
        return None
    try:
        return parse_peer(value)
    except CallKeyError:
        return None  # no direct channel; in-dialog requests that need it are refused


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
    local_sdp: bytes = b""
    # the direct CTA-to-CTA channel (module docstring)
    peer_esp: Address | None = None
    e2e: Dialog | None = None
    direct: TransactionLayer | None = None
    spi_out: int = 0
    spi_in: int = 0
    direct_methods: dict = field(default_factory=dict)  # TransactionKey -> method of our direct requests
    sc_bye_due: float | None = None  # ended by a direct BYE: our SC's BYE is expected by then
    linger_until: float | None = None  # ended: the direct channel stays until then


class CallAgent:
    """The CTA's calls over its `CtaUserAgent` (module docstring)."""

    def __init__(self, ua: CtaUserAgent) -> None:
        self.ua = ua
        self.ids = ua.ids
        self.calls: dict[str, _Call] = {}
        self._by_tx: dict[TransactionKey, _Call] = {}
        self._events: deque[Event] = deque()
        self._direct_by_spi: dict[int, _Call] = {}  # inbound direct SPI -> call (live or lingering)
        self._closing: dict[str, _Call] = {}  # ended calls whose SC leg or direct channel lingers
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
        for call in self._direct_by_spi.values():
            deadlines += [t for t in (call.direct.get_timer(), call.linger_until, call.sc_bye_due) if t is not None]
        return min(deadlines) if deadlines else None

    def direct_datagrams_to_send(self) -> list[DirectDatagram]:
        out = []
        for call in self._direct_by_spi.values():
            for data, _address in call.direct.datagrams_to_send():
                out.append(DirectDatagram(call.call_id, call.spi_out, call.peer_esp, data))
        return out

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
        call = _Call(call_id, "A", line, invite, tag, local_sdp=sdp)
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
        call.local_sdp = sdp
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
        self._end(call, "rejected", status, now=now)

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
            self._end(call, "hung up", None, keep=True, now=now)
            return
        self._direct_request(call, "BYE", now)
        self._bye(call, now)
        self._end(call, "hung up", None, now=now)

    def send_info(self, call_id: str, body: bytes, content_type: str | None, now: float) -> bool:
        """INFO to the other CTA on the direct channel; False when the call has none."""
        call = self.calls.get(call_id)
        if call is None or call.state != "established":
            return False
        return self._direct_request(call, "INFO", now, body=body, content_type=content_type)

    def refresh(self, call_id: str, now: float) -> bool:
        """A direct re-INVITE with our unchanged SDP (a session refresh that also proves the direct
        path); False when the call has no direct channel."""
        call = self.calls.get(call_id)
        if call is None or call.state != "established":
            return False
        return self._direct_request(call, "INVITE", now, body=call.local_sdp,
                                    content_type="application/sdp" if call.local_sdp else None)

    def receive_direct(self, spi: int, data: bytes, now: float) -> bool:
        """Decrypted SIP from the call SA with inbound SPI `spi`; False when no call has it."""
        call = self._direct_by_spi.get(spi)
        if call is None:
            return False
        call.direct.receive_datagram(data, call.peer_esp, now)
        self._drain_direct(call, now)
        return True

    # -- inputs from the UA ---------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        self.ua.handle_timer(now)
        for call in list(self._direct_by_spi.values()):
            call.direct.handle_timer(now)
            self._drain_direct(call, now)
            if call.sc_bye_due is not None and call.sc_bye_due <= now:
                call.sc_bye_due = None
                self._bye(call, now)  # the SC never closed our leg: close it ourselves
            if call.linger_until is not None and call.linger_until <= now:
                self._close_direct(call)
        for call in list(self.calls.values()):
            if call.ok_deadline is not None and call.ok_deadline <= now:
                call.ok_due = call.ok_deadline = None
                self._bye(call, now)
                self._end(call, "no ACK from the SC", None, now=now)
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
                    self._end(call, "cancelled by the caller", 487, now=now)
                return
            call = self.calls.get(request.call_id)
            closing = self._closing.get(request.call_id)
            if call is None and closing is not None and closing.dialog is not None and request.method == "BYE":
                # the SC closing our leg of a call the other CTA ended directly
                closing.sc_bye_due = None
                try:
                    closing.dialog.receive_request(request)
                except LocalProtocolError:
                    pass  # BYEs crossed
                self.ua.layer.send_response(make_response(request, 200, to_tag=closing.local_tag), now)
                return
            if call is None or call.dialog is None:
                raise SipParseError("no such dialog", status=481)
            call.dialog.receive_request(request)
            if request.method == "BYE":
                self.ua.layer.send_response(make_response(request, 200, to_tag=call.local_tag), now)
                self._end(call, "hung up by the other party", None, now=now)
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
                self._end(call, f"{status} {response.reason}", status, now=now)
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
                call.peer_esp = _peer_of(response)
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
                self._end(call, "no answer from the SC", 408, now=now)
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
                     remote_sdp=request.body, peer_esp=_peer_of(request))
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
        if call.peer_esp is not None:
            self._open_direct(call, key)
        self._events.append(CallKeysReady(
            call.call_id, key.ref, call.role, key.spi, key.profile, tx, rx, key.suite, out, inb,
            _media_address(call.remote_sdp), call.peer_esp if call.direct is not None else None))

    # -- the direct channel ---------------------------------------------------------------

    def _open_direct(self, call: _Call, key: CallKey) -> None:
        a_to_b, b_to_a = key.spi, key.spi + 1
        call.spi_out, call.spi_in = (a_to_b, b_to_a) if call.role == "A" else (b_to_a, a_to_b)
        if call.spi_in in self._direct_by_spi:
            call.peer_esp = None  # two calls cannot share an SPI; this one keeps the SC path
            return
        tags = e2e_tags(key)
        other = "B" if call.role == "A" else "A"
        invite = call.invite
        mine, theirs = (invite.from_, invite.to) if call.role == "A" else (invite.to, invite.from_)
        host, port = call.peer_esp
        user = theirs.uri.user if isinstance(theirs.uri, SipUri) else None
        call.e2e = Dialog(
            call_id=key.ref, local_tag=tags[call.role], remote_tag=tags[other],
            local_uri=NameAddr(mine.uri), remote_uri=NameAddr(theirs.uri),
            remote_target=SipUri(host=host, port=port, user=user), state=DialogState.CONFIRMED)
        call.direct = TransactionLayer(TimerConfig(t1=self.ua.t1, t2=max(4.0, self.ua.t1)))
        self._direct_by_spi[call.spi_in] = call

    def _direct_request(self, call: _Call, method: str, now: float, *, body: bytes = b"",
                        content_type: str | None = None) -> bool:
        dialog, layer = call.e2e, call.direct
        if dialog is None or layer is None or dialog.state is DialogState.TERMINATED:
            return False
        headers = [("Contact", str(self._contact(call.line)))] if method == "INVITE" else []
        request = dialog.create_request(method, local=self._local, branch=self.ids.branch(), headers=headers,
                                        body=body, content_type=content_type)
        if method == "BYE":
            dialog.state = DialogState.TERMINATED
        key = layer.send_request(request, call.peer_esp, now)
        if key is not None:
            call.direct_methods[key] = method
        return True

    def _drain_direct(self, call: _Call, now: float) -> None:
        layer = call.direct
        while (event := layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self._direct_in(call, event, now)
            elif isinstance(event, AckReceived):
                pass  # the ACK of our 2xx to a refresh: nothing to do (Timer-less, 2xx sent once more is harmless)
            elif isinstance(event, ResponseReceived):
                method = call.direct_methods.get(event.key)
                response = event.response
                if method == "INVITE" and 200 <= response.status < 300 and call.e2e is not None:
                    ack = call.e2e.create_ack(response.cseq.seq, local=self._local, branch=self.ids.branch())
                    layer.send_request(ack, call.peer_esp, now)
                if response.status >= 200:
                    call.direct_methods.pop(event.key, None)
            elif isinstance(event, (Timeout, TransportError)):
                call.direct_methods.pop(event.key, None)

    def _direct_in(self, call: _Call, event: RequestReceived, now: float) -> None:
        request = event.request
        dialog = call.e2e
        status, reason = 200, None
        if dialog is None or request.call_id != dialog.call_id or request.from_.tag != dialog.remote_tag \
                or request.to.tag != dialog.local_tag:
            status, reason = 481, "Call/Transaction Does Not Exist"
        elif request.method == "BYE":
            if dialog.state is not DialogState.TERMINATED:
                dialog.state = DialogState.TERMINATED
            if call.state != "ended":
                self._end_by_direct_bye(call, now)
        elif call.state == "ended":
            status, reason = 481, "Call/Transaction Does Not Exist"
        else:
            try:
                dialog.receive_request(request)
            except SipParseError as exc:
                status, reason = exc.status or 500, exc.reason
            else:
                if request.method == "INFO":
                    self._events.append(InfoReceived(call.call_id, request.content_type, request.body))
                elif request.method == "INVITE":
                    if request.body and _media_address(request.body) != _media_address(call.remote_sdp):
                        status, reason = 488, "Not Acceptable Here (media changes are not relayed)"
                else:
                    status, reason = 405, "Method Not Allowed"
        headers = [("Contact", str(self._contact(call.line)))] if request.method == "INVITE" and status == 200 else []
        if status == 405:
            headers.append(("Allow", "ACK, BYE, INFO, INVITE"))
        body = call.local_sdp if request.method == "INVITE" and status == 200 else b""
        response = make_response(request, status, reason, to_tag=call.e2e.local_tag if call.e2e else None,
                                 headers=headers, body=body, content_type="application/sdp" if body else None)
        try:
            call.direct.send_response(response, now)
        except LocalProtocolError:
            pass

    def _end_by_direct_bye(self, call: _Call, now: float) -> None:
        """The other CTA hung up directly: end now, expect our SC to close our leg."""
        call.sc_bye_due = now + 64 * self.ua.t1 if call.final is not None and 200 <= call.final < 300 else None
        if call.role == "B" and call.state in ("answered",):
            call.ok_due = call.ok_deadline = None
        self._end(call, "hung up by the other party", None, now=now)

    def _close_direct(self, call: _Call) -> None:
        self._direct_by_spi.pop(call.spi_in, None)
        self._closing.pop(call.call_id, None)
        call.linger_until = None
        call.direct = None
        self._events.append(DirectChannelClosed(call.call_id, call.spi_out, call.spi_in))

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
        self._end(call, reason, None, now=now)

    def _end(self, call: _Call, reason: str, status: int | None, *, keep: bool = False, now: float) -> None:
        if call.state != "ended":
            call.state = "ended"
            call.ok_due = call.ok_deadline = None
            self._events.append(CallEnded(call.call_id, reason, status))
            if call.direct is not None:
                call.linger_until = now + 64 * self.ua.t1
                self._closing[call.call_id] = call
        if not keep:
            self.calls.pop(call.call_id, None)
            if call.final is not None:
                self._forget(call)

    def _forget(self, call: _Call) -> None:
        if call.tx is not None:
            self._by_tx.pop(call.tx, None)
        if call.state == "ended":
            self.calls.pop(call.call_id, None)
