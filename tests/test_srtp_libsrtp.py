"""SRTP/SRTCP interop with libsrtp 2.7 (pylibsrtp), the reference implementation (issue 5).

Each profile, both ways: what our transform protects, libsrtp unprotects and vice versa, across a
sequence-number wrap (ROC 0 -> 1) and for SRTCP; tampered and replayed packets are refused by both.
The libsrtp peer here is a raw `pylibsrtp.Session`, not our wrapper; the wrapper
(`backend="libsrtp"`) is then checked to raise the same error classes as our transform.
"""

from __future__ import annotations


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.srtp import (
    PROFILES,
    SrtpAuthError,
    SrtpError,
    SrtpFormatError,
    SrtpReplayError,
    SrtpReuseError,
    SrtpRx,
    SrtpTx,
    derive_media_keys,
)
from tests.conftest import require_module

pytestmark = pytest.mark.interop


@pytest.fixture
def pylibsrtp():
    return require_module("pylibsrtp")


def test_pylibsrtp_is_importable(pylibsrtp) -> None:
    assert pylibsrtp.__version__ >= "0.10"
    pylibsrtp.Session(pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))


PROFILE_LIST = list(PROFILES.values())
SSRC = 0x5EED0001


def keys_for(profile):
    return bytes(range(1, 1 + profile.key_len)), bytes(range(200, 200 + profile.salt_len))


def peer(pylibsrtp, profile, outbound: bool):
    key, salt = keys_for(profile)
    policy = pylibsrtp.Policy(
        key=key + salt,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=getattr(pylibsrtp.Policy, profile.libsrtp_name),
    )
    policy.window_size = 1024
    return pylibsrtp.Session(policy)


def ours(cls, profile, backend="python"):
    key, salt = keys_for(profile)
    return cls(profile, key, salt, backend=backend)


def rtp(seq: int, payload: bytes = b"\xd5" * 160) -> bytes:
    return bytes([0x80, 0x00, seq >> 8, seq & 0xFF]) + (160 * seq).to_bytes(4, "big") + SSRC.to_bytes(4, "big") + payload


RTCP = bytes.fromhex("81c90007") + SSRC.to_bytes(4, "big") + bytes.fromhex("deadbeef" "00000000" "00011234" "00000003" "00000000" "00000000")
WRAP = [s & 0xFFFF for s in range(65530, 65550)]  # ROC 0 -> 1


@pytest.mark.parametrize("profile", PROFILE_LIST, ids=lambda p: p.name)
def test_ours_to_libsrtp_across_the_wrap(pylibsrtp, profile) -> None:
    tx, lib_rx, lib_tx = ours(SrtpTx, profile), peer(pylibsrtp, profile, False), peer(pylibsrtp, profile, True)
    for seq in WRAP:
        wire = tx.protect(rtp(seq))
        assert wire == lib_tx.protect(rtp(seq))  # both transforms are deterministic: same bytes
        assert lib_rx.unprotect(wire) == rtp(seq)
    assert tx.roc(SSRC) == 1
    for _ in range(3):
        assert lib_rx.unprotect_rtcp(tx.protect_rtcp(RTCP)) == RTCP


@pytest.mark.parametrize("profile", PROFILE_LIST, ids=lambda p: p.name)
def test_libsrtp_to_ours_across_the_wrap(pylibsrtp, profile) -> None:
    lib_tx, rx = peer(pylibsrtp, profile, True), ours(SrtpRx, profile)
    for seq in WRAP:
        assert rx.unprotect(lib_tx.protect(rtp(seq))) == rtp(seq)
    assert rx.roc(SSRC) == 1
    for _ in range(3):
        assert rx.unprotect_rtcp(lib_tx.protect_rtcp(RTCP)) == RTCP
    assert rx.packets == len(WRAP) and rx.rtcp_packets == 3


@pytest.mark.parametrize("profile", PROFILE_LIST, ids=lambda p: p.name)
def test_tampered_and_replayed_refused_by_both(pylibsrtp, profile) -> None:
    tx, lib_tx = ours(SrtpTx, profile), peer(pylibsrtp, profile, True)
    lib_rx, rx = peer(pylibsrtp, profile, False), ours(SrtpRx, profile)
    for sender in (tx, lib_tx):
        first = sender.protect(rtp(65534))
        tampered = bytearray(sender.protect(rtp(65535)))
        tampered[30] ^= 0x04
        srtcp = sender.protect_rtcp(RTCP)
        bad_srtcp = bytearray(srtcp)
        bad_srtcp[12] ^= 0x04
        # libsrtp
        with pytest.raises(pylibsrtp.Error, match="authentication failure"):
            lib_rx.unprotect(bytes(tampered))
        with pytest.raises(pylibsrtp.Error, match="authentication failure"):
            lib_rx.unprotect_rtcp(bytes(bad_srtcp))
        lib_rx.unprotect(first)
        lib_rx.unprotect_rtcp(srtcp)
        with pytest.raises(pylibsrtp.Error, match="replay check failed"):
            lib_rx.unprotect(first)
        with pytest.raises(pylibsrtp.Error, match="replay check failed"):
            lib_rx.unprotect_rtcp(srtcp)
        # ours
        with pytest.raises(SrtpAuthError):
            rx.unprotect(bytes(tampered))
        with pytest.raises(SrtpAuthError):
            rx.unprotect_rtcp(bytes(bad_srtcp))
        rx.unprotect(first)
        rx.unprotect_rtcp(srtcp)
        with pytest.raises(SrtpReplayError):
            rx.unprotect(first)
        with pytest.raises(SrtpReplayError):
            rx.unprotect_rtcp(srtcp)
        lib_rx, rx = peer(pylibsrtp, profile, False), ours(SrtpRx, profile)


@pytest.mark.parametrize("profile", PROFILE_LIST, ids=lambda p: p.name)
def test_libsrtp_backend_same_api_and_errors(pylibsrtp, profile) -> None:
    tx, rx = ours(SrtpTx, profile, "libsrtp"), ours(SrtpRx, profile, "libsrtp")
    assert (tx.backend, rx.backend) == ("libsrtp", "libsrtp")
    py_rx = ours(SrtpRx, profile)
    for seq in WRAP:
        wire = tx.protect(rtp(seq))
        assert rx.unprotect(wire) == rtp(seq) == py_rx.unprotect(wire)
    with pytest.raises(SrtpReplayError):
        rx.unprotect(wire)
    bad = bytearray(tx.protect(rtp(WRAP[-1] + 1)))
    bad[-1] ^= 1
    with pytest.raises(SrtpAuthError):
        rx.unprotect(bytes(bad))
    with pytest.raises(SrtpFormatError, match="RTP version 1 is not 2"):
        rx.unprotect(b"\x40" + bytes(40))
    with pytest.raises(SrtpReuseError):
        tx.protect(rtp(WRAP[0]))
    srtcp = tx.protect_rtcp(RTCP)
    assert rx.unprotect_rtcp(srtcp) == RTCP
    with pytest.raises(SrtpReplayError):
        rx.unprotect_rtcp(srtcp)
    assert rx.replay_failures == 2 and rx.auth_failures == 1 and rx.format_failures == 1


def test_default_backend_is_libsrtp_when_installed(pylibsrtp) -> None:
    profile = PROFILE_LIST[0]
    key, salt = keys_for(profile)
    assert SrtpTx(profile, key, salt).backend == "libsrtp"
    assert SrtpRx(profile, key, salt, backend="python").backend == "python"


def test_media_keys_from_the_subkey_feed_libsrtp(pylibsrtp) -> None:
    # `kerbtel keys` prints key || salt per direction; libsrtp given those bytes decrypts A -> B.
    keys = derive_media_keys(bytes(range(32)), "AES_CM_128_HMAC_SHA1_80", spi=0x2000)
    a_tx, _ = keys.contexts("A", backend="python")
    policy = pylibsrtp.Policy(key=keys.a_to_b.libsrtp_key(), ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    assert pylibsrtp.Session(policy).unprotect(a_tx.protect(rtp(9))) == rtp(9)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PROFILE_LIST), st.binary(max_size=100), st.booleans())
def test_libsrtp_backend_raises_only_srtp_errors(profile, data: bytes, rtcp: bool) -> None:
    require_module("pylibsrtp")
    rx = ours(SrtpRx, profile, "libsrtp")
    try:
        (rx.unprotect_rtcp if rtcp else rx.unprotect)(data)
    except SrtpError:
        pass
