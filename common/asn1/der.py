"""A small DER writer for the KDC's hot path: values built straight into bytes.

asn1crypto builds a Python object per node (tag fixing, copying, lazy contents) and costs about
as much per AS-REP as the RSA signature. The structures the KDC emits on every request are
fixed-shape, so `common.asn1.encode` writes them with these helpers instead. Everything here
is plain DER (definite, minimal lengths; minimal INTEGERs); tests/test_asn1_der*.py checks the
result is byte-identical to the asn1crypto encoding of the same value, so the two cannot drift.

    der.seq(der.explicit(0, der.integer(5)), der.explicit(1, der.general_string("EXAMPLE.TEST")))

Tags are single identifier octets (tag numbers below 31), which is all Kerberos, PKINIT and
CMS use.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone

__all__ = [
    "application",
    "bit_string",
    "context_primitive",
    "explicit",
    "flags32",
    "general_string",
    "integer",
    "kerberos_time",
    "length",
    "null",
    "octet_string",
    "oid",
    "seq",
    "set_of",
    "tlv",
]

_SHORT = [bytes((n,)) for n in range(0x80)]


def length(n: int) -> bytes:
    """DER length octets for a value of `n` bytes (short form below 128, else minimal long form)."""
    if n < 0x80:
        return _SHORT[n]
    if n < 0x100:
        return bytes((0x81, n))
    if n < 0x10000:
        return bytes((0x82, n >> 8, n & 0xFF))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(octets) > 126:
        raise ValueError(f"DER length {n} is too large")
    return bytes((0x80 | len(octets),)) + octets


def tlv(identifier: int, body: bytes) -> bytes:
    """One TLV with the single identifier octet `identifier` (class | constructed | tag < 31)."""
    n = len(body)
    if n < 0x80:
        return bytes((identifier, n)) + body
    return bytes((identifier,)) + length(n) + body


def seq(*parts: bytes) -> bytes:
    """SEQUENCE of the already-encoded `parts`, in order (absent optional fields: leave out)."""
    return tlv(0x30, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    """SET OF: DER sorts the encodings of the elements (X.690 11.6)."""
    return tlv(0x31, b"".join(sorted(parts)))


def explicit(tag: int, encoded: bytes) -> bytes:
    """[tag] EXPLICIT (context class, constructed) around one encoded value."""
    if not 0 <= tag < 31:
        raise ValueError(f"context tag {tag} needs the high tag number form")
    return tlv(0xA0 | tag, encoded)


def application(tag: int, encoded: bytes) -> bytes:
    """[APPLICATION tag] EXPLICIT (constructed) around one encoded value (Kerberos messages)."""
    if not 0 <= tag < 31:
        raise ValueError(f"application tag {tag} needs the high tag number form")
    return tlv(0x60 | tag, encoded)


def context_primitive(tag: int, contents: bytes) -> bytes:
    """[tag] IMPLICIT over a primitive type (e.g. an IMPLICIT OCTET STRING): context, primitive."""
    if not 0 <= tag < 31:
        raise ValueError(f"context tag {tag} needs the high tag number form")
    return tlv(0x80 | tag, contents)


def integer(value: int) -> bytes:
    """INTEGER, minimal two's complement."""
    value = int(value)
    if 0 <= value < 0x80:
        return bytes((0x02, 0x01, value))
    size = ((value if value >= 0 else ~value).bit_length() + 8) // 8
    return tlv(0x02, value.to_bytes(size, "big", signed=True))


def octet_string(value: bytes) -> bytes:
    return tlv(0x04, bytes(value))


def null() -> bytes:
    return b"\x05\x00"


def bit_string(value: bytes, unused_bits: int = 0) -> bytes:
    """BIT STRING of whole octets (or with `unused_bits` trailing bits that must already be 0)."""
    if not 0 <= unused_bits <= 7 or (unused_bits and not value):
        raise ValueError(f"invalid unused-bits count {unused_bits}")
    return tlv(0x03, bytes((unused_bits,)) + bytes(value))


def flags32(value: int) -> bytes:
    """KerberosFlags: a BIT STRING of exactly 32 bits, bit 0 the MSB (RFC 4120 5.2.8)."""
    value = int(value)
    if not 0 <= value < 2**32:
        raise ValueError(f"KerberosFlags value {value:#x} does not fit in 32 bits")
    return b"\x03\x05\x00" + value.to_bytes(4, "big")


def general_string(value: str) -> bytes:
    """GeneralString carrying UTF-8, as KerberosString / Realm are read and written."""
    return tlv(0x1B, value.encode("utf-8"))


def kerberos_time(value: datetime) -> bytes:
    """KerberosTime: GeneralizedTime 'YYYYMMDDHHMMSSZ', whole seconds, UTC (RFC 4120 5.2.3)."""
    if value.tzinfo is None:
        raise ValueError("KerberosTime needs a timezone-aware datetime (naive times are ambiguous)")
    value = value.astimezone(timezone.utc)
    text = f"{value.year:04d}{value.month:02d}{value.day:02d}{value.hour:02d}{value.minute:02d}{value.second:02d}Z"
    return b"\x18\x0f" + text.encode("ascii")


@functools.lru_cache(maxsize=256)
def oid(dotted: str) -> bytes:
    """OBJECT IDENTIFIER from its dotted form (cached: the KDC uses a handful)."""
    parts = [int(p) for p in dotted.split(".")]
    if len(parts) < 2 or parts[0] > 2 or (parts[0] < 2 and parts[1] > 39) or any(p < 0 for p in parts):
        raise ValueError(f"{dotted!r} is not a valid OBJECT IDENTIFIER")
    arcs = [parts[0] * 40 + parts[1], *parts[2:]]
    body = bytearray()
    for arc in arcs:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))
