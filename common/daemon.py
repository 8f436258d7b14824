"""The daemon shell shared by kdcd, scd and ctad: start parts, report ready, wait, stop cleanly.

A daemon's `main()` parses arguments (`daemon_argparser`), loads and validates its config
(`common.config`), configures logging (`common.logsetup`), builds its services and returns
`run(lambda: amain(services, SystemdNotifier()), use_uvloop=args.uvloop)` as the exit code.

Lifecycle, as systemd sees it (Type=notify or Type=notify-reload):

    start services in order ──ok──► READY=1 + STATUS ──SIGHUP──► RELOADING=1 … READY=1
          │ one fails                      │ SIGTERM/SIGINT
          ▼                                ▼
    stop the started ones,          STOPPING=1, stop services in reverse order,
    reversed; exit 1                each under stop_timeout; exit 0 (1 if a stop failed)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from common.logsetup import LEVELS, get_logger
from common.sdnotify import SystemdNotifier, start_watchdog

__all__ = ["Daemon", "Service", "amain", "daemon_argparser", "add_daemon_arguments", "run", "stop_process"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # the shell convention for "killed by SIGINT" (128 + 2)


@runtime_checkable
class Service(Protocol):
    """One part of a daemon (a listener, an engine with its timers, a database handle).

    Optional members, looked up with getattr: `name: str` (for logs; defaults to the class
    name), `async reload()` (SIGHUP: re-read what can change without a restart) and
    `status() -> str` (a few words for `systemctl status`). `start()` must clean up after itself
    if it fails or is cancelled: `stop()` is only called on services whose start completed.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def service_name(service: Service) -> str:
    return str(getattr(service, "name", None) or type(service).__name__)


class Daemon:
    """Runs services through the lifecycle above; `request_stop`/`request_reload` drive it.

    Signal handlers call the request methods; so can tests and services themselves (a service
    whose listener died calls `request_stop("...", failed=True)` to take the daemon down with a
    non-zero exit code, so that systemd's `Restart=on-failure` applies).
    """

    def __init__(
        self,
        services: Sequence[Service],
        notifier: SystemdNotifier | None = None,
        *,
        stop_timeout: float = 10.0,
        reload_timeout: float = 30.0,
        logger: Any = None,
    ) -> None:
        self.services = list(services)
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.stop_timeout = stop_timeout
        self.reload_timeout = reload_timeout
        self.log = logger if logger is not None else get_logger("daemon")
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._failed = False

    def request_stop(self, reason: str = "", *, failed: bool = False) -> None:
        if not self._stop.is_set():
            self.log.info("stop requested", reason=reason)
        self._failed = self._failed or failed
        self._stop.set()

    def request_reload(self) -> None:
        self.log.info("reload requested")
        self._reload.set()  # several SIGHUPs before the reload runs make one reload

    async def run(self, *, handle_signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        installed = self._install_signal_handlers(loop) if handle_signals else []
        try:
            self.log.info("starting", services=[service_name(s) for s in self.services], loop=_loop_name(loop))
            started = await self._start_all()
            if started is None:
                return EXIT_FAILURE
            if self._stop.is_set():  # a stop signal arrived during start-up
                await self._stop_all(started)
                return EXIT_FAILURE if self._failed else EXIT_OK
            status = self._status()
            self.notifier.ready(status)
            self.log.info("ready", status=status)
            watchdog = start_watchdog(self.notifier)
            try:
                while await self._next_request() == "reload":
                    await self._reload_all(started)
            finally:
                if watchdog is not None:
                    watchdog.cancel()
            self.notifier.stopping()
            self.log.info("stopping")
            clean = await self._stop_all(started)
            exit_code = EXIT_OK if clean and not self._failed else EXIT_FAILURE
            self.log.info("stopped", exit_code=exit_code)
            return exit_code
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        return [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]

    async def _start_all(self) -> list[Service] | None:
        """Start in order; on failure stop what started and return None. A stop request
        interrupts start-up (systemd sends SIGTERM when TimeoutStartSec= expires)."""
        started: list[Service] = []
        for service in self.services:
            name = service_name(service)
            starting = asyncio.ensure_future(service.start())
            stop_wait = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
            if not starting.done():
                starting.cancel()
                await asyncio.wait({starting}, timeout=self.stop_timeout)
                self.log.info("start interrupted", service=name)
                return started
            exc = asyncio.CancelledError("start() was cancelled") if starting.cancelled() else starting.exception()
            if exc is not None:
                self.log.error("start failed", service=name, error=str(exc) or type(exc).__name__, exc_info=exc)
                self.notifier.status(f"start failed: {name}: {exc}")
                await self._stop_all(started)
                return None
            self.log.info("started", service=name)
            started.append(service)
        return started

    async def _next_request(self) -> str:
        if not self._stop.is_set() and not self._reload.is_set():
            waiters = {asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self._reload.wait())}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        if self._stop.is_set():
            return "stop"
        self._reload.clear()
        return "reload"

    async def _reload_all(self, started: list[Service]) -> None:
        self.notifier.reloading("reloading")
        self.log.info("reloading")
        failures = []
        for service in started:
            reload = getattr(service, "reload", None)
            if reload is None:
                continue
            name = service_name(service)
            try:
                await asyncio.wait_for(reload(), self.reload_timeout)
            except Exception as exc:  # a failed reload keeps the old settings running
                failures.append(name)
                self.log.error("reload failed", service=name, error=str(exc) or type(exc).__name__, exc_info=exc)
        status = self._status()
        if failures:
            status = f"reload failed ({', '.join(failures)}), previous settings kept; {status}"
        self.notifier.ready(status)
        self.log.info("reloaded", status=status)

    async def _stop_all(self, started: list[Service]) -> bool:
        """Stop in reverse order, each under stop_timeout; a hung stop is cancelled and abandoned
        so that one stuck part cannot keep the others (and the process) from shutting down."""
        clean = True
        for service in reversed(started):
            name = service_name(service)
            stopping = asyncio.ensure_future(service.stop())
            done, _ = await asyncio.wait({stopping}, timeout=self.stop_timeout)
            if not done:
                stopping.cancel()
                self.log.error("stop timed out; abandoned", service=name, timeout=self.stop_timeout)
                clean = False
            elif stopping.cancelled() or stopping.exception() is not None:
                exc = None if stopping.cancelled() else stopping.exception()
                self.log.error("stop failed", service=name, error=repr(exc), exc_info=exc)
                clean = False
            else:
                self.log.info("stopped", service=name)
        return clean

    def _status(self) -> str:
        parts = []
        for service in self.services:
            status = getattr(service, "status", None)
            if status is None:
                continue
            try:
                parts.append(f"{service_name(service)}: {status()}")
            except Exception as exc:  # a status line is not worth failing over
                parts.append(f"{service_name(service)}: status unavailable ({type(exc).__name__})")
        return "; ".join(parts) or f"running ({len(self.services)} services)"


async def amain(
    services: Sequence[Service],
    notifier: SystemdNotifier | None = None,
    *,
    stop_timeout: float = 10.0,
    logger: Any = None,
) -> int:
    """Run `services` until SIGTERM/SIGINT, reloading them on SIGHUP; return the exit code."""
    return await Daemon(services, notifier, stop_timeout=stop_timeout, logger=logger).run()


def run(main: Callable[[], Awaitable[int | None]], *, use_uvloop: bool = True) -> int:
    """Run `main()` on a fresh event loop (uvloop when installed and wanted); return an exit code."""
    loop_factory = _uvloop_factory() if use_uvloop else None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return int(runner.run(main()) or 0)  # type: ignore[arg-type]
    except KeyboardInterrupt:  # Ctrl-C before amain installed its own handler
        return EXIT_INTERRUPTED
    except Exception as exc:
        get_logger("daemon").critical("daemon crashed", error=repr(exc), exc_info=exc)
        return EXIT_FAILURE


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def add_daemon_arguments(parser: argparse.ArgumentParser, *, default_config: Path | None = None) -> None:
    """The options every daemon takes; command-line values override the config's [logging]."""
    parser.add_argument(
        "-c", "--config", type=Path, default=default_config, required=default_config is None,
        help="TOML configuration file" + (f" (default: {default_config})" if default_config else ""),
    )
    parser.add_argument(
        "--no-uvloop", dest="uvloop", action="store_false",
        help="use the standard asyncio event loop even when uvloop is installed",
    )
    parser.add_argument("--log-level", choices=list(LEVELS), default=None, help="overrides [logging] level")
    parser.add_argument(
        "--log-format", choices=["json", "console"], default=None,
        help="overrides [logging] format (default: json unless stderr is a terminal)",
    )


def daemon_argparser(
    prog: str, *, description: str | None = None, default_config: Path | None = None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_daemon_arguments(parser, default_config=default_config)
    return parser


class EngineTimer:
    """The one loop timer a thin adapter keeps for its sans-I/O engines.

    After every input the adapter calls `arm(*deadlines)` with the engines' `get_timer()`
    values (None = no timer); the earliest wins, and an unchanged deadline keeps the handle.
    `fire` runs at that deadline; it re-arms itself by calling `arm` again after handling.
    """

    def __init__(self, fire: Callable[[], None], loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop  # None: the running loop at the first arm()
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, *deadlines: float | None) -> None:
        pending = [t for t in deadlines if t is not None]
        when = min(pending) if pending else None
        if self._handle is not None:
            if when is not None and self._handle.when() == when:
                return
            self._handle.cancel()
            self._handle = None
        if when is not None:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._handle = self._loop.call_at(when, self._run)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None
        self._fire()


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a daemon we started as a child: SIGTERM (our daemons stop cleanly on it), SIGKILL if
    it has not exited within 10 s. For the benchmarks and the demo."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
