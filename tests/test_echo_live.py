"""The echo test service end to end through real daemons on a `kerbtel init` deployment.

kdcd, sc1 and sc2, cta1 (a provisioned CTA with the built-in softphone on its line side) and the
echo server (`ctad -c DIR/echo/echo.toml`: ctad in echo mode, its own operator certificate with
the echo number) as separate processes. cta1's phone dials the echo number, sends 1000 Hz and must
hear its own 1000 Hz back (common.audio.ToneCheck), under the echo server's SSRC. The logs show
the seed's network-server key distribution (steps 430-442): sc1 delivers the call's sub-key to the
echo server, verifies the echo server's acknowledgement (party B) before the caller's (party A);
the echo server logs the key it acknowledged (never the key).

The media between cta1 and the echo server is captured on lo (tshark): cta1's network media leg is
moved to 127.0.0.2 and the echo server's to 127.0.0.3, so that leg is exactly the UDP between
those two addresses. No 16-byte run of any RTP payload the phone sent appears in it, either way,
and what the echo sends carries the echo's SSRC, not the phone's. Needs root (live capture) and
tshark, like tests/test_calls_peers_live.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.audio import ToneCheck
from ctad.softphone import Softphone, SoftphoneConfig
from tests.conftest import require_peer
from tests.pcaputil import LoopbackCapture
from tests.peers.daemons import Daemons
from tests.peers.kdcd import ROOT

pytestmark = pytest.mark.interop

CTA_MEDIA, ECHO_MEDIA = "127.0.0.2", "127.0.0.3"
TONE = 1000.0
TALK = 2.5


class RecordingSoftphone(Softphone):
    """The built-in softphone, keeping every RTP packet it sends (for the leak check)."""

    def __init__(self, config: SoftphoneConfig) -> None:
        super().__init__(config)
        self.sent: list[bytes] = []

    def _start_media(self, event) -> None:
        super()._start_media(event)
        produce = self.media.next_packet

        def next_packet() -> bytes:
            packet = produce()
            self.sent.append(packet)
            return packet

        self.media.next_packet = next_packet


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _set_media_host(config: Path, host: str) -> None:
    text = config.read_text()
    new = re.sub(r'(?ms)^(\[media\]\s*\nhost = )"[^"]*"', rf'\1"{host}"', text, count=1)
    assert new != text, f"no [media] host in {config}"
    config.write_text(new)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    require_peer("tshark", reason="captures the CTA-to-echo media leg on lo")
    d = Daemons.create(tmp_path_factory.mktemp("kerbtel") / "realm")
    capture = None
    try:
        cta, echo = d.cta("cta1"), d.manifest["echo"]
        assert echo["sc"] == cta["sc"] == "sc1"
        _set_media_host(Path(cta["config"]), CTA_MEDIA)
        _set_media_host(Path(echo["config"]), ECHO_MEDIA)
        pcap = tmp_path_factory.mktemp("cap") / "echo.pcap"
        capture = LoopbackCapture(pcap, f"udp and ((src host {CTA_MEDIA} and dst host {ECHO_MEDIA}) or "
                                        f"(src host {ECHO_MEDIA} and dst host {CTA_MEDIA}))")
        d.start_scd("sc2")
        d.start_scd("sc1", log_level="debug")  # "key ack verified" is a debug line
        d.start_ctad("cta1")
        d.start_echo()
        d.wait_registered([*cta["numbers"], echo["number"]], timeout=30)
        d.wait_log("ctad:cta1", lambda r: r.get("event") == "line side")
        d.wait_log("ctad:echo", lambda r: r.get("event") == "echo server")
        yield d, cta, echo, capture
    finally:
        if capture is not None:
            capture.stop()
        d.close()


@pytest.fixture(scope="module")
def echo_call(live):
    """One call: cta1's phone dials the echo number, talks, hangs up."""
    d, cta, echo, _ = live

    async def call() -> RecordingSoftphone:
        phone = RecordingSoftphone(SoftphoneConfig(number=cta["numbers"][0], line=_hostport(cta["line"]),
                                                   tone_hz=TONE, register=True))
        async with phone:
            await phone.dial(echo["number"], timeout=15)
            await asyncio.sleep(TALK)
            closed = await phone.hangup()
            assert closed.reason == "local BYE", closed
        return phone

    phone = asyncio.run(call())
    ended = d.wait_log("ctad:echo", lambda r: r.get("event") == "echo call ended", timeout=10)
    return phone, ended


def test_the_caller_hears_its_own_tone_back(live, echo_call):
    d, _, echo, _ = live
    phone, ended = echo_call
    verdict = ToneCheck(TONE).check(phone.received)
    print(f"echo: sent {len(phone.sent)} packets, heard {len(phone.received) / 8000:.1f} s back: {verdict}; "
          f"echo server: {ended}")
    assert verdict.ok, f"{TONE:g} Hz back from the echo: {verdict}"
    media = phone.media
    assert media is not None and media.remote_ssrc is not None and media.remote_ssrc != media.ssrc
    assert ended["reason"] == "hung up by the other party", ended
    assert ended["echoed"] > 50 and ended["decrypted_packets"] >= ended["echoed"] and not ended["drops"], ended
    stopped = d.wait_log("ctad:cta1", lambda r: r.get("event") == "media stopped")
    assert stopped["encrypted_packets"] > 50 and stopped["decrypted_packets"] > 50, stopped


def test_the_sc_keyed_the_echo_server_first_and_both_acknowledged(live, echo_call):
    d, _, echo, _ = live
    sc = d.records("scd:sc1")
    setup = next(r for r in sc if r.get("event") == "call setup" and r.get("callee") == echo["number"])
    call_id = setup["call_id"]
    assert setup["next_hop"] == echo["principal"], setup  # 430: the sub-key goes to the echo server
    events = [(r["event"], r.get("party")) for r in sc if r.get("call_id") == call_id]
    # 432 before 440/442: the echo server's acknowledgement verified before the caller's
    assert events.index(("key ack verified", "B")) < events.index(("key ack verified", "A")), events
    assert ("call connected", None) in events and ("call ended", None) in events
    keyed = d.wait_log("ctad:echo", lambda r: r.get("event") == "echo call keyed")
    assert keyed["call_ref"] == call_id and keyed["acknowledged"] is True, keyed
    answered = d.wait_log("ctad:echo", lambda r: r.get("event") == "echo call answered")
    assert answered["line"] == echo["number"] and answered["media"].startswith(f"{ECHO_MEDIA}:")
    # no key material in any line of the echo server's log
    text = Path(d.logs["ctad:echo"]).read_text()
    assert '"key"' not in text and "subkey" not in text.lower()


def test_media_between_cta_and_echo_is_encrypted(live, echo_call):
    _, _, _, capture = live
    phone, _ = echo_call
    captured = capture.stop()
    to_echo = [x for x in captured if x.src == CTA_MEDIA and x.dst == ECHO_MEDIA]
    from_echo = [x for x in captured if x.src == ECHO_MEDIA and x.dst == CTA_MEDIA]
    assert len(to_echo) > 50 and len(from_echo) > 50, (len(to_echo), len(from_echo))
    pieces = set()
    for rtp in phone.sent:
        payload = rtp[12:]
        pieces.update(payload[i:i + 16] for i in range(0, len(payload) - 15))
    assert pieces  # a 1000 Hz tone at 8 kHz repeats every 8 samples: only 8 distinct runs, each enough
    leaks = [x for x in captured for i in range(len(x.payload) - 15) if x.payload[i:i + 16] in pieces]
    assert not leaks, f"{len(leaks)} datagrams between the CTA and the echo carry RTP payload in clear: {leaks[:2]}"
    ssrc = phone.media.ssrc.to_bytes(4, "big")
    assert all(x.payload[8:12] != ssrc for x in from_echo), "the echo sent back the phone's own SSRC"
    print(f"CTA <-> echo: {len(to_echo)} datagrams to the echo, {len(from_echo)} back, "
          f"{len(phone.sent)} RTP packets sent by the phone, none in clear")


def test_softphone_cli_checks_the_echo(live, echo_call):
    """What docs/operations.md tells an operator to run."""
    _, cta, echo, _ = live
    out = subprocess.run(
        [sys.executable, "-m", "ctad.softphone", "--line", cta["line"], "--number", cta["numbers"][0], "--register",
         "--dial", echo["number"], "--tone", "1000", "--check", "1000", "--duration", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert report["check"].startswith("tone 1000 Hz: PASS"), report
