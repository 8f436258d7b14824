"""common.srtp with our own transform (backend="python"): RFC vectors, ROC, replay, errors, keys.

libsrtp interop is in test_srtp_libsrtp.py.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.srtp import (
    AEAD_AES_128_GCM,
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    PROFILES,
    SessionKeys,
    SrtpAuthError,
    SrtpError,
    SrtpFormatError,
    SrtpReplayError,
    SrtpReuseError,
    SrtpRx,
    SrtpSsrcError,
    SrtpTx,
    _prf,
    _Stream,
    derive_media_keys,
    derive_session_keys,
    estimate_index,
    profile_for,
    sdes_crypto_attribute,
)


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --- RFC 3711 Appendix B.3: key derivation (the AES-CM PRF, kdr = 0) --------------------------

B3_MASTER_KEY = h("E1F97A0D3E018BE0D64FA32C06DE4139")
B3_MASTER_SALT = h("0EC675AD498AFEEBB6960B3AABE6")
B3_CIPHER_KEY = h("C61E7A93744F39EE10734AFE3FF7A087")  # label 0x00
B3_CIPHER_SALT = h("30CBBC08863D8C85D49DB34A9AE1")  # label 0x02
# label 0x01, all 94 octets of the B.3 table (the first 20 are HMAC-SHA1's key)
B3_AUTH_KEY_94 = h(
    """CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
       E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
       6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"""
)


def test_rfc3711_b3_key_derivation() -> None:
    keys = derive_session_keys(AES_CM_128_HMAC_SHA1_80, B3_MASTER_KEY, B3_MASTER_SALT)
    assert keys.rtp_key == B3_CIPHER_KEY
    assert keys.rtp_salt == B3_CIPHER_SALT
    assert keys.rtp_auth == B3_AUTH_KEY_94[:20]
    assert _prf(B3_MASTER_KEY, B3_MASTER_SALT, 1, 94) == B3_AUTH_KEY_94
    # SRTCP labels 3-5 give different keys
    assert len({keys.rtp_key, keys.rtcp_key}) == 2 and keys.rtcp_salt != keys.rtp_salt
    assert repr(keys) == "SessionKeys(...)"


# --- RFC 3711 Appendix B.2: AES-CM keystream ------------------------------------------------

B2_SESSION_KEY = h("2B7E151628AED2A6ABF7158809CF4F3C")
B2_SESSION_SALT = h("F0F1F2F3F4F5F6F7F8F9FAFBFCFD")  # the RFC shows it shifted: ...FCFD0000
B2_KEYSTREAM = h(
    """E03EAD0935C95E80E166B16DD92B4EB4
       D23513162B02D0F72A43A2FE4A5F97AB
       41E95B3BB0A2E8DD477901E4FCA894C0"""
)


def test_rfc3711_b2_keystream_through_protect() -> None:
    # SSRC 0, ROC 0, SEQ 0: the IV is the shifted salt, a zero payload encrypts to the keystream.
    keys = SessionKeys(B2_SESSION_KEY, bytes(20), B2_SESSION_SALT, B2_SESSION_KEY, bytes(20), B2_SESSION_SALT)
    tx = SrtpTx(AES_CM_128_HMAC_SHA1_80, None, None, session_keys=keys, backend="python")
    rtp = bytes([0x80, 0, 0, 0]) + bytes(8) + bytes(48)
    srtp = tx.protect(rtp)
    assert srtp[12:60] == B2_KEYSTREAM
    for n in (1, 15, 17, 47):  # partial blocks take a prefix of the same keystream
        tx2 = SrtpTx(AES_CM_128_HMAC_SHA1_80, None, None, session_keys=keys, backend="python")
        assert tx2.protect(rtp[: 12 + n])[12 : 12 + n] == B2_KEYSTREAM[:n]


# --- RFC 7714 sections 16 and 17: AEAD_AES_128_GCM ------------------------------------------

GCM_KEY = h("000102030405060708090a0b0c0d0e0f")
GCM_SALT = h("517569642070726f2071756f")  # "Quid pro quo"
GCM_KEYS = SessionKeys(GCM_KEY, b"", GCM_SALT, GCM_KEY, b"", GCM_SALT)
# 16.1: RTP packet, SSRC 0x5501a0b2, ROC 0, SEQ 0xf17b; IV 51753c6580c2726f20718414
RFC7714_RTP = h(
    """8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
       69736120 696e2070 61727465 73207472 6573"""
)
# 16.1.1: encrypted and tagged (AEAD_AES_128_GCM)
RFC7714_SRTP = h(
    """8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
       0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439
       0cce"""
)
# 17: RTCP packet, SSRC "Mars", SRTCP index 0x5d4; IV 517524055203726f207170bb
RFC7714_RTCP = h(
    """81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
       deadbeef deadbeef deadbeef deadbeef deadbeef"""
)
# 17.1: encrypted (E = 1) and tagged, then E || index
RFC7714_SRTCP = h(
    """81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
       c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
       45d9eade 800005d4"""
)
# 17.3: tagged only (E = 0)
RFC7714_SRTCP_AUTH_ONLY = h(
    """81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
       deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9 2ae58790
       125f62b3 000005d4"""
)


def gcm(cls, **kw):
    return cls(AEAD_AES_128_GCM, None, None, session_keys=GCM_KEYS, backend="python", **kw)


def test_rfc7714_ivs() -> None:
    t = gcm(SrtpTx)._rtp
    assert t.iv(0x5501A0B2, 0xF17B) == h("51753c6580c2726f20718414")  # 16
    assert t.iv(0x4D617273, 0x5D4) == h("517524055203726f207170bb")  # 17


def test_rfc7714_srtp() -> None:
    assert gcm(SrtpTx).protect(RFC7714_RTP) == RFC7714_SRTP
    rx = gcm(SrtpRx)
    assert rx.unprotect(RFC7714_SRTP) == RFC7714_RTP
    with pytest.raises(SrtpReplayError):
        rx.unprotect(RFC7714_SRTP)


@pytest.mark.parametrize("encrypt, wire", [(True, RFC7714_SRTCP), (False, RFC7714_SRTCP_AUTH_ONLY)])
def test_rfc7714_srtcp(encrypt: bool, wire: bytes) -> None:
    tx = gcm(SrtpTx, encrypt_rtcp=encrypt)
    stream = _Stream(1024)
    stream.rtcp_next = 0x5D4
    tx._streams[0x4D617273] = stream
    assert tx.protect_rtcp(RFC7714_RTCP) == wire
    rx = gcm(SrtpRx)
    assert rx.unprotect_rtcp(wire) == RFC7714_RTCP
    with pytest.raises(SrtpReplayError):
        rx.unprotect_rtcp(wire)


# --- round trips, ROC, replay -----------------------------------------------------------------

KEY = bytes(range(16))


def pair(profile=AES_CM_128_HMAC_SHA1_80, *, encrypt_rtcp: bool = True, **kw):
    salt = bytes(range(50, 50 + profile.salt_len))
    tx = SrtpTx(profile, KEY, salt, backend="python", encrypt_rtcp=encrypt_rtcp)
    return tx, SrtpRx(profile, KEY, salt, backend="python", **kw)


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes = b"\xd5" * 160, ts: int = 0) -> bytes:
    return bytes([0x80, 0, seq >> 8 & 0xFF, seq & 0xFF]) + ts.to_bytes(4, "big") + ssrc.to_bytes(4, "big") + payload


def test_estimate_index_wrap_points() -> None:
    # RFC 3711 Appendix A, both halves of the sequence space
    assert estimate_index(0x0001_FFFE, 0xFFFF) == 0x0001_FFFF
    assert estimate_index(0x0001_FFFE, 0x0000) == 0x0002_0000  # wrap forward: ROC + 1
    assert estimate_index(0x0001_FFFE, 0x7FFD) == 0x0002_7FFD
    assert estimate_index(0x0001_FFFE, 0x7FFE) == 0x0001_7FFE  # s_l - 2^15 == seq: same ROC
    assert estimate_index(0x0002_0001, 0xFFFF) == 0x0001_FFFF  # late packet from before the wrap
    assert estimate_index(0x0002_0001, 0x8001) == 0x0002_8001  # seq - s_l == 2^15: same ROC
    assert estimate_index(0x0002_0001, 0x8002) == 0x0001_8002
    assert estimate_index(0x0000_0001, 0xFFFF) == -1  # before the stream's first index


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=lambda p: p.name)
def test_round_trip_across_the_wrap(profile) -> None:
    tx, rx = pair(profile)
    for i in range(65530, 65545):
        p = rtp(i & 0xFFFF, ts=160 * i & 0xFFFFFFFF)
        s = tx.protect(p)
        assert len(s) == len(p) + profile.tag_len
        assert rx.unprotect(s) == p
    assert tx.roc(0x11223344) == rx.roc(0x11223344) == 1
    rtcp = bytes.fromhex("80c90001") + (0x11223344).to_bytes(4, "big")
    for i in range(3):
        s = tx.protect_rtcp(rtcp)
        assert len(s) == len(rtcp) + 4 + profile.rtcp_tag_len
        assert rx.unprotect_rtcp(s) == rtcp
    assert rx.packets == 15 and rx.rtcp_packets == 3


def test_reordered_across_the_wrap() -> None:
    tx, rx = pair()
    wire = {i: tx.protect(rtp(i & 0xFFFF)) for i in range(65500, 65600)}
    # the first packet fixes the stream's start (ROC 0), then post-wrap ones before late ones
    order = [65500] + list(range(65560, 65600)) + list(range(65501, 65560))
    for i in order:
        assert rx.unprotect(wire[i]) == rtp(i & 0xFFFF)
    assert rx.roc(0x11223344) == 1


def test_replay_window_1024() -> None:
    tx, rx = pair()
    wire = [tx.protect(rtp(i)) for i in range(2000)]
    rx.unprotect(wire[1999])
    rx.unprotect(wire[1999 - 1023])  # oldest index still in the window
    for i in (1999, 1999 - 1023, 1999 - 1024, 0):
        with pytest.raises(SrtpReplayError, match="replay or older than the window"):
            rx.unprotect(wire[i])
    assert rx.replay_failures == 4


def test_window_moves_only_after_the_tag_verifies() -> None:
    tx, rx = pair()
    good = [tx.protect(rtp(i)) for i in range(3)]
    rx.unprotect(good[0])
    ahead = bytearray(tx.protect(rtp(5000)))
    ahead[-1] ^= 1
    with pytest.raises(SrtpAuthError):
        rx.unprotect(bytes(ahead))
    assert rx.unprotect(good[1]) == rtp(1)  # the forged far-ahead index moved nothing
    assert rx.auth_failures == 1


def test_unknown_stream_is_stored_only_after_auth() -> None:
    tx, rx = pair(max_streams=2)
    forged = bytearray(tx.protect(rtp(1, ssrc=99)))
    forged[20] ^= 0x80
    with pytest.raises(SrtpAuthError):
        rx.unprotect(bytes(forged))
    assert rx.roc(99) is None
    rx.unprotect(tx.protect(rtp(1, ssrc=1)))
    rx.unprotect(tx.protect(rtp(2, ssrc=2)))
    with pytest.raises(SrtpSsrcError, match="SSRC 0x00000003 would be stream 3, above the limit 2"):
        rx.unprotect(tx.protect(rtp(3, ssrc=3)))
    assert rx.ssrc_failures == 1


def test_sender_refuses_to_reuse_an_index() -> None:
    tx, _ = pair()
    tx.protect(rtp(10))
    with pytest.raises(SrtpReuseError):
        tx.protect(rtp(10))
    tx.protect(rtp(9))  # out of order but new: allowed (keystream not reused)
    with pytest.raises(SrtpReuseError):
        tx.protect(rtp(10 + 0x8001))  # more than 2^15 ahead of s_l 10 would mean ROC - 1


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=lambda p: p.name)
def test_tampering_anywhere_is_an_auth_error(profile) -> None:
    tx, rx = pair(profile)
    s = tx.protect(rtp(1, payload=b"x" * 30))
    for pos in (1, 4, 8, 12, len(s) - 1):  # PT, timestamp, SSRC (new stream), payload, tag
        bad = bytearray(s)
        bad[pos] ^= 0x01
        with pytest.raises(SrtpAuthError, match="does not verify"):
            rx.unprotect(bytes(bad))
    c = tx.protect_rtcp(bytes.fromhex("80c90001 11223344".replace(" ", "")))
    for pos in (1, 4, 8, len(c) - 1):
        bad = bytearray(c)
        bad[pos] ^= 0x01
        with pytest.raises(SrtpError):
            rx.unprotect_rtcp(bytes(bad))
    assert rx.unprotect(s) == rtp(1, payload=b"x" * 30)


def test_wrong_key_fails_auth() -> None:
    tx, _ = pair()
    rx = SrtpRx(AES_CM_128_HMAC_SHA1_80, bytes(16), bytes(14), backend="python")
    with pytest.raises(SrtpAuthError):
        rx.unprotect(tx.protect(rtp(1)))


def test_srtcp_unencrypted_and_replay() -> None:
    tx, rx = pair(encrypt_rtcp=False)
    rtcp = bytes.fromhex("80c90001") + (0x11223344).to_bytes(4, "big")
    s = tx.protect_rtcp(rtcp)
    assert s.startswith(rtcp) and s[8:12] == bytes(4)  # E = 0, index 0
    assert rx.unprotect_rtcp(s) == rtcp
    with pytest.raises(SrtpReplayError, match="SRTCP index 0"):
        rx.unprotect_rtcp(s)


# --- malformed input: exact errors ----------------------------------------------------------

MALFORMED_SRTP = [
    (b"\x80" * 11, "RTP packet of 11 bytes is shorter than its 12-byte header"),
    (b"\x40" + bytes(30), "RTP version 1 is not 2"),
    (b"\x8f" + bytes(30), "RTP packet of 31 bytes is too short for its 15 CSRCs"),
    (b"\x90" + bytes(13), "RTP header extension header needs 4 bytes at offset 12, 2 left"),
    (b"\x90" + bytes(13) + b"\x00\x09" + bytes(16), "RTP header extension of 9 words does not fit in the 32 bytes"),
    (b"\x80" + bytes(11) + bytes(9), "SRTP packet of 21 bytes has no room for its 10-byte tag after the 12-byte header"),
]


@pytest.mark.parametrize("data, message", MALFORMED_SRTP)
def test_malformed_srtp(data: bytes, message: str) -> None:
    _, rx = pair()
    with pytest.raises(SrtpFormatError) as info:
        rx.unprotect(data)
    assert str(info.value) == message
    assert rx.format_failures == 1


MALFORMED_SRTCP = [
    (bytes.fromhex("80c9000111223344") + bytes(13), "SRTCP packet of 21 bytes is shorter than the 22 it needs"),
    (bytes.fromhex("40c9000111223344") + bytes(14), "RTCP version 1 is not 2"),
    (bytes.fromhex("8060000111223344") + bytes(14), "RTCP packet type 96 is outside 192-223"),
]


@pytest.mark.parametrize("data, message", MALFORMED_SRTCP)
def test_malformed_srtcp(data: bytes, message: str) -> None:
    _, rx = pair()
    with pytest.raises(SrtpFormatError) as info:
        rx.unprotect_rtcp(data)
    assert str(info.value) == message


def test_protect_refuses_malformed_input() -> None:
    tx, _ = pair()
    with pytest.raises(SrtpFormatError, match="RTP version 0 is not 2"):
        tx.protect(bytes(20))
    with pytest.raises(SrtpFormatError, match="RTCP packet of 4 bytes is shorter than the 8"):
        tx.protect_rtcp(bytes.fromhex("80c80000"))


def test_bad_keys_and_names() -> None:
    with pytest.raises(ValueError, match="16-byte master key, not 15"):
        SrtpTx(AES_CM_128_HMAC_SHA1_80, bytes(15), bytes(14), backend="python")
    with pytest.raises(ValueError, match="12-byte master salt, not 14"):
        SrtpRx(AEAD_AES_128_GCM, bytes(16), bytes(14), backend="python")
    with pytest.raises(ValueError, match="no SRTP profile 'NULL'"):
        profile_for("NULL")
    with pytest.raises(ValueError, match="backend 'openssl'"):
        SrtpTx(AES_CM_128_HMAC_SHA1_80, bytes(16), bytes(14), backend="openssl")
    assert profile_for("AES_CM_128_HMAC_SHA1_32") is AES_CM_128_HMAC_SHA1_32


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(list(PROFILES.values())), st.binary(max_size=120), st.booleans())
def test_unprotect_raises_only_srtp_errors(profile, data: bytes, rtcp: bool) -> None:
    _, rx = pair(profile)
    try:
        (rx.unprotect_rtcp if rtcp else rx.unprotect)(data)
    except SrtpError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(PROFILES.values())), st.integers(0, 0xFFFF), st.binary(max_size=64), st.integers(0, 200))
def test_bit_flips_raise_only_srtp_errors(profile, seq: int, payload: bytes, flip: int) -> None:
    tx, rx = pair(profile)
    s = bytearray(tx.protect(rtp(seq, payload=payload)))
    s[flip % len(s)] ^= 1 << (flip % 8)
    with pytest.raises(SrtpError):
        rx.unprotect(bytes(s))


# --- media keys from the sub-key ------------------------------------------------------------

SUBKEY = bytes.fromhex("5ca1ab1e" * 8)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=lambda p: p.name)
def test_media_keys_pair_a_and_b(profile) -> None:
    keys = derive_media_keys(SUBKEY, profile, spi=0x1000)
    a_tx, a_rx = keys.contexts("A", backend="python")
    b_tx, b_rx = keys.contexts("B", backend="python")
    assert b_rx.unprotect(a_tx.protect(rtp(1))) == rtp(1)
    assert a_rx.unprotect(b_tx.protect(rtp(7, ssrc=5))) == rtp(7, ssrc=5)
    with pytest.raises(SrtpAuthError):  # a direction's keys never open the other direction
        a_rx.unprotect(a_tx.protect(rtp(2)))
    assert len(keys.a_to_b.master_key) == profile.key_len and len(keys.a_to_b.master_salt) == profile.salt_len


def test_media_keys_bind_direction_profile_and_spi() -> None:
    base = derive_media_keys(SUBKEY, AES_CM_128_HMAC_SHA1_80, spi=0x1000)
    others = [
        derive_media_keys(SUBKEY, AES_CM_128_HMAC_SHA1_32, spi=0x1000).a_to_b,
        derive_media_keys(SUBKEY, AES_CM_128_HMAC_SHA1_80, spi=0x1002).a_to_b,
        derive_media_keys(bytes(32), AES_CM_128_HMAC_SHA1_80, spi=0x1000).a_to_b,
        base.b_to_a,
    ]
    assert all(o.master_key != base.a_to_b.master_key for o in others)
    assert derive_media_keys(SUBKEY, "AES_CM_128_HMAC_SHA1_80", spi=0x1000).a_to_b.master_key == base.a_to_b.master_key
    assert repr(base) == "CallMediaKeys(AES_CM_128_HMAC_SHA1_80)" and "MediaKeys(" in repr(base.a_to_b)
    with pytest.raises(ValueError, match="too short"):
        derive_media_keys(bytes(8), AES_CM_128_HMAC_SHA1_80, spi=1)
    with pytest.raises(ValueError, match="no media profile"):
        derive_media_keys(SUBKEY, "NULL", spi=1)


def test_media_keys_regression_vector() -> None:
    # Pins the KDF of docs/protocol.md "Media" (HKDF-SHA-256, info "kerbtel SRTP v1" 0 dir 0 name 0 spi).
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = b"kerbtel SRTP v1\x00A to B\x00AES_CM_128_HMAC_SHA1_80\x00\x00\x00\x10\x00"
    okm = HKDF(algorithm=hashes.SHA256(), length=30, salt=None, info=info).derive(SUBKEY)
    keys = derive_media_keys(SUBKEY, AES_CM_128_HMAC_SHA1_80, spi=0x1000)
    assert keys.a_to_b.libsrtp_key() == okm


def test_sdes_and_libsrtp_forms() -> None:
    keys = derive_media_keys(SUBKEY, AES_CM_128_HMAC_SHA1_80, spi=0x1000).a_to_b
    inline = keys.sdes_inline()
    assert inline.startswith("inline:") and base64.b64decode(inline[7:]) == keys.master_key + keys.master_salt
    assert len(inline) == 7 + 40  # 30 bytes -> 40 base64 characters (RFC 4568 6.1 example length)
    assert sdes_crypto_attribute(1, keys) == f"1 AES_CM_128_HMAC_SHA1_80 {inline}"
    assert keys.hex() == keys.libsrtp_key().hex()
