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
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntFlag

from common.buffer import Buffer, BufferReadError, BufferWriteError
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


def _pull_count(buf: Buffer, what: str, min_item: int) -> int:
    """A uint32 item count, rejected at once if the items cannot fit in what is left."""
    at = buf.tell()
    n = buf.pull_uint32(f"{what} count")
    if n * min_item > buf.remaining:
        raise CcacheFormatError(f"{what} count {n} at offset {at} exceeds the {buf.remaining} bytes left")
    return n


def _read_principal(buf: Buffer, version: int, what: str) -> Principal:
    at = buf.tell()
    name_type = 0 if version == 0x0501 else buf.pull_uint32(f"{what} name type")
    count = _pull_count(buf, f"{what} component", 4)
    if version == 0x0501:
        if count == 0:
            raise CcacheFormatError(f"{what} at offset {at} has a component count of 0 (version 1 counts the realm)")
        count -= 1
    realm = buf.pull_text32(f"{what} realm")
    components = tuple(buf.pull_text32(f"{what} component {i + 1}") for i in range(count))
    if not components:
        raise CcacheFormatError(f"{what} at offset {at} has no name components")
    return Principal(components, realm, name_type)


def _read_credential(buf: Buffer, version: int) -> Credential:
    client = _read_principal(buf, version, "client")
    server = _read_principal(buf, version, "server")
    enctype = buf.pull_uint16("key enctype")
    if version == 0x0503:
        buf.pull_uint16("repeated key enctype")
    contents = buf.pull_opaque32("key")
    authtime = buf.pull_uint32("authtime")
    starttime = buf.pull_uint32("starttime")
    endtime = buf.pull_uint32("endtime")
    renew_till = buf.pull_uint32("renew_till")
    at = buf.tell()
    is_skey = buf.pull_uint8("is_skey")
    if is_skey > 1:
        raise CcacheFormatError(f"is_skey at offset {at} is {is_skey}, not 0 or 1")
    flags = buf.pull_uint32("ticket flags")
    addresses = tuple(
        Address(buf.pull_uint16("address type"), buf.pull_opaque32("address"))
        for _ in range(_pull_count(buf, "address", 6))
    )
    authdata = tuple(
        AuthData(buf.pull_uint16("authdata type"), buf.pull_opaque32("authdata"))
        for _ in range(_pull_count(buf, "authdata", 6))
    )
    ticket = buf.pull_opaque32("ticket")
    second_ticket = buf.pull_opaque32("second ticket")
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


def _write_principal(buf: Buffer, p: Principal) -> None:
    buf.push_uint32(p.name_type, "name type")
    buf.push_uint32(len(p.components), "component count")
    buf.push_text32(p.realm, "realm")
    for c in p.components:
        buf.push_text32(c, "component")


def _write_credential(buf: Buffer, c: Credential, version: int) -> None:
    _write_principal(buf, c.client)
    _write_principal(buf, c.server)
    buf.push_uint16(c.key.enctype, "enctype")
    if version == 0x0503:
        buf.push_uint16(c.key.enctype, "enctype")
    buf.push_opaque32(c.key.contents, "key")
    buf.push_uint32(c.authtime, "authtime")
    buf.push_uint32(c.starttime, "starttime")
    buf.push_uint32(c.endtime, "endtime")
    buf.push_uint32(c.renew_till, "renew_till")
    buf.push_uint8(1 if c.is_skey else 0)
    buf.push_uint32(c.ticket_flags, "ticket flags")
    buf.push_uint32(len(c.addresses), "address count")
    for a in c.addresses:
        buf.push_uint16(a.addrtype, "address type")
        buf.push_opaque32(a.address, "address")
    buf.push_uint32(len(c.authdata), "authdata count")
    for ad in c.authdata:
        buf.push_uint16(ad.ad_type, "authdata type")
        buf.push_opaque32(ad.data, "authdata")
    buf.push_opaque32(c.ticket, "ticket")
    buf.push_opaque32(c.second_ticket, "second ticket")


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
        buf = Buffer(data, byteorder="big" if version >= 0x0503 else sys.byteorder)
        buf.seek(2)
        kdc_offset = None
        header_fields: list[tuple[int, bytes]] = []
        context = "ccache header"
        try:
            if version == 0x0504:
                header = buf.pull_buffer(buf.pull_uint16("header length"), "header")
                while not header.eof():
                    at = header.tell()
                    tag = header.pull_uint16("header field tag")
                    value = header.pull_buffer(header.pull_uint16("header field length"), f"header field {tag}")
                    if tag == HEADER_TAG_KDC_OFFSET:
                        if value.remaining != 8:
                            raise CcacheFormatError(f"KDC time offset field at offset {at} has length {value.remaining}, not 8")
                        kdc_offset = (value.pull_int32("KDC offset seconds"), value.pull_int32("KDC offset microseconds"))
                    else:
                        header_fields.append((tag, value.pull_bytes(value.remaining)))
            context = "ccache default principal"
            principal = _read_principal(buf, version, "default principal")
            credentials = []
            while not buf.eof():
                context = f"ccache credential {len(credentials) + 1} (offset {buf.tell()})"
                credentials.append(_read_credential(buf, version))
        except (BufferReadError, CcacheFormatError) as exc:
            raise CcacheFormatError(f"{context}: {exc}") from None
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
        buf = Buffer()
        try:
            buf.push_uint16(version)
            if version == 0x0504:
                header = Buffer()
                if self.kdc_offset is not None:
                    secs, usecs = self.kdc_offset
                    header.push_uint16(HEADER_TAG_KDC_OFFSET)
                    header.push_uint16(8)
                    header.push_int32(secs, "KDC time offset seconds")
                    header.push_int32(usecs, "KDC time offset microseconds")
                for tag, value in self.header_fields:
                    header.push_uint16(tag, "header tag")
                    header.push_opaque16(value, "header field")
                buf.push_opaque16(header.data, "header")
            _write_principal(buf, self.principal)
            for c in self.credentials:
                _write_credential(buf, c, version)
        except BufferWriteError as exc:
            raise CcacheFormatError(str(exc)) from None
        return buf.data

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
