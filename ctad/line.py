"""The CTA's line side: what a local softphone (baresip, ctad.softphone) talks to, sans I/O.

    line = LineSide(LineConfig(numbers=("+15551230001",), host="127.0.0.1", port=5062))
    line.attach(agent, now)                      # ctad.calls.CallAgent on the SC channel
    line.receive_datagram(data, source, now)     # SIP from a softphone
    line.on_call_event(event, now)               # every CallAgent event (IncomingCall, ...)
    line.datagrams_to_send()                     # [(bytes, address)] towards softphones
    line.next_event()                            # StartMedia / StopMedia / PhoneRegistered / LineCallEnded
    line.media_started(call, media, now)         # the adapter's answer to StartMedia
    line.get_timer(), line.handle_timer(now)

Three roles in one engine, on one UDP address (`LineConfig.host`:`port`, 127.0.0.1 by default):

- Registrar (RFC 3261 10.3) for the CTA's numbers: the AOR is `sip:NUMBER@line`; a REGISTER for
  any other user is 404. Contact `expires` parameter, else the Expires header, else
  `default_expires`; 0 removes the binding, `Contact: *` with Expires 0 removes all; below
  `min_expires` is 423 with Min-Expires; above `max_expires` is granted as `max_expires`. The
  200 lists the bindings with their expiry. An incoming call rings the most recently registered
  live Contact, whose user may differ from the AOR (baresip registers `1000-0x...`), so the
  INVITE's Request-URI is that Contact as registered; without a binding it rings the configured
  `phone` address (`sip:NUMBER@phone`); without either the SC leg is refused 480.
- B2BUA between the softphone's dialog (the *line leg*) and the CTA's dialog with its SC (the
  *SC leg*, `ctad.calls.CallAgent`). A softphone's INVITE to `sip:NUMBER@line` (or `tel:NUMBER`),
  registered or not, becomes `CallAgent.place_call(NUMBER, sdp, now, line=...)`; the line is the
  From user when that is one of our numbers, else the number the phone registered from that
  Contact, else the first number (an unprovisioned CTA, with no numbers, calls anonymously).
  Mapped both ways: SC 180 -> 180 to the phone; SC 2xx (`CallEstablished`) -> 200 to the phone
  (retransmitted until the ACK, RFC 3261 13.3.1.4); phone 2xx -> `CallAgent.answer`; phone
  failure -> `CallAgent.reject` with the phone's status; BYE either way; the phone's CANCEL ->
  487 and `hangup`; the SC's CANCEL -> CANCEL to the phone (after its first provisional, as RFC
  3261 9.1 asks) or ACK + BYE when its 2xx crossed; an SC leg ending with a status before the
  answer -> that status to the phone (480 when there is none).
- Media: per call one media object (the adapter's `ctad.media.MediaSession`), asked for with
  `StartMedia` and handed back with `media_started` (binding sockets is I/O, so the engine waits
  for it; the call is held meanwhile). The phone's SDP goes to the SC leg through
  `line_to_network_sdp`, the remote CTA's through `network_to_line_sdp`; `CallKeysReady` keys
  the relay (`relay.set_direction_keys`, kept until the media exists); the call's end gives
  `StopMedia`.

Requests: Route headers are removed from every request from a phone before anything else (the
line side is the only hop; baresip's `outbound=` adds one pointing at us). Malformed datagrams get
the SIP library's 4xx from the transaction layer; requests it parsed but we cannot use get 4xx
here (no Contact or From tag 400, no SDP offer or an unusable one 488, a non-number
Request-URI 484, a request in no dialog 481, an unknown method 405, re-INVITE 488). Before the SC
channel is up (no agent attached) a call gets 503 with Retry-After. OPTIONS and INFO in a call
get 200; an INFO with a body goes on to the other CTA on the direct CTA-to-CTA channel
(`CallAgent.send_info`), and the other CTA's INFO (`InfoReceived`) is sent to our phone.

Counters (`stats()`): registrations, calls from and to the phones, established, completed,
failed, malformed, refused; `bindings` lists the live registrations.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, Union

from common.sip.dialog import Dialog, DialogEvent, DialogState
from common.sip.message import (
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    TelUri,
    check_request,
    make_response,
    response_for_error,
)
from common.sip.transaction import (
    AckReceived,
    LocalProtocolError,
    MalformedMessage,
    RequestReceived,
    ResponseReceived,
    Timeout,
    TimerConfig,
    TransactionKey,
    TransactionLayer,
    TransactionTerminated,
    TransportError,
)
from common.sip.ua import IdGenerator, build_cancel, build_request
from ctad.calls import CallAgent, CallEnded, CallEstablished, CallKeysReady, CallRinging, IncomingCall, InfoReceived

__all__ = [
    "LineCallEnded",
    "LineConfig",
    "LineMedia",
    "LineSide",
    "PhoneRegistered",
    "StartMedia",
    "StopMedia",
]

Address = tuple[str, int]
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REGISTER"
USER_AGENT = "kerbtel-ctad-line/0.1"
_VISUAL = re.compile(r"[-.() ]")
_DIALABLE = re.compile(r"^\+?[0-9*#]{1,32}$")


class LineMedia(Protocol):
    """What the engine needs of a call's media (`ctad.media.MediaSession` has it)."""

    relay: object  # has set_direction_keys(profile, tx, rx)

    def line_to_network_sdp(self, phone_sdp: bytes) -> bytes: ...

    def network_to_line_sdp(self, cta_sdp: bytes) -> bytes: ...


@dataclass(frozen=True)
class LineConfig:
    numbers: tuple[str, ...]
    host: str = "127.0.0.1"  # where the line side listens (Via, Contact)
    port: int = 5062
    phone: Address | None = None  # rung when no phone registered the number
    default_expires: int = 3600
    min_expires: int = 10
    max_expires: int = 86400
    ring_timeout: float = 120.0  # an unanswered phone is CANCELled and the SC leg refused 480
    timers: TimerConfig = field(default_factory=TimerConfig)


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartMedia:
    """Create the call's media (the adapter binds sockets) and call `media_started`."""

    call: str  # the line call's id
    role: str  # "A": the phone is calling, "B": the phone is called


@dataclass(frozen=True)
class StopMedia:
    call: str
    media: object


@dataclass(frozen=True)
class PhoneRegistered:
    number: str
    contact: str
    expires: int  # 0: removed


@dataclass(frozen=True)
class LineCallEnded:
    call: str
    sc_call_id: str | None
    reason: str
    established: bool


Event = Union[StartMedia, StopMedia, PhoneRegistered, LineCallEnded]


@dataclass
class _Binding:
    number: str
    contact: NameAddr
    expires_at: float
    registered_at: float


@dataclass
class _Call:
    id: str  # the line leg's Call-ID
    role: str  # "A" phone calls out, "B" phone is called
    number: str | None  # our line
    local_tag: str
    sc_call_id: str | None = None
    sc_ref: str | None = None  # the SC leg's Call-ID, kept after the leg ended (for events)
    state: str = "media"  # media | calling | ringing | answered | established | ended
    invite: SipRequest | None = None  # A: the phone's INVITE; B: ours to the phone
    invite_key: TransactionKey | None = None
    destination: Address | None = None  # B: where the phone is
    dialog: Dialog | None = None
    dialed: str = ""
    phone_sdp: bytes = b""
    sc_sdp: bytes = b""
    media: LineMedia | None = None
    keys: CallKeysReady | None = None
    final_sent: bool = False  # A: final response to the phone's INVITE sent
    phone_final: int | None = None  # B: the phone's final status
    provisional: bool = False  # B: the phone sent a 1xx
    cancel_pending: bool = False
    ok: SipResponse | None = None
    ok_due: float | None = None
    ok_interval: float = 0.0
    ok_deadline: float | None = None
    ring_deadline: float | None = None
    established: bool = False


def _number_of(uri) -> str | None:
    if isinstance(uri, SipUri):
        user = uri.user
    elif isinstance(uri, TelUri):
        user = uri.number
    else:
        return None
    if not user:
        return None
    user = _VISUAL.sub("", user.split(";", 1)[0])
    return user if _DIALABLE.match(user) else None


def _address_of(uri) -> Address:
    if not isinstance(uri, SipUri):
        raise SipParseError("the phone's Contact is not a sip: URI", header="Contact")
    return uri.host.strip("[]"), uri.port or 5060


class LineSide:
    """The line side's registrar and B2BUA (module docstring)."""

    def __init__(self, config: LineConfig, *, ids: IdGenerator | None = None) -> None:
        self.config = config
        self.numbers = tuple(config.numbers)
        self.ids = ids or IdGenerator()
        self.layer = TransactionLayer(config.timers)
        self.agent: CallAgent | None = None
        self.calls: dict[str, _Call] = {}
        self._by_sc: dict[str, _Call] = {}
        self._by_key: dict[TransactionKey, _Call] = {}
        self.bindings: dict[str, dict[str, _Binding]] = {n: {} for n in self.numbers}
        self._events: deque[Event] = deque()
        self.counters = dict.fromkeys(
            ("registrations", "calls_from_phone", "calls_to_phone", "established", "completed", "failed",
             "refused", "malformed"), 0)

    # -- outputs ------------------------------------------------------------------------------

    @property
    def local(self) -> Address:
        return (self.config.host, self.config.port)

    def contact(self, number: str | None = None) -> NameAddr:
        return NameAddr(SipUri(host=self.config.host, port=self.config.port, user=number))

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        return self.layer.datagrams_to_send()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.layer.get_timer(),) if t is not None]
        for call in self.calls.values():
            deadlines += [t for t in (call.ok_due, call.ok_deadline, call.ring_deadline) if t is not None]
        return min(deadlines) if deadlines else None

    def stats(self) -> dict:
        return {**self.counters, "active": len(self.calls),
                "bindings": {n: [str(b.contact.uri) for b in bs.values()] for n, bs in self.bindings.items() if bs}}

    # -- the SC channel -----------------------------------------------------------------------

    def attach(self, agent: CallAgent | None, now: float) -> None:
        """Use `agent` for the SC legs from now on. Calls on a previous agent cannot continue
        (a new SA pair is a new user agent: the SC has forgotten them) and end towards the phone."""
        if agent is self.agent:
            return
        for call in list(self.calls.values()):
            if call.sc_call_id is not None or call.role == "B":
                self._end_phone_leg(call, "the SC channel was re-established", 503, now)
        self.agent = agent

    # -- inputs -------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.layer.receive_datagram(data, source, now)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        self.layer.handle_timer(now)
        for call in list(self.calls.values()):
            if call.ok_deadline is not None and call.ok_deadline <= now:
                call.ok_due = call.ok_deadline = None
                self._bye_phone(call, now)
                self._hangup_sc(call, now)
                self._finish(call, "no ACK from the phone", failed=True)
            elif call.ok_due is not None and call.ok_due <= now and call.ok is not None:
                call.ok_interval = min(2 * call.ok_interval, self.layer.config.t2)
                call.ok_due = now + call.ok_interval
                try:
                    self.layer.send_response(call.ok, now)
                except LocalProtocolError:
                    call.ok_due = None
            if call.ring_deadline is not None and call.ring_deadline <= now:
                call.ring_deadline = None
                if call.role == "B" and call.phone_final is None:
                    self._cancel_phone(call, now)
                    self._reject_sc(call, 480, now)
                    self._finish(call, "the phone did not answer", failed=True)
        self._drain(now)

    def media_started(self, call_id: str, media: LineMedia, now: float) -> bool:
        """The adapter's answer to `StartMedia`. False (and a `StopMedia`) when the call ended
        meanwhile."""
        call = self.calls.get(call_id)
        if call is None or call.state != "media":
            self._events.append(StopMedia(call_id, media))
            return False
        call.media = media
        if call.keys is not None:
            self._key_media(call)
        if call.role == "A":
            self._place(call, now)
        else:
            self._ring(call, now)
        return True

    def media_failed(self, call_id: str, reason: str, now: float) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        if call.role == "A":
            self._respond_invite(call, 503, now, reason=f"Service Unavailable (media: {reason})")
        else:
            self._reject_sc(call, 503, now)
        self._finish(call, f"media: {reason}", failed=True)

    def on_call_event(self, event, now: float) -> None:
        """One `CallAgent` event (the adapter passes all of them here)."""
        if isinstance(event, IncomingCall):
            self._incoming(event, now)
            return
        call = self._by_sc.get(event.call_id)
        if call is None:
            return
        if isinstance(event, CallKeysReady):
            call.keys = event
            if call.media is not None:
                self._key_media(call)
        elif isinstance(event, CallRinging):
            if call.role == "A" and call.state == "calling":
                call.state = "ringing"
                self._respond_invite(call, 180, now)
        elif isinstance(event, CallEstablished):
            if call.role == "A" and call.state in ("calling", "ringing"):
                self._answer_phone(call, event.remote_sdp, now)
        elif isinstance(event, CallEnded):
            call.sc_call_id = None
            self._by_sc.pop(event.call_id, None)
            self._end_phone_leg(call, event.reason, event.status, now)
        elif isinstance(event, InfoReceived):
            self._info_phone(call, event, now)

    def _info_phone(self, call: _Call, event: InfoReceived, now: float) -> None:
        """The other CTA's INFO, to our phone in its dialog (its answer stays here)."""
        dialog = call.dialog
        if dialog is None or dialog.state is not DialogState.CONFIRMED or not event.body:
            return
        info = dialog.create_request("INFO", local=self.local, branch=self.ids.branch(),
                                     headers=[("User-Agent", USER_AGENT)], body=event.body,
                                     content_type=event.content_type or "application/octet-stream")
        self.layer.send_request(info, self._dialog_destination(call), now)

    # -- the transaction layer's events -------------------------------------------------------

    def _drain(self, now: float) -> None:
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self._on_request(event, now)
            elif isinstance(event, AckReceived):
                self._on_ack(event, now)
            elif isinstance(event, ResponseReceived):
                self._on_response(event, now)
            elif isinstance(event, (Timeout, TransportError)):
                self._on_timeout(event, now)
            elif isinstance(event, MalformedMessage):
                self.counters["malformed"] += 1
            elif isinstance(event, TransactionTerminated):
                self._by_key.pop(event.key, None)

    def _on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        request.headers.remove("Route")  # we are the only hop (baresip's outbound= adds one)
        try:
            check_request(request)
            method = request.method
            if method == "REGISTER":
                self._register(request, now)
            elif method == "INVITE" and request.to.tag is None:
                self._outgoing(event, now)
            elif method == "CANCEL":
                self._on_cancel(event, now)
            elif method in ("BYE", "INVITE", "INFO"):
                self._in_dialog(request, now)
            elif method == "OPTIONS":
                self._send(make_response(request, 200, to_tag=self.ids.tag(), headers=[("Allow", ALLOW)]), now)
            else:
                self._send(make_response(request, 405, to_tag=self.ids.tag(), headers=[("Allow", ALLOW)]), now)
        except SipParseError as exc:
            self.counters["refused"] += 1
            response = response_for_error(request, exc)
            if response is not None:
                self._send(response, now)

    def _send(self, response: SipResponse, now: float) -> None:
        try:
            self.layer.send_response(response, now)
        except LocalProtocolError:
            pass

    # -- registrar ----------------------------------------------------------------------------

    def _register(self, request: SipRequest, now: float) -> None:
        number = _number_of(request.to.uri)
        if number not in self.bindings:
            raise SipParseError("Not Found (not a line of this CTA)", status=404)
        bindings = self.bindings[number]
        self._expire(number, now)
        header_expires = request.expires
        if request.contact_star:
            if header_expires != 0:
                raise SipParseError("Contact: * needs Expires: 0")
            for binding in bindings.values():
                self._events.append(PhoneRegistered(number, str(binding.contact.uri), 0))
            bindings.clear()
        for contact in request.contacts:
            expires = contact.expires if contact.expires is not None else header_expires
            if expires is None:
                expires = self.config.default_expires
            key = str(contact.uri)
            if expires == 0:
                if bindings.pop(key, None) is not None:
                    self._events.append(PhoneRegistered(number, key, 0))
                continue
            if expires < self.config.min_expires:
                self._send(make_response(request, 423, to_tag=self.ids.tag(),
                                         headers=[("Min-Expires", str(self.config.min_expires))]), now)
                return
            expires = min(expires, self.config.max_expires)
            _address_of(contact.uri)  # must be a sip: URI we can send to
            bindings[key] = _Binding(number, NameAddr(contact.uri), now + expires, now)
            self.counters["registrations"] += 1
            self._events.append(PhoneRegistered(number, key, expires))
        headers = [("Contact", f"{b.contact};expires={max(0, int(b.expires_at - now))}") for b in bindings.values()]
        self._send(make_response(request, 200, to_tag=self.ids.tag(), headers=headers), now)

    def _expire(self, number: str, now: float) -> None:
        bindings = self.bindings.get(number, {})
        for key in [k for k, b in bindings.items() if b.expires_at <= now]:
            del bindings[key]

    def target_for(self, number: str, now: float) -> tuple[SipUri, Address] | None:
        """Where an incoming call for `number` rings: the newest live Contact, else `phone`."""
        self._expire(number, now)
        live = sorted(self.bindings.get(number, {}).values(), key=lambda b: b.registered_at)
        if live:
            uri = live[-1].contact.uri
            return uri, _address_of(uri)  # type: ignore[return-value]
        if self.config.phone is not None:
            host, port = self.config.phone
            return SipUri(host=host, port=port, user=number), (host, port)
        return None

    def _line_for(self, request: SipRequest) -> str | None:
        user = _number_of(request.from_.uri)
        if user in self.numbers:
            return user
        contacts = request.contacts
        if contacts:
            key = str(contacts[0].uri)
            for number, bindings in self.bindings.items():
                if key in bindings:
                    return number
        return self.numbers[0] if self.numbers else None

    # -- calls from the phone (role A) --------------------------------------------------------

    def _outgoing(self, event: RequestReceived, now: float) -> None:
        request = event.request
        if request.call_id in self.calls:
            raise SipParseError("Loop Detected (Call-ID in use)", status=482)
        dialed = _number_of(request.uri)
        if dialed is None:
            raise SipParseError("Address Incomplete (dial sip:NUMBER@line)", status=484)
        if request.from_.tag is None:
            raise SipParseError("From: an INVITE needs a tag", header="From")
        if len(request.contacts) != 1:
            raise SipParseError("Contact: an INVITE needs exactly one", header="Contact")
        if not request.body:
            raise SipParseError("Not Acceptable Here (an SDP offer is required)", status=488)
        if self.agent is None:
            self.counters["refused"] += 1
            self._send(make_response(request, 503, "Service Unavailable (no channel to the SC yet)",
                                     to_tag=self.ids.tag(), headers=[("Retry-After", "5")]), now)
            return
        tag = self.ids.tag()
        call = _Call(request.call_id, "A", self._line_for(request), tag, invite=request, invite_key=event.key,
                     dialed=dialed, phone_sdp=request.body)
        call.dialog = Dialog.from_uas(request, tag)
        self.calls[call.id] = call
        self._by_key[event.key] = call
        self.counters["calls_from_phone"] += 1
        self._events.append(StartMedia(call.id, "A"))

    def _place(self, call: _Call, now: float) -> None:
        assert call.media is not None and self.agent is not None
        try:
            sdp = call.media.line_to_network_sdp(call.phone_sdp)
        except ValueError as exc:
            self._respond_invite(call, 488, now, reason=f"Not Acceptable Here ({exc})")
            self._finish(call, f"unusable SDP offer: {exc}", failed=True)
            return
        call.state = "calling"
        call.sc_call_id = call.sc_ref = self.agent.place_call(call.dialed, sdp, now, line=call.number)
        self._by_sc[call.sc_call_id] = call

    def _respond_invite(self, call: _Call, status: int, now: float, *, reason: str | None = None,
                        body: bytes = b"") -> SipResponse | None:
        if call.invite is None or call.final_sent:
            return None
        headers: list[tuple[str, str]] = []
        if 100 < status < 300:
            headers += [("Contact", str(self.contact(call.number))), ("Allow", ALLOW), ("User-Agent", USER_AGENT)]
        if status >= 200:
            call.final_sent = True
        response = make_response(call.invite, status, reason, to_tag=call.local_tag, headers=headers, body=body,
                                 content_type="application/sdp" if body else None)
        self._send(response, now)
        return response

    def _answer_phone(self, call: _Call, remote_sdp: bytes, now: float) -> None:
        assert call.media is not None
        try:
            body = call.media.network_to_line_sdp(remote_sdp)
        except ValueError as exc:
            self._respond_invite(call, 488, now, reason=f"Not Acceptable Here (remote SDP: {exc})")
            self._hangup_sc(call, now)
            self._finish(call, f"unusable remote SDP: {exc}", failed=True)
            return
        call.ok = self._respond_invite(call, 200, now, body=body)
        call.state = "answered"
        call.ok_interval = self.layer.config.t1
        call.ok_due = now + call.ok_interval
        call.ok_deadline = now + 64 * self.layer.config.t1
        if call.dialog is not None:
            call.dialog.handle(DialogEvent.SUCCESS)
        self._established(call)

    def _on_ack(self, event: AckReceived, now: float) -> None:
        call = self.calls.get(event.request.call_id)
        if call is not None and call.role == "A" and call.state == "answered":
            call.ok_due = call.ok_deadline = None
            call.state = "established"

    def _on_cancel(self, event: RequestReceived, now: float) -> None:
        request = event.request
        call = next((c for c in self.calls.values() if c.role == "A" and c.invite_key == event.cancels
                     and event.cancels is not None), None)
        if call is None:
            raise SipParseError("Call/Transaction Does Not Exist", status=481)
        self._send(make_response(request, 200, to_tag=call.local_tag), now)
        if not call.final_sent:
            self._respond_invite(call, 487, now)
            self._hangup_sc(call, now)
            self._finish(call, "cancelled by the phone", failed=False)

    def _in_dialog(self, request: SipRequest, now: float) -> None:
        call = self.calls.get(request.call_id)
        if call is None or call.dialog is None or request.from_.tag != call.dialog.remote_tag:
            raise SipParseError("Call/Transaction Does Not Exist", status=481)
        if request.method == "INVITE":
            raise SipParseError("Not Acceptable Here (re-INVITE is not supported on the line side)", status=488)
        try:
            call.dialog.receive_request(request)
        except LocalProtocolError:
            pass  # BYEs crossed
        self._send(make_response(request, 200, to_tag=call.local_tag), now)
        if request.method == "INFO" and request.body and call.sc_call_id is not None and self.agent is not None:
            # e.g. application/dtmf-relay: to the other CTA on the direct channel, as it came
            self.agent.send_info(call.sc_call_id, request.body, request.content_type, now)
        if request.method == "BYE":
            call.ok_due = call.ok_deadline = None
            self._hangup_sc(call, now)
            if call.role == "A" and not call.final_sent:
                self._respond_invite(call, 487, now)
            self._finish(call, "hung up by the phone", failed=False)

    # -- calls to the phone (role B) ----------------------------------------------------------

    def _incoming(self, event: IncomingCall, now: float) -> None:
        target = self.target_for(event.line, now) if event.line else None
        if target is None or self.agent is None:
            self.counters["refused"] += 1
            if self.agent is not None:
                self._safe_reject(event.call_id, 480, now)
            return
        uri, address = target
        call = _Call(self.ids.call_id(self.config.host), "B", event.line, self.ids.tag(),
                     sc_call_id=event.call_id, sc_ref=event.call_id, destination=address, dialed=event.caller, sc_sdp=event.sdp)
        call.invite = build_request(
            "INVITE", uri, from_=NameAddr(SipUri(host=self.config.host, port=self.config.port,
                                                 user=event.caller or "anonymous")).with_tag(call.local_tag),
            to=NameAddr(SipUri(host=self.config.host, port=self.config.port, user=event.line)),
            call_id=call.id, cseq=self.ids.cseq(), local=self.local, branch=self.ids.branch(),
            contact=self.contact(event.line), headers=[("Allow", ALLOW), ("User-Agent", USER_AGENT)])
        self.calls[call.id] = call
        self._by_sc[event.call_id] = call
        self.counters["calls_to_phone"] += 1
        self._events.append(StartMedia(call.id, "B"))

    def _ring(self, call: _Call, now: float) -> None:
        assert call.media is not None and call.invite is not None and call.destination is not None
        try:
            body = call.media.network_to_line_sdp(call.sc_sdp)
        except ValueError as exc:
            self._reject_sc(call, 488, now)
            self._finish(call, f"unusable SDP offer from the SC: {exc}", failed=True)
            return
        call.invite.body = body
        call.invite.headers.add("Content-Type", "application/sdp")
        call.state = "calling"
        call.invite_key = self.layer.send_request(call.invite, call.destination, now)
        self._by_key[call.invite_key] = call
        call.ring_deadline = now + self.config.ring_timeout

    def _on_response(self, event: ResponseReceived, now: float) -> None:
        call = self._by_key.get(event.key)
        response = event.response
        if call is None or call.role != "B" or response.cseq.method != "INVITE":
            return
        status = response.status
        if status == 100:
            return
        if status < 300 and response.to.tag is not None and len(response.contacts) == 1:
            try:
                if call.dialog is None:
                    call.dialog = Dialog.from_uac(call.invite, response)  # type: ignore[arg-type]
                else:
                    call.dialog.update_from_response(response)
            except (SipParseError, LocalProtocolError):
                pass
        if status < 200:
            call.provisional = True
            if call.state == "calling":
                call.state = "ringing"
            if call.cancel_pending:
                call.cancel_pending = False
                self._cancel_phone(call, now)
            return
        if status >= 300:
            self._by_key.pop(event.key, None)
            if call.phone_final is None:
                call.phone_final = status
                if call.state != "ended":
                    self._reject_sc(call, status, now)
                    self._finish(call, f"{status} {response.reason} from the phone",
                                 failed=status not in (486, 600, 603))
            return
        # 2xx: ACK every one (retransmissions too); the first answers the SC leg
        self._ack_phone(call, now)
        if call.phone_final is not None:
            return
        call.phone_final = status
        if call.state == "ended" or call.sc_call_id is None:
            self._bye_phone(call, now)  # the SC leg ended (CANCEL crossed the answer)
            self._finish(call, "the SC leg ended before the answer", failed=False)
            return
        assert call.media is not None and self.agent is not None
        try:
            sdp = call.media.line_to_network_sdp(response.body)
        except ValueError as exc:
            self._bye_phone(call, now)
            self._reject_sc(call, 488, now)
            self._finish(call, f"unusable SDP answer from the phone: {exc}", failed=True)
            return
        call.ring_deadline = None
        try:
            self.agent.answer(call.sc_call_id, sdp, now)
        except (LocalProtocolError, KeyError):
            self._bye_phone(call, now)
            self._finish(call, "the SC leg ended before the answer", failed=False)
            return
        call.state = "established"
        self._established(call)

    def _ack_phone(self, call: _Call, now: float) -> None:
        if call.dialog is None or call.invite is None:
            return
        ack = call.dialog.create_ack(call.invite.cseq.seq, local=self.local, branch=self.ids.branch())
        self.layer.send_request(ack, self._dialog_destination(call), now)

    def _on_timeout(self, event, now: float) -> None:
        call = self._by_key.pop(event.key, None)
        if call is None or call.role != "B" or call.phone_final is not None or call.state == "ended":
            return
        call.phone_final = 408
        self._reject_sc(call, 480, now)
        self._finish(call, "no answer from the phone (timeout)", failed=True)

    # -- helpers ------------------------------------------------------------------------------

    def _dialog_destination(self, call: _Call) -> Address:
        dialog = call.dialog
        if dialog is not None and dialog.route_set:
            return _address_of(dialog.route_set[0].uri)
        if call.role == "B" and call.destination is not None and dialog is None:
            return call.destination
        try:
            return _address_of(dialog.remote_target)  # type: ignore[union-attr]
        except SipParseError:
            return call.destination or ("127.0.0.1", 5060)

    def _key_media(self, call: _Call) -> None:
        keys, media = call.keys, call.media
        if keys is None or media is None:
            return
        try:
            media.relay.set_direction_keys(keys.media_profile, keys.media_tx, keys.media_rx)  # type: ignore[attr-defined]
        except ValueError:
            pass  # keyed already (the same call's key arrives once; a second delivery changes nothing)

    def _established(self, call: _Call) -> None:
        if not call.established:
            call.established = True
            self.counters["established"] += 1

    def _bye_phone(self, call: _Call, now: float) -> None:
        dialog = call.dialog
        if dialog is None or dialog.state is not DialogState.CONFIRMED:
            return
        bye = dialog.create_request("BYE", local=self.local, branch=self.ids.branch(),
                                    headers=[("User-Agent", USER_AGENT)])
        dialog.handle(DialogEvent.BYE)
        self.layer.send_request(bye, self._dialog_destination(call), now)

    def _cancel_phone(self, call: _Call, now: float) -> None:
        if call.role != "B" or call.invite_key is None or call.phone_final is not None:
            return
        if not call.provisional:
            call.cancel_pending = True
            return
        self.layer.send_request(build_cancel(call.invite), call.destination, now)  # type: ignore[arg-type]

    def _hangup_sc(self, call: _Call, now: float) -> None:
        sc_call_id, call.sc_call_id = call.sc_call_id, None
        if sc_call_id is None:
            return
        self._by_sc.pop(sc_call_id, None)
        if self.agent is not None:
            self.agent.hangup(sc_call_id, now)

    def _safe_reject(self, sc_call_id: str, status: int, now: float) -> None:
        if self.agent is None:
            return
        try:
            self.agent.reject(sc_call_id, now, status)
        except (LocalProtocolError, KeyError):
            self.agent.hangup(sc_call_id, now)

    def _reject_sc(self, call: _Call, status: int, now: float) -> None:
        sc_call_id, call.sc_call_id = call.sc_call_id, None
        if sc_call_id is None:
            return
        self._by_sc.pop(sc_call_id, None)
        if status < 400 or status >= 700:
            status = 480
        self._safe_reject(sc_call_id, status, now)

    def _end_phone_leg(self, call: _Call, reason: str, status: int | None, now: float) -> None:
        """The SC leg ended (or cannot continue): end the phone's leg the matching way."""
        if call.state == "ended":
            return
        if call.role == "A":
            if not call.final_sent:
                if status is not None and status >= 300:
                    # relay the SC's reason phrase too (e.g. 403 "Forbidden (unprovisioned CTA: ...)")
                    prefix = f"{status} "
                    phrase = reason[len(prefix):] if reason.startswith(prefix) and len(reason) > len(prefix) else None
                    self._respond_invite(call, status, now, reason=phrase)
                else:
                    self._respond_invite(call, 480, now, reason=f"Temporarily Unavailable ({reason})")
            else:
                call.ok_due = call.ok_deadline = None
                self._bye_phone(call, now)
        else:
            if call.phone_final is None:
                self._cancel_phone(call, now)
            else:
                self._bye_phone(call, now)
        self._hangup_sc(call, now)
        failed = not call.established and status not in (486, 487, 600, 603)
        self._finish(call, reason, failed=failed)

    def _finish(self, call: _Call, reason: str, *, failed: bool) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        call.ok_due = call.ok_deadline = call.ring_deadline = None
        if call.sc_call_id is not None:
            self._by_sc.pop(call.sc_call_id, None)
        self.calls.pop(call.id, None)
        if call.invite_key is not None and (call.role == "A" or call.phone_final is not None):
            self._by_key.pop(call.invite_key, None)  # B: kept until the phone's final answer (CANCEL, ACK + BYE)
        self.counters["failed" if failed else "completed"] += 1
        if call.media is not None:
            self._events.append(StopMedia(call.id, call.media))
        self._events.append(LineCallEnded(call.id, call.sc_ref, reason, call.established))
