"""tshark decodes what kdcd + scd + ctad put on the wire (issue 4, real-peer items 1 and 2).

For each ESP suite (scd's preference set to that suite alone): capture the SC's km and ESP ports
on loopback while cta1 keys up and registers, then decode the capture with the one-line options
from `kerbtel keys wireshark DIR`: the key-management messages are pktc (AP Request, AP Reply,
SA Recovered), and every ESP packet authenticates (`esp.icv_good == 1`) and shows SIP inside
(`frame.protocols` contains `esp:udp:sip`, the REGISTER visible).
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from tests.conftest import require_peer
from tests.pcaputil import capture_udp_ports
from tests.peers.daemons import daemons_fixture
from tests.peers.kdcd import kerbtel

pytestmark = pytest.mark.interop

daemons = daemons_fixture()

SUITES = {
    "aes-gcm-16": "AES-GCM-16",
    "aes-cbc-sha256": "AES-CBC/HMAC-SHA-256-128",
    "3des-sha1": "3DES-CBC/HMAC-SHA-1-96",
}


def _set_suites(config: str, names: list[str]) -> None:
    from pathlib import Path

    path = Path(config)
    text = re.sub(r"(?m)^suites = .*$", "suites = [" + ", ".join(f'"{n}"' for n in names) + "]", path.read_text(), count=1)
    path.write_text(text)


@pytest.mark.parametrize("suite", list(SUITES))
def test_tshark_decrypts_signaling(daemons, tmp_path, suite):
    require_peer("tshark")
    sc = daemons.sc("sc1")
    km_port, esp_port = (int(sc[k].rsplit(":", 1)[1]) for k in ("km", "esp"))
    _set_suites(sc["config"], [suite])
    pcap = tmp_path / f"{suite}.pcap"
    capture = capture_udp_ports(pcap, [km_port, esp_port])
    try:
        daemons.start_scd("sc1")
        daemons.start_ctad("cta1")
        daemons.wait_registered(daemons.cta("cta1")["numbers"], timeout=30)
        daemons.wait_log("ctad:cta1", lambda r: r.get("event") == "state" and r.get("state") == "registered")
    finally:
        daemons.stop("ctad:cta1")
        daemons.stop("scd:sc1")
        capture.stop()
    line = kerbtel("keys", "wireshark", daemons.dir).stdout.strip()
    assert "\n" not in line
    options = shlex.split(line)
    assert f"udp.port=={km_port},pktc" in options and f"udp.port=={esp_port},udpencap" in options
    fields = ["frame.protocols", "pktc.kmmid", "pktc.asd.ipsec_spi", "pktc.asd.ipsec_enc_alg",
              "esp.spi", "esp.icv_good", "esp.icv_bad", "sip.Method", "sip.Status-Code", "kerberos.keyvalue"]
    out = subprocess.run(["tshark", "-r", str(pcap), *options, "-T", "fields", "-E", "separator=|",
                          *[a for f in fields for a in ("-e", f)]],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [dict(zip(fields, r.split("|"))) for r in out.stdout.splitlines()]
    pktc = [r for r in rows if "pktc" in r["frame.protocols"]]
    esp = [r for r in rows if ":esp" in r["frame.protocols"]]
    # key management: AP Request (2), AP Reply (3), SA Recovered (4); the AP-REP sub-key decrypted
    assert {2, 3, 4} <= {int(r["pktc.kmmid"], 16) for r in pktc}, pktc
    assert any(r["kerberos.keyvalue"] for r in pktc), "tshark did not decrypt the AP-REP sub-key"
    # ESP: every packet authenticates and carries SIP; the REGISTER and its 200 are visible
    assert esp, rows
    assert all(r["esp.icv_good"] == "1" and r["esp.icv_bad"] != "1" for r in esp), esp
    assert all("esp:udp:sip" in r["frame.protocols"] for r in esp), esp
    assert any(r["sip.Method"] == "REGISTER" for r in esp)
    assert any(r["sip.Status-Code"] == "200" for r in esp)
    # the suite really was the one configured
    assert any(r.get("event") == "sa established" and r.get("suite") == SUITES[suite]
               for r in daemons.records("scd:sc1"))
