"""decode(..., padded=True): decrypted des3-cbc-sha1-kd plaintext keeps its zero block padding
(RFC 3961 6.3; the ASN.1 carries its own length), so up to 7 trailing zero bytes are accepted
after the value, and nothing else. The default stays strict."""

from __future__ import annotations

import pytest

from common.asn1 import MAX_PLAINTEXT_PADDING, Asn1DecodeError, decode, decode_as, decode_enc_kdc_rep_part, krb5
from common.crypto import Key, KeyUsage, decrypt, encrypt
from tests.test_asn1_roundtrip import CNAME, ENC_REP, KEY, REALM, T0

TICKET_PART = krb5.EncTicketPart(
    {
        "flags": 0,
        "key": KEY,
        "crealm": REALM,
        "cname": CNAME,
        "transited": {"tr-type": 1, "contents": b""},
        "authtime": T0,
        "endtime": T0,
    }
).dump()
TS = krb5.PA_ENC_TS_ENC({"patimestamp": T0, "pausec": 5}).dump()


def test_max_padding_is_one_des_block_minus_one():
    assert MAX_PLAINTEXT_PADDING == 7


@pytest.mark.parametrize("count", range(0, 8))
def test_zero_padding_up_to_seven_bytes_is_accepted(count):
    part = decode(TICKET_PART + bytes(count), padded=True)
    assert isinstance(part, krb5.EncTicketPart)
    assert part.dump() == TICKET_PART  # the padding is dropped
    assert decode_as(krb5.PA_ENC_TS_ENC, TS + bytes(count), padded=True).dump() == TS


def test_eight_zero_bytes_are_rejected():
    with pytest.raises(Asn1DecodeError, match=r"EncTicketPart: 8 trailing bytes after the value; .* at most 7"):
        decode(TICKET_PART + bytes(8), padded=True)
    with pytest.raises(Asn1DecodeError, match="9 trailing bytes"):
        decode_as(krb5.PA_ENC_TS_ENC, TS + bytes(9), padded=True)


@pytest.mark.parametrize("tail", [b"\x01", b"\x00\x00\x00\x80", b"\x00" * 6 + b"\xff", b"\x30\x00"])
def test_non_zero_trailing_byte_is_rejected(tail):
    offset = len(TICKET_PART) + next(i for i, octet in enumerate(tail) if octet)
    with pytest.raises(Asn1DecodeError, match=rf"EncTicketPart: trailing byte 0x[0-9a-f]{{2}} at offset {offset} .* not zero padding"):
        decode(TICKET_PART + tail, padded=True)


@pytest.mark.parametrize("count", [1, 7])
def test_default_stays_strict(count):
    with pytest.raises(Asn1DecodeError, match="trailing"):
        decode(TICKET_PART + bytes(count))
    with pytest.raises(Asn1DecodeError, match="trailing"):
        decode_as(krb5.PA_ENC_TS_ENC, TS + bytes(count))
    with pytest.raises(Asn1DecodeError, match="trailing"):
        decode_enc_kdc_rep_part(krb5.EncTGSRepPart(ENC_REP).dump() + bytes(count))


def test_decode_enc_kdc_rep_part_padded():
    data = krb5.EncTGSRepPart(ENC_REP).dump()
    assert decode_enc_kdc_rep_part(data + bytes(5), padded=True).dump() == data


def test_padded_still_reports_errors_in_the_value():
    with pytest.raises(Asn1DecodeError, match="EncTicketPart"):
        decode(TICKET_PART[:-1] + bytes(3), padded=True)  # truncated value, then zeros
    with pytest.raises(Asn1DecodeError, match="PA_ENC_TS_ENC"):
        decode_as(krb5.PA_ENC_TS_ENC, b"", padded=True)
    with pytest.raises(Asn1DecodeError, match="expected bytes"):
        decode_as(krb5.PA_ENC_TS_ENC, None, padded=True)  # type: ignore[arg-type]


def test_padded_input_with_indefinite_length():
    indefinite = b"\x30\x80" + TS[2:] + b"\x00\x00"
    assert decode_as(krb5.PA_ENC_TS_ENC, indefinite + bytes(7), padded=True).dump(force=True) == TS


@pytest.mark.parametrize("cls, data", [(krb5.EncTicketPart, TICKET_PART), (krb5.PA_ENC_TS_ENC, TS)])
def test_des3_decrypted_plaintext(cls, data):
    key = Key(16, bytes.fromhex("7a25df8992296dceda0e135bc4046e2375b3c14c98fbc162"))
    plain = decrypt(key, KeyUsage.TICKET, encrypt(key, KeyUsage.TICKET, data))
    assert len(data) % 8 and len(plain) == len(data) + (-len(data) % 8)  # zero-padded to the block
    with pytest.raises(Asn1DecodeError, match="trailing"):
        decode_as(cls, plain)
    assert decode_as(cls, plain, padded=True).dump() == data
