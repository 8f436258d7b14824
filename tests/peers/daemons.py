"""kdcd + scd + ctad as real daemons on a `kerbtel init --key-log` deployment (issue 4 tests).

    with Daemons.create(tmp_dir) as d:           # kerbtel init --key-log, kdcd started
        d.start_scd("sc1"); d.start_ctad("cta1")
        d.wait_registered(["+15551230001"])      # polls scd's JSON log
        d.kill("scd:sc1"); d.start_scd("sc1")    # SIGKILL and restart

Every process is started here and stopped by its own Popen handle (never by name). Logs are
JSON lines in DIR/logs/<name>.<n>.log, one file per start.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.peers.kdcd import ROOT, RunningDeployment, kerbtel


class Daemons:
    def __init__(self, deployment: RunningDeployment) -> None:
        self.dep = deployment
        self.dir = deployment.directory
        self.manifest = deployment.manifest
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self._starts = 0
        (self.dir / "logs").mkdir(exist_ok=True)

    @classmethod
    def create(cls, directory: Path) -> Daemons:
        kerbtel("init", directory, "--realm", "EXAMPLE.TEST", "--key-log")
        dep = RunningDeployment(directory)
        dep.start()
        return cls(dep)

    def sc(self, name: str = "sc1") -> dict:
        return next(s for s in self.manifest["scs"] if s["name"] == name)

    def cta(self, name: str) -> dict:
        return next(c for c in self.manifest["ctas"] if c["name"] == name)

    def _start(self, key: str, module: str, config: str, log_level: str = "info") -> Path:
        self._starts += 1
        log = self.dir / "logs" / f"{key.replace(':', '-')}.{self._starts}.log"
        with open(log, "ab") as fh:
            self.procs[key] = subprocess.Popen(
                [sys.executable, "-m", module, "-c", config, "--log-format", "json", "--log-level", log_level],
                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        self.logs[key] = log
        return log

    def start_scd(self, name: str = "sc1", log_level: str = "info") -> Path:
        log = self._start(f"scd:{name}", "scd", self.sc(name)["config"], log_level)
        self.wait_log(f"scd:{name}", lambda r: r.get("event") == "ready", timeout=20)
        return log

    def start_ctad(self, name: str, log_level: str = "info") -> Path:
        return self._start(f"ctad:{name}", "ctad", self.cta(name)["config"], log_level)

    def start_echo(self, log_level: str = "info") -> Path:
        """The echo test service: ctad in echo mode on deployment.json's `echo` config (key "ctad:echo")."""
        return self._start("ctad:echo", "ctad", self.manifest["echo"]["config"], log_level)

    def start_ctas_with_lines(self, ctas: list[dict], timeout: float = 30.0) -> None:
        """Start these CTAs' ctad and wait until their lines are registered and line sides up."""
        for c in ctas:
            self.start_ctad(c["name"])
        for c in ctas:
            self.wait_registered(c["numbers"], sc=c["sc"], timeout=timeout)
            self.wait_log(f"ctad:{c['name']}", lambda r: r.get("event") == "line side")

    def records(self, key: str) -> list[dict]:
        out = []
        try:
            text = self.logs[key].read_text(errors="replace")
        except (KeyError, OSError):
            return out
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_log(self, key: str, predicate, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for record in self.records(key):
                if predicate(record):
                    return record
            proc = self.procs.get(key)
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{key} exited {proc.returncode}:\n{self.tail(key)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{key}: no matching log line within {timeout} s:\n{self.tail(key)}")
            time.sleep(0.05)

    def wait_registered(self, numbers, sc: str = "sc1", timeout: float = 20.0) -> float:
        """Seconds until scd's current log shows every number registered."""
        started = time.monotonic()
        key = f"scd:{sc}"

        def check(record: dict, number: str) -> bool:
            if record.get("event") == "register refused":
                raise AssertionError(f"{key} refused a REGISTER: {record}")
            return record.get("event") == "registered" and record.get("number") == number

        for number in numbers:
            self.wait_log(key, lambda r, n=number: check(r, n),
                          timeout=max(0.1, timeout - (time.monotonic() - started)))
        return time.monotonic() - started

    def tail(self, key: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.logs[key].read_text(errors="replace").splitlines()[-lines:])
        except (KeyError, OSError):
            return ""

    def stop(self, key: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(key, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def kill(self, key: str) -> None:
        self.stop(key, signal.SIGKILL)

    def close(self) -> None:
        for key in list(self.procs):
            self.stop(key)
        self.dep.stop()

    def __enter__(self) -> Daemons:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def daemons_fixture(name: str = "daemons", scope: str = "module"):
    import pytest

    @pytest.fixture(scope=scope, name=name)
    def _fixture(tmp_path_factory):
        d = Daemons.create(tmp_path_factory.mktemp("kerbtel") / "realm")
        try:
            yield d
        finally:
            d.close()

    return _fixture

