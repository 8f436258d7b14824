"""RFC 3962 Appendix B vectors: PBKDF2 string-to-key (with s2kparams) and AES-CTS."""

import pytest
from cryptography.hazmat.primitives import hashes

from common.crypto import CryptoError, string_to_key
from common.crypto.ciphers import aes_cts_decrypt, aes_cts_encrypt
from common.crypto.rfc3961 import pbkdf2

# RFC 3962 B: (iterations, password, salt, 256-bit PBKDF2 output, 128-bit AES key, 256-bit AES key).
# The 128-bit PBKDF2 output is the first half of the 256-bit one.
S2K_VECTORS = [
    (
        1,
        b"password",
        b"ATHENA.MIT.EDUraeburn",
        "cdedb5281bb2f801565a1122b25635150ad1f7a04bb9f3a333ecc0e2e1f70837",
        "42263c6e89f4fc28b8df68ee09799f15",
        "fe697b52bc0d3ce14432ba036a92e65bbb52280990a2fa27883998d72af30161",
    ),
    (
        2,
        b"password",
        b"ATHENA.MIT.EDUraeburn",
        "01dbee7f4a9e243e988b62c73cda935da05378b93244ec8f48a99e61ad799d86",
        "c651bf29e2300ac27fa469d693bdda13",
        "a2e16d16b36069c135d5e9d2e25f896102685618b95914b467c67622225824ff",
    ),
    (
        1200,
        b"password",
        b"ATHENA.MIT.EDUraeburn",
        "5c08eb61fdf71e4e4ec3cf6ba1f5512ba7e52ddbc5e5142f708a31e2e62b1e13",
        "4c01cd46d632d01e6dbe230a01ed642a",
        "55a6ac740ad17b4846941051e1e8b0a7548d93b0ab30a8bc3ff16280382b8c2a",
    ),
    (
        5,
        b"password",
        bytes.fromhex("1234567878563412"),
        "d1daa78615f287e6a1c8b120d7062a493f98d203e6be49a6adf4fa574b6e64ee",
        "e9b23d52273747dd5c35cb55be619d8e",
        "97a4e786be20d81a382d5ebc96d5909cabcdadc87ca48f574504159f16c36e31",
    ),
    (
        1200,
        b"X" * 64,
        b"pass phrase equals block size",
        "139c30c0966bc32ba55fdbf212530ac9c5ec59f1a452f5cc9ad940fea0598ed1",
        "59d1bb789a828b1aa54ef9c2883f69ed",
        "89adee3608db8bc71f1bfbfe459486b05618b70cbae22092534e56c553ba4b34",
    ),
    (
        1200,
        b"X" * 65,
        b"pass phrase exceeds block size",
        "9ccad6d468770cd51b10e6a68721be611a8b4d282601db3b36be9246915ec82a",
        "cb8005dc5f90179a7f02104c0018751d",
        "d78c5c9cb872a8c9dad4697f0bb5b2d21496c82beb2caeda2112fceea057401b",
    ),
    (
        50,
        bytes.fromhex("f09d849e"),  # g-clef
        b"EXAMPLE.COMpianist",
        "6b9cf26d45455a43a5b8bb276a403b39e7fe37a0c41e02c281ff3069e1e94f52",
        "f149c1f2e154a73452d43e7fe62a56e5",
        "4b6d9839f84406df1f09cc166db4b83c571848b784a3d6bdc346589a3e393f9e",
    ),
]


@pytest.mark.parametrize(("iterations", "password", "salt", "pbkdf2_out", "aes128", "aes256"), S2K_VECTORS)
def test_pbkdf2_string_to_key_rfc3962_b(
    iterations: int, password: bytes, salt: bytes, pbkdf2_out: str, aes128: str, aes256: str
) -> None:
    assert pbkdf2(hashes.SHA1(), password, salt, iterations, 32).hex() == pbkdf2_out
    assert pbkdf2(hashes.SHA1(), password, salt, iterations, 16).hex() == pbkdf2_out[:32]
    params = iterations.to_bytes(4, "big")
    assert string_to_key(17, password, salt, params).contents.hex() == aes128
    assert string_to_key(18, password, salt, params).contents.hex() == aes256


def test_default_iteration_count_is_4096() -> None:
    explicit = string_to_key(18, "password", "ATHENA.MIT.EDUraeburn", (4096).to_bytes(4, "big"))
    assert string_to_key(18, "password", "ATHENA.MIT.EDUraeburn") == explicit


@pytest.mark.parametrize("params", [b"", b"\x00\x00\x10", b"\x00\x00\x00\x00", b"\x01\x00\x00\x00"])
def test_bad_s2kparams_are_refused(params: bytes) -> None:
    with pytest.raises(CryptoError, match="s2kparams"):
        string_to_key(17, "password", "salt", params)


# RFC 3962 B: AES-CTS with key "chicken teriyaki" and a zero IV: (input, output)
CTS_KEY = bytes.fromhex("636869636b656e207465726979616b69")
CTS_VECTORS = [
    ("4920776f756c64206c696b652074686520", "c6353568f2bf8cb4d8a580362da7ff7f97"),
    (
        "4920776f756c64206c696b65207468652047656e6572616c20476175277320",
        "fc00783e0efdb2c1d445d4c8eff7ed2297687268d6ecccc0c07b25e25ecfe5",
    ),
    (
        "4920776f756c64206c696b65207468652047656e6572616c2047617527732043",
        "39312523a78662d5be7fcbcc98ebf5a897687268d6ecccc0c07b25e25ecfe584",
    ),
    (
        "4920776f756c64206c696b65207468652047656e6572616c20476175277320436869636b656e2c20706c656173652c",
        "97687268d6ecccc0c07b25e25ecfe584b3fffd940c16a18c1b5549d2f838029e39312523a78662d5be7fcbcc98ebf5",
    ),
    (
        "4920776f756c64206c696b65207468652047656e6572616c20476175277320436869636b656e2c20706c656173652c20",
        "97687268d6ecccc0c07b25e25ecfe5849dad8bbb96c4cdc03bc103e1a194bbd839312523a78662d5be7fcbcc98ebf5a8",
    ),
    (
        "4920776f756c64206c696b65207468652047656e6572616c20476175277320436869636b656e2c20706c656173652c20"
        "616e6420776f6e746f6e20736f75702e",
        "97687268d6ecccc0c07b25e25ecfe58439312523a78662d5be7fcbcc98ebf5a84807efe836ee89a526730dbc2f7bc840"
        "9dad8bbb96c4cdc03bc103e1a194bbd8",
    ),
]


@pytest.mark.parametrize(("plain", "cipher"), CTS_VECTORS)
def test_aes_cts_rfc3962_b(plain: str, cipher: str) -> None:
    assert aes_cts_encrypt(CTS_KEY, bytes.fromhex(plain)).hex() == cipher
    assert aes_cts_decrypt(CTS_KEY, bytes.fromhex(cipher)).hex() == plain


@pytest.mark.parametrize("length", [16, 17, 31, 32, 33, 47, 48, 64, 100])
def test_aes_cts_round_trip_lengths(length: int) -> None:
    data = bytes(range(length))
    out = aes_cts_encrypt(CTS_KEY, data)
    assert len(out) == length
    assert aes_cts_decrypt(CTS_KEY, out) == data
