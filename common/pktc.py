"""PacketCable Kerberized key-management messages (docs/protocol.md, "Key management (pktc)").

Wire format only (plus the HMAC keying both engines share); no sockets, no clock. The layout is
the one Wireshark's `pktc` dissector decodes (UDP 1293, elsewhere `-d udp.port==N,pktc`):

    header:       message id (1) | DOI (1) = 0x01 IPsec | version (1) = 0x10 (1.0)
    Wake Up      (0x01): server nonce (4) | server principal, NUL-terminated
    AP Request   (0x02): AP-REQ DER | server nonce (4) | SPI (4) | suite list | re-establish (1) | HMAC (20)
    AP Reply     (0x03): AP-REP DER | SPI (4) | suite list (count 1) | lifetime (4) | grace (4) |
                         re-establish (1) | ack required (1) | HMAC (20)
    SA Recovered (0x04): HMAC (20)
    Rekey        (0x05): nonce (4) | principal, NUL-terminated | timestamp "YYMMDDhhmmssZ" (13) |
                         SPI (4) | suite list | lifetime (4) | grace (4) | re-establish (1) | HMAC (20)
    Error Reply  (0x06): KRB-ERROR DER
    suite list:  count (1) | count x { auth id (1), encryption id (1) }   (IANA IPsec numbers)

The DER messages carry no length prefix: their end is read from their own DER header (the
dissector hands the rest of the datagram to the Kerberos dissector, which does the same).

Errors: every malformed input raises `PktcFormatError` (a ValueError) with one exact message per
case, naming the message and field. Flags must be 0 or 1 and nothing may follow the last field,
so `bytes(parse(data)) == data` for every accepted datagram and the HMAC can be recomputed over
`signed_bytes()`.

HMACs: HMAC-SHA-1 (20 bytes, the field size the layout fixes) keyed with
`hmac_key(secret, purpose)` = HKDF-SHA-256(IKM = key bytes, salt = none,
info = "kerbtel pktc v1" 0x00 purpose, L = 20); compared in constant time. Which secret and what
each HMAC covers is in docs/protocol.md.
"""

from __future__ import annotations

import hmac as _hmac
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from hashlib import sha1
from typing import ClassVar, Union

from common.esp import hkdf_sha256

__all__ = [
    "PktcFormatError",
    "MSG_WAKE_UP",
    "MSG_AP_REQUEST",
    "MSG_AP_REPLY",
    "MSG_SA_RECOVERED",
    "MSG_REKEY",
    "MSG_ERROR_REPLY",
    "DOI_IPSEC",
    "VERSION",
    "HMAC_LEN",
    "DEFAULT_PORT",
    "WakeUp",
    "ApRequest",
    "ApReply",
    "SaRecovered",
    "Rekey",
    "ErrorReply",
    "KmMessage",
    "parse_km_message",
    "peek_message_id",
    "der_length",
    "hmac_key",
    "compute_hmac",
    "verify_hmac",
    "PURPOSE_AP_REQUEST",
    "PURPOSE_AP_REPLY",
    "PURPOSE_SA_RECOVERED",
    "PURPOSE_REKEY",
    "PURPOSE_REKEY_SUBKEY",
    "format_timestamp",
    "sa_recovered_hmac",
    "rekey_material",
]

MSG_WAKE_UP = 0x01
MSG_AP_REQUEST = 0x02
MSG_AP_REPLY = 0x03
MSG_SA_RECOVERED = 0x04
MSG_REKEY = 0x05
MSG_ERROR_REPLY = 0x06
DOI_IPSEC = 0x01
VERSION = 0x10  # major 1, minor 0
HMAC_LEN = 20
DEFAULT_PORT = 1293  # Wireshark's registration for pktc

_NAMES = {
    MSG_WAKE_UP: "Wake Up",
    MSG_AP_REQUEST: "AP Request",
    MSG_AP_REPLY: "AP Reply",
    MSG_SA_RECOVERED: "SA Recovered",
    MSG_REKEY: "Rekey",
    MSG_ERROR_REPLY: "Error Reply",
}
_TAG_AP_REQ = 0x6E  # [APPLICATION 14]
_TAG_AP_REP = 0x6F  # [APPLICATION 15]
_TAG_KRB_ERROR = 0x7E  # [APPLICATION 30]
_U32 = struct.Struct(">I")
MAX_PRINCIPAL = 255  # bytes, without the NUL; a principal name longer than this is not ours


class PktcFormatError(ValueError):
    """A key-management datagram that does not follow the layout (the sender's problem)."""


# --- HMAC keying ----------------------------------------------------------------------------

_LABEL = b"kerbtel pktc v1"
PURPOSE_AP_REQUEST = b"AP Request"  # secret: the ticket session key
PURPOSE_AP_REPLY = b"AP Reply"  # secret: the sub-key the AP-REP carries
PURPOSE_SA_RECOVERED = b"SA Recovered"  # secret: the sub-key being acknowledged
PURPOSE_REKEY = b"Rekey"  # secret: the sub-key of the SA pair being replaced
PURPOSE_REKEY_SUBKEY = b"Rekey sub-key"  # the next sub-key, from the current one


def hmac_key(secret: bytes, purpose: bytes, *, length: int = HMAC_LEN, context: bytes = b"") -> bytes:
    """HKDF-SHA-256(IKM = secret, info = "kerbtel pktc v1" 0x00 purpose [0x00 context])."""
    info = _LABEL + b"\x00" + purpose + ((b"\x00" + context) if context else b"")
    return hkdf_sha256(secret, info, length)


def compute_hmac(key: bytes, *parts: bytes) -> bytes:
    mac = _hmac.new(key, digestmod=sha1)
    for part in parts:
        mac.update(part)
    return mac.digest()


def verify_hmac(key: bytes, received: bytes, *parts: bytes) -> bool:
    """Constant-time comparison of `received` with HMAC-SHA-1(key, parts...)."""
    return _hmac.compare_digest(compute_hmac(key, *parts), bytes(received))


# --- reading helpers ------------------------------------------------------------------------


def der_length(data: bytes, offset: int, what: str) -> int:
    """Total length (identifier + length octets + contents) of the DER element at `offset`."""
    end = len(data)
    if offset >= end:
        raise PktcFormatError(f"{what} is missing")
    if data[offset] & 0x1F == 0x1F:
        raise PktcFormatError(f"{what} has a multi-byte tag 0x{data[offset]:02x}, not a Kerberos message")
    if offset + 1 >= end:
        raise PktcFormatError(f"{what} is truncated in its DER length")
    first = data[offset + 1]
    if first < 0x80:
        header, length = 2, first
    elif first == 0x80:
        raise PktcFormatError(f"{what} uses the indefinite length form, which DER forbids")
    else:
        count = first & 0x7F
        if count > 4:
            raise PktcFormatError(f"{what} has a {count}-byte DER length")
        if offset + 2 + count > end:
            raise PktcFormatError(f"{what} is truncated in its DER length")
        header, length = 2 + count, int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    if offset + header + length > end:
        raise PktcFormatError(f"{what} claims {length} content bytes but only {end - offset - header} remain")
    return header + length


class _Reader:
    __slots__ = ("data", "pos", "name")

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.pos = 3
        self.name = name

    def take(self, n: int, field: str) -> bytes:
        left = len(self.data) - self.pos
        if left < n:
            raise PktcFormatError(f"{self.name} truncated in {field} (need {n} bytes, {left} left)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u32(self, field: str) -> int:
        return _U32.unpack(self.take(4, field))[0]

    def flag(self, field: str) -> bool:
        value = self.u8(field)
        if value > 1:
            raise PktcFormatError(f"{self.name} {field} is 0x{value:02x}, not 0 or 1")
        return bool(value)

    def der(self, tag: int, what: str) -> bytes:
        if self.pos < len(self.data) and self.data[self.pos] != tag:
            raise PktcFormatError(f"{self.name} carries outer tag 0x{self.data[self.pos]:02x}, not {what} (0x{tag:02x})")
        n = der_length(self.data, self.pos, f"{self.name} {what}")
        return self.take(n, what)

    def spi(self) -> int:
        value = self.u32("SPI")
        if value < 256:
            raise PktcFormatError(f"{self.name} SPI {value} is reserved (RFC 4303: 0-255)")
        return value

    def suites(self, *, exactly_one: bool = False) -> tuple[tuple[int, int], ...]:
        count = self.u8("suite count")
        if count == 0:
            raise PktcFormatError(f"{self.name} lists no cipher suite")
        if exactly_one and count != 1:
            raise PktcFormatError(f"{self.name} selects {count} cipher suites; exactly 1 expected")
        raw = self.take(2 * count, "suite list")
        return tuple((raw[i], raw[i + 1]) for i in range(0, len(raw), 2))

    def principal(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise PktcFormatError(f"{self.name} server principal has no NUL terminator")
        raw = self.data[self.pos : end]
        if not raw:
            raise PktcFormatError(f"{self.name} server principal is empty")
        if len(raw) > MAX_PRINCIPAL:
            raise PktcFormatError(f"{self.name} server principal is {len(raw)} bytes long (limit {MAX_PRINCIPAL})")
        if any(b < 0x21 or b > 0x7E for b in raw):
            raise PktcFormatError(f"{self.name} server principal is not printable ASCII")
        self.pos = end + 1
        return raw.decode("ascii")

    def timestamp(self) -> datetime:
        raw = self.take(13, "timestamp")
        if raw[12:] != b"Z" or not raw[:12].isdigit():
            raise PktcFormatError(f"{self.name} timestamp {raw!r} is not YYMMDDhhmmssZ")
        t = raw.decode("ascii")
        try:
            return datetime(2000 + int(t[0:2]), int(t[2:4]), int(t[4:6]), int(t[6:8]), int(t[8:10]), int(t[10:12]), tzinfo=timezone.utc)
        except ValueError:
            raise PktcFormatError(f"{self.name} timestamp {raw!r} is not a valid date") from None

    def hmac(self) -> bytes:
        value = self.take(HMAC_LEN, "HMAC")
        self.end()
        return value

    def end(self) -> None:
        left = len(self.data) - self.pos
        if left:
            raise PktcFormatError(f"{self.name} has {left} trailing bytes")


def _header(msg_id: int) -> bytes:
    return bytes((msg_id, DOI_IPSEC, VERSION))


def _check_header(data: bytes) -> int:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PktcFormatError(f"expected bytes, got {type(data).__name__}")
    if len(data) < 3:
        raise PktcFormatError(f"key-management message of {len(data)} bytes is shorter than its 3-byte header")
    msg_id, doi, version = data[0], data[1], data[2]
    if msg_id not in _NAMES:
        raise PktcFormatError(f"unknown key-management message id 0x{msg_id:02x}")
    if doi != DOI_IPSEC:
        raise PktcFormatError(f"DOI 0x{doi:02x} is not IPsec (0x01)")
    if version != VERSION:
        raise PktcFormatError(f"version {version >> 4}.{version & 15} is not 1.0 (0x10)")
    return msg_id


def _suite_bytes(suites: tuple[tuple[int, int], ...]) -> bytes:
    return bytes([len(suites)]) + b"".join(bytes((a, e)) for a, e in suites)


def format_timestamp(when: datetime) -> bytes:
    """The Rekey timestamp, `YYMMDDhhmmssZ` in UTC (years 2000-2099)."""
    when = when.astimezone(timezone.utc)
    if not 2000 <= when.year <= 2099:
        raise ValueError(f"year {when.year} does not fit the two-digit Rekey timestamp")
    return when.strftime("%y%m%d%H%M%SZ").encode("ascii")


class _Message:
    MSG_ID: ClassVar[int]

    @classmethod
    def parse(cls, data: bytes):
        data = bytes(data)
        msg_id = _check_header(data)
        if msg_id != cls.MSG_ID:
            raise PktcFormatError(f"message id 0x{msg_id:02x} ({_NAMES[msg_id]}) is not {_NAMES[cls.MSG_ID]} (0x{cls.MSG_ID:02x})")
        return cls._parse_body(_Reader(data, _NAMES[cls.MSG_ID]))

    def signed_bytes(self) -> bytes:
        """Every byte of the message before its HMAC (header included): what the HMAC covers."""
        return bytes(self)[:-HMAC_LEN]


# --- the six messages -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WakeUp(_Message):
    """The SC asks a CTA to key up (run an AP exchange). Unauthenticated by design."""

    MSG_ID: ClassVar[int] = MSG_WAKE_UP
    server_nonce: int
    server_principal: str

    @classmethod
    def _parse_body(cls, r: _Reader) -> WakeUp:
        nonce = r.u32("server nonce")
        principal = r.principal()
        r.end()
        return cls(nonce, principal)

    def __bytes__(self) -> bytes:
        return _header(MSG_WAKE_UP) + _U32.pack(self.server_nonce) + self.server_principal.encode("ascii") + b"\x00"


@dataclass(frozen=True, slots=True)
class ApRequest(_Message):
    MSG_ID: ClassVar[int] = MSG_AP_REQUEST
    ap_req: bytes
    server_nonce: int
    spi: int  # the CTA's inbound SPI: packets SC -> CTA carry it
    suites: tuple[tuple[int, int], ...]  # (auth id, enc id), the CTA's preference order
    reestablish: bool
    hmac: bytes = b"\x00" * HMAC_LEN

    @classmethod
    def _parse_body(cls, r: _Reader) -> ApRequest:
        ap_req = r.der(_TAG_AP_REQ, "AP-REQ")
        nonce = r.u32("server nonce")
        spi = r.spi()
        suites = r.suites()
        flag = r.flag("re-establish flag")
        return cls(ap_req, nonce, spi, suites, flag, r.hmac())

    def __bytes__(self) -> bytes:
        return (
            _header(MSG_AP_REQUEST) + self.ap_req + _U32.pack(self.server_nonce) + _U32.pack(self.spi)
            + _suite_bytes(self.suites) + bytes((int(self.reestablish),)) + self.hmac
        )


@dataclass(frozen=True, slots=True)
class ApReply(_Message):
    MSG_ID: ClassVar[int] = MSG_AP_REPLY
    ap_rep: bytes
    spi: int  # the SC's inbound SPI: packets CTA -> SC carry it
    suite: tuple[int, int]  # the selected (auth id, enc id)
    lifetime: int  # seconds
    grace: int  # seconds
    reestablish: bool
    ack_required: bool
    hmac: bytes = b"\x00" * HMAC_LEN

    @classmethod
    def _parse_body(cls, r: _Reader) -> ApReply:
        ap_rep = r.der(_TAG_AP_REP, "AP-REP")
        spi = r.spi()
        (suite,) = r.suites(exactly_one=True)
        lifetime = r.u32("SA lifetime")
        grace = r.u32("grace period")
        reestablish = r.flag("re-establish flag")
        ack = r.flag("ack-required flag")
        return cls(ap_rep, spi, suite, lifetime, grace, reestablish, ack, r.hmac())

    def __bytes__(self) -> bytes:
        return (
            _header(MSG_AP_REPLY) + self.ap_rep + _U32.pack(self.spi) + _suite_bytes((self.suite,))
            + _U32.pack(self.lifetime) + _U32.pack(self.grace)
            + bytes((int(self.reestablish), int(self.ack_required))) + self.hmac
        )


@dataclass(frozen=True, slots=True)
class SaRecovered(_Message):
    """The CTA's acknowledgement of a new SA pair (AP Reply or Rekey with ack required)."""

    MSG_ID: ClassVar[int] = MSG_SA_RECOVERED
    hmac: bytes

    @classmethod
    def _parse_body(cls, r: _Reader) -> SaRecovered:
        return cls(r.hmac())

    def __bytes__(self) -> bytes:
        return _header(MSG_SA_RECOVERED) + self.hmac


@dataclass(frozen=True, slots=True)
class Rekey(_Message):
    MSG_ID: ClassVar[int] = MSG_REKEY
    nonce: int
    server_principal: str
    timestamp: datetime  # whole seconds, UTC
    spi: int  # the SC's new inbound SPI
    suites: tuple[tuple[int, int], ...]
    lifetime: int
    grace: int
    reestablish: bool
    hmac: bytes = b"\x00" * HMAC_LEN

    @classmethod
    def _parse_body(cls, r: _Reader) -> Rekey:
        nonce = r.u32("nonce")
        principal = r.principal()
        timestamp = r.timestamp()
        spi = r.spi()
        suites = r.suites()
        lifetime = r.u32("SA lifetime")
        grace = r.u32("grace period")
        flag = r.flag("re-establish flag")
        return cls(nonce, principal, timestamp, spi, suites, lifetime, grace, flag, r.hmac())

    def __bytes__(self) -> bytes:
        return (
            _header(MSG_REKEY) + _U32.pack(self.nonce) + self.server_principal.encode("ascii") + b"\x00"
            + format_timestamp(self.timestamp) + _U32.pack(self.spi) + _suite_bytes(self.suites)
            + _U32.pack(self.lifetime) + _U32.pack(self.grace) + bytes((int(self.reestablish),)) + self.hmac
        )


@dataclass(frozen=True, slots=True)
class ErrorReply(_Message):
    """A KRB-ERROR (unauthenticated, as in Kerberos): advisory for the CTA."""

    MSG_ID: ClassVar[int] = MSG_ERROR_REPLY
    krb_error: bytes

    @classmethod
    def _parse_body(cls, r: _Reader) -> ErrorReply:
        value = r.der(_TAG_KRB_ERROR, "KRB-ERROR")
        r.end()
        return cls(value)

    def __bytes__(self) -> bytes:
        return _header(MSG_ERROR_REPLY) + self.krb_error


KmMessage = Union[WakeUp, ApRequest, ApReply, SaRecovered, Rekey, ErrorReply]
_BY_ID: dict[int, type] = {c.MSG_ID: c for c in (WakeUp, ApRequest, ApReply, SaRecovered, Rekey, ErrorReply)}


def parse_km_message(data: bytes) -> KmMessage:
    """Parse any key-management message, dispatching on its message id."""
    msg_id = _check_header(data)
    return _BY_ID[msg_id].parse(data)




def peek_message_id(data: bytes) -> int | None:
    """The message id byte if `data` is long enough to have one (for error-reply decisions)."""
    return data[0] if len(data) >= 1 else None


# --- keys shared by both engines ------------------------------------------------------------

_SPI_SPACE = (1 << 32) - 256


def sa_recovered_hmac(subkey: bytes, sc_spi: int, cta_spi: int) -> bytes:
    """The SA Recovered HMAC: keyed from the acknowledged sub-key, over the 3-byte header and the
    two SPIs of the SA pair it acknowledges (SC inbound, CTA inbound; not sent, both sides know)."""
    key = hmac_key(subkey, PURPOSE_SA_RECOVERED)
    return compute_hmac(key, _header(MSG_SA_RECOVERED), _U32.pack(sc_spi), _U32.pack(cta_spi))


def rekey_material(subkey: bytes, rekey: Rekey, old_cta_spi: int) -> tuple[bytes, int]:
    """(next sub-key, the CTA's next inbound SPI) for a Rekey, from the current sub-key.

    next sub-key = HKDF-SHA-256(current sub-key, "kerbtel pktc v1" 0x00 "Rekey sub-key" 0x00
    nonce(4) timestamp(13) new-SC-SPI(4)), as long as the current one. The Rekey has room for one
    SPI only (the SC's), so the CTA's next inbound SPI is derived too: 256 + (the first 4 bytes of
    HKDF(next sub-key, "... Rekey CTA SPI") mod 2^32-256), moved up by one while it equals the
    CTA's current inbound SPI or the SC's new SPI.
    """
    context = _U32.pack(rekey.nonce) + format_timestamp(rekey.timestamp) + _U32.pack(rekey.spi)
    new_subkey = hmac_key(subkey, PURPOSE_REKEY_SUBKEY, length=len(subkey), context=context)
    raw = hmac_key(new_subkey, b"Rekey CTA SPI", length=4)
    spi = 256 + _U32.unpack(raw)[0] % _SPI_SPACE
    while spi in (old_cta_spi, rekey.spi):
        spi = 256 + (spi - 256 + 1) % _SPI_SPACE
    return new_subkey, spi
