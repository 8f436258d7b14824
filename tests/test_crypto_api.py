"""Behaviour of the public crypto API beyond the published vectors: round trips, tampering,
wrong usage, truncation, registries and error messages (which must never carry key bytes)."""

import pytest

from common.crypto import (
    CryptoError,
    IntegrityError,
    Key,
    KeyUsage,
    UnsupportedChecksumTypeError,
    UnsupportedEnctypeError,
    decrypt,
    encrypt,
    enctype_by_name,
    generate_key,
    get_enctype,
    make_checksum,
    prf,
    random_to_key,
    required_checksum_type,
    string_to_key,
    verify_checksum,
)

ENCTYPES = [16, 17, 18, 19, 20]
PLAINTEXTS = [b"", b"x", b"fifteen bytes!!", b"sixteen bytes!!!", b"seventeen bytes!!", bytes(range(256)) * 3]


@pytest.fixture(params=ENCTYPES)
def key(request: pytest.FixtureRequest) -> Key:
    return generate_key(request.param)


@pytest.mark.parametrize("plaintext", PLAINTEXTS)
def test_round_trip(key: Key, plaintext: bytes) -> None:
    ciphertext = encrypt(key, KeyUsage.AS_REP_ENC_PART, plaintext)
    out = decrypt(key, KeyUsage.AS_REP_ENC_PART, ciphertext)
    if key.enctype == 16:  # des3 returns its zero padding; the ASN.1 inside carries the length
        assert out.rstrip(b"\0") == plaintext.rstrip(b"\0") and len(out) % 8 == 0
    else:
        assert out == plaintext


def test_encryption_is_randomised(key: Key) -> None:
    assert encrypt(key, 2, b"same") != encrypt(key, 2, b"same")


def test_every_flipped_byte_is_detected(key: Key) -> None:
    ciphertext = encrypt(key, KeyUsage.TICKET, b"a ticket body of some length " * 2)
    for i in range(len(ciphertext)):
        tampered = bytearray(ciphertext)
        tampered[i] ^= 0x01
        with pytest.raises(IntegrityError):
            decrypt(key, KeyUsage.TICKET, bytes(tampered))


def test_wrong_usage_fails(key: Key) -> None:
    ciphertext = encrypt(key, KeyUsage.AP_REQ_AUTH, b"authenticator")
    with pytest.raises(IntegrityError, match="usage 12"):
        decrypt(key, KeyUsage.AP_REP_ENC_PART, ciphertext)


def test_wrong_key_fails(key: Key) -> None:
    ciphertext = encrypt(key, 3, b"reply")
    with pytest.raises(IntegrityError):
        decrypt(generate_key(key.enctype), 3, ciphertext)


def test_every_truncation_raises_integrity_error(key: Key) -> None:
    ciphertext = encrypt(key, 3, b"0123456789abcdef0123")
    for n in range(len(ciphertext)):
        with pytest.raises(IntegrityError):
            decrypt(key, 3, ciphertext[:n])


def test_short_input_message_is_precise() -> None:
    with pytest.raises(IntegrityError, match=r"aes256-cts-hmac-sha1-96 ciphertext of 5 bytes .* minimum 28"):
        decrypt(generate_key(18), 3, b"short")


def test_appended_byte_is_rejected(key: Key) -> None:
    ciphertext = encrypt(key, 3, b"reply body")
    with pytest.raises(IntegrityError):
        decrypt(key, 3, ciphertext + b"\0")


@pytest.mark.parametrize("enctype", ENCTYPES)
def test_checksum_round_trip_and_tamper(enctype: int) -> None:
    key = generate_key(enctype)
    ctype = required_checksum_type(enctype)
    cksum = make_checksum(ctype, key, KeyUsage.KRB_SAFE_CHKSUM, b"message")
    assert len(cksum) == {16: 20, 17: 12, 18: 12, 19: 16, 20: 24}[enctype]
    verify_checksum(ctype, key, KeyUsage.KRB_SAFE_CHKSUM, b"message", cksum)
    with pytest.raises(IntegrityError):
        verify_checksum(ctype, key, KeyUsage.KRB_SAFE_CHKSUM, b"messagf", cksum)
    with pytest.raises(IntegrityError):
        verify_checksum(ctype, key, KeyUsage.AP_REQ_AUTH_CKSUM, b"message", cksum)
    with pytest.raises(IntegrityError):
        verify_checksum(ctype, key, KeyUsage.KRB_SAFE_CHKSUM, b"message", cksum[:-1])


def test_required_checksum_types() -> None:
    assert {e: required_checksum_type(e) for e in ENCTYPES} == {16: 12, 17: 15, 18: 16, 19: 19, 20: 20}


def test_keyed_checksum_needs_matching_key() -> None:
    with pytest.raises(CryptoError, match="needs a aes256-cts-hmac-sha1-96 key, got enctype 17"):
        make_checksum(16, generate_key(17), 6, b"data")
    with pytest.raises(CryptoError, match="is keyed, but no key"):
        make_checksum(16, None, 6, b"data")


def test_unkeyed_sha1() -> None:
    assert make_checksum(14, None, 0, b"abc").hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"


def test_unknown_numbers() -> None:
    with pytest.raises(UnsupportedEnctypeError, match="unsupported enctype 23"):
        get_enctype(23)
    with pytest.raises(UnsupportedEnctypeError):
        encrypt(Key(1, bytes(8)), 1, b"")
    with pytest.raises(UnsupportedChecksumTypeError, match="unsupported checksum type 7"):
        make_checksum(7, None, 0, b"")
    assert issubclass(UnsupportedEnctypeError, CryptoError) and issubclass(CryptoError, ValueError)


def test_enctype_classes_describe_themselves() -> None:
    cls = get_enctype(18)
    assert (cls.number, cls.name, cls.key_bytes, cls.seed_bytes, cls.checksum_type) == (
        18,
        "aes256-cts-hmac-sha1-96",
        32,
        32,
        16,
    )
    assert get_enctype(16).seed_bytes == 21 and get_enctype(16).key_bytes == 24


def test_wrong_key_length_is_refused_without_leaking_bytes() -> None:
    secret = bytes.fromhex("deadbeefcafebabe0011223344556677")
    with pytest.raises(CryptoError) as excinfo:
        encrypt(Key(18, secret), 1, b"")
    message = str(excinfo.value)
    assert "must be 32 bytes, got 16" in message
    assert secret.hex() not in message.lower() and "de ad" not in message.lower()


def test_error_messages_never_contain_key_bytes(key: Key) -> None:
    ciphertext = bytearray(encrypt(key, 1, b"timestamp"))
    ciphertext[-1] ^= 1
    with pytest.raises(IntegrityError) as excinfo:
        decrypt(key, 1, bytes(ciphertext))
    assert key.contents.hex() not in str(excinfo.value) and repr(key.contents) not in str(excinfo.value)


def test_key_repr_hides_contents() -> None:
    key = Key(18, bytes.fromhex("aa" * 32))
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert "aa" not in text.lower().replace("enctype", "")
        assert "length=32" in text


@pytest.mark.parametrize("enctype", ENCTYPES)
def test_random_to_key_and_generate(enctype: int) -> None:
    cls = get_enctype(enctype)
    key = random_to_key(enctype, bytes(cls.seed_bytes))
    assert key.enctype == enctype and len(key.contents) == cls.key_bytes
    assert generate_key(enctype) != generate_key(enctype)
    with pytest.raises(CryptoError, match=f"needs {cls.seed_bytes} bytes, got 3"):
        random_to_key(enctype, b"abc")


@pytest.mark.parametrize(("enctype", "size"), [(16, 16), (17, 16), (18, 16), (19, 32), (20, 48)])
def test_prf_sizes_and_determinism(enctype: int, size: int) -> None:
    key = generate_key(enctype)
    assert len(prf(key, b"input")) == size
    assert prf(key, b"input") == prf(key, b"input") != prf(key, b"other")


def test_confounder_length_is_checked() -> None:
    with pytest.raises(CryptoError, match="confounder must be 16 bytes, got 8"):
        encrypt(generate_key(17), 1, b"", confounder=bytes(8))


def test_des3_takes_no_s2kparams() -> None:
    with pytest.raises(CryptoError, match="takes no s2kparams"):
        string_to_key(16, "password", "salt", b"\x00\x00\x10\x00")


def test_str_and_bytes_passwords_agree() -> None:
    assert string_to_key(17, "p\u00e4ss", "REALMuser", b"\0\0\0\2") == string_to_key(
        17, "p\u00e4ss".encode(), b"REALMuser", b"\0\0\0\2"
    )


def test_key_usage_numbers() -> None:
    assert KeyUsage.PA_ENC_TIMESTAMP == 1 and KeyUsage.TICKET == 2 and KeyUsage.AS_REP_ENC_PART == 3
    assert KeyUsage.TGS_REP_ENC_PART_SESSION_KEY == 8 and KeyUsage.AP_REQ_AUTH == 11
    assert KeyUsage.AP_REP_ENC_PART == 12 and KeyUsage.KRB_CRED == 14 and KeyUsage.KRB_SAFE_CHKSUM == 15
    assert KeyUsage.PKINIT_AS_CHECKSUM == 6


def test_usage_out_of_range_is_refused() -> None:
    with pytest.raises(CryptoError, match="outside 0..2\\^32-1"):
        encrypt(generate_key(18), -1, b"")


@pytest.mark.parametrize(
    "text, number",
    [("18", 18), ("aes256-cts", 18), ("aes256-cts-hmac-sha1-96:normal", 18), ("des3-cbc-sha1", 16),
     ("DES3-HMAC-SHA1", 16), ("aes128-sha2", 19), ("aes256-cts-hmac-sha384-192", 20)],
)
def test_enctype_by_name_accepts_mit_spellings(text, number):
    assert enctype_by_name(text).number == number


@pytest.mark.parametrize("text", ["rc4-hmac", "23", "aes512", ""])
def test_enctype_by_name_rejects_unknown(text):
    with pytest.raises(UnsupportedEnctypeError):
        enctype_by_name(text)
