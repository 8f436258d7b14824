"""Regression tests for the asn1crypto traps fixed in common/asn1/types.py and the decode path."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from asn1crypto import core

from common.asn1 import Asn1DecodeError, KDCOptions, TicketFlags, decode, decode_as, decode_enc_kdc_rep_part, krb5, pkinit
from common.asn1.types import Int32, KDCOptionsBits, KerberosTime, Microseconds, TicketFlagsBits, UInt32
from common.principal import Principal

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

# --- KerberosFlags: always 32 bits -------------------------------------------------------------


def test_flags_encode_32_bits_even_when_trailing_bits_are_zero():
    assert KDCOptionsBits(KDCOptions.FORWARDABLE).dump() == bytes.fromhex("030500 40000000")


def test_all_zero_flags_still_encode_32_bits():
    assert TicketFlagsBits(0).dump() == bytes.fromhex("030500 00000000")
    assert TicketFlagsBits(TicketFlags(0)).dump(force=True) == bytes.fromhex("03050000000000")


def test_flags_named_and_numbered_like_mit():
    value = KDCOptions.FORWARDABLE | KDCOptions.RENEWABLE | KDCOptions.CANONICALIZE | KDCOptions.RENEWABLE_OK
    assert value == 0x40810010
    decoded = decode_as(KDCOptionsBits, KDCOptionsBits(value).dump()).native
    assert isinstance(decoded, KDCOptions) and decoded == value


def test_short_and_long_flag_strings_decode_leniently():
    assert decode_as(TicketFlagsBits, bytes.fromhex("03020040")).native == TicketFlags.FORWARDABLE
    assert decode_as(TicketFlagsBits, bytes.fromhex("0301 00")).native == 0
    # 40 bits: the extra byte beyond bit 31 is ignored.
    assert decode_as(TicketFlagsBits, bytes.fromhex("0306 00 40000000 ff")).native == TicketFlags.FORWARDABLE
    # 9 bits used, 7 unused: only the used bit counts.
    assert decode_as(TicketFlagsBits, bytes.fromhex("0303 07 0080")).native == TicketFlags.RENEWABLE


def test_flags_reject_bad_unused_count_and_out_of_range_values():
    with pytest.raises(Asn1DecodeError, match="unused-bits"):
        decode_as(TicketFlagsBits, bytes.fromhex("0305 08 00000000"))
    with pytest.raises(Asn1DecodeError, match="unused-bits"):
        decode_as(TicketFlagsBits, bytes.fromhex("0300"))
    with pytest.raises(ValueError):
        TicketFlagsBits(1 << 32)


# --- KerberosTime ----------------------------------------------------------------------------------


def test_kerberos_time_encodes_whole_utc_seconds():
    local = datetime(2024, 5, 1, 14, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=2)))
    assert KerberosTime(local).dump() == b"\x18\x0f20240501120000Z"


def test_kerberos_time_rejects_naive_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        KerberosTime(datetime(2024, 5, 1))


def test_kerberos_time_zero_pads_early_years():
    assert KerberosTime(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)).dump() == b"\x18\x0f09990102030405Z"


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"20240501120000Z", T0),
        (b"20240501120000.5Z", T0 + timedelta(microseconds=500_000)),
        (b"20240501120000,123456Z", T0 + timedelta(microseconds=123_456)),
        (b"20240501120000", T0),  # no zone: taken as UTC
        (b"20240501140000+0200", T0),
    ],
)
def test_kerberos_time_decodes_leniently(text, expected):
    value = decode_as(KerberosTime, b"\x18" + bytes([len(text)]) + text).native
    assert value == expected and value.tzinfo == UTC


def test_kerberos_time_with_fraction_reencodes_as_whole_seconds():
    data = b"\x18\x1120240501120000.5Z"
    assert decode_as(KerberosTime, data).dump(force=True) == b"\x18\x0f20240501120000Z"


def test_kerberos_time_garbage_is_a_decode_error():
    with pytest.raises(Asn1DecodeError, match="KerberosTime"):
        decode_as(KerberosTime, b"\x18\x0fyesterday-noonZ")


# --- integer ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, good, bad",
    [(Int32, [-(2**31), 2**31 - 1], [2**31, -(2**31) - 1]), (UInt32, [0, 2**32 - 1], [-1, 2**32]), (Microseconds, [0, 999_999], [-1, 1_000_000])],
)
def test_integer_ranges(cls, good, bad):
    for value in good:
        assert decode_as(cls, cls(value).dump()).native == value
    for value in bad:
        with pytest.raises(ValueError):
            cls(value)
        with pytest.raises(Asn1DecodeError, match=cls.__name__):
            decode_as(cls, core.Integer(value).dump())


# --- DH public values keep their width -------------------------------------------------------------


def test_dh_public_value_with_leading_zero_byte():
    p = (1 << 2047) + 1234567  # 256-byte modulus
    y = 0x00FF << (8 * 253)  # first byte of the 256-byte value is zero
    info = pkinit.KDCDHKeyInfo({"subjectPublicKey": pkinit.encode_dh_public_value(y), "nonce": 1})
    decoded = decode_as(pkinit.KDCDHKeyInfo, info.dump())
    got = pkinit.decode_dh_public_value(decoded["subjectPublicKey"].native)
    assert got == y
    raw = pkinit.dh_value_bytes(got, p)
    assert len(raw) == 256 and raw[0] == 0


def test_dh_public_value_high_bit_gets_sign_octet():
    assert pkinit.encode_dh_public_value(0x80) == b"\x02\x02\x00\x80"
    with pytest.raises(Asn1DecodeError):
        pkinit.decode_dh_public_value(b"\x02\x01\xff")  # negative


# --- the enc-part of KDC replies ---------------------------------------------------------------------


def _enc_rep_fields():
    name, realm = krb5.principal_to_asn1(Principal.krbtgt("EXAMPLE.TEST"))
    return {
        "key": {"keytype": 18, "keyvalue": b"k" * 32},
        "last-req": [{"lr-type": 0, "lr-value": T0}],
        "nonce": 99,
        "flags": TicketFlags.INITIAL | TicketFlags.PRE_AUTHENT,
        "authtime": T0,
        "endtime": T0 + timedelta(hours=10),
        "srealm": realm,
        "sname": name,
    }


@pytest.mark.parametrize("cls", [krb5.EncASRepPart, krb5.EncTGSRepPart])
def test_decode_enc_kdc_rep_part_accepts_both_tags(cls):
    data = cls(_enc_rep_fields()).dump()
    part = decode_enc_kdc_rep_part(data)
    assert type(part) is cls and part["nonce"].native == 99
    assert type(decode(data)) is cls


def test_decode_enc_kdc_rep_part_rejects_other_tags():
    with pytest.raises(Asn1DecodeError, match="neither"):
        decode_enc_kdc_rep_part(krb5.EncAPRepPart({"ctime": T0, "cusec": 0}).dump())


# --- the decode path -----------------------------------------------------------------------------------


def _as_req():
    cname, realm = krb5.principal_to_asn1(Principal.parse("alice@EXAMPLE.TEST"))
    sname, _ = krb5.principal_to_asn1(Principal.krbtgt("EXAMPLE.TEST"))
    return krb5.AS_REQ(
        {
            "padata": [{"padata-type": 128, "padata-value": krb5.PA_PAC_REQUEST({"include-pac": True}).dump()}],
            "req-body": {
                "kdc-options": KDCOptions.FORWARDABLE,
                "cname": cname,
                "realm": realm,
                "sname": sname,
                "till": T0,
                "nonce": 42,
                "etype": [18, 17],
            },
        }
    )


def test_trailing_bytes_are_an_error():
    with pytest.raises(Asn1DecodeError, match="trailing"):
        decode(_as_req().dump() + b"\x00")


def test_unknown_outer_tag_is_an_error():
    with pytest.raises(Asn1DecodeError, match="APPLICATION 4"):
        decode(b"\x64\x00")
    with pytest.raises(Asn1DecodeError, match="not a constructed APPLICATION"):
        decode(b"\x30\x00")
    with pytest.raises(Asn1DecodeError, match="empty"):
        decode(b"")


def test_errors_name_the_field():
    data = bytearray(_as_req().dump())
    at = data.index(b"\xa7\x03\x02\x01\x2a")  # req-body nonce 42
    data[at : at + 5] = b"\xa7\x03\x04\x01\x2a"  # an OCTET STRING where the INTEGER belongs
    with pytest.raises(Asn1DecodeError, match=r"AS_REQ\.req-body: .*UInt32 - tag should have been 2"):
        decode(bytes(data))


def test_errors_inside_lazy_children_surface_at_decode_time():
    data = bytearray(_as_req().dump())
    at = data.index(b"20240501120000Z")
    data[at : at + 4] = b"2x24"
    with pytest.raises(Asn1DecodeError, match=r"req-body\.till"):
        decode(bytes(data))


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


def test_raw_req_body_bytes_survive_non_der_input():
    der = _as_req().dump()
    body_der = _as_req().req_body_bytes()
    assert body_der[0] == 0x30
    # Re-encode the req-body with a non-minimal length (0x81 NN) and rebuild the outer layers.
    assert body_der[1] < 0x80
    ber_body = b"\x30\x81" + body_der[1:]
    ber_field = _tlv(0xA4, ber_body)
    req = _as_req()
    head = b"".join(req[name].dump() for name in ("pvno", "msg-type", "padata"))
    inner = head + ber_field
    msg = _tlv(0x6A, _tlv(0x30, inner))
    req = decode(msg)
    assert req.req_body_bytes() == ber_body  # the checksummed bytes, as received
    assert req.dump() == msg
    assert req.dump(force=True) == der  # strict DER on request


def test_ber_indefinite_length_is_accepted_and_der_on_force():
    body = krb5.PA_ENC_TS_ENC({"patimestamp": T0, "pausec": 5})
    der = body.dump()
    indefinite = b"\x30\x80" + der[2:] + b"\x00\x00"
    decoded = decode_as(krb5.PA_ENC_TS_ENC, indefinite)
    assert decoded.dump(force=True) == der


def test_decode_pkinit_san_round_trip_and_errors():
    for principal in [Principal.parse("alice@EXAMPLE.TEST"), Principal.krbtgt("EXAMPLE.TEST"), Principal(("a",), "R", 10)]:
        assert pkinit.decode_pkinit_san(pkinit.encode_pkinit_san(principal)) == principal
    empty = pkinit.KRB5PrincipalName({"realm": "R", "principalName": {"name-type": 1, "name-string": []}}).dump()
    with pytest.raises(Asn1DecodeError, match="principalName"):
        pkinit.decode_pkinit_san(empty)
    with pytest.raises(Asn1DecodeError):
        pkinit.decode_pkinit_san(b"\x30\x00")


def test_non_bytes_input_is_a_decode_error():
    with pytest.raises(Asn1DecodeError, match="expected bytes"):
        decode("not bytes")  # type: ignore[arg-type]
    with pytest.raises(Asn1DecodeError, match="expected bytes"):
        decode_as(krb5.Ticket, None)  # type: ignore[arg-type]


def test_req_body_bytes_with_indefinite_wrapper():
    body = _as_req().req_body_bytes()
    req = _as_req()
    head = b"".join(req[name].dump() for name in ("pvno", "msg-type", "padata"))
    inner = head + b"\xa4\x80" + body + b"\x00\x00"
    msg = _tlv(0x6A, _tlv(0x30, inner))
    assert decode(msg).req_body_bytes() == body
