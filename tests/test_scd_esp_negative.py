"""Hostile datagrams against a live scd (issue 4, real-peer item 4): each refused with its reason,
and scd keeps serving the CTAs that are registered with it.

kdcd + scd (log level debug, so every counted refusal is one JSON debug line with the counter
total) + two ctads (tests/peers/daemons.py, a `kerbtel init --key-log` deployment). An attacker
socket that is neither CTA sends to scd's ESP port:

- a GCM packet on cta1's live SPI, sequence number far ahead, last ICV byte flipped -> `esp_icv_failed`
  (and, because the window moves only after the ICV verifies, cta1 keeps working afterwards);
- an authentic packet (keys from scd's key log) on cta1's SPI with sequence number 1, which
  cta1's first REGISTER already used -> `esp_replayed`;
- an unknown SPI -> `esp_unknown_spi`, answered with a Wake Up from the km port;
- runts, an RFC 3948 non-ESP marker, and truncated / misaligned packets on a live SPI -> `esp_format`;

and to the key-management port: an AP Request for a third CTA (cta3's ticket, `kerbtel kinit`)
accepted once, the same bytes again from the same socket (a duplicate: the same AP Reply), from
another socket (a replay: Error Reply KRB_AP_ERR_REPEAT 34, ctime/cusec echoed), with a broken
HMAC (41), and malformed messages (60 / 39 / 40, or no reply at all for a runt).

Afterwards: both CTAs are still registered with no SC loss and no new AP exchange (ctad status
over SIGHUP), their OPTIONS keep-alives keep arriving (scd's esp_in grows), and a restarted cta2
runs a fresh AP exchange and REGISTER round trip.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from datetime import datetime, timezone

import pytest

from common.asn1 import ErrorCode, decode_as
from common.asn1.krb5 import KRB_ERROR
from common.ccache import Ccache
from common.esp import NEXT_HEADER_UDP, SUITES, DirectionKeys, EspSa, inner_udp
from common.keylog import read_key_log
from common.pktc import ApReply, ApRequest, ErrorReply, WakeUp, parse_km_message
from common.principal import Principal
from ctad import km as ckm
from ctad.km import CtaKeyManager
from tests.peers.daemons import Daemons
from tests.peers.kdcd import kerbtel

pytestmark = pytest.mark.interop

SC1 = "sc/sc1.example.test@EXAMPLE.TEST"
WAIT = 5.0
OPTIONS = (b"OPTIONS sip:sc1.example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKattack\r\n"
           b"From: <sip:x@sc1.example.test>;tag=1\r\nTo: <sip:sc1.example.test>\r\nCall-ID: attack\r\n"
           b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


# --- the deployment -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    d = Daemons.create(tmp_path_factory.mktemp("kerbtel") / "realm")
    try:
        d.start_scd("sc1", log_level="debug")
        d.start_ctad("cta1")
        d.start_ctad("cta2")
        d.wait_registered([n for c in ("cta1", "cta2") for n in d.cta(c)["numbers"]], timeout=30)
        yield d
    finally:
        d.close()


def _host_port(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _attacker() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(WAIT)
    return sock


def _debug_lines(d: Daemons, event: str, **match) -> list[dict]:
    return [r for r in d.records("scd:sc1")
            if r.get("event") == event and all(r.get(k) == v for k, v in match.items())]


def _wait_new(d: Daemons, event: str, before: int, predicate=lambda r: True, **match) -> dict:
    """The first `event` debug line after the first `before` ones that satisfies `predicate`."""
    deadline = time.monotonic() + WAIT
    while True:
        lines = _debug_lines(d, event, **match)[before:]
        for line in lines:
            if predicate(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no new {event!r} line {match} in scd's log:\n{d.tail('scd:sc1', 25)}")
        time.sleep(0.02)


def _last_total(d: Daemons, event: str) -> int:
    lines = _debug_lines(d, event)
    return lines[-1]["total"] if lines else 0


def _status(d: Daemons, key: str) -> str:
    """The daemon's status line, fresh: SIGHUP makes the daemon shell log `reloaded` with it."""
    before = sum(1 for r in d.records(key) if r.get("event") == "reloaded")
    d.procs[key].send_signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while True:
        done = [r for r in d.records(key) if r.get("event") == "reloaded"]
        if len(done) > before:
            return done[-1]["status"]
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} did not log a status after SIGHUP:\n{d.tail(key)}")
        time.sleep(0.02)


def _scd_counters(d: Daemons) -> dict[str, int]:
    status = _status(d, "scd:sc1")
    m = re.search(r"(\d+) CTAs keyed, (\d+) lines registered", status)
    assert m, status
    counters = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", status)}
    counters.update(keyed=int(m[1]), lines=int(m[2]))
    return counters


def _cta_sa(d: Daemons, name: str):
    """The CTA's live inbound SA at scd (CTA -> SC): SPI, suite and keys from scd's key log, checked
    against the SPI scd last logged as established for that principal."""
    principal = d.cta(name)["principal"]
    established = [r for r in d.records("scd:sc1") if r.get("event") == "sa established" and r.get("principal") == principal]
    assert established, f"scd established no SA for {name}"
    spi = int(established[-1]["spi"], 16)
    records = [r for r in read_key_log(d.sc("sc1")["key_log"])
               if r.get("type") == "esp_sa" and r.get("direction") == "cta_to_sc" and r.get("spi") == spi]
    assert records, f"scd's key log has no SA 0x{spi:08x}"
    r = records[-1]
    suite = SUITES[(r["auth_id"], r["enc_id"])]
    return spi, suite, DirectionKeys(spi, bytes.fromhex(r["enc_key"]), bytes.fromhex(r["salt"]), bytes.fromhex(r["auth_key"]))


def _forger(suite, keys: DirectionKeys, initial_seq: int) -> EspSa:
    return EspSa(suite, keys.spi, keys.enc_key, keys.auth_key, keys.salt, initial_seq=initial_seq)


# --- ESP port -----------------------------------------------------------------------------------


def test_esp_bad_icv_is_refused_and_does_not_move_the_window(live):
    d = live
    spi, suite, keys = _cta_sa(d, "cta1")
    esp = _host_port(d.sc("sc1")["esp"])
    before = len(_debug_lines(d, "esp_icv_failed"))
    counters = _scd_counters(d)
    # Far ahead of anything cta1 sent: were it accepted, cta1's real packets would fall below the
    # window and cta1 would lose its channel (checked in test_scd_keeps_serving).
    packet = bytearray(_forger(suite, keys, 1 << 31).protect(inner_udp(5060, 5060, OPTIONS), NEXT_HEADER_UDP))
    packet[-1] ^= 0x01
    with _attacker() as sock:
        sock.sendto(bytes(packet), esp)
        line = _wait_new(d, "esp_icv_failed", before)
    assert line["spi"] == f"0x{spi:08x}"
    assert "does not verify" in line["error"] and f"seq {(1 << 31) + 1}" in line["error"]
    assert line["level"] == "debug"
    after = _scd_counters(d)
    assert after["icv_failed"] == counters["icv_failed"] + 1 and after["esp_in"] >= counters["esp_in"]


def test_esp_replayed_sequence_number_is_refused(live):
    d = live
    spi, suite, keys = _cta_sa(d, "cta1")
    esp = _host_port(d.sc("sc1")["esp"])
    before = len(_debug_lines(d, "esp_replayed"))
    counters = _scd_counters(d)
    # Authentic (right keys, right ICV) but sequence number 1, which cta1's REGISTER used.
    packet = _forger(suite, keys, 0).protect(inner_udp(5060, 5060, OPTIONS), NEXT_HEADER_UDP)
    assert int.from_bytes(packet[4:8], "big") == 1
    with _attacker() as sock:
        sock.sendto(packet, esp)
        sock.sendto(packet, esp)  # and once more: still a replay
        first = _wait_new(d, "esp_replayed", before)
        second = _wait_new(d, "esp_replayed", before + 1)
    assert first["spi"] == second["spi"] == f"0x{spi:08x}"
    assert "sequence number 1 is replayed" in first["error"]
    assert second["total"] == first["total"] + 1
    assert _scd_counters(d)["replayed"] == counters["replayed"] + 2


def test_esp_unknown_spi_is_counted_and_answered_with_a_wake_up(live):
    d = live
    esp = _host_port(d.sc("sc1")["esp"])
    km = _host_port(d.sc("sc1")["km"])
    known = {r["spi"] for r in read_key_log(d.sc("sc1")["key_log"]) if r.get("type") == "esp_sa"}
    spi = next(s for s in range(0x0BADF00D, 0x0BADF10D) if s not in known)
    before = len(_debug_lines(d, "esp_unknown_spi"))
    counters = _scd_counters(d)
    with _attacker() as sock:
        sock.sendto(spi.to_bytes(4, "big") + (7).to_bytes(4, "big") + os.urandom(48), esp)
        line = _wait_new(d, "esp_unknown_spi", before)
        data, source = sock.recvfrom(4096)
        me = "127.0.0.1:%d" % sock.getsockname()[1]
    assert line["spi"] == f"0x{spi:08x}"
    assert line["peer"] == me
    # scd asks the sender to run an AP exchange (what a CTA needs after an SC restart), from km.
    assert source == km
    wake = parse_km_message(data)
    assert isinstance(wake, WakeUp) and wake.server_principal == SC1
    assert _scd_counters(d)["unknown_spi"] == counters["unknown_spi"] + 1


def test_unknown_spi_from_a_stranger_does_not_count_as_a_keyed_cta(live):
    d = live
    esp = _host_port(d.sc("sc1")["esp"])
    keyed = _scd_counters(d)["keyed"]
    before = len(_debug_lines(d, "esp_unknown_spi"))
    with _attacker() as sock:
        sock.sendto(bytes.fromhex("0badbeef00000001") + os.urandom(48), esp)
        _wait_new(d, "esp_unknown_spi", before)
        sock.recvfrom(4096)  # the Wake Up
    assert _scd_counters(d)["keyed"] == keyed


def test_esp_garbage_is_counted_as_format_errors(live):
    d = live
    spi, suite, keys = _cta_sa(d, "cta1")
    esp = _host_port(d.sc("sc1")["esp"])
    before = len(_debug_lines(d, "esp_format"))
    total = _last_total(d, "esp_format")
    silent = [b"\xff", os.urandom(3), b"\x00" * 8 + os.urandom(20), b""]  # runts, non-ESP marker, empty
    spi_bytes = spi.to_bytes(4, "big")
    with _attacker() as sock:
        for data in silent:
            sock.sendto(data, esp)
        time.sleep(0.2)  # the silent ones first: the next logged total must include them
        sock.sendto(spi_bytes + (5).to_bytes(4, "big") + os.urandom(12), esp)  # shorter than GCM's minimum
        short = _wait_new(d, "esp_format", before)
        sock.sendto(spi_bytes + (1 << 30).to_bytes(4, "big") + os.urandom(8 + 21 + 16), esp)  # 21: not 4-aligned
        misaligned = _wait_new(d, "esp_format", before + 1)
    # Datagrams that are not ESP at all are counted without a log line (nothing to identify).
    assert short["total"] == total + len(silent) + 1, (short, total)
    assert short["spi"] == f"0x{spi:08x}" and "shorter than" in short["error"]
    assert "not a multiple of 4" in misaligned["error"] and misaligned["total"] == short["total"] + 1


# --- key-management port ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cta3_ticket(live, tmp_path_factory):
    """cta3 (factory-fresh, not running) gets an SC ticket from kdcd with `kerbtel kinit`."""
    d = live
    cta = d.cta("cta3")
    ccache = tmp_path_factory.mktemp("cta3") / "cc"
    kerbtel("kinit", "--identity", cta["identity_dir"], "--kdc", d.dep.address, "--service", SC1,
            "--anchor", d.manifest["kdc"]["anchor"], "--ccache", ccache)
    cred = Ccache.load(ccache).find(Principal.parse(SC1))
    return Principal.parse(cta["principal"]), cred


def _km_reply(sock: socket.socket):
    data, _ = sock.recvfrom(4096)
    return data, parse_km_message(data)


def _krb_error(message) -> tuple[int, object]:
    assert isinstance(message, ErrorReply), message
    error = decode_as(KRB_ERROR, message.krb_error)
    return error["error-code"].native, error


def test_km_replayed_ap_request_gets_krb_ap_err_repeat(live, cta3_ticket):
    d = live
    client, cred = cta3_ticket
    km = _host_port(d.sc("sc1")["km"])
    cta = CtaKeyManager(client, Principal.parse(SC1), cred.ticket, cred.key)
    wallclock = datetime.now(timezone.utc)
    (send,) = cta.start(time.monotonic(), wallclock)
    request = send.data
    sent = ApRequest.parse(request)
    refused_before = len(_debug_lines(d, "km_refused"))
    counters = _scd_counters(d)
    with _attacker() as first, _attacker() as second:
        first.sendto(request, km)
        reply_bytes, reply = _km_reply(first)
        assert isinstance(reply, ApReply)
        events = cta.receive(reply_bytes, time.monotonic(), datetime.now(timezone.utc))
        assert any(isinstance(e, ckm.SaEstablished) for e in events), events  # mutual auth, HMAC, sub-key
        for event in events:  # SA Recovered: scd stops retransmitting its AP Reply
            if isinstance(event, ckm.SendTo):
                first.sendto(event.data, km)
        # The same datagram again from the same peer: a duplicate, answered with the same reply.
        first.sendto(request, km)
        again, _ = _km_reply(first)
        assert again == reply_bytes
        # The same bytes from elsewhere: a replay.
        second.sendto(request, km)
        _, message = _km_reply(second)
    code, error = _krb_error(message)
    assert code == ErrorCode.KRB_AP_ERR_REPEAT
    assert "replay" in error["e-text"].native
    authenticator_time = wallclock.replace(microsecond=0)
    assert error["ctime"].native == authenticator_time and error["cusec"].native == wallclock.microsecond
    line = _wait_new(d, "km_refused", refused_before, lambda r: r["code"] == 34)
    assert line["level"] == "debug" and line["replied"] is True and "replay" in line["reason"]
    assert sent.spi >= 256
    after = _scd_counters(d)
    assert after["refused"] == counters["refused"] + 1 and after["ap"] == counters["ap"] + 1


def test_km_bad_hmac_gets_krb_ap_err_modified(live, cta3_ticket):
    d = live
    client, cred = cta3_ticket
    km = _host_port(d.sc("sc1")["km"])
    cta = CtaKeyManager(client, Principal.parse(SC1), cred.ticket, cred.key)
    (send,) = cta.start(time.monotonic(), datetime.now(timezone.utc))
    tampered = bytearray(send.data)
    tampered[-1] ^= 0x80
    with _attacker() as sock:
        sock.sendto(bytes(tampered), km)
        _, message = _km_reply(sock)
    code, error = _krb_error(message)
    assert code == ErrorCode.KRB_AP_ERR_MODIFIED and "HMAC" in error["e-text"].native


@pytest.mark.parametrize(("data", "code", "text"), [
    (b"\x02\x01\x10" + b"\x6e\x82\x01\x00" + b"\x00" * 5, ErrorCode.KRB_ERR_GENERIC, "claims"),  # truncated AP-REQ
    (b"\x02\x01\x20" + b"\x00" * 40, ErrorCode.KRB_AP_ERR_BADVERSION, "version 2.0"),
    (b"\x09\x01\x10" + b"\x00" * 8, ErrorCode.KRB_AP_ERR_MSG_TYPE, "unknown key-management message id 0x09"),
    (bytes(WakeUp(1, SC1)), ErrorCode.KRB_AP_ERR_MSG_TYPE, "not sent to a signaling controller"),
], ids=["truncated-ap-req", "bad-version", "unknown-id", "wake-up-to-sc"])
def test_km_malformed_message_gets_an_error_reply(live, data, code, text):
    d = live
    km = _host_port(d.sc("sc1")["km"])
    before = len(_debug_lines(d, "km_refused"))
    with _attacker() as sock:
        sock.sendto(data, km)
        _, message = _km_reply(sock)
    got, error = _krb_error(message)
    assert got == code, error.native
    assert text in error["e-text"].native
    line = _wait_new(d, "km_refused", before, lambda r: r["code"] == int(code))
    assert text in line["reason"]


def test_km_runt_is_refused_without_a_reply(live):
    d = live
    km = _host_port(d.sc("sc1")["km"])
    before = len(_debug_lines(d, "km_refused"))
    with _attacker() as sock:
        sock.settimeout(0.5)
        sock.sendto(b"\x02", km)
        line = _wait_new(d, "km_refused", before, lambda r: "shorter than its 3-byte header" in r["reason"])
        with pytest.raises(socket.timeout):
            sock.recvfrom(4096)
    assert line["replied"] is False and line["code"] == ErrorCode.KRB_ERR_GENERIC


# --- and scd kept serving -----------------------------------------------------------------------


def test_scd_keeps_serving_registered_ctas(live):
    d = live
    start = _scd_counters(d)
    assert start["lines"] == 2
    # Keep-alives: each ctad sends OPTIONS every 3 s (timeout 2 s; a lost one is an SC loss).
    # Wait for two rounds from both and check nothing was lost on either side.
    deadline = time.monotonic() + 10
    while True:
        time.sleep(1.0)
        now = _scd_counters(d)
        if now["esp_in"] >= start["esp_in"] + 4 or time.monotonic() > deadline:
            break
    assert now["esp_in"] >= start["esp_in"] + 4, (start, now)
    assert now["lines"] == 2
    for name in ("cta1", "cta2"):
        status = _status(d, f"ctad:{name}")
        assert status.startswith(f"ctad: registered; {d.cta(name)['numbers'][0]}; ap=1 sc_lost=0"), status
        states = [r["state"] for r in d.records(f"ctad:{name}") if r.get("event") == "state"]
        assert states[-1] == "registered" and "backoff" not in states, states
    # Debug lines for refused packets carry SPIs and reasons, never key material.
    text = d.logs["scd:sc1"].read_text()
    for record in read_key_log(d.sc("sc1")["key_log"]):
        for field in ("enc_key", "auth_key", "key"):
            if record.get(field):
                assert record[field] not in text, f"{field} of SPI {record.get('spi')} is in scd's log"


def test_fresh_register_round_trip_after_the_attacks(live):
    d = live
    number = d.cta("cta2")["numbers"][0]
    registered_before = len([r for r in d.records("scd:sc1") if r.get("event") == "registered" and r.get("number") == number])
    aps_before = len(_debug_lines(d, "sa established", principal=d.cta("cta2")["principal"]))
    d.stop("ctad:cta2")
    d.start_ctad("cta2")
    d.wait_log("ctad:cta2", lambda r: r.get("event") == "state" and r.get("state") == "registered", timeout=15)
    _wait_new(d, "registered", registered_before, number=number)
    _wait_new(d, "sa established", aps_before, principal=d.cta("cta2")["principal"])
    # cta1 was not disturbed by any of it.
    assert _status(d, "ctad:cta1").startswith("ctad: registered;")
