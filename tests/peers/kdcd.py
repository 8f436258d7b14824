"""kdcd as a real daemon on a `kerbtel init` deployment, for interop tests with MIT krb5 and tshark.

    with RunningDeployment.create(tmp_dir) as dep:   # kerbtel init + `python -m kdcd -c ...`
        dep.manifest["ctas"][0]["cert"], dep.host, dep.port
        dep.kerbtel("kinit", "--identity", ..., "--kdc", dep.address, ...)   # CLI in a subprocess

`deployment_fixture()` makes this a module-scoped pytest fixture (one deployment and one kdcd per
test module); the daemon is always terminated. `TcpRecorder` is a one-connection-at-a-time TCP
relay that keeps the requests it forwards (to inspect what an MIT client really sent).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def kerbtel(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the `kerbtel` CLI in a subprocess (as an operator would) from the repository root."""
    proc = subprocess.run(
        [sys.executable, "-m", "common.cli", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kerbtel {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


class RunningDeployment:
    """A deployment directory written by `kerbtel init` and kdcd serving it."""

    def __init__(self, directory: Path) -> None:
        import json

        self.directory = directory
        self.manifest = json.loads((directory / "deployment.json").read_text())
        self.address = self.manifest["kdc"]["tcp"]
        host, port = self.address.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.process: subprocess.Popen | None = None
        self.log = directory / "kdcd.log"

    @classmethod
    def create(cls, directory: Path, realm: str = "EXAMPLE.TEST") -> RunningDeployment:
        kerbtel("init", directory, "--realm", realm)
        dep = cls(directory)
        dep.start()
        return dep

    def start(self, timeout: float = 30) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kdcd", "-c", self.manifest["kdc"]["config"], "--log-format", "json"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"kdcd exited {self.process.returncode} at start:\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"kdcd did not listen on {self.address} within {timeout} s:\n{self.log_text()}")
                time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 6) -> str:
        """The last kdcd log lines, for assertion messages."""
        return "\nkdcd log tail:\n  " + "\n  ".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> RunningDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def mit_env(self, ccache: str | os.PathLike[str], config: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """Environment for MIT client programs against this deployment (no /etc/krb5.conf)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5")}
        env["KRB5_CONFIG"] = str(config or self.manifest["krb5_conf"])
        env["KRB5CCNAME"] = f"FILE:{ccache}"
        env["KRB5RCACHENAME"] = "none:"
        return env

    def client_config(self, path: Path, *, kdc: str | None = None, **libdefaults: object) -> Path:
        """A variant of the deployment's krb5.conf: other [libdefaults] values and/or another KDC."""
        lines = []
        for line in Path(self.manifest["krb5_conf"]).read_text().splitlines():
            if kdc is not None and line.strip().startswith("kdc = "):
                line = line.split("=", 1)[0] + f"= {kdc}"
            lines.append(line)
            if line.strip() == "[libdefaults]":
                lines += [f"    {k} = {v}" for k, v in libdefaults.items()]
        path.write_text("\n".join(lines) + "\n")
        return path


def deployment_fixture(name: str = "deployment", scope: str = "module", programs: tuple[str, ...] = ()):
    """A fixture yielding a RunningDeployment (after `require_peer(*programs)`)."""
    import pytest

    @pytest.fixture(scope=scope, name=name)
    def _fixture(tmp_path_factory):
        from tests.conftest import require_peer

        if programs:
            require_peer(*programs)
        directory = tmp_path_factory.mktemp("kdcd") / "realm"
        kerbtel("init", directory, "--realm", "EXAMPLE.TEST")
        dep = RunningDeployment(directory)
        try:
            dep.start()
            yield dep
        finally:
            dep.stop()

    return _fixture


def read_frame(sock: socket.socket) -> bytes | None:
    """One RFC 4120 7.2.2 TCP message (length prefix included), None at EOF."""
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    return buf


class TcpRecorder:
    """Relays Kerberos-over-TCP connections to `target` and records each request's bytes."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TcpRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            with client, socket.create_connection(self.target, timeout=30) as upstream:
                client.settimeout(30)
                while (request := read_frame(client)) is not None:
                    self.requests.append(request[4:])
                    upstream.sendall(request)
                    reply = read_frame(upstream)
                    if reply is None:
                        break
                    client.sendall(reply)


def open_ticket(ticket: bytes, keytab: str | os.PathLike[str]):
    """Decrypt a Ticket with the service's key from `keytab` (our keytab, crypto and codec) and
    return (Ticket, EncTicketPart)."""
    from common import crypto
    from common.asn1 import EncTicketPart, Ticket, decode_as, principal_from_asn1
    from common.keytab import Keytab

    parsed = decode_as(Ticket, ticket)
    server = principal_from_asn1(parsed["sname"], parsed["realm"].native)
    enc = parsed["enc-part"]
    key = Keytab.load(keytab).key_for(server, enc["etype"].native, enc["kvno"].native)
    plain = crypto.decrypt(key, crypto.KeyUsage.TICKET, enc["cipher"].native)
    return parsed, decode_as(EncTicketPart, plain, padded=True)
