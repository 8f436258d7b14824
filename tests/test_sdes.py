"""SDES-SRTP on the line side (ctad/sdes.py, MediaRelay.set_line_srtp, MediaSession's SDP): the
softphone's SRTP is libsrtp's (pylibsrtp), an implementation that is not ours."""

from __future__ import annotations

import base64

import pytest

from common.sip.sdp import SessionDescription
from common.srtp import MediaKeys, profile_for
from ctad.media import LINE_RTP, NETWORK, MediaSession
from ctad.sdes import LineSdes, SdesError, parse_crypto
from tests.conftest import require_module
from tests.test_media import NET_A, NET_B, PHONE_A, PHONE_B, pair, rtp, run_on

KEY30 = bytes(range(30))
INLINE = base64.b64encode(KEY30).decode()


def phone_sdp(proto: str = "RTP/SAVP", crypto: list[str] | None = None, port: int = 40000) -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {port} {proto} 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"]
    lines += [f"a=crypto:{c}" for c in (crypto or [])]
    return ("\r\n".join(lines) + "\r\n").encode()


# --- a=crypto ---------------------------------------------------------------------------------


def test_parse_crypto_takes_the_inline_key_and_ignores_a_lifetime():
    c = parse_crypto(f"3 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20")
    assert (c.tag, c.suite, c.keys.master_key, c.keys.master_salt) == (3, "AES_CM_128_HMAC_SHA1_80", KEY30[:16], KEY30[16:])
    assert INLINE not in repr(c)


@pytest.mark.parametrize("value, reason", [
    ("1 AES_CM_128_HMAC_SHA1_80", "needs tag, suite and key-params"),
    (f"x AES_CM_128_HMAC_SHA1_80 inline:{INLINE}", "is not a number"),
    (f"1 F8_128_HMAC_SHA1_80 inline:{INLINE}", "is not supported"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE} UNENCRYPTED_SRTP", "session parameters"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20|1:4", "MKI"),
    (f"1 AES_CM_128_HMAC_SHA1_80 uri:{INLINE}", "is not inline"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", "not base64"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(bytes(20)).decode()}", "needs 30"),
])
def test_parse_crypto_refuses_with_the_reason(value, reason):
    with pytest.raises(SdesError, match=reason):
        parse_crypto(value)


def test_offer_policies():
    crypto = [f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"]
    assert LineSdes.from_phone_offer(phone_sdp("RTP/AVP")) is None  # plain stays plain
    best_effort = LineSdes.from_phone_offer(phone_sdp("RTP/AVP", crypto))
    assert best_effort.proto == "RTP/AVP" and best_effort.phone_keys.master_key == KEY30[:16]
    savp = LineSdes.from_phone_offer(phone_sdp("RTP/SAVP", ["9 F8_128_HMAC_SHA1_80 inline:x", crypto[0]]))
    assert savp.tag == 1 and savp.our_keys.master_key != KEY30[:16]  # the first usable line, a key of ours
    assert savp.attribute().startswith("1 AES_CM_128_HMAC_SHA1_80 inline:")
    with pytest.raises(SdesError, match="RTP/SAVP offer refused: no usable a=crypto .*not supported"):
        LineSdes.from_phone_offer(phone_sdp("RTP/SAVP", ["9 F8_128_HMAC_SHA1_80 inline:x"]))
    assert LineSdes.from_phone_offer(phone_sdp("RTP/AVP", crypto), "off") is None
    with pytest.raises(SdesError, match="off on this line side"):
        LineSdes.from_phone_offer(phone_sdp("RTP/SAVP", crypto), "off")
    ours = LineSdes.our_offer()
    with pytest.raises(SdesError, match="no a=crypto for tag 1"):
        ours.accept_answer(phone_sdp("RTP/SAVP", [f"2 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"]))
    ours.accept_answer(phone_sdp("RTP/SAVP", crypto))
    assert ours.phone_keys.master_salt == KEY30[16:]


# --- the relay's line leg against libsrtp -----------------------------------------------------------


def _libsrtp(keys: MediaKeys, outbound: bool):
    pylibsrtp = require_module("pylibsrtp")
    policy = pylibsrtp.Policy(key=keys.libsrtp_key(),
                              ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND,
                              srtp_profile=getattr(pylibsrtp.Policy, profile_for(keys.profile).libsrtp_name))
    return pylibsrtp.Session(policy)


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"])
def test_a_phone_speaking_srtp_through_two_ctas_to_a_plain_phone(suite):
    a, b = pair()
    size = profile_for(suite).key_len + profile_for(suite).salt_len
    phone_key = bytes(range(100, 100 + size))
    sdes = LineSdes.from_phone_offer(phone_sdp("RTP/SAVP", [f"7 {suite} inline:{base64.b64encode(phone_key).decode()}"]))
    a.set_line_srtp(sdes.phone_keys, sdes.our_keys)
    phone_out, phone_in = _libsrtp(sdes.phone_keys, True), _libsrtp(parse_crypto(sdes.attribute()).keys, False)
    for seq in range(1, 6):
        plain = rtp(seq)
        where, wire, to = a.from_line(phone_out.protect(plain), PHONE_A, 0.0)
        assert (where, to) == (NETWORK, NET_B) and plain[12:] not in wire
        assert b.from_network(wire, NET_A, 0.0) == (LINE_RTP, plain, PHONE_B)  # B's phone: plain RTP
        back = rtp(seq, ssrc=0xB0B0B0B0)
        _, wire, _ = b.from_line(back, PHONE_B, 0.0)
        where, to_phone, dest = a.from_network(wire, NET_B, 0.0)
        assert (where, dest) == (LINE_RTP, PHONE_A) and to_phone != back
        assert phone_in.unprotect(to_phone) == back  # libsrtp decrypts what A's CTA sent its phone
    assert a.stats()["line_srtp"] == suite
    # plain RTP from the phone is refused now, and counted
    assert a.from_line(rtp(99), PHONE_A, 0.0) is None
    assert a.stats()["drops"] == {"line_auth": 1}
    # a replay of the phone's SRTP too
    replay = phone_out.protect(rtp(50))
    a.from_line(replay, PHONE_A, 0.0)
    assert a.from_line(replay, PHONE_A, 0.0) is None and a.stats()["drops"]["line_replay"] == 1


# --- the session's SDP ---------------------------------------------------------------------------


def test_session_answers_a_phones_sdes_offer_and_offers_sdes_when_configured():
    remote = phone_sdp("RTP/SAVP", port=50000)  # the other CTA's SDP (no crypto: the SCs key it)

    async def main():
        a = MediaSession(pair()[0])
        b = MediaSession(pair()[1], line_srtp="sdes")
        plain = MediaSession(pair()[0], line_srtp="off")
        for s in (a, b, plain):
            await s.start()
        try:
            # A: the phone offers SDES; the network leg sees no crypto; the phone's answer has ours
            offer = phone_sdp("RTP/AVP", [f"4 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}"])
            to_network = SessionDescription.parse(a.line_to_network_sdp(offer))
            assert to_network.audio().crypto == [] and to_network.audio().proto == "RTP/SAVP"
            answer = SessionDescription.parse(a.network_to_line_sdp(remote)).audio()
            assert answer.proto == "RTP/AVP" and len(answer.crypto) == 1
            assert answer.crypto[0].startswith("4 AES_CM_128_HMAC_SHA1_32 inline:")
            assert a.relay.line_srtp == "AES_CM_128_HMAC_SHA1_32"
            # B (srtp = "sdes"): our offer to the phone carries a key; its answer must too
            to_phone = SessionDescription.parse(b.network_to_line_sdp(remote)).audio()
            assert to_phone.proto == "RTP/SAVP" and to_phone.crypto[0].startswith("1 AES_CM_128_HMAC_SHA1_80 inline:")
            with pytest.raises(SdesError):
                b.line_to_network_sdp(phone_sdp("RTP/SAVP"))
            assert b.relay.line_srtp is None
            b.line_to_network_sdp(phone_sdp("RTP/SAVP", [f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"]))
            assert b.relay.line_srtp == "AES_CM_128_HMAC_SHA1_80"
            # off: an RTP/SAVP offer is refused (488 at the line side)
            with pytest.raises(ValueError, match="off on this line side"):
                plain.line_to_network_sdp(phone_sdp("RTP/SAVP", [f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"]))
        finally:
            for s in (a, b, plain):
                await s.stop()

    run_on("asyncio", main())
