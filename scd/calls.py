"""The SC's call control: routing, restrictions and the per-call sub-key (seed FIG. 4), sans I/O.

`CallEngine(signaling, config)` attaches itself to the SC's `SignalingEngine` (the CTA channels)
and owns one `TransactionLayer` per peer SC. It is a B2BUA: every call has two legs, each its
own SIP dialog (Call-ID, tags, CSeq), the *a* leg towards the caller (a CTA, or the source SC
when this SC is the destination) and the *b* leg towards the callee (a CTA, or the destination
SC). Why a B2BUA rather than a proxy: the SC must change what passes through (it adds the
Kerbtel-Call-Key towards the callee and the caller, strips whatever key header a CTA sends, and
rewrites From/To to the numbers it checked), must see BYE (lawful-intercept end time) and must be
able to end a call by itself (wrong acknowledgement, a CTA's channel gone) towards *both*
parties. Per-leg dialogs make each of those a local decision on one leg, with no Via/Record-Route
bookkeeping across ESP channels that each have their own transaction layer.

Roles per call: "local" (caller and callee on this SC), "source" (callee behind a peer SC),
"destination" (the call came from a peer SC). The source (or local) SC generates the sub-key and
SPI (`rng`), sends them with the INVITE towards the callee, verifies the callee's acknowledgement
in its first 18x/2xx, only then delivers the same key to the caller (in the 18x/2xx it relays)
and verifies the caller's acknowledgement in the ACK. The destination SC forwards the key to its
CTA and relays the acknowledgement back unchanged. docs/protocol.md, "Calls (per-call keys over
SIP)", has the whole exchange.

Inputs: the `SignalingEngine` hooks (CTA channels), `receive_peer(peer, data, now)`,
`handle_timer(now)`, `set_wallclock(wallclock, now)`. Outputs: `signaling.datagrams_to_send()`
(CTA channels, as before), `peer_datagrams_to_send()`, `next_event()`, `get_timer()` (also the
signaling engine's, so the daemon arms one timer). Each call ends in exactly one
`sink.record(CallRecord(...))`.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol, Union

from common.callkey import (
    ACK_HEADER,
    KEY_HEADER,
    PEER_HEADER,
    SUBKEY_LEN,
    CallKey,
    CallKeyAck,
    CallKeyError,
    format_peer,
    parse_peer,
    verify_ack,
)
from common.esp import SUITES, Suite
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
    TransactionKey,
    TransactionLayer,
    TransportError,
)
from common.sip.ua import build_cancel, build_request
from common.srtp import CallMediaKeys, derive_media_keys
from scd.signaling import SignalingEngine

__all__ = [
    "CallAnswered",
    "CallConfig",
    "CallConnected",
    "CallEnded",
    "CallEngine",
    "CallRecord",
    "CallRefused",
    "CallSetup",
    "InterceptSink",
    "KeyAckVerified",
    "NullSink",
    "dialed_number",
]

Address = tuple[str, int]
Where = tuple[str, str]  # ("cta", principal) | ("sc", peer name)
Role = Literal["local", "source", "destination"]
_SEPARATORS = re.compile(r"[\s\-.()/]")
_SHORT_CODE = re.compile(r"[0-9*#]{1,15}\Z")


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class CallConfig:
    """The `[calls]` table of scd's TOML.

    `owned`: the numbers this SC serves, each entry a prefix ("+1555123") or an inclusive range
    of equal-length numbers ("+15551230000-+15551239999"). `routes`: prefix -> peer SC name
    (longest prefix wins). `aliases`: dial string -> the number it reaches ("911" ->
    "+15550100911"), applied after the restriction check. `esp_suite`/`media_profile`: what the
    source SC tells both CTAs to use for the call's ESP SA pair and media.
    """

    owned: tuple[str, ...] = ()
    routes: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    esp_suite: str = "AES-GCM-16"
    media_profile: str = "AES_CM_128_HMAC_SHA1_80"

    def __post_init__(self) -> None:
        self.suite  # noqa: B018 - validates the name
        derive_media_keys(bytes(SUBKEY_LEN), self.media_profile, 256)  # validates the profile
        for entry in self.owned:
            if "-" in entry[1:]:
                low, high = entry.split("-", 1)
                if len(low) != len(high) or low > high:
                    raise ValueError(f"owned range {entry!r}: ends must have equal length, low first")

    @property
    def suite(self) -> Suite:
        for s in SUITES.values():
            if s.name == self.esp_suite:
                return s
        raise ValueError(f"no ESP suite {self.esp_suite!r} (known: {', '.join(s.name for s in SUITES.values())})")

    def owns(self, number: str) -> bool:
        for entry in self.owned:
            if "-" in entry[1:]:
                low, high = entry.split("-", 1)
                if len(number) == len(low) and low <= number <= high:
                    return True
            elif number.startswith(entry):
                return True
        return False

    def peer_for(self, number: str) -> str | None:
        best = max((p for p in self.routes if number.startswith(p)), key=len, default=None)
        return None if best is None else self.routes[best]


def dialed_number(uri) -> str:
    """The number a Request-URI dials: E.164 normalised when it starts with '+', else a short
    code of digits, '*' and '#' ("911"). ValueError for anything else."""
    from common.pki import normalise_phone_number

    if isinstance(uri, SipUri):
        user = (uri.user or "").split(";", 1)[0]
    elif isinstance(uri, TelUri):
        user = uri.number
    else:
        raise ValueError("the Request-URI is neither a sip: nor a tel: URI")
    user = _SEPARATORS.sub("", user.replace("%2B", "+").replace("%2b", "+"))
    if user.startswith("+"):
        return normalise_phone_number(user)
    if _SHORT_CODE.match(user):
        return user
    raise ValueError("the Request-URI dials no number")


def _allowed_destinations(restrictions) -> set[str]:
    native = getattr(restrictions, "native", None)
    numbers = [d["number"] for d in native["destinations"]] if native is not None else list(restrictions or ())
    out = set()
    for n in numbers:
        try:
            out.add(dialed_number(TelUri(str(n))))
        except ValueError:
            continue
    return out


# --- lawful intercept -----------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class CallRecord:
    """One call as the SC saw it (seed, CALEA paragraphs). Times are wallclock seconds (see
    `CallEngine.set_wallclock`); `start` is None for a call that was never answered."""

    call_id: str  # the call reference shared by every SC and both CTAs (Kerbtel-Call-Key ref)
    role: str  # "local" | "source" | "destination"
    caller: str  # calling number ("anonymous" for an unprovisioned CTA)
    callee: str  # dialed number
    caller_principal: str  # the CTA principal, or "sc:<peer>"
    callee_principal: str  # the CTA principal, or "sc:<peer>"
    setup: float
    start: float | None
    end: float
    outcome: str  # "completed", or why the call failed
    spi: int
    esp_suite: str
    media_profile: str
    subkey: bytes

    def __repr__(self) -> str:  # never key material
        return (f"CallRecord(call_id={self.call_id}, role={self.role}, caller={self.caller}, "
                f"callee={self.callee}, setup={self.setup}, start={self.start}, end={self.end}, "
                f"outcome={self.outcome!r}, spi={self.spi})")

    __str__ = __repr__

    def media_keys(self) -> CallMediaKeys:
        """The bearer keys of both directions (what lawful intercept decrypts media with)."""
        return derive_media_keys(self.subkey, self.media_profile, self.spi)


class InterceptSink(Protocol):
    def record(self, record: CallRecord) -> None: ...


class NullSink:
    def record(self, record: CallRecord) -> None:
        pass


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallRefused:
    origin: str  # CTA principal or "sc:<peer>"
    dialed: str
    status: int
    reason: str


@dataclass(frozen=True)
class CallSetup:
    call_id: str
    role: str
    caller: str
    callee: str
    next_hop: str  # CTA principal or "sc:<peer>"


@dataclass(frozen=True)
class KeyAckVerified:
    call_id: str
    party: str  # "A" (caller) | "B" (callee)


@dataclass(frozen=True)
class CallAnswered:
    call_id: str


@dataclass(frozen=True)
class CallConnected:
    """Both acknowledgements verified (or, at a destination SC, the ACK arrived)."""

    call_id: str


@dataclass(frozen=True)
class CallEnded:
    call_id: str
    reason: str
    failed: bool


Event = Union[CallRefused, CallSetup, KeyAckVerified, CallAnswered, CallConnected, CallEnded]


class _Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


# --- per-call state -------------------------------------------------------------------------


@dataclass
class _Leg:
    where: Where
    uas: bool  # True: the a leg (we answer its INVITE); False: the b leg (we sent the INVITE)
    invite: SipRequest
    local_tag: str
    tx: TransactionKey | None = None
    dialog: Dialog | None = None
    provisional: bool = False  # b leg: a 1xx arrived (CANCEL may be sent)
    final: int | None = None  # the INVITE's final status (sent on a, received on b)
    cancel_pending: bool = False
    ack: SipRequest | None = None  # b leg: our ACK for the 2xx, re-sent for retransmitted 2xx
    ok: SipResponse | None = None  # a leg: our 2xx, retransmitted until the ACK
    ok_due: float | None = None
    ok_interval: float = 0.0
    ok_deadline: float | None = None
    bye_done: bool = False  # a BYE was sent or received on this leg
    ended: bool = False  # nothing more to send on this leg


@dataclass
class _Call:
    ref: str
    role: Role
    key: CallKey
    caller: str
    callee: str
    caller_principal: str
    callee_principal: str
    setup: float
    a: _Leg
    b: _Leg | None = None
    b_acked: bool = False
    a_acked: bool = False
    start: float | None = None
    ended: bool = False

    @property
    def verifies(self) -> bool:
        return self.role != "destination"


def _who(where: Where) -> str:
    return where[1] if where[0] == "cta" else f"sc:{where[1]}"


class CallEngine:
    """The SC's calls (module docstring)."""

    def __init__(self, signaling: SignalingEngine, config: CallConfig | None = None, *,
                 sink: InterceptSink | None = None, rng: Callable[[int], bytes] = os.urandom) -> None:
        self.signaling = signaling
        self.config = config or CallConfig()
        self.sink = sink or NullSink()
        self.rng = rng
        self.ids = signaling.ids
        self.timers = signaling.timers
        self.peers: dict[str, TransactionLayer] = {}
        self.calls: dict[str, _Call] = {}
        self._by_tx: dict[tuple[Where, TransactionKey], tuple[_Call, _Leg]] = {}
        self._by_call_id: dict[tuple[Where, str], tuple[_Call, _Leg]] = {}
        self._events: deque[Event] = deque()
        self._wall_offset = 0.0
        self._now = 0.0
        self.stats = {"calls": 0, "refused": 0, "failed": 0, "completed": 0}
        signaling.call_handler = self

    # -- configuration and outputs --------------------------------------------------------

    def set_wallclock(self, wallclock: float, now: float) -> None:
        """Tell the engine what `now` (monotonic) is in wallclock seconds, for CallRecord times."""
        self._wall_offset = wallclock - now

    def add_peer(self, name: str) -> TransactionLayer:
        layer = self.peers.get(name)
        if layer is None:
            layer = self.peers[name] = TransactionLayer(self.timers)
        return layer

    def peer_datagrams_to_send(self) -> list[tuple[str, bytes, int]]:
        """(peer SC name, SIP message, inner destination port) to protect with that peer's SA."""
        out = []
        for name, layer in self.peers.items():
            for data, address in layer.datagrams_to_send():
                out.append((name, data, address[1] or self.signaling.config.sip_port))
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.signaling.get_timer(),) if t is not None]
        deadlines += [t for layer in self.peers.values() if (t := layer.get_timer()) is not None]
        for call in self.calls.values():
            for t in (call.a.ok_due, call.a.ok_deadline):
                if t is not None:
                    deadlines.append(t)
        return min(deadlines) if deadlines else None

    # -- inputs ---------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.signaling.handle_timer(now)
        for name, layer in self.peers.items():
            layer.handle_timer(now)
            self._drain_peer(name, layer, now)
        for call in list(self.calls.values()):
            a = call.a
            if a.ok_deadline is not None and a.ok_deadline <= now:
                self._fail(call, "no ACK for the 2xx", now)
            elif a.ok_due is not None and a.ok_due <= now and a.ok is not None:
                a.ok_interval = min(2 * a.ok_interval, self.timers.t2)
                a.ok_due = now + a.ok_interval
                try:
                    self._layer(a.where).send_response(a.ok, now)
                except (LocalProtocolError, KeyError):
                    a.ok_due = None

    def receive_peer(self, peer: str, data: bytes, now: float) -> None:
        """A decrypted SIP datagram from peer SC `peer` (authenticated by the SC-to-SC SA)."""
        self._now = now
        layer = self.add_peer(peer)
        layer.receive_datagram(data, (peer, self.signaling.config.sip_port), now)
        self._drain_peer(peer, layer, now)

    def _drain_peer(self, peer: str, layer: TransactionLayer, now: float) -> None:
        where = ("sc", peer)
        while (event := layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self._on_request(where, event, now)
            elif isinstance(event, AckReceived):
                self._on_ack(where, event, now)
            elif isinstance(event, ResponseReceived):
                self._on_response(where, event, now)
            elif isinstance(event, (Timeout, TransportError)):
                self._on_timeout(where, event, now)
            elif isinstance(event, MalformedMessage):
                pass  # answered by the layer when possible

    # SignalingEngine hooks
    def on_cta_request(self, principal: str, event: RequestReceived, now: float) -> None:
        self._now = now
        self._on_request(("cta", principal), event, now)

    def on_cta_ack(self, principal: str, event: AckReceived, now: float) -> None:
        self._now = now
        self._on_ack(("cta", principal), event, now)

    def on_cta_response(self, principal: str, event: ResponseReceived, now: float) -> None:
        self._now = now
        self._on_response(("cta", principal), event, now)

    def on_cta_timeout(self, principal: str, event, now: float) -> None:
        self._now = now
        self._on_timeout(("cta", principal), event, now)

    def on_channel_closed(self, principal: str, reason: str) -> None:
        where = ("cta", principal)
        for call in list(self.calls.values()):
            for leg in (call.a, call.b):
                if leg is not None and leg.where == where:
                    leg.ended = True  # nothing can be sent on it any more
                    self._fail(call, f"CTA channel closed ({reason})", self._now)
                    break

    # -- transport helpers ----------------------------------------------------------------

    def _layer(self, where: Where) -> TransactionLayer:
        if where[0] == "cta":
            return self.signaling.channels[where[1]].layer
        return self.add_peer(where[1])

    def _dest(self, where: Where) -> Address:
        if where[0] == "cta":
            return self.signaling.channels[where[1]].source
        return (where[1], self.signaling.config.sip_port)

    @property
    def _local(self) -> Address:
        return (self.signaling.config.domain or "sc.invalid", self.signaling.config.sip_port)

    def _contact(self) -> NameAddr:
        host, port = self._local
        return NameAddr(SipUri(host=host, port=port))

    def _send(self, where: Where, request: SipRequest, now: float) -> TransactionKey | None:
        try:
            return self._layer(where).send_request(request, self._dest(where), now)
        except KeyError:  # the CTA's channel is gone
            return None

    def _respond(self, where: Where, request: SipRequest, status: int, reason: str | None = None, *,
                 tag: str | None = None, headers=(), body: bytes = b"", content_type: str | None = None,
                 now: float) -> SipResponse | None:
        response = make_response(request, status, reason, to_tag=tag or self.ids.tag(), headers=headers,
                                 body=body, content_type=content_type)
        try:
            self._layer(where).send_response(response, now)
        except (KeyError, LocalProtocolError):
            return None
        return response

    # -- requests -------------------------------------------------------------------------

    def _on_request(self, where: Where, event: RequestReceived, now: float) -> None:
        request = event.request
        try:
            check_request(request)
            if request.method == "INVITE" and request.to.tag is None:
                self._new_call(where, event, now)
                return
            if request.method == "CANCEL":
                self._on_cancel(where, event, now)
                return
            found = self._by_call_id.get((where, request.call_id))
            if found is None:
                raise _Refusal(481, "Call/Transaction Does Not Exist")
            call, leg = found
            if leg.dialog is not None:
                leg.dialog.receive_request(request)
            if request.method == "BYE":
                self._respond(where, request, 200, tag=leg.local_tag, now=now)
                leg.bye_done = True
                self._end(call, "hung up by the caller" if leg is call.a else "hung up by the callee", now)
            elif request.method == "INVITE":
                raise _Refusal(488, "Not Acceptable Here (re-INVITE goes CTA to CTA)")
            else:
                raise _Refusal(501, f"Not Implemented ({request.method} goes CTA to CTA)")
        except SipParseError as exc:
            response = response_for_error(request, exc)
            if response is not None:
                try:
                    self._layer(where).send_response(response, now)
                except (KeyError, LocalProtocolError):
                    pass
        except _Refusal as exc:
            if request.method == "INVITE" and request.to.tag is None:
                self.stats["refused"] += 1
                try:
                    dialed = dialed_number(request.uri)
                except ValueError:
                    dialed = "?"
                self._events.append(CallRefused(_who(where), dialed, exc.status, exc.reason))
            self._respond(where, request, exc.status, exc.reason, now=now)

    def _new_call(self, where: Where, event: RequestReceived, now: float) -> None:
        request = event.request
        try:
            dialed = dialed_number(request.uri)
        except ValueError:
            raise _Refusal(404, "Not Found (the Request-URI dials no number)") from None
        if where[0] == "cta":
            caller_principal = where[1]
            channel = self.signaling.channels[where[1]]
            identity = channel.identity
            if identity.restricted:
                allowed = _allowed_destinations(identity.restrictions)
                if dialed not in allowed:
                    raise _Refusal(403, "Forbidden (unprovisioned CTA: only the CSR and emergency numbers)")
                caller = "anonymous"
            else:
                try:
                    caller = dialed_number(request.from_.uri)
                except ValueError:
                    caller = ""
                if caller not in channel.numbers:
                    raise _Refusal(403, "Forbidden (From is not a line this CTA registered)")
            callee = self.config.aliases.get(dialed, dialed)
            target = self._route(callee, allow_peer=True)
            ref = self.rng(16).hex()
            key = CallKey(ref, self._new_spi(), self.config.suite, self.config.media_profile,
                          self.rng(SUBKEY_LEN))
            role: Role = "local" if target[0] == "cta" else "source"
        else:
            value = request.headers.get(KEY_HEADER)
            if value is None:
                raise _Refusal(400, f"Bad Request (no {KEY_HEADER} from the peer SC)")
            try:
                key = CallKey.parse(value)
            except CallKeyError as exc:
                raise _Refusal(400, f"Bad Request ({exc})") from None
            if key.ref in self.calls:
                raise _Refusal(482, "Loop Detected")
            caller_principal = _who(where)
            try:
                caller = dialed_number(request.from_.uri)
            except ValueError:
                caller = "anonymous"
            callee = dialed
            target = self._route(callee, allow_peer=False)
            ref, role = key.ref, "destination"
        try:
            dialog = Dialog.from_uas(request, "")
        except SipParseError as exc:
            raise _Refusal(400, f"Bad Request ({exc.reason})") from None
        a = _Leg(where, True, request, self.ids.tag(), tx=event.key)
        dialog.local_tag = a.local_tag
        a.dialog = dialog
        call = _Call(ref, role, key, caller, callee, caller_principal, _who(target), now, a)
        self.calls[ref] = call
        self._by_tx[(where, event.key)] = (call, a)
        self._by_call_id[(where, request.call_id)] = (call, a)
        self.stats["calls"] += 1
        self._events.append(CallSetup(ref, role, caller, callee, _who(target)))
        # The b leg: a fresh dialog towards the callee, carrying the key (seed 450/452) and where
        # the caller's CTA-to-CTA ESP arrives from.
        peer = self._esp_peer(where, request)
        host = self._local[0]
        from_ = NameAddr(SipUri(host=host, user=caller if caller != "anonymous" else "anonymous")).with_tag(self.ids.tag())
        to = NameAddr(SipUri(host=host, user=callee))
        invite = build_request(
            "INVITE", SipUri(host=host, user=callee), from_=from_, to=to,
            call_id=self.ids.call_id(host), cseq=self.ids.cseq(), local=self._local, branch=self.ids.branch(),
            contact=self._contact(),
            headers=[(KEY_HEADER, key.header_value())] + ([(PEER_HEADER, peer)] if peer else []), body=request.body,
            content_type=request.content_type)
        b = _Leg(target, False, invite, from_.tag or "")
        call.b = b
        b.tx = self._send(target, invite, now)
        if b.tx is None:
            self._fail(call, "callee unreachable", now, status=480)
            return
        self._by_tx[(target, b.tx)] = (call, b)
        self._by_call_id[(target, invite.call_id)] = (call, b)

    def _esp_peer(self, where: Where, message: SipRequest | SipResponse) -> str | None:
        """The `Kerbtel-Esp-Peer` for a message from `where`: a CTA's is the source address of
        its channel (what it writes itself is ignored); a peer SC's is relayed when well formed."""
        if where[0] == "cta":
            channel = self.signaling.channels.get(where[1])
            return format_peer(channel.esp_source) if channel is not None and channel.esp_source else None
        value = message.headers.get(PEER_HEADER)
        if value is None:
            return None
        try:
            return format_peer(parse_peer(value))
        except CallKeyError:
            return None

    def _route(self, number: str, *, allow_peer: bool) -> Where:
        reg = self.signaling.registrations.get(number)
        if reg is not None and reg.principal in self.signaling.channels:
            return ("cta", reg.principal)
        if self.config.owns(number):
            raise _Refusal(480, "Temporarily Unavailable (the line is not registered)")
        peer = self.config.peer_for(number) if allow_peer else None
        if peer is None:
            raise _Refusal(404, "Not Found (no route to the number)")
        return ("sc", peer)

    def _new_spi(self) -> int:
        while True:
            spi = int.from_bytes(self.rng(4), "big")
            if 256 <= spi <= 0xFFFFFFFE:
                return spi

    def _on_cancel(self, where: Where, event: RequestReceived, now: float) -> None:
        request = event.request
        found = self._by_tx.get((where, event.cancels)) if event.cancels is not None else None
        if found is None:
            raise _Refusal(481, "Call/Transaction Does Not Exist")
        call, leg = found
        self._respond(where, request, 200, tag=leg.local_tag, now=now)
        if leg.final is None:
            leg.final = 487
            self._respond(where, leg.invite, 487, tag=leg.local_tag, now=now)
            leg.ended = True
            self._end(call, "cancelled by the caller", now)

    def _on_ack(self, where: Where, event: AckReceived, now: float) -> None:
        request = event.request
        found = self._by_call_id.get((where, request.call_id))
        if found is None:
            return
        call, leg = found
        if leg is not call.a or leg.ok is None or call.ended:
            return
        first = leg.ok_deadline is not None
        leg.ok_due = leg.ok_deadline = None
        if not first or call.a_acked:
            return
        if call.verifies:
            reason = self._check_ack(call, request.headers.get(ACK_HEADER), "A")
            if reason is not None:
                self._fail(call, f"caller's key acknowledgement: {reason}", now)
                return
            call.a_acked = True
            self._events.append(KeyAckVerified(call.ref, "A"))
        call.start = now
        self._events.append(CallConnected(call.ref))

    def _check_ack(self, call: _Call, value: str | None, party: str) -> str | None:
        if value is None:
            return "missing"
        try:
            ack = CallKeyAck.parse(value)
        except CallKeyError as exc:
            return str(exc)
        return verify_ack(call.key, party, ack)  # type: ignore[arg-type]

    # -- responses ------------------------------------------------------------------------

    def _on_response(self, where: Where, event: ResponseReceived, now: float) -> None:
        found = self._by_tx.get((where, event.key))
        if found is None:
            return  # a response to our BYE/CANCEL, or to a call that is gone
        call, leg = found
        response = event.response
        status = response.status
        if leg.uas or status == 100:
            return
        if status >= 300:
            leg.final = status
            leg.ended = True
            if call.ended:
                self._forget(call)
            else:
                reason = f"callee answered {status} {response.reason}"
                a = call.a
                if a.final is None:
                    a.final = status
                    self._respond(a.where, a.invite, status, response.reason, tag=a.local_tag, now=now)
                self._end(call, reason, now, failed=True)
            return
        # 1xx with a tag, or 2xx: the b leg's dialog
        if response.to.tag is not None and len(response.contacts) == 1:
            if leg.dialog is None:
                leg.dialog = Dialog.from_uac(leg.invite, response)
            else:
                leg.dialog.update_from_response(response)
        if status < 200:
            leg.provisional = True
            if leg.cancel_pending:
                leg.cancel_pending = False
                self._send(leg.where, build_cancel(leg.invite), now)
                return
        else:
            if leg.final is None:
                leg.final = status
                if leg.dialog is None:
                    self._fail(call, "2xx without a usable To tag and Contact", now)
                    return
                leg.ack = leg.dialog.create_ack(leg.invite.cseq.seq, local=self._local, branch=self.ids.branch())
            if leg.ack is not None:
                self._send(leg.where, leg.ack, now)
        if call.ended:
            if status >= 200:
                self._bye(leg, now)  # answered after we gave up: hang up at once
                self._forget(call)
            return
        if call.verifies and not call.b_acked:
            reason = self._check_ack(call, response.headers.get(ACK_HEADER), "B")
            if reason is not None:
                self._fail(call, f"callee's key acknowledgement: {reason}", now)
                return
            call.b_acked = True
            self._events.append(KeyAckVerified(call.ref, "B"))
        self._relay(call, response, now)

    def _relay(self, call: _Call, response: SipResponse, now: float) -> None:
        a = call.a
        if a.final is not None:
            return
        headers: list[tuple[str, str]] = [("Contact", str(self._contact()))]
        peer = self._esp_peer(call.b.where, response) if call.b is not None else None
        if peer:
            headers.append((PEER_HEADER, peer))
        if call.verifies:
            headers.append((KEY_HEADER, call.key.header_value()))  # seed 460: only after B's ack
        else:
            ack = response.headers.get(ACK_HEADER)
            if ack is not None:
                headers.append((ACK_HEADER, ack))  # seed 454/456: relayed unchanged
        sent = self._respond(a.where, a.invite, response.status, response.reason, tag=a.local_tag,
                             headers=headers, body=response.body, content_type=response.content_type, now=now)
        if response.status >= 200:
            a.final = response.status
            a.ok = sent
            a.ok_interval = self.timers.t1
            a.ok_due = now + self.timers.t1
            a.ok_deadline = now + 64 * self.timers.t1
            if a.dialog is not None:
                a.dialog.handle(DialogEvent.SUCCESS)
            self._events.append(CallAnswered(call.ref))

    def _on_timeout(self, where: Where, event, now: float) -> None:
        found = self._by_tx.get((where, event.key))
        if found is None:
            return
        call, leg = found
        if not leg.uas and leg.final is None:
            leg.final = 408
            leg.ended = True
            if call.ended:
                self._forget(call)
            else:
                self._fail(call, "no answer from the callee side", now, status=408)

    # -- ending ---------------------------------------------------------------------------

    def _bye(self, leg: _Leg, now: float) -> None:
        leg.ended = True
        if leg.bye_done:
            return
        leg.bye_done = True
        if leg.dialog is None or leg.dialog.state is DialogState.TERMINATED:
            return
        try:
            bye = leg.dialog.create_request("BYE", local=self._local, branch=self.ids.branch())
        except LocalProtocolError:
            return
        self._send(leg.where, bye, now)

    def _close_leg(self, leg: _Leg | None, status: int, reason: str, now: float) -> None:
        if leg is None or leg.ended:
            return
        if leg.uas:
            leg.ok_due = leg.ok_deadline = None
            if leg.final is None:
                leg.final = status
                leg.ended = True
                self._respond(leg.where, leg.invite, status, reason, tag=leg.local_tag, now=now)
            elif 200 <= leg.final < 300:
                self._bye(leg, now)
            else:
                leg.ended = True
        elif leg.final is None:
            if leg.provisional:
                leg.ended = True
                self._send(leg.where, build_cancel(leg.invite), now)
            else:
                leg.cancel_pending = True  # RFC 3261 9.1: not before a provisional response
        elif 200 <= leg.final < 300:
            self._bye(leg, now)
        else:
            leg.ended = True

    def _fail(self, call: _Call, reason: str, now: float, status: int = 502) -> None:
        if call.ended:
            return
        self.stats["failed"] += 1
        self._end(call, reason, now, failed=True, status=status)

    def _end(self, call: _Call, reason: str, now: float, *, failed: bool = False, status: int = 502) -> None:
        if call.ended:
            return
        call.ended = True
        phrase = f"{_REASONS.get(status, 'Call Failed')} ({reason})"
        self._close_leg(call.a, status, phrase, now)
        self._close_leg(call.b, status, phrase, now)
        if not failed:
            self.stats["completed"] += 1
        self._events.append(CallEnded(call.ref, reason, failed))
        wall = self._wall_offset
        self.sink.record(CallRecord(
            call.ref, call.role, call.caller, call.callee, call.caller_principal, call.callee_principal,
            call.setup + wall, None if call.start is None else call.start + wall, now + wall,
            "completed" if not failed else reason, call.key.spi, call.key.suite.name, call.key.profile,
            call.key.subkey))
        self.calls.pop(call.ref, None)
        self._forget(call)

    def _forget(self, call: _Call) -> None:
        """Drop an ended call's lookups, except the b leg's INVITE while its final response is
        outstanding (a 2xx after our CANCEL must still be ACKed and hung up; Timer B bounds it)."""
        keep = call.b if call.b is not None and call.b.final is None else None
        for table in (self._by_tx, self._by_call_id):
            for k in [k for k, v in table.items() if v[0] is call and v[1] is not keep]:
                del table[k]


_REASONS = {403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 480: "Temporarily Unavailable",
            487: "Request Terminated", 500: "Server Internal Error", 502: "Bad Gateway"}
