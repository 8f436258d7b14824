"""Calls end to end through real daemons: kdcd, the SC(s) and two ctad from `kerbtel init`, with
softphones on the two line sides (ctad/line.py): the built-in softphone (ctad.softphone), then
baresip. A dials B's number: B rings and answers, a 1000 Hz tone from A reaches B and a 1500 Hz
tone from B reaches A (common.audio.ToneCheck), and hanging up at either side ends both legs.

The route is whatever the deployment says (`ctas[].sc`): with both CTAs on sc1 (the deployment
today) the call is a same-SC ("local") call; with the CTAs on two SCs the same test crosses the
SC-to-SC link. What this needs of scd: its `[calls]` wiring (scd/server.py attaching
`scd.calls.CallEngine`); without it the tests are skipped with that reason.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from common.audio import ToneCheck
from ctad.softphone import Softphone, SoftphoneConfig
from tests.conftest import require_peer
from tests.peers.daemons import daemons_fixture

pytestmark = pytest.mark.interop

TONE_A, TONE_B = 1000.0, 1500.0
TALK = 2.5  # seconds of audio each way

daemons = daemons_fixture()



def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


@pytest.fixture(scope="module")
def running(daemons):
    ctas = [daemons.cta(n) for n in ("cta1", "cta2")]
    assert "[calls]" in Path(daemons.sc(ctas[0]["sc"])["config"]).read_text(), "kerbtel init wrote no [calls] for scd"
    for sc in sorted({c["sc"] for c in ctas} | {s["name"] for s in daemons.manifest["scs"]}):
        daemons.start_scd(sc)
    daemons.start_ctas_with_lines(ctas)
    return daemons, ctas


def _check_tones(a_received, b_received) -> None:
    at_b = ToneCheck(TONE_A).check(b_received)
    at_a = ToneCheck(TONE_B).check(a_received)
    assert at_b.ok, f"A's {TONE_A:g} Hz tone at B: {at_b}"
    assert at_a.ok, f"B's {TONE_B:g} Hz tone at A: {at_a}"


async def _builtin_call(ctas, hang_up_at: str) -> tuple[Softphone, Softphone, float]:
    a_cfg = SoftphoneConfig(number=ctas[0]["numbers"][0], line=_hostport(ctas[0]["line"]), tone_hz=TONE_A,
                            register=True)
    b_cfg = SoftphoneConfig(number=ctas[1]["numbers"][0], line=_hostport(ctas[1]["line"]), tone_hz=TONE_B,
                            register=True)
    async with Softphone(a_cfg) as a, Softphone(b_cfg) as b:
        t0 = time.monotonic()
        await a.dial(b_cfg.number, timeout=15)
        setup = time.monotonic() - t0
        await b.wait_established(timeout=5)
        await asyncio.sleep(TALK)
        caller, callee = (a, b) if hang_up_at == "A" else (b, a)
        closed = await caller.hangup()
        assert closed.reason == "local BYE"
        other = await callee.wait_closed(timeout=10)
        assert other.reason == "remote BYE" and other.by_remote
    return a, b, setup


def _call_log(d, cta: str) -> list[dict]:
    return [r for r in d.records(f"ctad:{cta}") if r.get("event") == "call ended"]


def test_builtin_softphones_call_tones_both_ways_hangup_by_caller(running):
    d, ctas = running
    a, b, setup = asyncio.run(_builtin_call(ctas, "A"))
    print(f"call setup {setup * 1000:.0f} ms; A received {len(a.received) / 8000:.1f} s, "
          f"B received {len(b.received) / 8000:.1f} s")
    _check_tones(a.received, b.received)
    for name in ("cta1", "cta2"):
        d.wait_log(f"ctad:{name}", lambda r: r.get("event") == "call ended" and r.get("established"))
        d.wait_log(f"ctad:{name}", lambda r: r.get("event") == "media stopped"
                   and r.get("encrypted_packets", 0) > 50 and r.get("decrypted_packets", 0) > 50)


def test_builtin_softphones_hangup_by_callee(running):
    d, ctas = running
    before = [len(_call_log(d, c)) for c in ("cta1", "cta2")]
    a, b, _ = asyncio.run(_builtin_call(ctas, "B"))
    _check_tones(a.received, b.received)
    deadline = time.monotonic() + 5
    while [len(_call_log(d, c)) for c in ("cta1", "cta2")] != [n + 1 for n in before]:
        assert time.monotonic() < deadline, "a CTA did not log the end of the call"
        time.sleep(0.05)


# --- baresip ------------------------------------------------------------------------------------


async def _baresip_call(d, tmp: Path, ctas, hang_up_at: str, outbound: bool = False, mediaenc: str | None = None):
    from ctad.baresip import Baresip, BaresipConfig

    a_num, b_num = ctas[0]["numbers"][0], ctas[1]["numbers"][0]
    # outbound: A does not register and sends via the line side as its outbound proxy (a Route
    # header the line side strips)
    a = Baresip(BaresipConfig(directory=tmp / "a", user=a_num, tone_hz=TONE_A, line=ctas[0]["line"],
                              register=not outbound, outbound=outbound, mediaenc=mediaenc))
    b = Baresip(BaresipConfig(directory=tmp / "b", user=b_num, tone_hz=TONE_B, line=ctas[1]["line"], register=True))
    try:
        for phone in (a, b):
            phone.start()
            await phone.connect()
        # baresip registers before ctrl_tcp is connected (REGISTER_OK may be gone by then):
        # wait for the line side's record of the binding instead.
        for phone, cta in ((a, ctas[0]), (b, ctas[1]))[1 if outbound else 0:]:
            await asyncio.to_thread(
                d.wait_log, f"ctad:{cta['name']}",
                lambda r, port=phone.sip_port: r.get("event") == "phone registered"
                and f"@127.0.0.1:{port}" in r.get("contact", "") and r.get("expires", 0) > 0, 10)
        await a.dial(f"sip:{b_num}@{ctas[0]['line']}")
        await a.wait_event("CALL_ESTABLISHED", timeout=15)
        await b.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(TALK + 0.5)
        caller, callee = (a, b) if hang_up_at == "A" else (b, a)
        await caller.hangup()
        await caller.wait_event("CALL_CLOSED", timeout=10)
        await callee.wait_event("CALL_CLOSED", timeout=10)
    finally:
        await a.aclose()
        await b.aclose()
    return a.recording(), b.recording()


@pytest.mark.parametrize("hang_up_at,outbound", [("A", False), ("B", False), ("A", True)],
                         ids=["hangup-by-A", "hangup-by-B", "A-via-outbound-proxy"])
def test_baresip_on_both_line_sides(running, tmp_path, hang_up_at, outbound):
    require_peer("baresip", "sox")
    d, ctas = running
    at_a, at_b = asyncio.run(_baresip_call(d, tmp_path, ctas, hang_up_at, outbound))
    v_b = ToneCheck(TONE_A).check_wav(at_b)
    v_a = ToneCheck(TONE_B).check_wav(at_a)
    print(f"baresip: at B {v_b}; at A {v_a}")
    assert v_b.ok, f"A's tone at B: {v_b}"
    assert v_a.ok, f"B's tone at A: {v_a}"


@pytest.mark.parametrize("mediaenc", ["srtp-mand", "srtp"])
def test_baresip_with_sdes_srtp_on_the_line_side(running, tmp_path, mediaenc):
    """Phone A speaks SDES-SRTP to cta1 (RTP/SAVP, or RTP/AVP with best-effort a=crypto); B stays
    plain: the tones still pass both ways and cta1 logs the line leg's SRTP suite."""
    require_peer("baresip", "sox")
    d, ctas = running
    before = len([r for r in d.records("ctad:cta1") if r.get("event") == "media stopped"])
    at_a, at_b = asyncio.run(_baresip_call(d, tmp_path, ctas, "A", mediaenc=mediaenc))
    v_b, v_a = ToneCheck(TONE_A).check_wav(at_b), ToneCheck(TONE_B).check_wav(at_a)
    assert v_b.ok and v_a.ok, (v_b, v_a)
    stopped = d.wait_log("ctad:cta1", lambda r: r.get("event") == "media stopped" and r.get("line_srtp")
                         and len([x for x in d.records("ctad:cta1") if x.get("event") == "media stopped"]) > before)
    # keys agree both ways: nothing failed authentication (baresip 1.0 sends one 16-byte RTCP
    # before its SRTCP is up, which the line leg drops as malformed)
    assert stopped["line_srtp"].startswith("AES_") and not stopped["drops"].get("line_auth"), stopped
    assert stopped["encrypted_packets"] > 50 and stopped["decrypted_packets"] > 50, stopped
    plain = d.wait_log("ctad:cta2", lambda r: r.get("event") == "media stopped")
    print(f"baresip mediaenc={mediaenc}: line leg {stopped['line_srtp']} at cta1, plain at cta2 "
          f"({plain.get('line_srtp')}); at B {v_b}; at A {v_a}")
