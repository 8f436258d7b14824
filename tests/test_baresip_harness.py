"""The baresip harness (ctad/baresip.py) and the built-in softphone against baresip 1.0.0.

Unit tests of the config and the ctrl_tcp framing run anywhere. The interop tests need baresip
and sox (require_peer: skipped locally when missing, failed under CI=true):
(a) two baresip instances call each other directly, proving the harness and the tone check;
(b) the built-in softphone calls baresip and baresip calls it, tones checked both ways, each
    side hanging up in turn. Calls last ~2.5 s; the tone files last 60 s (a call ends when the
    source file ends).
"""

from __future__ import annotations

import asyncio
from array import array

import pytest

from common.audio import ToneCheck
from conftest import require_peer
from ctad.baresip import Baresip, BaresipConfig, BaresipError, NetstringDecoder, netstring
from ctad.softphone import Softphone, SoftphoneConfig
from tests.peers.baresip import baresip_phone, wait_recording

CALL_SECONDS = 2.5


# -- unit ----------------------------------------------------------------------------------

def test_netstring_framing() -> None:
    assert netstring(b'{"command":"quit"}') == b'18:{"command":"quit"},'
    d = NetstringDecoder()
    stream = netstring(b"one") + netstring(b"") + netstring(b'{"x":1}')
    out = []
    for i in range(len(stream)):          # byte by byte
        out += d.feed(stream[i:i + 1])
    assert out == [b"one", b"", b'{"x":1}']
    with pytest.raises(BaresipError, match="bad length"):
        NetstringDecoder().feed(b"x1:a,")
    with pytest.raises(BaresipError, match="missing ','"):
        NetstringDecoder().feed(b"1:ab")


def test_config_follows_the_recipe(tmp_path) -> None:
    b = Baresip(BaresipConfig(directory=tmp_path / "b", user="1001", tone_seconds=1.0, sip_port=5999,
                              ctrl_port=4999, rtp_ports=(20000, 20099)))
    b.write_config()
    config = (tmp_path / "b" / "config").read_text()
    for line in ("sip_listen\t127.0.0.1:5999", "net_interface\t127.0.0.1", "rtp_ports\t20000-20099",
                 "module\tg711.so", "module\taufile.so", "module\tsndfile.so", "module\tctrl_tcp.so",
                 f"snd_path\t{tmp_path / 'b' / 'rec'}", "ctrl_tcp_listen\t127.0.0.1:4999",
                 f"audio_source\taufile,{tmp_path / 'b' / 'tone-1000.wav'}"):
        assert line in config.splitlines()
    assert "alsa" not in config          # a null ALSA device spins a core
    assert (tmp_path / "b" / "accounts").read_text() == \
        "<sip:1001@127.0.0.1:5999>;regint=0;answermode=auto;audio_codecs=pcmu\n"
    assert b.aor == "sip:1001@127.0.0.1:5999"


def test_account_line_variants(tmp_path) -> None:
    reg = Baresip(BaresipConfig(directory=tmp_path, user="1001", line="127.0.0.1:5062", register=True,
                                codecs="pcmu,pcma", sip_port=5999))
    # Registering: the AOR's domain is the line side, so requests go there without a Route.
    assert reg.account_line() == '<sip:1001@127.0.0.1:5062>;regint=60;answermode=auto;audio_codecs=pcmu,pcma'
    proxy = Baresip(BaresipConfig(directory=tmp_path, user="1001", line="127.0.0.1:5062", outbound=True,
                                  sip_port=5999))
    assert proxy.account_line() == ('<sip:1001@127.0.0.1:5999>;regint=0;answermode=auto;'
                                    'audio_codecs=pcmu;outbound="sip:127.0.0.1:5062"')
    with pytest.raises(BaresipError, match="needs line"):
        Baresip(BaresipConfig(directory=tmp_path, register=True)).account_line()


# -- interop --------------------------------------------------------------------------------

@pytest.mark.interop
async def test_two_baresips_call_each_other(tmp_path) -> None:
    require_peer("baresip", "sox")
    async with baresip_phone(tmp_path / "a", user="1000", tone_hz=1000) as a, \
            baresip_phone(tmp_path / "b", user="1001", tone_hz=1500) as b:
        await a.dial(f"sip:1001@127.0.0.1:{b.sip_port}")
        await a.wait_event("CALL_ESTABLISHED", 5)
        await b.wait_event("CALL_ESTABLISHED", 5)
        assert "CALL_RINGING" in a.event_types()
        await asyncio.sleep(CALL_SECONDS)
        await b.hangup()
        await a.wait_event("CALL_CLOSED", 5)
        await b.wait_event("CALL_CLOSED", 5)
        at_a, at_b = await wait_recording(a), await wait_recording(b)
    verdict_a = ToneCheck(1500).check_wav(at_a)
    verdict_b = ToneCheck(1000).check_wav(at_b)
    assert verdict_a, str(verdict_a)
    assert verdict_b, str(verdict_b)


async def _softphone_call(tmp_path, *, softphone_dials: bool, softphone_hangs_up: bool,
                          codecs: str = "pcmu") -> None:
    async with baresip_phone(tmp_path / "b", user="1000", tone_hz=1500, codecs=codecs) as b, \
            Softphone(SoftphoneConfig(number="1001", tone_hz=1000)) as ours:
        if softphone_dials:
            established = await ours.dial(b.aor, timeout=5)
        else:
            await b.dial(ours.uri)
            established = await ours.wait_established(5)
        await b.wait_event("CALL_ESTABLISHED", 5)
        assert established.send_codec == codecs.split(",")[0].upper()
        await asyncio.sleep(CALL_SECONDS)
        if softphone_hangs_up:
            closed = await ours.hangup(5)
            assert not closed.by_remote
        else:
            await b.hangup()
            closed = await ours.wait_closed(5)
            assert closed.by_remote and closed.reason == "remote BYE"
        await b.wait_event("CALL_CLOSED", 5)
        assert not ours.in_call
        recording = await wait_recording(b)
        received: array = ours.received
        assert ours.media is not None and ours.media.packets_received > 0.8 * CALL_SECONDS * 50
    ours_verdict = ToneCheck(1500).check(received)
    theirs_verdict = ToneCheck(1000).check_wav(recording)
    assert ours_verdict, f"baresip -> softphone: {ours_verdict}"
    assert theirs_verdict, f"softphone -> baresip: {theirs_verdict}"


@pytest.mark.interop
@pytest.mark.parametrize("softphone_hangs_up", [True, False], ids=["softphone-hangs-up", "baresip-hangs-up"])
async def test_softphone_calls_baresip(tmp_path, softphone_hangs_up: bool) -> None:
    require_peer("baresip", "sox")
    await _softphone_call(tmp_path, softphone_dials=True, softphone_hangs_up=softphone_hangs_up)


@pytest.mark.interop
@pytest.mark.parametrize("softphone_hangs_up", [True, False], ids=["softphone-hangs-up", "baresip-hangs-up"])
async def test_baresip_calls_softphone(tmp_path, softphone_hangs_up: bool) -> None:
    require_peer("baresip", "sox")
    await _softphone_call(tmp_path, softphone_dials=False, softphone_hangs_up=softphone_hangs_up)


@pytest.mark.interop
async def test_pcma_with_baresip(tmp_path) -> None:
    """baresip offers/accepts only PCMA: the softphone sends and decodes A-law."""
    require_peer("baresip", "sox")
    await _softphone_call(tmp_path, softphone_dials=True, softphone_hangs_up=True, codecs="pcma")
