"""The master key: principal keys are stored wrapped (encrypted) under it, never in the clear.

The master key lives in a *stash file* outside the database: an MIT keytab (mode 0600) holding one
key for `K/M@REALM`, as MIT's own stash files do. A copy or backup of the database alone therefore
reveals no principal key; the stash must be kept (and backed up) separately.

Wrapping (`wrap_key`): RFC 3961 encryption (confidentiality and integrity) under the master key
with key usage 1024 (RFC 4120 7.5.1: 1024-2047 are for application use) of

    "kerbtel-key\\0" || name || "\\0" || kvno (4 bytes) || enctype (4 bytes) || key bytes

The name, kvno and enctype are checked on unwrap, so a wrapped key copied into another row (for
instance an attacker's known key into krbtgt's row) is refused rather than used.

The database records the master key's kvno and enctype and a check value (the encryption of a
fixed string with usage 1025), so a wrong stash is reported when the database is opened.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from common.crypto import CryptoError, Key, decrypt, encrypt, generate_key
from common.fileio import InsecureFileMode, read_file
from common.principal import Principal

from .errors import MasterKeyError, NotFound

__all__ = ["MASTER_ENCTYPE", "MasterKey", "generate_master_key", "load_master_key", "save_master_key"]

MASTER_ENCTYPE = 20  # aes256-cts-hmac-sha384-192 (RFC 8009)
USAGE_WRAP = 1024
USAGE_CHECK = 1025
_CHECK_TEXT = b"kerbtel master key check"
_MAGIC = b"kerbtel-key\0"


@dataclass(frozen=True, slots=True)
class MasterKey:
    key: Key  # repr hides the bytes
    kvno: int = 1

    def check_value(self) -> bytes:
        return encrypt(self.key, USAGE_CHECK, _CHECK_TEXT)

    def matches(self, check_value: bytes) -> bool:
        try:
            return decrypt(self.key, USAGE_CHECK, check_value)[: len(_CHECK_TEXT)] == _CHECK_TEXT
        except CryptoError:
            return False

    def wrap(self, name: str, kvno: int, key: Key) -> bytes:
        return encrypt(self.key, USAGE_WRAP, _header(name, kvno, key.enctype) + key.contents)

    def unwrap(self, name: str, kvno: int, enctype: int, wrapped: bytes, key_bytes: int) -> Key:
        header = _header(name, kvno, enctype)
        try:
            plain = decrypt(self.key, USAGE_WRAP, wrapped)
        except CryptoError:
            raise MasterKeyError(f"stored key {name} kvno {kvno} enctype {enctype} does not decrypt under the master key") from None
        # des3's decrypt keeps zero padding to the block size: take exactly key_bytes after the header.
        if plain[: len(header)] != header or len(plain) < len(header) + key_bytes:
            raise MasterKeyError(f"stored key {name} kvno {kvno} enctype {enctype} belongs to another record")
        return Key(enctype, plain[len(header) : len(header) + key_bytes])


def _header(name: str, kvno: int, enctype: int) -> bytes:
    return _MAGIC + name.encode("utf-8", "surrogateescape") + b"\0" + struct.pack(">II", kvno, enctype)


def master_principal(realm: str) -> Principal:
    return Principal(("K", "M"), realm)


def generate_master_key(kvno: int = 1) -> MasterKey:
    return MasterKey(generate_key(MASTER_ENCTYPE), kvno)


def save_master_key(path: str | os.PathLike[str], master: MasterKey, realm: str) -> None:
    """Write the stash file (a keytab for K/M@REALM) atomically with mode 0600."""
    from common.keytab import Keytab, KeytabEntry

    Keytab([KeytabEntry(master_principal(realm), master.kvno, master.key)]).save(path)


def load_master_key(path: str | os.PathLike[str]) -> MasterKey:
    """Read a stash file; it must be mode 0600 (InsecureFileMode -> MasterKeyError otherwise)."""
    from common.keytab import Keytab, KeytabFormatError

    try:
        data = read_file(path, private=True, max_size=65536)
    except FileNotFoundError:
        raise NotFound(f"no master key stash file at {os.fspath(path)}") from None
    except InsecureFileMode as exc:
        raise MasterKeyError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise MasterKeyError(f"cannot read master key stash {os.fspath(path)}: {exc}") from None
    try:
        keytab = Keytab.parse(data)
    except KeytabFormatError as exc:
        raise MasterKeyError(f"{os.fspath(path)} is not a master key stash: {exc}") from None
    entries = [e for e in keytab if e.principal.components == ("K", "M")]
    if not entries:
        raise MasterKeyError(f"{os.fspath(path)} holds no K/M master key")
    best = max(entries, key=lambda e: e.kvno)
    return MasterKey(best.key, best.kvno)
