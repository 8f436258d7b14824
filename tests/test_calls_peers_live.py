"""Issue 5, "Must work against real peers" items 2-5, on one live deployment.

One `kerbtel init --key-log` deployment as real processes (tests/peers/daemons.py): kdcd, every
scd, cta1 and cta2 (provisioned, one number each) and cta3 (factory certificate, no number), the
built-in softphone (ctad.softphone) on the line sides. Each CTA's `[media] host` (the network leg
of its media relay, where the remote CTA sends SRTP) is moved to 127.0.0.2, so that the media
between the CTAs is the only traffic between 127.0.0.2 and 127.0.0.2; the line side (softphone
SIP and RTP, ctad's line SIP and RTP/RTCP ports) stays on 127.0.0.1.

What is captured (tshark on `lo`, for the whole module): every SC's key-management (pktc) and
ESP UDP ports (CTA-SC and SC-SC traffic), every CTA's own key-management/ESP port (pinned in its
config: the direct CTA-to-CTA channel) and UDP from 127.0.0.2 to 127.0.0.2 (the CTA-to-CTA SRTP
on the CTAs' media ports). Not captured: the
line-side ports (exempt per the issue: plain RTP and SIP between a softphone and its CTA on one
host).

Calls, in file order (the capture is analysed at the end):
- item 2 call: cta1's phone (1000 Hz) calls cta2's phone (1500 Hz), tones both ways, A hangs up;
- item 4: cta3's phone dials 611 (the CSR code, which `kerbtel init` aliases to cta1's number)
  and connects; dialing cta2's number gets 403 with the reason phrase at the phone;
- item 5a: during a call A -> B, SRTP captured from the wire (an AF_PACKET socket) is replayed
  and a tampered copy injected at cta2's media port, spoofed from cta1's media port (a raw IP
  socket: the relay only accepts its SDP peer's address); cta2 drops and counts them
  (`network_replay`, `network_auth` in its "media stopped" log line) and the tone still passes;
- item 5b: a call to an unknown number gets 404; item 5c: then a normal call A -> B succeeds
  (the wrong sub-key acknowledgement itself is exercised in memory in tests/test_calls.py);
- 911 from cta1 crosses the SC-to-SC link to sc2 and comes back 480 (so the SC-SC ESP hop
  carries an INVITE for item 2b);
- item 2 (a): pylibsrtp, given only the keys `kerbtel keys srtp DIR` prints (from the CTAs' key
  logs), decrypts every SRTP packet of the first call to exactly the RTP the softphones sent, and
  the decoded audio passes ToneCheck; (b) tshark with `kerbtel keys wireshark DIR` decrypts every
  ESP packet of the capture (CTA-SC, SC-SC and CTA-CTA hops) with a good ICV, as esp:udp:sip, and
  shows the INVITE and BYE both into and out of the SC, and the hang-up's BYE and its 200 CTA to CTA;
- item 3: no 16-byte run of any RTP payload a softphone sent appears in any captured UDP payload,
  and no captured UDP payload is SIP (a request line or "SIP/2.0").

Needs root (tshark live capture; raw sockets for the injection), tshark and pylibsrtp.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import socket
import subprocess
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from common.audio import ToneCheck, ulaw_decode
from common.ports import PORT_HIGH, bindable
from ctad.softphone import CallFailed, Softphone, SoftphoneConfig
from tests.conftest import require_peer
from tests.pcaputil import LoopbackCapture as Capture
from tests.pcaputil import UdpDatagram as Datagram
from tests.pcaputil import ipv4_udp, parse_ipv4_udp, read_udp
from tests.peers.daemons import Daemons
from tests.peers.kdcd import kerbtel

pytestmark = pytest.mark.interop

MEDIA_HOST = "127.0.0.2"       # the CTAs' network media leg (see the module docstring)
TONE_A, TONE_B, TONE_C = 1000.0, 1500.0, 1200.0
TALK = 2.0
CSR_CODE = "611"
UNKNOWN_NUMBER = "+15559876543"
SIP_REQUEST = re.compile(rb"^[A-Z]+ \S+ SIP/2\.0\r?\n")


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


# --- softphones that remember what they sent -------------------------------------------------------


class RecordingSoftphone(Softphone):
    """The built-in softphone, keeping every RTP packet it sends (for libsrtp and the leak check)."""

    def __init__(self, config: SoftphoneConfig) -> None:
        super().__init__(config)
        self.sent: list[bytes] = []
        self.ssrcs: list[int] = []

    def _start_media(self, event) -> None:
        super()._start_media(event)
        media, produce = self.media, self.media.next_packet
        self.ssrcs.append(media.ssrc)

        def next_packet() -> bytes:
            packet = produce()
            self.sent.append(packet)
            return packet

        media.next_packet = next_packet


def _payload(rtp: bytes) -> bytes:
    return rtp[12 + 4 * (rtp[0] & 0x0F):]


# --- the deployment --------------------------------------------------------------------------------


@dataclass
class Live:
    d: Daemons
    capture: Capture
    pcap: Path
    ctas: dict[str, dict]
    sc_ports: dict[str, tuple[int, int]]      # SC name -> (km port, ESP port)
    cta_ports: list[int]                      # the CTAs' key-management/ESP sockets
    phones: list[RecordingSoftphone] = field(default_factory=list)
    first_call: dict = field(default_factory=dict)

    def phone(self, cta: str, tone: float, number: str | None = None, register: bool = True) -> RecordingSoftphone:
        c = self.ctas[cta]
        phone = RecordingSoftphone(SoftphoneConfig(number=number or c["numbers"][0], line=_hostport(c["line"]),
                                                   tone_hz=tone, register=register))
        self.phones.append(phone)
        return phone

    def stop_capture(self) -> list[Datagram]:
        self.capture.stop()
        return read_udp(self.pcap)


def _set_cta_port(config: Path, port: int) -> None:
    """Pin the CTA's key-management/ESP socket (ephemeral by default) so the capture can include
    its direct CTA-to-CTA channel."""
    text = config.read_text()
    new = re.sub(r'(?ms)^(\[cta\].*?^local = )"([^":]*):0"', rf'\1"\2:{port}"', text, count=1)
    assert new != text, f"no [cta] local in {config}"
    config.write_text(new)


def _set_media_host(config: Path) -> None:
    text = config.read_text()
    new = re.sub(r'(?ms)^(\[media\]\s*\nhost = )"[^"]*"', rf'\1"{MEDIA_HOST}"', text, count=1)
    assert new != text, f"no [media] host in {config}"
    config.write_text(new)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    require_peer("tshark", reason="captures lo and decrypts ESP")
    d = Daemons.create(tmp_path_factory.mktemp("kerbtel") / "realm")
    capture = None
    try:
        ctas = {n: d.cta(n) for n in ("cta1", "cta2", "cta3")}
        assert not ctas["cta3"]["provisioned"] and not ctas["cta3"]["numbers"]
        # above every port common.ports hands out (the SCs' km ports): Wireshark tries the lower
        # port's decoder first, and a CTA port is decoded as ESP-in-UDP
        cta_ports = [p for p in range(PORT_HIGH, 32768) if bindable("127.0.0.1", p, ("udp",))][:len(ctas)]
        for c, port in zip(ctas.values(), cta_ports):
            _set_media_host(Path(c["config"]))
            _set_cta_port(Path(c["config"]), port)
        sc_ports = {s["name"]: (_hostport(s["km"])[1], _hostport(s["esp"])[1]) for s in d.manifest["scs"]}
        ports = sorted([p for pair in sc_ports.values() for p in pair] + cta_ports)
        bpf = " or ".join(f"udp port {p}" for p in ports) + f" or (udp and src host {MEDIA_HOST} and dst host {MEDIA_HOST})"
        pcap = tmp_path_factory.mktemp("cap") / "calls.pcap"
        capture = Capture(pcap, bpf)
        # the SC whose principal sorts first initiates the SC-to-SC link: start it last, so that
        # its first AP Request finds the other one up (no backoff)
        for sc in sorted(sc_ports, reverse=True):
            d.start_scd(sc)
        if len(sc_ports) > 1:
            for sc in sc_ports:
                d.wait_log(f"scd:{sc}", lambda r: r.get("event") == "peer link up", timeout=20)
        for name in ctas:
            d.start_ctad(name)
        for c in ctas.values():
            if c["numbers"]:
                d.wait_registered(c["numbers"], sc=c["sc"], timeout=30)
            d.wait_log(f"ctad:{c['name']}", lambda r: r.get("event") == "line side")
        d.wait_log("ctad:cta3", lambda r: r.get("event") == "state" and r.get("state") == "connected", timeout=30)
        yield Live(d, capture, pcap, ctas, sc_ports, cta_ports)
    finally:
        if capture is not None:
            capture.stop()
        d.close()


async def _talk(a: RecordingSoftphone, b: RecordingSoftphone, dialed: str, seconds: float = TALK, during=None):
    async with a, b:
        await a.dial(dialed, timeout=15)
        await b.wait_established(timeout=5)
        if during is not None:
            await asyncio.sleep(0.8)
            await during(a, b)
            await asyncio.sleep(seconds - 0.8)
        else:
            await asyncio.sleep(seconds)
        closed = await a.hangup()
        assert closed.reason == "local BYE", closed
        other = await b.wait_closed(timeout=10)
        assert other.by_remote, other


def _tones(a: RecordingSoftphone, b: RecordingSoftphone, hz_a: float, hz_b: float) -> None:
    at_b, at_a = ToneCheck(hz_a).check(b.received), ToneCheck(hz_b).check(a.received)
    assert at_b.ok, f"{hz_a:g} Hz at B: {at_b}"
    assert at_a.ok, f"{hz_b:g} Hz at A: {at_a}"


def _media_stopped(d: Daemons, cta: str, after: int) -> dict:
    """The first "media stopped" line of `cta` beyond the first `after` ones."""
    deadline = time.monotonic() + 10
    while True:
        lines = [r for r in d.records(f"ctad:{cta}") if r.get("event") == "media stopped"]
        if len(lines) > after:
            return lines[after]
        assert time.monotonic() < deadline, f"ctad:{cta} logged no media stopped:\n{d.tail(f'ctad:{cta}')}"
        time.sleep(0.05)


def _count(d: Daemons, cta: str, event: str) -> int:
    return sum(1 for r in d.records(f"ctad:{cta}") if r.get("event") == event)


# --- the calls -------------------------------------------------------------------------------------


def test_item2_call_a_to_b_tones_both_ways(live):
    a, b = live.phone("cta1", TONE_A), live.phone("cta2", TONE_B)
    asyncio.run(_talk(a, b, live.ctas["cta2"]["numbers"][0]))
    _tones(a, b, TONE_A, TONE_B)
    a_num, b_num = live.ctas["cta1"]["numbers"][0], live.ctas["cta2"]["numbers"][0]
    sc = live.ctas["cta1"]["sc"]
    setup = live.d.wait_log(f"scd:{sc}", lambda r: r.get("event") == "call setup" and r.get("caller") == a_num
                            and r.get("callee") == b_num)
    live.d.wait_log(f"scd:{sc}", lambda r: r.get("event") == "call ended" and r.get("call_id") == setup["call_id"])
    live.first_call.update(ref=setup["call_id"], a=a, b=b)


def test_item4_unprovisioned_cta_reaches_csr_and_gets_403_elsewhere(live):
    d = live.d
    csr = live.phone("cta1", TONE_A)                      # 611 -> cta1's number (kerbtel init's alias)
    c = live.phone("cta3", TONE_C, number="1000", register=False)
    asyncio.run(_talk(c, csr, CSR_CODE))
    at_csr = ToneCheck(TONE_C).check(csr.received)
    assert at_csr.ok, f"cta3's tone at the CSR phone: {at_csr}"
    at_c = ToneCheck(TONE_A).check(c.received)
    assert at_c.ok, f"the CSR phone's tone at cta3: {at_c}"

    async def refused():
        async with live.phone("cta3", TONE_C, number="1000", register=False) as phone:
            with pytest.raises(CallFailed) as failed:
                await phone.dial(live.ctas["cta2"]["numbers"][0], timeout=10)
            return phone.last_closed, str(failed.value)

    closed, text = asyncio.run(refused())
    assert closed is not None and closed.reason.startswith("403 "), (closed, text)
    assert "unprovisioned" in closed.reason, closed.reason    # the reason phrase reached the softphone
    refusal = d.wait_log(f"scd:{live.ctas['cta3']['sc']}", lambda r: r.get("event") == "call refused"
                         and r.get("status") == 403 and r.get("dialed") == live.ctas["cta2"]["numbers"][0])
    assert "unprovisioned" in refusal["reason"]


class Sniffer:
    """An AF_PACKET socket on lo: the SRTP datagrams between the CTAs' media ports, as sent."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.setblocking(False)

    def srtp_with_ssrc(self, ssrc: int) -> list[Datagram]:
        found = []
        while True:
            try:
                frame = self.sock.recv(65535)
            except BlockingIOError:
                return found
            if frame[12:14] != b"\x08\x00":
                continue
            d = parse_ipv4_udp(frame[14:])
            if (d is not None and d.src == MEDIA_HOST == d.dst and len(d.payload) > 12
                    and int.from_bytes(d.payload[8:12], "big") == ssrc):
                found.append(d)

    def close(self) -> None:
        self.sock.close()


def _inject(d: Datagram, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ipv4_udp(d.src, d.dst, d.sport, d.dport, payload), (d.dst, 0))


REPLAYS, TAMPERED = 5, 5


def test_item5a_tampered_and_replayed_srtp_dropped_and_counted_audio_still_passes(live):
    d = live.d
    before = _count(d, "cta2", "media stopped")
    a, b = live.phone("cta1", TONE_A), live.phone("cta2", TONE_B)
    sniffer = Sniffer()
    injected = {}

    async def attack(a, b):
        genuine = sniffer.srtp_with_ssrc(a.media.ssrc)
        assert genuine, "no SRTP from cta1's media port seen on lo"
        packet = genuine[-1]
        for _ in range(REPLAYS):                       # the same bytes again: replay window
            _inject(packet, packet.payload)
        seq = int.from_bytes(packet.payload[2:4], "big")
        for i in range(TAMPERED):                      # a future index (so not a replay), one bit off
            forged = bytearray(packet.payload)
            forged[2:4] = ((seq + 400 + i) & 0xFFFF).to_bytes(2, "big")
            forged[20] ^= 0x01
            _inject(packet, bytes(forged))
        injected.update(src=(packet.src, packet.sport), dst=(packet.dst, packet.dport))

    try:
        asyncio.run(_talk(a, b, live.ctas["cta2"]["numbers"][0], seconds=TALK + 0.5, during=attack))
    finally:
        sniffer.close()
    _tones(a, b, TONE_A, TONE_B)
    stopped = _media_stopped(d, "cta2", before)
    drops = stopped.get("drops", {})
    assert drops.get("network_replay") == REPLAYS, stopped
    assert drops.get("network_auth") == TAMPERED, stopped
    assert stopped["decrypted_packets"] > 50
    print(f"injected at {injected['dst']} from {injected['src']}: cta2 dropped {drops}")


def test_item5b_unknown_number_404_then_next_call_succeeds(live):
    async def unknown():
        async with live.phone("cta1", TONE_A) as phone:
            with pytest.raises(CallFailed):
                await phone.dial(UNKNOWN_NUMBER, timeout=10)
            return phone.last_closed

    closed = asyncio.run(unknown())
    assert closed is not None and closed.reason.startswith("404 "), closed
    sc = live.ctas["cta1"]["sc"]
    refusal = live.d.wait_log(f"scd:{sc}", lambda r: r.get("event") == "call refused" and r.get("dialed") == UNKNOWN_NUMBER)
    assert refusal["status"] == 404 and refusal["reason"]
    a, b = live.phone("cta1", TONE_A), live.phone("cta2", TONE_B)
    asyncio.run(_talk(a, b, live.ctas["cta2"]["numbers"][0]))
    _tones(a, b, TONE_A, TONE_B)


def test_item5c_after_the_failures_a_normal_call_still_succeeds(live):
    # The wrong sub-key hash acknowledgement: tests/test_calls.py (in memory). Here: after the
    # refusals, the 404 and the forged SRTP, the deployment still carries a normal call.
    a, b = live.phone("cta1", TONE_A), live.phone("cta2", TONE_B)
    asyncio.run(_talk(b, a, live.ctas["cta1"]["numbers"][0]))   # this time B calls A
    _tones(b, a, TONE_B, TONE_A)


def test_emergency_call_crosses_the_sc_to_sc_link_and_comes_back_480(live):
    # 911 is aliased to a line sc2 owns and nobody registered: with two SCs the INVITE crosses the
    # SC-to-SC link (inside ESP: item 2b checks that hop) and 480 comes back to the phone.
    assert set(live.sc_ports) == {"sc1", "sc2"} and live.ctas["cta1"]["sc"] == "sc1"

    async def emergency():
        async with live.phone("cta1", TONE_A) as phone:
            with pytest.raises(CallFailed):
                await phone.dial("911", timeout=10)
            return phone.last_closed

    closed = asyncio.run(emergency())
    assert closed is not None and closed.reason.startswith("480 "), closed
    live.d.wait_log("scd:sc2", lambda r: r.get("event") == "call refused" and r.get("origin") == "sc:sc1"
                    and r.get("status") == 480)


# --- the capture -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captured(live):
    return live.stop_capture()


_PROFILES = {"AES_CM_128_HMAC_SHA1_80": "SRTP_PROFILE_AES128_CM_SHA1_80",
             "AES_CM_128_HMAC_SHA1_32": "SRTP_PROFILE_AES128_CM_SHA1_32",
             "AEAD_AES_128_GCM": "SRTP_PROFILE_AEAD_AES_128_GCM"}


def test_item2a_libsrtp_decrypts_the_cta_to_cta_srtp_with_keys_from_kerbtel_keys(live, captured):
    try:
        import pylibsrtp
    except ImportError:
        require_peer("python3-pylibsrtp", reason="pip install pylibsrtp")
        raise
    call = live.first_call
    assert call, "the item 2 call did not run"
    out = kerbtel("keys", "srtp", live.d.dir, "--call", call["ref"], "--json").stdout
    (keys,) = json.loads(out)
    assert keys["call_ref"] == call["ref"]
    media = [x for x in captured if x.src == MEDIA_HOST == x.dst]
    for phone, direction, hz in ((call["a"], "a_to_b", TONE_A), (call["b"], "b_to_a", TONE_B)):
        (ssrc,) = phone.ssrcs
        policy = pylibsrtp.Policy(key=bytes.fromhex(keys["media"][direction]["key"]),
                                  ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                  srtp_profile=getattr(pylibsrtp.Policy, _PROFILES[keys["profile"]]))
        session = pylibsrtp.Session(policy)
        stream = [x for x in media if int.from_bytes(x.payload[8:12], "big") == ssrc]
        ports = {(x.sport, x.dport) for x in stream}
        assert len(ports) == 1, f"{direction}: SRTP between more than one port pair: {ports}"
        sent = {int.from_bytes(p[2:4], "big"): p for p in phone.sent}
        decrypted = [session.unprotect(x.payload) for x in stream]
        assert len(decrypted) >= 0.9 * len(phone.sent), (direction, len(decrypted), len(phone.sent))
        for rtp in decrypted:
            assert rtp == sent[int.from_bytes(rtp[2:4], "big")], f"{direction}: decrypted RTP differs from what was sent"
        audio = array("h")
        for rtp in decrypted:
            audio.extend(ulaw_decode(_payload(rtp)))
        verdict = ToneCheck(hz).check(audio)
        assert verdict.ok, f"{direction} decrypted by libsrtp: {verdict}"
        print(f"{direction}: ports {ports.pop()}, libsrtp decrypted {len(decrypted)}/{len(phone.sent)} packets; {verdict}")


def test_item2b_tshark_decrypts_every_esp_packet_and_shows_the_sip(live, captured):
    options = shlex.split(kerbtel("keys", "wireshark", live.d.dir).stdout.strip())
    fields = ["udp.srcport", "udp.dstport", "frame.protocols", "esp.spi", "esp.icv_good", "sip.Method", "sip.CSeq.method"]
    out = subprocess.run(["tshark", "-r", str(live.pcap), *options, "-T", "fields", "-E", "separator=|",
                          *[a for f in fields for a in ("-e", f)]], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [dict(zip(fields, r.split("|"))) for r in out.stdout.splitlines()]
    for r in rows:
        r["udp.srcport"], r["udp.dstport"] = r["udp.srcport"].split(",")[0], r["udp.dstport"].split(",")[0]
    esp_ports = {str(esp) for _, esp in live.sc_ports.values()}
    esp = [r for r in rows if ":esp" in r["frame.protocols"]]
    bad = [r for r in esp if r["esp.icv_good"] != "1" or "esp:udp:sip" not in r["frame.protocols"]]
    assert esp and not bad, f"{len(bad)} of {len(esp)} ESP packets not decrypted: {bad[:5]}"
    # every datagram on an SC's ESP port is ESP
    on_esp_ports = [r for r in rows if r["udp.srcport"] in esp_ports or r["udp.dstport"] in esp_ports]
    assert all(":esp" in r["frame.protocols"] for r in on_esp_ports), \
        [r for r in on_esp_ports if ":esp" not in r["frame.protocols"]][:5]
    cta_sc = [r for r in esp if (r["udp.srcport"] in esp_ports) != (r["udp.dstport"] in esp_ports)]
    sc_sc = [r for r in esp if r["udp.srcport"] in esp_ports and r["udp.dstport"] in esp_ports]
    for method in ("INVITE", "BYE"):
        assert any(r["sip.Method"] == method and r["udp.dstport"] in esp_ports for r in cta_sc), f"no {method} CTA -> SC"
        assert any(r["sip.Method"] == method and r["udp.srcport"] in esp_ports for r in cta_sc), f"no {method} SC -> CTA"
    assert any(r["sip.Method"] == "REGISTER" for r in cta_sc)
    if len(live.sc_ports) > 1:
        assert any(r["sip.Method"] == "INVITE" for r in sc_sc), "no INVITE on the SC-SC hop"
    # each call's direct channel: the hang-up's BYE goes CTA to CTA in the call's SA pair
    cta_cta = [r for r in esp if r["udp.srcport"] not in esp_ports and r["udp.dstport"] not in esp_ports]
    assert any(r["sip.Method"] == "BYE" for r in cta_cta), "no BYE on the CTA-CTA hop"
    assert any(r["sip.CSeq.method"] == "BYE" and not r["sip.Method"] for r in cta_cta), "no 200 (BYE) CTA-CTA"
    print(f"tshark: {len(esp)} ESP packets decrypted with a good ICV ({len(cta_sc)} CTA-SC, {len(sc_sc)} SC-SC, "
          f"{len(cta_cta)} CTA-CTA); "
          f"SIP methods {sorted({r['sip.Method'] for r in esp if r['sip.Method']})}")


def test_item3_no_plaintext_rtp_or_sip_in_the_capture(live, captured):
    ports = sorted([p for pair in live.sc_ports.values() for p in pair] + live.cta_ports)
    media = [x for x in captured if x.src == MEDIA_HOST == x.dst]
    signaling = [x for x in captured if x.sport in ports or x.dport in ports]
    assert len(media) > 500 and len(signaling) > 50, (len(media), len(signaling))
    assert len(media) + len(signaling) == len(captured)
    pieces = set()
    for phone in live.phones:
        for rtp in phone.sent:
            payload = _payload(rtp)
            pieces.update(payload[i:i + 16] for i in range(0, len(payload) - 15))
    assert len(pieces) > 10
    leaks = [x for x in captured for i in range(len(x.payload) - 15) if x.payload[i:i + 16] in pieces]
    assert not leaks, f"{len(leaks)} captured datagrams contain RTP payload in clear: {leaks[:2]}"
    sip = [x for x in captured if x.payload.startswith(b"SIP/2.0") or SIP_REQUEST.match(x.payload)]
    assert not sip, f"SIP outside ESP: {sip[:2]}"
    print(f"captured on lo: UDP ports {ports} (SC km and ESP, CTA km/ESP) and {MEDIA_HOST}<->{MEDIA_HOST} (CTA media): "
          f"{len(signaling)} signaling and {len(media)} media datagrams, {sum(len(p.sent) for p in live.phones)} "
          f"RTP packets sent by the phones, none in clear")
