"""ctad/softphone.py: the RTP stream and the SIP agent sans I/O (in-memory pairs with a chosen
clock), then two real softphones on loopback calling each other, and the CLI."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from common.audio import ToneCheck, ToneGenerator, alaw_encode, read_wav, tone, ulaw_decode, ulaw_encode
from common.sip.message import SipRequest, make_response, parse_message
from ctad.baresip import free_port
from ctad.softphone import (
    CallClosed,
    CallEstablished,
    CallFailed,
    IncomingCall,
    PhoneAgent,
    Registered,
    RegisterFailed,
    Ringing,
    RtpStream,
    Softphone,
    SoftphoneConfig,
)

ROOT = Path(__file__).resolve().parent.parent


# -- RTP stream ---------------------------------------------------------------------------------

def _stream(**kw) -> RtpStream:
    args = dict(ssrc=0x11223344, seq=0xFFFE, timestamp=0xFFFFFF00, send_pt=0, send_codec="PCMU",
                receive_map={0: "PCMU", 8: "PCMA", 101: "telephone-event"}, tone=ToneGenerator(1000))
    args.update(kw)
    return RtpStream(**args)


def _rtp(seq: int, payload: bytes, pt: int = 0, ts: int = 0, ssrc: int = 7) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


def test_packets_are_20ms_pcmu_with_wrapping_seq_and_timestamp() -> None:
    s = _stream()
    packets = [s.next_packet() for _ in range(3)]
    fields = [struct.unpack("!BBHII", p[:12]) for p in packets]
    assert fields == [(0x80, 0x80, 0xFFFE, 0xFFFFFF00, 0x11223344),   # marker on the first only
                      (0x80, 0x00, 0xFFFF, 0xFFFFFFA0, 0x11223344),
                      (0x80, 0x00, 0x0000, 0x00000040, 0x11223344)]
    expected = tone(1000, 0.06)
    assert b"".join(p[12:] for p in packets) == ulaw_encode(expected)
    assert s.packets_sent == 3


def test_pcma_sending() -> None:
    s = _stream(send_pt=8, send_codec="PCMA")
    packet = s.next_packet()
    assert packet[1] & 0x7F == 8 and packet[12:] == alaw_encode(tone(1000, 0.02))


def test_receive_decodes_fills_gaps_and_drops_the_rest() -> None:
    s = _stream()
    frame = ulaw_encode(tone(1000, 0.02))
    assert s.receive(_rtp(65535, frame))
    assert s.receive(_rtp(1, frame))                 # seq 0 lost: 20 ms of silence recorded
    assert not s.receive(_rtp(1, frame))             # duplicate
    assert not s.receive(_rtp(65000, frame))         # late
    assert s.receive(_rtp(2, b"\x00\x0a\x00\xa0", pt=101))   # telephone-event: counted, not audio
    assert not s.receive(_rtp(3, frame, pt=18))      # not negotiated
    assert not s.receive(b"\x80\x00")                # too short
    assert s.receive(_rtp(4, alaw_encode(tone(1000, 0.02)), pt=8))   # gap of 1 (seq 3 dropped)
    assert s.lost == 2 and s.events_received == 1 and s.dropped == 4
    decoded = ulaw_decode(frame)
    assert s.received[:160] == decoded and s.received[160:320] == array("h", [0] * 160)
    assert s.received[320:480] == decoded and len(s.received) == 160 * 5


def test_receive_skips_csrc_extension_and_padding() -> None:
    s = _stream()
    frame = ulaw_encode(tone(1000, 0.02))
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 1, 0, 5, 0, 9) + b"CSRC" + \
        struct.pack("!HH", 0xBEDE, 1) + b"EXT!"
    assert s.receive(header + frame + b"\x00\x00\x03")
    assert s.received == ulaw_decode(frame)


# -- SIP agent, sans I/O ------------------------------------------------------------------------

A_ADDR, B_ADDR = ("127.0.0.1", 5001), ("127.0.0.1", 5002)


def _pair(**b_kw) -> tuple[PhoneAgent, PhoneAgent]:
    counter = iter(range(10**6))
    rng = lambda n: next(counter).to_bytes(n, "big")  # noqa: E731 - deterministic ids
    a = PhoneAgent("1001", host="127.0.0.1", sip_port=5001, rtp_port=7001, rng=rng)
    b = PhoneAgent("1002", host="127.0.0.1", sip_port=5002, rtp_port=7002, rng=rng, **b_kw)
    return a, b


def _shuttle(agents: dict, now: float, log: list | None = None) -> None:
    """Deliver datagrams between in-memory agents until quiet."""
    moved = True
    while moved:
        moved = False
        for addr, agent in agents.items():
            for data, dest in agent.datagrams_to_send():
                moved = True
                if log is not None:
                    log.append(data)
                if dest in agents:
                    agents[dest].receive_datagram(data, addr, now)


def _events(agent: PhoneAgent) -> list:
    out = []
    while (e := agent.next_event()) is not None:
        out.append(e)
    return out


def test_agents_call_and_hang_up_in_memory() -> None:
    a, b = _pair()
    agents = {A_ADDR: a, B_ADDR: b}
    log: list[bytes] = []
    call_id = a.dial("sip:1002@127.0.0.1:5002", now=0.0)
    _shuttle(agents, 0.0, log)
    ea, eb = _events(a), _events(b)
    assert [type(e) for e in ea] == [Ringing, CallEstablished]
    assert [type(e) for e in eb] == [IncomingCall, CallEstablished]
    assert ea[1].remote_media == ("127.0.0.1", 7002) and eb[1].remote_media == ("127.0.0.1", 7001)
    assert ea[1].send_codec == eb[1].send_codec == "PCMU"
    methods = [parse_message(d).method if isinstance(parse_message(d), SipRequest) else parse_message(d).status
               for d in log]
    assert methods == ["INVITE", 180, 200, "ACK"]
    invite = parse_message(log[0])
    assert b"m=audio 7001 RTP/AVP 0 8 101" in invite.body and b"a=rtpmap:101 telephone-event/8000" in invite.body
    # No 200 retransmission once the ACK arrived; nothing left to send later.
    b.handle_timer(5.0)
    assert b.datagrams_to_send() == []
    b.hangup(now=10.0)
    _shuttle(agents, 10.0)
    assert _events(b) == [CallClosed(call_id, "local BYE", False, True)]
    assert _events(a) == [CallClosed(call_id, "remote BYE", True, True)]
    assert a.call is None and b.call is None


def test_answerer_codec_choice_and_200_retransmission_until_ack() -> None:
    a, b = _pair(codecs=("PCMA",))
    a.dial("sip:1002@127.0.0.1:5002", now=0.0)
    invite = a.datagrams_to_send()
    for data, _ in invite:
        b.receive_datagram(data, A_ADDR, 0.0)
    sent = [d for d, _ in b.datagrams_to_send()]
    assert [parse_message(d).status for d in sent] == [180, 200]
    b.handle_timer(0.5)                              # T1: the 200 again (RFC 3261 13.3.1.4)
    assert [parse_message(d).status for d, _ in b.datagrams_to_send()] == [200]
    for data in sent:
        a.receive_datagram(data, B_ADDR, 0.6)
    established = [e for e in _events(a) if isinstance(e, CallEstablished)][0]
    assert (established.send_pt, established.send_codec) == (8, "PCMA")
    for data, _ in a.datagrams_to_send():            # the ACK
        b.receive_datagram(data, A_ADDR, 0.7)
    b.handle_timer(10.0)
    assert b.datagrams_to_send() == []


def test_busy_cancel_and_no_common_codec() -> None:
    a, b = _pair(auto_answer=False)
    c = PhoneAgent("1003", host="127.0.0.1", sip_port=5003, rtp_port=7003)
    agents = {A_ADDR: a, B_ADDR: b, ("127.0.0.1", 5003): c}
    call_id = a.dial("sip:1002@127.0.0.1:5002", now=0.0)
    _shuttle(agents, 0.0)
    assert [type(e) for e in _events(b)] == [IncomingCall]
    c.dial("sip:1002@127.0.0.1:5002", now=0.1)
    _shuttle(agents, 0.1)
    assert [e.reason for e in _events(c) if isinstance(e, CallClosed)] == ["486 Busy Here"]
    a.hangup(now=1.0)                                # not answered yet: CANCEL, then 487
    _shuttle(agents, 1.0)
    assert _events(b) == [CallClosed(call_id, "remote CANCEL", True, False)]
    assert [e.reason for e in _events(a) if isinstance(e, CallClosed)] == ["487 Request Terminated"]
    ulaw_only = PhoneAgent("1004", host="127.0.0.1", sip_port=5004, rtp_port=7004, codecs=("PCMU",))
    alaw_only = PhoneAgent("1005", host="127.0.0.1", sip_port=5005, rtp_port=7005, codecs=("PCMA",))
    agents = {("127.0.0.1", 5004): ulaw_only, ("127.0.0.1", 5005): alaw_only}
    ulaw_only.dial("sip:1005@127.0.0.1:5005", now=0.0)
    _shuttle(agents, 0.0)
    assert [e.reason for e in _events(ulaw_only) if isinstance(e, CallClosed)] == ["488 Not Acceptable Here"]


def test_register_with_the_line_side() -> None:
    phone = PhoneAgent("1001", host="127.0.0.1", sip_port=5001, rtp_port=7001, line=("127.0.0.1", 5060),
                       register_expires=600)
    phone.register(now=0.0)
    [(data, dest)] = phone.datagrams_to_send()
    request = parse_message(data)
    assert dest == ("127.0.0.1", 5060) and request.method == "REGISTER"
    assert str(request.uri) == "sip:127.0.0.1:5060" and str(request.to.uri) == "sip:1001@127.0.0.1:5060"
    assert str(request.contacts[0].uri) == "sip:1001@127.0.0.1:5001" and request.expires == 600
    ok = make_response(request, 200, to_tag="r", headers=[("Contact", "<sip:1001@127.0.0.1:5001>;expires=120")])
    phone.receive_datagram(bytes(ok), dest, 0.1)
    assert _events(phone) == [Registered(120)] and phone.registered
    phone.handle_timer(5.1)                          # Timer K ends the REGISTER transaction
    assert phone.get_timer() == pytest.approx(60.1)   # refresh at half the granted time
    phone.handle_timer(60.1)
    [(data, _)] = phone.datagrams_to_send()
    again = parse_message(data)
    assert again.call_id == request.call_id and again.cseq.seq == request.cseq.seq + 1
    phone.receive_datagram(bytes(make_response(again, 403, to_tag="r")), dest, 60.2)
    assert _events(phone) == [RegisterFailed(403, "403 Forbidden")] and not phone.registered
    # Dialing a number goes to the line side, To = sip:NUMBER@line.
    phone.dial("1002", now=61.0)
    [(data, dest)] = phone.datagrams_to_send()
    assert dest == ("127.0.0.1", 5060) and str(parse_message(data).uri) == "sip:1002@127.0.0.1:5060"


# -- real sockets -------------------------------------------------------------------------------

@pytest.mark.parametrize("hangup_by", ["caller", "callee"])
async def test_two_softphones_exchange_tones(hangup_by: str) -> None:
    async with Softphone(SoftphoneConfig(number="1001", tone_hz=1000)) as a, \
            Softphone(SoftphoneConfig(number="1002", tone_hz=1500)) as b:
        await a.dial(b.uri, timeout=5)
        await b.wait_established(2)
        await asyncio.sleep(2.0)
        hanger, other = (a, b) if hangup_by == "caller" else (b, a)
        closed = await hanger.hangup(2)
        assert closed.reason == "local BYE" and closed.established
        other_closed = await other.wait_closed(2)
        assert other_closed.by_remote and other_closed.call_id == closed.call_id
        assert not a.in_call and not b.in_call
    at_a, at_b = ToneCheck(1500).check(a.received), ToneCheck(1000).check(b.received)
    assert at_a, str(at_a)
    assert at_b, str(at_b)
    assert a.media.lost == 0 and b.media.lost == 0
    assert 90 <= a.media.packets_sent <= 115       # 2 s of 20 ms packets, plus set-up/tear-down


async def test_pcma_call_and_recording_file(tmp_path) -> None:
    async with Softphone(SoftphoneConfig(number="1001", tone_hz=1000, codecs=("PCMA",))) as a, \
            Softphone(SoftphoneConfig(number="1002", tone_hz=697)) as b:
        established = await a.dial(b.uri, timeout=5)
        assert established.send_codec == "PCMA"
        await asyncio.sleep(1.5)
    # close() hung up; both saw the call end.
    assert isinstance(a.events[-1], CallClosed) and isinstance(b.events[-1], CallClosed)
    a.save_recording(tmp_path / "a.wav")
    samples, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and ToneCheck(697).check(samples)


async def test_dial_failure_raises() -> None:
    async with Softphone(SoftphoneConfig(number="1001")) as a, \
            Softphone(SoftphoneConfig(number="1002", codecs=("PCMA",))) as b:
        a.agent.codecs = ("PCMU",)   # offer PCMU only: b refuses with 488
        with pytest.raises(CallFailed, match="488"):
            await a.dial(b.uri, timeout=5)


def test_cli_call(tmp_path) -> None:
    port = free_port()
    callee = subprocess.Popen(
        [sys.executable, "-m", "ctad.softphone", "--listen", f"127.0.0.1:{port}", "--number", "2",
         "--tone", "1500", "--record", str(tmp_path / "b.wav"), "--duration", "10", "--timeout", "10",
         "--check", "1000"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(callee.stdout.readline())
        assert ready["uri"] == f"sip:2@127.0.0.1:{port}"
        caller = subprocess.run(
            [sys.executable, "-m", "ctad.softphone", "--number", "1", "--dial", ready["uri"], "--tone", "1000",
             "--duration", "2", "--record", str(tmp_path / "a.wav"), "--check", "1500"],
            cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert caller.returncode == 0, caller.stdout + caller.stderr
        report = json.loads(caller.stdout.splitlines()[-1])
        assert report["closed"] == "local BYE" and report["check"].startswith("tone 1500 Hz: PASS")
        out, _ = callee.communicate(timeout=10)
        assert callee.returncode == 0, out
        assert json.loads(out.splitlines()[-1])["closed"] == "remote BYE"
    finally:
        if callee.poll() is None:
            callee.kill()
            callee.wait()
    assert ToneCheck(1000).check_wav(tmp_path / "b.wav") and ToneCheck(1500).check_wav(tmp_path / "a.wav")
