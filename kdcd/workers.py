"""`workers = N`: N kdcd processes sharing the listen ports (SO_REUSEPORT), under one supervisor.

The supervisor (the process systemd starts; `WorkerSupervisor` is its only Service) binds no
listener itself. It

1. resolves port 0: for each TCP address with port 0 it binds a probe socket with SO_REUSEPORT
   (bound, never listening, so it takes no connections) and keeps it open for its whole life,
   so every worker, including restarted ones, binds the same port. UDP cannot be held that way
   (a bound UDP socket in the reuseport group would receive its share of datagrams), so a UDP
   port 0 is picked by binding and releasing (preferring the TCP port of the same host): a small
   window in which another process could take it, acceptable for tests, which is what port 0 is
   for;
2. starts the workers as `python -m kdcd -c FILE --worker-fd FD --listen-json ...`: fork and exec,
   not a bare fork, because forking a process with a running event loop (uvloop's epoll and
   signal descriptors, the running-loop state) is unsafe, and a restart happens with the loop
   running. Each worker opens its own database handle and listeners (SO_REUSEPORT) and runs the
   ordinary daemon shell with systemd notification switched off;
3. waits until every worker reports `ready` over its socketpair, then the daemon shell sends
   READY=1; a worker that exits before that fails the start;
4. restarts a worker that exits unexpectedly, after a back-off (1 s doubling to 30 s; back to
   1 s once a worker has run for a minute), forwards SIGHUP (after validating the file itself,
   so a bad file gives "reload failed" and the workers keep running) and, on stop, SIGTERM
   (SIGKILL after `stop_grace` seconds).

Workers run in their own session (Ctrl-C reaches the supervisor only) and stop when the
supervisor's end of their socketpair closes, so a killed supervisor leaves no orphans.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.config import HostPort
from common.logsetup import get_logger

from .config import KdcdConfig, load_kdcd_config
from .server import bind_socket

__all__ = ["ParentLink", "WorkerSupervisor", "resolve_ports"]

log = get_logger("kdcd.workers")

BACKOFF_MIN = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # seconds of running that reset the back-off
READY_TIMEOUT = 60.0


def resolve_ports(cfg: KdcdConfig) -> tuple[list[HostPort], list[HostPort], list[socket.socket]]:
    """Concrete TCP and UDP addresses for every port 0, plus the TCP probe sockets to keep open."""
    probes: list[socket.socket] = []
    tcp: list[HostPort] = []
    try:
        for address in cfg.listen.tcp:
            if address.port == 0:
                sock = bind_socket("tcp", address, reuse_port=True, listen=False)
                probes.append(sock)
                address = HostPort(address.host, sock.getsockname()[1])
            tcp.append(address)
        udp: list[HostPort] = []
        for address in cfg.listen.udp:
            if address.port == 0:
                address = HostPort(address.host, _free_udp_port(address, [a.port for a in tcp if a.host == address.host]))
            udp.append(address)
    except BaseException:
        for sock in probes:
            sock.close()
        raise
    return tcp, udp, probes


def _free_udp_port(address: HostPort, preferred: Sequence[int]) -> int:
    for port in (*preferred, 0):
        try:
            sock = bind_socket("udp", HostPort(address.host, port), reuse_port=False)
        except OSError:
            continue
        with sock:
            return int(sock.getsockname()[1])
    raise OSError(f"no free UDP port on {address.host}")  # pragma: no cover - port 0 always binds


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    link: socket.socket | None = None  # the supervisor's end of the socketpair
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_MIN
    task: asyncio.Task[None] | None = None
    ready: asyncio.Future[None] | None = field(default=None, repr=False)


class WorkerSupervisor:
    """The `common.daemon.Service` of the supervisor process (see the module docstring)."""

    name = "workers"

    def __init__(
        self,
        cfg: KdcdConfig,
        config_path: str | os.PathLike[str],
        *,
        worker_args: Sequence[str] = (),
        stop_grace: float = 8.0,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.cfg = cfg
        self.config_path = Path(config_path).absolute()
        self.worker_args = list(worker_args)
        self.stop_grace = stop_grace
        self.ready_timeout = ready_timeout
        self.workers = [_Worker(i) for i in range(cfg.workers)]
        self.tcp_addresses: list[HostPort] = []
        self.udp_addresses: list[HostPort] = []
        self._probes: list[socket.socket] = []
        self._stopping = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.tcp_addresses, self.udp_addresses, self._probes = resolve_ports(self.cfg)
        try:
            for worker in self.workers:
                await self._spawn(worker)
            await self._wait_ready(self.workers)
        except BaseException:
            self._stopping = True
            await self._terminate_all()
            self._close_probes()
            raise
        for worker in self.workers:
            worker.task = asyncio.get_running_loop().create_task(self._supervise(worker), name=f"worker-{worker.index}")
        log.info(
            "workers ready",
            workers=len(self.workers),
            pids=[w.process.pid for w in self.workers if w.process],
            tcp=[str(a) for a in self.tcp_addresses],
            udp=[str(a) for a in self.udp_addresses],
        )

    async def stop(self) -> None:
        self._stopping = True
        for worker in self.workers:
            if worker.task is not None:
                worker.task.cancel()
        await self._terminate_all()
        self._close_probes()

    async def reload(self) -> None:
        new = load_kdcd_config(self.config_path)  # a bad file: "reload failed", workers untouched
        if new.workers != self.cfg.workers:
            log.warning("workers changes only on restart", configured=new.workers, running=self.cfg.workers)
        for worker in self.workers:
            self._signal(worker, signal.SIGHUP)

    def status(self) -> str:
        alive = sum(1 for w in self.workers if w.process is not None and w.process.returncode is None)
        restarts = sum(w.restarts for w in self.workers)
        listen = " ".join([f"tcp {a}" for a in self.tcp_addresses] + [f"udp {a}" for a in self.udp_addresses])
        return f"{alive}/{len(self.workers)} workers; restarts={restarts}; {listen}"

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process is not None and w.process.returncode is None]

    # --- workers -----------------------------------------------------------------------------

    def _command(self, fd: int) -> list[str]:
        listen = {"tcp": [str(a) for a in self.tcp_addresses], "udp": [str(a) for a in self.udp_addresses]}
        return [
            sys.executable, "-m", "kdcd", "-c", str(self.config_path),
            "--worker-fd", str(fd), "--listen-json", json.dumps(listen), *self.worker_args,
        ]

    async def _spawn(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env["KDCD_WORKER_INDEX"] = str(worker.index)
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self._command(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker.link = ours
        worker.started = loop.time()
        worker.ready = loop.create_future()
        loop.create_task(self._read_link(worker, ours, worker.ready))
        log.info("worker started", worker=worker.index, pid=worker.process.pid)

    async def _read_link(self, worker: _Worker, sock: socket.socket, ready: asyncio.Future[None]) -> None:
        """Resolve `ready` when the worker says so (or fail it when the link closes first)."""
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        buffered = b""
        try:
            while b"\n" not in buffered:
                chunk = await loop.sock_recv(sock, 256)
                if not chunk:
                    break
                buffered += chunk
        except OSError:
            pass
        if not ready.done():
            if buffered.startswith(b"ready"):
                ready.set_result(None)
            else:
                ready.set_exception(RuntimeError(f"worker {worker.index} exited before it was ready"))

    async def _wait_ready(self, workers: Sequence[_Worker]) -> None:
        waits = [w.ready for w in workers if w.ready is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.ready_timeout)
        except asyncio.TimeoutError:
            raise RuntimeError(f"workers not ready after {self.ready_timeout:g} s") from None

    async def _supervise(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            assert worker.process is not None
            code = await worker.process.wait()
            self._close_link(worker)
            if self._stopping:
                return
            ran = loop.time() - worker.started
            if ran >= STABLE_AFTER:
                worker.backoff = BACKOFF_MIN
            log.error("worker exited; restarting", worker=worker.index, pid=worker.process.pid, exit_code=code,
                      ran_seconds=round(ran, 1), restart_in=worker.backoff)
            await asyncio.sleep(worker.backoff)
            worker.backoff = min(worker.backoff * 2, BACKOFF_MAX)
            if self._stopping:
                return
            try:
                await self._spawn(worker)
                worker.restarts += 1
                await self._wait_ready([worker])
                log.info("worker restarted", worker=worker.index, pid=worker.process.pid)
            except (OSError, RuntimeError) as exc:
                log.error("worker restart failed", worker=worker.index, error=str(exc))
                if worker.process is not None and worker.process.returncode is None:
                    self._signal(worker, signal.SIGKILL)

    def _signal(self, worker: _Worker, signum: int) -> None:
        if worker.process is not None and worker.process.returncode is None:
            try:
                worker.process.send_signal(signum)
            except ProcessLookupError:  # pragma: no cover - exited meanwhile
                pass

    async def _terminate_all(self) -> None:
        running = [w for w in self.workers if w.process is not None and w.process.returncode is None]
        for worker in running:
            self._signal(worker, signal.SIGTERM)
        if running:
            waits = {asyncio.ensure_future(w.process.wait()) for w in running}  # type: ignore[union-attr]
            _, pending = await asyncio.wait(waits, timeout=self.stop_grace)
            if pending:
                for worker in running:
                    if worker.process is not None and worker.process.returncode is None:
                        log.error("worker did not stop; killing it", worker=worker.index, pid=worker.process.pid)
                        self._signal(worker, signal.SIGKILL)
                await asyncio.wait(pending, timeout=5)
        for worker in self.workers:
            self._close_link(worker)

    def _close_link(self, worker: _Worker) -> None:
        if worker.link is not None:
            worker.link.close()
            worker.link = None

    def _close_probes(self) -> None:
        for sock in self._probes:
            sock.close()
        self._probes = []


class ParentLink:
    """Worker side of the socketpair: says `ready` once the listeners are up; stops the worker
    when the supervisor goes away (its end closes)."""

    name = "supervisor-link"

    def __init__(self, fd: int, request_stop) -> None:
        self.fd = fd
        self.request_stop = request_stop
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sock = socket.socket(fileno=self.fd)
        self._sock.setblocking(False)
        await loop.sock_sendall(self._sock, f"ready {os.getpid()}\n".encode())
        self._task = loop.create_task(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        try:
            while await loop.sock_recv(self._sock, 256):
                pass
        except OSError:
            pass
        self.request_stop("supervisor gone", failed=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
