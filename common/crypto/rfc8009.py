"""RFC 8009 enctypes: aes128-cts-hmac-sha256-128 (19) and aes256-cts-hmac-sha384-192 (20).

Differences from RFC 3962 that matter: keys come from KDF-HMAC-SHA2 (SP 800-108 counter mode)
instead of DK; the MAC covers IV || ciphertext (encrypt-then-MAC), not the plaintext; the
string-to-key salt is prefixed with the enctype name and a zero byte.
"""

from __future__ import annotations

import hmac
from typing import ClassVar

from cryptography.hazmat.primitives import hashes

from common.crypto import ciphers
from common.crypto.errors import CryptoError, IntegrityError
from common.crypto.rfc3961 import (
    CHECKSUM_KEY,
    ENCRYPTION_KEY,
    INTEGRITY_KEY,
    KERBEROS_CONSTANT,
    PRF_CONSTANT,
    Enctype,
    parse_iteration_count,
    pbkdf2,
    usage_constant,
)

_ZERO_IV = bytes(16)


def kdf_hmac_sha2(hash_name: str, key: bytes, label: bytes, nbits: int, context: bytes = b"") -> bytes:
    """RFC 8009 3: first nbits of HMAC(key, 00000001 | label | 00 | context | nbits as 32-bit BE).

    Every RFC 8009 use asks for at most one hash output, so the counter is always 1.
    """
    msg = (1).to_bytes(4, "big") + label + b"\x00" + context + nbits.to_bytes(4, "big")
    return hmac.new(key, msg, hash_name).digest()[: nbits // 8]


class AesCtsHmacSha2(Enctype):
    hash_name: ClassVar[str]
    pbkdf2_hash: ClassVar[type[hashes.HashAlgorithm]]
    prf_bytes: ClassVar[int]
    confounder_bytes = 16
    block_bytes = 16
    default_iterations = 32768

    @classmethod
    def random_to_key(cls, seed: bytes) -> bytes:
        if len(seed) != cls.seed_bytes:
            raise CryptoError(f"{cls.name} random-to-key needs {cls.seed_bytes} bytes, got {len(seed)}")
        return bytes(seed)

    @classmethod
    def string_to_key(cls, password: bytes, salt: bytes, params: bytes | None) -> bytes:
        iterations = parse_iteration_count(cls.name, params, cls.default_iterations)
        salt_prime = cls.name.encode() + b"\x00" + salt
        tkey = cls.random_to_key(pbkdf2(cls.pbkdf2_hash(), password, salt_prime, iterations, cls.key_bytes))
        return kdf_hmac_sha2(cls.hash_name, tkey, KERBEROS_CONSTANT, cls.key_bytes * 8)

    @classmethod
    def _derive_uncached(cls, key: bytes, constant: bytes) -> bytes:
        # Ke is a full AES key; Kc and Ki are HMAC keys as long as the truncated MAC.
        nbytes = cls.key_bytes if constant[-1:] == bytes([ENCRYPTION_KEY]) else cls.mac_bytes
        return kdf_hmac_sha2(cls.hash_name, key, constant, nbytes * 8)

    @classmethod
    def _mac(cls, ki: bytes, data: bytes) -> bytes:
        return hmac.new(ki, data, cls.hash_name).digest()[: cls.mac_bytes]

    @classmethod
    def encrypt(cls, key: bytes, usage: int, plaintext: bytes, confounder: bytes) -> bytes:
        ke = cls.derive(key, usage_constant(usage, ENCRYPTION_KEY))
        ki = cls.derive(key, usage_constant(usage, INTEGRITY_KEY))
        body = ciphers.aes_cts_encrypt(ke, confounder + plaintext, _ZERO_IV)
        return body + cls._mac(ki, _ZERO_IV + body)

    @classmethod
    def decrypt(cls, key: bytes, usage: int, ciphertext: bytes) -> bytes:
        if len(ciphertext) < cls.min_ciphertext_bytes():
            raise IntegrityError(
                f"{cls.name} ciphertext of {len(ciphertext)} bytes is shorter than the minimum {cls.min_ciphertext_bytes()}"
            )
        body, mac = ciphertext[: -cls.mac_bytes], ciphertext[-cls.mac_bytes :]
        ki = cls.derive(key, usage_constant(usage, INTEGRITY_KEY))
        if not hmac.compare_digest(cls._mac(ki, _ZERO_IV + body), mac):
            raise IntegrityError(f"{cls.name} integrity check failed for key usage {usage}")
        ke = cls.derive(key, usage_constant(usage, ENCRYPTION_KEY))
        return ciphers.aes_cts_decrypt(ke, body, _ZERO_IV)[cls.confounder_bytes :]

    @classmethod
    def checksum(cls, key: bytes, usage: int, data: bytes) -> bytes:
        kc = cls.derive(key, usage_constant(usage, CHECKSUM_KEY))
        return hmac.new(kc, data, cls.hash_name).digest()[: cls.checksum_bytes]

    @classmethod
    def prf(cls, key: bytes, data: bytes) -> bytes:
        """RFC 8009 5: KDF-HMAC-SHA2(key, "prf", 256 or 384 bits, data)."""
        return kdf_hmac_sha2(cls.hash_name, key, PRF_CONSTANT, cls.prf_bytes * 8, data)


class Aes128CtsHmacSha256128(AesCtsHmacSha2):
    number = 19
    name = "aes128-cts-hmac-sha256-128"
    aliases = ("aes128-sha2",)
    key_bytes = 16
    seed_bytes = 16
    checksum_type = 19
    checksum_bytes = 16
    mac_bytes = 16
    hash_name = "sha256"
    pbkdf2_hash = hashes.SHA256
    prf_bytes = 32


class Aes256CtsHmacSha384192(AesCtsHmacSha2):
    number = 20
    name = "aes256-cts-hmac-sha384-192"
    aliases = ("aes256-sha2",)
    key_bytes = 32
    seed_bytes = 32
    checksum_type = 20
    checksum_bytes = 24
    mac_bytes = 24
    hash_name = "sha384"
    pbkdf2_hash = hashes.SHA384
    prf_bytes = 48
