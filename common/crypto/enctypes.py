"""Registries of enctype and checksum-type classes, and the public functions built on them.

Every public function takes a `Key`, checks that its enctype is known and its length right,
then hands raw bytes to the enctype class.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Callable

from common.crypto.errors import CryptoError, IntegrityError, UnsupportedChecksumTypeError, UnsupportedEnctypeError
from common.crypto.key import Key
from common.crypto.rfc3961 import Aes128CtsHmacSha196, Aes256CtsHmacSha196, Des3CbcSha1Kd, Enctype
from common.crypto.rfc8009 import Aes128CtsHmacSha256128, Aes256CtsHmacSha384192

ENCTYPES: dict[int, type[Enctype]] = {
    cls.number: cls
    for cls in (Des3CbcSha1Kd, Aes128CtsHmacSha196, Aes256CtsHmacSha196, Aes128CtsHmacSha256128, Aes256CtsHmacSha384192)
}


def get_enctype(enctype: int) -> type[Enctype]:
    """The enctype class for a number; UnsupportedEnctypeError for anything not registered."""
    try:
        return ENCTYPES[int(enctype)]
    except (KeyError, TypeError, ValueError):
        raise UnsupportedEnctypeError(f"unsupported enctype {enctype!r}") from None


def enctype_by_name(text: str) -> type[Enctype]:
    """The enctype for a number or a name as MIT's tools spell it ('18', 'aes256-cts',
    'aes256-cts-hmac-sha1-96:normal' -- a ':salttype' suffix is ignored)."""
    name = text.strip().lower().split(":", 1)[0]
    if name.isdigit():
        return get_enctype(int(name))
    for cls in ENCTYPES.values():
        if name == cls.name or name in cls.aliases:
            return cls
    known = ", ".join(cls.name for cls in ENCTYPES.values())
    raise UnsupportedEnctypeError(f"unknown enctype {text!r} (known: {known})")


def _enctype_for_key(key: Key) -> type[Enctype]:
    cls = get_enctype(key.enctype)
    if len(key.contents) != cls.key_bytes:
        raise CryptoError(f"{cls.name} key must be {cls.key_bytes} bytes, got {len(key.contents)}")
    return cls


def encrypt(key: Key, usage: int, plaintext: bytes, confounder: bytes | None = None) -> bytes:
    """Encrypt with integrity (RFC 3961 encryption function). `confounder` is for test vectors only."""
    cls = _enctype_for_key(key)
    if confounder is None:
        confounder = os.urandom(cls.confounder_bytes)
    elif len(confounder) != cls.confounder_bytes:
        raise CryptoError(f"{cls.name} confounder must be {cls.confounder_bytes} bytes, got {len(confounder)}")
    return cls.encrypt(key.contents, int(usage), bytes(plaintext), bytes(confounder))


def decrypt(key: Key, usage: int, ciphertext: bytes) -> bytes:
    """Decrypt and verify; IntegrityError when the MAC fails or the input is too short.

    For des3-cbc-sha1-kd the result keeps the zero padding up to the 8-byte block (the
    ASN.1 inside carries its own length, as RFC 3961 expects).
    """
    cls = _enctype_for_key(key)
    return cls.decrypt(key.contents, int(usage), bytes(ciphertext))


def decryptor(key: Key, usage: int) -> Callable[[bytes], bytes]:
    """`decrypt(key, usage, .)` for many messages (bytes) under one key and usage: the key is
    checked, and the usage keys derived, once. The callable raises what `decrypt` raises."""
    cls = _enctype_for_key(key)
    return cls.decryptor(key.contents, int(usage))


def random_to_key(enctype: int, random: bytes) -> Key:
    cls = get_enctype(enctype)
    return Key(cls.number, cls.random_to_key(bytes(random)))


def generate_key(enctype: int) -> Key:
    """A fresh random key (random-to-key over seed_bytes from the OS CSPRNG)."""
    cls = get_enctype(enctype)
    return Key(cls.number, cls.random_to_key(os.urandom(cls.seed_bytes)))


def string_to_key(enctype: int, password: bytes | str, salt: bytes | str, params: bytes | None = None) -> Key:
    """Password to key. str arguments are encoded as UTF-8; `params` is the s2kparams octets."""
    cls = get_enctype(enctype)
    if isinstance(password, str):
        password = password.encode("utf-8")
    if isinstance(salt, str):
        salt = salt.encode("utf-8")
    return Key(cls.number, cls.string_to_key(bytes(password), bytes(salt), params))


def prf(key: Key, data: bytes) -> bytes:
    """The enctype's pseudo-random function (RFC 3961 3, RFC 3962 / RFC 8009 definitions)."""
    cls = _enctype_for_key(key)
    return cls.prf(key.contents, bytes(data))


def _prf_plus(key: Key, data: bytes, length: int) -> bytes:
    """RFC 6113 5.1 PRF+: PRF(key, 0x01 || data) || PRF(key, 0x02 || data) || ..., cut to `length`."""
    out = bytearray()
    counter = 1
    while len(out) < length:
        if counter > 255:  # the counter is one octet
            raise CryptoError(f"PRF+ cannot produce {length} bytes from enctype {key.enctype}")
        out += prf(key, bytes([counter]) + data)
        counter += 1
    return bytes(out[:length])


def cf2(key1: Key, key2: Key, pepper1: bytes | str, pepper2: bytes | str) -> Key:
    """KRB-FX-CF2 (RFC 6113 5.1): random-to-key(PRF+(key1, pepper1) XOR PRF+(key2, pepper2)).

    The result has key1's enctype; each PRF+ yields that enctype's random-to-key input length
    (seed_bytes). The keys may be of different enctypes. str peppers are encoded as UTF-8
    (FAST uses ASCII ones: "subkeyarmor"/"ticketarmor", "strengthenkey"/"replykey", ...).
    """
    cls = get_enctype(key1.enctype)
    if isinstance(pepper1, str):
        pepper1 = pepper1.encode("utf-8")
    if isinstance(pepper2, str):
        pepper2 = pepper2.encode("utf-8")
    first = _prf_plus(key1, bytes(pepper1), cls.seed_bytes)
    second = _prf_plus(key2, bytes(pepper2), cls.seed_bytes)
    return Key(cls.number, cls.random_to_key(bytes(a ^ b for a, b in zip(first, second))))


# --- checksums -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChecksumType:
    """A checksum type: keyed ones belong to exactly one enctype (RFC 3961 4)."""

    number: int
    name: str
    size: int
    enctype: int | None  # None for unkeyed checksums

    def compute(self, key: Key | None, usage: int, data: bytes) -> bytes:
        if self.enctype is None:
            return hashlib.sha1(data).digest()
        if key is None:
            raise CryptoError(f"checksum type {self.name} is keyed, but no key was given")
        if key.enctype != self.enctype:
            raise CryptoError(
                f"checksum type {self.name} needs a {get_enctype(self.enctype).name} key, got enctype {key.enctype}"
            )
        return _enctype_for_key(key).checksum(key.contents, int(usage), bytes(data))


CHECKSUM_TYPES: dict[int, ChecksumType] = {
    c.number: c
    for c in (
        ChecksumType(12, "hmac-sha1-des3-kd", 20, Des3CbcSha1Kd.number),
        ChecksumType(14, "sha1", 20, None),
        ChecksumType(15, "hmac-sha1-96-aes128", 12, Aes128CtsHmacSha196.number),
        ChecksumType(16, "hmac-sha1-96-aes256", 12, Aes256CtsHmacSha196.number),
        ChecksumType(19, "hmac-sha256-128-aes128", 16, Aes128CtsHmacSha256128.number),
        ChecksumType(20, "hmac-sha384-192-aes256", 24, Aes256CtsHmacSha384192.number),
    )
}


def get_checksum_type(cksumtype: int) -> ChecksumType:
    try:
        return CHECKSUM_TYPES[int(cksumtype)]
    except (KeyError, TypeError, ValueError):
        raise UnsupportedChecksumTypeError(f"unsupported checksum type {cksumtype!r}") from None


def required_checksum_type(enctype: int) -> int:
    """The mandatory keyed checksum type for an enctype (e.g. 18 -> 16)."""
    return get_enctype(enctype).checksum_type


def make_checksum(cksumtype: int, key: Key | None, usage: int, data: bytes) -> bytes:
    return get_checksum_type(cksumtype).compute(key, usage, data)


def verify_checksum(cksumtype: int, key: Key | None, usage: int, data: bytes, checksum: bytes) -> None:
    """Raise IntegrityError unless `checksum` is the right one (constant-time comparison)."""
    ctype = get_checksum_type(cksumtype)
    expected = ctype.compute(key, usage, data)
    if not hmac.compare_digest(expected, bytes(checksum)):
        raise IntegrityError(f"checksum type {ctype.name} does not verify for key usage {usage}")
