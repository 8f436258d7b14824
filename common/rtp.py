"""RTP and RTCP packets (RFC 3550) as kerbtel's media layer sees them.

- `RtpPacket`: version 2, padding, the RFC 3550 5.3.1 header extension (profile + opaque words;
  RFC 8285 one- and two-byte element parsing is left to whoever needs it), CSRCs, marker, payload
  type, sequence number, timestamp, SSRC, payload. `parse()` / `__bytes__` round-trip byte for byte.
- `rtp_header_length()`: the fast path for SRTP, which only needs to know where the payload starts
  (fixed header + CSRCs + extension) and never builds a dataclass per packet.
- `RtcpPacket`: one RTCP packet of a compound (SR, RR, SDES, BYE, APP or any other type 192-223):
  common header + sender SSRC + opaque rest, enough for SRTCP (which encrypts everything after the
  first 8 bytes) and for counting reports. `parse_compound()` checks RFC 3550 6.1/A.2 validity.
- Serial-number arithmetic (RFC 1982) for 16-bit sequence numbers and 32-bit timestamps:
  `uint16_gt`, `uint16_add`, `uint32_gt`, `uint32_add`.

Errors: every malformed input raises `RtpError` (a `ValueError`) with one exact message per case;
the messages are part of the test suite (tests/vectors/rtp/README.md lists them per file).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "RtpError",
    "RtpPacket",
    "RtcpPacket",
    "rtp_header_length",
    "is_rtcp",
    "uint16_add",
    "uint16_gt",
    "uint32_add",
    "uint32_gt",
    "RTP_VERSION",
    "RTP_HEADER_LENGTH",
    "RTCP_SR",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_BYE",
    "RTCP_APP",
    "PT_PCMU",
    "PT_PCMA",
]

RTP_VERSION = 2
RTP_HEADER_LENGTH = 12
PT_PCMU = 0
PT_PCMA = 8
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
_RTCP_TYPES = range(192, 224)  # RFC 5761 4: the RTCP packet types that collide with RTP PT 64-95

_FIXED = struct.Struct(">BBHII")
_EXT = struct.Struct(">HH")
_RTCP = struct.Struct(">BBH")
_U32 = struct.Struct(">I")


class RtpError(ValueError):
    """A malformed RTP or RTCP packet (the peer's problem)."""


# --- serial numbers (RFC 1982) --------------------------------------------------------------


def uint16_add(a: int, b: int) -> int:
    """a + b modulo 2^16 (b may be negative)."""
    return (a + b) & 0xFFFF


def uint16_gt(a: int, b: int) -> bool:
    """True if sequence number a is "after" b (RFC 1982 serial comparison, 16 bits)."""
    half = 0x8000
    return (a > b and a - b < half) or (a < b and b - a > half)


def uint32_add(a: int, b: int) -> int:
    """a + b modulo 2^32 (b may be negative)."""
    return (a + b) & 0xFFFFFFFF


def uint32_gt(a: int, b: int) -> bool:
    """True if 32-bit serial number a (an RTP timestamp) is "after" b."""
    half = 0x80000000
    return (a > b and a - b < half) or (a < b and b - a > half)


# --- RTP ------------------------------------------------------------------------------------


def rtp_header_length(data: bytes) -> int:
    """Bytes of RTP header (fixed part, CSRCs, header extension) before the payload.

    Checks what SRTP needs to find the payload: the length, the version, the CSRC list and the
    extension fit. Padding is not looked at (SRTP encrypts it with the payload).
    """
    n = len(data)
    if n < RTP_HEADER_LENGTH:
        raise RtpError(f"RTP packet of {n} bytes is shorter than its 12-byte header")
    b0 = data[0]
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6} is not 2")
    pos = RTP_HEADER_LENGTH + 4 * (b0 & 0x0F)
    if pos > n:
        raise RtpError(f"RTP packet of {n} bytes is too short for its {b0 & 0x0F} CSRCs")
    if b0 & 0x10:
        if pos + 4 > n:
            raise RtpError(f"RTP header extension header needs 4 bytes at offset {pos}, {n - pos} left")
        words = (data[pos + 2] << 8) | data[pos + 3]
        pos += 4 + 4 * words
        if pos > n:
            raise RtpError(f"RTP header extension of {words} words does not fit in the {n} bytes")
    return pos


def _padding_size(data: bytes, start: int, what: str) -> int:
    """The padding count of a packet whose P bit is set (payload starts at `start`)."""
    n = len(data)
    if n == start:
        raise RtpError(f"{what} padding bit is set but there is no byte for the padding count")
    count = data[-1]
    if count == 0:
        raise RtpError(f"{what} padding count 0 is invalid (the count byte counts itself)")
    if count > n - start:
        raise RtpError(f"{what} padding count {count} exceeds the {n - start} bytes after the header")
    return count


@dataclass(slots=True)
class RtpPacket:
    """An RTP packet (RFC 3550 5.1). `padding_size` 0 means no padding (P bit clear).

    `extension_profile` None means no header extension (X bit clear); otherwise `extension` holds
    the extension's words (a multiple of 4 bytes, kept opaque).
    """

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extension: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        start = rtp_header_length(data)
        b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
        cc = b0 & 0x0F
        csrc = list(struct.unpack_from(f">{cc}I", data, RTP_HEADER_LENGTH)) if cc else []
        profile = None
        ext = b""
        if b0 & 0x10:
            pos = RTP_HEADER_LENGTH + 4 * cc
            profile, _words = _EXT.unpack_from(data, pos)
            ext = bytes(data[pos + 4 : start])
        padding = _padding_size(data, start, "RTP") if b0 & 0x20 else 0
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[start : len(data) - padding]),
            marker=bool(b1 & 0x80),
            csrc=csrc,
            extension_profile=profile,
            extension=ext,
            padding_size=padding,
        )

    def __bytes__(self) -> bytes:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RTP payload type {self.payload_type} does not fit in 7 bits")
        if len(self.csrc) > 15:
            raise ValueError(f"RTP packet cannot carry {len(self.csrc)} CSRCs (at most 15)")
        if not 0 <= self.padding_size <= 255:
            raise ValueError(f"RTP padding of {self.padding_size} bytes does not fit its count byte")
        b0 = RTP_VERSION << 6 | len(self.csrc)
        if self.padding_size:
            b0 |= 0x20
        parts = [b""]
        if self.extension_profile is not None:
            b0 |= 0x10
            if len(self.extension) % 4:
                raise ValueError(f"RTP header extension of {len(self.extension)} bytes is not whole 32-bit words")
            parts.append(_EXT.pack(self.extension_profile, len(self.extension) // 4) + self.extension)
        try:
            parts[0] = _FIXED.pack(
                b0, (0x80 if self.marker else 0) | self.payload_type, self.sequence_number, self.timestamp, self.ssrc
            ) + b"".join(_U32.pack(c) for c in self.csrc)
        except struct.error as exc:
            raise ValueError(f"RTP header field out of range: {exc}") from None
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes([self.padding_size]))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 4 demultiplexing: the second byte of RTCP is a packet type in 192-223."""
    return len(data) >= 2 and 192 <= data[1] <= 223


# --- RTCP -----------------------------------------------------------------------------------


@dataclass(slots=True)
class RtcpPacket:
    """One RTCP packet: common header (RFC 3550 6.4-6.6), the SSRC that follows it, the rest.

    `count` is the 5-bit RC/SC/subtype field. `ssrc` is None only for a packet with no body at all
    (a BYE with count 0). `body` is everything after the SSRC, padding excluded, kept opaque.
    """

    packet_type: int
    count: int = 0
    ssrc: int | None = 0
    body: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtcpPacket:
        """Exactly one RTCP packet filling `data`."""
        packet, end = cls._pull(data, 0)
        if end != len(data):
            raise RtpError(f"RTCP packet ends at offset {end} but {len(data) - end} more bytes follow")
        return packet

    @classmethod
    def parse_compound(cls, data: bytes) -> list[RtcpPacket]:
        """The packets of a compound RTCP packet, checked as RFC 3550 A.2 says.

        The first packet must be SR or RR, only the last one may be padded, and the length fields
        must add up to the datagram's length.
        """
        if not data:
            raise RtpError("RTCP compound packet is empty")
        packets = []
        pos = 0
        while pos < len(data):
            if packets and packets[-1].padding_size:
                raise RtpError("RTCP padding is only allowed in the last packet of a compound")
            packet, pos = cls._pull(data, pos)
            packets.append(packet)
        if packets[0].packet_type not in (RTCP_SR, RTCP_RR):
            raise RtpError(f"RTCP compound packet starts with type {packets[0].packet_type}, not SR or RR")
        return packets

    @classmethod
    def _pull(cls, data: bytes, pos: int) -> tuple[RtcpPacket, int]:
        left = len(data) - pos
        if left < 4:
            raise RtpError(f"RTCP packet of {left} bytes at offset {pos} is shorter than its 4-byte header")
        b0, pt, words = _RTCP.unpack_from(data, pos)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {b0 >> 6} is not 2")
        if pt not in _RTCP_TYPES:
            raise RtpError(f"RTCP packet type {pt} is outside 192-223")
        size = 4 + 4 * words
        if size > left:
            raise RtpError(f"RTCP length field says {size} bytes at offset {pos}, {left} left")
        end = pos + size
        packet = data[pos:end]
        padding = _padding_size(packet, 4, "RTCP") if b0 & 0x20 else 0
        if size == 4:
            ssrc = None
        elif size - padding < 8:
            raise RtpError(f"RTCP packet of {size} bytes has no room for its SSRC")
        else:
            ssrc = _U32.unpack_from(packet, 4)[0]
        body = bytes(packet[8 : size - padding]) if ssrc is not None else b""
        return cls(pt, b0 & 0x1F, ssrc, body, padding), end

    def __bytes__(self) -> bytes:
        if not 0 <= self.count <= 31:
            raise ValueError(f"RTCP count {self.count} does not fit in 5 bits")
        if self.packet_type not in _RTCP_TYPES:
            raise ValueError(f"RTCP packet type {self.packet_type} is outside 192-223")
        if self.ssrc is None:
            if self.body or self.padding_size:
                raise ValueError("an RTCP packet without SSRC cannot carry a body or padding")
            return _RTCP.pack(RTP_VERSION << 6 | self.count, self.packet_type, 0)
        pad = bytes(self.padding_size - 1) + bytes([self.padding_size]) if self.padding_size else b""
        size = 8 + len(self.body) + len(pad)
        if size % 4:
            raise ValueError(f"RTCP packet of {size} bytes is not whole 32-bit words")
        b0 = RTP_VERSION << 6 | (0x20 if pad else 0) | self.count
        return _RTCP.pack(b0, self.packet_type, size // 4 - 1) + _U32.pack(self.ssrc) + self.body + pad

    @staticmethod
    def compound(packets: list[RtcpPacket]) -> bytes:
        return b"".join(bytes(p) for p in packets)

