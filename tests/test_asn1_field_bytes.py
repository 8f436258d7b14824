"""field_bytes: an EXPLICIT-tagged field's value exactly as received, without its [n] wrapper."""

from __future__ import annotations

import pytest
from asn1crypto import core

from common.asn1 import Asn1DecodeError, decode, decode_as, field_bytes, krb5
from common.asn1.fast import PA_FX_FAST_REPLY
from common.asn1.types import Int32
from tests.test_asn1_roundtrip import CNAME, ENC, REALM, REQ_BODY, SNAME, T0

TICKET = krb5.Ticket({"realm": REALM, "sname": SNAME, "enc-part": ENC}).dump()


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _ap_req(ticket_field: bytes) -> bytes:
    """An AP-REQ whose ticket [3] field is given as raw bytes."""
    fields = (
        _tlv(0xA0, b"\x02\x01\x05")
        + _tlv(0xA1, b"\x02\x01\x0e")
        + _tlv(0xA2, b"\x03\x05\x00\x00\x00\x00\x00")
        + ticket_field
        + _tlv(0xA4, krb5.EncryptedData(ENC).dump())
    )
    return _tlv(0x6E, _tlv(0x30, fields))


def test_short_length_wrapper():
    assert len(TICKET) < 0x80
    message = decode(_ap_req(_tlv(0xA3, TICKET)))
    assert message["ticket"].dump() == _tlv(0xA3, TICKET)  # asn1crypto's dump() keeps the wrapper
    assert field_bytes(message, "ticket") == TICKET


def test_long_length_wrapper():
    # A body over 127 bytes gets a long-form [4] length; also non-minimal long forms.
    body = krb5.KDC_REQ_BODY(REQ_BODY).dump()
    assert len(body) > 0xFF
    req = krb5.AS_REQ({"req-body": REQ_BODY})
    assert decode(req.dump()).req_body_bytes() == body
    head = b"".join(req[name].dump() for name in ("pvno", "msg-type"))
    non_minimal = b"\xa4\x84" + len(body).to_bytes(4, "big") + body
    message = decode(_tlv(0x6A, _tlv(0x30, head + non_minimal)))
    assert field_bytes(message, "req-body") == body
    non_minimal_short = decode(_ap_req(b"\xa3\x81" + bytes([len(TICKET)]) + TICKET))
    assert field_bytes(non_minimal_short, "ticket") == TICKET


def test_indefinite_length_wrapper():
    message = decode(_ap_req(b"\xa3\x80" + TICKET + b"\x00\x00"))
    assert field_bytes(message, "ticket") == TICKET


def test_indefinite_length_inner_value_is_returned_as_received():
    # Ticket [APPLICATION 1] with an indefinite length, inside an indefinite [3] wrapper: the
    # checksummed bytes are the BER as sent, not a DER re-encoding.
    ber_ticket = b"\x61\x80" + TICKET[2:] + b"\x00\x00"
    for wrapper in (_tlv(0xA3, ber_ticket), b"\xa3\x80" + ber_ticket + b"\x00\x00"):
        message = decode(_ap_req(wrapper))
        assert field_bytes(message, "ticket") == ber_ticket
        assert message["ticket"].native == decode(TICKET).native


def test_value_built_locally_gives_its_der():
    ap_req = krb5.AP_REQ({"ap-options": 0, "ticket": decode(TICKET), "authenticator": ENC})
    assert field_bytes(ap_req, "ticket") == TICKET
    body = krb5.KDC_REQ_BODY(REQ_BODY)
    assert krb5.TGS_REQ({"req-body": REQ_BODY}).req_body_bytes() == body.dump()


def test_choice_alternative():
    reply = decode_as(PA_FX_FAST_REPLY, PA_FX_FAST_REPLY(("armored-data", {"enc-fast-rep": ENC})).dump())
    assert field_bytes(reply, "armored-data") == _tlv(0x30, _tlv(0xA0, krb5.EncryptedData(ENC).dump()))
    with pytest.raises(Asn1DecodeError, match="chosen alternative is 'armored-data'"):
        field_bytes(reply, "other")


class _Untagged(core.Sequence):
    _fields = [
        ("plain", Int32),
        ("implicit", Int32, {"implicit": 1}),
        ("high", Int32, {"explicit": 40, "optional": True}),
    ]


def test_field_not_explicitly_tagged():
    value = decode_as(_Untagged, _Untagged({"plain": 1, "implicit": 2}).dump())
    with pytest.raises(Asn1DecodeError, match=r"_Untagged\.plain: the field is not EXPLICIT-tagged"):
        field_bytes(value, "plain")
    with pytest.raises(Asn1DecodeError, match=r"_Untagged\.implicit: the field is not EXPLICIT-tagged"):
        field_bytes(value, "implicit")


def test_absent_and_unknown_fields():
    value = decode_as(_Untagged, _Untagged({"plain": 1, "implicit": 2}).dump())
    with pytest.raises(Asn1DecodeError, match=r"_Untagged\.high: the field is absent"):
        field_bytes(value, "high")
    with pytest.raises(Asn1DecodeError, match=r"_Untagged\.nope: no such field"):
        field_bytes(value, "nope")
    body = decode_as(krb5.KDC_REQ_BODY, krb5.KDC_REQ_BODY({**REQ_BODY, "cname": None}).dump())
    with pytest.raises(Asn1DecodeError, match=r"KDC_REQ_BODY\.cname: the field is absent"):
        field_bytes(body, "cname")


def test_high_tag_number_wrapper():
    data = _Untagged({"plain": 1, "implicit": 2, "high": 3}).dump()
    assert b"\xbf\x28\x03\x02\x01\x03" in data  # [40] in the high-tag-number form
    assert field_bytes(decode_as(_Untagged, data), "high") == b"\x02\x01\x03"


def test_principal_name_field():
    # Any explicit field works, not only messages: PrincipalName [1] inside KDC-REQ-BODY.
    body = decode_as(krb5.KDC_REQ_BODY, krb5.KDC_REQ_BODY(REQ_BODY).dump())
    assert field_bytes(body, "cname") == CNAME.dump()
    assert field_bytes(body, "till") == krb5.KerberosTime(REQ_BODY["till"]).dump()
    assert T0 < REQ_BODY["till"]
