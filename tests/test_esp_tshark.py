"""tshark decrypts and authenticates kerbtel's ESP (issue 4, real peers 2), for all three suites.

Packets are made by `EspSa.protect` (transport mode, next header 17: a UDP header + a SIP OPTIONS
request), wrapped in outer IPv4/UDP on a non-4500 port and written into a pcap; tshark gets the
SAs from `wireshark_esp_sa` and `-d udp.port==N,udpencap` from `tshark_esp_options`.
Assertions are on dissector fields.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from common.esp import (
    SUITES,
    EspSa,
    derive_esp_keys,
    inner_udp,
    tshark_esp_options,
    wireshark_esp_sa,
)
from tests.conftest import require_peer
from tests.pcaputil import ipv4_udp, write_pcap

pytestmark = pytest.mark.interop

CTA, SC = "192.0.2.10", "192.0.2.1"
ESP_PORT = 5065
SUBKEY = bytes.fromhex("5ca1ab1e" * 8)
FIELDS = ("frame.protocols", "esp.spi", "esp.sequence", "esp.icv_good", "esp.icv_bad", "sip.Method", "sip.Call-ID")


def options(call_id: str, src: str, dst: str) -> bytes:
    return (
        f"OPTIONS sip:{dst} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {src}:5060;branch=z9hG4bK{call_id}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:cta@{src}>;tag=1\r\n"
        f"To: <sip:{dst}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def build(tmp_path: Path, *, derived_start: bool = False) -> tuple[Path, list[str], list[tuple[str, int]]]:
    """A pcap with 2 packets per direction per suite; the SA entries; (Call-ID, SPI) expected."""
    packets, entries, expected = [], [], []
    for n, suite in enumerate(SUITES.values()):
        cta_spi, sc_spi = 0x1000 + 2 * n, 0x8000 + 2 * n
        keys = derive_esp_keys(SUBKEY, suite, cta_spi, sc_spi, derived_start=derived_start)
        for k, src, dst in ((keys.cta_to_sc, CTA, SC), (keys.sc_to_cta, SC, CTA)):
            sa = EspSa.from_keys(suite, k)
            entries.append(wireshark_esp_sa(suite, k, src, dst))
            for i in range(2):
                call_id = f"s{n}-{k.spi:x}-{i}"
                inner = inner_udp(5060, 5060, options(call_id, src, dst))
                packets.append(ipv4_udp(src, dst, ESP_PORT, ESP_PORT, sa.protect(inner), ident=len(packets)))
                expected.append((call_id, k.spi))
    pcap = tmp_path / "esp.pcap"
    write_pcap(pcap, packets)
    return pcap, entries, expected


def tshark(pcap: Path, entries: list[str]) -> list[dict[str, str]]:
    cmd = ["tshark", "-r", str(pcap), *tshark_esp_options(entries, udp_ports=[ESP_PORT]), "-T", "fields"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]


@pytest.mark.parametrize("derived_start", [False, True], ids=["seq-from-1", "derived-start"])
def test_tshark_decrypts_all_suites(tmp_path: Path, derived_start: bool) -> None:
    require_peer("tshark")
    pcap, entries, expected = build(tmp_path, derived_start=derived_start)
    rows = tshark(pcap, entries)
    assert len(rows) == len(expected) == 12
    for row, (call_id, spi) in zip(rows, expected):
        assert "esp:udp:sip" in row["frame.protocols"], row
        assert int(row["esp.spi"], 16) == spi, row
        assert row["esp.icv_good"] == "1", row
        assert row["sip.Method"] == "OPTIONS" and row["sip.Call-ID"] == call_id, row


def test_tshark_wrong_auth_key_is_icv_bad(tmp_path: Path) -> None:
    require_peer("tshark")
    pcap, entries, _ = build(tmp_path)
    broken = []
    for e in entries:
        fields = e.split('","')
        if fields[6] != "NULL":  # CBC suites: flip the last auth-key digit
            key = fields[7].rstrip('"')
            fields[7] = key[:-1] + ("0" if key[-1] != "0" else "1") + '"'
        broken.append('","'.join(fields))
    rows = tshark(pcap, broken)
    cbc_rows = rows[4:]  # the GCM suite comes first (4 packets), then AES-CBC and 3DES-CBC
    assert all(r["esp.icv_bad"] == "1" and r["esp.icv_good"] != "1" for r in cbc_rows), cbc_rows
    assert all("esp:udp:sip" in r["frame.protocols"] for r in rows[:4])
