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
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from datetime import datetime, timezone
from typing import Any

import structlog

from common.asn1 import decode_as
from common.asn1.kerbtel import AD_KERBTEL_PHONE_IDS, KerbtelAuthorizedPhoneIds
from common.config import HostPort
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

MAX_DATAGRAM = 4096  # km messages and signaling stay far below; asyncio's default reads 256 KiB


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
            "sip_malformed", "wake_ups",
        )
        self.km = None
        self.signaling: SignalingEngine | None = None
        self.key_log = KeyLog(cfg.key_log.path, "scd")
        self._km: _Udp | None = None
        self._esp: _Udp | None = None
        self._timer: asyncio.TimerHandle | None = None
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
        self.km = self._build_km(Keytab.load(self.cfg.sc.keytab))
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

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for proto in (self._esp, self._km):
            if proto is not None and proto.transport is not None:
                proto.transport.close()

    async def reload(self) -> None:
        """SIGHUP: re-read the keytab (new kvnos); SAs and registrations are kept."""
        from common.keytab import Keytab

        cfg = load_scd_config(self.config_path) if self.config_path else self.cfg
        kvnos = self.km.update_keytab(Keytab.load(cfg.sc.keytab))  # SAs are kept
        log.info("keytab reloaded", keytab=str(cfg.sc.keytab), kvnos=kvnos)

    def status(self) -> str:
        regs = len(self.signaling.registrations) if self.signaling else 0
        peers = len(self.km.peers()) if self.km else 0
        c = self.counters
        return (f"{peers} CTAs keyed, {regs} lines registered; ap={c['ap_exchanges']} refused={c['km_refused']} "
                f"esp_in={c['esp_in']} icv_failed={c['esp_icv_failed']} replayed={c['esp_replayed']} "
                f"unknown_spi={c['esp_unknown_spi']}")

    # -- key management ---------------------------------------------------------------------

    def _on_km(self, data: bytes, addr) -> None:
        peer = (addr[0], addr[1])
        contextvars.copy_context().run(self._km_datagram, data, peer)

    def _km_datagram(self, data: bytes, peer: tuple) -> None:
        structlog.contextvars.bind_contextvars(peer=_peer_text(peer))
        now = self.loop.time()
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
                host = self.esp_address.host if self.esp_address.host not in ("0.0.0.0", "::") else event.peer[0]
                self.key_log.sa_pair(subkey=bytes(subkey), enctype=None, principal=principal, suite=event.suite,
                                     cta_spi=event.cta_spi, sc_spi=event.sc_spi, cta_addr=event.peer[0], sc_addr=host)

    # -- ESP ----------------------------------------------------------------------------------

    def _on_esp(self, data: bytes, addr) -> None:
        if not is_esp(data):
            self.counters.count("esp_format")
            return
        spi = int.from_bytes(data[:4], "big")
        now = self.loop.time()
        sa = self.km.inbound_sa(spi)
        peer = (addr[0], addr[1])
        if sa is None:
            self.counters.count("esp_unknown_spi", esp_log, spi=f"0x{spi:08x}", peer=_peer_text(peer))
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
            return
        contextvars.copy_context().run(self._sip_datagram, principal, payload, (peer[0], sport), now)

    def _sip_datagram(self, principal: str, payload: bytes, source: tuple, now: float) -> None:
        structlog.contextvars.bind_contextvars(principal=principal)
        self.signaling.receive(principal, payload, now, source)
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
        deadlines = [t for t in (self.km.get_timer(), self.signaling.get_timer()) if t is not None]
        when = min(deadlines) if deadlines else None
        if self._timer is not None:
            if when is not None and self._timer.when() == when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.loop.time()
        events = self.km.handle_timer(now, datetime.now(timezone.utc))
        self._km_events(events, now)
        self.signaling.handle_timer(now)
        self._flush_signaling(now)
        self._rearm()
