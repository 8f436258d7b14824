"""Block-cipher modes the enctypes need: AES-CTS (RFC 3962 variant of CBC-CS3) and 3DES-CBC.

Kerberos never chains cipher state between messages here, so every call starts from the IV
given (all zeros by default). Inputs are assumed validated by the enctype layer.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_BLOCK = 16
DES3_BLOCK = 8
_ZERO_IV = bytes(AES_BLOCK)


@lru_cache(maxsize=1024)
def _aes_ecb(key: bytes) -> Cipher:
    return Cipher(algorithms.AES(key), modes.ECB())


def _aes_cbc(key: bytes, iv: bytes) -> Cipher:
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def aes_encrypt_block(key: bytes, block: bytes) -> bytes:
    enc = _aes_ecb(key).encryptor()
    return enc.update(block) + enc.finalize()


def aes_cts_encrypt(key: bytes, data: bytes, iv: bytes = _ZERO_IV) -> bytes:
    """AES-CBC with ciphertext stealing as Kerberos uses it (RFC 3962 5).

    One block is plain CBC. Longer input is CBC-encrypted with zero padding, then the last two
    ciphertext blocks are swapped and the output cut to the input length (the swap happens
    even when the input is a whole number of blocks).
    """
    if len(data) < AES_BLOCK:
        raise ValueError(f"AES-CTS needs at least {AES_BLOCK} bytes, got {len(data)}")
    pad = -len(data) % AES_BLOCK
    enc = _aes_cbc(key, iv).encryptor()
    out = enc.update(data + bytes(pad)) + enc.finalize()
    if len(out) == AES_BLOCK:
        return out
    tail = AES_BLOCK - pad  # bytes of plaintext in the final (partial) block
    return out[:-2 * AES_BLOCK] + out[-AES_BLOCK:] + out[-2 * AES_BLOCK:-2 * AES_BLOCK + tail]


def aes_cts_decrypt(key: bytes, data: bytes, iv: bytes = _ZERO_IV) -> bytes:
    """Inverse of `aes_cts_encrypt`."""
    if len(data) < AES_BLOCK:
        raise ValueError(f"AES-CTS needs at least {AES_BLOCK} bytes, got {len(data)}")
    if len(data) == AES_BLOCK:
        dec = _aes_cbc(key, iv).decryptor()
        return dec.update(data) + dec.finalize()
    tail = len(data) % AES_BLOCK or AES_BLOCK
    head = data[:-(AES_BLOCK + tail)]  # whole blocks before the swapped pair
    last_full = data[-(AES_BLOCK + tail):-tail]  # encryption of the final (padded) block
    stolen = data[-tail:]  # leading bytes of the penultimate ciphertext block
    ecb = _aes_ecb(key).decryptor()
    mixed = ecb.update(last_full) + ecb.finalize()  # = padded final plaintext XOR penultimate block
    penultimate = stolen + mixed[tail:]
    final_plain = bytes(a ^ b for a, b in zip(mixed[:tail], penultimate))
    dec = _aes_cbc(key, iv).decryptor()
    return dec.update(head + penultimate) + dec.finalize() + final_plain


def des3_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(DES3_BLOCK)) -> bytes:
    enc = Cipher(TripleDES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def des3_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(DES3_BLOCK)) -> bytes:
    dec = Cipher(TripleDES(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()
