"""RFC 8009 Appendix A vectors for aes128-cts-hmac-sha256-128 (19) and aes256-cts-hmac-sha384-192 (20):
string-to-key, key derivation, sample encryptions (key usage 2), checksums and PRF."""

import pytest

from common.crypto import Key, decrypt, encrypt, make_checksum, prf, string_to_key, verify_checksum
from common.crypto.rfc8009 import Aes128CtsHmacSha256128, Aes256CtsHmacSha384192

# RFC 8009 A: base keys used by the derivation, encryption, checksum and PRF samples.
BASE_19 = bytes.fromhex("3705d96080c17728a0e800eab6e0d23c")
BASE_20 = bytes.fromhex("6d404d37faf79f9df0d33568d320669800eb4836472ea8a026d16b7182460c52")

# RFC 8009 A "Sample results for string-to-key conversion": iteration count 32768, pass phrase
# "password", salt = 16 random octets || "ATHENA.MIT.EDUraeburn".
S2K_SALT = bytes.fromhex("10df9dd783e5bc8acea1730e74355f61") + b"ATHENA.MIT.EDUraeburn"
S2K_PARAMS = (32768).to_bytes(4, "big")


@pytest.mark.parametrize(
    ("enctype", "key"),
    [
        (19, "089bca48b105ea6ea77ca5d2f39dc5e7"),
        (20, "45bd806dbf6a833a9cffc1c94589a222367a79bc21c413718906e9f578a78467"),
    ],
)
def test_string_to_key_rfc8009_a(enctype: int, key: str) -> None:
    assert string_to_key(enctype, "password", S2K_SALT, S2K_PARAMS) == Key(enctype, bytes.fromhex(key))
    assert string_to_key(enctype, "password", S2K_SALT) == Key(enctype, bytes.fromhex(key))  # 32768 is the default


# RFC 8009 A "Sample results for key derivation" (usage 2): Kc (0x99), Ke (0xAA), Ki (0x55).
@pytest.mark.parametrize(
    ("cls", "base", "constant", "derived"),
    [
        (Aes128CtsHmacSha256128, BASE_19, "0000000299", "b31a018a48f54776f403e9a396325dc3"),
        (Aes128CtsHmacSha256128, BASE_19, "00000002aa", "9b197dd1e8c5609d6e67c3e37c62c72e"),
        (Aes128CtsHmacSha256128, BASE_19, "0000000255", "9fda0e56ab2d85e1569a688696c26a6c"),
        (Aes256CtsHmacSha384192, BASE_20, "0000000299", "ef5718be86cc84963d8bbb5031e9f5c4ba41f28faf69e73d"),
        (
            Aes256CtsHmacSha384192,
            BASE_20,
            "00000002aa",
            "56ab22bee63d82d7bc5227f6773f8ea7a5eb1c825160c38312980c442e5c7e49",
        ),
        (Aes256CtsHmacSha384192, BASE_20, "0000000255", "69b16514e3cd8e56b82010d5c73012b622c4d00ffc23ed1f"),
    ],
)
def test_key_derivation_rfc8009_a(cls, base: bytes, constant: str, derived: str) -> None:
    assert cls.derive(base, bytes.fromhex(constant)).hex() == derived


# RFC 8009 A "Sample encryptions (all using the default cipher state)", key usage 2:
# (enctype, base key, plaintext, confounder, ciphertext || HMAC)
ENCRYPTION_VECTORS = [
    (
        19,
        BASE_19,
        "",
        "7e5895eaf2672435bad817f545a37148",
        "ef85fb890bb8472f4dab20394dca781dad877eda39d50c870c0d5a0a8e48c718",
    ),
    (
        19,
        BASE_19,
        "000102030405",
        "7bca285e2fd4130fb55b1a5c83bc5b24",
        "84d7f30754ed987bab0bf3506beb09cfb55402cef7e6877ce99e247e52d16ed4421dfdf8976c",
    ),
    (
        19,
        BASE_19,
        "000102030405060708090a0b0c0d0e0f",
        "56ab21713ff62c0a1457200f6fa9948f",
        "3517d640f50ddc8ad3628722b3569d2ae07493fa8263254080ea65c1008e8fc295fb4852e7d83e1e7c48c37eebe6b0d3",
    ),
    (
        19,
        BASE_19,
        "000102030405060708090a0b0c0d0e0f1011121314",
        "a7a4e29a4728ce10664fb64e49ad3fac",
        "720f73b18d9859cd6ccb4346115cd336c70f58edc0c4437c5573544c31c813bce1e6d072c186b39a413c2f92ca9b8334"
        "a287ffcbfc",
    ),
    (
        20,
        BASE_20,
        "",
        "f764e9fa15c276478b2c7d0c4e5f58e4",
        "41f53fa5bfe7026d91faf9be959195a058707273a96a40f0a01960621ac612748b9bbfbe7eb4ce3c",
    ),
    (
        20,
        BASE_20,
        "000102030405",
        "b80d3251c1f6471494256ffe712d0b9a",
        "4ed7b37c2bcac8f74f23c1cf07e62bc7b75fb3f637b9f559c7f664f69eab7b6092237526ea0d1f61cb20d69d10f2",
    ),
    (
        20,
        BASE_20,
        "000102030405060708090a0b0c0d0e0f",
        "53bf8a0d105265d4e276428624ce5e63",
        "bc47ffec7998eb91e8115cf8d19dac4bbbe2e163e87dd37f49beca92027764f68cf51f14d798c2273f35df574d1f932e"
        "40c4ff255b36a266",
    ),
    (
        20,
        BASE_20,
        "000102030405060708090a0b0c0d0e0f1011121314",
        "763e65367e864f02f55153c7e3b58af1",
        "40013e2df58e8751957d2878bcd2d6fe101ccfd556cb1eae79db3c3ee86429f2b2a602ac86fef6ecb647d6295fae077a"
        "1feb517508d2c16b4192e01f62",
    ),
]


@pytest.mark.parametrize(("enctype", "base", "plain", "confounder", "cipher"), ENCRYPTION_VECTORS)
def test_encryption_rfc8009_a(enctype: int, base: bytes, plain: str, confounder: str, cipher: str) -> None:
    key = Key(enctype, base)
    assert encrypt(key, 2, bytes.fromhex(plain), bytes.fromhex(confounder)).hex() == cipher
    assert decrypt(key, 2, bytes.fromhex(cipher)).hex() == plain


# RFC 8009 A "Sample checksums", key usage 2, over 00 01 ... 14.
CHECKSUM_DATA = bytes(range(0x15))


@pytest.mark.parametrize(
    ("cksumtype", "enctype", "base", "checksum"),
    [
        (19, 19, BASE_19, "d78367186643d67b411cba9139fc1dee"),
        (20, 20, BASE_20, "45ee791567eefca37f4ac1e0222de80d43c3bfa06699672a"),
    ],
)
def test_checksum_rfc8009_a(cksumtype: int, enctype: int, base: bytes, checksum: str) -> None:
    key = Key(enctype, base)
    assert make_checksum(cksumtype, key, 2, CHECKSUM_DATA).hex() == checksum
    verify_checksum(cksumtype, key, 2, CHECKSUM_DATA, bytes.fromhex(checksum))


# RFC 8009 A "Sample pseudorandom function (PRF) invocations", input "test".
@pytest.mark.parametrize(
    ("enctype", "base", "output"),
    [
        (19, BASE_19, "9d188616f63852fe86915bb840b4a886ff3e6bb0f819b49b893393d393854295"),
        (
            20,
            BASE_20,
            "9801f69a368c2bf675e59521e177d9a07f67efe1cfde8d3c8d6f6a0256e3b17db3c1b62ad1b8553360d17367eb1514d2",
        ),
    ],
)
def test_prf_rfc8009_a(enctype: int, base: bytes, output: str) -> None:
    assert prf(Key(enctype, base), b"test").hex() == output
