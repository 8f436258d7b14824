"""common.rtp_3des: the seed's legacy mode (whole RTP packet in 3-key 3DES-CBC, IV 0).

There is no RTP peer for this mode; `openssl enc -des-ede3-cbc` with IV 0 is an independent
3DES-CBC, used both ways on the exact bytes.
"""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.rtp import RtpPacket
from common.rtp_3des import MAC_LEN, Legacy3desRx, Legacy3desTx, pad_rtp
from common.srtp import SrtpAuthError, SrtpError, SrtpFormatError, SrtpReplayError, derive_media_keys
from tests.conftest import require_peer

KEY = bytes.fromhex("0123456789abcdef" "23456789abcdef01" "456789abcdef0123")
MAC_KEY = bytes(range(20))


def rtp(seq: int, payload: bytes = b"\xd5" * 160, ssrc: int = 0x1234) -> bytes:
    return bytes(RtpPacket(0, seq, 160 * seq & 0xFFFFFFFF, ssrc, payload))


@pytest.mark.parametrize("mac", [None, MAC_KEY], ids=["no-mac", "mac"])
@pytest.mark.parametrize("size", [0, 1, 4, 5, 160, 163])
def test_round_trip_and_alignment(mac, size: int) -> None:
    tx, rx = Legacy3desTx(KEY, mac), Legacy3desRx(KEY, mac)
    p = rtp(1, bytes(range(size)))
    c = tx.protect(p)
    assert len(c) % 8 == 0 and len(c) - len(p) - (MAC_LEN if mac else 0) in range(8)
    assert rx.unprotect(c) == p  # padding removed, P cleared


def test_padding_rules() -> None:
    assert pad_rtp(rtp(1, bytes(4))) == rtp(1, bytes(4))  # 16 bytes: aligned, P stays clear
    padded = pad_rtp(rtp(1, bytes(5)))
    assert len(padded) == 24 and padded[0] & 0x20 and padded[-1] == 7
    assert RtpPacket.parse(padded).payload == bytes(5)
    existing = bytes(RtpPacket(0, 1, 0, 1, b"ab", padding_size=3))  # 17 bytes, already padded
    out = pad_rtp(existing)
    assert len(out) == 24 and out[-1] == 10 and RtpPacket.parse(out).payload == b"ab"
    assert len(pad_rtp(rtp(1, bytes(4)), MAC_LEN)) + MAC_LEN == 32


def test_iv_zero_weakness_is_real() -> None:
    # Deterministic: the same packet encrypts identically, and equal first blocks stay equal.
    tx = Legacy3desTx(KEY)
    a, b = tx.protect(rtp(5, b"A" * 40)), tx.protect(rtp(5, b"A" * 40))
    assert a == b
    c = tx.protect(rtp(5, b"A" * 20 + b"B" * 20))
    assert c[:24] == a[:24] and c[24:] != a[24:]


def test_mac_verifies_and_replay_window() -> None:
    tx, rx = Legacy3desTx(KEY, MAC_KEY), Legacy3desRx(KEY, MAC_KEY)
    c = tx.protect(rtp(10))
    for pos in (0, 8, len(c) - 1):
        bad = bytearray(c)
        bad[pos] ^= 1
        with pytest.raises(SrtpAuthError, match="MAC does not verify"):
            rx.unprotect(bytes(bad))
    assert rx.unprotect(c) == rtp(10)
    with pytest.raises(SrtpReplayError):
        rx.unprotect(c)
    wrong = Legacy3desRx(KEY, bytes(20))
    with pytest.raises(SrtpAuthError):
        wrong.unprotect(c)
    assert rx.auth_failures == 3 and rx.replay_failures == 1


def test_without_mac_garbage_is_a_format_error() -> None:
    rx = Legacy3desRx(KEY)
    with pytest.raises(SrtpFormatError, match="3DES_CBC_SEED packet of 20 bytes is not a multiple of 8"):
        rx.unprotect(bytes(20))
    with pytest.raises(SrtpFormatError, match="shorter than the 16 it needs"):
        rx.unprotect(bytes(8))
    other = Legacy3desTx(bytes.fromhex("fedcba9876543210" "1032547698badcfe" "0f1e2d3c4b5a6978"))
    hits = 0
    for seq in range(50):
        try:
            rx.unprotect(other.protect(rtp(seq)))
        except SrtpFormatError:
            hits += 1
    assert hits > 20  # a wrong key decrypts to garbage whose version is usually not 2


def test_keys() -> None:
    with pytest.raises(ValueError, match="24-byte 3DES key"):
        Legacy3desTx(bytes(16))
    with pytest.raises(ValueError, match="three different"):
        Legacy3desTx(bytes(8) * 3)
    with pytest.raises(ValueError, match="20-byte MAC key"):
        Legacy3desRx(KEY, bytes(16))
    keys = derive_media_keys(bytes(range(32)), "3DES_CBC_SEED", spi=0x3000)
    assert len(keys.a_to_b.master_key) == 24 and len(keys.a_to_b.master_salt) == 20
    a_tx = Legacy3desTx(keys.a_to_b.master_key, keys.a_to_b.master_salt)
    b_rx = Legacy3desRx(keys.a_to_b.master_key, keys.a_to_b.master_salt)
    assert b_rx.unprotect(a_tx.protect(rtp(3))) == rtp(3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100), st.booleans())
def test_unprotect_raises_only_srtp_errors(data: bytes, mac: bool) -> None:
    rx = Legacy3desRx(KEY, MAC_KEY if mac else None)
    try:
        rx.unprotect(data)
    except SrtpError:
        pass


# --- interop: openssl's 3DES-CBC --------------------------------------------------------------


def openssl(decrypt: bool, data: bytes) -> bytes:
    args = ["openssl", "enc", "-des-ede3-cbc", "-K", KEY.hex(), "-iv", "0000000000000000", "-nopad"]
    if decrypt:
        args.insert(2, "-d")
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


@pytest.mark.interop
@pytest.mark.parametrize("mac", [None, MAC_KEY], ids=["no-mac", "mac"])
def test_openssl_decrypts_ours(mac) -> None:
    require_peer("openssl")
    tx = Legacy3desTx(KEY, mac)
    for seq, size in ((1, 160), (2, 5), (3, 0)):
        p = rtp(seq, bytes(range(size)))
        plain = openssl(True, tx.protect(p))
        packet = plain[:-MAC_LEN] if mac else plain
        parsed = RtpPacket.parse(packet)  # the whole RTP packet, header included, came out
        assert (parsed.sequence_number, parsed.payload) == (seq, bytes(range(size)))
        assert packet[:len(p)][1:] == p[1:] and packet[0] == p[0] | (0x20 if parsed.padding_size else 0)


@pytest.mark.interop
@pytest.mark.parametrize("mac", [None, MAC_KEY], ids=["no-mac", "mac"])
def test_we_decrypt_openssl(mac) -> None:
    require_peer("openssl")
    import hmac

    rx = Legacy3desRx(KEY, mac)
    for seq in (7, 8):
        packet = pad_rtp(rtp(seq, b"openssl" * 3), MAC_LEN if mac else 0)
        plain = packet + (hmac.new(mac, packet, "sha1").digest()[:MAC_LEN] if mac else b"")
        assert rx.unprotect(openssl(False, plain)) == rtp(seq, b"openssl" * 3)
