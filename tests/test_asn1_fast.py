"""RFC 6113 FAST types (common/asn1/fast.py): built from Python values, encoded, decoded, compared.

The MIT TGS-REQ's PA-FX-FAST request and the TGS-REP's PA-FX-FAST reply are checked in
test_vectors_mit.py (decrypted with the recorded keys, re-encoded byte for byte).
"""

from __future__ import annotations

import pytest
from asn1crypto import core

from common.asn1 import Asn1DecodeError, ErrorCode, FastArmorType, FastOptions, PaDataType, decode_as, field_bytes, krb5
from common.asn1.constants import FAST_CRITICAL_OPTIONS
from common.asn1.fast import (
    PA_AUTHENTICATION_SET,
    PA_FX_FAST_REPLY,
    PA_FX_FAST_REQUEST,
    EncryptedChallenge,
    FastOptionsBits,
    KrbFastArmor,
    KrbFastArmoredRep,
    KrbFastArmoredReq,
    KrbFastFinished,
    KrbFastReq,
    KrbFastResponse,
    fx_error,
)
from tests.test_asn1_roundtrip import CKSUM, CNAME, ENC, KEY, PADATA, REALM, REQ_BODY, SNAME, T0

AP_REQ = krb5.AP_REQ({"ap-options": 0, "ticket": {"realm": REALM, "sname": SNAME, "enc-part": ENC}, "authenticator": ENC})
ARMOR = {"armor-type": FastArmorType.FX_FAST_ARMOR_AP_REQUEST, "armor-value": AP_REQ.dump()}
ARMORED_REQ = {"armor": ARMOR, "req-checksum": CKSUM, "enc-fast-req": ENC}
FINISHED = {"timestamp": T0, "usec": 7, "crealm": REALM, "cname": CNAME, "ticket-checksum": CKSUM}
RESPONSE = {"padata": PADATA, "strengthen-key": KEY, "finished": FINISHED, "nonce": 2**32 - 1}

TYPES = [
    (KrbFastArmor, ARMOR),
    (KrbFastArmoredReq, ARMORED_REQ),
    (KrbFastArmoredReq, {"req-checksum": CKSUM, "enc-fast-req": ENC}),  # TGS: no armor field
    (PA_FX_FAST_REQUEST, ("armored-data", ARMORED_REQ)),
    (KrbFastReq, {"fast-options": FastOptions.HIDE_CLIENT_NAMES, "padata": PADATA, "req-body": REQ_BODY}),
    (KrbFastReq, {"fast-options": 0, "padata": [], "req-body": REQ_BODY}),
    (KrbFastArmoredRep, {"enc-fast-rep": ENC}),
    (PA_FX_FAST_REPLY, ("armored-data", {"enc-fast-rep": ENC})),
    (KrbFastFinished, FINISHED),
    (KrbFastResponse, RESPONSE),
    (KrbFastResponse, {"padata": [], "nonce": 0}),  # as in a KRB-ERROR
    (PA_AUTHENTICATION_SET, [{"pa-type": PaDataType.PA_ENCRYPTED_CHALLENGE, "pa-hint": b"h", "pa-value": b"v"}, {"pa-type": 2}]),
    (EncryptedChallenge, ENC),
]


@pytest.mark.parametrize("cls, value", TYPES, ids=[f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(TYPES)])
def test_round_trip(cls, value):
    data = cls(value).dump()
    decoded = decode_as(cls, data)
    assert decoded.dump() == data and decoded.dump(force=True) == data
    native = (decoded.name, decoded.native) if isinstance(decoded, core.Choice) else decoded.native
    assert cls(native).dump() == data


def test_pa_data_type_numbers():
    assert (PaDataType.PA_FX_COOKIE, PaDataType.PA_FX_FAST, PaDataType.PA_FX_ERROR, PaDataType.PA_ENCRYPTED_CHALLENGE) == (
        133,
        136,
        137,
        138,
    )
    assert FastArmorType.FX_FAST_ARMOR_AP_REQUEST == 1


def test_fast_options_are_32_bit_kerberos_flags():
    # hide-client-names is bit 1, kdc-follow-referrals bit 16 (RFC 6113 5.4.1).
    assert FastOptionsBits(FastOptions.HIDE_CLIENT_NAMES).dump() == bytes.fromhex("0305 00 40000000")
    assert FastOptionsBits(FastOptions.KDC_FOLLOW_REFERRALS).dump() == bytes.fromhex("0305 00 00008000")
    assert FastOptionsBits(0).dump() == bytes.fromhex("0305 00 00000000")
    decoded = decode_as(FastOptionsBits, bytes.fromhex("0305 00 40008000")).native
    assert isinstance(decoded, FastOptions)
    assert decoded == FastOptions.HIDE_CLIENT_NAMES | FastOptions.KDC_FOLLOW_REFERRALS
    # Critical options are bits 0-15; follow-referrals is not critical.
    assert FastOptions.HIDE_CLIENT_NAMES & FAST_CRITICAL_OPTIONS
    assert not FastOptions.KDC_FOLLOW_REFERRALS & FAST_CRITICAL_OPTIONS


def test_armored_req_fields_and_armor_bytes():
    value = decode_as(PA_FX_FAST_REQUEST, PA_FX_FAST_REQUEST(("armored-data", ARMORED_REQ)).dump())
    armored = value.chosen
    assert armored["armor"]["armor-type"].native == FastArmorType.FX_FAST_ARMOR_AP_REQUEST
    assert decode_as(krb5.AP_REQ, armored["armor"]["armor-value"].native).native == AP_REQ.native
    assert field_bytes(value, "armored-data") == KrbFastArmoredReq(ARMORED_REQ).dump()


def test_fast_req_req_body_bytes_as_received():
    data = KrbFastReq({"fast-options": 0, "padata": PADATA, "req-body": REQ_BODY}).dump()
    assert field_bytes(decode_as(KrbFastReq, data), "req-body") == krb5.KDC_REQ_BODY(REQ_BODY).dump()


@pytest.mark.parametrize("cls, value", [(KrbFastArmor, ARMOR), (KrbFastResponse, RESPONSE), (KrbFastFinished, FINISHED)])
def test_unknown_extensions_are_skipped(cls, value):
    built = cls(value)
    der = built.dump()
    content = built.contents + b"\xbf\x1f\x03\x02\x01\x05"  # [31] INTEGER 5 after the last field
    decoded = decode_as(cls, b"\x30\x82" + len(content).to_bytes(2, "big") + content)
    assert decoded.native == cls(value).native
    assert decoded.dump(force=True) == der


def test_unknown_choice_alternative_is_a_decode_error():
    data = PA_FX_FAST_REPLY(("armored-data", {"enc-fast-rep": ENC})).dump()
    with pytest.raises(Asn1DecodeError, match="PA_FX_FAST_REPLY"):
        decode_as(PA_FX_FAST_REPLY, b"\xa1" + data[1:])


def test_missing_required_field_is_a_decode_error():
    data = KrbFastResponse({"padata": [], "nonce": 1}).dump()
    without_nonce = b"\x30\x04" + data[2:6]  # padata [0] only
    with pytest.raises(Asn1DecodeError):
        decode_as(KrbFastResponse, without_nonce)


def _krb_error(**extra):
    return krb5.KRB_ERROR(
        {"stime": T0, "susec": 0, "error-code": ErrorCode.KDC_ERR_PREAUTH_REQUIRED, "realm": REALM, "sname": SNAME, **extra}
    )


def test_fx_error():
    inner = _krb_error()
    response = KrbFastResponse(
        {
            "padata": [
                {"padata-type": PaDataType.PA_FX_COOKIE, "padata-value": b"cookie"},
                {"padata-type": PaDataType.PA_FX_ERROR, "padata-value": inner.dump()},
            ],
            "nonce": 9,
        }
    )
    decoded = decode_as(KrbFastResponse, response.dump())
    error = fx_error(decoded)
    assert isinstance(error, krb5.KRB_ERROR)
    assert error.native == inner.native
    assert fx_error(decode_as(KrbFastResponse, KrbFastResponse({"padata": PADATA, "nonce": 1}).dump())) is None


def test_fx_error_that_is_not_a_krb_error():
    response = KrbFastResponse({"padata": [{"padata-type": PaDataType.PA_FX_ERROR, "padata-value": b"\x30\x00"}], "nonce": 9})
    with pytest.raises(Asn1DecodeError, match="KRB_ERROR"):
        fx_error(response)
