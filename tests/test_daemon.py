"""The daemon shell: start order, failures, hung stops, reload, stop during start-up, `run()`,
the argument parser, and one real subprocess driven by SIGHUP/SIGTERM with a fake systemd."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from common.daemon import Daemon, Service, amain, daemon_argparser, run
from common.sdnotify import SystemdNotifier

REPO = Path(__file__).resolve().parents[1]


class RecordingNotifier(SystemdNotifier):
    """Records what would be sent to systemd; `readied` fires on each READY=1."""

    def __init__(self, environ: dict[str, str] | None = None):
        super().__init__(environ or {})
        self.sent: list[tuple[str, ...]] = []
        self.readied = asyncio.Event()

    def notify(self, *assignments: str) -> bool:
        self.sent.append(assignments)
        if "READY=1" in assignments:
            self.readied.set()
        return True

    @property
    def first_words(self) -> list[str]:
        return [a[0] for a in self.sent]


class Part:
    """An in-memory service writing what happens to it into a shared journal."""

    def __init__(self, name: str, journal: list[str], *, fail_start=False, hang_start=False,
                 fail_stop=False, hang_stop=False, fail_reload=False, reloadable=True):
        self.name, self.journal = name, journal
        self.fail_start, self.hang_start = fail_start, hang_start
        self.fail_stop, self.hang_stop, self.fail_reload = fail_stop, hang_stop, fail_reload
        if not reloadable:
            self.reload = None  # type: ignore[assignment]

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")
        if self.hang_start:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.journal.append(f"start cancelled {self.name}")
                raise
        if self.fail_start:
            raise OSError(98, "Address already in use")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")
        if self.hang_stop:
            await asyncio.Event().wait()
        if self.fail_stop:
            raise RuntimeError("socket already closed")

    async def reload(self) -> None:
        self.journal.append(f"reload {self.name}")
        if self.fail_reload:
            raise ValueError("kdc.tcp.port: expected an integer")

    def status(self) -> str:
        return "ok"


async def run_daemon(daemon: Daemon, *requests: str) -> int:
    """Run until ready, then issue requests ("reload"/"stop"), each after the previous READY."""
    notifier = daemon.notifier
    assert isinstance(notifier, RecordingNotifier)
    task = asyncio.ensure_future(daemon.run(handle_signals=False))
    for request in requests:
        done, _ = await asyncio.wait({task, asyncio.ensure_future(notifier.readied.wait())},
                                     timeout=2, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            break
        notifier.readied.clear()
        daemon.request_reload() if request == "reload" else daemon.request_stop("test")
    return await asyncio.wait_for(task, 2)


def test_part_is_a_service():
    assert isinstance(Part("a", []), Service)


async def test_start_in_order_ready_then_stop_in_reverse():
    journal: list[str] = []
    notifier = RecordingNotifier()
    daemon = Daemon([Part("a", journal), Part("b", journal), Part("c", journal)], notifier)
    assert await run_daemon(daemon, "stop") == 0
    assert journal == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    assert notifier.sent == [("READY=1", "STATUS=a: ok; b: ok; c: ok"), ("STOPPING=1",)]


async def test_failed_start_stops_the_started_ones_in_reverse_and_exits_1():
    journal: list[str] = []
    notifier = RecordingNotifier()
    parts = [Part("a", journal), Part("b", journal), Part("c", journal, fail_start=True), Part("d", journal)]
    with capture_logs() as logs:
        assert await run_daemon(Daemon(parts, notifier)) == 1
    assert journal == ["start a", "start b", "start c", "stop b", "stop a"]
    assert notifier.first_words == ["STATUS=start failed: c: [Errno 98] Address already in use"]
    (failure,) = [e for e in logs if e["event"] == "start failed"]
    assert failure["service"] == "c" and failure["log_level"] == "error"
    assert "Address already in use" in failure["error"]


async def test_hung_stop_is_abandoned_and_the_others_still_stop():
    journal: list[str] = []
    parts = [Part("a", journal), Part("b", journal, hang_stop=True), Part("c", journal)]
    with capture_logs() as logs:
        code = await run_daemon(Daemon(parts, RecordingNotifier(), stop_timeout=0.05), "stop")
    assert code == 1
    assert journal == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    (hung,) = [e for e in logs if e["event"] == "stop timed out; abandoned"]
    assert hung["service"] == "b" and hung["timeout"] == 0.05


async def test_failing_stop_is_logged_and_the_others_still_stop():
    journal: list[str] = []
    parts = [Part("a", journal), Part("b", journal, fail_stop=True)]
    with capture_logs() as logs:
        assert await run_daemon(Daemon(parts, RecordingNotifier()), "stop") == 1
    assert journal[-2:] == ["stop b", "stop a"]
    assert [e["service"] for e in logs if e["event"] == "stop failed"] == ["b"]


async def test_reload_notifies_reloading_then_ready():
    journal: list[str] = []
    notifier = RecordingNotifier()
    parts = [Part("a", journal), Part("b", journal, reloadable=False), Part("c", journal)]
    assert await run_daemon(Daemon(parts, notifier), "reload", "stop") == 0
    assert journal == ["start a", "start b", "start c", "reload a", "reload c", "stop c", "stop b", "stop a"]
    assert notifier.first_words == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    assert notifier.sent[1][1].startswith("MONOTONIC_USEC=")


async def test_failed_reload_keeps_running_and_says_so():
    journal: list[str] = []
    notifier = RecordingNotifier()
    parts = [Part("a", journal, fail_reload=True), Part("b", journal)]
    with capture_logs() as logs:
        assert await run_daemon(Daemon(parts, notifier), "reload", "stop") == 0
    assert journal == ["start a", "start b", "reload a", "reload b", "stop b", "stop a"]
    assert notifier.sent[2] == ("READY=1", "STATUS=reload failed (a), previous settings kept; a: ok; b: ok")
    assert [e["service"] for e in logs if e["event"] == "reload failed"] == ["a"]


async def test_stop_requested_during_start_up_cancels_it():
    journal: list[str] = []
    notifier = RecordingNotifier()
    daemon = Daemon([Part("a", journal), Part("b", journal, hang_start=True), Part("c", journal)], notifier)
    asyncio.get_running_loop().call_later(0.02, daemon.request_stop, "SIGTERM")
    assert await asyncio.wait_for(daemon.run(handle_signals=False), 2) == 0
    assert journal == ["start a", "start b", "start cancelled b", "stop a"]
    assert notifier.sent == []  # never READY, so never STOPPING either


async def test_a_service_can_request_a_failing_stop():
    journal: list[str] = []
    notifier = RecordingNotifier()
    daemon = Daemon([Part("a", journal)], notifier)
    task = asyncio.ensure_future(daemon.run(handle_signals=False))
    await asyncio.wait_for(notifier.readied.wait(), 2)
    daemon.request_stop("listener died", failed=True)
    assert await asyncio.wait_for(task, 2) == 1
    assert journal == ["start a", "stop a"]


async def test_status_without_status_methods():
    class Bare:
        async def start(self) -> None: ...
        async def stop(self) -> None: ...

    notifier = RecordingNotifier()
    assert await run_daemon(Daemon([Bare(), Bare()], notifier), "stop") == 0
    assert notifier.sent[0] == ("READY=1", "STATUS=running (2 services)")


async def test_watchdog_pings_while_running():
    notifier = RecordingNotifier({"WATCHDOG_USEC": "20000"})
    daemon = Daemon([Part("a", [])], notifier)
    task = asyncio.ensure_future(daemon.run(handle_signals=False))
    await asyncio.wait_for(notifier.readied.wait(), 2)
    await asyncio.sleep(0.035)
    daemon.request_stop()
    assert await asyncio.wait_for(task, 2) == 0
    words = notifier.first_words
    assert words[0] == "READY=1" and words[-1] == "STOPPING=1"
    assert words.count("WATCHDOG=1") >= 2 and set(words[1:-1]) == {"WATCHDOG=1"}


async def test_amain_handles_real_signals_in_process():
    journal: list[str] = []
    notifier = RecordingNotifier()
    task = asyncio.ensure_future(amain([Part("a", journal)], notifier))
    await asyncio.wait_for(notifier.readied.wait(), 2)  # handlers are installed before READY
    notifier.readied.clear()
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.wait_for(notifier.readied.wait(), 2)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 2) == 0
    assert journal == ["start a", "reload a", "stop a"]
    # ... and removed afterwards: SIGHUP is back to its default disposition.
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_run_uses_uvloop_unless_disabled():
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    seen = []

    async def main() -> int:
        seen.append(await loop_module())
        return 3

    assert run(main, use_uvloop=True) == 3
    assert run(main, use_uvloop=False) == 3
    assert seen[0].startswith("uvloop") and seen[1].startswith("asyncio")


def test_run_turns_crashes_and_interrupts_into_exit_codes():
    async def crash() -> int:
        raise RuntimeError("bug")

    async def interrupted() -> int:
        raise KeyboardInterrupt

    async def nothing() -> None:
        return None

    with capture_logs() as logs:
        assert run(crash, use_uvloop=False) == 1
    assert logs[0]["event"] == "daemon crashed" and logs[0]["log_level"] == "critical"
    assert run(interrupted, use_uvloop=False) == 130
    assert run(nothing, use_uvloop=False) == 0


def test_daemon_argparser():
    parser = daemon_argparser("kdcd", default_config=Path("/etc/kerbtel/kdcd.toml"))
    args = parser.parse_args([])
    assert (args.config, args.uvloop, args.log_level, args.log_format) == (
        Path("/etc/kerbtel/kdcd.toml"), True, None, None)
    args = parser.parse_args(["-c", "k.toml", "--no-uvloop", "--log-level", "debug", "--log-format", "console"])
    assert (args.config, args.uvloop, args.log_level, args.log_format) == (Path("k.toml"), False, "debug", "console")
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-format", "xml"])
    with pytest.raises(SystemExit):
        daemon_argparser("scd").parse_args([])  # no default config: -c is required


SCRIPT = textwrap.dedent(
    """
    import sys
    from common.daemon import amain, daemon_argparser, run
    from common.logsetup import configure_logging
    from common.sdnotify import SystemdNotifier

    class Part:
        def __init__(self, name):
            self.name = name
        async def start(self):
            print("start", self.name, flush=True)
        async def reload(self):
            print("reload", self.name, flush=True)
        async def stop(self):
            print("stop", self.name, flush=True)

    args = daemon_argparser("testd").parse_args()
    configure_logging(args.log_level or "info", args.log_format or "auto")
    sys.exit(run(lambda: amain([Part("a"), Part("b")], SystemdNotifier(), stop_timeout=2), use_uvloop=args.uvloop))
    """
)


@pytest.mark.parametrize("loop_flag", [[], ["--no-uvloop"]], ids=["uvloop", "asyncio"])
def test_subprocess_reload_and_stop_by_signal(tmp_path, loop_flag):
    script = tmp_path / "testd.py"
    script.write_text(SCRIPT)
    sock_dir = tmp_path if len(str(tmp_path)) < 90 else Path(tempfile.mkdtemp(prefix="sd", dir="/tmp"))
    notify_path = str(sock_dir / "notify")
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(notify_path)
    systemd.settimeout(10)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "PYTHONPATH": str(REPO)}

    def receive() -> list[str]:
        return systemd.recv(4096).decode().split("\n")

    proc = subprocess.Popen(
        [sys.executable, str(script), "-c", "unused.toml", "--log-format", "json", *loop_flag],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert receive()[0] == "READY=1"
        proc.send_signal(signal.SIGHUP)
        reloading = receive()
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert receive()[0] == "READY=1"
        proc.send_signal(signal.SIGTERM)
        assert receive()[0] == "STOPPING=1"
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        systemd.close()
    assert proc.returncode == 0, err
    assert out.split("\n") == ["start a", "start b", "reload a", "reload b", "stop b", "stop a", ""]
    events = [json.loads(line) for line in err.splitlines()]
    assert events[0]["event"] == "starting"
    assert events[0]["loop"] == ("asyncio" if loop_flag else "uvloop")
    assert events[-1]["event"] == "stopped" and events[-1]["exit_code"] == 0


async def test_engine_timer_fires_at_the_earliest_deadline_and_keeps_an_unchanged_one():
    from common.daemon import EngineTimer

    loop = asyncio.get_running_loop()
    fired: list[float] = []
    timer = EngineTimer(lambda: fired.append(loop.time()))
    start = loop.time()
    timer.arm(None, start + 0.05, start + 0.02)
    handle = timer._handle  # noqa: SLF001
    timer.arm(start + 0.02)  # same deadline: the handle is kept
    assert timer._handle is handle  # noqa: SLF001
    await asyncio.sleep(0.04)
    assert len(fired) == 1 and fired[0] >= start + 0.02
    timer.arm(None, None)  # nothing pending: nothing armed
    assert timer._handle is None  # noqa: SLF001
    timer.arm(loop.time() + 0.01)
    timer.cancel()
    await asyncio.sleep(0.02)
    assert len(fired) == 1
