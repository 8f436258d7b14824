"""MIT keytab files (FILE: keytab type), format versions 0x0502 (written) and 0x0501 (read).

Layout, as MIT krb5 reads and writes it (all integers big-endian in 0x0502, the writer's native
order in 0x0501):

    file   ::= 0x05 version(1 byte) record*
    record ::= length(int32) body      length > 0: a key entry of at most `length` bytes
                                       length < 0: a zero-filled hole of -length bytes (skipped)
                                       length = 0: end of the keytab (trailing bytes ignored)
    entry  ::= count(uint16)           name components; counts the realm too in 0x0501
               realm(data16) component(data16)*count
               name_type(uint32)       absent in 0x0501
               timestamp(uint32) kvno8(uint8) enctype(uint16) key(data16)
               [kvno32(uint32)]        when >= 4 bytes of the record remain; supersedes kvno8
                                       unless it is 0 (Heimdal may append more fields: ignored)
    data16 ::= length(uint16) bytes

Every malformed case raises `KeytabFormatError` naming the offset and what was expected, and never
includes key bytes. Files are written atomically with mode 0600.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from common.crypto.key import Key
from common.fileio import write_private
from common.principal import Principal

__all__ = ["Keytab", "KeytabEntry", "KeytabFormatError"]

VERSION_1 = 0x0501
VERSION_2 = 0x0502


class KeytabFormatError(ValueError):
    """The bytes are not a well-formed MIT keytab (or an entry cannot be written)."""


def _decode_text(raw: bytes) -> str:
    # Principal names are UTF-8 in practice; surrogateescape keeps any other bytes round-trippable.
    return raw.decode("utf-8", "surrogateescape")


def _encode_text(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class KeytabEntry:
    """One key of one principal: kvno (32-bit), timestamp (Unix seconds, 32-bit) and the key."""

    principal: Principal
    kvno: int
    key: Key
    timestamp: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.kvno <= 0xFFFFFFFF:
            raise KeytabFormatError(f"kvno {self.kvno} does not fit in 32 bits")
        if not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise KeytabFormatError(f"timestamp {self.timestamp} does not fit in 32 bits")
        if not 0 <= self.key.enctype <= 0xFFFF:
            raise KeytabFormatError(f"enctype {self.key.enctype} does not fit in 16 bits")

    def to_bytes(self) -> bytes:
        """The entry body as written in a 0x0502 keytab (without the record length)."""
        p = self.principal
        out = bytearray()
        if len(p.components) > 0xFFFF:
            raise KeytabFormatError(f"principal has {len(p.components)} components, more than 65535")
        out += struct.pack(">H", len(p.components))
        for text in (p.realm, *p.components):
            raw = _encode_text(text)
            if len(raw) > 0xFFFF:
                raise KeytabFormatError(f"principal component of {len(raw)} bytes is longer than 65535")
            out += struct.pack(">H", len(raw)) + raw
        if not 0 <= p.name_type <= 0xFFFFFFFF:
            raise KeytabFormatError(f"name type {p.name_type} does not fit in 32 bits")
        contents = self.key.contents
        if len(contents) > 0xFFFF:
            raise KeytabFormatError(f"key of {len(contents)} bytes is longer than 65535")
        out += struct.pack(">IIBHH", p.name_type, self.timestamp, self.kvno & 0xFF, self.key.enctype, len(contents))
        out += contents
        out += struct.pack(">I", self.kvno)
        return bytes(out)


class _EntryReader:
    """Reads the fields of one record body; every short read is a precise format error."""

    def __init__(self, data: bytes, start: int, end: int, order: str) -> None:
        self.data = data
        self.pos = start
        self.end = end
        self.order = order
        self.record_start = start

    def _take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.end:
            raise KeytabFormatError(
                f"keytab entry at offset {self.record_start - 4} is truncated: {what} needs {n} bytes at "
                f"offset {self.pos}, {self.end - self.pos} left in the record"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self._take(size, what), self.order)

    def data16(self, what: str) -> bytes:
        length = self.uint(2, f"{what} length")
        return self._take(length, what)

    @property
    def remaining(self) -> int:
        return self.end - self.pos


def _parse_entry(reader: _EntryReader, version: int) -> KeytabEntry:
    count = reader.uint(2, "component count")
    if version == VERSION_1:
        if count == 0:
            raise KeytabFormatError(
                f"keytab entry at offset {reader.record_start - 4} has a component count of 0 (version 1 counts the realm)"
            )
        count -= 1
    if count == 0:
        raise KeytabFormatError(f"keytab entry at offset {reader.record_start - 4} has a principal with no name components")
    realm = _decode_text(reader.data16("realm"))
    components = tuple(_decode_text(reader.data16(f"component {i + 1}")) for i in range(count))
    name_type = reader.uint(4, "name type") if version == VERSION_2 else 0
    timestamp = reader.uint(4, "timestamp")
    kvno = reader.uint(1, "8-bit kvno")
    enctype = reader.uint(2, "enctype")
    contents = reader.data16("key")
    if reader.remaining >= 4:
        kvno32 = reader.uint(4, "32-bit kvno")
        if kvno32 != 0:
            kvno = kvno32
    if not realm:
        raise KeytabFormatError(f"keytab entry at offset {reader.record_start - 4} has an empty realm")
    principal = Principal(components, realm, name_type)
    return KeytabEntry(principal, kvno, Key(enctype, bytes(contents)), timestamp)


@dataclass
class Keytab:
    """An ordered list of keytab entries, as in the file."""

    entries: list[KeytabEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.entries = list(self.entries)

    # -- reading ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes) -> Keytab:
        data = bytes(data)
        if len(data) < 2:
            raise KeytabFormatError(f"keytab is {len(data)} bytes long, too short for the 2-byte version")
        if data[0] != 0x05:
            raise KeytabFormatError(f"keytab does not start with 0x05 (first byte is 0x{data[0]:02x})")
        version = (data[0] << 8) | data[1]
        if version == VERSION_2:
            order = "big"
        elif version == VERSION_1:
            order = sys.byteorder
        else:
            raise KeytabFormatError(f"unsupported keytab version 0x{version:04x} (0x0501 and 0x0502 are known)")
        entries: list[KeytabEntry] = []
        pos = 2
        while pos < len(data):
            if pos + 4 > len(data):
                raise KeytabFormatError(
                    f"keytab record length at offset {pos} is truncated ({len(data) - pos} of 4 bytes)"
                )
            length = int.from_bytes(data[pos : pos + 4], order, signed=True)
            if length == 0:
                break  # MIT: a zero length marks the end; anything after it is never read
            if length == -(2**31):
                raise KeytabFormatError(f"keytab record at offset {pos} has the invalid length -2**31")
            size = abs(length)
            if pos + 4 + size > len(data):
                kind = "hole" if length < 0 else "entry"
                raise KeytabFormatError(
                    f"keytab {kind} at offset {pos} claims {size} bytes but only {len(data) - pos - 4} remain"
                )
            if length > 0:
                reader = _EntryReader(data, pos + 4, pos + 4 + size, order)
                entries.append(_parse_entry(reader, version))
            pos += 4 + size
        return cls(entries)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keytab:
        with open(path, "rb") as fh:
            return cls.parse(fh.read())

    # -- writing ----------------------------------------------------------------------------

    def __bytes__(self) -> bytes:
        out = bytearray(struct.pack(">H", VERSION_2))
        for entry in self.entries:
            body = entry.to_bytes()
            out += struct.pack(">i", len(body)) + body
        return bytes(out)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the keytab atomically (temporary file + rename), mode 0600."""
        write_private(path, bytes(self))

    # -- lookups ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[KeytabEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: KeytabEntry) -> None:
        self.entries.append(entry)

    def extend(self, entries: Iterable[KeytabEntry]) -> None:
        self.entries.extend(entries)

    def entries_for(self, principal: Principal, kvno: int | None = None) -> list[KeytabEntry]:
        """Entries for `principal` (name type ignored, as Kerberos compares names).

        With `kvno=None`, only the entries with the highest kvno of that principal are returned.
        """
        matching = [e for e in self.entries if e.principal.same_name(principal)]
        if kvno is None:
            if not matching:
                return []
            kvno = max(e.kvno for e in matching)
        return [e for e in matching if e.kvno == kvno]

    def keys_for(self, principal: Principal, kvno: int | None = None) -> list[Key]:
        """Keys for `principal` at `kvno` (highest kvno if None), in file order."""
        return [e.key for e in self.entries_for(principal, kvno)]

    def key_for(self, principal: Principal, enctype: int, kvno: int | None = None) -> Key:
        """The key of one enctype; KeyError if the keytab has none."""
        for key in self.keys_for(principal, kvno):
            if key.enctype == enctype:
                return key
        raise KeyError(f"no key for {principal} enctype {enctype}" + (f" kvno {kvno}" if kvno is not None else ""))

    def principals(self) -> list[Principal]:
        """Distinct principals, in first-appearance order."""
        seen: dict[tuple, Principal] = {}
        for e in self.entries:
            seen.setdefault((e.principal.components, e.principal.realm), e.principal)
        return list(seen.values())
