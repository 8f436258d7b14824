"""ctad's CTA service: ticket (PKINIT + ccache), key management with the SC, ESP, REGISTER.

The engines do the protocol work: `common.krb5client.AsExchange` (PKINIT), `ctad.km.CtaKeyManager`
(AP exchange, Rekey, Wake Up, SA expiry, AP Request retransmission) and
`ctad.signaling.CtaUserAgent` (REGISTER, OPTIONS keep-alives). This adapter owns one UDP socket
(key management to the SC's km port, ESP to its ESP port; datagrams are told apart by the port
they come from) and decides when to start over. States, each logged as `{"event": "state"}`:

    pkinit ──► keying ──► registering ──► registered
       ▲          ▲                           │
       │          └──── backoff ◄─────────────┤ keep-alive timeout / REGISTER timeout (SC lost,
       │                                      │ e.g. restarted); Wake Up and Rekey are handled
       └──────────────────────────────────────┘ by the key manager without leaving "registered"
         ticket about to expire, or an Error Reply saying the ticket cannot work

- Ticket: read from the ccache (MIT format, 0600) when it still has more than `renew_before`
  seconds; otherwise PKINIT with the KDC, then written back. A new PKINIT runs `renew_before`
  seconds before the end (the current SA keeps working meanwhile), and after an Error Reply
  with a ticket problem (expired, unknown kvno, ...).
- Backoff: exponential from `[backoff] initial` to `max`, +- `jitter`, reset once registered.
- A fresh SA pair from an AP exchange starts a new user agent (REGISTER every line again: a
  restarted SC has lost them); an SA pair from a Rekey is used silently.
- Calls (with `[line] listen` set): a second UDP socket serves softphones (`ctad.line.LineSide`,
  registrar and B2BUA), a `ctad.calls.CallAgent` rides on each user agent, and every call gets a
  `ctad.media.MediaSession` (line RTP/RTCP on the line host, the network leg on `[media] host`).
  A new user agent (the SC was lost) ends the calls of the old one towards the phones. Without
  `[line]` the CTA takes no calls (INVITEs from the SC get 405), as before.
- Echo mode (`[echo] enabled`, no `[line]`): the CallAgent's events go to `ctad.echo.EchoServer`
  instead of a line side; it answers every call to `[cta] numbers` and plays the caller's audio
  back over the call's encrypted media (the echo test service, ctad/echo.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random

from common.config import HostPort
from common.daemon import EngineTimer
from common.esp import EspError, EspSa, NEXT_HEADER_UDP, inner_udp, is_esp, parse_inner_udp
from common.logsetup import Counters, get_logger
from common.keylog import KeyLog

from ctad.calls import CallAgent, CallKeysReady, DirectChannelClosed
from ctad.config import CtadConfig
from ctad.line import LineCallEnded, LineConfig, LineSide, PhoneRegistered, StartMedia, StopMedia
from ctad.signaling import AllRegistered, CtaUserAgent, LineRegistered, PeerLost, RegisterFailed

__all__ = ["Backoff", "CtaService"]

log = get_logger("ctad")
km_log = get_logger("ctad.km")
esp_log = get_logger("ctad.esp")
line_log = get_logger("ctad.line")


class Backoff:
    """Exponential backoff with jitter: initial, 2x initial, ... up to max, each +- jitter."""

    def __init__(self, initial: float, maximum: float, jitter: float, rng: random.Random | None = None) -> None:
        self.initial, self.maximum, self.jitter = initial, maximum, jitter
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        base = min(self.maximum, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return max(0.0, base * (1 + self.jitter * (2 * self.rng.random() - 1)))

    def reset(self) -> None:
        self.attempt = 0


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, handler) -> None:
        self.handler = handler
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if hasattr(transport, "max_size"):
            transport.max_size = 4096  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr) -> None:
        self.handler(data, addr)

    def error_received(self, exc: Exception) -> None:
        esp_log.debug("udp error", error=str(exc))


class CtaService:
    name = "ctad"

    def __init__(self, cfg: CtadConfig) -> None:
        self.cfg = cfg
        self.state = "starting"
        self.counters = Counters("pkinit", "ticket_from_cache", "ap_exchanges", "rekeys", "sc_lost",
                                 "esp_in", "esp_out", "esp_failed", "esp_unknown_spi",
                                 "direct_in", "direct_out", "direct_failed")
        self.key_log = KeyLog(cfg.key_log.path, "ctad")
        self.backoff = Backoff(cfg.backoff.initial, cfg.backoff.max, cfg.backoff.jitter)
        self.km = None
        self.ua: CtaUserAgent | None = None
        self.credential = None
        self._udp: _Udp | None = None
        self._task: asyncio.Task | None = None
        self._timer = EngineTimer(self._on_timer)
        self._delayed: asyncio.TimerHandle | None = None
        self._ticket_timer: asyncio.TimerHandle | None = None
        self._need_ticket = asyncio.Event()
        self.registered: tuple[str, ...] = ()
        self.agent: CallAgent | None = None
        self.line: LineSide | None = None
        self.echo = None  # ctad.echo.EchoServer in echo mode ([echo] enabled)
        self._line_udp: _Udp | None = None
        self.media: dict[str, object] = {}  # line call id -> MediaSession
        # the calls' CTA-to-CTA SA pairs, by SPI
        self.direct_out: dict[int, EspSa] = {}
        self.direct_in: dict[int, EspSa] = {}
        self._media_tasks: set[asyncio.Task] = set()

    # -- Service protocol -------------------------------------------------------------------

    async def start(self) -> None:
        from common.principal import Principal

        self.loop = asyncio.get_running_loop()
        self.identity, self.anchors = self._load_identity()
        from common import pki

        self.client = (Principal.parse(self.cfg.cta.principal) if self.cfg.cta.principal
                       else pki.principal_from_certificate(self.identity.certificate))
        if self.client is None:
            raise ValueError("the certificate names no principal; set [cta] principal")
        self.service = Principal.parse(self.cfg.sc.principal, default_realm=self.client.realm)
        self.km_addr = await self._resolve(self.cfg.sc.km)
        self.esp_addr = await self._resolve(self.cfg.sc.esp)
        local = self.cfg.cta.local
        _, self._udp = await self.loop.create_datagram_endpoint(lambda: _Udp(self._on_datagram),
                                                                local_addr=(local.host, local.port))
        self.local = HostPort(*self._udp.transport.get_extra_info("sockname")[:2])
        if self.cfg.line.listen is not None:
            await self._start_line()
        if self.cfg.echo.enabled:
            self._start_echo()
        log.info("starting", principal=str(self.client), sc=str(self.service), km=str(self.cfg.sc.km),
                 esp=str(self.cfg.sc.esp), local=str(self.local), numbers=list(self.cfg.cta.numbers))
        self._task = asyncio.create_task(self._tickets())

    async def stop(self) -> None:
        self._timer.cancel()
        for handle in (self._delayed, self._ticket_timer):
            if handle is not None:
                handle.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        for task in list(self._media_tasks):
            task.cancel()
        for session in list(self.media.values()):
            await session.stop()
        self.media.clear()
        if self._line_udp is not None and self._line_udp.transport is not None:
            self._line_udp.transport.close()
        if self.echo is not None:
            self.echo.close()

    def status(self) -> str:
        lines = ", ".join(self.registered) or "no lines"
        text = f"{self.state}; {lines}; ap={self.counters['ap_exchanges']} sc_lost={self.counters['sc_lost']}"
        if self.line is not None:
            s = self.line.stats()
            text += (f"; line {self.line_address.host}:{self.line_address.port} calls out={s['calls_from_phone']}"
                     f" in={s['calls_to_phone']} active={s['active']} completed={s['completed']} failed={s['failed']}")
        if self.echo is not None:
            text += "; " + self.echo.status()
        return text

    # -- helpers ----------------------------------------------------------------------------

    def _load_identity(self):
        from common import pki
        from common.krb5client import ClientIdentity

        directory = self.cfg.cta.identity
        certs = pki.load_certificates(directory / pki.CERT_FILE)
        key = pki.load_private_key(directory / pki.KEY_FILE)
        issuer_path = directory / pki.ISSUER_FILE
        issuers = pki.load_certificates(issuer_path) if issuer_path.exists() else []
        leaf, *chain = certs
        intermediates = tuple(c for c in [*chain, *issuers] if c.issuer != c.subject)
        anchors = []
        for path in self.cfg.kdc.anchors:
            anchors += pki.load_certificates(path)
        if not anchors:
            anchors = [c for c in issuers if c.issuer == c.subject] or issuers
        return ClientIdentity(leaf, key, intermediates), tuple(anchors)

    async def _resolve(self, address: HostPort) -> tuple[str, int]:
        infos = await self.loop.getaddrinfo(address.host, address.port, type=2)  # SOCK_DGRAM
        return infos[0][4][0], infos[0][4][1]

    def _set_state(self, state: str, **fields) -> None:
        if state != self.state:
            self.state = state
            log.info("state", state=state, **fields)

    # -- tickets ----------------------------------------------------------------------------

    async def _tickets(self) -> None:
        """Get a ticket, start keying; then wait for "need a new ticket" and repeat."""
        force = False
        while True:
            credential = await self._obtain_ticket(force)
            self._install_ticket(credential)
            await self._need_ticket.wait()
            self._need_ticket.clear()
            force = True

    def _cached_ticket(self):
        from common.ccache import Ccache

        path = self.cfg.cta.ccache
        try:
            cred = Ccache.load(path).find(self.service)
        except (OSError, ValueError, KeyError):
            return None
        if not cred.client.same_name(self.client):
            return None
        left = cred.endtime - _utcnow().timestamp()
        return cred if left > self.cfg.kdc.renew_before else None

    async def _obtain_ticket(self, force: bool):
        from common.ccache import Ccache
        from common.krb5client import AsClientConfig, AsExchange, AsResult, KrbClientError, send_to_kdc

        if not force:
            cred = self._cached_ticket()
            if cred is not None:
                self.counters.count("ticket_from_cache")
                log.info("ticket from cache", ccache=str(self.cfg.cta.ccache),
                         endtime=dt.datetime.fromtimestamp(cred.endtime, dt.timezone.utc).isoformat())
                return cred
        kdc = self.cfg.kdc
        config = AsClientConfig(identity=self.identity, client=self.client, realm=self.client.realm,
                                anchors=self.anchors, service=self.service, mode=kdc.mode,
                                lifetime=dt.timedelta(seconds=kdc.ticket_lifetime))
        backoff = Backoff(self.cfg.backoff.initial, self.cfg.backoff.max, self.cfg.backoff.jitter)
        while True:
            self._set_state("pkinit", kdc=str(kdc.address))
            try:
                exchange = AsExchange(config)
                request = exchange.start(wallclock=_utcnow())
                while True:
                    reply = await send_to_kdc(kdc.address.host, kdc.address.port, request,
                                              transport=kdc.transport, timeout=kdc.timeout)
                    step = exchange.receive(reply, wallclock=_utcnow())
                    if isinstance(step, AsResult):
                        break
                    request = step.request
            except (KrbClientError, OSError, TimeoutError) as exc:
                delay = backoff.next()
                log.warning("pkinit failed", error=str(exc) or type(exc).__name__, retry_in=round(delay, 2))
                await asyncio.sleep(delay)
                continue
            credential = step.to_credential()
            Ccache(step.client, [credential]).save(self.cfg.cta.ccache)
            self.counters.count("pkinit")
            log.info("pkinit", endtime=step.endtime.isoformat(), mode=step.mode, kdf=step.kdf,
                     ccache=str(self.cfg.cta.ccache))
            return credential

    def _install_ticket(self, credential) -> None:
        from ctad.km import CtaKeyManager
        from scd.config import suite_by_name

        self.credential = credential
        if self._ticket_timer is not None:
            self._ticket_timer.cancel()
        renew_in = credential.endtime - self.cfg.kdc.renew_before - _utcnow().timestamp()
        self._ticket_timer = self.loop.call_later(max(1.0, renew_in), self._ticket_due)
        if self.km is None:
            sc = self.cfg.sc
            self.km = CtaKeyManager(self.client, self.service, credential.ticket, credential.key,
                                    suites=[suite_by_name(n) for n in sc.suites], sc_address=self.km_addr,
                                    retransmit_initial=sc.retransmit_initial, retransmit_max=sc.retransmit_max)
        else:
            self.km.set_ticket(credential.ticket, credential.key)
        self._start_keying()

    def _ticket_due(self) -> None:
        self._ticket_timer = None
        log.info("ticket ends soon; new PKINIT")
        self._need_ticket.set()

    # -- key management -----------------------------------------------------------------------

    def _start_keying(self) -> None:
        self._delayed = None
        self._set_state("keying")
        self._km_events(self.km.start(self.loop.time(), _utcnow()))
        self._rearm()

    def _on_datagram(self, data: bytes, addr) -> None:
        source = (addr[0], addr[1])
        if self.km is None:
            return
        if source == self.km_addr:
            self._km_events(self.km.receive(data, self.loop.time(), _utcnow()))
        elif source == self.esp_addr:
            self._esp_in(data)
        elif self.direct_in and is_esp(data):
            self._direct_in(data, source)
        self._rearm()

    def _km_events(self, events: list) -> None:
        from ctad.km import KeyManagementFailed, SaEstablished, SaExpired, SendTo

        for event in events:
            if isinstance(event, SendTo):
                self._udp.transport.sendto(event.data, event.peer or self.km_addr)
            elif isinstance(event, SaEstablished):
                self._sa_established(event)
            elif isinstance(event, SaExpired):
                km_log.debug("sa expired", spi=f"0x{event.cta_spi:08x}")
                if self.km.outbound_sa() is None:
                    self._set_state("keying", reason="SA expired")
            elif isinstance(event, KeyManagementFailed):
                km_log.warning("key management failed", code=event.code, error=event.text,
                               ticket_problem=event.ticket_problem)
                if event.ticket_problem:
                    self._need_ticket.set()

    def _sa_established(self, event) -> None:
        self.counters.count("rekeys" if event.rekey else "ap_exchanges")
        km_log.info("sa established", suite=event.suite.name, spi=f"0x{event.sc_spi:08x}",
                    cta_spi=f"0x{event.cta_spi:08x}", rekey=event.rekey)
        if self.key_log.enabled:
            subkey = event.subkey
            if subkey:
                self.key_log.sa_pair(subkey=bytes(subkey), enctype=None, principal=str(self.client),
                                     suite=event.suite, cta_spi=event.cta_spi, sc_spi=event.sc_spi,
                                     cta_addr=self.local.host, sc_addr=self.esp_addr[0])
        if event.rekey and self.ua is not None and not self.ua.lost:
            return
        sig = self.cfg.signaling
        self.ua = CtaUserAgent(
            list(self.cfg.cta.numbers), domain=self.cfg.domain, local_host=self.local.host,
            local_port=sig.sip_port, sc_port=sig.sip_port, register_expires=sig.register_expires,
            keepalive_interval=sig.keepalive_interval, keepalive_timeout=sig.keepalive_timeout, t1=sig.t1)
        if self._call_sink is not None:
            self.agent = CallAgent(self.ua)
            self._call_sink.attach(self.agent, self.loop.time())
        self._set_state("registering")
        self.ua.start(self.loop.time())
        self._flush_ua()

    # -- ESP and SIP ----------------------------------------------------------------------------

    def _esp_in(self, data: bytes) -> None:
        if len(data) < 8:
            return
        spi = int.from_bytes(data[:4], "big")
        sa = self.km.inbound_sa(spi)
        if sa is None:
            self.counters.count("esp_unknown_spi", esp_log, spi=f"0x{spi:08x}")
            return
        payload = self._open_esp(sa, data, spi, "esp_in", "esp_failed")
        if payload is not None and self.ua is not None:
            self.ua.receive(payload, self.loop.time())
            self._flush_ua()

    # -- the direct CTA-to-CTA channel of each call (ctad.calls module docstring) ---------------

    def _direct_keys(self, event: CallKeysReady) -> None:
        if event.peer_esp is None:
            return
        self.direct_out[event.esp_out.spi] = EspSa.from_keys(event.esp_suite, event.esp_out)
        self.direct_in[event.esp_in.spi] = EspSa.from_keys(event.esp_suite, event.esp_in)
        esp_log.debug("direct channel", call_id=event.call_id, peer=f"{event.peer_esp[0]}:{event.peer_esp[1]}",
                      spi_out=f"0x{event.esp_out.spi:08x}", spi_in=f"0x{event.esp_in.spi:08x}")

    def _direct_in(self, data: bytes, source) -> None:
        spi = int.from_bytes(data[:4], "big")
        sa = self.direct_in.get(spi)
        if sa is None or self.agent is None:
            self.counters.count("esp_unknown_spi", esp_log, spi=f"0x{spi:08x}", peer=f"{source[0]}:{source[1]}")
            return
        payload = self._open_esp(sa, data, spi, "direct_in", "direct_failed")
        if payload is not None and self.agent.receive_direct(spi, payload, self.loop.time()):
            self._flush_ua()

    def _open_esp(self, sa: EspSa, data: bytes, spi: int, ok: str, failed: str) -> bytes | None:
        """The SIP inside an ESP packet (inner UDP), counting it as `ok` or `failed`; None if the
        packet does not verify or carries something else (dummy packets)."""
        try:
            next_header, inner = sa.unprotect(data)
            if next_header != NEXT_HEADER_UDP:
                return None
            _sport, _dport, payload = parse_inner_udp(inner)
        except EspError as exc:
            self.counters.count(failed, esp_log, spi=f"0x{spi:08x}", error=str(exc))
            return None
        self.counters.count(ok)
        return payload

    def _flush_direct(self) -> None:
        if self.agent is None:
            return
        port = self.cfg.signaling.sip_port
        for datagram in self.agent.direct_datagrams_to_send():
            sa = self.direct_out.get(datagram.spi)
            if sa is None:
                continue
            try:
                packet = sa.protect(inner_udp(port, port, datagram.data), NEXT_HEADER_UDP)
            except Exception as exc:  # SequenceExhausted: 2^32 packets in one call's signaling
                esp_log.warning("cannot protect", call_id=datagram.call_id, error=str(exc))
                continue
            self.counters.count("direct_out")
            self._udp.transport.sendto(packet, datagram.peer)

    def _flush_ua(self) -> None:
        self._pump_calls()
        self._flush_direct()
        ua = self.ua
        if ua is None:
            self._flush_line()
            return
        sa = self.km.outbound_sa()
        port = self.cfg.signaling.sip_port
        for data in ua.datagrams_to_send():
            if sa is None:
                continue
            try:
                packet = sa.protect(inner_udp(port, port, data), NEXT_HEADER_UDP)
            except Exception as exc:  # SequenceExhausted: the key manager re-keys long before
                esp_log.warning("cannot protect", error=str(exc))
                continue
            self.counters.count("esp_out")
            self._udp.transport.sendto(packet, self.esp_addr)
        while (event := ua.next_event()) is not None:
            if isinstance(event, LineRegistered):
                log.info("line registered", number=event.number, expires=event.expires, refreshed=event.refreshed)
            elif isinstance(event, RegisterFailed):
                log.warning("register refused", number=event.number, status=event.status, reason=event.reason)
            elif isinstance(event, AllRegistered):
                self.registered = event.registered
                self.backoff.reset()
                if event.refused:
                    state = "register refused"
                elif self.cfg.cta.numbers:
                    state = "registered"
                else:
                    state = "connected"  # an unprovisioned CTA: keyed, no line to register
                self._set_state(state, lines=list(event.registered), refused=list(event.refused))
            elif isinstance(event, PeerLost):
                self._sc_lost(event.reason)
        self._flush_line()

    def _sc_lost(self, reason: str) -> None:
        self.counters.count("sc_lost")
        self.registered = ()
        self.direct_out.clear()  # the agent and its calls go; so do their direct channels
        self.direct_in.clear()
        if self._call_sink is not None:
            self.agent = None
            self._call_sink.attach(None, self.loop.time())
            self._pump_calls()
        delay = self.backoff.next()
        self._set_state("backoff", reason=reason, retry_in=round(delay, 2))
        if self._delayed is not None:
            self._delayed.cancel()
        self._delayed = self.loop.call_later(delay, self._start_keying)

    # -- the engines' timer ----------------------------------------------------------------------

    def _rearm(self) -> None:
        self._timer.arm(self.km.get_timer() if self.km else None,
                        self.ua.get_timer() if self.ua else None,
                        self.agent.get_timer() if self.agent else None,
                        self.line.get_timer() if self.line else None,
                        self.echo.get_timer() if self.echo else None)

    def _on_timer(self) -> None:
        now = self.loop.time()
        if self.km is not None:
            self._km_events(self.km.handle_timer(now, _utcnow()))
        if self.agent is not None and self.agent.ua is self.ua:
            self.agent.handle_timer(now)  # drives the user agent's timers too
        elif self.ua is not None:
            self.ua.handle_timer(now)
        if self.line is not None:
            self.line.handle_timer(now)
        if self.echo is not None:
            self.echo.handle_timer(now)
        self._flush_ua()
        self._rearm()

    # -- the line side and media -------------------------------------------------------------------

    async def _start_line(self) -> None:
        section = self.cfg.line
        listen = section.listen
        _, self._line_udp = await self.loop.create_datagram_endpoint(lambda: _Udp(self._on_line_datagram),
                                                                     local_addr=(listen.host, listen.port))
        self.line_address = HostPort(*self._line_udp.transport.get_extra_info("sockname")[:2])
        from common.sip.transaction import TimerConfig

        self.line = LineSide(LineConfig(
            numbers=tuple(self.cfg.cta.numbers), host=self.line_address.host, port=self.line_address.port,
            phone=(section.phone.host, section.phone.port) if section.phone else None,
            min_expires=section.register_min_expires, max_expires=section.register_max_expires,
            ring_timeout=section.ring_timeout, timers=TimerConfig(t1=section.t1, t2=max(4.0, section.t1))))
        line_log.info("line side", listen=f"{self.line_address.host}:{self.line_address.port}",
                      phone=str(section.phone) if section.phone else None, numbers=list(self.cfg.cta.numbers))

    def _on_line_datagram(self, data: bytes, addr) -> None:
        if self.line is None:
            return
        self.line.receive_datagram(data, (addr[0], addr[1]), self.loop.time())
        self._flush_ua()
        self._rearm()

    def _pump_calls(self) -> None:
        """CallAgent events to the line side (or the echo server) and the line side's events to us,
        until both are quiet."""
        line = self.line
        sink = self._call_sink
        if sink is None:
            return
        now = self.loop.time()
        while True:
            moved = False
            if self.agent is not None:
                while (event := self.agent.next_event()) is not None:
                    moved = True
                    if isinstance(event, CallKeysReady):
                        self._direct_keys(event)
                        if self.key_log.enabled:
                            self.key_log.call_keys(event, local=f"{self.local.host}:{self.local.port}")
                    elif isinstance(event, DirectChannelClosed):
                        self.direct_out.pop(event.spi_out, None)
                        self.direct_in.pop(event.spi_in, None)
                    sink.on_call_event(event, now)
            while line is not None and (event := line.next_event()) is not None:
                moved = True
                self._line_event(event)
            if not moved:
                return

    def _flush_line(self) -> None:
        if self.line is None or self._line_udp is None or self._line_udp.transport is None:
            return
        for data, address in self.line.datagrams_to_send():
            self._line_udp.transport.sendto(data, address)

    def _line_event(self, event) -> None:
        if isinstance(event, StartMedia):
            self._spawn(self._start_media(event))
        elif isinstance(event, StopMedia):
            session = self.media.pop(event.call, None) or event.media
            self._spawn(session.stop())
        elif isinstance(event, PhoneRegistered):
            line_log.info("phone registered", number=event.number, contact=event.contact, expires=event.expires)
        elif isinstance(event, LineCallEnded):
            line_log.info("call ended", call_id=event.sc_call_id, line_call_id=event.call, reason=event.reason,
                          established=event.established)

    def _spawn(self, coroutine) -> None:
        task = self.loop.create_task(coroutine)
        self._media_tasks.add(task)
        task.add_done_callback(self._media_tasks.discard)

    async def _start_media(self, event: StartMedia) -> None:
        from ctad.media import MediaRelay, MediaSession

        backend = None if self.cfg.media.backend == "auto" else self.cfg.media.backend
        relay = MediaRelay.for_call(event.call, event.role, backend=backend)  # type: ignore[arg-type]
        session = MediaSession(relay, line_host=self.line_address.host, network_host=self.cfg.media.host,
                               port_range=self.cfg.media.port_range, line_srtp=self.cfg.line.srtp)
        try:
            await session.start()
        except OSError as exc:
            line_log.warning("media start failed", line_call_id=event.call, error=str(exc))
            if self.line is not None:
                self.line.media_failed(event.call, str(exc), self.loop.time())
        else:
            self.media[event.call] = session
            if self.line is None or not self.line.media_started(event.call, session, self.loop.time()):
                self.media.pop(event.call, None)
        self._flush_ua()
        self._rearm()

    # -- echo mode (ctad/echo.py) ---------------------------------------------------------------

    @property
    def _call_sink(self):
        """Who takes the CallAgent's events: the line side, the echo server, or nobody (no calls)."""
        return self.line if self.line is not None else self.echo

    def _start_echo(self) -> None:
        from ctad.echo import EchoConfig, EchoServer

        section, media = self.cfg.echo, self.cfg.media
        self.echo = EchoServer(
            EchoConfig(numbers=tuple(self.cfg.cta.numbers), max_duration=section.max_duration,
                       max_calls=section.max_calls, backend=None if media.backend == "auto" else media.backend),
            media_host=media.host, port_range=media.port_range, loop=self.loop)
        log.info("echo server", numbers=list(self.cfg.cta.numbers), media_host=media.host,
                 max_duration=section.max_duration, max_calls=section.max_calls)
