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
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from common.buffer import Buffer, BufferReadError, BufferWriteError
from common.crypto.key import Key
from common.fileio import write_private
from common.principal import Principal

__all__ = ["Keytab", "KeytabEntry", "KeytabFormatError"]

VERSION_1 = 0x0501
VERSION_2 = 0x0502


class KeytabFormatError(ValueError):
    """The bytes are not a well-formed MIT keytab (or an entry cannot be written)."""


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
        buf = Buffer()
        try:
            self._push(buf)
        except BufferWriteError as exc:
            raise KeytabFormatError(str(exc)) from None
        return buf.data

    def _push(self, buf: Buffer) -> None:
        p = self.principal
        buf.push_uint16(len(p.components), "principal component count")
        buf.push_text16(p.realm, "principal realm")
        for text in p.components:
            buf.push_text16(text, "principal component")
        buf.push_uint32(p.name_type, "name type")
        buf.push_uint32(self.timestamp, "timestamp")
        buf.push_uint8(self.kvno & 0xFF)
        buf.push_uint16(self.key.enctype, "enctype")
        buf.push_opaque16(self.key.contents, "key")
        buf.push_uint32(self.kvno, "kvno")


def _parse_entry(record: Buffer, version: int) -> KeytabEntry:
    """One record body; `record` ends where the record does, so short reads stay inside it."""
    at = record.tell() - 4  # the record length field, as messages name the entry
    try:
        count = record.pull_uint16("component count")
        if version == VERSION_1:
            if count == 0:
                raise KeytabFormatError(
                    f"keytab entry at offset {at} has a component count of 0 (version 1 counts the realm)"
                )
            count -= 1
        if count == 0:
            raise KeytabFormatError(f"keytab entry at offset {at} has a principal with no name components")
        realm = record.pull_text16("realm")
        components = tuple(record.pull_text16(f"component {i + 1}") for i in range(count))
        name_type = record.pull_uint32("name type") if version == VERSION_2 else 0
        timestamp = record.pull_uint32("timestamp")
        kvno = record.pull_uint8("8-bit kvno")
        enctype = record.pull_uint16("enctype")
        contents = record.pull_opaque16("key")
        if record.remaining >= 4:
            kvno32 = record.pull_uint32("32-bit kvno")
            if kvno32 != 0:
                kvno = kvno32
    except BufferReadError as exc:
        raise KeytabFormatError(f"keytab entry at offset {at} is truncated: {exc} in the record") from None
    if not realm:
        raise KeytabFormatError(f"keytab entry at offset {at} has an empty realm")
    principal = Principal(components, realm, name_type)
    return KeytabEntry(principal, kvno, Key(enctype, contents), timestamp)


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
        if version not in (VERSION_1, VERSION_2):
            raise KeytabFormatError(f"unsupported keytab version 0x{version:04x} (0x0501 and 0x0502 are known)")
        buf = Buffer(data, byteorder="big" if version == VERSION_2 else sys.byteorder)
        buf.seek(2)
        entries: list[KeytabEntry] = []
        while not buf.eof():
            pos = buf.tell()
            if buf.remaining < 4:
                raise KeytabFormatError(f"keytab record length at offset {pos} is truncated ({buf.remaining} of 4 bytes)")
            length = buf.pull_int32("record length")
            if length == 0:
                break  # MIT: a zero length marks the end; anything after it is never read
            if length == -(2**31):
                raise KeytabFormatError(f"keytab record at offset {pos} has the invalid length -2**31")
            size = abs(length)
            if size > buf.remaining:
                kind = "hole" if length < 0 else "entry"
                raise KeytabFormatError(f"keytab {kind} at offset {pos} claims {size} bytes but only {buf.remaining} remain")
            if length > 0:
                entries.append(_parse_entry(buf.pull_buffer(size), version))
            else:
                buf.seek(buf.tell() + size)
        return cls(entries)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keytab:
        with open(path, "rb") as fh:
            return cls.parse(fh.read())

    # -- writing ----------------------------------------------------------------------------

    def __bytes__(self) -> bytes:
        buf = Buffer()
        buf.push_uint16(VERSION_2)
        for entry in self.entries:
            start = buf.tell()
            buf.push_int32(0)  # the record length, filled in below
            try:
                entry._push(buf)
            except BufferWriteError as exc:
                raise KeytabFormatError(str(exc)) from None
            end = buf.tell()
            buf.seek(start)
            buf.push_int32(end - start - 4)
            buf.seek(end)
        return buf.data

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
