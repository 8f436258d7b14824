"""kdcd's network adapters (kdcd/server.py) and workers (kdcd/workers.py) on real loopback sockets.

A fake engine stands in for the KDC: these tests are about framing, limits, isolation between
clients and process management, not Kerberos. The fake engine answers:
  b"close"      -> None (the adapter must close the connection / send nothing)
  b"boom"       -> raises (a bug in the engine must not take the server down)
  b"big:N"      -> N bytes
  b"pid"        -> this process's PID (to see which worker answered)
  b"who:NAME"   -> binds principal=NAME in the logging context, answers "ok"
  anything else -> b"echo:" + data
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from common.asn1 import KRB_ERROR, ErrorCode, decode_as
from common.config import config_from_dict
from kdcd.config import KdcdConfig
from kdcd.server import KdcServer

ROOT = Path(__file__).resolve().parent.parent


class FakeEngine:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str]] = []

    def handle_request(self, data, *, wallclock, now, peer):
        assert wallclock.tzinfo is not None and isinstance(now, float)
        self.calls.append((data, peer))
        if data == b"close":
            return None
        if data == b"boom":
            raise RuntimeError("engine bug")
        if data.startswith(b"big:"):
            return b"x" * int(data[4:])
        if data == b"pid":
            return str(os.getpid()).encode()
        if data.startswith(b"who:"):
            structlog.contextvars.bind_contextvars(principal=data[4:].decode())
            return b"ok"
        return b"echo:" + data


def fake_engine_factory(cfg, stack):
    """Used by the worker subprocesses: `--engine-factory tests.test_kdcd_server:fake_engine_factory`."""
    return FakeEngine()


def make_config(**overrides) -> KdcdConfig:
    data = {
        "database": {"path": "/nonexistent/kdcd.db"},
        "listen": {"tcp": ["127.0.0.1:0"], "udp": ["127.0.0.1:0"]},
        "kdc": {"realm": "EXAMPLE.TEST"},
    }
    for table, values in overrides.items():
        data.setdefault(table, {}).update(values)
    return config_from_dict(data, KdcdConfig)


@pytest.fixture
async def kdc():
    servers = []

    async def start(**overrides):
        engine = FakeEngine()
        server = KdcServer(make_config(**overrides), engine_factory=lambda cfg, stack: engine)
        await server.start()
        server.engine = engine
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


async def read_frame(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    header = await asyncio.wait_for(reader.readexactly(4), timeout)
    return await asyncio.wait_for(reader.readexactly(int.from_bytes(header, "big")), timeout)


async def connect(server: KdcServer):
    return await asyncio.open_connection(*server.tcp_addresses[0])


async def assert_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> None:
    try:
        assert await asyncio.wait_for(reader.read(), timeout) == b""
    except ConnectionError:  # an abort() shows up as a reset (or a broken pipe): closed all the same
        pass


def krb_error_code(data: bytes) -> int:
    return int(decode_as(KRB_ERROR, data)["error-code"].native)


# --- TCP framing ------------------------------------------------------------------------------


async def test_several_requests_per_connection_in_order(kdc):
    server = await kdc()
    reader, writer = await connect(server)
    for i in range(5):
        writer.write(frame(b"req%d" % i))
        assert await read_frame(reader) == b"echo:req%d" % i
    # pipelined, and split at awkward places
    blob = b"".join(frame(b"p%d" % i) for i in range(3))
    for i in range(0, len(blob), 3):
        writer.write(blob[i : i + 3])
        await writer.drain()
    assert [await read_frame(reader) for _ in range(3)] == [b"echo:p0", b"echo:p1", b"echo:p2"]
    writer.close()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_accepted_connections_have_nagle_off(loop_kind):
    """Replies are written whole and at once, so Nagle's algorithm would only delay them. kdcd
    leaves TCP_NODELAY to the event loop, which sets it on every TCP transport (both loops)."""

    async def main() -> int:
        server = KdcServer(make_config(), engine_factory=lambda cfg, stack: FakeEngine())
        await server.start()
        try:
            reader, writer = await connect(server)
            writer.write(frame(b"x"))
            assert await read_frame(reader) == b"echo:x"
            (connection,) = server.connections
            sock = connection.transport.get_extra_info("socket")
            writer.close()
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            await server.stop()

    if loop_kind == "uvloop":
        import uvloop

        assert uvloop.run(main()) != 0
    else:
        assert asyncio.run(main()) != 0


async def test_high_bit_gets_field_toolong_then_close(kdc):
    server = await kdc()
    reader, writer = await connect(server)
    writer.write(b"\x80\x00\x00\x10" + b"A" * 16)
    reply = await read_frame(reader)
    error = decode_as(KRB_ERROR, reply)
    assert int(error["error-code"].native) == ErrorCode.KRB_ERR_FIELD_TOOLONG == 61
    assert error["realm"].native == "EXAMPLE.TEST"
    await assert_closed(reader)
    assert server.engine.calls == []
    assert server.counters["tcp_too_long"] == 1


async def test_length_above_cap_gets_field_toolong(kdc):
    server = await kdc(tcp={"max_message_size": 1000})
    reader, writer = await connect(server)
    writer.write(frame(b"ok"))
    assert await read_frame(reader) == b"echo:ok"
    writer.write((1001).to_bytes(4, "big"))  # only the header: refused before the body arrives
    assert krb_error_code(await read_frame(reader)) == 61
    await assert_closed(reader)
    # exactly at the cap is fine
    reader, writer = await connect(server)
    writer.write(frame(b"z" * 1000))
    assert await read_frame(reader) == b"echo:" + b"z" * 1000
    writer.close()


async def test_idle_connection_is_closed(kdc):
    server = await kdc(tcp={"idle_timeout": 0.3})
    reader, writer = await connect(server)
    writer.write(frame(b"one"))
    assert await read_frame(reader) == b"echo:one"
    started = time.monotonic()
    await assert_closed(reader, timeout=3)
    assert 0.25 <= time.monotonic() - started < 2
    assert server.counters["tcp_idle_closed"] == 1


async def test_slow_partial_message_is_closed_even_while_bytes_trickle(kdc):
    server = await kdc(tcp={"idle_timeout": 0.5})
    reader, writer = await connect(server)
    writer.write(frame(b"x" * 100)[:10])
    started = time.monotonic()
    try:
        for _ in range(15):  # a byte every 0.1 s does not keep a started message alive
            await asyncio.sleep(0.1)
            writer.write(b"x")
            await writer.drain()
    except ConnectionError:
        pass
    await assert_closed(reader, timeout=3)
    assert time.monotonic() - started < 1.2
    assert server.counters["tcp_idle_closed"] == 1


async def test_truncated_and_garbage_close_while_others_are_served(kdc):
    server = await kdc()
    good_r, good_w = await connect(server)
    good_w.write(frame(b"before"))
    assert await read_frame(good_r) == b"echo:before"

    # truncated: a header promising 100 bytes, 10 sent, then EOF -> closed quietly, engine untouched
    r1, w1 = await connect(server)
    w1.write((100).to_bytes(4, "big") + b"y" * 10)
    w1.write_eof()
    await assert_closed(r1)
    # garbage the engine refuses (returns None) -> closed
    r2, w2 = await connect(server)
    w2.write(frame(b"close"))
    await assert_closed(r2)
    # the engine raising -> closed, logged, counted
    r3, w3 = await connect(server)
    with capture_logs() as logs:
        w3.write(frame(b"boom"))
        await assert_closed(r3)
    assert any(e["event"] == "engine raised" and e["log_level"] == "error" for e in logs)
    assert server.counters["engine_exceptions"] == 1

    good_w.write(frame(b"after"))
    assert await read_frame(good_r) == b"echo:after"
    assert [c[0] for c in server.engine.calls] == [b"before", b"close", b"boom", b"after"]
    good_w.close()


async def test_max_connections(kdc):
    server = await kdc(tcp={"max_connections": 2})
    conns = [await connect(server) for _ in range(2)]
    for r, w in conns:
        w.write(frame(b"hi"))
        assert await read_frame(r) == b"echo:hi"
    r3, w3 = await connect(server)
    await assert_closed(r3)
    assert server.counters["tcp_refused_full"] == 1
    conns[0][1].close()
    await asyncio.sleep(0.1)
    r4, w4 = await connect(server)
    w4.write(frame(b"again"))
    assert await read_frame(r4) == b"echo:again"
    for _, w in conns[1:] + [(r4, w4)]:
        w.close()


async def test_stop_closes_connections(kdc):
    server = await kdc()
    reader, writer = await connect(server)
    writer.write(frame(b"x"))
    assert await read_frame(reader) == b"echo:x"
    await server.stop()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        data = await asyncio.wait_for(reader.read(), 3)
        if data == b"":
            raise ConnectionResetError
    with pytest.raises(OSError):
        await connect(server)


async def test_request_log_carries_peer_and_what_the_engine_bound(kdc):
    server = await kdc()
    reader, writer = await connect(server)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        writer.write(frame(b"who:cta/001122aabbcc@EXAMPLE.TEST"))
        assert await read_frame(reader) == b"ok"
        writer.write(frame(b"plain"))
        assert await read_frame(reader) == b"echo:plain"
    requests = [e for e in logs if e["event"] == "request"]
    assert requests[0]["principal"] == "cta/001122aabbcc@EXAMPLE.TEST"
    assert requests[0]["peer"].startswith("127.0.0.1:") and requests[0]["transport"] == "tcp"
    assert "principal" not in requests[1]  # bound per request, never leaks to the next
    assert "principal" not in structlog.contextvars.get_contextvars()
    writer.close()


# --- UDP --------------------------------------------------------------------------------------


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.queue.put_nowait(data)


async def udp_client(server: KdcServer):
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Udp, remote_addr=tuple(server.udp_addresses[0]))
    return transport, proto


async def test_udp_request_reply_and_too_big(kdc):
    server = await kdc(udp={"max_reply_size": 1400})
    transport, proto = await udp_client(server)
    transport.sendto(b"hello")
    assert await asyncio.wait_for(proto.queue.get(), 5) == b"echo:hello"
    transport.sendto(b"big:1400")
    assert await asyncio.wait_for(proto.queue.get(), 5) == b"x" * 1400
    transport.sendto(b"big:1401")
    reply = await asyncio.wait_for(proto.queue.get(), 5)
    assert krb_error_code(reply) == ErrorCode.KRB_ERR_RESPONSE_TOO_BIG == 52
    assert server.counters["udp_too_big"] == 1
    transport.sendto(b"close")  # nothing comes back for a dropped request ...
    transport.sendto(b"after")  # ... and the next one is served
    assert await asyncio.wait_for(proto.queue.get(), 5) == b"echo:after"
    transport.close()


async def test_udp_oversized_datagram_dropped(kdc):
    server = await kdc(udp={"max_request_size": 1000})
    transport, proto = await udp_client(server)
    transport.sendto(b"q" * 1001)
    transport.sendto(b"small")
    assert await asyncio.wait_for(proto.queue.get(), 5) == b"echo:small"
    assert server.counters["udp_too_long"] == 1
    assert [c[0] for c in server.engine.calls] == [b"small"]
    transport.close()


# --- the daemon: processes, workers, signals --------------------------------------------------


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "kdcd.db").write_bytes(b"")
    mkey = tmp_path / "kdcd.db.mkey"
    mkey.write_bytes(b"")
    mkey.chmod(0o600)
    path = tmp_path / "kdcd.toml"
    path.write_text(text)
    return path


class Kdcd:
    """`python -m kdcd` as a subprocess; its JSON log lines are collected by a thread."""

    def __init__(self, config: Path, *extra: str, engine_factory: str | None = "tests.test_kdcd_server:fake_engine_factory"):
        args = [sys.executable, "-m", "kdcd", "-c", str(config), "--log-format", "json", *extra]
        if engine_factory:
            args += ["--engine-factory", engine_factory]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event:
                return entry
        self.kill()
        raise AssertionError(f"no {event!r} from kdcd; stderr:\n{''.join(self.lines)}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def tcp_ask(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(frame(data))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf[4:]


def udp_ask(port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(data, ("127.0.0.1", port))
        return sock.recv(65536)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_share_one_port_and_sigterm_stops_all(tmp_path):
    config = write_config(tmp_path, 'workers = 2\n[listen]\ntcp = ["127.0.0.1:0"]\nudp = ["127.0.0.1:0"]\n'
                                    '[database]\npath = "kdcd.db"\n[kdc]\nrealm = "EXAMPLE.TEST"\n')
    kdcd = Kdcd(config)
    proc = kdcd.proc
    try:
        ready = kdcd.wait_for("workers ready")
        worker_pids = set(ready["pids"])
        assert len(worker_pids) == 2 and proc.pid not in worker_pids
        tcp_port = int(ready["tcp"][0].rsplit(":", 1)[1])
        udp_port = int(ready["udp"][0].rsplit(":", 1)[1])
        assert tcp_port != 0 and udp_port != 0
        answered = {int(tcp_ask(tcp_port, b"pid")) for _ in range(64)}
        assert answered == worker_pids  # SO_REUSEPORT spread the connections over both workers
        udp_answered = {int(udp_ask(udp_port, b"pid")) for _ in range(64)}
        assert udp_answered == worker_pids

        # a crashed worker is replaced; the port keeps working meanwhile
        victim = sorted(worker_pids)[0]
        os.kill(victim, signal.SIGKILL)
        restarted = kdcd.wait_for("worker restarted")
        assert restarted["pid"] not in worker_pids
        assert tcp_ask(tcp_port, b"ping") == b"echo:ping"
        worker_pids = (worker_pids - {victim}) | {restarted["pid"]}

        # SIGHUP: the supervisor re-validates the file and forwards it; everyone keeps serving
        proc.send_signal(signal.SIGHUP)
        kdcd.wait_for("reloaded")
        assert {int(tcp_ask(tcp_port, b"pid")) for _ in range(32)} == worker_pids

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        deadline = time.monotonic() + 5
        while any(pid_alive(p) for p in worker_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(pid_alive(p) for p in worker_pids)
        with pytest.raises(OSError):
            tcp_ask(tcp_port, b"pid")
    finally:
        kdcd.kill()


def test_single_process_sigterm(tmp_path):
    config = write_config(tmp_path, '[listen]\ntcp = ["127.0.0.1:0"]\nudp = []\n'
                                    '[database]\npath = "kdcd.db"\n[kdc]\nrealm = "EXAMPLE.TEST"\n')
    kdcd = Kdcd(config, "--no-uvloop")
    proc = kdcd.proc
    try:
        listening = kdcd.wait_for("listening")
        port = int(listening["tcp"][0].rsplit(":", 1)[1])
        assert int(tcp_ask(port, b"pid")) == proc.pid
        kdcd.wait_for("ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        kdcd.kill()


def test_worker_that_cannot_start_fails_the_start(tmp_path):
    config = write_config(tmp_path, 'workers = 2\n[listen]\ntcp = ["127.0.0.1:0"]\nudp = []\n'
                                    '[database]\npath = "kdcd.db"\n[kdc]\nrealm = "EXAMPLE.TEST"\n')
    # the default engine factory cannot open an empty database file: start fails, exit 1, no orphans
    proc = subprocess.run(
        [sys.executable, "-m", "kdcd", "-c", str(config), "--log-format", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "start failed" in proc.stderr
