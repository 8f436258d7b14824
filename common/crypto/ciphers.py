"""Block-cipher modes the enctypes need: AES-CTS (RFC 3962 variant of CBC-CS3) and 3DES-CBC.

Kerberos never chains cipher state between messages here, so every call starts from the IV
given (all zeros by default). Inputs are assumed validated by the enctype layer.

Building AES objects costs more than encrypting a Kerberos message with them, so `aes_cts(key)`
keeps them per key (bounded, least recently used dropped). The shared ECB context is safe: its
`update()` holds the GIL throughout and ECB carries nothing from one call to the next.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_BLOCK = 16
DES3_BLOCK = 8
_ZERO_IV = bytes(AES_BLOCK)
# Keys whose AES objects are kept: as many as the derived-key cache (rfc3961) holds, so a busy
# service's session keys do not push each other out (about 1 KiB of OpenSSL state each).
AES_CACHE_SIZE = 4096


def _xor(a: bytes, b: bytes) -> bytes:
    """a XOR b for equal lengths (one big-integer operation, not a loop over bytes)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class AesCts:
    """AES-CBC with ciphertext stealing as Kerberos uses it (RFC 3962 5), under one key.

    Decryption reuses one ECB context: CBC decryption is ECB decryption XOR the previous
    ciphertext block, and ECB keeps no state between blocks, so `update()` may be called again
    and again without `finalize()` -- given whole blocks only, as here (a partial block would
    stay buffered in the context). Encryption is CBC, whose context carries the chaining
    block, so each message gets a fresh context from the cached `Cipher`; a single block under
    the zero IV is plain E(block) and reuses an ECB encryption context the same way.
    """

    __slots__ = ("_aes", "_cbc_zero_iv", "_ecb_decrypt", "_ecb_encrypt")

    def __init__(self, key: bytes) -> None:
        self._aes = algorithms.AES(key)
        self._cbc_zero_iv = Cipher(self._aes, modes.CBC(_ZERO_IV))
        # OpenSSL contexts are made on first use: a fresh key (a reply key, a sub-key) is often
        # only derived from, or only encrypted with, and a context costs more than its use.
        self._ecb_decrypt = None
        self._ecb_encrypt = None

    def encrypt(self, data: bytes, iv: bytes = _ZERO_IV) -> bytes:
        """One block is plain CBC. Longer input is CBC-encrypted with zero padding, then the last
        two ciphertext blocks are swapped and the output cut to the input length (the swap
        happens even when the input is a whole number of blocks)."""
        size = len(data)
        if size < AES_BLOCK:
            raise ValueError(f"AES-CTS needs at least {AES_BLOCK} bytes, got {size}")
        if size == AES_BLOCK and iv == _ZERO_IV:
            # One block under a zero IV is E(block): the reusable ECB context does it (key
            # derivation encrypts single blocks again and again under a fresh key).
            encrypt_block = self._ecb_encrypt
            if encrypt_block is None:
                encrypt_block = self._ecb_encrypt = Cipher(self._aes, modes.ECB()).encryptor().update
            return encrypt_block(data)
        cbc = self._cbc_zero_iv if iv == _ZERO_IV else Cipher(self._aes, modes.CBC(iv))
        pad = -size % AES_BLOCK
        enc = cbc.encryptor()
        out = enc.update(data + bytes(pad)) + enc.finalize()
        if len(out) == AES_BLOCK:
            return out
        tail = AES_BLOCK - pad  # bytes of plaintext in the final (partial) block
        return out[: -2 * AES_BLOCK] + out[-AES_BLOCK:] + out[-2 * AES_BLOCK : -2 * AES_BLOCK + tail]

    def decrypt(self, data: bytes, iv: bytes = _ZERO_IV) -> bytes:
        """Inverse of `encrypt`. The input is C1 .. C(n-2), Cn, then C(n-1) cut to the final
        block's length `tail`. Every complete block is ECB-decrypted in one call; D(Cn) is the
        zero-padded final plaintext XOR C(n-1), so its bytes past `tail` complete C(n-1). Then
        P(i) = D(C(i)) XOR C(i-1), with C0 the IV."""
        size = len(data)
        if size < AES_BLOCK:
            raise ValueError(f"AES-CTS needs at least {AES_BLOCK} bytes, got {size}")
        decrypt_blocks = self._ecb_decrypt
        if decrypt_blocks is None:
            decrypt_blocks = self._ecb_decrypt = Cipher(self._aes, modes.ECB()).decryptor().update
        if size == AES_BLOCK:
            return _xor(decrypt_blocks(data), iv)
        tail = size % AES_BLOCK or AES_BLOCK
        complete = size - tail  # C1 .. C(n-2), Cn
        decrypted = decrypt_blocks(data[:complete])
        final_mixed = decrypted[-AES_BLOCK:]  # D(Cn) = padded Pn XOR C(n-1)
        stolen = data[complete:]  # C(n-1)[:tail]
        penultimate = stolen + final_mixed[tail:]  # C(n-1)
        decrypted_in_order = decrypted[:-AES_BLOCK] + decrypt_blocks(penultimate) + final_mixed[:tail]
        previous_blocks = iv + data[: complete - AES_BLOCK] + stolen  # C0 .. C(n-2), C(n-1)[:tail]
        return _xor(decrypted_in_order, previous_blocks)


@lru_cache(maxsize=AES_CACHE_SIZE)
def aes_cts(key: bytes) -> AesCts:
    """The `AesCts` for `key`, built once while it stays among the recently used."""
    return AesCts(key)


def aes_cts_encrypt(key: bytes, data: bytes, iv: bytes = _ZERO_IV) -> bytes:
    return aes_cts(key).encrypt(data, iv)


def aes_cts_decrypt(key: bytes, data: bytes, iv: bytes = _ZERO_IV) -> bytes:
    return aes_cts(key).decrypt(data, iv)


@lru_cache(maxsize=1024)
def _aes_ecb(key: bytes) -> Cipher:
    return Cipher(algorithms.AES(key), modes.ECB())


def aes_encrypt_block(key: bytes, block: bytes) -> bytes:
    enc = _aes_ecb(key).encryptor()
    return enc.update(block) + enc.finalize()


class Des3Cbc:
    """3DES-CBC under one key, the same interface as `AesCts` (fresh contexts per message)."""

    __slots__ = ("_des3",)

    def __init__(self, key: bytes) -> None:
        self._des3 = TripleDES(key)

    def encrypt(self, data: bytes, iv: bytes = bytes(DES3_BLOCK)) -> bytes:
        enc = Cipher(self._des3, modes.CBC(iv)).encryptor()
        return enc.update(data) + enc.finalize()

    def decrypt(self, data: bytes, iv: bytes = bytes(DES3_BLOCK)) -> bytes:
        dec = Cipher(self._des3, modes.CBC(iv)).decryptor()
        return dec.update(data) + dec.finalize()


def des3_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(DES3_BLOCK)) -> bytes:
    return Des3Cbc(key).encrypt(data, iv)


def des3_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(DES3_BLOCK)) -> bytes:
    return Des3Cbc(key).decrypt(data, iv)
