"""SC-to-SC links (issue 5, "Call setup"): a signaling controller reaching a peer SC over ESP.

Each SC authenticates to kdcd with its own long-term key (PA-ENC-TIMESTAMP, from its keytab) and
gets a ticket for the peer SC straight from the AS exchange; it then runs the pktc AP exchange
with the peer's `ScKeyManager` as the initiator (`ctad.km.CtaKeyManager`, which has nothing
CTA-specific), and the result is an ESP SA pair for SIP between the two SCs. Rekeys, Wake Ups,
retransmissions and expiry are the initiator's, exactly as for a CTA (docs/protocol.md, "Key
management (pktc)"); the initiator's SPI (`local_spi` here) is the SPI of packets peer -> us.

`PeerLink` is sans-I/O. Inputs: `start(now, wallclock)`, `receive_kdc(exchange, data, ...)` or
`kdc_failed(exchange, reason, ...)` for each `KdcRequest` event (the daemon sends the bytes to
the KDC, e.g. `common.krb5client.send_to_kdc`, and reports the reply or the failure with the
request's `exchange` number; stale numbers are ignored), `receive_km(data, ...)` for pktc
datagrams from the peer's km address, `handle_timer(now, wallclock)`. Outputs: returned event
lists, `get_timer()`, and `inbound_sa(spi)` / `outbound_sa()` for the ESP path. `now` is
monotonic seconds, `wallclock` an aware UTC datetime.

Tickets: a new AS exchange runs `renew_before` seconds before the ticket ends (the SA pair keeps
working meanwhile), at once after a ticket problem reported by the peer (expired ticket, new
peer key version...), and with backoff (`kdc_retry_initial` doubling up to `kdc_retry_max`,
+-10 % jitter) after a KDC error or an unreachable KDC.

Which side initiates: one SA pair per pair of SCs is enough (the responder sends on the pair its
`ScKeyManager` holds once acknowledged). `should_initiate()` picks the SC whose principal sorts
first unless the configuration says otherwise; the responder that needs the link before the
initiator made it calls `ScKeyManager.wake_up(peer km address)`, which this engine answers with
an AP exchange. On the responder, an `SaEstablished` whose client is a configured peer's
principal (`peer_for_client`) is an SC trunk, never a CTA.

Configuration (`PeeringConfig`, for scd's TOML as a `[peering]` table):

    [peering]
    kdc = "127.0.0.1:88"             # where this SC gets its tickets for peers
    ticket_lifetime = 36000          # seconds asked for
    renew_before = 300               # new ticket this long before the old one ends

    [[peering.peers]]
    name = "sc2"
    principal = "sc/sc2.example.test@EXAMPLE.TEST"
    km = "127.0.0.1:1293"            # the peer's pktc port
    esp = "127.0.0.1:4500"           # the peer's ESP port
    initiate = "auto"                # "auto" (lower principal initiates), "yes" or "no"
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Callable, Iterable, Literal

from common.config import HostPort, Range
from common.esp import EspSa, Suite
from common.krb5client import AsClientConfig, AsExchange, AsResult, KeyIdentity, KrbClientError
from common.principal import Principal, PrincipalSyntaxError
from ctad.km import CtaKeyManager, KeyManagementFailed, SaEstablished, SaExpired, SendTo
from scd.km import DEFAULT_SUITES

__all__ = [
    "KdcRequest",
    "PeerLink",
    "PeerLinkProblem",
    "PeerSaEstablished",
    "PeerSaExpired",
    "PeerScConfig",
    "PeeringConfig",
    "SendKm",
    "TicketObtained",
    "is_initiator_message",
    "peer_for_client",
    "should_initiate",
]

# pktc message ids an initiator takes (Wake Up, AP Reply, Rekey, Error Reply); a responder
# (ScKeyManager) takes AP Request (0x02) and SA Recovered (0x04).
_INITIATOR_MESSAGES = frozenset({0x01, 0x03, 0x05, 0x06})


# --- configuration ------------------------------------------------------------------------------


def _principal(text: str) -> str:
    try:
        principal = Principal.parse(text)
    except PrincipalSyntaxError as exc:
        raise ValueError(str(exc)) from None
    if not principal.realm:
        raise ValueError(f"{text!r} names no realm")
    return text


@dataclass(frozen=True)
class PeerScConfig:
    """One peer signaling controller."""

    name: str
    principal: str = field(metadata={"validate": _principal})
    km: HostPort
    esp: HostPort
    initiate: Literal["auto", "yes", "no"] = "auto"

    def __post_init__(self) -> None:
        if not self.name or not self.name.isprintable():
            raise ValueError("a peer needs a printable name")

    @property
    def principal_object(self) -> Principal:
        return Principal.parse(self.principal)


@dataclass(frozen=True)
class PeeringConfig:
    """The `[peering]` table: the KDC, ticket timing and the peer SCs."""

    kdc: HostPort | None = None
    peers: list[PeerScConfig] = field(default_factory=list)
    ticket_lifetime: Annotated[int, Range(300, 7 * 86400)] = 36000
    renew_before: Annotated[int, Range(10, 86400)] = 300
    kdc_timeout: Annotated[float, Range(0.1, 120)] = 10.0
    kdc_retry_initial: Annotated[float, Range(0.1, 3600)] = 1.0
    kdc_retry_max: Annotated[float, Range(0.1, 86400)] = 60.0

    def __post_init__(self) -> None:
        names = [p.name for p in self.peers]
        if len(set(names)) != len(names):
            raise ValueError("two peers have the same name")
        principals = [Principal.parse(p.principal) for p in self.peers]
        if len({(p.components, p.realm) for p in principals}) != len(principals):
            raise ValueError("two peers have the same principal")
        if self.peers and self.kdc is None:
            raise ValueError("peers need a kdc address to get their tickets from")
        if self.renew_before * 2 > self.ticket_lifetime:
            raise ValueError("renew_before must be at most half of ticket_lifetime")
        if self.kdc_retry_initial > self.kdc_retry_max:
            raise ValueError("kdc_retry_initial is larger than kdc_retry_max")


def should_initiate(local: Principal, peer: PeerScConfig) -> bool:
    """Whether this SC runs the AP exchange to `peer` (one SA pair per pair of SCs)."""
    if peer.initiate != "auto":
        return peer.initiate == "yes"
    return str(local) < str(peer.principal_object)


def peer_for_client(peers: Iterable[PeerScConfig], client: Principal) -> PeerScConfig | None:
    """The configured peer SC whose principal is `client` (an SA from the responder side)."""
    for peer in peers:
        if peer.principal_object.same_name(client):
            return peer
    return None


def is_initiator_message(data: bytes) -> bool:
    """Whether a pktc datagram is for an initiator (PeerLink) rather than the ScKeyManager."""
    return len(data) >= 1 and data[0] in _INITIATOR_MESSAGES


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KdcRequest:
    """Send `data` to the KDC; report with `receive_kdc(exchange, reply)` or `kdc_failed(exchange, ...)`."""

    peer: str
    exchange: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SendKm:
    """A pktc datagram for the peer SC's km address."""

    peer: str
    address: tuple
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class TicketObtained:
    peer: str
    server: Principal
    endtime: datetime
    mode: str


@dataclass(frozen=True, slots=True)
class PeerSaEstablished:
    """inbound: peer -> us (SPI `local_spi`); outbound: us -> peer (SPI `remote_spi`)."""

    peer: str
    inbound: EspSa
    outbound: EspSa
    local_spi: int
    remote_spi: int
    suite: Suite
    expires_at: float
    rekey: bool
    subkey: bytes = field(repr=False, default=b"")  # for the opt-in key log only


@dataclass(frozen=True, slots=True)
class PeerSaExpired:
    peer: str
    local_spi: int
    remote_spi: int


@dataclass(frozen=True, slots=True)
class PeerLinkProblem:
    """Something failed; the engine retries by itself (`retry_at` monotonic, None: the pktc
    initiator keeps retransmitting). `code` is a KRB-ERROR code when there is one."""

    peer: str
    stage: str  # 'kdc' or 'km'
    code: int | None
    text: str
    retry_at: float | None


# --- the engine ---------------------------------------------------------------------------------


class PeerLink:
    """The initiator side of one SC-to-SC link. `keys`: this SC's long-term keys (its keytab);
    `local`: this SC's principal; `peer`: the peer's configuration. `suites`: offered ESP suites in
    order. `spi_in_use(spi)`: SPIs the SC's own ScKeyManager holds (they share the ESP socket).
    `km_options`: further CtaKeyManager keyword arguments (retransmission, replay window...)."""

    def __init__(
        self,
        local: Principal,
        keys: KeyIdentity,
        peer: PeerScConfig,
        *,
        realm: str | None = None,
        suites: Iterable[Suite] = DEFAULT_SUITES,
        ticket_lifetime: int = 36000,
        renew_before: int = 300,
        kdc_retry_initial: float = 1.0,
        kdc_retry_max: float = 60.0,
        rng: Callable[[int], bytes] = os.urandom,
        spi_in_use: Callable[[int], bool] | None = None,
        km_options: dict | None = None,
    ) -> None:
        self.local = local
        self.keys = keys
        self.peer = peer
        self.name = peer.name
        self.remote = peer.principal_object
        self.realm = realm or local.realm
        self.suites = tuple(suites)
        self.ticket_lifetime = ticket_lifetime
        self.renew_before = renew_before
        self.kdc_retry_initial = kdc_retry_initial
        self.kdc_retry_max = kdc_retry_max
        self.rng = rng
        self.spi_in_use = spi_in_use
        self.km_options = dict(km_options or {})
        self.km_address = tuple(peer.km)
        self.stats: Counter[str] = Counter()
        self.km: CtaKeyManager | None = None
        self.ticket: AsResult | None = None
        self._ids = itertools.count(1)
        self._exchange: AsExchange | None = None
        self._exchange_id = 0
        self._kdc_retry_at: float | None = None
        self._kdc_interval = kdc_retry_initial
        self._renew_at: float | None = None
        self._km_needs_ticket = True  # (re)start the AP exchange when the next ticket arrives
        # Validated now, so a bad configuration fails at start-up rather than at the first ticket.
        self._as_config()

    # --- state and lookups ---

    @property
    def state(self) -> str:
        if self.km is not None and self.km.state == "established":
            return "established"
        if self.ticket is None:
            return "getting-ticket" if self._exchange is not None else "idle"
        return "connecting"

    def inbound_sa(self, spi: int) -> EspSa | None:
        return self.km.inbound_sa(spi) if self.km is not None else None

    def outbound_sa(self) -> EspSa | None:
        return self.km.outbound_sa() if self.km is not None else None

    def get_timer(self) -> float | None:
        times = [t for t in (self._kdc_retry_at, self._renew_at) if t is not None]
        if self.km is not None:
            km_timer = self.km.get_timer()
            if km_timer is not None:
                times.append(km_timer)
        return min(times) if times else None

    # --- inputs ---

    def start(self, now: float, wallclock: datetime) -> list:
        """Get a ticket for the peer (then the AP exchange follows by itself)."""
        return self._begin_as(wallclock)

    def receive_kdc(self, exchange: int, data: bytes, now: float, wallclock: datetime) -> list:
        if self._exchange is None or exchange != self._exchange_id:
            self.stats["kdc_stale_reply"] += 1
            return []
        try:
            step = self._exchange.receive(data, wallclock=wallclock)
        except KrbClientError as exc:
            return self._kdc_problem(now, exc.code, str(exc))
        if not isinstance(step, AsResult):
            self._exchange_id = next(self._ids)
            return [KdcRequest(self.name, self._exchange_id, step.request)]
        return self._on_ticket(step, now, wallclock)

    def kdc_failed(self, exchange: int, reason: str, now: float, wallclock: datetime) -> list:
        """The KDC could not be reached (connection refused, timeout...) for that request."""
        if self._exchange is None or exchange != self._exchange_id:
            return []
        return self._kdc_problem(now, None, f"KDC unreachable: {reason}")

    def receive_km(self, data: bytes, now: float, wallclock: datetime) -> list:
        if self.km is None:
            self.stats["km_before_ticket"] += 1
            if self.ticket is None and self._exchange is None and len(data) >= 1 and data[0] == 0x01:
                return self._begin_as(wallclock)  # a Wake Up while idle: get going
            return []
        return self._translate(self.km.receive(data, now, wallclock), now, wallclock)

    def handle_timer(self, now: float, wallclock: datetime) -> list:
        events: list = []
        if self._kdc_retry_at is not None and self._kdc_retry_at <= now:
            self._kdc_retry_at = None
            events += self._begin_as(wallclock)
        if self._renew_at is not None and self._renew_at <= now:
            self._renew_at = None
            self.stats["ticket_renewal"] += 1
            if self._exchange is None:
                events += self._begin_as(wallclock)
        if self.km is not None:
            events += self._translate(self.km.handle_timer(now, wallclock), now, wallclock)
        return events

    # --- internals ---

    def _as_config(self) -> AsClientConfig:
        import datetime as _dt

        return AsClientConfig(
            identity=self.keys, client=self.local, realm=self.realm, service=self.remote,
            lifetime=_dt.timedelta(seconds=self.ticket_lifetime),
        )

    def _begin_as(self, wallclock: datetime) -> list:
        self._exchange = AsExchange(self._as_config())
        self._exchange_id = next(self._ids)
        self.stats["as_exchange"] += 1
        return [KdcRequest(self.name, self._exchange_id, self._exchange.start(wallclock=wallclock))]

    def _kdc_problem(self, now: float, code: int | None, text: str) -> list:
        self._exchange = None
        self.stats["kdc_failed"] += 1
        jitter = (self.rng(1)[0] / 255.0 - 0.5) * 0.2 * self._kdc_interval
        self._kdc_retry_at = now + self._kdc_interval + jitter
        self._kdc_interval = min(self._kdc_interval * 2, self.kdc_retry_max)
        return [PeerLinkProblem(self.name, "kdc", code, text, self._kdc_retry_at)]

    def _on_ticket(self, result: AsResult, now: float, wallclock: datetime) -> list:
        self._exchange = None
        self._kdc_interval = self.kdc_retry_initial
        self.ticket = result
        remaining = (result.endtime - wallclock).total_seconds()
        self._renew_at = now + max(remaining - self.renew_before, remaining / 2, 1.0)
        self.stats["ticket"] += 1
        events: list = [TicketObtained(self.name, result.server, result.endtime, result.mode)]
        if self.km is None:
            options = {"suites": self.suites, "rng": self.rng, "sc_address": self.km_address,
                       "spi_in_use": self.spi_in_use, **self.km_options}
            self.km = CtaKeyManager(self.local, self.remote, result.ticket, result.session_key, **options)
        else:
            self.km.set_ticket(result.ticket, result.session_key)
        if self._km_needs_ticket:
            self._km_needs_ticket = False
            events += self._translate(self.km.start(now, wallclock), now, wallclock)
        return events

    def _translate(self, km_events: list, now: float, wallclock: datetime) -> list:
        out: list = []
        for event in km_events:
            if isinstance(event, SendTo):
                out.append(SendKm(self.name, self.km_address, event.data))
            elif isinstance(event, SaEstablished):
                self.stats["sa_established"] += 1
                out.append(PeerSaEstablished(self.name, event.inbound, event.outbound, event.cta_spi, event.sc_spi,
                                             event.suite, event.expires_at, event.rekey, event.subkey))
            elif isinstance(event, SaExpired):
                out.append(PeerSaExpired(self.name, event.cta_spi, event.sc_spi))
            elif isinstance(event, KeyManagementFailed):
                self.stats["km_failed"] += 1
                out.append(PeerLinkProblem(self.name, "km", event.code, event.text,
                                           None if not event.ticket_problem else now))
                if event.ticket_problem:
                    # The peer cannot use this ticket (expired, its key changed...): a new one,
                    # then a new AP exchange.
                    self._km_needs_ticket = True
                    self._renew_at = None
                    if self._exchange is None:
                        out += self._begin_as(wallclock)
            else:  # pragma: no cover - CtaKeyManager has no other events
                out.append(event)
        return out
