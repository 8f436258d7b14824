"""The seed's own media and ESP modes through real daemons: sc1 hands out 3DES_CBC_SEED media
(the whole RTP packet 3DES-CBC encrypted, IV 0, a key per direction) and 3DES-CBC/HMAC-SHA-1-96
for the CTA-to-CTA ESP SA pair; the built-in softphones' tones still pass both ways, both ctad
log the legacy profile with packets encrypted and decrypted, and the key logs show both CTAs
keyed for the seed's suites."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from common.audio import ToneCheck
from ctad.softphone import Softphone, SoftphoneConfig
from tests.peers.daemons import Daemons

pytestmark = pytest.mark.interop

TONE_A, TONE_B = 1000.0, 1500.0


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    d = Daemons.create(tmp_path_factory.mktemp("kerbtel") / "realm")
    try:
        ctas = [d.cta(n) for n in ("cta1", "cta2")]
        for sc in d.manifest["scs"]:  # whichever SC is the source hands out the key
            config = Path(sc["config"])
            text = config.read_text()
            new = re.sub(r'(?m)^media_profile = "[^"]*"', 'media_profile = "3DES_CBC_SEED"', text)
            new = re.sub(r'(?m)^esp_suite = "[^"]*"', 'esp_suite = "3DES-CBC/HMAC-SHA-1-96"', new)
            assert new.count("3DES") == 2, f"no [calls] media_profile/esp_suite in {config}"
            config.write_text(new)
            d.start_scd(sc["name"])
        d.start_ctas_with_lines(ctas)
        yield d, ctas
    finally:
        d.close()


async def _call(ctas) -> tuple[Softphone, Softphone]:
    a_cfg = SoftphoneConfig(number=ctas[0]["numbers"][0], line=_hostport(ctas[0]["line"]), tone_hz=TONE_A,
                            register=True)
    b_cfg = SoftphoneConfig(number=ctas[1]["numbers"][0], line=_hostport(ctas[1]["line"]), tone_hz=TONE_B,
                            register=True)
    async with Softphone(a_cfg) as a, Softphone(b_cfg) as b:
        await a.dial(b_cfg.number, timeout=15)
        await b.wait_established(timeout=5)
        await asyncio.sleep(2.0)
        await a.hangup()
        other = await b.wait_closed(timeout=10)
        assert other.reason == "remote BYE"
    return a, b


def test_legacy_3des_media_and_esp_carry_the_call(legacy):
    d, ctas = legacy
    a, b = asyncio.run(_call(ctas))
    at_b, at_a = ToneCheck(TONE_A).check(b.received), ToneCheck(TONE_B).check(a.received)
    assert at_b.ok and at_a.ok, (at_b, at_a)
    for c in ctas:
        stopped = d.wait_log(f"ctad:{c['name']}", lambda r: r.get("event") == "media stopped")
        assert stopped["profile"] == "3DES_CBC_SEED", stopped
        assert stopped["encrypted_packets"] > 50 and stopped["decrypted_packets"] > 50, stopped
    # both CTAs were keyed for the seed's suites (key logs), and the hang-up reached B
    from common.keylog import read_key_log

    calls = [r for c in ctas for r in read_key_log(c["key_log"]) if r.get("type") == "call_keys"]
    assert {r["esp_suite"] for r in calls} == {"3DES-CBC/HMAC-SHA-1-96"} and {r["media_profile"] for r in calls} \
        == {"3DES_CBC_SEED"}
    ended = d.wait_log("ctad:cta2", lambda r: r.get("event") == "call ended")
    assert ended["reason"] == "hung up by the other party" and ended["established"], ended
