"""The SC's signaling engine: SIP (RFC 3261) over each CTA's ESP channel, sans I/O.

One *channel* per CTA, named by the CTA's principal (the ticket's client name): the daemon opens
it when an SA pair is established (`open_channel`, with the identity read from the ticket),
passes every decrypted inner-UDP payload to `receive`, and protects what `datagrams_to_send`
returns with the channel's current outbound SA. A rekey does not touch the channel, so
registrations survive it; losing every SA of a CTA closes the channel (`close_channel`) and
drops its registrations.

Each channel has its own `common.sip.TransactionLayer` (retransmissions, absorbed duplicates,
4xx for malformed requests), so responses can never leave on another CTA's SA.

What the engine answers:

- REGISTER binds a line (the To AOR's number) to the channel. A provisioned CTA's ticket lists
  its authorized phone IDs (`common.asn1.kerbtel.find_authorized_phone_ids`): SHA-1 of the
  normalised number must be one of them, else 403. A restricted (unprovisioned) CTA may register
  no number (403); it keeps its channel and restrictions for calls to the CSR/emergency
  numbers. A ticket with neither element: 403 unless `allow_unlisted_numbers`. Expires 0 (or
  `Contact: *` with Expires 0) removes the binding; 0 < expires < `min_expires` is 423 with
  Min-Expires; longer than `max_expires` is shortened. A REGISTER without Contact is a query.
- OPTIONS: 200 (keep-alive). ACK: absorbed. Anything else: 405 with Allow.
- Calls: with a `call_handler` attached (`scd.calls.CallEngine` attaches itself), INVITE, ACK,
  BYE, CANCEL and INFO, the responses to the handler's requests and their timeouts go to it
  (`on_cta_request`, `on_cta_ack`, `on_cta_response`, `on_cta_timeout`), and closing a channel
  tells it (`on_channel_closed`) so it can tear that CTA's calls down.
- Malformed requests: the transaction layer's 4xx (`response_for_error`); unknown Require: 420.

Registrations expire (`RegistrationExpired`); with `keepalive_interval` > 0 the SC also sends
OPTIONS to channels holding registrations and drops those registrations when one times out.
The registration table (`registrations`: number -> `Registration`) is what calls will route on.

Nothing here reads a clock or touches a socket: every input takes `now` (monotonic seconds).
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Callable, Union

from common.config import Range
from common.sip.message import (
    NameAddr,
    SipParseError,
    SipRequest,
    SipUri,
    TelUri,
    check_request,
    make_response,
    response_for_error,
)
from common.sip.transaction import (
    AckReceived,
    MalformedMessage,
    RequestReceived,
    ResponseReceived,
    Timeout,
    TimerConfig,
    TransactionLayer,
    TransportError,
)
from common.sip.ua import IdGenerator, build_options

__all__ = [
    "ALLOWED_METHODS",
    "CtaIdentity",
    "KeepAliveLost",
    "MalformedRequest",
    "Registered",
    "RegisterRefused",
    "Registration",
    "RegistrationExpired",
    "SignalingConfig",
    "SignalingEngine",
    "Unregistered",
    "number_from_aor",
]

Address = tuple[str, int]
ALLOWED_METHODS = "REGISTER, OPTIONS"
CALL_METHODS = frozenset({"INVITE", "BYE", "CANCEL", "INFO"})
ALLOWED_WITH_CALLS = "REGISTER, OPTIONS, INVITE, ACK, BYE, CANCEL, INFO"


@dataclass(frozen=True)
class SignalingConfig:
    """The `[signaling]` table of scd's TOML."""

    domain: str = ""  # shown in OPTIONS keep-alives' Request-URI host; empty: "sc.invalid"
    sip_port: Annotated[int, Range(1, 65535)] = 5060  # inner UDP port of SIP on both ends
    min_expires: Annotated[int, Range(1, 86400)] = 60
    max_expires: Annotated[int, Range(1, 7 * 86400)] = 3600
    default_expires: Annotated[int, Range(1, 7 * 86400)] = 3600
    keepalive_interval: Annotated[float, Range(0, 86400)] = 0.0  # 0: the SC sends no OPTIONS
    allow_unlisted_numbers: bool = False  # tickets without phone IDs may register any number
    t1: Annotated[float, Range(0.01, 10)] = 0.5  # RFC 3261 T1 inside ESP

    def __post_init__(self) -> None:
        if self.min_expires > self.max_expires:
            raise ValueError("min_expires is larger than max_expires")


@dataclass(frozen=True)
class CtaIdentity:
    """What the ticket says about a CTA: its name, its authorized phone IDs, its restrictions."""

    principal: str
    phone_ids: frozenset[bytes] | None = None  # None: the ticket carries no phone-ID element
    restrictions: object | None = None  # KerbtelRestrictions of an unprovisioned CTA, else None

    @property
    def restricted(self) -> bool:
        return self.restrictions is not None


@dataclass
class Registration:
    number: str  # normalised E.164
    principal: str  # the channel (CTA) it is bound to
    contact: str
    expires_at: float
    call_id: str
    cseq: int


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    principal: str
    number: str
    expires: int
    refreshed: bool


@dataclass(frozen=True)
class Unregistered:
    principal: str
    number: str
    reason: str  # "removed" | "channel closed" | "taken over" | "keep-alive lost"


@dataclass(frozen=True)
class RegistrationExpired:
    principal: str
    number: str


@dataclass(frozen=True)
class RegisterRefused:
    principal: str
    status: int
    reason: str


@dataclass(frozen=True)
class MalformedRequest:
    principal: str
    reason: str
    responded: bool


@dataclass(frozen=True)
class KeepAliveLost:
    principal: str


Event = Union[Registered, Unregistered, RegistrationExpired, RegisterRefused, MalformedRequest, KeepAliveLost]


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


def number_from_aor(uri) -> str:
    """The E.164 number of an AOR (`sip:+15551230001@host`, `tel:+15551230001`), normalised.
    ValueError when the AOR names no such number."""
    from common.pki import normalise_phone_number

    if isinstance(uri, SipUri):
        user = (uri.user or "").split(";", 1)[0]
    elif isinstance(uri, TelUri):
        user = uri.number
    else:
        raise ValueError("the AOR is neither a sip: nor a tel: URI")
    if not user:
        raise ValueError("the AOR has no user part")
    return normalise_phone_number(user.replace("%2B", "+").replace("%2b", "+"))


@dataclass
class _Channel:
    identity: CtaIdentity
    layer: TransactionLayer
    source: Address = ("0.0.0.0", 5060)
    esp_source: Address | None = None  # the outer address its ESP comes from (Kerbtel-Esp-Peer)
    numbers: set[str] = field(default_factory=set)
    keepalive_due: float | None = None
    keepalive_key: object | None = None
    from_tag: str = ""
    call_id: str = ""
    cseq: int = 1


class SignalingEngine:
    """All CTA channels of one SC (see the module docstring)."""

    def __init__(self, config: SignalingConfig | None = None, *,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self.config = config or SignalingConfig()
        self.timers = TimerConfig(t1=self.config.t1, t2=max(4.0, self.config.t1), t4=5.0)
        self.ids = IdGenerator(rng)
        self.channels: dict[str, _Channel] = {}
        self.registrations: dict[str, Registration] = {}
        self._expiries: list[tuple[float, str, str]] = []  # (expires_at, number, call_id) heap
        self._out: list[tuple[str, bytes, int]] = []
        self._events: deque[Event] = deque()
        self.stats = {"requests": 0, "malformed": 0, "refused": 0, "options": 0}
        self.call_handler = None  # scd.calls.CallEngine, see the module docstring

    # -- channels -------------------------------------------------------------------------

    def open_channel(self, identity: CtaIdentity, now: float) -> None:
        """A CTA has an SA pair. Re-opening with a changed identity drops its registrations."""
        channel = self.channels.get(identity.principal)
        if channel is not None:
            if channel.identity != identity:
                self._drop_numbers(channel, "identity changed")
                channel.identity = identity
            return
        self.channels[identity.principal] = _Channel(
            identity, TransactionLayer(self.timers), from_tag=self.ids.tag(),
            call_id=self.ids.call_id(), cseq=self.ids.cseq())

    def close_channel(self, principal: str, reason: str = "channel closed") -> None:
        channel = self.channels.pop(principal, None)
        if channel is not None:
            self._drop_numbers(channel, reason)
            if self.call_handler is not None:
                self.call_handler.on_channel_closed(principal, reason)

    def registered_numbers(self, principal: str) -> set[str]:
        channel = self.channels.get(principal)
        return set(channel.numbers) if channel else set()

    @property
    def allowed_methods(self) -> str:
        return ALLOWED_METHODS if self.call_handler is None else ALLOWED_WITH_CALLS

    # -- outputs --------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[str, bytes, int]]:
        """(principal, SIP message, inner destination port) for each datagram to protect and send."""
        for principal, channel in self.channels.items():
            for data, address in channel.layer.datagrams_to_send():
                self._out.append((principal, data, address[1] or self.config.sip_port))
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [self._expiries[0][0]] if self._expiries else []
        for channel in self.channels.values():
            t = channel.layer.get_timer()
            if t is not None:
                deadlines.append(t)
            if channel.keepalive_due is not None:
                deadlines.append(channel.keepalive_due)
        return min(deadlines) if deadlines else None

    # -- inputs ---------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, number, call_id = heapq.heappop(self._expiries)
            reg = self.registrations.get(number)
            if reg is not None and reg.call_id == call_id and reg.expires_at <= now:
                del self.registrations[number]
                channel = self.channels.get(reg.principal)
                if channel is not None:
                    channel.numbers.discard(number)
                    self._update_keepalive(channel, now)
                self._events.append(RegistrationExpired(reg.principal, number))
        for principal, channel in list(self.channels.items()):
            if channel.keepalive_due is not None and channel.keepalive_due <= now:
                self._send_keepalive(channel, now)
            channel.layer.handle_timer(now)
            self._drain(principal, channel, now)

    def receive(self, principal: str, data: bytes, now: float, source: Address | None = None,
                esp_source: Address | None = None) -> None:
        """A decrypted SIP datagram from `principal`'s channel (`source`: outer host, inner port;
        `esp_source`: outer host and port of the ESP packet, where the CTA's ESP arrives)."""
        channel = self.channels.get(principal)
        if channel is None:
            raise KeyError(f"no signaling channel for {principal}")
        if source is not None:
            channel.source = source
        if esp_source is not None:
            channel.esp_source = esp_source
        channel.layer.receive_datagram(data, channel.source, now)
        self._drain(principal, channel, now)

    # -- internals ------------------------------------------------------------------------

    def _drain(self, principal: str, channel: _Channel, now: float) -> None:
        while (event := channel.layer.next_event()) is not None:
            handler = self.call_handler
            if isinstance(event, RequestReceived):
                self.stats["requests"] += 1
                if handler is not None and event.request.method in CALL_METHODS:
                    handler.on_cta_request(principal, event, now)
                else:
                    self._on_request(channel, event.request, now)
            elif isinstance(event, AckReceived):
                if handler is not None:
                    handler.on_cta_ack(principal, event, now)
            elif isinstance(event, MalformedMessage):
                self.stats["malformed"] += 1
                self._events.append(MalformedRequest(principal, event.error.reason, event.responded))
            elif isinstance(event, ResponseReceived):
                if event.key == channel.keepalive_key:
                    if event.response.status >= 200:
                        channel.keepalive_key = None
                elif handler is not None:
                    handler.on_cta_response(principal, event, now)
            elif isinstance(event, (Timeout, TransportError)):
                if isinstance(event, Timeout) and event.key == channel.keepalive_key:
                    channel.keepalive_key = None
                    self._drop_numbers(channel, "keep-alive lost")
                    self._events.append(KeepAliveLost(principal))
                elif handler is not None:
                    handler.on_cta_timeout(principal, event, now)

    def _respond(self, channel: _Channel, request: SipRequest, status: int, reason: str | None = None,
                 headers: tuple[tuple[str, str], ...] = (), now: float = 0.0) -> None:
        tag = self.ids.tag() if request.to.tag is None else None
        channel.layer.send_response(make_response(request, status, reason, to_tag=tag, headers=headers), now)

    def _on_request(self, channel: _Channel, request: SipRequest, now: float) -> None:
        principal = channel.identity.principal
        try:
            check_request(request)
            if request.method == "REGISTER":
                status, headers = self._register(channel, request, now)
                self._respond(channel, request, status, headers=headers, now=now)
            elif request.method == "OPTIONS":
                self.stats["options"] += 1
                self._respond(channel, request, 200, headers=(("Allow", self.allowed_methods),
                                                              ("Accept", "application/sdp")), now=now)
            else:
                raise _Refusal(405, "Method Not Allowed", (("Allow", self.allowed_methods),))
        except SipParseError as exc:  # a header that only failed when we read it, or 420
            self.stats["malformed"] += 1
            response = response_for_error(request, exc)
            if response is not None:
                channel.layer.send_response(response, now)
            self._events.append(MalformedRequest(principal, exc.reason, response is not None))
        except _Refusal as exc:
            self.stats["refused"] += 1
            if request.method == "REGISTER":
                self._events.append(RegisterRefused(principal, exc.status, exc.reason))
            self._respond(channel, request, exc.status, exc.reason, exc.headers, now)

    def _register(self, channel: _Channel, request: SipRequest, now: float) -> tuple[int, tuple]:
        identity = channel.identity
        cfg = self.config
        try:
            number = number_from_aor(request.to.uri)
        except ValueError:
            raise _Refusal(403, "Forbidden (not an E.164 number)") from None
        if identity.restricted:
            raise _Refusal(403, "Forbidden (unprovisioned CTA: no line may be registered)")
        if identity.phone_ids is None:
            if not cfg.allow_unlisted_numbers:
                raise _Refusal(403, "Forbidden (the ticket lists no phone IDs)")
        else:
            from common.pki import phone_id

            if phone_id(number) not in identity.phone_ids:
                raise _Refusal(403, "Forbidden (number not authorized for this CTA)")
        contacts = request.contacts
        header_expires = request.expires
        current = self.registrations.get(number)
        if request.contact_star:
            if header_expires != 0:
                raise SipParseError("Contact: * needs Expires: 0", header="Contact")
            self._unbind(number, principal=identity.principal, reason="removed")
            return 200, ()
        if not contacts:  # a query
            if current is not None and current.principal == identity.principal:
                left = max(0, int(current.expires_at - now))
                return 200, (("Contact", f"{current.contact};expires={left}"),)
            return 200, ()
        contact = contacts[-1]
        expires = contact.expires if contact.expires is not None else header_expires
        if expires is None:
            expires = cfg.default_expires
        if expires == 0:
            self._unbind(number, principal=identity.principal, reason="removed")
            return 200, ()
        if expires < cfg.min_expires:
            raise _Refusal(423, "Interval Too Brief", (("Min-Expires", str(cfg.min_expires)),))
        expires = min(expires, cfg.max_expires)
        call_id, cseq = request.call_id, request.cseq.seq
        refreshed = current is not None and current.principal == identity.principal
        if refreshed and current.call_id == call_id and cseq <= current.cseq:
            raise _Refusal(500, "Server Internal Error (CSeq out of order)")
        if current is not None and current.principal != identity.principal:
            self._unbind(number, principal=current.principal, reason="taken over")
        contact_uri = f"<{contact.uri}>"
        self.registrations[number] = Registration(number, identity.principal, contact_uri, now + expires, call_id, cseq)
        heapq.heappush(self._expiries, (now + expires, number, call_id))
        channel.numbers.add(number)
        self._update_keepalive(channel, now)
        self._events.append(Registered(identity.principal, number, expires, refreshed))
        return 200, (("Contact", f"{contact_uri};expires={expires}"), ("Expires", str(expires)))

    def _unbind(self, number: str, *, principal: str, reason: str) -> None:
        reg = self.registrations.get(number)
        if reg is None or reg.principal != principal:
            return
        del self.registrations[number]
        channel = self.channels.get(principal)
        if channel is not None:
            channel.numbers.discard(number)
        self._events.append(Unregistered(principal, number, reason))

    def _drop_numbers(self, channel: _Channel, reason: str) -> None:
        for number in sorted(channel.numbers):
            self._unbind(number, principal=channel.identity.principal, reason=reason)
        channel.numbers.clear()
        channel.keepalive_due = None

    def _update_keepalive(self, channel: _Channel, now: float) -> None:
        interval = self.config.keepalive_interval
        if interval <= 0 or not channel.numbers:
            channel.keepalive_due = None
        elif channel.keepalive_due is None:
            channel.keepalive_due = now + interval

    def _send_keepalive(self, channel: _Channel, now: float) -> None:
        channel.keepalive_due = now + self.config.keepalive_interval
        if channel.keepalive_key is not None:
            return  # the previous one is still pending (its Timer F decides)
        host = self.config.domain or "sc.invalid"
        target = SipUri(host=channel.source[0], port=channel.source[1])
        channel.cseq += 1
        request = build_options(
            target, from_=NameAddr(SipUri(host=host)).with_tag(channel.from_tag), call_id=channel.call_id,
            cseq=channel.cseq, local=(host, self.config.sip_port), branch=self.ids.branch())
        channel.keepalive_key = channel.layer.send_request(request, channel.source, now)
