"""Kerberos base types (RFC 4120 5.2) and the one decode path every message goes through.

asn1crypto gets three things wrong for Kerberos; they are fixed here once:
- GeneralizedTime would encode fractions and accept any zone; KerberosTime is whole seconds, 'Z'.
- A named-bit BitString drops trailing zero bits; KerberosFlags are always exactly 32 bits.
- Parsing is lazy, so a malformed field would only fail when someone reads it; `decode_as`
  walks the whole tree at decode time and turns every failure into one `Asn1DecodeError`.
- `seq[name].dump()` of an EXPLICIT-tagged field includes the [n] wrapper; `field_bytes` gives the
  value's bytes as received, which is what Kerberos checksums cover.

Decrypted des3-cbc-sha1-kd plaintext keeps its zero block padding; `decode_as(..., padded=True)`
accepts it (and only it) after the value.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from asn1crypto import core, parser, x509

from .constants import APOptions, KDCOptions, TicketFlags


class Asn1DecodeError(ValueError):
    """Received bytes are not a valid encoding of the expected type (the message says where)."""


# --- integers with the ranges RFC 4120 5.2.4 gives them ------------------------------------------


class _RangedInteger(core.Integer):
    _min: int
    _max: int

    def set(self, value):
        if isinstance(value, int) and not self._min <= value <= self._max:
            raise ValueError(f"{type(self).__name__} value {value} is outside [{self._min}, {self._max}]")
        super().set(value)

    @property
    def native(self):
        value = super().native
        if value is not None and not self._min <= value <= self._max:
            raise ValueError(f"{type(self).__name__} value {value} is outside [{self._min}, {self._max}]")
        return value


class Int32(_RangedInteger):
    _min, _max = -(2**31), 2**31 - 1


class UInt32(_RangedInteger):
    _min, _max = 0, 2**32 - 1


class Microseconds(_RangedInteger):
    _min, _max = 0, 999_999


# --- strings -------------------------------------------------------------------------------------


class KerberosString(core.GeneralString):
    """GeneralString (IA5 in RFC 4120); read and written as UTF-8 as MIT and Heimdal do."""

    _encoding = "utf-8"


class Realm(KerberosString):
    pass


# --- KerberosTime --------------------------------------------------------------------------------


def _format_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("KerberosTime needs a timezone-aware datetime (naive times are ambiguous)")
    value = value.astimezone(timezone.utc)
    # Formatted by hand: strftime('%Y') does not zero-pad years before 1000 on glibc.
    return f"{value.year:04d}{value.month:02d}{value.day:02d}{value.hour:02d}{value.minute:02d}{value.second:02d}Z"


class KerberosTime(core.GeneralizedTime):
    """GeneralizedTime 'YYYYMMDDHHMMSSZ' (RFC 4120 5.2.3) as an aware UTC datetime.

    Encoding drops sub-second precision (Kerberos carries microseconds in separate cusec/susec
    fields). Decoding tolerates fractional seconds and a missing 'Z' (taken as UTC), which older
    Heimdal and some appliances send; a zone offset is honoured.
    """

    def set(self, value):
        if isinstance(value, datetime):
            value = _format_time(value)
        super().set(value)

    @property
    def native(self):
        if self.contents is None:
            return None
        if self._native is None:
            parsed = self._parsed_time
            fraction = parsed.pop("fraction", 0)
            if parsed["tzinfo"] is None:
                parsed["tzinfo"] = timezone.utc
            if parsed["year"] == 0:
                raise ValueError(f"KerberosTime {str(self)!r} has year 0")
            value = datetime(**parsed) + timedelta(microseconds=fraction)
            self._native = value.astimezone(timezone.utc)
        return self._native


# --- KerberosFlags -------------------------------------------------------------------------------


class KerberosFlags(core.Primitive):
    """BIT STRING (SIZE (32..MAX)) whose native value is an int in MIT's numbering.

    Bit 0 (the first bit on the wire) is the most significant bit of a 32-bit word, so
    `forwardable` (bit 1) is 0x40000000, as in MIT's TKT_FLG_FORWARDABLE. Subclasses set
    `_flags` to an IntFlag so `.native` reads as named flags. Always encodes exactly 32 bits
    (RFC 4120 5.2.8), including all-zero flags; decoding accepts shorter strings (padded with
    zeros) and longer ones whose extra bits are ignored, since no flag is defined past bit 31.
    """

    tag = 3
    _flags: type[enum.IntFlag] | None = None

    def set(self, value):
        value = int(value)
        if not 0 <= value < 2**32:
            raise ValueError(f"{type(self).__name__} value {value:#x} does not fit in 32 bits")
        self._native = self._flags(value) if self._flags else value
        self.contents = b"\x00" + value.to_bytes(4, "big")
        self._header = None
        if self._trailer != b"":
            self._trailer = b""

    @property
    def native(self):
        if self.contents is None:
            self.set(0)
        if self._native is None:
            contents = self.contents
            if not contents:
                raise ValueError(f"{type(self).__name__} BIT STRING has no unused-bits octet")
            unused = contents[0]
            if unused > 7 or (unused and len(contents) == 1):
                raise ValueError(f"{type(self).__name__} BIT STRING has an invalid unused-bits count {unused}")
            nbits = 8 * (len(contents) - 1) - unused
            value = int.from_bytes(contents[1:], "big") >> unused
            value = value << (32 - nbits) if nbits <= 32 else value >> (nbits - 32)
            self._native = self._flags(value) if self._flags else value
        return self._native


class TicketFlagsBits(KerberosFlags):
    _flags = TicketFlags


class KDCOptionsBits(KerberosFlags):
    _flags = KDCOptions


class APOptionsBits(KerberosFlags):
    _flags = APOptions


# --- OCTET STRINGs that carry another DER value --------------------------------------------------


class DerOctets(core.ParsableOctetString):
    """An OCTET STRING whose contents are the DER of `_inner` (e.g. signedAuthPack's ContentInfo).

    Build from an `_inner` value or raw bytes; `.parsed` decodes strictly (no trailing bytes),
    and the decode path parses it eagerly so a malformed inner value fails at decode time.
    """

    _inner: type[core.Asn1Value]

    def set(self, value):
        if isinstance(value, self._inner):
            super().set(value.dump())
            self._parsed = (value, self._inner, None)
        else:
            super().set(value)

    def parse(self, spec=None, spec_params=None):
        if spec is None and spec_params is None:
            spec = self._inner
        if self._parsed is None or self._parsed[1:3] != (spec, spec_params):
            value = spec.load(self.__bytes__(), strict=True, **(spec_params or {}))
            self._parsed = (value, spec, spec_params)
        return self._parsed[0]


# --- the decode path -----------------------------------------------------------------------------

T = TypeVar("T", bound=core.Asn1Value)


def _walk(value: core.Asn1Value, path: str) -> None:
    """Parse every lazily held child and validate every leaf, naming the path on failure."""
    try:
        if isinstance(value, core.Void):
            return
        if isinstance(value, x509.Certificate):
            # Certificates are checked in full by common.pki (on cryptography). asn1crypto cannot
            # render every legal extension natively -- an otherName holding a context-tagged
            # SEQUENCE, such as id-pkinit-san, fails -- so only the outer structure is parsed here.
            for name in value:
                value[name]
            return
        if isinstance(value, core.Choice):
            _walk(value.chosen, f"{path}.{value.name}")
        elif isinstance(value, core.Sequence):
            for name in value:
                _walk(value[name], f"{path}.{name}")
            _check_extra_elements(value, path)
        elif isinstance(value, core.SequenceOf):
            for index, child in enumerate(value):
                _walk(child, f"{path}[{index}]")
        elif isinstance(value, DerOctets):
            _walk(value.parsed, f"{path}<{value._inner.__name__}>")
        else:
            value.native
    except Asn1DecodeError:
        raise
    except Exception as exc:  # asn1crypto raises ValueError, TypeError, KeyError, ...: report them all alike
        raise Asn1DecodeError(f"{path}: {_reason(exc)}") from exc


def _check_extra_elements(value: core.Sequence, path: str) -> None:
    """asn1crypto keeps elements after the last declared field as unparsed extras.

    For a type with an ASN.1 extension marker ('...', `_extensible = True`, and asn1crypto's own
    CMS/X.509 types) they are unknown extensions: skipped, and dropped on re-encoding. Anywhere
    else they are an error.
    """
    extra = len(value.children) - len(value._fields)
    if extra <= 0:
        return
    foreign = not type(value).__module__.startswith("common.")
    if getattr(value, "_extensible", False) or foreign:
        del value.children[len(value._fields) :]
        return
    raise Asn1DecodeError(f"{path}: {extra} unexpected element(s) after the last field")


def _reason(exc: Exception) -> str:
    """asn1crypto's message without its multi-line 'while parsing <class>' trail."""
    text = " ".join(str(exc).split("\n")[0].split()) or type(exc).__name__
    return text


# Decrypted plaintext may end in zero padding up to the cipher block: des3-cbc-sha1-kd (RFC 3961
# 6.3, 8-byte blocks) pads and its decrypt returns the padding, as RFC 3961 allows, since the ASN.1
# inside carries its own length. No enctype we support has a larger padded block.
MAX_PLAINTEXT_PADDING = 7


def decode_as(cls: type[T], data: bytes, *, padded: bool = False) -> T:
    """Decode exactly one `cls` from `data` and parse it fully; raise only Asn1DecodeError.

    BER deviations asn1crypto tolerates (non-minimal and indefinite lengths) are accepted;
    bytes after the value are an error. Unmodified values dump back the bytes as received.

    `padded=True` is for decrypted plaintext: after the value, up to MAX_PLAINTEXT_PADDING (7)
    bytes are accepted if they are all zero, and dropped. More bytes, or any non-zero one, are
    still an error.
    """
    name = cls.__name__
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Asn1DecodeError(f"{name}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if padded:
        data = data[: _padded_value_length(name, data)]
    try:
        value = cls.load(data, strict=True)
    except Exception as exc:
        raise Asn1DecodeError(f"{name}: {_reason(exc)}") from exc
    _walk(value, name)
    return value


def _padded_value_length(name: str, data: bytes) -> int:
    """The length of the one value at the start of `data`, after checking what follows is padding."""
    try:
        end = parser.peek(data)
    except Exception as exc:
        raise Asn1DecodeError(f"{name}: {_reason(exc)}") from exc
    padding = data[end:]
    if len(padding) > MAX_PLAINTEXT_PADDING:
        raise Asn1DecodeError(
            f"{name}: {len(padding)} trailing bytes after the value; decrypted plaintext pads with at most "
            f"{MAX_PLAINTEXT_PADDING}"
        )
    for offset, octet in enumerate(padding):
        if octet:
            raise Asn1DecodeError(
                f"{name}: trailing byte {octet:#04x} at offset {end + offset} after the value is not zero padding"
            )
    return end


# --- a field's bytes as received ---------------------------------------------------------------


def field_bytes(parent: core.Sequence | core.Choice, name: str) -> bytes:
    """The encoding of an EXPLICIT-tagged field's value as received, without its [n] wrapper.

    asn1crypto's `parent[name].dump()` includes the field's EXPLICIT tag and length; checksums
    cover the inner value only (KDC-REQ-BODY under the PA-TGS-REQ authenticator and the PKINIT
    paChecksum, an AP-REQ ticket against ccache bytes, ...). The wrapper may use the short, long
    or indefinite length form; the inner value is returned byte for byte as received, BER
    deviations included (a value built or modified locally gives its DER). `parent` is a SEQUENCE
    (`name` a field) or a CHOICE (`name` the chosen alternative). Raises Asn1DecodeError if the
    field is absent, not EXPLICIT-tagged, or its wrapper is malformed.
    """
    where = f"{type(parent).__name__}.{name}"
    if isinstance(parent, core.Choice):
        if parent.name != name:
            raise Asn1DecodeError(f"{where}: the chosen alternative is {parent.name!r}")
        value = parent.chosen
    else:
        try:
            value = parent[name]
        except KeyError as exc:
            raise Asn1DecodeError(f"{where}: no such field") from exc
    if isinstance(value, core.Void):
        raise Asn1DecodeError(f"{where}: the field is absent")
    if not value.explicit:
        raise Asn1DecodeError(f"{where}: the field is not EXPLICIT-tagged, so it has no wrapper to remove")
    # _header/_trailer hold the received wrapper and value headers (EOC octets for indefinite
    # lengths); dump() would re-encode an indefinite-length inner value, so it is used only for
    # values that were never decoded or have been modified.
    if value._header is not None and value.contents is not None:
        wrapped = value._header + value.contents + value._trailer
    else:
        wrapped = value.dump()
    return _strip_explicit(where, wrapped, value.explicit[-1])


def _strip_explicit(where: str, wrapped: bytes, expected: tuple[int, int]) -> bytes:
    """The contents of the constructed [class tag] TLV `wrapped` (one EXPLICIT layer)."""
    expected_class, expected_tag = expected
    if len(wrapped) < 2:
        raise Asn1DecodeError(f"{where}: EXPLICIT wrapper truncated")
    first = wrapped[0]
    if first >> 6 != expected_class or not first & 0x20:
        raise Asn1DecodeError(f"{where}: identifier octet {first:#04x} is not a constructed EXPLICIT tag")
    pos = 1
    tag = first & 0x1F
    if tag == 0x1F:  # high tag number form: base-128, high bit set on all but the last octet
        tag = 0
        while True:
            if pos >= len(wrapped):
                raise Asn1DecodeError(f"{where}: EXPLICIT tag number truncated")
            octet = wrapped[pos]
            pos += 1
            tag = tag << 7 | octet & 0x7F
            if not octet & 0x80:
                break
    if tag != expected_tag:
        raise Asn1DecodeError(f"{where}: EXPLICIT tag [{tag}] where [{expected_tag}] was expected")
    if pos >= len(wrapped):
        raise Asn1DecodeError(f"{where}: EXPLICIT wrapper length truncated")
    length = wrapped[pos]
    pos += 1
    if length == 0x80:  # indefinite: the contents end with the end-of-contents octets 00 00
        if len(wrapped) < pos + 2 or wrapped[-2:] != b"\x00\x00":
            raise Asn1DecodeError(f"{where}: indefinite-length EXPLICIT wrapper without end-of-contents octets")
        return wrapped[pos:-2]
    if length & 0x80:  # long form: the low bits count the length octets that follow
        count = length & 0x7F
        if count == 0x7F or len(wrapped) < pos + count:
            raise Asn1DecodeError(f"{where}: EXPLICIT wrapper length truncated")
        length = int.from_bytes(wrapped[pos : pos + count], "big")
        pos += count
    if len(wrapped) - pos != length:
        raise Asn1DecodeError(f"{where}: EXPLICIT wrapper says {length} bytes, holds {len(wrapped) - pos}")
    return wrapped[pos:]
