"""Wireshark's Kerberos dissector on kdcd's PKINIT exchanges (issue 3, real peers 3).

tshark captures on `lo` while MIT kinit (DH) and our client (RSA key transport) each run one
PKINIT AS exchange against kdcd; the capture is then dissected with the SC keytab, which lets
tshark decrypt the tickets. Assertions are on dissector fields, not on text.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from common.ccache import Ccache
from common.principal import Principal
from tests.conftest import require_peer
from tests.peers.kdcd import deployment_fixture, kerbtel

pytestmark = pytest.mark.interop

deployment = deployment_fixture()

SC1 = "sc/sc1.example.test@EXAMPLE.TEST"
FIELDS = (
    "frame.number",
    "kerberos.msg_type",
    "kerberos.padata_type",
    "pkinit.pkAuthenticator_element",
    "pkinit.paChecksum",
    "pkinit.clientPublicValue_element",
    "pkinit.dhSignedData_element",
    "pkinit.encKeyPack_element",
    "kerberos.CNameString",
    "kerberos.keyvalue",
    "_ws.expert.message",
)
# tshark 4.0's PKINIT grammar predates RFC 8636: it misreads DHRepInfo's `kdf [2]` and flags it
# malformed, in MIT krb5kdc's own replies too (tests/vectors/mit/as-rep-pkinit-dh.bin shows the
# same two messages). Nothing else may be malformed.
KNOWN_KDF_MISREAD = {
    "BER Error: Wrong field in SEQUENCE: expected class:UNIVERSAL(0) tag:6(OBJECT IDENTIFIER) but found class:CONTEXT(2) tag:0",
    "BER Error: Wrong field in SEQUENCE: expected class:CONTEXT(2) tag:0 but found class:CONTEXT(2) tag:2",
}


class Capture:
    """`tshark -i lo -f 'tcp port N' -w FILE`, known to be capturing on entry and to have seen
    everything sent before exit.

    tshark's "Capturing on" comes before the capture is really live (under load the first
    exchange was lost), so both ends are fenced with probe connections to the port (connect and
    close; kdcd shrugs them off): `-P -l` prints each captured packet, and a probe that shows up
    proves that everything sent before it was captured too.
    """

    def __init__(self, host: str, port: int, path: Path) -> None:
        self.address = (host, port)
        self.path = path
        self.argv = ["tshark", "-i", "lo", "-f", f"tcp port {port}", "-w", str(path), "-P", "-l"]
        self.proc: subprocess.Popen | None = None
        self.packets: list[str] = []

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.packets.append(line)

    def _fence(self, timeout: float = 20) -> None:
        seen = len(self.packets)
        deadline = time.monotonic() + timeout
        while len(self.packets) == seen:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tshark captured nothing on port {self.address[1]} (exit {self.proc.poll()})")
            with socket.create_connection(self.address, timeout=5):
                pass
            time.sleep(0.05)

    def __enter__(self) -> Capture:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self._fence()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __exit__(self, exc_type, *exc: object) -> None:
        try:
            if exc_type is None:
                self._fence()
        finally:
            self.stop()


def _dissect(capture: Path, port: int, keytab: str) -> list[dict[str, list[str]]]:
    argv = [
        "tshark", "-r", str(capture), "-d", f"tcp.port=={port},kerberos",
        "-o", "kerberos.decrypt:TRUE", "-o", f"kerberos.file:{keytab}",
        "-Y", "kerberos", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=;",
    ]
    for field in FIELDS:
        argv += ["-e", field]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = []
    for line in out.stdout.splitlines():
        values = line.split("\t")
        rows.append({f: [v for v in values[i].split(";") if v] if i < len(values) else [] for i, f in enumerate(FIELDS)})
    return rows


def test_tshark_decodes_pkinit_and_decrypts_the_tickets(deployment, tmp_path):
    require_peer("tshark", "kinit")
    dep = deployment
    mit_cta, our_cta = dep.manifest["ctas"][0], dep.manifest["ctas"][1]
    mit_cc, our_cc = tmp_path / "mit.cc", tmp_path / "ours.cc"
    pcap = tmp_path / "kdc.pcap"
    with Capture(dep.host, dep.port, pcap):
        mit = subprocess.run(
            ["kinit", "-X", f"X509_user_identity=FILE:{mit_cta['cert']},{mit_cta['key']}", "-S", SC1, mit_cta["principal"]],
            env=dep.mit_env(mit_cc), capture_output=True, text=True, timeout=60,
        )
        assert mit.returncode == 0, mit.stderr + dep.log_tail()
        kerbtel("kinit", "--identity", our_cta["identity_dir"], "--kdc", dep.address, "--service", SC1,
                "--mode", "rsa", "--ccache", our_cc)

    rows = _dissect(pcap, dep.port, dep.manifest["scs"][0]["keytab"])
    requests = [r for r in rows if r["kerberos.msg_type"] == ["10"] and "16" in r["kerberos.padata_type"]]
    replies = [r for r in rows if r["kerberos.msg_type"] == ["11"]]
    assert len(requests) == 2 and len(replies) == 2, rows

    # AS-REQ: PA-PK-AS-REQ (16) decoded down to the pkAuthenticator and its paChecksum (SHA-1).
    for request in requests:
        assert request["pkinit.pkAuthenticator_element"], request
        assert len(bytes.fromhex(request["pkinit.paChecksum"][0])) == 20
    mit_req, our_req = requests
    assert mit_req["kerberos.CNameString"] == list(Principal.parse(mit_cta["principal"]).components)
    assert our_req["kerberos.CNameString"] == list(Principal.parse(our_cta["principal"]).components)
    assert mit_req["pkinit.clientPublicValue_element"]  # DH
    assert not our_req["pkinit.clientPublicValue_element"]  # RSA key transport sends none

    # AS-REP: PA-PK-AS-REP (17) with dhSignedData (MIT, DH) and encKeyPack (ours, RSA).
    mit_rep, our_rep = replies
    for reply in replies:
        assert reply["kerberos.padata_type"] == ["17"]
    assert mit_rep["pkinit.dhSignedData_element"] and not mit_rep["pkinit.encKeyPack_element"]
    assert our_rep["pkinit.encKeyPack_element"] and not our_rep["pkinit.dhSignedData_element"]

    assert {m for m in mit_rep["_ws.expert.message"] if "BER" in m} <= KNOWN_KDF_MISREAD
    assert not [m for m in our_rep["_ws.expert.message"] if "BER" in m]

    # The ticket's enc-part was decrypted with the SC keytab: the EncTicketPart's key is the
    # session key each client stored (tshark cannot open the enc-part of the reply itself, which
    # is under the PKINIT reply key), and its cname appears besides the reply's own cname.
    for reply, cta, ccache in ((mit_rep, mit_cta, mit_cc), (our_rep, our_cta, our_cc)):
        session_key = Ccache.load(ccache).find(Principal.parse(SC1)).key
        assert reply["kerberos.keyvalue"] == [session_key.contents.hex()]
        assert reply["kerberos.CNameString"] == 2 * list(Principal.parse(cta["principal"]).components)
