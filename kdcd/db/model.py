"""Records returned by the database, the value rules they obey, and the `PrincipalDatabase` protocol.

Every backend (SQLite now, PostgreSQL later) returns these frozen dataclasses and raises the
exceptions of `kdcd.db.errors`; the KDC depends only on this module's names.

Times are timezone-aware UTC datetimes with whole seconds. Methods that change something take
`now` explicitly: the database never reads the clock. Naive datetimes are taken as UTC.
Durations (ticket lifetimes, key grace periods) are integer seconds.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from common.crypto import Key, UnsupportedEnctypeError, get_enctype
from common.principal import Principal

from .errors import InvalidValue

__all__ = [
    "CustomerStatus",
    "Customer",
    "DEFAULT_ENCTYPES",
    "DEFAULT_MAX_LIFE",
    "DEFAULT_MAX_RENEWABLE_LIFE",
    "Device",
    "DeviceStatus",
    "KeyEntry",
    "PrincipalAttributes",
    "PrincipalDatabase",
    "PrincipalEntry",
]

# Enctypes given random keys when the caller names none, strongest first (RFC 3962 AES-SHA1
# first because every MIT and Windows peer has it; RFC 8009 next; des3 last, for old CTAs).
DEFAULT_ENCTYPES: tuple[int, ...] = (18, 17, 20, 19, 16)

DEFAULT_MAX_LIFE = 7 * 24 * 3600  # seconds; the seed's signaling-controller tickets last days
DEFAULT_MAX_RENEWABLE_LIFE = 28 * 24 * 3600

PHONE_ID_LENGTH = 20  # SHA-1 (common.pki.phone_id)
THUMBPRINT_LENGTH = 32  # SHA-256 (common.pki.thumbprint)
MAX_LABEL_LENGTH = 200
MAX_PEER_LENGTH = 128
MAX_OPTIONS = 64
MAX_OPTIONS_BYTES = 4096
_OPTION_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_MAC_HEX = re.compile(r"[0-9a-f]{12}")
_UTC = dt.timezone.utc


class CustomerStatus(str, enum.Enum):
    """Account status; only ACTIVE customers' certificates are honoured (else KDC_ERR_CLIENT_REVOKED)."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"  # final: a terminated account is never reactivated


class DeviceStatus(str, enum.Enum):
    OK = "ok"
    BAD = "bad"  # seed: a MAC "marked as bad" (e.g. a detected clone) gets no ticket


@dataclass(frozen=True, slots=True)
class PrincipalAttributes:
    """Per-principal flags the KDC consults."""

    requires_preauth: bool = True  # AS-REQ must carry PA-ENC-TIMESTAMP or PKINIT
    is_service: bool = False  # may be named as a ticket's server
    allow_pkinit: bool = False  # may authenticate with a certificate
    disabled: bool = False  # no tickets to or for it


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One long-term key of a principal. Its repr never shows key bytes (see `Key`)."""

    kvno: int
    key: Key
    salt: bytes | None  # the string-to-key salt for password-derived keys, None for random keys
    created: dt.datetime
    expires: dt.datetime | None  # None while current; end of the grace period once superseded

    @property
    def enctype(self) -> int:
        return self.key.enctype

    def usable_at(self, now: dt.datetime | None) -> bool:
        return self.expires is None or now is None or to_utc(now) < self.expires


@dataclass(frozen=True, slots=True)
class PrincipalEntry:
    principal: Principal
    kvno: int  # the current key version
    attributes: PrincipalAttributes
    max_life: int  # seconds
    max_renewable_life: int  # seconds, 0 = not renewable
    created: dt.datetime
    modified: dt.datetime
    keys: tuple[KeyEntry, ...] = ()  # current kvno first, then older kvnos still in their grace period

    @property
    def current_keys(self) -> tuple[KeyEntry, ...]:
        return tuple(k for k in self.keys if k.kvno == self.kvno)

    @property
    def enctypes(self) -> tuple[int, ...]:
        return tuple(k.enctype for k in self.current_keys)


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer account. Phone numbers are held only as phone IDs (SHA-1, see docs/kdc-database.md).

    `generation` starts at 1 and grows by one with every change to the record (status, options,
    label, phone IDs): a cache keyed by (id, generation) is stale as soon as they differ.
    """

    id: int
    status: CustomerStatus
    label: str
    options: Mapping[str, object]
    phone_ids: tuple[bytes, ...]
    generation: int
    created: dt.datetime
    modified: dt.datetime

    @property
    def active(self) -> bool:
        return self.status is CustomerStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Device:
    """A CTA known by MAC (12 lowercase hex) and the SHA-256 thumbprint of its manufacturer certificate."""

    mac: str
    thumbprint: bytes | None  # None for a MAC marked bad before the device was ever seen
    status: DeviceStatus
    status_reason: str
    customer_id: int | None
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    last_peer: str | None
    modified: dt.datetime


# --- value rules shared by every backend ------------------------------------------------------


def to_utc(value: dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise InvalidValue(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC).replace(microsecond=0)


def to_seconds(value: dt.datetime) -> int:
    """Unix seconds (UTC, microseconds dropped): the stored form of every time."""
    return int(to_utc(value).timestamp())


def from_seconds(value: int | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, _UTC)



def check_enctype(enctype: int) -> int:
    try:
        return get_enctype(enctype).number
    except UnsupportedEnctypeError:
        raise InvalidValue(f"unsupported enctype {enctype!r}") from None


def check_key(key: Key) -> Key:
    if not isinstance(key, Key):
        raise InvalidValue(f"expected a Key, got {type(key).__name__}")
    cls = get_enctype(check_enctype(key.enctype))
    if len(key.contents) != cls.key_bytes:
        raise InvalidValue(f"{cls.name} key must be {cls.key_bytes} bytes, not {len(key.contents)}")
    return key


def check_duration(name: str, value: int, *, allow_zero: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{name} must be whole seconds, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or value > 0x7FFFFFFF:
        raise InvalidValue(f"{name} {value} is out of range")
    return value


def check_phone_id(value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != PHONE_ID_LENGTH:
        raise InvalidValue(
            f"a phone ID is {PHONE_ID_LENGTH} bytes (SHA-1 of the number: common.pki.phone_id), "
            f"not {type(value).__name__} of length {len(value) if hasattr(value, '__len__') else '?'}"
        )
    return bytes(value)


def check_thumbprint(value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != THUMBPRINT_LENGTH:
        raise InvalidValue(f"a certificate thumbprint is {THUMBPRINT_LENGTH} bytes (SHA-256)")
    return bytes(value)


def normalise_mac(value: str | bytes) -> str:
    """6 bytes or any common text form ('00:11:22:AA:BB:CC', '0011.22aa.bbcc') -> '001122aabbcc'."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 6:
            raise InvalidValue(f"a MAC address is 6 bytes, not {len(value)}")
        return bytes(value).hex()
    if not isinstance(value, str):
        raise InvalidValue(f"expected a MAC address, got {type(value).__name__}")
    compact = re.sub(r"[:\-.]", "", value.strip()).lower()
    if not _MAC_HEX.fullmatch(compact):
        raise InvalidValue(f"not a MAC address: {value!r} (expected 12 hex digits, optionally separated)")
    return compact


def check_label(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"a label is text, got {type(value).__name__}")
    if len(value) > MAX_LABEL_LENGTH:
        raise InvalidValue(f"label is {len(value)} characters, more than {MAX_LABEL_LENGTH}")
    if any(not ch.isprintable() for ch in value):
        raise InvalidValue("label contains control characters")
    return value


def check_peer(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_PEER_LENGTH or not value.isprintable():
        raise InvalidValue(f"peer address must be 1 to {MAX_PEER_LENGTH} printable characters")
    return value


def check_options(options: Mapping[str, object]) -> dict[str, object]:
    """Service options: a flat dict of lowercase names to JSON scalars (bool, int, str, null)."""
    if not isinstance(options, Mapping):
        raise InvalidValue(f"service options must be a mapping, got {type(options).__name__}")
    if len(options) > MAX_OPTIONS:
        raise InvalidValue(f"{len(options)} service options, more than {MAX_OPTIONS}")
    clean: dict[str, object] = {}
    for name, value in options.items():
        if not isinstance(name, str) or not _OPTION_NAME.fullmatch(name):
            raise InvalidValue(f"service option name {name!r} must match {_OPTION_NAME.pattern}")
        if value is not None and not isinstance(value, (bool, int, str)):
            raise InvalidValue(f"service option {name!r} must be a bool, int, string or null, not {type(value).__name__}")
        clean[name] = value
    if len(encode_options(clean)) > MAX_OPTIONS_BYTES:
        raise InvalidValue(f"service options are larger than {MAX_OPTIONS_BYTES} bytes of JSON")
    return clean


def encode_options(options: Mapping[str, object]) -> str:
    return json.dumps(dict(options), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_options(text: str) -> Mapping[str, object]:
    return MappingProxyType(json.loads(text))


def check_status(value: CustomerStatus | str) -> CustomerStatus:
    try:
        return CustomerStatus(value)
    except ValueError:
        raise InvalidValue(
            f"customer status {value!r} is not one of {', '.join(s.value for s in CustomerStatus)}"
        ) from None


# --- the backend interface ------------------------------------------------------------------


@runtime_checkable
class PrincipalDatabase(Protocol):
    """What the KDC and the operator CLI need from a principal and customer database.

    Implementations must make every method atomic (all or nothing) and safe with several
    processes using the same database, each through its own handle.
    """

    @property
    def realm(self) -> str: ...

    def close(self) -> None: ...

    # principals
    def add_principal(
        self,
        principal: Principal,
        *,
        now: dt.datetime,
        password: str | None = None,
        keys: Sequence[Key] | None = None,
        enctypes: Sequence[int] = DEFAULT_ENCTYPES,
        attributes: PrincipalAttributes = PrincipalAttributes(),
        max_life: int = DEFAULT_MAX_LIFE,
        max_renewable_life: int = DEFAULT_MAX_RENEWABLE_LIFE,
    ) -> PrincipalEntry: ...

    def get_principal(self, principal: Principal, *, with_keys: bool = True) -> PrincipalEntry: ...

    def list_principals(self) -> list[PrincipalEntry]: ...

    def modify_principal(
        self,
        principal: Principal,
        *,
        now: dt.datetime,
        attributes: PrincipalAttributes | None = None,
        max_life: int | None = None,
        max_renewable_life: int | None = None,
    ) -> PrincipalEntry: ...

    def rotate_keys(
        self,
        principal: Principal,
        *,
        now: dt.datetime,
        password: str | None = None,
        keys: Sequence[Key] | None = None,
        enctypes: Sequence[int] | None = None,
        grace: int | None = None,
    ) -> PrincipalEntry: ...

    def delete_principal(self, principal: Principal) -> None: ...

    def get_key(
        self, principal: Principal, enctype: int, kvno: int | None = None, *, now: dt.datetime | None = None
    ) -> KeyEntry: ...

    def strongest_key(
        self,
        principal: Principal,
        preference: Sequence[int] = DEFAULT_ENCTYPES,
        kvno: int | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> KeyEntry: ...

    def purge_expired_keys(self, now: dt.datetime) -> int: ...

    # customers
    def add_customer(
        self,
        *,
        now: dt.datetime,
        phone_ids: Sequence[bytes] = (),
        label: str = "",
        options: Mapping[str, object] | None = None,
        status: CustomerStatus | str = CustomerStatus.ACTIVE,
    ) -> Customer: ...

    def get_customer(self, customer_id: int) -> Customer: ...

    def list_customers(self, status: CustomerStatus | str | None = None) -> list[Customer]: ...

    def set_customer_status(self, customer_id: int, status: CustomerStatus | str, *, now: dt.datetime) -> Customer: ...

    def set_customer_options(
        self, customer_id: int, options: Mapping[str, object], *, now: dt.datetime, merge: bool = False
    ) -> Customer: ...

    def set_customer_label(self, customer_id: int, label: str, *, now: dt.datetime) -> Customer: ...

    def add_phone(self, customer_id: int, phone_id: bytes, *, now: dt.datetime) -> Customer: ...

    def remove_phone(self, customer_id: int, phone_id: bytes, *, now: dt.datetime) -> Customer: ...

    def lookup_phone(self, phone_id: bytes) -> Customer: ...

    def customers_for_phone_ids(self, phone_ids: Sequence[bytes]) -> list[Customer]: ...

    # devices
    def record_device_seen(
        self,
        mac: str | bytes,
        thumbprint: bytes,
        *,
        now: dt.datetime,
        peer: str | None = None,
        replace_thumbprint: bool = False,
    ) -> Device: ...

    def set_device_status(
        self, mac: str | bytes, status: DeviceStatus | str, *, now: dt.datetime, reason: str = ""
    ) -> Device: ...

    def mark_device_bad(self, mac: str | bytes, *, now: dt.datetime, reason: str = "") -> Device: ...

    def link_device(self, mac: str | bytes, customer_id: int | None, *, now: dt.datetime) -> Device: ...

    def get_device(self, mac: str | bytes) -> Device: ...

    def list_devices(self) -> list[Device]: ...
