"""ctad/media.py: the per-call media relay of a CTA.

In memory: two relays (CTA A and CTA B, keys from `derive_media_keys` with roles A and B) with a
clock chosen by the test carry RTP and RTCP from one line to the other byte for byte, drop and
count wrong sources, tampered and replayed packets (and keep passing the next ones), in every SRTP
profile, with both transforms, and in the legacy 3DES mode; the SDP rewrites of both legs.
Real sockets on loopback (default loop and uvloop): two tone senders/recorders
(`ctad.softphone.RtpStream`, the built-in softphone's media half: the `Softphone` class only
starts media after a SIP call, so the test drives its RTP directly, with SDP from its
`PhoneAgent.offer()`), each attached to its own `MediaSession`, the test in the middle as a UDP
forwarder recording every network datagram: the tones pass `ToneCheck` both ways, libsrtp
(pylibsrtp, with `MediaKeys.libsrtp_key()`) decrypts every recorded datagram to exactly what the
phone sent, and no recorded datagram contains tone payload bytes in clear.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from structlog.testing import capture_logs

from common.audio import ToneCheck, ToneGenerator, ulaw_encode, tone
from common.rtp import RtcpPacket, RtpPacket
from common.sip.sdp import SessionDescription, negotiate
from common.srtp import (
    AEAD_AES_128_GCM,
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    LEGACY_3DES,
    SrtpTx,
    derive_media_keys,
    libsrtp_available,
)
from ctad.media import (
    DROP_REASONS,
    LINE_RTCP,
    LINE_RTP,
    NETWORK,
    MediaPeer,
    MediaRelay,
    MediaSession,
    media_peer,
    rewrite_sdp,
    sdp_for_line,
    sdp_for_network,
)
from ctad.softphone import PhoneAgent, RtpStream
from tests.conftest import require_module

SUBKEY = bytes.fromhex("8f3a6c21d09e4b7751aa03c6e2f41d985b7c0e6a3392d14f06b8e57a2c9d1e40")
SPI = 0x1000A2
CALL = "call-1@cta-a"
PHONE_A = ("127.0.0.1", 40000)   # softphone A's RTP (RTCP on 40001)
PHONE_B = ("127.0.0.1", 42000)
NET_A = ("192.0.2.10", 50000)    # CTA A's network media address (what CTA B's relay expects)
NET_B = ("198.51.100.20", 52000)
SSRC_A, SSRC_B = 0xA0A0A0A0, 0xB0B0B0B0


def backends() -> list:
    return ["python", pytest.param("libsrtp", marks=pytest.mark.interop)]


def need_backend(backend: str | None) -> None:
    if backend == "libsrtp" and not libsrtp_available():
        require_module("pylibsrtp")


def pair(profile: str = AES_CM_128_HMAC_SHA1_80.name, backend: str | None = "python", **kwargs) -> tuple[MediaRelay, MediaRelay]:
    need_backend(backend)
    keys = derive_media_keys(SUBKEY, profile, SPI)
    if profile != LEGACY_3DES:
        kwargs["backend"] = backend
    a = MediaRelay(CALL, "A", keys, line_peer=PHONE_A, network_peer=NET_B, **kwargs)
    b = MediaRelay(CALL, "B", keys, line_peer=PHONE_B, network_peer=NET_A, **kwargs)
    return a, b


def rtp(seq: int, *, pt: int = 0, ssrc: int = SSRC_A, payload: bytes | None = None, marker: bool = False,
        ts: int | None = None, **kw) -> bytes:
    if payload is None:
        payload = ulaw_encode(tone(1000, 0.02))
    return bytes(RtpPacket(payload_type=pt, sequence_number=seq & 0xFFFF, timestamp=(160 * seq if ts is None else ts) & 0xFFFFFFFF,
                           ssrc=ssrc, payload=payload, marker=marker, **kw))


def rr(ssrc: int = SSRC_A) -> bytes:
    report = struct.pack(">IIIIII", 0x11223344, 0x00000010, 0x0000ABCD, 7, 0x12345678, 0x00000100)
    return RtcpPacket.compound([RtcpPacket(201, 1, ssrc, report),
                                RtcpPacket(202, 1, ssrc, b"\x01\x08phone-a1\x00\x00")])


def a_to_b(a: MediaRelay, b: MediaRelay, packet: bytes, now: float = 0.0, *, rtcp: bool = False) -> bytes | None:
    """Phone A's datagram through relay A, the network, relay B; what phone B receives (or None)."""
    out = (a.from_line_rtcp if rtcp else a.from_line)(packet, PHONE_A if not rtcp else (PHONE_A[0], PHONE_A[1] + 1), now)
    assert out is not None and out[0] == NETWORK and out[2] == NET_B
    back = b.from_network(out[1], NET_A, now)
    if back is None:
        return None
    port, data, dest = back
    assert (port, dest) == ((LINE_RTCP, (PHONE_B[0], PHONE_B[1] + 1)) if rtcp else (LINE_RTP, PHONE_B))
    return data


# --------------------------------------------------------------------------------------------
# In memory: the media path


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("profile", [AES_CM_128_HMAC_SHA1_80.name, AES_CM_128_HMAC_SHA1_32.name, AEAD_AES_128_GCM.name])
def test_rtp_crosses_both_relays_byte_identical_both_ways(profile, backend) -> None:
    a, b = pair(profile, backend)
    event = b"\x05\x0a\x00\xa0"  # telephone-event: digit 5, volume 10, duration 160
    sent_ab = [rtp(65533 + i, marker=i == 0) for i in range(6)]          # across a sequence wrap
    sent_ab += [rtp(65539, pt=101, payload=event), rtp(65540, pt=8, payload=b"\xd5" * 160),
                rtp(65541, pt=96, payload=b"dynamic", csrc=[1, 2], extension_profile=0xBEDE, extension=b"\x10\xff\x00\x00")]
    for packet in sent_ab:
        got = a_to_b(a, b, packet)
        assert got == packet
        p, q = RtpPacket.parse(got), RtpPacket.parse(packet)
        assert (p.payload, p.sequence_number, p.timestamp, p.ssrc, p.payload_type, p.marker) == \
               (q.payload, q.sequence_number, q.timestamp, q.ssrc, q.payload_type, q.marker)
    for i in range(5):  # and back: B's phone to A's phone
        packet = rtp(1000 + i, ssrc=SSRC_B, pt=8, payload=bytes([i]) * 160)
        out = b.from_line(packet, PHONE_B, 0.0)
        assert out is not None and out[0] == NETWORK and out[2] == NET_A
        tag = {"AEAD_AES_128_GCM": 16, "AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4}[profile]
        assert out[1][:12] == packet[:12] and out[1][12:-tag] != packet[12:] and len(out[1]) == len(packet) + tag
        assert a.from_network(out[1], NET_B, 0.0) == (LINE_RTP, packet, PHONE_A)
    sa, sb = a.stats(), b.stats()
    assert sa["encrypted_packets"] == sb["decrypted_packets"] == len(sent_ab)
    assert sb["encrypted_packets"] == sa["decrypted_packets"] == 5
    assert sb["decrypted_bytes"] == sum(map(len, sent_ab)) and sa["encrypted_bytes"] > sb["decrypted_bytes"]
    assert sa["drops"] == sb["drops"] == {}
    assert sa["profile"] == profile and sa["backend"] == backend


@pytest.mark.parametrize("backend", backends())
def test_rtcp_on_the_line_rtcp_port_and_muxed_becomes_srtcp_and_back(backend) -> None:
    a, b = pair(AES_CM_128_HMAC_SHA1_80.name, backend)
    report = rr()
    assert a_to_b(a, b, report, rtcp=True) == report
    out = a.from_line(rr(), PHONE_A, 0.0)          # RTCP muxed onto the RTP port by the phone
    assert out is not None and out[1][:8] == report[:8] and out[1][8:len(report)] != report[8:]  # SRTCP: header clear, rest encrypted
    assert b.from_network(out[1], NET_A, 0.0) == (LINE_RTCP, report, (PHONE_B[0], PHONE_B[1] + 1))
    assert a.stats()["encrypted_rtcp_packets"] == 2 and b.stats()["decrypted_rtcp_packets"] == 2
    assert a.stats()["encrypted_packets"] == 0


def test_wrong_sources_are_dropped_and_counted_on_both_legs() -> None:
    a, b = pair()
    good = rtp(1)
    for stranger in [("127.0.0.1", 40002), ("127.0.0.2", PHONE_A[1]), NET_B]:
        assert a.from_line(good, stranger, 0.0) is None
    assert a.from_line_rtcp(rr(), ("127.0.0.1", 40003), 0.0) is None
    srtp = a.from_line(good, PHONE_A, 0.0)[1]
    for stranger in [PHONE_A, ("192.0.2.10", 50001), ("192.0.2.11", 50000), NET_B]:
        assert b.from_network(srtp, stranger, 0.0) is None
    assert b.from_network(srtp, NET_A, 0.0) == (LINE_RTP, good, PHONE_B)   # the real one still passes
    assert a.drops["line_wrong_source"] == 4 and a.encrypted_packets == 1
    assert b.drops["network_wrong_source"] == 4 and b.decrypted_packets == 1
    assert b.stats()["drops"] == {"network_wrong_source": 4}


def test_nothing_passes_before_the_sdp_named_the_peers() -> None:
    keys = derive_media_keys(SUBKEY, "AES_CM_128_HMAC_SHA1_80", SPI)
    a = MediaRelay.for_call(CALL, "A", keys=keys, backend="python")
    assert a.line_peer is None and a.network_peer is None
    assert a.from_line(rtp(1), PHONE_A, 0.0) is None                     # no line peer: wrong source
    a.set_line_peer(PHONE_A)
    assert a.from_line(rtp(1), PHONE_A, 0.0) is None                     # no network peer yet
    assert a.from_network(b"\x80" * 40, NET_B, 0.0) is None
    assert a.drops["line_wrong_source"] == 1 and a.drops["no_network_peer"] == 1 and a.drops["network_wrong_source"] == 1
    a.set_network_peer(NET_B)
    assert a.from_line(rtp(1), PHONE_A, 0.0)[0] == NETWORK               # seq 1 was not burnt by the drop
    assert a.line_peer == MediaPeer(PHONE_A, ("127.0.0.1", 40001), False)


def test_the_calling_cta_binds_and_rewrites_sdp_before_its_keys_arrive() -> None:
    # A's INVITE carries A's network address before the SC delivers the sub-key to A (seed 450-462).
    a = MediaRelay.for_call(CALL, "A", line_peer=PHONE_A, network_peer=NET_B)
    assert not a.keyed and a.stats()["profile"] == "pending"
    assert a.from_line(rtp(1), PHONE_A, 0.0) is None
    assert a.from_line_rtcp(rr(), (PHONE_A[0], PHONE_A[1] + 1), 0.0) is None
    assert a.from_network(b"\x80" * 40, NET_B, 0.0) is None
    assert a.stats()["drops"] == {"no_keys": 3}
    a.set_subkey(SUBKEY, SPI, "AEAD_AES_128_GCM")
    assert a.keyed and a.profile == "AEAD_AES_128_GCM"
    b = MediaRelay.for_call(CALL, "B", subkey=SUBKEY, spi=SPI, profile="AEAD_AES_128_GCM", line_peer=PHONE_B, network_peer=NET_A)
    assert a_to_b(a, b, rtp(2)) == rtp(2)
    with pytest.raises(ValueError, match="keyed already"):
        a.set_subkey(SUBKEY, SPI)
    # What ctad.calls' CallKeysReady carries: the profile and this CTA's (tx, rx) already picked.
    keys = derive_media_keys(SUBKEY, "AES_CM_128_HMAC_SHA1_80", SPI)
    b2 = MediaRelay(CALL, "B", line_peer=PHONE_B, network_peer=NET_A)
    with pytest.raises(ValueError, match="negotiated AEAD_AES_128_GCM"):
        b2.set_direction_keys("AEAD_AES_128_GCM", *keys.for_cta("B"))
    b2.set_direction_keys("AES_CM_128_HMAC_SHA1_80", *keys.for_cta("B"))
    a2 = MediaRelay(CALL, "A", keys, line_peer=PHONE_A, network_peer=NET_B)
    assert a_to_b(a2, b2, rtp(3)) == rtp(3)


def test_ipv6_peers_compare_in_one_textual_form() -> None:
    a, _ = pair()
    a.set_line_peer(("0:0::1", 5004))
    assert a.line_peer.rtp == ("::1", 5004)
    assert a.from_line(rtp(1), ("::1", 5004), 0.0) is not None


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("profile", [AES_CM_128_HMAC_SHA1_80.name, AEAD_AES_128_GCM.name])
def test_tampered_and_replayed_srtp_are_refused_counted_and_the_next_packets_pass(profile, backend) -> None:
    a, b = pair(profile, backend)
    wire = [a.from_line(rtp(i), PHONE_A, 0.0)[1] for i in range(1, 6)]
    assert b.from_network(wire[0], NET_A, 0.0)[1] == rtp(1)
    flipped_payload = bytearray(wire[1])
    flipped_payload[20] ^= 0x01
    flipped_header = bytearray(wire[1])
    flipped_header[7] ^= 0x80                      # timestamp bit: authenticated, not encrypted
    flipped_tag = bytearray(wire[1])
    flipped_tag[-1] ^= 0xFF
    for bad in (flipped_payload, flipped_header, flipped_tag, wire[1][:-1]):
        assert b.from_network(bytes(bad), NET_A, 0.0) is None
    assert b.from_network(wire[1], NET_A, 0.0)[1] == rtp(2)     # the genuine packet still passes
    assert b.from_network(wire[1], NET_A, 0.0) is None         # replayed
    assert b.from_network(wire[0], NET_A, 0.0) is None         # replayed, older
    assert b.from_network(b"\x80\x00\x01", NET_A, 0.0) is None   # not SRTP at all
    for i, w in enumerate(wire[2:], start=3):
        assert b.from_network(w, NET_A, 0.0)[1] == rtp(i)
    s = b.stats()
    assert s["drops"]["network_auth"] == 4 and s["auth_failures"] == 4
    assert s["drops"]["network_replay"] == 2 and s["replay_failures"] == 2
    assert s["drops"]["network_malformed"] == 1
    assert s["decrypted_packets"] == 5


@pytest.mark.parametrize("backend", backends())
def test_tampered_and_replayed_srtcp(backend) -> None:
    a, b = pair(AES_CM_128_HMAC_SHA1_80.name, backend)
    wire = [a.from_line_rtcp(rr(), (PHONE_A[0], PHONE_A[1] + 1), 0.0)[1] for _ in range(3)]
    bad = bytearray(wire[0])
    bad[12] ^= 0x04
    assert b.from_network(bytes(bad), NET_A, 0.0) is None
    assert b.from_network(wire[0], NET_A, 0.0)[1] == rr()
    assert b.from_network(wire[0], NET_A, 0.0) is None
    assert b.from_network(wire[2], NET_A, 0.0)[1] == rr()
    assert b.drops["network_auth"] == 1 and b.drops["network_replay"] == 1


def test_drops_are_logged_at_debug_aggregated_never_one_line_per_packet() -> None:
    a, b = pair(log_interval=5.0)
    srtp = bytearray(a.from_line(rtp(1), PHONE_A, 0.0)[1])
    srtp[-1] ^= 1
    with capture_logs() as logs:
        for i in range(1000):
            b.from_network(bytes(srtp), NET_A, i * 0.001)           # one second of forgeries
        b.from_network(bytes(srtp), NET_A, 6.0)                     # the interval has passed
        for i in range(10):
            b.from_network(bytes(srtp), ("203.0.113.9", 1), 6.0)    # another reason: its own line
        b.flush_log()
    lines = [e for e in logs if e["event"] == "media dropped"]
    assert all(e["log_level"] == "debug" for e in lines)
    auth = [(e["total"], e["since_last"]) for e in lines if e["reason"] == "network_auth"]
    assert auth == [(1, 1), (1001, 1000)]
    wrong = [(e["total"], e["since_last"], e["source"]) for e in lines if e["reason"] == "network_wrong_source"]
    assert wrong == [(1, 1, "203.0.113.9:1"), (10, 9, "-")]
    assert "does not verify" in lines[0]["error"]
    assert b.drops["network_auth"] == 1001


def test_a_duplicate_from_the_phone_is_not_encrypted_twice() -> None:
    a, b = pair()
    assert a.from_line(rtp(7), PHONE_A, 0.0) is not None
    assert a.from_line(rtp(7), PHONE_A, 0.0) is None            # same index: keystream reuse refused
    assert a.from_line(b"\x40\x00" + bytes(20), PHONE_A, 0.0) is None   # RTP version 1
    assert a.from_line(rtp(8), PHONE_A, 0.0) is not None
    assert a.drops["line_duplicate"] == 1 and a.drops["line_malformed"] == 1


@pytest.mark.parametrize("mac", [True, False])
def test_legacy_3des_mode_carries_rtp_byte_identical_both_ways(mac) -> None:
    a, b = pair(LEGACY_3DES, legacy_mac=mac)
    assert a.backend == "python" and a.profile == LEGACY_3DES
    odd = rtp(3, payload=b"\x01\x02\x03")                      # needs padding on the wire
    for packet in (rtp(1, marker=True), rtp(2, pt=8), odd, rtp(4, pt=101, payload=b"\x05\x0a\x00\xa0")):
        out = a.from_line(packet, PHONE_A, 0.0)
        assert len(out[1]) % 8 == 0 and out[1][:12] != packet[:12]    # the header is encrypted too
        assert b.from_network(out[1], NET_A, 0.0) == (LINE_RTP, packet, PHONE_B)
    back = rtp(9, ssrc=SSRC_B)
    assert a.from_network(b.from_line(back, PHONE_B, 0.0)[1], NET_B, 0.0)[1] == back
    assert a.from_line_rtcp(rr(), (PHONE_A[0], PHONE_A[1] + 1), 0.0) is None
    assert a.drops["rtcp_not_carried"] == 1


def test_legacy_3des_with_mac_refuses_tampering_and_replay() -> None:
    a, b = pair(LEGACY_3DES, legacy_mac=True)
    wire = [a.from_line(rtp(i), PHONE_A, 0.0)[1] for i in (1, 2, 3)]
    bad = bytearray(wire[0])
    bad[30] ^= 0x20
    assert b.from_network(bytes(bad), NET_A, 0.0) is None
    assert b.from_network(wire[0], NET_A, 0.0)[1] == rtp(1)
    assert b.from_network(wire[0], NET_A, 0.0) is None
    assert b.from_network(wire[1][:-3], NET_A, 0.0) is None
    assert b.from_network(wire[2], NET_A, 0.0)[1] == rtp(3)
    assert b.stats()["drops"] == {"network_auth": 1, "network_replay": 1, "network_malformed": 1}


def test_gcm_relay_interoperates_with_a_plain_srtp_context() -> None:
    # What relay A sends is ordinary RFC 7714 SRTP under the A-to-B keys.
    a, b = pair(AEAD_AES_128_GCM.name, "python")
    keys = derive_media_keys(SUBKEY, AEAD_AES_128_GCM.name, SPI)
    tx = SrtpTx(AEAD_AES_128_GCM, keys.a_to_b.master_key, keys.a_to_b.master_salt, backend="python")
    assert a.from_line(rtp(5), PHONE_A, 0.0)[1] == tx.protect(rtp(5))
    assert b.from_network(tx.protect(rtp(6)), NET_A, 0.0)[1] == rtp(6)


def test_the_roles_use_opposite_keys_and_a_wrong_role_or_key_fails() -> None:
    keys = derive_media_keys(SUBKEY, AES_CM_128_HMAC_SHA1_80.name, SPI)
    a = MediaRelay(CALL, "A", keys, backend="python", line_peer=PHONE_A, network_peer=NET_B)
    also_a = MediaRelay(CALL, "A", keys, backend="python", line_peer=PHONE_B, network_peer=NET_A)
    other_call = MediaRelay.for_call(CALL, "B", subkey=SUBKEY, spi=SPI + 2, backend="python",
                                     line_peer=PHONE_B, network_peer=NET_A)
    srtp = a.from_line(rtp(1), PHONE_A, 0.0)[1]
    assert also_a.from_network(srtp, NET_A, 0.0) is None and also_a.drops["network_auth"] == 1
    assert other_call.from_network(srtp, NET_A, 0.0) is None and other_call.drops["network_auth"] == 1
    same = MediaRelay.for_call(CALL, "B", subkey=SUBKEY, spi=SPI, backend="python", line_peer=PHONE_B, network_peer=NET_A)
    assert same.from_network(srtp, NET_A, 0.0)[1] == rtp(1)
    with pytest.raises(ValueError, match="role"):
        MediaRelay(CALL, "C", keys)
    with pytest.raises(ValueError, match="both the sub-key and the SPI"):
        MediaRelay.for_call(CALL, "A", subkey=SUBKEY)
    with pytest.raises(ValueError, match="negotiated AEAD_AES_128_GCM"):
        MediaRelay.for_call(CALL, "A", keys=keys, profile="AEAD_AES_128_GCM")


def test_no_key_material_in_repr_stats_or_logs() -> None:
    a, _ = pair()
    keys = derive_media_keys(SUBKEY, AES_CM_128_HMAC_SHA1_80.name, SPI)
    text = repr(a) + repr(a.stats())
    for secret in (SUBKEY, keys.a_to_b.master_key, keys.a_to_b.master_salt, keys.b_to_a.master_key):
        assert secret.hex() not in text and repr(secret) not in text
    assert "AES_CM_128_HMAC_SHA1_80" in repr(a) and "127.0.0.1:40000" in repr(a)
    assert set(a.drops) == set(DROP_REASONS)


# --------------------------------------------------------------------------------------------
# In memory: SDP on the two legs

PHONE_OFFER = (
    "v=0\r\no=1001 42 1 IN IP4 10.1.1.5\r\ns=-\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=rtcp:4005\r\n"
    "a=candidate:1 1 UDP 2130706431 10.1.1.5 4000 typ host\r\na=sendrecv\r\n"
).encode()


def test_phone_offer_to_network_and_on_to_the_far_phone() -> None:
    a, b = pair()
    peer = a.accept_line_sdp(PHONE_OFFER)
    assert peer == MediaPeer(("10.1.1.5", 4000), ("10.1.1.5", 4005), False)
    assert a.line_peer == peer
    net = sdp_for_network(PHONE_OFFER, ("192.0.2.10", 50000))
    audio = net.audio()
    assert net.media_address(audio) == ("192.0.2.10", 50000) and net.origin.endswith("IN IP4 192.0.2.10")
    assert audio.proto == "RTP/SAVP" and "rtcp-mux" in audio.attributes
    assert not [x for x in audio.attributes if x.startswith(("rtcp:", "candidate", "crypto"))]
    assert audio.formats == ["0", "8", "101"] and audio.attribute("rtpmap") == ["0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"]
    assert audio.attribute("fmtp") == ["101 0-15"] and audio.ptime == 20 and audio.direction == "sendrecv"
    assert b.accept_network_sdp(bytes(net)) == ("192.0.2.10", 50000) and b.network_peer == ("192.0.2.10", 50000)
    line = sdp_for_line(net, ("127.0.0.1", 30000), 30001)
    laudio = line.audio()
    assert line.media_address(laudio) == ("127.0.0.1", 30000) and laudio.proto == "RTP/AVP"
    assert "rtcp:30001" in laudio.attributes and "rtcp-mux" not in laudio.attributes
    assert media_peer(line) == MediaPeer(("127.0.0.1", 30000), ("127.0.0.1", 30001), False)
    assert laudio.codecs == SessionDescription.parse(PHONE_OFFER).audio().codecs


def test_sdp_rejected_on_hold_and_rtcp_forms() -> None:
    rejected = PHONE_OFFER.replace(b"m=audio 4000", b"m=audio 0")
    assert media_peer(rejected) is None
    assert rewrite_sdp(rejected, "192.0.2.1", 7000).audio().port == 0
    hold = PHONE_OFFER.replace(b"c=IN IP4 10.1.1.5", b"c=IN IP4 0.0.0.0")
    assert media_peer(hold) is None
    held = rewrite_sdp(hold, "192.0.2.1", 7000)
    assert held.media_address(held.audio()) == ("0.0.0.0", 7000)
    a, _ = pair()
    assert a.accept_line_sdp(hold) is None and a.line_peer.rtp == PHONE_A   # the old peer is kept
    plain = PHONE_OFFER.replace(b"a=rtcp:4005\r\n", b"")
    assert media_peer(plain).rtcp == ("10.1.1.5", 4001)
    muxed = plain.replace(b"a=sendrecv", b"a=rtcp-mux\r\na=sendrecv")
    assert media_peer(muxed) == MediaPeer(("10.1.1.5", 4000), ("10.1.1.5", 4000), True)
    elsewhere = PHONE_OFFER.replace(b"a=rtcp:4005", b"a=rtcp:4999 IN IP4 10.1.1.6")
    assert media_peer(elsewhere).rtcp == ("10.1.1.6", 4999)


# --------------------------------------------------------------------------------------------
# Real sockets on loopback: two phones, two relays, the test as the network in between

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.interop)]
TONE_PACKETS = 90          # 1.8 s of audio each way
CODECS = ["PCMU", "PCMA", "telephone-event"]


def run_on(loop_name: str, coro):
    factory = None
    if loop_name == "uvloop":
        factory = require_module("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


class Udp(asyncio.DatagramProtocol):
    def __init__(self, on_datagram) -> None:
        self.on_datagram = on_datagram
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.on_datagram(data, addr[:2])


async def udp(on_datagram):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: Udp(on_datagram), local_addr=("127.0.0.1", 0))
    return transport


def sockname(transport) -> tuple[str, int]:
    return transport.get_extra_info("sockname")[:2]


async def wait_until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


async def two_phones_through_two_relays(profile: str) -> dict:
    keys = derive_media_keys(SUBKEY, profile, SPI)
    relay_a = MediaRelay.for_call(CALL, "A", keys=keys, profile=profile)
    relay_b = MediaRelay.for_call(CALL, "B", keys=keys, profile=profile)
    recorded: list[tuple[str, bytes]] = []       # ("A->B" | "B->A", datagram) between the relays
    sent = {"A": [], "B": []}                     # RTP (and RTCP) as each phone sent it
    received_rtcp = {"A": [], "B": []}
    ab, ba = tone(1000, 0.02), tone(1500, 0.02)
    streams = {}

    async with MediaSession(relay_a) as cta_a, MediaSession(relay_b) as cta_b:
        # The network: the test forwards between the relays' network ports and records.
        fwd = {}
        fwd["a_side"] = await udp(lambda d, s: (recorded.append(("A->B", d)), fwd["b_side"].sendto(d, cta_b.network_address)))
        fwd["b_side"] = await udp(lambda d, s: (recorded.append(("B->A", d)), fwd["a_side"].sendto(d, cta_a.network_address)))
        # The phones: their RTP sockets (RTCP on a second socket each), SDP from the softphone's agent.
        phone_rtp = {"A": await udp(lambda d, s: streams["A"].receive(d)),
                     "B": await udp(lambda d, s: streams["B"].receive(d))}
        phone_rtcp = {}
        for name in "AB":
            host, port = sockname(phone_rtp[name])
            loop = asyncio.get_running_loop()
            try:
                t, _ = await loop.create_datagram_endpoint(lambda n=name: Udp(lambda d, s: received_rtcp[n].append(d)),
                                                           local_addr=(host, port + 1))
            except OSError:
                t = await udp(lambda d, s, n=name: received_rtcp[n].append(d))
            phone_rtcp[name] = t
        agent_a = PhoneAgent("1001", host="127.0.0.1", sip_port=5060, rtp_port=sockname(phone_rtp["A"])[1])
        agent_b = PhoneAgent("1002", host="127.0.0.1", sip_port=5060, rtp_port=sockname(phone_rtp["B"])[1])
        offer_a = agent_a.offer()
        offer_a.audio().attributes.insert(0, f"rtcp:{sockname(phone_rtcp['A'])[1]}")

        # A's offer: phone A -> CTA A -> (the network, which the test plays) -> CTA B -> phone B.
        net_offer = SessionDescription.parse(cta_a.line_to_network_sdp(bytes(offer_a)))
        assert net_offer.media_address(net_offer.audio()) == cta_a.network_address
        net_offer = rewrite_sdp(net_offer, *sockname(fwd["b_side"]), rtcp_mux=True)   # B sees the test as A
        line_offer_b = SessionDescription.parse(cta_b.network_to_line_sdp(net_offer))
        answer_b = negotiate(line_offer_b, CODECS, host="127.0.0.1", port=agent_b.rtp_port)
        answer_b.audio().attributes.insert(0, f"rtcp:{sockname(phone_rtcp['B'])[1]}")
        net_answer = SessionDescription.parse(cta_b.line_to_network_sdp(bytes(answer_b)))
        net_answer = rewrite_sdp(net_answer, *sockname(fwd["a_side"]), rtcp_mux=True)  # A sees the test as B
        line_answer_a = SessionDescription.parse(cta_a.network_to_line_sdp(net_answer))

        to_relay = {"A": media_peer(line_answer_a), "B": media_peer(line_offer_b)}
        assert to_relay["A"].rtp == cta_a.line_address and to_relay["A"].rtcp == cta_a.line_rtcp_address
        assert to_relay["B"].rtp == cta_b.line_address and cta_b.line_rtcp_address[1] == cta_b.line_address[1] + 1
        for name, hz, ssrc in (("A", 1000, SSRC_A), ("B", 1500, SSRC_B)):
            streams[name] = RtpStream(ssrc=ssrc, seq=65500, timestamp=0xFFFFF000, send_pt=0, send_codec="PCMU",
                                      receive_map={0: "PCMU", 8: "PCMA", 101: "telephone-event"},
                                      tone=ToneGenerator(hz))

        # A stranger on loopback aims at both relays' ports: dropped, counted.
        stranger = await udp(lambda d, s: None)
        for address in (cta_a.line_address, cta_a.line_rtcp_address, cta_a.network_address):
            stranger.sendto(rtp(1), address)

        for i in range(TONE_PACKETS):
            for name in "AB":
                packet = streams[name].next_packet()
                sent[name].append(packet)
                phone_rtp[name].sendto(packet, to_relay[name].rtp)
            if i % 30 == 0:
                for name, ssrc in (("A", SSRC_A), ("B", SSRC_B)):
                    report = rr(ssrc)
                    sent[name].append(report)
                    phone_rtcp[name].sendto(report, to_relay[name].rtcp)
            await asyncio.sleep(0.001)
        await wait_until(lambda: streams["A"].packets_received == TONE_PACKETS == streams["B"].packets_received
                         and len(received_rtcp["A"]) == 3 == len(received_rtcp["B"]))
        await wait_until(lambda: relay_a.drops["line_wrong_source"] == 2 and relay_a.drops["network_wrong_source"] == 1)
        stats = {"A": cta_a.stats(), "B": cta_b.stats()}
        for t in (*fwd.values(), *phone_rtp.values(), *phone_rtcp.values(), stranger):
            t.close()
    assert not cta_a.stats()["running"]
    return {"keys": keys, "recorded": recorded, "sent": sent, "streams": streams, "stats": stats,
            "received_rtcp": received_rtcp, "ab": ab, "ba": ba}


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("profile", [AES_CM_128_HMAC_SHA1_80.name, AEAD_AES_128_GCM.name])
def test_tones_cross_two_relays_over_loopback_and_libsrtp_decrypts_the_capture(loop_name, profile) -> None:
    pylibsrtp = require_module("pylibsrtp")
    r = run_on(loop_name, two_phones_through_two_relays(profile))
    streams, sent, recorded, stats = r["streams"], r["sent"], r["recorded"], r["stats"]

    # The audio: 1000 Hz from A arrives at B, 1500 Hz from B at A, nothing lost.
    verdict_b = ToneCheck(1000).check(streams["B"].received)
    verdict_a = ToneCheck(1500).check(streams["A"].received)
    assert verdict_b.ok, verdict_b
    assert verdict_a.ok, verdict_a
    assert streams["A"].lost == streams["B"].lost == 0
    assert r["received_rtcp"]["B"] == [p for p in sent["A"] if p[1] == 201]
    assert r["received_rtcp"]["A"] == [p for p in sent["B"] if p[1] == 201]
    assert stats["A"]["encrypted_packets"] == stats["B"]["decrypted_packets"] == TONE_PACKETS
    assert stats["A"]["encrypted_rtcp_packets"] == stats["B"]["decrypted_rtcp_packets"] == 3
    assert stats["A"]["drops"] == {"line_wrong_source": 2, "network_wrong_source": 1}
    assert stats["B"]["drops"] == {}

    # libsrtp, given only MediaKeys.libsrtp_key(), decrypts every datagram the test recorded
    # between the relays to exactly what the phone sent.
    keys = r["keys"]
    sessions = {}
    for direction, mk in (("A->B", keys.a_to_b), ("B->A", keys.b_to_a)):
        policy = pylibsrtp.Policy(key=mk.libsrtp_key(), ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                  srtp_profile=getattr(pylibsrtp.Policy, {"AES_CM_128_HMAC_SHA1_80": "SRTP_PROFILE_AES128_CM_SHA1_80",
                                                                          "AEAD_AES_128_GCM": "SRTP_PROFILE_AEAD_AES_128_GCM"}[profile]))
        sessions[direction] = pylibsrtp.Session(policy)
    decrypted = {"A->B": [], "B->A": []}
    for direction, datagram in recorded:
        session = sessions[direction]
        is_rtcp = 192 <= datagram[1] <= 223
        decrypted[direction].append(session.unprotect_rtcp(datagram) if is_rtcp else session.unprotect(datagram))
    assert decrypted["A->B"] == sent["A"] and decrypted["B->A"] == sent["B"]
    assert len(recorded) == 2 * (TONE_PACKETS + 3)

    # No tone payload in clear between the CTAs: not one 16-byte piece of any payload sent.
    wire = b"".join(d for _, d in recorded)
    pieces = set()
    for name in "AB":
        for packet in sent[name]:
            if 192 <= packet[1] <= 223:
                pieces.update(packet[8 + i:24 + i] for i in range(0, len(packet) - 24, 4))
            else:
                payload = RtpPacket.parse(packet).payload
                pieces.update(payload[i:i + 16] for i in range(0, len(payload) - 15, 8))
    assert pieces and not [p for p in pieces if p in wire]
    assert ulaw_encode(r["ab"])[:32] not in wire and ulaw_encode(r["ba"])[:32] not in wire


def test_a_session_binds_an_even_rtp_port_with_rtcp_next_to_it_and_stops_cleanly() -> None:
    async def main():
        a, _ = pair()
        session = MediaSession(a)
        with pytest.raises(RuntimeError):
            session.line_address
        await session.start()
        rtp_port = session.line_address[1]
        assert rtp_port % 2 == 0 and session.line_rtcp_address == ("127.0.0.1", rtp_port + 1)
        assert session.network_address[1] not in (rtp_port, rtp_port + 1)
        with pytest.raises(RuntimeError):
            await session.start()
        s = session.stats()
        assert s["running"] and s["line_address"] == f"127.0.0.1:{rtp_port}"
        with capture_logs() as logs:
            await session.stop()
            await session.stop()  # twice is fine
        assert [e["event"] for e in logs if e["log_level"] == "info"] == ["media stopped"]
        assert not session.stats()["running"]

    run_on("asyncio", main())


def test_sessions_take_their_ports_from_the_configured_range_until_it_is_full() -> None:
    from common.ports import free_port_block

    low = free_port_block(6, kinds=("udp",), even=True)
    port_range = (low, low + 5)  # room for exactly two calls (3 ports each)

    async def main():
        sessions = [MediaSession(pair()[0], port_range=port_range) for _ in range(3)]
        await sessions[0].start()
        await sessions[1].start()
        used = set()
        for s in sessions[:2]:
            rtp = s.line_address[1]
            assert rtp % 2 == 0 and s.line_rtcp_address[1] == rtp + 1
            used |= {rtp, rtp + 1, s.network_address[1]}
        assert used == set(range(low, low + 6))
        with pytest.raises(OSError, match=f"in {low}-{low + 5}"):
            await sessions[2].start()
        for s in sessions[:2]:
            await s.stop()

    run_on("asyncio", main())


def test_media_port_range_config_is_checked() -> None:
    from ctad.config import MediaSection

    assert MediaSection().port_range is None
    assert MediaSection(port_min=40000, port_max=40999).port_range == (40000, 40999)
    with pytest.raises(ValueError, match="go together"):
        MediaSection(port_min=40000)
    with pytest.raises(ValueError, match="at least 3 ports"):
        MediaSection(port_min=40000, port_max=40001)
