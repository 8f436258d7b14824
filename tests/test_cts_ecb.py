"""AES-CTS decryption through one reused ECB context, and the per-key caches behind it.

- `AesCts.decrypt` (ECB over every complete block, then XOR with the previous ciphertext blocks)
  equals the previous implementation (CBC decryption of the head plus a separate ECB decryption
  of the final block) and inverts encryption, for every length from 16 to 80 bytes, random keys
  and IVs, the single-block case included;
- the reused contexts carry nothing from one message or key to the next;
- every per-key cache is bounded, and a key dropped from it still decrypts correctly;
- `decryptor(key, usage)` is `decrypt(key, usage, .)` for every enctype, refusals included;
- no key bytes in any repr.
"""

from __future__ import annotations

import os
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from common.asn1 import fastdecode
from common.crypto import ENCTYPES, CryptoError, IntegrityError, Key, KeyUsage, decrypt, encrypt, generate_key
from common.crypto import ciphers, rfc3961
from common.crypto.enctypes import decryptor

BLOCK = 16


def _previous_aes_cts_decrypt(key: bytes, data: bytes, iv: bytes = bytes(BLOCK)) -> bytes:
    """The implementation before the ECB rewrite (fresh CBC and ECB contexts per call)."""
    if len(data) == BLOCK:
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        return dec.update(data) + dec.finalize()
    tail = len(data) % BLOCK or BLOCK
    head = data[: -(BLOCK + tail)]
    last_full = data[-(BLOCK + tail) : -tail]
    stolen = data[-tail:]
    ecb = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    mixed = ecb.update(last_full) + ecb.finalize()
    penultimate = stolen + mixed[tail:]
    final_plain = bytes(a ^ b for a, b in zip(mixed[:tail], penultimate))
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(head + penultimate) + dec.finalize() + final_plain


@pytest.mark.parametrize("key_bytes", [16, 32])
@pytest.mark.parametrize("length", range(16, 81))
def test_decrypt_matches_the_previous_implementation_and_inverts_encryption(length, key_bytes):
    rng = random.Random(length * 100 + key_bytes)
    for _ in range(4):
        key = rng.randbytes(key_bytes)
        iv = rng.choice([bytes(BLOCK), rng.randbytes(BLOCK)])
        plain = rng.randbytes(length)
        cipher = ciphers.aes_cts_encrypt(key, plain, iv)
        assert len(cipher) == length
        assert ciphers.aes_cts_decrypt(key, cipher, iv) == plain
        # Any ciphertext, not only ones we made: the two decryptions agree byte for byte.
        arbitrary = rng.randbytes(length)
        assert ciphers.aes_cts_decrypt(key, arbitrary, iv) == _previous_aes_cts_decrypt(key, arbitrary, iv)


def test_single_block_is_plain_cbc():
    key, iv, block = os.urandom(16), os.urandom(16), os.urandom(16)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    expected = enc.update(block) + enc.finalize()
    assert ciphers.aes_cts_encrypt(key, block, iv) == expected
    assert ciphers.aes_cts_decrypt(key, expected, iv) == block


def test_too_short_input_is_refused():
    for length in (0, 1, 15):
        with pytest.raises(ValueError, match="at least 16 bytes"):
            ciphers.aes_cts_decrypt(bytes(16), bytes(length))
        with pytest.raises(ValueError, match="at least 16 bytes"):
            ciphers.aes_cts_encrypt(bytes(16), bytes(length))


def test_reused_contexts_carry_no_state_between_messages_or_keys():
    rng = random.Random(7)
    keys = [rng.randbytes(32) for _ in range(3)]
    messages = [(key, rng.randbytes(rng.randrange(16, 200))) for key in keys for _ in range(5)]
    sealed = [(key, ciphers.aes_cts_encrypt(key, plain), plain) for key, plain in messages]
    rng.shuffle(sealed)
    for key, cipher, plain in sealed * 2:  # interleaved keys, the same messages twice
        assert ciphers.aes_cts_decrypt(key, cipher) == plain
        assert _previous_aes_cts_decrypt(key, cipher) == plain


def test_aes_cache_is_bounded_and_an_evicted_key_still_works():
    first_key = os.urandom(16)
    plain = os.urandom(50)
    cipher = ciphers.aes_cts_encrypt(first_key, plain)
    for _ in range(ciphers.AES_CACHE_SIZE + 10):
        ciphers.aes_cts_decrypt(os.urandom(16), bytes(33))
    info = ciphers.aes_cts.cache_info()
    assert info.maxsize == ciphers.AES_CACHE_SIZE and info.currsize <= info.maxsize
    assert ciphers.aes_cts_decrypt(first_key, cipher) == plain  # rebuilt after eviction


def test_usage_key_caches_are_bounded():
    for cached in (rfc3961._derived, rfc3961._usage_keys, fastdecode._client_part):
        info = cached.cache_info()
        assert info.maxsize is not None and info.currsize <= info.maxsize
    key = generate_key(17)
    sealed = encrypt(key, KeyUsage.AP_REQ_AUTH, b"hello")
    for _ in range(rfc3961.DERIVED_CACHE_SIZE + 10):
        encrypt(generate_key(17), KeyUsage.AP_REQ_AUTH, b"x")
    assert rfc3961._usage_keys.cache_info().currsize <= rfc3961.DERIVED_CACHE_SIZE
    assert decrypt(key, KeyUsage.AP_REQ_AUTH, sealed) == b"hello"


@pytest.mark.parametrize("enctype", sorted(ENCTYPES))
def test_decryptor_is_decrypt(enctype):
    key = generate_key(enctype)
    open_authenticator = decryptor(key, KeyUsage.AP_REQ_AUTH)
    for length in (0, 1, 15, 16, 17, 100):
        plain = os.urandom(length)
        sealed = encrypt(key, KeyUsage.AP_REQ_AUTH, plain)
        assert open_authenticator(sealed) == decrypt(key, KeyUsage.AP_REQ_AUTH, sealed)
        assert open_authenticator(sealed)[:length] == plain  # des3 keeps its zero padding
        tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
        for bad in (tampered, sealed[:5], encrypt(key, KeyUsage.AP_REP_ENC_PART, plain)):
            with pytest.raises(IntegrityError) as expected:
                decrypt(key, KeyUsage.AP_REQ_AUTH, bad)
            with pytest.raises(IntegrityError) as got:
                open_authenticator(bad)
            assert str(got.value) == str(expected.value)


def test_decryptor_refuses_keys_like_decrypt():
    with pytest.raises(CryptoError) as expected:
        decrypt(Key(18, bytes(5)), KeyUsage.AP_REQ_AUTH, bytes(40))
    with pytest.raises(type(expected.value), match="must be 32 bytes"):
        decryptor(Key(18, bytes(5)), KeyUsage.AP_REQ_AUTH)


def test_hmac_key_matches_hmac():
    import hmac

    for name in ("sha1", "sha256", "sha384"):
        for key_length in (0, 16, 20, 64, 65, 200):  # longer than the block: hashed first
            key, data = os.urandom(key_length), os.urandom(300)
            assert rfc3961.HmacKey(key, name).digest(data) == hmac.digest(key, data, name)


def test_no_key_bytes_in_reprs():
    for enctype in sorted(ENCTYPES):
        key = generate_key(enctype)
        texts = [repr(decryptor(key, KeyUsage.AP_REQ_AUTH))]
        if enctype in (17, 18):
            texts.append(repr(ciphers.aes_cts(key.contents)))
            texts.append(repr(rfc3961._usage_keys(ENCTYPES[enctype], key.contents, 11)))
        texts.append(repr(rfc3961.HmacKey(key.contents, "sha1")))
        for text in texts:
            assert key.contents.hex() not in text and repr(key.contents) not in text
