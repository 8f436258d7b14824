"""RFC 3961 Appendix A vectors: A.1 n-fold, A.3 DES3 DR/DK, A.4 DES3 string-to-key.

(A.2 is single DES and A.5 the modified CRC-32; kerbtel implements neither.)
"""

import pytest

from common.crypto import Key, string_to_key
from common.crypto.nfold import nfold
from common.crypto.rfc3961 import Des3CbcSha1Kd

# RFC 3961 A.1: (input, output bits, output hex)
NFOLD_VECTORS = [
    (b"012345", 64, "be072631276b1955"),
    (b"password", 56, "78a07b6caf85fa"),
    (b"Rough Consensus, and Running Code", 64, "bb6ed30870b7f0e0"),
    (b"password", 168, "59e4a8ca7c0385c3c37b3f6d2000247cb6e6bd5b3e"),
    (b"MASSACHVSETTS INSTITVTE OF TECHNOLOGY", 192, "db3b0d8f0b061e603282b308a50841229ad798fab9540c1b"),
    (b"Q", 168, "518a54a215a8452a518a54a215a8452a518a54a215"),
    (b"ba", 168, "fb25d531ae8974499f52fd92ea9857c4ba24cf297e"),
    (b"kerberos", 64, "6b65726265726f73"),
    (b"kerberos", 128, "6b65726265726f737b9b5b2b93132b93"),
    (b"kerberos", 168, "8372c236344e5f1550cd0747e15d62ca7a5a3bcea4"),
    (b"kerberos", 256, "6b65726265726f737b9b5b2b93132b935c9bdcdad95c9899c4cae4dee6d6cae4"),
]


@pytest.mark.parametrize(("data", "bits", "expected"), NFOLD_VECTORS)
def test_nfold_rfc3961_a1(data: bytes, bits: int, expected: str) -> None:
    assert nfold(data, bits // 8).hex() == expected


# RFC 3961 A.3 ("DES3 DR and DK"): (key, usage constant, DR, DK)
DES3_DR_DK_VECTORS = [
    (
        "dce06b1f64c857a11c3db57c51899b2cc1791008ce973b92",
        "0000000155",
        "935079d14490a75c3093c4a6e8c3b049c71e6ee705",
        "925179d04591a79b5d3192c4a7e9c289b049c71f6ee604cd",
    ),
    (
        "5e13d31c70ef765746578531cb51c15bf11ca82c97cee9f2",
        "00000001aa",
        "9f58e5a047d894101c469845d67ae3c5249ed812f2",
        "9e58e5a146d9942a101c469845d67a20e3c4259ed913f207",
    ),
    (
        "98e6fd8a04a4b6859b75a176540b9752bad3ecd610a252bc",
        "0000000155",
        "12fff90c773f956d13fc2ca0d0840349dbd39908eb",
        "13fef80d763e94ec6d13fd2ca1d085070249dad39808eabf",
    ),
    (
        "622aec25a2fe2cad7094680b7c64940280084c1a7cec92b5",
        "00000001aa",
        "f8debf05b097e7dc0603686aca35d91fd9a5516a70",
        "f8dfbf04b097e6d9dc0702686bcb3489d91fd9a4516b703e",
    ),
    (
        "d3f8298ccb166438dcb9b93ee5a7629286a491f838f802fb",
        "6b65726265726f73",  # "kerberos"
        "2270db565d2a3d64cfbfdc5305d4f778a6de42d9da",
        "2370da575d2a3da864cebfdc5204d56df779a7df43d9da43",
    ),
    (
        "c1081649ada74362e6a1459d01dfd30d67c2234c940704da",
        "0000000155",
        "348056ec98fcc517171d2b4d7a9493af482d999175",
        "348057ec98fdc48016161c2a4c7a943e92ae492c989175f7",
    ),
    (
        "5d154af238f46713155719d55e2f1f790dd661f279a7917c",
        "00000001aa",
        "a8818bc367dadacbe9a6c84627fb60c294b01215e5",
        "a8808ac267dada3dcbe9a7c84626fbc761c294b01315e5c1",
    ),
    (
        "798562e049852f57dc8c343ba17f2ca1d97394efc8adc443",
        "0000000155",
        "c813f88b3be2b2f75424ce9175fbc8483b88c8713a",
        "c813f88a3be3b334f75425ce9175fbe3c8493b89c8703b49",
    ),
    (
        "26dce334b545292f2feab9a8701a89a4b99eb9942cecd016",
        "00000001aa",
        "f58efc6f83f93e55e695fd252cf8fe59f7d5ba37ec",
        "f48ffd6e83f83e7354e694fd252cf83bfe58f7d5ba37ec5d",
    ),
]


@pytest.mark.parametrize(("key", "constant", "dr", "dk"), DES3_DR_DK_VECTORS)
def test_des3_dr_dk_rfc3961_a3(key: str, constant: str, dr: str, dk: str) -> None:
    key_bytes, const = bytes.fromhex(key), bytes.fromhex(constant)
    assert Des3CbcSha1Kd.derive_random(key_bytes, const).hex() == dr
    assert Des3CbcSha1Kd.derive(key_bytes, const).hex() == dk
    assert Des3CbcSha1Kd.random_to_key(bytes.fromhex(dr)).hex() == dk


# RFC 3961 A.4 ("DES3string_to_key"): (salt, password, key), as UTF-8 octets.
# The RFC labels g-clef "U+1011E"; the character is U+1D11E (UTF-8 f0 9d 84 9e, as RFC 3962 B shows).
DES3_S2K_VECTORS = [
    ("ATHENA.MIT.EDUraeburn", "password", "850bb51358548cd05e86768c313e3bfef7511937dcf72c3e"),
    ("WHITEHOUSE.GOVdanny", "potatoe", "dfcd233dd0a43204ea6dc437fb15e061b02979c1f74f377a"),
    ("EXAMPLE.COMbuckaroo", "penny", "6d2fcdf2d6fbbc3ddcadb5da5710a23489b0d3b69d5d9d4a"),
    ("ATHENA.MIT.EDUJuri\u0161i\u0107", "\u00df", "16d5a40e1ce3bacb61b9dce00470324c831973a7b952feb0"),
    ("EXAMPLE.COMpianist", "\U0001d11e", "85763726585dbc1cce6ec43e1f751f07f1c4cbb098f40b19"),
]


@pytest.mark.parametrize(("salt", "password", "key"), DES3_S2K_VECTORS)
def test_des3_string_to_key_rfc3961_a4(salt: str, password: str, key: str) -> None:
    assert string_to_key(16, password, salt) == Key(16, bytes.fromhex(key))
    assert string_to_key(16, password.encode(), salt.encode()).contents.hex() == key


def test_des3_random_to_key_sets_odd_parity() -> None:
    key = Des3CbcSha1Kd.random_to_key(bytes(range(21)))
    assert all(bin(b).count("1") % 2 == 1 for b in key)
