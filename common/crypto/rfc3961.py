"""The RFC 3961 enctype framework and its simplified profile: des3-cbc-sha1-kd and the
RFC 3962 AES-CTS-HMAC-SHA1-96 enctypes.

Enctypes are classes, never instantiated: the registry in `enctypes.py` maps numbers to them.
They work on raw key bytes; the public functions check the `Key` wrapper first.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Callable, ClassVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from common.crypto import ciphers
from common.crypto.errors import CryptoError, IntegrityError
from common.crypto.nfold import nfold

KERBEROS_CONSTANT = b"kerberos"  # RFC 3961 / 3962 string-to-key constant
PRF_CONSTANT = b"prf"
# RFC 3961 5.3 key-derivation constants appended to the 4-byte usage number.
CHECKSUM_KEY = 0x99
ENCRYPTION_KEY = 0xAA
INTEGRITY_KEY = 0x55
# MIT refuses s2kparams iteration counts at or above 2^24; a KDC-chosen count must not hang us.
MAX_S2K_ITERATIONS = 1 << 24


class Enctype:
    """Base of every encryption type: sizes, names and the operations RFC 3961 3 requires."""

    number: ClassVar[int]
    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()  # other names MIT's tools accept (kdc.conf, ktutil, klist)
    key_bytes: ClassVar[int]
    seed_bytes: ClassVar[int]  # key-generation seed length fed to random-to-key
    checksum_type: ClassVar[int]  # the mandatory keyed checksum (RFC 3961 "required checksum")
    checksum_bytes: ClassVar[int]
    confounder_bytes: ClassVar[int]
    block_bytes: ClassVar[int]  # message block size; ciphertext is confounder+data(+pad)+MAC
    mac_bytes: ClassVar[int]

    @classmethod
    def random_to_key(cls, seed: bytes) -> bytes:
        raise NotImplementedError

    @classmethod
    def string_to_key(cls, password: bytes, salt: bytes, params: bytes | None) -> bytes:
        raise NotImplementedError

    @classmethod
    def encrypt(cls, key: bytes, usage: int, plaintext: bytes, confounder: bytes) -> bytes:
        raise NotImplementedError

    @classmethod
    def decrypt(cls, key: bytes, usage: int, ciphertext: bytes) -> bytes:
        raise NotImplementedError

    @classmethod
    def decryptor(cls, key: bytes, usage: int) -> Callable[[bytes], bytes]:
        """`decrypt` with `key` and `usage` fixed, for many messages under them."""

        def decrypt(ciphertext: bytes) -> bytes:  # a closure, not partial(): its repr shows no key
            return cls.decrypt(key, usage, ciphertext)

        return decrypt

    @classmethod
    def checksum(cls, key: bytes, usage: int, data: bytes) -> bytes:
        raise NotImplementedError

    @classmethod
    def prf(cls, key: bytes, data: bytes) -> bytes:
        raise NotImplementedError

    @classmethod
    def min_ciphertext_bytes(cls) -> int:
        return cls.confounder_bytes + cls.mac_bytes

    @classmethod
    def derive(cls, key: bytes, constant: bytes) -> bytes:
        """A derived key, cached per (enctype, key, constant)."""
        return _derived(cls, key, constant)

    @classmethod
    def _derive_uncached(cls, key: bytes, constant: bytes) -> bytes:
        raise NotImplementedError


DERIVED_CACHE_SIZE = 4096  # entries of each per-key cache below (derived keys, usage keys)


@lru_cache(maxsize=DERIVED_CACHE_SIZE)
def _derived(cls: type[Enctype], key: bytes, constant: bytes) -> bytes:
    return cls._derive_uncached(key, constant)


@lru_cache(maxsize=1024)  # constants are usage numbers and a few words; fresh keys need them folded again
def _folded_constant(constant: bytes, nbytes: int) -> bytes:
    return nfold(constant, nbytes)


_XOR_IPAD = bytes(b ^ 0x36 for b in range(256))  # translate() tables, as the hmac module's
_XOR_OPAD = bytes(b ^ 0x5C for b in range(256))


class HmacKey:
    """HMAC (RFC 2104) under one key: the hash states after absorbing key XOR ipad and
    key XOR opad are computed once; each MAC copies them instead of hashing both pads again."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, hash_name: str) -> None:
        block = hashlib.new(hash_name).block_size
        if len(key) > block:
            key = hashlib.new(hash_name, key).digest()
        padded = key.ljust(block, b"\0")
        self._inner = hashlib.new(hash_name, padded.translate(_XOR_IPAD))
        self._outer = hashlib.new(hash_name, padded.translate(_XOR_OPAD))

    def digest(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def usage_constant(usage: int, kind: int) -> bytes:
    if not 0 <= usage < 1 << 32:
        raise CryptoError(f"key usage {usage} is outside 0..2^32-1")
    return usage.to_bytes(4, "big") + bytes([kind])


def pbkdf2(hash_algorithm: hashes.HashAlgorithm, password: bytes, salt: bytes, iterations: int, length: int) -> bytes:
    return PBKDF2HMAC(hash_algorithm, length, salt, iterations).derive(password)


def parse_iteration_count(enctype_name: str, params: bytes | None, default: int) -> int:
    """RFC 3962 4: s2kparams is a 4-byte big-endian iteration count."""
    if params is None:
        return default
    if len(params) != 4:
        raise CryptoError(f"{enctype_name} s2kparams must be 4 bytes, got {len(params)}")
    count = int.from_bytes(params, "big")
    if count == 0 or count >= MAX_S2K_ITERATIONS:
        raise CryptoError(f"{enctype_name} s2kparams iteration count {count} is outside 1..{MAX_S2K_ITERATIONS - 1}")
    return count


class SimplifiedProfile(Enctype):
    """RFC 3961 5.3: DK-based keys, confounder || plaintext encrypted, HMAC over the plaintext.

    Subclasses supply the block cipher mode (`_cipher`) and sizes. Per (key, usage), the cipher
    under Ke and the HMAC under Ki are built once and kept (`_usage_keys`, bounded).
    """

    hash_name: ClassVar[str] = "sha1"
    pad_to_block: ClassVar[bool]  # DES3 pads to the block size; CTS needs no padding

    @classmethod
    def _cipher(cls, key: bytes):
        """The block cipher mode under `key`: an object with encrypt(data) and decrypt(data)."""
        raise NotImplementedError

    @classmethod
    def _encrypt_raw(cls, key: bytes, data: bytes) -> bytes:
        return cls._cipher(key).encrypt(data)

    @classmethod
    def _decrypt_raw(cls, key: bytes, data: bytes) -> bytes:
        return cls._cipher(key).decrypt(data)

    @classmethod
    def derive_random(cls, key: bytes, constant: bytes) -> bytes:
        """DR(key, constant), RFC 3961 5.1: iterate E(key, .) from n-fold(constant) for seed_bytes."""
        block = _folded_constant(constant, cls.block_bytes)
        stream = b""
        while len(stream) < cls.seed_bytes:
            block = cls._encrypt_raw(key, block)
            stream += block
        return stream[: cls.seed_bytes]

    @classmethod
    def _derive_uncached(cls, key: bytes, constant: bytes) -> bytes:
        """DK(key, constant) = random-to-key(DR(key, constant))."""
        return cls.random_to_key(cls.derive_random(key, constant))

    @classmethod
    def encrypt(cls, key: bytes, usage: int, plaintext: bytes, confounder: bytes) -> bytes:
        return _usage_keys(cls, key, usage).encrypt(plaintext, confounder)

    @classmethod
    def decrypt(cls, key: bytes, usage: int, ciphertext: bytes) -> bytes:
        return _usage_keys(cls, key, usage).decrypt(ciphertext)

    @classmethod
    def decryptor(cls, key: bytes, usage: int) -> Callable[[bytes], bytes]:
        return _usage_keys(cls, key, usage).decrypt

    @classmethod
    def checksum(cls, key: bytes, usage: int, data: bytes) -> bytes:
        kc = cls.derive(key, usage_constant(usage, CHECKSUM_KEY))
        return hmac.digest(kc, data, cls.hash_name)[: cls.checksum_bytes]

    @classmethod
    def prf(cls, key: bytes, data: bytes) -> bytes:
        """RFC 3961 5.3: E(DK(key, "prf"), truncate-to-blocks(SHA-1(data)))."""
        digest = hashlib.new(cls.hash_name, data).digest()
        digest = digest[: len(digest) - len(digest) % cls.block_bytes]
        return cls._encrypt_raw(cls.derive(key, PRF_CONSTANT), digest)


class _UsageKeys:
    """What every message under one (enctype, key, usage) needs, RFC 3961 5.3: the cipher under
    Ke = DK(key, usage | 0xAA) and the HMAC under Ki = DK(key, usage | 0x55), built once."""

    __slots__ = ("profile", "usage", "cipher", "integrity")

    def __init__(self, profile: type[SimplifiedProfile], key: bytes, usage: int) -> None:
        self.profile = profile
        self.usage = usage
        self.cipher = profile._cipher(profile.derive(key, usage_constant(usage, ENCRYPTION_KEY)))
        self.integrity = HmacKey(profile.derive(key, usage_constant(usage, INTEGRITY_KEY)), profile.hash_name)

    def encrypt(self, plaintext: bytes, confounder: bytes) -> bytes:
        """confounder || plaintext (|| zero padding), encrypted, then the truncated HMAC of it."""
        profile = self.profile
        data = confounder + plaintext
        if profile.pad_to_block:
            data += bytes(-len(data) % profile.block_bytes)
        return self.cipher.encrypt(data) + self.integrity.digest(data)[: profile.mac_bytes]

    def decrypt(self, ciphertext: bytes) -> bytes:
        profile = self.profile
        body_len = len(ciphertext) - profile.mac_bytes
        if body_len < profile.confounder_bytes:
            raise IntegrityError(
                f"{profile.name} ciphertext of {len(ciphertext)} bytes is shorter than the minimum {profile.min_ciphertext_bytes()}"
            )
        if profile.pad_to_block and body_len % profile.block_bytes:
            raise IntegrityError(f"{profile.name} ciphertext body of {body_len} bytes is not a multiple of {profile.block_bytes}")
        data = self.cipher.decrypt(ciphertext[:body_len])
        if not hmac.compare_digest(self.integrity.digest(data)[: profile.mac_bytes], ciphertext[body_len:]):
            raise IntegrityError(f"{profile.name} integrity check failed for key usage {self.usage}")
        return data[profile.confounder_bytes :]


@lru_cache(maxsize=DERIVED_CACHE_SIZE)
def _usage_keys(cls: type[SimplifiedProfile], key: bytes, usage: int) -> _UsageKeys:
    return _UsageKeys(cls, key, usage)


def _des_fix_parity(octets: bytes) -> bytes:
    """Set each byte's low bit so the byte has odd parity (DES key convention)."""
    return bytes((b & 0xFE) | (1 - bin(b >> 1).count("1") % 2) for b in octets)


class Des3CbcSha1Kd(SimplifiedProfile):
    """des3-cbc-sha1-kd (RFC 3961 6.3). Deprecated by RFC 8429; kept for old keytabs and interop."""

    number = 16
    name = "des3-cbc-sha1-kd"
    aliases = ("des3-cbc-sha1", "des3-hmac-sha1")
    key_bytes = 24
    seed_bytes = 21
    checksum_type = 12
    checksum_bytes = 20
    confounder_bytes = 8
    block_bytes = 8
    mac_bytes = 20
    pad_to_block = True

    @classmethod
    def random_to_key(cls, seed: bytes) -> bytes:
        """Spread each 56 random bits over 8 bytes: the eighth byte collects the low bits of the
        first seven (bit j+1 from byte j), then every byte gets odd parity in its low bit."""
        if len(seed) != cls.seed_bytes:
            raise CryptoError(f"{cls.name} random-to-key needs {cls.seed_bytes} bytes, got {len(seed)}")
        out = bytearray()
        for i in range(0, 21, 7):
            chunk = seed[i : i + 7]
            last = sum((b & 1) << (j + 1) for j, b in enumerate(chunk))
            out += _des_fix_parity(chunk + bytes([last]))
        return bytes(out)

    @classmethod
    def string_to_key(cls, password: bytes, salt: bytes, params: bytes | None) -> bytes:
        if params:
            raise CryptoError(f"{cls.name} takes no s2kparams, got {len(params)} bytes")
        tmp = cls.random_to_key(nfold(password + salt, cls.seed_bytes))
        return cls._derive_uncached(tmp, KERBEROS_CONSTANT)

    @classmethod
    def _cipher(cls, key: bytes) -> ciphers.Des3Cbc:
        return ciphers.Des3Cbc(key)


class AesCtsHmacSha1(SimplifiedProfile):
    """RFC 3962 aes*-cts-hmac-sha1-96: AES-CTS, HMAC-SHA1 truncated to 96 bits, PBKDF2 s2k."""

    seed_bytes: ClassVar[int]
    checksum_bytes = 12
    confounder_bytes = 16
    block_bytes = 16
    mac_bytes = 12
    pad_to_block = False
    default_iterations = 4096

    @classmethod
    def random_to_key(cls, seed: bytes) -> bytes:
        if len(seed) != cls.seed_bytes:
            raise CryptoError(f"{cls.name} random-to-key needs {cls.seed_bytes} bytes, got {len(seed)}")
        return bytes(seed)

    @classmethod
    def string_to_key(cls, password: bytes, salt: bytes, params: bytes | None) -> bytes:
        iterations = parse_iteration_count(cls.name, params, cls.default_iterations)
        tkey = cls.random_to_key(pbkdf2(hashes.SHA1(), password, salt, iterations, cls.key_bytes))
        return cls._derive_uncached(tkey, KERBEROS_CONSTANT)

    @classmethod
    def _cipher(cls, key: bytes) -> ciphers.AesCts:
        return ciphers.aes_cts(key)


class Aes128CtsHmacSha196(AesCtsHmacSha1):
    number = 17
    name = "aes128-cts-hmac-sha1-96"
    aliases = ("aes128-cts", "aes128")
    key_bytes = 16
    seed_bytes = 16
    checksum_type = 15


class Aes256CtsHmacSha196(AesCtsHmacSha1):
    number = 18
    name = "aes256-cts-hmac-sha1-96"
    aliases = ("aes256-cts", "aes256")
    key_bytes = 32
    seed_bytes = 32
    checksum_type = 16
