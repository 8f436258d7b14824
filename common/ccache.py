"""MIT FILE credential caches: format version 4 (written), versions 1 to 4 (read).

Layout (big-endian in versions 3 and 4, the writer's native order in 1 and 2):

    file       ::= 0x05 version(1 byte) [header] principal credential*   (until end of file)
    header     ::= length(uint16) field*        version 4 only
    field      ::= tag(uint16) length(uint16) value; tag 1 = KDC time offset:
                   seconds(int32) microseconds(int32); unknown tags are kept verbatim
    principal  ::= [name_type(uint32)] count(uint32) realm(data) component(data)*count
                   (version 1: no name type, and the count includes the realm)
    credential ::= client(principal) server(principal)
                   enctype(uint16) [enctype again in version 3] key(data)
                   authtime starttime endtime renew_till (uint32 each)
                   is_skey(uint8) ticket_flags(uint32)
                   count(uint32) (addrtype(uint16) address(data))*
                   count(uint32) (ad_type(uint16) ad_data(data))*
                   ticket(data) second_ticket(data)
    data       ::= length(uint32) bytes

Configuration entries (server realm "X-CACHECONF:", first component "krb5_ccache_conf_data") are
ordinary credentials here: they are kept in order and written back unchanged; `Credential.is_config`
tells them apart and `Ccache.tickets()` leaves them out.

Malformed input raises `CcacheFormatError` naming the offset and the field, never key bytes.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntFlag

from common.crypto.key import Key
from common.fileio import write_private
from common.principal import Principal

__all__ = [
    "Address",
    "AuthData",
    "CONFIG_REALM",
    "Ccache",
    "CcacheFormatError",
    "Credential",
    "TicketFlags",
]

CONFIG_REALM = "X-CACHECONF:"
CONFIG_PREFIX = "krb5_ccache_conf_data"
HEADER_TAG_KDC_OFFSET = 1
_KNOWN_VERSIONS = (0x0501, 0x0502, 0x0503, 0x0504)


class CcacheFormatError(ValueError):
    """The bytes are not a well-formed MIT FILE credential cache (or a value cannot be written)."""


class TicketFlags(IntFlag):
    """RFC 4120 5.3 TicketFlags as the 32-bit integer MIT stores (bit 0 is the most significant)."""

    RESERVED = 0x80000000
    FORWARDABLE = 0x40000000
    FORWARDED = 0x20000000
    PROXIABLE = 0x10000000
    PROXY = 0x08000000
    MAY_POSTDATE = 0x04000000
    POSTDATED = 0x02000000
    INVALID = 0x01000000
    RENEWABLE = 0x00800000
    INITIAL = 0x00400000
    PRE_AUTHENT = 0x00200000
    HW_AUTHENT = 0x00100000
    TRANSITED_POLICY_CHECKED = 0x00080000
    OK_AS_DELEGATE = 0x00040000
    ENC_PA_REP = 0x00010000
    ANONYMOUS = 0x00008000


@dataclass(frozen=True, slots=True)
class Address:
    """A HostAddress (RFC 4120 5.2.5): address type and raw address bytes."""

    addrtype: int
    address: bytes


@dataclass(frozen=True, slots=True)
class AuthData:
    """One AuthorizationData element (RFC 4120 5.2.6)."""

    ad_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Credential:
    """One cache entry: a ticket with its session key and times, or a configuration entry."""

    client: Principal
    server: Principal
    key: Key
    authtime: int = 0
    starttime: int = 0
    endtime: int = 0
    renew_till: int = 0
    is_skey: bool = False
    ticket_flags: int = 0
    addresses: tuple[Address, ...] = ()
    authdata: tuple[AuthData, ...] = ()
    ticket: bytes = b""
    second_ticket: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.addresses, tuple):
            object.__setattr__(self, "addresses", tuple(self.addresses))
        if not isinstance(self.authdata, tuple):
            object.__setattr__(self, "authdata", tuple(self.authdata))

    @classmethod
    def config(
        cls, client: Principal, key: str, value: bytes, principal: Principal | str | None = None
    ) -> Credential:
        """A configuration entry ('pa_type', 'fast_avail', ...), optionally tied to a principal."""
        components = [CONFIG_PREFIX, key]
        if principal is not None:
            components.append(str(principal))
        server = Principal(tuple(components), CONFIG_REALM, 0)
        return cls(client, server, Key(0, b""), ticket=bytes(value))

    @property
    def is_config(self) -> bool:
        s = self.server
        return s.realm == CONFIG_REALM and len(s.components) in (2, 3) and s.components[0] == CONFIG_PREFIX

    @property
    def config_key(self) -> str | None:
        return self.server.components[1] if self.is_config else None

    @property
    def config_principal(self) -> str | None:
        if self.is_config and len(self.server.components) == 3:
            return self.server.components[2]
        return None

    @property
    def flags(self) -> TicketFlags:
        return TicketFlags(self.ticket_flags)


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _encode_text(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class _Reader:
    def __init__(self, data: bytes, order: str, base: int = 0) -> None:
        self.data = data
        self.pos = 0
        self.order = order
        self.context = "ccache"
        self.base = base  # file offset of data[0], for messages

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise CcacheFormatError(
                f"{self.context}: {what} needs {n} bytes at offset {self.base + self.pos}, only {len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size: int, what: str, signed: bool = False) -> int:
        return int.from_bytes(self.take(size, what), self.order, signed=signed)

    def data32(self, what: str) -> bytes:
        length = self.uint(4, f"{what} length")
        return self.take(length, what)

    def count(self, what: str, min_item: int) -> int:
        at = self.pos
        n = self.uint(4, f"{what} count")
        if n * min_item > len(self.data) - self.pos:
            raise CcacheFormatError(
                f"{self.context}: {what} count {n} at offset {at} exceeds the {len(self.data) - self.pos} bytes left"
            )
        return n

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.data)


def _read_principal(r: _Reader, version: int, what: str) -> Principal:
    at = r.pos
    name_type = 0 if version == 0x0501 else r.uint(4, f"{what} name type")
    count = r.count(f"{what} component", 4)
    if version == 0x0501:
        if count == 0:
            raise CcacheFormatError(f"{r.context}: {what} at offset {at} has a component count of 0 (version 1 counts the realm)")
        count -= 1
    realm = _decode_text(r.data32(f"{what} realm"))
    components = tuple(_decode_text(r.data32(f"{what} component {i + 1}")) for i in range(count))
    if not components:
        raise CcacheFormatError(f"{r.context}: {what} at offset {at} has no name components")
    return Principal(components, realm, name_type)


def _read_credential(r: _Reader, version: int) -> Credential:
    client = _read_principal(r, version, "client")
    server = _read_principal(r, version, "server")
    enctype = r.uint(2, "key enctype")
    if version == 0x0503:
        r.uint(2, "repeated key enctype")
    contents = r.data32("key")
    authtime = r.uint(4, "authtime")
    starttime = r.uint(4, "starttime")
    endtime = r.uint(4, "endtime")
    renew_till = r.uint(4, "renew_till")
    at = r.pos
    is_skey = r.uint(1, "is_skey")
    if is_skey > 1:
        raise CcacheFormatError(f"{r.context}: is_skey at offset {at} is {is_skey}, not 0 or 1")
    flags = r.uint(4, "ticket flags")
    addresses = tuple(
        Address(r.uint(2, "address type"), r.data32("address")) for _ in range(r.count("address", 6))
    )
    authdata = tuple(
        AuthData(r.uint(2, "authdata type"), r.data32("authdata")) for _ in range(r.count("authdata", 6))
    )
    ticket = r.data32("ticket")
    second_ticket = r.data32("second ticket")
    return Credential(
        client,
        server,
        Key(enctype, contents),
        authtime,
        starttime,
        endtime,
        renew_till,
        bool(is_skey),
        flags,
        addresses,
        authdata,
        ticket,
        second_ticket,
    )


def _u(value: int, bits: int, what: str) -> int:
    if not 0 <= value < (1 << bits):
        raise CcacheFormatError(f"{what} {value} does not fit in {bits} bits unsigned")
    return value


def _data32(raw: bytes, what: str) -> bytes:
    if len(raw) > 0xFFFFFFFF:  # pragma: no cover - 4 GiB values
        raise CcacheFormatError(f"{what} is longer than 2**32-1 bytes")
    return struct.pack(">I", len(raw)) + raw


def _write_principal(p: Principal) -> bytes:
    out = bytearray(struct.pack(">II", _u(p.name_type, 32, "name type"), len(p.components)))
    out += _data32(_encode_text(p.realm), "realm")
    for c in p.components:
        out += _data32(_encode_text(c), "component")
    return bytes(out)


def _write_credential(c: Credential, version: int) -> bytes:
    out = bytearray(_write_principal(c.client) + _write_principal(c.server))
    enctype = _u(c.key.enctype, 16, "enctype")
    out += struct.pack(">H", enctype)
    if version == 0x0503:
        out += struct.pack(">H", enctype)
    out += _data32(c.key.contents, "key")
    out += struct.pack(
        ">IIIIBI",
        _u(c.authtime, 32, "authtime"),
        _u(c.starttime, 32, "starttime"),
        _u(c.endtime, 32, "endtime"),
        _u(c.renew_till, 32, "renew_till"),
        1 if c.is_skey else 0,
        _u(c.ticket_flags, 32, "ticket flags"),
    )
    out += struct.pack(">I", len(c.addresses))
    for a in c.addresses:
        out += struct.pack(">H", _u(a.addrtype, 16, "address type")) + _data32(a.address, "address")
    out += struct.pack(">I", len(c.authdata))
    for ad in c.authdata:
        out += struct.pack(">H", _u(ad.ad_type, 16, "authdata type")) + _data32(ad.data, "authdata")
    out += _data32(c.ticket, "ticket") + _data32(c.second_ticket, "second ticket")
    return bytes(out)


@dataclass
class Ccache:
    """A credential cache: default principal, credentials in file order, version 4 header fields.

    `kdc_offset` is the (seconds, microseconds) header field 1, None when absent. `header_fields`
    keeps any other (tag, value) header fields so a rewrite preserves them.
    """

    principal: Principal
    credentials: list[Credential] = field(default_factory=list)
    kdc_offset: tuple[int, int] | None = None
    header_fields: list[tuple[int, bytes]] = field(default_factory=list)
    version: int = 0x0504

    def __post_init__(self) -> None:
        self.credentials = list(self.credentials)
        self.header_fields = list(self.header_fields)

    # -- reading ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes) -> Ccache:
        data = bytes(data)
        if len(data) < 2:
            raise CcacheFormatError(f"ccache is {len(data)} bytes long, too short for the 2-byte version")
        if data[0] != 0x05:
            raise CcacheFormatError(f"ccache does not start with 0x05 (first byte is 0x{data[0]:02x})")
        version = (data[0] << 8) | data[1]
        if version not in _KNOWN_VERSIONS:
            raise CcacheFormatError(f"unsupported ccache version 0x{version:04x} (0x0501 to 0x0504 are known)")
        r = _Reader(data, "big" if version >= 0x0503 else sys.byteorder)
        r.pos = 2
        kdc_offset = None
        header_fields: list[tuple[int, bytes]] = []
        if version == 0x0504:
            r.context = "ccache header"
            header_len = r.uint(2, "header length")
            header_start = r.pos
            header = _Reader(r.take(header_len, "header"), "big", base=header_start)
            header.context = "ccache header"
            while not header.at_end:
                at = header.base + header.pos
                tag = header.uint(2, "header field tag")
                value = header.take(header.uint(2, "header field length"), f"header field {tag}")
                if tag == HEADER_TAG_KDC_OFFSET:
                    if len(value) != 8:
                        raise CcacheFormatError(
                            f"ccache header: KDC time offset field at offset {at} has length {len(value)}, not 8"
                        )
                    kdc_offset = struct.unpack(">ii", value)
                else:
                    header_fields.append((tag, value))
        r.context = "ccache default principal"
        principal = _read_principal(r, version, "default principal")
        credentials = []
        while not r.at_end:
            r.context = f"ccache credential {len(credentials) + 1} (offset {r.pos})"
            credentials.append(_read_credential(r, version))
        return cls(principal, credentials, kdc_offset, header_fields, version)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Ccache:
        """Read a cache file; a 'FILE:' prefix (as in KRB5CCNAME) is accepted."""
        path = os.fspath(path)
        if isinstance(path, str) and path.startswith("FILE:"):
            path = path[5:]
        with open(path, "rb") as fh:
            return cls.parse(fh.read())

    # -- writing ----------------------------------------------------------------------------

    def __bytes__(self) -> bytes:
        version = self.version
        if version not in (0x0503, 0x0504):
            raise CcacheFormatError(f"writing ccache version 0x{version:04x} is not supported (0x0503, 0x0504 are)")
        out = bytearray(struct.pack(">H", version))
        if version == 0x0504:
            header = bytearray()
            if self.kdc_offset is not None:
                secs, usecs = self.kdc_offset
                header += struct.pack(">HHii", HEADER_TAG_KDC_OFFSET, 8, secs, usecs)
            for tag, value in self.header_fields:
                header += struct.pack(">HH", _u(tag, 16, "header tag"), _u(len(value), 16, "header field length"))
                header += value
            out += struct.pack(">H", _u(len(header), 16, "header length")) + header
        out += _write_principal(self.principal)
        for c in self.credentials:
            out += _write_credential(c, version)
        return bytes(out)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the cache atomically (temporary file + rename), mode 0600."""
        path = os.fspath(path)
        if isinstance(path, str) and path.startswith("FILE:"):
            path = path[5:]
        write_private(path, bytes(self))

    # -- lookups ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Credential]:
        return iter(self.credentials)

    def add(self, credential: Credential) -> None:
        self.credentials.append(credential)

    def tickets(self) -> list[Credential]:
        """The real credentials, configuration entries left out (what klist shows)."""
        return [c for c in self.credentials if not c.is_config]

    def config(self) -> dict[tuple[str, str | None], bytes]:
        """Configuration entries as {(key, principal or None): value}."""
        return {(c.config_key, c.config_principal): c.ticket for c in self.credentials if c.is_config}

    def find(self, server: Principal) -> Credential:
        """The last ticket for `server` (name type ignored); KeyError if there is none."""
        for c in reversed(self.tickets()):
            if c.server.same_name(server):
                return c
        raise KeyError(f"no ticket for {server} in the cache")
