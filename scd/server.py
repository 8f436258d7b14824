"""scd's network adapters: the key-management port (pktc) and the ESP port around the engines.

Thin on purpose. Two UDP sockets:

- **km** (default 1293, Wireshark's pktc port): every datagram goes to
  `scd.km.ScKeyManager.receive(data, peer, now=, wallclock=)`; its `SendTo` events leave from
  this socket; `SaEstablished` opens (or refreshes) the CTA's signaling channel; `SaExpired`
  closes it once the engine holds no SA for that peer.
- **esp** (default 4500, RFC 3948's port, which tshark decodes as udpencap without options): the
  SPI (first 4 bytes) selects the SA (`km.inbound_sa(spi)`); the inner UDP payload goes to
  `scd.signaling.SignalingEngine.receive(principal, ...)`. What the signaling engine sends is
  protected with `km.outbound_sa(peer)` and leaves from this socket to the CTA's address (the one
  its key-management messages came from; a CTA uses one socket for both).

A CTA sends km and ESP from one socket, so the SA's peer is one address. ESP on an unknown SPI
(typically: scd restarted and lost its SAs) is answered with a Wake Up (rate-limited, from the km
port) so the CTA re-keys at once instead of waiting for its keep-alive to time out.

Unknown-SPI, format, ICV and replay failures are counted (`Counters`) and logged at debug only.
One asyncio timer is re-armed after every input from min(km.get_timer(), signaling.get_timer()).
SIGHUP re-reads the keytab (new kvnos are accepted, SAs are kept). The opt-in key log
(`[key_log] path`) gets one JSON line per SA direction and per AP-REP sub-key.

Calls and peering (`[calls]`, `[peering]`, `[li]`; docs/operations.md, "Calls and peering in
scd"): with `[calls]` a `scd.calls.CallEngine` is attached to the signaling engine. Each peer SC
of `[peering]` is reached over an SA pair of its own, which exactly one of the two SCs makes
(`scd.peers.should_initiate`):

- initiator side: a `scd.peers.PeerLink` per peer. Its `KdcRequest`s run as asyncio tasks
  (`common.krb5client.send_to_kdc`, reply or failure fed back with the exchange number); its
  pktc datagrams leave from the km socket to the peer's km address, and pktc datagrams *from*
  that address that an initiator takes (`is_initiator_message`) go back to the link. Its SA pair
  (`inbound_sa(spi)` / `outbound_sa()`) is looked up after the ScKeyManager's.
- responder side: the peer's AP Request reaches our ScKeyManager like a CTA's; an
  `SaEstablished` whose client is a configured peer (`peer_for_client`) is that peer's trunk and
  never opens a CTA channel. A responder wakes the initiator up (a Wake Up to its km address) at
  start and whenever it has SIP for the peer but no SA.

ESP carrying a peer's SIP goes to `CallEngine.receive_peer(name, ...)`; what
`peer_datagrams_to_send()` returns is protected with that peer's outbound SA and sent to the
peer's configured ESP address (an SC's km and ESP ports differ, unlike a CTA's). With `[li]`
every ended call is one record in a `common.li.InterceptStore` (encrypted to the intercept
public key). Call set-up, refusals and ends are info log lines (reasons, never keys).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from datetime import datetime, timezone
from typing import Any

import structlog

from common.asn1 import decode_as
from common.asn1.kerbtel import AD_KERBTEL_PHONE_IDS, KerbtelAuthorizedPhoneIds
from common.config import HostPort
from common.daemon import EngineTimer
from common.esp import EspError, EspIcvError, EspReplayError, NEXT_HEADER_UDP, inner_udp, is_esp, parse_inner_udp
from common.logsetup import Counters, get_logger

from scd.config import ScdConfig, load_scd_config
from common.keylog import KeyLog
from scd.signaling import (
    CtaIdentity,
    KeepAliveLost,
    MalformedRequest,
    Registered,
    RegisterRefused,
    RegistrationExpired,
    SignalingEngine,
    Unregistered,
)

__all__ = ["ScServer", "identity_from_event"]

log = get_logger("scd.server")
km_log = get_logger("scd.km")
esp_log = get_logger("scd.esp")
sip_log = get_logger("scd.sip")
call_log = get_logger("scd.calls")
peer_log = get_logger("scd.peers")

MAX_DATAGRAM = 4096  # km messages and signaling stay far below; asyncio's default reads 256 KiB
WALLCLOCK_REFRESH = 30.0  # seconds between CallEngine.set_wallclock calls (clock steps, drift)


def _peer_text(peer: Any) -> str:
    return str(HostPort(str(peer[0]), int(peer[1])))


def identity_from_event(event: Any) -> CtaIdentity:
    """The signaling identity of a CTA from an `SaEstablished`: principal, phone IDs, restrictions.
    A malformed phone-ID element fails closed (no number may be registered)."""
    phone_ids: frozenset[bytes] | None = None
    for ad_type, data in getattr(event, "authorization_data", ()):
        if ad_type == AD_KERBTEL_PHONE_IDS:
            try:
                value = decode_as(KerbtelAuthorizedPhoneIds, data)
                ids = frozenset(bytes(p) for p in value["phone-ids"].native)
            except Exception:  # noqa: BLE001 - fail closed on anything malformed
                ids = frozenset()
            phone_ids = ids if phone_ids is None else phone_ids | ids
    return CtaIdentity(str(event.client), phone_ids, event.restrictions)


class _TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.stamp = rate, rate, None

    def take(self, now: float) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class _InterceptSink:
    """The CallEngine's sink with `[li]`: one encrypted record per call; a failed write is logged
    (the call has already ended; the SC cannot undo it) and counted."""

    def __init__(self, store, counters: Counters) -> None:
        self.store = store
        self.counters = counters

    def record(self, record) -> None:
        from common.li import LiError

        try:
            self.store.record(record)
        except (OSError, LiError) as exc:
            self.counters.count("li_failed")
            call_log.error("intercept record not written", call_id=record.call_id, error=str(exc))
        else:
            self.counters.count("li_records")


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, handler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if hasattr(transport, "max_size"):  # the standard loop's transport reads 256 KiB otherwise
            transport.max_size = MAX_DATAGRAM  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr) -> None:
        self.handler(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP errors from earlier sends
        log.debug("udp error", error=str(exc))


class ScServer:
    """The scd service: both sockets, both engines, one timer. `status()` for systemd."""

    name = "scd"

    def __init__(self, cfg: ScdConfig, *, config_path: str | os.PathLike[str] | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.counters = Counters(
            "ap_exchanges", "km_refused", "rekeys", "sa_expired", "esp_in", "esp_out", "esp_unknown_spi",
            "esp_icv_failed", "esp_replayed", "esp_format", "esp_no_outbound", "registered", "register_refused",
            "sip_malformed", "wake_ups", "peer_sas", "peer_esp_in", "peer_esp_out", "peer_no_sa", "peer_problems",
            "li_records", "li_failed",
        )
        self.km = None
        self.signaling: SignalingEngine | None = None
        self.calls = None  # scd.calls.CallEngine with [calls]
        self.links: dict[str, Any] = {}  # peer name -> scd.peers.PeerLink (we initiate)
        self.peers = {p.name: p for p in cfg.peering.peers}
        self._peer_by_km = {(p.km.host, p.km.port): p.name for p in cfg.peering.peers}
        self._peer_by_esp = {(p.esp.host, p.esp.port): p.name for p in cfg.peering.peers}
        self._responder_addr: dict[str, tuple] = {}  # peer name -> the km address its SA pair is keyed on
        self._kdc_tasks: set[asyncio.Task] = set()
        self._wall_due: float | None = None
        self.key_log = KeyLog(cfg.key_log.path, "scd")
        self._km: _Udp | None = None
        self._esp: _Udp | None = None
        self._timer = EngineTimer(self._on_timer)
        self._principal_by_peer: dict[tuple, str] = {}
        self._peer_by_principal: dict[str, tuple] = {}
        self._wake_bucket = _TokenBucket(20.0)
        self.km_address: HostPort | None = None
        self.esp_address: HostPort | None = None

    # -- Service protocol -------------------------------------------------------------------

    def _build_km(self, keytab):
        from common.principal import Principal
        from scd.km import ScKeyManager

        sc = self.cfg.sc
        return ScKeyManager(
            Principal.parse(sc.principal), keytab, suites_preference=sc.suite_objects, sa_lifetime=sc.sa_lifetime,
            grace_period=min(sc.grace_period, sc.sa_lifetime - 1), ack_required=sc.ack_required,
            max_skew=sc.max_skew, replay_cache_size=sc.replay_cache_size, replay_window=sc.replay_window,
        )

    async def start(self) -> None:
        from common.keytab import Keytab

        self.loop = asyncio.get_running_loop()
        keytab = Keytab.load(self.cfg.sc.keytab)
        self.km = self._build_km(keytab)
        self.signaling = SignalingEngine(self.cfg.signaling)
        loop = self.loop
        km_addr, esp_addr = self.cfg.listen.km, self.cfg.listen.esp
        _, self._km = await loop.create_datagram_endpoint(lambda: _Udp(self._on_km), local_addr=(km_addr.host, km_addr.port))
        try:
            _, self._esp = await loop.create_datagram_endpoint(lambda: _Udp(self._on_esp), local_addr=(esp_addr.host, esp_addr.port))
        except BaseException:
            self._km.transport.close()
            raise
        self.km_address = HostPort(*self._km.transport.get_extra_info("sockname")[:2])
        self.esp_address = HostPort(*self._esp.transport.get_extra_info("sockname")[:2])
        log.info("listening", km=str(self.km_address), esp=str(self.esp_address), principal=self.cfg.sc.principal,
                 suites=list(self.cfg.sc.suites), sa_log_file=str(self.cfg.key_log.path) if self.key_log.enabled else None)
        self._start_calls_and_peers(keytab)

    def _start_calls_and_peers(self, keytab) -> None:
        from common.krb5client import KeyIdentity
        from common.principal import Principal
        from scd.calls import CallEngine
        from scd.peers import PeerLink, should_initiate

        now = self.loop.time()
        wallclock = datetime.now(timezone.utc)
        if self.cfg.calls is not None:
            sink = None
            if self.cfg.li is not None:
                from common.li import InterceptStore, load_public_key

                store = InterceptStore(self.cfg.li.store, load_public_key(self.cfg.li.public_key), sc=self.cfg.sc.principal)
                sink = _InterceptSink(store, self.counters)
            self.calls = CallEngine(self.signaling, self.cfg.calls, sink=sink)
            self.calls.set_wallclock(time.time(), now)
            self._wall_due = now + WALLCLOCK_REFRESH
            for peer in self.cfg.peering.peers:
                self.calls.add_peer(peer.name)
            call_log.info("calls on", owned=list(self.cfg.calls.owned), routes=dict(self.cfg.calls.routes),
                          aliases=dict(self.cfg.calls.aliases), esp_suite=self.cfg.calls.esp_suite,
                          media_profile=self.cfg.calls.media_profile, li=self.cfg.li is not None)
        local = Principal.parse(self.cfg.sc.principal)
        peering = self.cfg.peering
        for peer in peering.peers:
            if should_initiate(local, peer):
                link = PeerLink(
                    local, KeyIdentity.from_keytab(keytab, local), peer, suites=self.cfg.sc.suite_objects,
                    ticket_lifetime=peering.ticket_lifetime, renew_before=peering.renew_before,
                    kdc_retry_initial=peering.kdc_retry_initial, kdc_retry_max=peering.kdc_retry_max,
                    spi_in_use=self._spi_in_use)
                self.links[peer.name] = link
                peer_log.info("peer link starting", peer=peer.name, principal=peer.principal, role="initiator",
                              km=str(peer.km), esp=str(peer.esp), kdc=str(peering.kdc))
                self._link_events(link.start(now, wallclock), now)
            else:
                # The initiator may have given up waiting for us (its AP Requests back off): tell it
                # we are here. A Wake Up costs it one AP exchange at most every few seconds.
                peer_log.info("peer link waiting", peer=peer.name, principal=peer.principal, role="responder",
                              km=str(peer.km), esp=str(peer.esp))
                self._wake_peer(peer.name, now, wallclock, reason="scd started")
        self._rearm()

    def _spi_in_use(self, spi: int) -> bool:
        return self.km.inbound_sa(spi) is not None or any(
            link.inbound_sa(spi) is not None for link in self.links.values())

    async def stop(self) -> None:
        self._timer.cancel()
        for task in list(self._kdc_tasks):
            task.cancel()
        for proto in (self._esp, self._km):
            if proto is not None and proto.transport is not None:
                proto.transport.close()

    async def reload(self) -> None:
        """SIGHUP: re-read the keytab (new kvnos); SAs and registrations are kept."""
        from common.keytab import Keytab

        cfg = load_scd_config(self.config_path) if self.config_path else self.cfg
        keytab = Keytab.load(cfg.sc.keytab)
        kvnos = self.km.update_keytab(keytab)  # SAs are kept
        if self.links:
            from common.krb5client import KeyIdentity
            from common.principal import Principal

            identity = KeyIdentity.from_keytab(keytab, Principal.parse(cfg.sc.principal))
            for link in self.links.values():
                link.keys = identity  # the next AS exchange uses the new key
        log.info("keytab reloaded", keytab=str(cfg.sc.keytab), kvnos=kvnos)

    def status(self) -> str:
        regs = len(self.signaling.registrations) if self.signaling else 0
        sc_addresses = set(self._responder_addr.values())
        peers = len([p for p in self.km.peers() if p not in sc_addresses]) if self.km else 0
        c = self.counters
        text = (f"{peers} CTAs keyed, {regs} lines registered; ap={c['ap_exchanges']} refused={c['km_refused']} "
                f"esp_in={c['esp_in']} icv_failed={c['esp_icv_failed']} replayed={c['esp_replayed']} "
                f"unknown_spi={c['esp_unknown_spi']}")
        if self.calls is not None:
            st = self.calls.stats
            text += (f"; calls={st['calls']} calls_active={len(self.calls.calls)} calls_completed={st['completed']} "
                     f"calls_failed={st['failed']} calls_refused={st['refused']}")
        if self.peers:
            text += "; peers " + " ".join(f"{name}:{self.peer_state(name)}" for name in self.peers)
        return text

    def peer_state(self, name: str) -> str:
        """'established' when SIP can go to the peer now, else where the link stands."""
        link = self.links.get(name)
        if link is not None:
            return link.state
        addr = self._responder_addr.get(name)
        return "established" if addr is not None and self.km.outbound_sa(addr) is not None else "waiting"

    # -- key management ---------------------------------------------------------------------

    def _on_km(self, data: bytes, addr) -> None:
        peer = (addr[0], addr[1])
        contextvars.copy_context().run(self._km_datagram, data, peer)

    def _km_datagram(self, data: bytes, peer: tuple) -> None:
        from scd.peers import is_initiator_message

        structlog.contextvars.bind_contextvars(peer=_peer_text(peer))
        now = self.loop.time()
        link = self.links.get(self._peer_by_km.get(peer, ""))
        if link is not None and is_initiator_message(data):
            self._link_events(link.receive_km(data, now, datetime.now(timezone.utc)), now)
        else:
            events = self.km.receive(data, peer, now=now, wallclock=datetime.now(timezone.utc))
            self._km_events(events, now)
        self._flush_signaling(now)
        self._rearm()

    def _km_events(self, events: list, now: float) -> None:
        from scd.km import Refused, SaEstablished, SaExpired, SaRecoveredEvent, SendTo

        for event in events:
            if isinstance(event, SendTo):
                self._km.transport.sendto(event.data, event.peer)
            elif isinstance(event, SaEstablished):
                self._sa_established(event, now)
            elif isinstance(event, SaRecoveredEvent):
                km_log.debug("sa recovered", peer=_peer_text(event.peer), spi=f"0x{event.sc_spi:08x}")
            elif isinstance(event, Refused):
                self.counters.count("km_refused", km_log, peer=_peer_text(event.peer), code=event.code,
                                    reason=event.reason, replied=event.replied)
            elif isinstance(event, SaExpired):
                self.counters.count("sa_expired")
                km_log.debug("sa expired", peer=_peer_text(event.peer), spi=f"0x{event.sc_spi:08x}")
                if event.peer not in self.km.peers():
                    principal = self._principal_by_peer.pop(event.peer, None)
                    if principal is not None and self._peer_by_principal.get(principal) == event.peer:
                        del self._peer_by_principal[principal]
                        self.signaling.close_channel(principal, "SAs expired")
                        km_log.info("cta gone", principal=principal, peer=_peer_text(event.peer))

    def _sa_established(self, event, now: float) -> None:
        from scd.peers import peer_for_client

        peer_sc = peer_for_client(self.cfg.peering.peers, event.client) if self.peers else None
        if peer_sc is not None:  # a peer SC's trunk (responder side), never a CTA channel
            self._responder_addr[peer_sc.name] = event.peer
            self.counters.count("peer_sas")
            peer_log.info("peer link up", peer=peer_sc.name, role="responder", principal=str(event.client),
                          km=_peer_text(event.peer), suite=event.suite.name, spi=f"0x{event.sc_spi:08x}",
                          peer_spi=f"0x{event.cta_spi:08x}", rekey=event.rekey)
            if self.key_log.enabled and event.subkey:
                self.key_log.sa_pair(subkey=bytes(event.subkey), enctype=None, principal=str(event.client),
                                     suite=event.suite, cta_spi=event.cta_spi, sc_spi=event.sc_spi,
                                     cta_addr=self.peers[peer_sc.name].esp.host, sc_addr=self._own_host(event.peer[0]))
            return
        identity = identity_from_event(event)
        principal = identity.principal
        self.counters.count("rekeys" if event.rekey else "ap_exchanges")
        old_peer = self._peer_by_principal.get(principal)
        if old_peer is not None and old_peer != event.peer:
            self._principal_by_peer.pop(old_peer, None)
        self._peer_by_principal[principal] = event.peer
        self._principal_by_peer[event.peer] = principal
        self.signaling.open_channel(identity, now)
        km_log.info("sa established", principal=principal, peer=_peer_text(event.peer), suite=event.suite.name,
                    spi=f"0x{event.sc_spi:08x}", cta_spi=f"0x{event.cta_spi:08x}", rekey=event.rekey,
                    restricted=identity.restricted,
                    phone_ids=None if identity.phone_ids is None else len(identity.phone_ids))
        if self.key_log.enabled:
            subkey = event.subkey
            if subkey:
                host = self._own_host(event.peer[0])
                self.key_log.sa_pair(subkey=bytes(subkey), enctype=None, principal=principal, suite=event.suite,
                                     cta_spi=event.cta_spi, sc_spi=event.sc_spi, cta_addr=event.peer[0], sc_addr=host)

    def _own_host(self, fallback: str) -> str:
        return self.esp_address.host if self.esp_address.host not in ("0.0.0.0", "::") else fallback

    # -- peer SCs -------------------------------------------------------------------------------

    def _link_events(self, events: list, now: float) -> None:
        from scd.peers import KdcRequest, PeerLinkProblem, PeerSaEstablished, PeerSaExpired, SendKm, TicketObtained

        for event in events:
            if isinstance(event, SendKm):
                self._km.transport.sendto(event.data, event.address)
            elif isinstance(event, KdcRequest):
                task = self.loop.create_task(self._kdc_exchange(event))
                self._kdc_tasks.add(task)
                task.add_done_callback(self._kdc_tasks.discard)
            elif isinstance(event, TicketObtained):
                peer_log.info("peer ticket", peer=event.peer, server=str(event.server), mode=event.mode,
                              endtime=event.endtime.isoformat())
            elif isinstance(event, PeerSaEstablished):
                self.counters.count("peer_sas")
                peer = self.peers[event.peer]
                peer_log.info("peer link up", peer=event.peer, role="initiator", principal=peer.principal,
                              esp=str(peer.esp), suite=event.suite.name, spi=f"0x{event.local_spi:08x}",
                              peer_spi=f"0x{event.remote_spi:08x}", rekey=event.rekey)
                if self.key_log.enabled and event.subkey:
                    self.key_log.sa_pair(subkey=bytes(event.subkey), enctype=None, principal=peer.principal,
                                         suite=event.suite, cta_spi=event.local_spi, sc_spi=event.remote_spi,
                                         cta_addr=self._own_host(peer.esp.host), sc_addr=peer.esp.host)
            elif isinstance(event, PeerSaExpired):
                peer_log.debug("peer sa expired", peer=event.peer, spi=f"0x{event.local_spi:08x}")
            elif isinstance(event, PeerLinkProblem):
                self.counters.count("peer_problems")
                retry = None if event.retry_at is None else round(max(0.0, event.retry_at - now), 2)
                peer_log.warning("peer link problem", peer=event.peer, stage=event.stage, code=event.code,
                                 reason=event.text, retry_in=retry)

    async def _kdc_exchange(self, request) -> None:
        from common.krb5client import send_to_kdc

        link = self.links.get(request.peer)
        kdc = self.cfg.peering.kdc
        if link is None or kdc is None:
            return
        try:
            reply = await send_to_kdc(kdc.host, kdc.port, request.data, timeout=self.cfg.peering.kdc_timeout)
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError) as exc:
            now = self.loop.time()
            events = link.kdc_failed(request.exchange, str(exc) or type(exc).__name__, now, datetime.now(timezone.utc))
        else:
            now = self.loop.time()
            events = link.receive_kdc(request.exchange, reply, now, datetime.now(timezone.utc))
        self._link_events(events, now)
        self._flush_signaling(now)
        self._rearm()

    def _wake_peer(self, name: str, now: float, wallclock: datetime, *, reason: str) -> None:
        """Responder side: ask the initiating peer SC for an AP exchange (ScKeyManager rate-limits)."""
        peer = self.peers[name]
        events = self.km.wake_up((peer.km.host, peer.km.port), now=now, wallclock=wallclock)
        if events:
            self.counters.count("wake_ups")
            peer_log.info("wake up sent", peer=name, reason=reason)
        self._km_events(events, now)

    def _peer_outbound(self, name: str):
        link = self.links.get(name)
        if link is not None:
            return link.outbound_sa()
        addr = self._responder_addr.get(name)
        return self.km.outbound_sa(addr) if addr is not None else None

    def _flush_peers(self, now: float) -> None:
        if self.calls is None:
            return
        for name, data, dport in self.calls.peer_datagrams_to_send():
            peer = self.peers.get(name)
            sa = self._peer_outbound(name) if peer is not None else None
            if sa is None:
                self.counters.count("peer_no_sa", peer_log, peer=name)
                if peer is not None and name not in self.links:
                    self._wake_peer(name, now, datetime.now(timezone.utc), reason="SIP for the peer, no SA")
                continue  # SIP retransmits; the INVITE goes out once the link is up
            try:
                packet = sa.protect(inner_udp(self.cfg.signaling.sip_port, dport, data), NEXT_HEADER_UDP)
            except Exception as exc:  # SequenceExhausted: the link rekeys long before
                self.counters.count("peer_no_sa", peer_log, peer=name, error=str(exc))
                continue
            self.counters.count("peer_esp_out")
            self._esp.transport.sendto(packet, (peer.esp.host, peer.esp.port))

    def _peer_sip(self, name: str, payload: bytes, now: float) -> None:
        structlog.contextvars.bind_contextvars(peer_sc=name)
        self.counters.count("peer_esp_in")
        if self.calls is not None:
            self.calls.receive_peer(name, payload, now)
        self._flush_signaling(now)
        self._rearm()

    def _flush_calls(self) -> None:
        from scd.calls import CallAnswered, CallConnected, CallEnded, CallRefused, CallSetup, KeyAckVerified

        while (event := self.calls.next_event()) is not None:
            if isinstance(event, CallSetup):
                call_log.info("call setup", call_id=event.call_id, role=event.role, caller=event.caller,
                              callee=event.callee, next_hop=event.next_hop)
            elif isinstance(event, CallRefused):
                call_log.info("call refused", origin=event.origin, dialed=event.dialed, status=event.status,
                              reason=event.reason)
            elif isinstance(event, KeyAckVerified):
                call_log.debug("key ack verified", call_id=event.call_id, party=event.party)
            elif isinstance(event, CallAnswered):
                call_log.info("call answered", call_id=event.call_id)
            elif isinstance(event, CallConnected):
                call_log.info("call connected", call_id=event.call_id)
            elif isinstance(event, CallEnded):
                call_log.info("call ended", call_id=event.call_id, reason=event.reason, failed=event.failed)

    # -- ESP ----------------------------------------------------------------------------------

    def _on_esp(self, data: bytes, addr) -> None:
        if not is_esp(data):
            self.counters.count("esp_format")
            return
        spi = int.from_bytes(data[:4], "big")
        now = self.loop.time()
        sa = self.km.inbound_sa(spi)
        peer = (addr[0], addr[1])
        link_name = None
        if sa is None:
            for name, link in self.links.items():
                sa = link.inbound_sa(spi)
                if sa is not None:
                    link_name = name
                    break
        if sa is None:
            self.counters.count("esp_unknown_spi", esp_log, spi=f"0x{spi:08x}", peer=_peer_text(peer))
            peer_sc = self._peer_by_esp.get(peer)
            if peer_sc is not None:  # a peer SC on an SA we lost (restart): the initiator re-keys
                if peer_sc not in self.links and self._wake_bucket.take(now):
                    self._wake_peer(peer_sc, now, datetime.now(timezone.utc), reason="ESP on an unknown SPI")
                self._rearm()
                return
            if self._wake_bucket.take(now):
                events = self.km.wake_up(peer, now=now, wallclock=datetime.now(timezone.utc))
                if events:
                    self.counters.count("wake_ups")
                    km_log.info("wake up sent", peer=_peer_text(peer), reason="ESP on an unknown SPI")
                self._km_events(events, now)
            self._rearm()
            return
        try:
            next_header, inner = sa.unprotect(data)
        except EspIcvError as exc:
            self.counters.count("esp_icv_failed", esp_log, spi=f"0x{spi:08x}", peer=_peer_text(peer), error=str(exc))
            return
        except EspReplayError as exc:
            self.counters.count("esp_replayed", esp_log, spi=f"0x{spi:08x}", peer=_peer_text(peer), error=str(exc))
            return
        except EspError as exc:
            self.counters.count("esp_format", esp_log, spi=f"0x{spi:08x}", peer=_peer_text(peer), error=str(exc))
            return
        self.counters.count("esp_in")
        if link_name is not None:  # a peer SC's packet on the SA pair our PeerLink made
            if next_header != NEXT_HEADER_UDP:
                return
            try:
                _sport, _dport, payload = parse_inner_udp(inner)
            except EspError as exc:
                self.counters.count("esp_format", esp_log, spi=f"0x{spi:08x}", error=str(exc))
                return
            contextvars.copy_context().run(self._peer_sip, link_name, payload, now)
            return
        acknowledged = self.km.esp_authenticated(spi, now)
        if acknowledged:
            self._km_events(acknowledged, now)
            self._rearm()
        if next_header != NEXT_HEADER_UDP:
            return  # dummy packet (59) or something we do not carry
        found = self.km.inbound_peer(spi)
        if found is None:
            return
        sa_peer, client = found
        principal = str(client)
        try:
            sport, _dport, payload = parse_inner_udp(inner)
        except EspError as exc:
            self.counters.count("esp_format", esp_log, spi=f"0x{spi:08x}", error=str(exc))
            return
        if principal not in self.signaling.channels:
            if self.peers:
                from scd.peers import peer_for_client

                peer_sc = peer_for_client(self.cfg.peering.peers, client)
                if peer_sc is not None:  # responder side: the peer's SA pair lives in our ScKeyManager
                    contextvars.copy_context().run(self._peer_sip, peer_sc.name, payload, now)
            return
        contextvars.copy_context().run(self._sip_datagram, principal, payload, (peer[0], sport), now, peer)

    def _sip_datagram(self, principal: str, payload: bytes, source: tuple, now: float, esp_source: tuple) -> None:
        structlog.contextvars.bind_contextvars(principal=principal)
        self.signaling.receive(principal, payload, now, source, esp_source)
        self._flush_signaling(now)
        self._rearm()

    def _flush_signaling(self, now: float) -> None:
        sig = self.signaling
        while (event := sig.next_event()) is not None:
            if isinstance(event, Registered):
                self.counters.count("registered")
                sip_log.info("registered", principal=event.principal, number=event.number, expires=event.expires,
                             refreshed=event.refreshed)
            elif isinstance(event, RegisterRefused):
                self.counters.count("register_refused")
                sip_log.info("register refused", principal=event.principal, status=event.status, reason=event.reason)
            elif isinstance(event, (Unregistered, RegistrationExpired)):
                sip_log.info("unregistered", principal=event.principal, number=event.number,
                             reason=getattr(event, "reason", "expired"))
            elif isinstance(event, MalformedRequest):
                self.counters.count("sip_malformed", sip_log, principal=event.principal, reason=event.reason)
            elif isinstance(event, KeepAliveLost):
                sip_log.info("keep-alive lost", principal=event.principal)
        if self.calls is not None:
            self._flush_calls()
            self._flush_peers(now)
        for principal, data, dport in sig.datagrams_to_send():
            peer = self._peer_by_principal.get(principal)
            sa = self.km.outbound_sa(peer) if peer is not None else None
            if sa is None:
                self.counters.count("esp_no_outbound", esp_log, principal=principal)
                continue
            try:
                packet = sa.protect(inner_udp(self.cfg.signaling.sip_port, dport, data), NEXT_HEADER_UDP)
            except Exception as exc:  # SequenceExhausted: the engine rekeys long before
                self.counters.count("esp_no_outbound", esp_log, principal=principal, error=str(exc))
                continue
            self.counters.count("esp_out")
            self._esp.transport.sendto(packet, peer)

    # -- the one timer --------------------------------------------------------------------------

    def _rearm(self) -> None:
        engine = self.calls if self.calls is not None else self.signaling  # CallEngine's includes signaling's
        self._timer.arm(self.km.get_timer(), engine.get_timer(), self._wall_due,
                        *(link.get_timer() for link in self.links.values()))

    def _on_timer(self) -> None:
        now = self.loop.time()
        wallclock = datetime.now(timezone.utc)
        events = self.km.handle_timer(now, wallclock)
        self._km_events(events, now)
        for link in list(self.links.values()):
            self._link_events(link.handle_timer(now, wallclock), now)
        if self.calls is not None:
            if self._wall_due is not None and self._wall_due <= now:
                self.calls.set_wallclock(time.time(), now)
                self._wall_due = now + WALLCLOCK_REFRESH
            self.calls.handle_timer(now)  # runs the signaling engine's timers too
        else:
            self.signaling.handle_timer(now)
        self._flush_signaling(now)
        self._rearm()
