"""Cross-implementation vectors for the enctypes whose RFCs publish no encryption/checksum/PRF
samples (16, 17, 18). Values from MIT krb5 src/lib/crypto/crypto_tests (t_decrypt.c, t_cksums.c,
t_prf.c); the RFC 3961/3962 vectors are in test_crypto_rfc3961.py / test_crypto_rfc3962.py."""

import pytest

from common.crypto import Key, decrypt, make_checksum, prf, verify_checksum

# t_decrypt.c: (enctype, usage, plaintext, key, ciphertext). des3 output keeps its block padding.
DECRYPT_VECTORS = [
    (16, 0, b"", "7a25df8992296dceda0e135bc4046e2375b3c14c98fbc162",
     "548af4d504f7d723303f12175fe8386b7b5335a967bad61f3bf0b143"),
    (16, 1, b"1", "bc0783891513d5ce57bc138fd3c11ae640452385322962b6",
     "9c3c1dba4747d85af2916e4745f2dce38046796e5104bccdfb669a91d44bc356660945c7"),
    (16, 2, b"9 bytesss", "2fd0f725ce04100d2fc8a18098831f850b45d9ef850bd920",
     "cf9144ebc8697981075a8bad8d74e5d7d591eb7d9770c7ada25ee8c5b3d69444dfec79a5b7a01482d9af74e6"),
    (16, 3, b"13 bytes byte", "0dd52094e0f41ceccb5be510a764b35176e3981332f1e598",
     "839a17081ecbafbcdc91b88c6955dd3c4514023cf177b77bf0d0177a16f705e849cb7781d76a316b193f8d30"),
    (16, 4, b"30 bytes bytes bytes bytes byt", "f11686cbbc9e23ea54fecd2a3dcdfb20b6fe98bf2645c4c4",
     "89433e83fd0ea3666cffcd18d8deebc53b9a34edbeb159d9f667c6c2b9a964401d55e7e9c68d648d65c3aa84ffa3790c"
     "14a864da8073a9a95c4ba2bc"),
    (17, 0, b"", "5a5c0f0ba54f3828b2195e66ca24a289",
     "49ff8e11c173d9583a3254fbe7b1f1df36c538e8416784a1672e6676"),
    (17, 1, b"1", "98450e3f3baa13f5c99beb936981b06f",
     "f86742f537b35dc2174a4dbaa920faf9042090b065e1ebb1cad9a65394"),
    (17, 2, b"9 bytesss", "9062430c8cda3388922e6d6a509f5b7a",
     "68fb9679601f45c78857b2bf820fd6e53eca8d42fd4b1d7024a09205abb7cd2ec26c355d2f"),
    (17, 3, b"13 bytes byte", "033ee6502c54fd23e27791e987983827",
     "ec366d0327a933bf49330e650e49bc6b974637fe80bf532fe51795b4809718e6194724db948d1fd637"),
    (17, 4, b"30 bytes bytes bytes bytes byt", "dceeb70b3de76562e689226c76429148",
     "c96081032d5d8eeb7e32b4089f789d0faa481dea74c0f97cbf3146ddfcf8e800156ecb532fc203e30ff600b63b350939"
     "fece510f02d7ff1e7bac"),
    (18, 0, b"", "17f275f2954f2ed1f90c377ba7f4d6a369aa0136e0bf0c927ad6133c693759a9",
     "e5094c55ee7b38262e2b044280b069379a95bf95bd8376fb3281b435"),
    (18, 1, b"1", "b9477e1ff0329c0050e20ce6c72d2dff27e8fe541ab0954429a9cb5b4f7b1e2a",
     "406150b97aeb76d43b36b62cc1ecdfbe6f40e95755e0beb5c27825f3a4"),
    (18, 2, b"9 bytesss", "b1ae4cd8462aff1677053cc9279aac30b796fb81ce21474dd3ddbcfea4ec76d7",
     "09957aa25fcaf88f7b39e4406e633012d5fea21853f6478da7065caef41fd454a40824eec5"),
    (18, 3, b"13 bytes byte", "e5a72be9b7926c1225bafef9c1872e7ba4cdb2b17893d84abd90acdd8764d966",
     "d8f1aafeec84587cc3e700a774e56651a6d693e174ec4473b5e6d96f80297a653fb818ad893e719f96"),
    (18, 4, b"30 bytes bytes bytes bytes byt", "f1c795e9248a09338d82c3f8d5b567040b0110736845041347235b1404231398",
     "d1137a4d634cfece924dbc3bf6790648bd5cff7de0e7b99460211d0daef3d79a295c688858f3b34b9cbd6eebae81daf6"
     "b734d4d498b6714f1c1d"),
]


@pytest.mark.parametrize(("enctype", "usage", "plain", "key", "cipher"), DECRYPT_VECTORS)
def test_decrypt_mit_t_decrypt(enctype: int, usage: int, plain: bytes, key: str, cipher: str) -> None:
    out = decrypt(Key(enctype, bytes.fromhex(key)), usage, bytes.fromhex(cipher))
    if enctype == 16:
        assert out == plain + bytes(-(8 + len(plain)) % 8)
    else:
        assert out == plain


# t_cksums.c: (data, cksumtype, enctype, usage, key, checksum)
CHECKSUM_VECTORS = [
    (b"", 14, None, 0, None, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    (b"six seven", 12, 16, 2, "7a25df8992296dceda0e135bc4046e2375b3c14c98fbc162",
     "0eefc9c3e049aabc1ba5c401677d9ab699082bb4"),
    (b"eight nine ten eleven twelve thirteen", 15, 17, 3, "9062430c8cda3388922e6d6a509f5b7a",
     "01a4b088d45628f6946614e3"),
    (b"fourteen", 16, 18, 4, "b1ae4cd8462aff1677053cc9279aac30b796fb81ce21474dd3ddbcfea4ec76d7",
     "e08739e3279e2903ec8e3836"),
]


@pytest.mark.parametrize(("data", "cksumtype", "enctype", "usage", "key", "checksum"), CHECKSUM_VECTORS)
def test_checksum_mit_t_cksums(data: bytes, cksumtype: int, enctype, usage: int, key, checksum: str) -> None:
    k = Key(enctype, bytes.fromhex(key)) if key else None
    assert make_checksum(cksumtype, k, usage, data).hex() == checksum
    verify_checksum(cksumtype, k, usage, data, bytes.fromhex(checksum))


# t_prf.c: (enctype, key, input, output)
PRF_VECTORS = [
    (17, "ae272e7cdec86ac5138cdb196d8e297d", "0161", "77b39a37a868920f2a51f9dd150c5717"),
    (17, "67ab1cfef35e4c27ffdeac60385a3e9c", "0162", "e06c0dd31ff02091994f2ef5178bfe3d"),
    (18, "c01f157211f7b77eaaf457c3e156690127ee127d810ba6392e97baa243eb0616", "0161",
     "b2628c788e2e9c4a9bb4644678c29f2f"),
    (18, "c01f157211f7b77eaaf457c3e156690127ee127d810ba6392e97baa243eb0616", "0261",
     "b406373350cee8a6126f4a9b65a0cd21"),
    (18, "9d520d2d980aa7cb6b693682b62da258b333867951642ce647ae62b1e5e0b5e9", "0162",
     "ff0e289ea756c0559a0e911856961a49"),
    (18, "9d520d2d980aa7cb6b693682b62da258b333867951642ce647ae62b1e5e0b5e9", "0262",
     "0d674dd0f9a6806525a4d92e828bd15a"),
]


@pytest.mark.parametrize(("enctype", "key", "data", "output"), PRF_VECTORS)
def test_prf_mit_t_prf(enctype: int, key: str, data: str, output: str) -> None:
    assert prf(Key(enctype, bytes.fromhex(key)), bytes.fromhex(data)).hex() == output
