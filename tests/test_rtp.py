"""common.rtp: RTP/RTCP packets against the golden vectors in tests/vectors/rtp, serial numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.rtp import (
    RTCP_BYE,
    RTCP_RR,
    RTCP_SDES,
    RTCP_SR,
    RtcpPacket,
    RtpError,
    RtpPacket,
    is_rtcp,
    rtp_header_length,
    uint16_add,
    uint16_gt,
    uint32_add,
    uint32_gt,
)

VECTORS = Path(__file__).parent / "vectors" / "rtp"


def load(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


# --- golden packets -------------------------------------------------------------------------


def test_pcmu_marker() -> None:
    data = load("pcmu_marker.bin")
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.marker, p.sequence_number, p.timestamp, p.ssrc) == (0, True, 0x1234, 160, 0xDEADBEEF)
    assert p.payload == b"\xff" * 160 and p.csrc == [] and p.extension_profile is None and p.padding_size == 0
    assert rtp_header_length(data) == 12
    assert bytes(p) == data


def test_csrc_and_extension() -> None:
    data = load("csrc_extension.bin")
    p = RtpPacket.parse(data)
    assert p.payload_type == 8 and p.sequence_number == 0xFFFF and p.timestamp == 0xFFFFFFF0
    assert p.csrc == [0xAABBCCDD, 0x11223344]
    assert p.extension_profile == 0xBEDE and p.extension == bytes.fromhex("10ab0000")
    assert p.payload == b"\xd5" * 20
    assert rtp_header_length(data) == 12 + 8 + 8
    assert bytes(p) == data


def test_padding() -> None:
    data = load("padding.bin")
    p = RtpPacket.parse(data)
    assert p.payload_type == 101 and p.padding_size == 4 and p.payload == bytes.fromhex("010a00a0")
    assert bytes(p) == data


def test_rfc7714_rtp_plaintext() -> None:
    data = load("rfc7714_rtp.bin")
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.sequence_number, p.ssrc) == (64, 0xF17B, 0x5501A0B2)
    assert p.payload == b"Gallia est omnis divisa in partes tres"
    assert bytes(p) == data


def test_rtcp_sr_sdes() -> None:
    data = load("rtcp_sr_sdes.bin")
    sr, sdes = RtcpPacket.parse_compound(data)
    assert (sr.packet_type, sr.count, sr.ssrc, len(sr.body)) == (RTCP_SR, 0, 0xDEADBEEF, 20)
    assert (sdes.packet_type, sdes.count, sdes.ssrc) == (RTCP_SDES, 1, 0xDEADBEEF)
    assert sdes.body.startswith(b"\x01\x12cta-a@kerbtel.test")
    assert RtcpPacket.compound([sr, sdes]) == data
    assert is_rtcp(data) and not is_rtcp(load("pcmu_marker.bin"))


def test_rtcp_rr_bye() -> None:
    data = load("rtcp_rr_bye.bin")
    rr, bye = RtcpPacket.parse_compound(data)
    assert (rr.packet_type, rr.count, rr.ssrc, len(rr.body)) == (RTCP_RR, 1, 0x01020304, 24)
    assert (bye.packet_type, bye.count, bye.ssrc, bye.body) == (RTCP_BYE, 1, 0x01020304, b"")
    assert RtcpPacket.compound([rr, bye]) == data
    assert RtcpPacket.parse(data[:32]) == rr


def test_bye_without_ssrc_and_padding_round_trip() -> None:
    bye = RtcpPacket(RTCP_BYE, 0, None)
    assert bytes(bye) == bytes.fromhex("80cb0000")
    assert RtcpPacket.parse(bytes(bye)) == bye
    padded = RtcpPacket(RTCP_RR, 0, 7, b"", padding_size=4)
    assert RtcpPacket.parse(bytes(padded)) == padded


# --- malformed: one exact message per case ---------------------------------------------------

INVALID_RTP = {
    "rtp_short_invalid.bin": "RTP packet of 11 bytes is shorter than its 12-byte header",
    "rtp_version1_invalid.bin": "RTP version 1 is not 2",
    "rtp_csrc_truncated_invalid.bin": "RTP packet of 16 bytes is too short for its 3 CSRCs",
    "rtp_extension_header_truncated_invalid.bin": "RTP header extension header needs 4 bytes at offset 12, 2 left",
    "rtp_extension_overrun_invalid.bin": "RTP header extension of 5 words does not fit in the 24 bytes",
    "rtp_padding_no_count_invalid.bin": "RTP padding bit is set but there is no byte for the padding count",
    "rtp_padding_zero_invalid.bin": "RTP padding count 0 is invalid (the count byte counts itself)",
    "rtp_padding_overrun_invalid.bin": "RTP padding count 9 exceeds the 4 bytes after the header",
}

INVALID_RTCP = {
    "rtcp_empty_invalid.bin": "RTCP compound packet is empty",
    "rtcp_short_invalid.bin": "RTCP packet of 3 bytes at offset 0 is shorter than its 4-byte header",
    "rtcp_version_invalid.bin": "RTCP version 1 is not 2",
    "rtcp_type_invalid.bin": "RTCP packet type 190 is outside 192-223",
    "rtcp_length_overrun_invalid.bin": "RTCP length field says 32 bytes at offset 0, 28 left",
    "rtcp_first_not_sr_rr_invalid.bin": "RTCP compound packet starts with type 202, not SR or RR",
    "rtcp_padding_not_last_invalid.bin": "RTCP padding is only allowed in the last packet of a compound",
    "rtcp_no_ssrc_invalid.bin": "RTCP packet of 8 bytes has no room for its SSRC",
    "rfc7714_rtcp_length_invalid.bin": "RTCP length field says 56 bytes at offset 0, 52 left",
}


@pytest.mark.parametrize("name, message", sorted(INVALID_RTP.items()))
def test_invalid_rtp(name: str, message: str) -> None:
    with pytest.raises(RtpError) as info:
        RtpPacket.parse(load(name))
    assert str(info.value) == message


@pytest.mark.parametrize("name, message", sorted(INVALID_RTCP.items()))
def test_invalid_rtcp(name: str, message: str) -> None:
    with pytest.raises(RtpError) as info:
        RtcpPacket.parse_compound(load(name))
    assert str(info.value) == message


def test_every_invalid_file_is_listed() -> None:
    files = {p.name for p in VECTORS.glob("*_invalid.bin")}
    assert files == set(INVALID_RTP) | set(INVALID_RTCP)


def test_single_rtcp_with_trailing_bytes() -> None:
    with pytest.raises(RtpError) as info:
        RtcpPacket.parse(load("rtcp_rr_bye.bin"))
    assert str(info.value) == "RTCP packet ends at offset 32 but 8 more bytes follow"


def test_encoder_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="payload type 128"):
        bytes(RtpPacket(payload_type=128))
    with pytest.raises(ValueError, match="16 CSRCs"):
        bytes(RtpPacket(csrc=list(range(16))))
    with pytest.raises(ValueError, match="not whole 32-bit words"):
        bytes(RtpPacket(extension_profile=0xBEDE, extension=b"\x01"))
    with pytest.raises(ValueError, match="out of range"):
        bytes(RtpPacket(sequence_number=65536))
    with pytest.raises(ValueError, match="not whole 32-bit words"):
        bytes(RtcpPacket(RTCP_RR, 0, 1, b"\x00"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_parsers_raise_only_rtp_error(data: bytes) -> None:
    for parse in (RtpPacket.parse, RtcpPacket.parse, RtcpPacket.parse_compound):
        try:
            parse(data)
        except RtpError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 127), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=40), st.booleans(), st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    st.one_of(st.none(), st.integers(0, 0xFFFF)), st.integers(0, 4), st.integers(0, 255),
)
def test_rtp_round_trip(pt, seq, ts, ssrc, payload, marker, csrc, profile, words, padding) -> None:
    p = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrc, profile, bytes(4 * words) if profile is not None else b"", padding)
    assert RtpPacket.parse(bytes(p)) == p


# --- serial numbers (RFC 1982) ---------------------------------------------------------------


def test_uint16_serial() -> None:
    assert uint16_gt(1, 0) and not uint16_gt(0, 1)
    assert uint16_gt(0, 0xFFFF) and not uint16_gt(0xFFFF, 0)  # across the wrap
    assert uint16_gt(0x7FFF, 0) and not uint16_gt(0x8001, 0)
    assert not uint16_gt(5, 5)
    assert uint16_add(0xFFFF, 1) == 0 and uint16_add(0, -1) == 0xFFFF


def test_uint32_serial() -> None:
    assert uint32_gt(0, 0xFFFFFFFF) and not uint32_gt(0xFFFFFFFF, 0)
    assert uint32_gt(0x7FFFFFFF, 0) and not uint32_gt(0x80000001, 0)
    assert uint32_add(0xFFFFFF60, 160) == 0
