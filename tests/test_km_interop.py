"""pktc key management against independent implementations: tshark's pktc + Kerberos dissectors
(with the SC keytab it decrypts ticket, authenticator and AP-REP sub-key) and MIT libkrb5
(krb5_mk_req's AP-REQ accepted by ScKeyManager; CtaKeyManager's AP-REQ accepted by krb5_rd_req)."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from common.asn1 import decode
from common.ccache import Ccache
from common.esp import SUITE_3DES_SHA1, SUITE_AES_CBC_SHA256, SUITE_AES_GCM_16
from common.keytab import Keytab
from common.pktc import PURPOSE_AP_REQUEST, ApRequest, compute_hmac, hmac_key, parse_km_message
from common.principal import Principal
from ctad.km import CtaKeyManager
from scd import km as skm
from scd.bench_km import MitRdReq
from scd.km import ScKeyManager
from tests.conftest import require_libkrb5, require_peer
from tests.kmutil import REALM, SERVICE, Clock, make_ticket, seeded_rng, service_keytab
from tests.pcaputil import ipv4_udp, write_pcap

pytestmark = pytest.mark.interop
VECTORS = Path(__file__).parent / "vectors" / "mit"
PORT = 41293
CTA_IP, SC_IP = "127.0.0.2", "127.0.0.1"


def _exchange_capture(tmp_path: Path):
    """Run AP exchange (+ack), a Rekey (+ack), a Wake Up and an Error Reply; return packets, keys."""
    keytab = service_keytab()
    client = Principal(("cta", "0011223344aa"), REALM, 1)
    ticket, session_key = make_ticket(keytab, client)
    clock = Clock()
    clock.base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=0)
    sc = ScKeyManager(SERVICE, keytab, rng=seeded_rng(5), sa_lifetime=600, grace_period=60,
                      suites_preference=(SUITE_AES_CBC_SHA256, SUITE_AES_GCM_16))
    cta = CtaKeyManager(client, SERVICE, ticket, session_key, rng=seeded_rng(6),
                        suites=(SUITE_AES_GCM_16, SUITE_AES_CBC_SHA256, SUITE_3DES_SHA1))
    packets, subkeys = [], []
    peer = (CTA_IP, PORT)

    def up(data):
        packets.append(ipv4_udp(CTA_IP, SC_IP, PORT, PORT, data))
        return sc.receive(data, peer, now=clock.now, wallclock=clock.wallclock)

    def down(data):
        packets.append(ipv4_udp(SC_IP, CTA_IP, PORT, PORT, data))
        return cta.receive(data, clock.now, clock.wallclock)

    def sends(events):
        return [e.data for e in events if hasattr(e, "data")]

    (request,) = sends(cta.start(clock.now, clock.wallclock))
    sc_events = up(request)
    subkeys.append(next(e for e in sc_events if isinstance(e, skm.SaEstablished)))
    for data in sends(down(sends(sc_events)[0])):
        up(data)
    clock.advance(540)
    (rekey,) = sends(sc.handle_timer(clock.now, clock.wallclock))
    for data in sends(down(rekey)):
        up(data)
    (wake,) = sends(sc.wake_up(peer, now=clock.now, wallclock=clock.wallclock))
    down(wake)
    up(b"\x09\x01\x10")  # answered by an Error Reply
    error = [e.data for e in sc.receive(b"\x09\x01\x10", peer, now=clock.now, wallclock=clock.wallclock) if hasattr(e, "data")]
    packets.append(ipv4_udp(SC_IP, CTA_IP, PORT, PORT, error[0]))
    keytab_path = tmp_path / "sc.keytab"
    keytab.save(keytab_path)
    from common.crypto import KeyUsage, decrypt

    reply = parse_km_message(packets[1][28:])
    part = decode(decrypt(session_key, KeyUsage.AP_REP_ENC_PART, decode(reply.ap_rep)["enc-part"]["cipher"].native), padded=True)
    return packets, keytab_path, request, (subkeys[0], session_key, part["subkey"]["keyvalue"].native)


def _tshark(pcap: Path, *fields: str, extra=()) -> list[list[str]]:
    cmd = ["tshark", "-r", str(pcap), "-d", f"udp.port=={PORT},pktc", *extra, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def test_tshark_decodes_every_km_message(tmp_path):
    require_peer("tshark")
    packets, keytab_path, _, established = _exchange_capture(tmp_path)
    pcap = tmp_path / "km.pcap"
    write_pcap(pcap, packets)
    rows = _tshark(pcap, "frame.protocols", "pktc.kmmid", "pktc.doi", "pktc.version.major", "pktc.asd.ipsec_spi",
                   "pktc.asd.ipsec_auth_alg", "pktc.asd.ipsec_enc_alg", "pktc.ciphers.len", "pktc.spl",
                   "pktc.grace_period", "pktc.ack_required", "pktc.server_principal", "pktc.sha1_hmac", "kerberos.msg_type")
    kinds = [int(r[1], 16) for r in rows]
    assert kinds == [2, 3, 4, 5, 4, 1, 9, 6] or kinds[:6] == [2, 3, 4, 5, 4, 1]
    assert all("pktc" in r[0] for r in rows)
    req, rep, ack, rekey = rows[0], rows[1], rows[2], rows[3]
    assert (req[13], rep[13], rows[-1][13]) == ("14", "15", "30")  # AP-REQ, AP-REP, KRB-ERROR inside
    est = established[0]
    assert int(req[4], 16) == est.cta_spi and int(rep[4], 16) == est.sc_spi
    assert req[5] == "0x00,0x05,0x02" and req[6] == "0x14,0x0c,0x03" and req[7] == "3"
    assert (rep[5], rep[6], rep[7], rep[8], rep[9], rep[10]) == ("0x05", "0x0c", "1", "600", "60", "1")
    assert rekey[11] == str(SERVICE) and rekey[8] == "600" and int(rekey[4], 16) >= 256
    assert rows[5][11] == str(SERVICE)
    assert len(ack[12].replace(":", "")) == 40
    assert int(rows[-1][1], 16) == 6


def test_tshark_decrypts_ticket_authenticator_and_subkey(tmp_path):
    require_peer("tshark")
    packets, keytab_path, _, established = _exchange_capture(tmp_path)
    pcap = tmp_path / "km.pcap"
    write_pcap(pcap, packets[:2])
    rows = _tshark(pcap, "pktc.kmmid", "kerberos.keyvalue", "kerberos.CNameString",
                   extra=["-o", "kerberos.decrypt:TRUE", "-o", f"kerberos.file:{keytab_path}"])
    request_row, reply_row = rows
    assert "0011223344aa" in request_row[2]  # cname of the decrypted ticket and authenticator
    session_key = established[1]
    assert session_key.contents.hex() in request_row[1].replace(":", "")
    assert established[2].hex() in reply_row[1].replace(":", ""), "AP-REP sub-key not decrypted"


# --- MIT libkrb5 ------------------------------------------------------------------------------


def test_mit_mk_req_ap_req_accepted_by_sc_engine():
    """tests/vectors/mit/ap-req.bin: krb5_mk_req's AP-REQ (alice -> sc/sc1.example.test)."""
    require_libkrb5()
    ap_req = (VECTORS / "ap-req.bin").read_bytes()
    keytab = Keytab.load(VECTORS / "keytab.bin")
    ccache = Ccache.load(VECTORS / "ccache.bin")
    cred = next(c for c in ccache.credentials if c.server.components == ("sc", "sc1.example.test"))
    service = Principal(("sc", "sc1.example.test"), "EXAMPLE.TEST", 2)
    unsigned = bytes(ApRequest(ap_req, 0, 0x5000, ((0, 20),), False))[:-20]
    message = unsigned + compute_hmac(hmac_key(cred.key.contents, PURPOSE_AP_REQUEST), unsigned)
    authenticator_time = datetime(2026, 11, 26, 15, 38, 24, 842534, tzinfo=timezone.utc)  # from the vector
    sc = ScKeyManager(service, keytab, rng=seeded_rng(1))
    events = sc.receive(message, ("127.0.0.1", 1), now=0.0, wallclock=authenticator_time + timedelta(seconds=3))
    (est,) = [e for e in events if isinstance(e, skm.SaEstablished)]
    assert str(est.client) == "alice@EXAMPLE.TEST"
    reply = parse_km_message([e.data for e in events if isinstance(e, skm.SendTo)][0])
    assert decode(reply.ap_rep)["enc-part"]["etype"].native == cred.key.enctype


def test_cta_ap_req_accepted_by_mit_rd_req(tmp_path):
    require_libkrb5()
    now = datetime.now(timezone.utc)
    keytab = service_keytab()
    keytab_path = tmp_path / "sc.keytab"
    keytab.save(keytab_path)
    client = Principal(("cta", "0011223344aa"), REALM, 1)
    for session_enctype in (18, 17, 16):
        ticket, session_key = make_ticket(keytab, client, session_enctype=session_enctype, authtime=now - timedelta(minutes=5),
                                          endtime=now + timedelta(hours=1))
        cta = CtaKeyManager(client, SERVICE, ticket, session_key, rng=seeded_rng(2))
        (send,) = cta.start(0.0, datetime.now(timezone.utc))
        ap_req = ApRequest.parse(send.data).ap_req
        verifier = MitRdReq(keytab_path)
        try:
            options = verifier.rd_req(ap_req)
        finally:
            verifier.close()
        assert options & 0x20000000  # AP_OPTS_MUTUAL_REQUIRED
