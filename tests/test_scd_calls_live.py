"""Calls through two live scds: the SC-to-SC ESP link, and SIP between the SCs inside it.

kdcd + sc1 + sc2 as real processes (tests/peers/daemons.py, a `kerbtel init --key-log`
deployment, whose scd.toml files carry [calls], [peering] and [li]). sc1 is started first, so
its PeerLink (sc1's principal sorts first: it initiates) backs off until sc2 starts and wakes it
up. The CTAs are simulated in this process (`SimCta`: a ticket from `kerbtel kinit`,
`ctad.km.CtaKeyManager` for the AP exchange, `ctad.calls.CallAgent` for SIP, real UDP and ESP
to the SC), because ctad's call wiring is not what this file tests.

For the cross-SC call the test moves cta2's number from sc1 to sc2 (sc1 routes it to sc2, sc2
owns it) and puts the simulated cta2 on sc2: cta1 -> sc1 -> sc2 -> cta2, both key
acknowledgements, answer, hang-up, one lawful-intercept record per SC (same call id and
sub-key, read back with the deployment's intercept private key). 911 from cta1 crosses to sc2
(which owns the emergency line, unregistered) and comes back 480. tshark decrypts the SC-SC hop
with `kerbtel keys wireshark` and shows the INVITE as esp:udp:sip.
"""

from __future__ import annotations

import json
import re
import select
import shlex
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from common.ccache import Ccache
from common.esp import NEXT_HEADER_UDP, EspError, inner_udp, parse_inner_udp
from common.principal import Principal
from ctad import km as ckm
from ctad.calls import CallAgent, CallEnded, CallEstablished, CallKeysReady, IncomingCall
from ctad.signaling import CtaUserAgent
from tests.conftest import require_peer
from tests.pcaputil import capture_udp_ports
from tests.peers.daemons import Daemons
from tests.peers.kdcd import kerbtel

pytestmark = pytest.mark.interop

SDP_A = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
SDP_B = b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\n"
EMERGENCY_LINE = "+15552340911"


def _host_port(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _move_number_to_sc2(d: Daemons, number: str) -> None:
    """sc1 stops owning `number` and routes it to sc2; sc2 owns it (the lines `kerbtel init` wrote)."""
    sc1, sc2 = Path(d.sc("sc1")["config"]), Path(d.sc("sc2")["config"])
    text = sc1.read_text()
    text = re.sub(r'(?m)^(owned = \[.*?)"' + re.escape(number) + r'",? ?', r"\1", text, count=1)
    text = text.replace("owned = [, ", "owned = [").replace(", ]", "]")
    text = re.sub(r"(?m)^routes = \{ ", f'routes = {{ "{number}" = "sc2", ', text, count=1)
    sc1.write_text(text)
    text = sc2.read_text()
    text = re.sub(r"(?m)^owned = \[", f'owned = ["{number}", ', text, count=1)
    sc2.write_text(text)


class SimCta:
    """A CTA in this process on one UDP socket: AP exchange with the SC, REGISTER, calls."""

    def __init__(self, d: Daemons, tmp: Path, name: str, sc: str) -> None:
        cta, scm = d.cta(name), d.sc(sc)
        self.name = name
        self.numbers = cta["numbers"]
        self.km_addr, self.esp_addr = _host_port(scm["km"]), _host_port(scm["esp"])
        service = Principal.parse(scm["principal"])
        ccache = tmp / f"{name}-{sc}.cc"
        kerbtel("kinit", "--identity", cta["identity_dir"], "--kdc", d.dep.address, "--service", scm["principal"],
                "--anchor", d.manifest["kdc"]["anchor"], "--ccache", ccache)
        cred = Ccache.load(ccache).find(service)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.km = ckm.CtaKeyManager(Principal.parse(cta["principal"]), service, cred.ticket, cred.key,
                                    sc_address=self.km_addr, retransmit_initial=0.3, retransmit_max=1.0)
        self.ua = CtaUserAgent(self.numbers, domain=scm["principal"].split("/", 1)[1].split("@", 1)[0],
                               local_host="127.0.0.1", local_port=port, keepalive_interval=0)
        self.agent = CallAgent(self.ua)
        self.sa: ckm.SaEstablished | None = None
        self.events: list = []
        self._km_events(self.km.start(time.monotonic(), datetime.now(timezone.utc)))

    def _km_events(self, events) -> None:
        for event in events:
            if isinstance(event, ckm.SendTo):
                self.sock.sendto(event.data, self.km_addr)
            elif isinstance(event, ckm.SaEstablished):
                first = self.sa is None
                self.sa = event
                if first:
                    self.ua.start(time.monotonic())

    def step(self, wait: float = 0.02) -> None:
        ready, _, _ = select.select([self.sock], [], [], wait)
        now = time.monotonic()
        if ready:
            data, addr = self.sock.recvfrom(4096)
            if addr == self.esp_addr and self.sa is not None:
                sa = self.sa.inbound if int.from_bytes(data[:4], "big") == self.sa.cta_spi else None
                if sa is not None:
                    try:
                        next_header, inner = sa.unprotect(data)
                        if next_header == NEXT_HEADER_UDP:
                            self.ua.receive(parse_inner_udp(inner)[2], now)
                    except EspError:
                        pass
            else:
                self._km_events(self.km.receive(data, now, datetime.now(timezone.utc)))
        self._km_events(self.km.handle_timer(now, datetime.now(timezone.utc)))
        timer = self.agent.get_timer()
        if timer is not None and timer <= now:
            self.agent.handle_timer(now)
        if self.sa is not None:
            for data in self.agent.datagrams_to_send():
                self.sock.sendto(self.sa.outbound.protect(inner_udp(self.ua.local_port, 5060, data), NEXT_HEADER_UDP),
                                 self.esp_addr)
        while (event := self.agent.next_event()) is not None:
            self.events.append(event)

    def of(self, kind) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def close(self) -> None:
        self.sock.close()


def run_until(ctas: list[SimCta], predicate, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}: " +
                                 "; ".join(f"{c.name}: {c.events}" for c in ctas))
        for cta in ctas:
            cta.step(0.01)


def _status(d: Daemons, key: str) -> str:
    """The daemon's status line, fresh (SIGHUP makes the daemon shell log `reloaded` with it)."""
    before = sum(1 for r in d.records(key) if r.get("event") == "reloaded")
    d.procs[key].send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        done = [r for r in d.records(key) if r.get("event") == "reloaded"]
        if len(done) > before:
            return done[-1]["status"]
        assert time.monotonic() < deadline, f"{key} did not log a status after SIGHUP:\n{d.tail(key)}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    d = Daemons.create(tmp_path_factory.mktemp("kerbtel") / "realm")
    try:
        _move_number_to_sc2(d, d.cta("cta2")["numbers"][0])
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def linked(live, tmp_path_factory):
    """sc1, then sc2 (and a capture of the SC ports when tshark is there); the link comes up."""
    d = live
    pcap = tmp_path_factory.mktemp("cap") / "scs.pcap"
    ports = [_host_port(d.sc(s)[k])[1] for s in ("sc1", "sc2") for k in ("km", "esp")]
    capture = capture_udp_ports(pcap, ports) if _have("tshark") else None
    d.start_scd("sc1")
    time.sleep(1.5)  # sc1's first AP Requests go unanswered: sc2 is not there yet
    d.start_scd("sc2")
    d.wait_log("scd:sc1", lambda r: r.get("event") == "peer link up", timeout=20)
    d.wait_log("scd:sc2", lambda r: r.get("event") == "peer link up", timeout=20)
    yield d, capture, pcap
    if capture is not None:
        capture.stop()


def _have(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None


def test_peer_link_comes_up_and_status_shows_it(linked):
    d, _, _ = linked
    up1 = d.wait_log("scd:sc1", lambda r: r.get("event") == "peer link up")
    up2 = d.wait_log("scd:sc2", lambda r: r.get("event") == "peer link up")
    assert up1["peer"] == "sc2" and up1["role"] == "initiator"
    assert up2["peer"] == "sc1" and up2["role"] == "responder"
    assert up2["principal"] == d.sc("sc1")["principal"]
    # one SA pair: sc1's inbound SPI is sc2's outbound and the other way round
    assert (up1["spi"], up1["peer_spi"]) == (up2["peer_spi"], up2["spi"])
    ticket = d.wait_log("scd:sc1", lambda r: r.get("event") == "peer ticket")
    assert ticket["mode"] == "enc-timestamp" and ticket["server"] == d.sc("sc2")["principal"]
    # sc2 woke the waiting initiator up when it started
    assert any(r.get("event") == "wake up sent" and r.get("peer") == "sc1" for r in d.records("scd:sc2"))
    assert "peers sc2:established" in _status(d, "scd:sc1")
    status2 = _status(d, "scd:sc2")
    assert "peers sc1:established" in status2 and status2.startswith("scd: 0 CTAs keyed")  # the peer is no CTA


@pytest.fixture(scope="module")
def ctas(linked, tmp_path_factory):
    d, _, _ = linked
    tmp = tmp_path_factory.mktemp("ctas")
    a, b = SimCta(d, tmp, "cta1", "sc1"), SimCta(d, tmp, "cta2", "sc2")
    try:
        run_until([a, b], lambda: a.ua.registered == a.numbers and b.ua.registered == b.numbers, what="registration")
        yield a, b
    finally:
        a.close()
        b.close()


def test_emergency_call_crosses_to_sc2_and_comes_back_480(linked, ctas):
    d, _, _ = linked
    a, b = ctas
    a.agent.place_call("911", SDP_A, time.monotonic(), line=a.numbers[0])
    run_until([a, b], lambda: a.of(CallEnded), what="the 911 call to end")
    ended = a.of(CallEnded)[-1]
    assert ended.status == 480, ended
    setup = d.wait_log("scd:sc1", lambda r: r.get("event") == "call setup" and r.get("callee") == EMERGENCY_LINE)
    assert setup["role"] == "source" and setup["next_hop"] == "sc:sc2"
    refused = d.wait_log("scd:sc2", lambda r: r.get("event") == "call refused" and r.get("dialed") == EMERGENCY_LINE)
    assert refused["origin"] == "sc:sc1" and refused["status"] == 480
    end = d.wait_log("scd:sc1", lambda r: r.get("event") == "call ended" and r.get("call_id") == setup["call_id"])
    assert end["failed"] and "480" in end["reason"]
    a.events.clear()


def test_cross_sc_call_keys_answer_hangup_and_intercept_records(linked, ctas, tmp_path):
    d, _, _ = linked
    a, b = ctas
    call_a = a.agent.place_call(b.numbers[0], SDP_A, time.monotonic(), line=a.numbers[0])
    run_until([a, b], lambda: b.of(IncomingCall), what="the INVITE at cta2")
    b.agent.answer(b.of(IncomingCall)[-1].call_id, SDP_B, time.monotonic())
    run_until([a, b], lambda: a.of(CallEstablished) and b.of(CallEstablished), what="the call to be up")
    keys_a, keys_b = a.of(CallKeysReady)[-1], b.of(CallKeysReady)[-1]
    assert keys_a.call_ref == keys_b.call_ref and keys_a.spi == keys_b.spi
    assert keys_a.media_tx.libsrtp_key() == keys_b.media_rx.libsrtp_key()
    ref = keys_a.call_ref
    d.wait_log("scd:sc1", lambda r: r.get("event") == "call connected" and r.get("call_id") == ref)
    setup2 = d.wait_log("scd:sc2", lambda r: r.get("event") == "call setup" and r.get("call_id") == ref)
    assert setup2["role"] == "destination" and setup2["next_hop"] == d.cta("cta2")["principal"]
    a.agent.hangup(call_a, time.monotonic())
    run_until([a, b], lambda: a.of(CallEnded) and b.of(CallEnded), what="both legs to end")
    for sc in ("sc1", "sc2"):
        end = d.wait_log(f"scd:{sc}", lambda r: r.get("event") == "call ended" and r.get("call_id") == ref)
        assert not end["failed"] and end["reason"] == "hung up by the caller"
    # no key material in any scd log line
    subkey_hex = keys_a.esp_out.enc_key.hex()
    for sc in ("sc1", "sc2"):
        assert subkey_hex not in d.logs[f"scd:{sc}"].read_text()
    assert re.search(r"calls_completed=1\b", _status(d, "scd:sc1"))
    # lawful intercept: one record per SC, readable only with the deployment's private key
    li = d.manifest["li"]
    subkeys = set()
    for sc in ("sc1", "sc2"):
        out = kerbtel("li", "export", "--store", li["stores"][sc], "--call-id", ref, "--key", li["private_key"], "--json")
        (record,) = json.loads(out.stdout)
        assert record["call_id"] == ref and record["end"]
        assert record["parties"]["role"] == ("source" if sc == "sc1" else "destination")
        assert record["parties"]["caller"] == a.numbers[0] and record["parties"]["callee"] == b.numbers[0]
        subkeys.add(record["keys"]["subkey"])
    assert len(subkeys) == 1


def test_tshark_decrypts_the_sc_to_sc_hop(linked, ctas):
    require_peer("tshark")
    d, capture, pcap = linked
    capture.stop()
    options = shlex.split(kerbtel("keys", "wireshark", d.dir).stdout.strip())
    esp1, esp2 = (_host_port(d.sc(s)["esp"])[1] for s in ("sc1", "sc2"))
    fields = ["udp.srcport", "udp.dstport", "frame.protocols", "esp.icv_good", "sip.Method", "sip.Status-Code"]
    out = subprocess.run(["tshark", "-r", str(pcap), *options, "-T", "fields", "-E", "separator=|",
                          *[a for f in fields for a in ("-e", f)]], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [dict(zip(fields, r.split("|"))) for r in out.stdout.splitlines()]
    for r in rows:  # decrypted ESP has two UDP headers: "outer,inner"; keep the outer port
        r["udp.srcport"], r["udp.dstport"] = r["udp.srcport"].split(",")[0], r["udp.dstport"].split(",")[0]
    hop = [r for r in rows if {r["udp.srcport"], r["udp.dstport"]} == {str(esp1), str(esp2)}]
    assert hop, "no packet between the two SCs' ESP ports"
    assert all("esp:udp:sip" in r["frame.protocols"] and r["esp.icv_good"] == "1" for r in hop), hop
    invites = [r for r in hop if r["sip.Method"] == "INVITE"]
    assert any(r["udp.srcport"] == str(esp1) for r in invites), hop  # sc1 -> sc2
    assert any(r["sip.Status-Code"] == "180" and r["udp.srcport"] == str(esp2) for r in hop)
    assert any(r["sip.Method"] == "BYE" for r in hop)
