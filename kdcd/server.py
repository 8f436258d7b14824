"""kdcd's network adapters: Kerberos over TCP (RFC 4120 7.2.2) and UDP (7.2.1) around the engine.

Thin on purpose: the adapters cut the byte stream into messages, pass each one to the engine's
synchronous `handle_request(data, wallclock=, now=, peer=)` and write back what it returns
(None: close the TCP connection / send nothing). Everything Kerberos is in the engine.

TCP framing: a 4-byte big-endian length, then the message; several requests per connection, in
order. A length with the reserved high bit set, or above `[tcp] max_message_size`, is answered
with KRB-ERROR KRB_ERR_FIELD_TOOLONG (61) and the connection is closed (we half-close after the
error and discard what the client still sends for a moment, so a kernel RST cannot destroy the
error before the client reads it). A connection that sends nothing for `idle_timeout` seconds,
or takes longer than that to finish a message it started, is closed; so is one that ends in the
middle of a message (quietly). Connections beyond `max_connections` are closed at once. When a
client stops reading our replies, we stop reading its requests (transport flow control).

UDP: one datagram is one request. A reply longer than `[udp] max_reply_size` is replaced by
KRB_ERR_RESPONSE_TOO_BIG (52), on which clients retry over TCP. With the standard asyncio loop
the transport's receive buffer is shrunk from 256 KiB to `max_request_size` + 1 (peers.md: the
default costs an mmap per datagram); longer datagrams are dropped.

The engine call is CPU work (RSA, DH) done right on the event loop: one request at a time per
process; `workers = N` gives parallelism (kdcd/workers.py). Each request runs in a fresh copy of
the logging context with `peer` and `transport` bound; whatever the engine binds (`principal`,
...) dies with it. One line per request, counted: at info for replies, at debug for KRB-ERRORs
and drops. The engine does not log its outcome itself (`log_outcomes = False`): it binds it
(`outcome` = kdc_as_issued / kdc_refused, principal, server, method, enctype, error, ...) and
that event name and those fields go on the request's line.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import structlog

from common.asn1 import ErrorCode
from common.config import HostPort
from common.logsetup import Counters, get_logger

from .config import KdcdConfig, load_kdcd_config

__all__ = [
    "Engine",
    "EngineFactory",
    "KdcServer",
    "RequestHandler",
    "bind_socket",
    "default_engine_factory",
    "error_reply",
]

log = get_logger("kdcd.server")
tcp_log = get_logger("kdcd.tcp")
udp_log = get_logger("kdcd.udp")

HEADER = 4
HIGH_BIT = 0x8000_0000
LISTEN_BACKLOG = 1024
DRAIN_LINGER = 2.0  # seconds we keep discarding input after an error reply before closing


class Engine(Protocol):
    def handle_request(self, data: bytes, *, wallclock: datetime, now: float, peer: str) -> bytes | None: ...


# The factory builds the engine for one process; it registers its clean-up (closing the
# database) on the ExitStack, which the server closes on stop or when a reload replaces it.
EngineFactory = Callable[[KdcdConfig, ExitStack], Engine]


def default_engine_factory(cfg: KdcdConfig, stack: ExitStack) -> Engine:
    """The real KDC: this process's own database handle and `kdcd.engine.KdcEngine`."""
    from kdcd.db import SQLiteDatabase, load_master_key
    from kdcd.engine import KdcEngine

    master = load_master_key(cfg.database.master_key_path)
    db = SQLiteDatabase.open(cfg.database.path, master_key=master)
    stack.callback(db.close)
    if db.realm != cfg.realm:
        raise ValueError(f"{cfg.database.path} is for realm {db.realm}, but kdc.realm is {cfg.realm}")
    build = getattr(KdcEngine, "from_policy", KdcEngine)  # from_policy loads the PKINIT credentials
    engine = build(cfg.kdc, db)
    close = getattr(engine, "close", None)
    if callable(close):
        stack.callback(close)
    return engine


def error_reply(code: int, text: str, realm: str, wallclock: datetime | None = None) -> bytes:
    """A KRB-ERROR from the adapters themselves (framing errors), through the engine's boundary."""
    from common.krberror import ErrorContext, KrbError, encode_krb_error

    return encode_krb_error(
        KrbError(code, text), ErrorContext(realm=realm), wallclock=wallclock or datetime.now(timezone.utc)
    )


_REPLY_TYPES = {0x6B: "AS-REP", 0x6D: "TGS-REP", 0x7E: "KRB-ERROR"}


def _error_code(reply: bytes) -> int | None:
    from common.asn1 import KRB_ERROR, decode_as

    try:
        return int(decode_as(KRB_ERROR, reply)["error-code"].native)
    except Exception:  # our own engine's output; a failure here only costs the log field
        return None


def _code_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


class RequestHandler:
    """Calls the engine for one message and logs/counts the outcome. Shared by TCP and UDP."""

    def __init__(self, engine: Engine, realm: str, counters: Counters) -> None:
        self.realm = realm
        self.counters = counters
        self.engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        # One log line per request: the engine binds its outcome (principal, server, method, ...)
        # into the request's logging context instead of writing its own line (kdcd.engine).
        if hasattr(engine, "log_outcomes"):
            engine.log_outcomes = False  # type: ignore[attr-defined]
        self._engine = engine

    def handle(self, data: bytes, peer: str, transport: str) -> bytes | None:
        # A fresh logging context per request: what the engine binds cannot leak to the next.
        return contextvars.copy_context().run(self._handle, data, peer, transport)

    def _handle(self, data: bytes, peer: str, transport: str) -> bytes | None:
        structlog.contextvars.bind_contextvars(peer=peer, transport=transport)
        started = time.perf_counter()
        now = asyncio.get_running_loop().time()
        try:
            reply = self.engine.handle_request(data, wallclock=datetime.now(timezone.utc), now=now, peer=peer)
        except Exception as exc:  # the engine's boundary should catch everything; never die here
            self.counters.count("engine_exceptions")
            log.error("engine raised", error=repr(exc), size=len(data), exc_info=exc)
            return None
        ms = round((time.perf_counter() - started) * 1000, 3)
        self.counters.count("requests")
        # The request's context holds peer and transport and whatever the engine bound (principal,
        # outcome, ...); merge_contextvars puts them on the line, so they are not repeated here.
        if reply is None:
            self.counters.count("dropped", log, size=len(data), ms=ms)
            return reply
        kind = _REPLY_TYPES.get(reply[0] if reply else -1, "other")
        if kind == "KRB-ERROR":
            self.counters.count("krb_errors")
            bound = structlog.contextvars.get_contextvars()
            extra = {} if "error" in bound else {"error": _code_name(_error_code(reply))}
            log.debug(bound.get("outcome", "request"), result=kind, size=len(data), reply_size=len(reply), ms=ms, **extra)
        else:
            self.counters.count("replies")
            event = structlog.contextvars.get_contextvars().get("outcome", "request")
            log.info(event, result=kind, size=len(data), reply_size=len(reply), ms=ms)
        return reply


def _peer_text(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(HostPort(str(address[0]), int(address[1])))
    return str(address)


# --- sockets ---------------------------------------------------------------------------------


def bind_socket(kind: str, address: HostPort, *, reuse_port: bool, listen: bool = True) -> socket.socket:
    """A non-blocking socket bound to `address` ("tcp" listening unless listen=False, or "udp").

    IPv6 sockets are v6-only, so "0.0.0.0:88" and "[::]:88" can be listed side by side.
    """
    stype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    infos = socket.getaddrinfo(address.host, address.port, type=stype, flags=socket.AI_PASSIVE)
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(f"cannot resolve {address}")
    family, stype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, stype, proto)
    try:
        if kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        if kind == "tcp" and listen:
            sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _bound(sock: socket.socket) -> HostPort:
    name = sock.getsockname()
    return HostPort(str(name[0]), int(name[1]))


# --- TCP -------------------------------------------------------------------------------------


class _TcpConnection(asyncio.Protocol):
    """One TCP connection: framing, idle timer, flow control. Requests are handled in order."""

    def __init__(self, server: KdcServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._buf = bytearray()
        self._since = 0.0  # start of the current wait (idle, or the message being received)
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._closing = False

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = _peer_text(transport.get_extra_info("peername"))
        server = self.server
        if len(server.connections) >= server.cfg.tcp.max_connections:
            server.counters.count("tcp_refused_full", tcp_log, peer=self.peer)
            self._closing = True
            transport.abort()
            return
        server.connections.add(self)
        server.counters.count("tcp_connections")
        # No TCP_NODELAY here: asyncio and uvloop set it on every TCP transport already.
        self._since = server.loop.time()
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # draining after an error reply
        if not self._buf:
            self._since = self.server.loop.time()
        self._buf += data
        if not self._paused:
            self._process()

    def eof_received(self) -> bool:
        if self._buf and not self._closing:
            self.server.counters.count("tcp_truncated", tcp_log, peer=self.peer, buffered=len(self._buf))
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buf.clear()

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop reading its requests until it does.
        self._paused = True
        if self.transport is not None and not self._closing:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()
            self._process()

    # framing

    def _process(self) -> None:
        server = self.server
        transport = self.transport
        assert transport is not None
        buf = self._buf
        limit = server.cfg.tcp.max_message_size
        while len(buf) >= HEADER and not self._closing and not self._paused:
            length = int.from_bytes(buf[:HEADER], "big")
            if length & HIGH_BIT or length > limit:
                reason = "reserved high bit set in length" if length & HIGH_BIT else f"message of {length} bytes exceeds {limit}"
                server.counters.count("tcp_too_long", tcp_log, peer=self.peer, length=length)
                self._fail(error_reply(ErrorCode.KRB_ERR_FIELD_TOOLONG, reason, server.realm))
                return
            end = HEADER + length
            if len(buf) < end:
                return
            message = bytes(buf[HEADER:end])
            del buf[:end]
            self._since = server.loop.time()
            reply = server.handler.handle(message, self.peer, "tcp")
            if self.transport is None or transport.is_closing():
                return
            if reply is None:
                self._closing = True
                transport.close()
                return
            transport.write(len(reply).to_bytes(HEADER, "big") + reply)
            self._since = server.loop.time()

    def _fail(self, reply: bytes) -> None:
        """Send a last reply, half-close, discard input for a moment, then close."""
        transport = self.transport
        assert transport is not None
        self._closing = True
        self._buf.clear()
        transport.write(len(reply).to_bytes(HEADER, "big") + reply)
        if transport.can_write_eof():
            transport.write_eof()
        if self._paused:
            transport.resume_reading()
        self._since = self.server.loop.time() - self.server.cfg.tcp.idle_timeout + DRAIN_LINGER
        self._arm()

    # one timer per connection, re-armed only when it fires early

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        deadline = self._since + self.server.cfg.tcp.idle_timeout
        self._timer = self.server.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        transport = self.transport
        if transport is None or (transport.is_closing() and not self._closing):
            return
        if self.server.loop.time() < self._since + self.server.cfg.tcp.idle_timeout:
            self._arm()
            return
        if not self._closing:
            self.server.counters.count("tcp_idle_closed", tcp_log, peer=self.peer, buffered=len(self._buf))
        self._closing = True
        transport.abort()  # idle, or done lingering after an error reply: nothing left worth sending

    def close(self) -> None:
        if self.transport is not None:
            self._closing = True
            self.transport.abort()


# --- UDP -------------------------------------------------------------------------------------


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, server: KdcServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if hasattr(transport, "max_size"):  # the standard loop's selector transport (not uvloop)
            transport.max_size = self.server.cfg.udp.max_request_size + 1  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        server = self.server
        peer = _peer_text(addr)
        if len(data) > server.cfg.udp.max_request_size:
            server.counters.count("udp_too_long", udp_log, peer=peer, size=len(data))
            return
        reply = server.handler.handle(data, peer, "udp")
        if reply is None or self.transport is None:
            return
        if len(reply) > server.cfg.udp.max_reply_size:
            server.counters.count("udp_too_big", udp_log, peer=peer, reply_size=len(reply))
            reply = error_reply(
                ErrorCode.KRB_ERR_RESPONSE_TOO_BIG, "response too big for UDP; retry over TCP", server.realm
            )
        self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like for an earlier reply: nothing to do.
        self.server.counters.count("udp_send_errors", udp_log, error=repr(exc))


# --- the service -----------------------------------------------------------------------------


class KdcServer:
    """The listeners of one process plus its engine: a `common.daemon.Service`.

    `reuse_port` (default: when cfg.workers > 1) sets SO_REUSEPORT so several processes share the
    addresses. After `start()`, `tcp_addresses` / `udp_addresses` hold the bound addresses
    (port 0 resolved). `reload()` re-reads `config_path` and swaps in a new engine (policy and
    database handle); listen addresses and limits need a restart.
    """

    name = "kdc"

    def __init__(
        self,
        cfg: KdcdConfig,
        *,
        engine_factory: EngineFactory = default_engine_factory,
        config_path: str | Path | None = None,
        reuse_port: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.realm = cfg.realm
        self.engine_factory = engine_factory
        self.config_path = Path(config_path) if config_path is not None else None
        self.reuse_port = cfg.workers > 1 if reuse_port is None else reuse_port
        self.counters = Counters("requests", "replies", "krb_errors", "dropped", "tcp_connections")
        self.connections: set[_TcpConnection] = set()
        self.tcp_addresses: list[HostPort] = []
        self.udp_addresses: list[HostPort] = []
        self.handler: RequestHandler | None = None  # type: ignore[assignment]
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._stack: ExitStack | None = None
        self._servers: list[asyncio.Server] = []
        self._udp: list[asyncio.DatagramTransport] = []

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        stack = ExitStack()
        try:
            engine = self.engine_factory(self.cfg, stack)
            self.handler = RequestHandler(engine, self.realm, self.counters)
            for address in self.cfg.listen.tcp:
                sock = bind_socket("tcp", address, reuse_port=self.reuse_port)
                try:
                    server = await self.loop.create_server(lambda: _TcpConnection(self), sock=sock)
                except BaseException:
                    sock.close()
                    raise
                self._servers.append(server)
                self.tcp_addresses.append(_bound(sock))
            for address in self.cfg.listen.udp:
                sock = bind_socket("udp", address, reuse_port=self.reuse_port)
                try:
                    transport, _ = await self.loop.create_datagram_endpoint(lambda: _UdpEndpoint(self), sock=sock)
                except BaseException:
                    sock.close()
                    raise
                self._udp.append(transport)
                self.udp_addresses.append(_bound(sock))
        except BaseException:
            self._close_listeners()
            stack.close()
            raise
        self._stack = stack
        log.info(
            "listening",
            tcp=[str(a) for a in self.tcp_addresses],
            udp=[str(a) for a in self.udp_addresses],
            reuse_port=self.reuse_port,
        )

    def _close_listeners(self) -> None:
        for server in self._servers:
            server.close()
        for transport in self._udp:
            transport.close()
        self._servers.clear()
        self._udp.clear()

    async def stop(self) -> None:
        self._close_listeners()
        for conn in list(self.connections):
            conn.close()
        await asyncio.sleep(0)  # let the transports run connection_lost
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    async def reload(self) -> None:
        if self.config_path is None:
            return
        new = load_kdcd_config(self.config_path)
        if (new.listen, new.tcp, new.udp, new.workers) != (self.cfg.listen, self.cfg.tcp, self.cfg.udp, self.cfg.workers):
            log.warning("listen addresses, limits and workers change only on restart")
        stack = ExitStack()
        try:
            engine = self.engine_factory(dataclasses.replace(self.cfg, kdc=new.kdc, database=new.database), stack)
        except BaseException:
            stack.close()
            raise
        old, self._stack = self._stack, stack
        self.cfg = dataclasses.replace(self.cfg, kdc=new.kdc, database=new.database, logging=new.logging)
        self.realm = self.cfg.realm
        assert self.handler is not None
        self.handler.engine = engine
        self.handler.realm = self.realm
        if old is not None:
            old.close()

    def status(self) -> str:
        c = self.counters
        return (
            f"{len(self.connections)} tcp connections; requests={c['requests']} replies={c['replies']} "
            f"errors={c['krb_errors']} dropped={c['dropped']}"
        )
