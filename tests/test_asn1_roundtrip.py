"""Every codec type built from Python values, encoded, decoded and compared."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from asn1crypto import cms, core

from common.asn1 import ErrorCode, KDCOptions, PaDataType, TicketFlags, decode, decode_as, krb5, oids, pkinit
from common.asn1.constants import APOptions
from common.crypto.key import Key
from common.principal import Principal

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
CNAME, REALM = krb5.principal_to_asn1(Principal.parse("alice@EXAMPLE.TEST"))
SNAME, _ = krb5.principal_to_asn1(Principal.krbtgt("EXAMPLE.TEST"))
ENC = {"etype": 18, "kvno": 2, "cipher": b"\x01" * 40}
KEY = {"keytype": 18, "keyvalue": b"\x02" * 32}
CKSUM = {"cksumtype": 16, "checksum": b"\x03" * 12}
ADDR = {"addr-type": 2, "address": b"\x0a\x00\x00\x01"}
AD = [{"ad-type": 1, "ad-data": b"\x30\x00"}]
TICKET = {"realm": REALM, "sname": SNAME, "enc-part": ENC}
PADATA = [{"padata-type": PaDataType.PA_ENC_TIMESTAMP, "padata-value": b"\x30\x00"}]
REQ_BODY = {
    "kdc-options": KDCOptions.FORWARDABLE | KDCOptions.RENEWABLE_OK,
    "cname": CNAME,
    "realm": REALM,
    "sname": SNAME,
    "from": T0,
    "till": T0 + timedelta(hours=10),
    "rtime": T0 + timedelta(days=7),
    "nonce": 2**32 - 1,
    "etype": [18, 17, 20, 19],
    "addresses": [ADDR],
    "enc-authorization-data": ENC,
    "additional-tickets": [TICKET],
}
ENC_REP = {
    "key": KEY,
    "last-req": [{"lr-type": 0, "lr-value": T0}],
    "nonce": 7,
    "key-expiration": T0,
    "flags": TicketFlags.INITIAL | TicketFlags.FORWARDABLE,
    "authtime": T0,
    "starttime": T0,
    "endtime": T0,
    "renew-till": T0,
    "srealm": REALM,
    "sname": SNAME,
    "caddr": [ADDR],
    "encrypted-pa-data": PADATA,
}
CRED_INFO = {
    "key": KEY,
    "prealm": REALM,
    "pname": CNAME,
    "flags": 0,
    "authtime": T0,
    "starttime": T0,
    "endtime": T0,
    "renew-till": T0,
    "srealm": REALM,
    "sname": SNAME,
    "caddr": [ADDR],
}

MESSAGES = [
    (krb5.Ticket, TICKET),
    (krb5.Authenticator, {"crealm": REALM, "cname": CNAME, "cksum": CKSUM, "cusec": 999_999, "ctime": T0, "subkey": KEY, "seq-number": 5, "authorization-data": AD}),
    (
        krb5.EncTicketPart,
        {
            "flags": 0,
            "key": KEY,
            "crealm": REALM,
            "cname": CNAME,
            "transited": {"tr-type": 1, "contents": b""},
            "authtime": T0,
            "starttime": T0,
            "endtime": T0,
            "renew-till": T0,
            "caddr": [ADDR],
            "authorization-data": AD,
        },
    ),
    (krb5.AS_REQ, {"padata": PADATA, "req-body": REQ_BODY}),
    (krb5.TGS_REQ, {"padata": PADATA, "req-body": REQ_BODY}),
    (krb5.AS_REP, {"padata": PADATA, "crealm": REALM, "cname": CNAME, "ticket": TICKET, "enc-part": ENC}),
    (krb5.TGS_REP, {"crealm": REALM, "cname": CNAME, "ticket": TICKET, "enc-part": ENC}),
    (krb5.AP_REQ, {"ap-options": APOptions.MUTUAL_REQUIRED, "ticket": TICKET, "authenticator": ENC}),
    (krb5.AP_REP, {"enc-part": ENC}),
    (krb5.KRB_SAFE, {"safe-body": {"user-data": b"hi", "timestamp": T0, "usec": 1, "seq-number": 2, "s-address": ADDR, "r-address": ADDR}, "cksum": CKSUM}),
    (krb5.KRB_PRIV, {"enc-part": ENC}),
    (krb5.KRB_CRED, {"tickets": [TICKET, TICKET], "enc-part": ENC}),
    (krb5.EncASRepPart, ENC_REP),
    (krb5.EncTGSRepPart, ENC_REP),
    (krb5.EncAPRepPart, {"ctime": T0, "cusec": 0, "subkey": KEY, "seq-number": 0}),
    (krb5.EncKrbPrivPart, {"user-data": b"x", "timestamp": T0, "usec": 3, "seq-number": 4, "s-address": ADDR, "r-address": ADDR}),
    (krb5.EncKrbCredPart, {"ticket-info": [CRED_INFO, {"key": KEY}], "nonce": 1, "timestamp": T0, "usec": 2, "s-address": ADDR, "r-address": ADDR}),
    (
        krb5.KRB_ERROR,
        {
            "ctime": T0,
            "cusec": 1,
            "stime": T0,
            "susec": 2,
            "error-code": ErrorCode.KDC_ERR_PREAUTH_REQUIRED,
            "crealm": REALM,
            "cname": CNAME,
            "realm": REALM,
            "sname": SNAME,
            "e-text": "pre-authentication required",
            "e-data": krb5.METHOD_DATA(PADATA).dump(),
        },
    ),
]


@pytest.mark.parametrize("cls, value", MESSAGES, ids=[cls.__name__ for cls, _ in MESSAGES])
def test_message_round_trip(cls, value):
    data = cls(value).dump()
    decoded = decode(data)
    assert type(decoded) is cls
    assert decoded.dump() == data and decoded.dump(force=True) == data
    again = cls(decoded.native).dump()
    assert again == data


def test_version_fields_are_filled_in():
    req = decode(krb5.AS_REQ({"req-body": REQ_BODY}).dump())
    assert req["pvno"].native == 5 and req["msg-type"].native == 10
    assert decode(krb5.Ticket(TICKET).dump())["tkt-vno"].native == 5


PKINIT_TYPES = [
    (pkinit.KRB5PrincipalName, {"realm": "R", "principalName": {"name-type": 1, "name-string": ["a"]}}),
    (pkinit.ExternalPrincipalIdentifier, {"subjectName": b"\x30\x00", "issuerAndSerialNumber": b"\x30\x00", "subjectKeyIdentifier": b"k"}),
    (pkinit.TD_TRUSTED_CERTIFIERS, [{"subjectKeyIdentifier": b"k"}]),
    (pkinit.TD_INVALID_CERTIFICATES, [{"subjectKeyIdentifier": b"k"}]),
    (pkinit.AD_INITIAL_VERIFIED_CAS, [{"subjectName": b"\x30\x00"}]),
    (pkinit.TD_DH_PARAMETERS, [{"algorithm": oids.DHPUBLICNUMBER, "parameters": {"p": 23, "g": 5, "q": 11}}]),
    (pkinit.KDFAlgorithmId, {"kdf-id": oids.ID_PKINIT_KDF_AH_SHA256}),
    (pkinit.KDCDHKeyInfo, {"subjectPublicKey": pkinit.encode_dh_public_value(12345), "nonce": 9, "dhKeyExpiration": T0}),
    (pkinit.ReplyKeyPack, {"replyKey": KEY, "asChecksum": CKSUM}),
    (pkinit.PkinitSuppPubInfo, {"enctype": 18, "as-REQ": b"a", "pk-as-rep": b"b"}),
    (krb5.PA_ENC_TS_ENC, {"patimestamp": T0, "pausec": 5}),
    (krb5.PA_ENC_TIMESTAMP, ENC),
    (krb5.ETYPE_INFO2, [{"etype": 18, "salt": "EXAMPLE.TESTalice", "s2kparams": b"\x00\x00\x10\x00"}, {"etype": 23}]),
    (krb5.ETYPE_INFO, [{"etype": 3, "salt": b"salt"}]),
    (krb5.PA_PAC_REQUEST, {"include-pac": False}),
    (krb5.TYPED_DATA, [{"data-type": PaDataType.TD_TRUSTED_CERTIFIERS, "data-value": b"\x30\x00"}, {"data-type": 1}]),
    (krb5.AD_IF_RELEVANT, AD),
    (krb5.AD_KDCIssued, {"ad-checksum": CKSUM, "i-realm": REALM, "i-sname": SNAME, "elements": AD}),
    (krb5.AD_AND_OR, {"condition-count": 1, "elements": AD}),
    (krb5.HostAddresses, [ADDR]),
    (krb5.LastReq, [{"lr-type": -1, "lr-value": T0}]),
    (pkinit.TrustedCA, ("caName", b"\x30\x00")),
]


@pytest.mark.parametrize("cls, value", PKINIT_TYPES, ids=[cls.__name__ for cls, _ in PKINIT_TYPES])
def test_type_round_trip(cls, value):
    data = cls(value).dump()
    decoded = decode_as(cls, data)
    assert decoded.dump(force=True) == data
    native = (decoded.name, decoded.native) if isinstance(decoded, core.Choice) else decoded.native
    assert cls(native).dump() == data


def _signed(payload, content_type) -> cms.SignedData:
    # An unsigned SignedData (as in anonymous PKINIT); signing is the KDC's business.
    encap = pkinit.encap_content_info(payload, content_type)
    return cms.SignedData({"version": "v3", "digest_algorithms": [], "encap_content_info": encap, "signer_infos": []})


def test_pa_pk_as_req_with_auth_pack():
    auth_pack = pkinit.AuthPack(
        {
            "pkAuthenticator": {
                "cusec": 1,
                "ctime": T0,
                "nonce": 2**32 - 1,
                "paChecksum": b"\x00" * 20,
                "freshnessToken": b"token",
                "paChecksum2": {"checksum": b"\x01" * 32, "algorithmIdentifier": {"algorithm": "sha256"}},
            },
            "clientPublicValue": pkinit.ec_client_public_value(oids.SECP256R1, b"\x04" + b"\x05" * 64),
            "supportedCMSTypes": [{"algorithm": "1.2.840.113549.1.1.11"}],
            "clientDHNonce": b"\x06" * 32,
            "supportedKDFs": [{"kdf-id": oids.ID_PKINIT_KDF_AH_SHA256}, {"kdf-id": oids.ID_PKINIT_KDF_AH_SHA1}],
        }
    )
    content_info = pkinit.signed_data_content_info(_signed(auth_pack, oids.ID_PKINIT_AUTHDATA))
    req = pkinit.PA_PK_AS_REQ(
        {"signedAuthPack": pkinit.ContentInfoOctets(content_info), "trustedCertifiers": [{"subjectKeyIdentifier": b"k"}], "kdcPkId": b"id"}
    )
    data = req.dump()
    decoded = decode_as(pkinit.PA_PK_AS_REQ, data)
    assert decoded.dump(force=True) == data
    _, got = pkinit.unwrap_auth_pack(decoded["signedAuthPack"].parsed)
    assert got.dump() == auth_pack.dump()
    assert got["pkAuthenticator"]["paChecksum2"]["algorithmIdentifier"]["algorithm"].dotted == oids.ID_SHA256
    assert got["clientPublicValue"]["public_key"].native == b"\x04" + b"\x05" * 64


def test_auth_pack_with_dh_public_value():
    spki = pkinit.dh_client_public_value(p=23, g=5, q=11, y=19)
    decoded = decode_as(pkinit.SubjectPublicKeyInfo, spki.dump())
    assert decoded["algorithm"]["algorithm"].dotted == oids.DHPUBLICNUMBER
    assert decoded["algorithm"]["parameters"]["q"].native == 11
    assert decoded["public_key"].parsed.native == 19


def test_pa_pk_as_rep_dh_info_and_kdc_dh_key_info():
    key_info = pkinit.KDCDHKeyInfo({"subjectPublicKey": pkinit.encode_dh_public_value(2**1000 + 1), "nonce": 42})
    content_info = pkinit.signed_data_content_info(_signed(key_info, oids.ID_PKINIT_DHKEYDATA))
    rep = pkinit.PA_PK_AS_REP(
        ("dhInfo", {"dhSignedData": pkinit.ContentInfoOctets(content_info), "serverDHNonce": b"n" * 32, "kdf": {"kdf-id": oids.ID_PKINIT_KDF_AH_SHA256}})
    )
    data = rep.dump()
    decoded = decode_as(pkinit.PA_PK_AS_REP, data)
    assert decoded.name == "dhInfo" and decoded.dump(force=True) == data
    _, got = pkinit.unwrap_kdc_dh_key_info(decoded.chosen["dhSignedData"].parsed)
    assert pkinit.decode_dh_public_value(got["subjectPublicKey"].native) == 2**1000 + 1


def test_wrong_content_type_is_rejected():
    key_info = pkinit.KDCDHKeyInfo({"subjectPublicKey": b"\x02\x01\x05", "nonce": 42})
    content_info = pkinit.signed_data_content_info(_signed(key_info, oids.ID_PKINIT_DHKEYDATA))
    with pytest.raises(pkinit.Asn1DecodeError, match="eContentType"):
        pkinit.unwrap_auth_pack(content_info)


@pytest.mark.parametrize("wrapped", [False, True])
def test_enc_key_pack_content_bare_or_wrapped(wrapped):
    reply = pkinit.ReplyKeyPack({"replyKey": krb5.EncryptionKey.from_key(Key(18, b"\x07" * 32)), "asChecksum": CKSUM})
    signed = _signed(reply, oids.ID_PKINIT_RKEYDATA)
    plaintext = pkinit.signed_data_content_info(signed).dump() if wrapped else signed.dump()
    got = pkinit.unwrap_reply_key_pack(pkinit.decode_enc_key_pack_content(plaintext))
    assert got["replyKey"].to_key() == Key(18, b"\x07" * 32)


def test_krb_error_e_data_helpers():
    err = krb5.KRB_ERROR(
        {"stime": T0, "susec": 0, "error-code": ErrorCode.KDC_ERR_CLIENT_NOT_TRUSTED, "realm": REALM, "sname": SNAME,
         "e-data": krb5.TYPED_DATA([{"data-type": PaDataType.TD_TRUSTED_CERTIFIERS, "data-value": pkinit.TD_TRUSTED_CERTIFIERS([]).dump()}]).dump()}
    )
    decoded = decode(err.dump())
    typed = decoded.typed_data()
    assert typed[0]["data-type"].native == PaDataType.TD_TRUSTED_CERTIFIERS
    assert krb5.KRB_ERROR({"stime": T0, "susec": 0, "error-code": 6, "realm": REALM, "sname": SNAME}).method_data() is None


def test_signed_auth_pack_carrying_a_cta_certificate_decodes():
    # Regression: asn1crypto cannot render an otherName holding a context-tagged SEQUENCE
    # (id-pkinit-san), so a full native walk of the certificate failed every real PKINIT request.
    from cryptography.hazmat.primitives.serialization import Encoding
    from asn1crypto import x509 as asn1_x509

    from common import pki

    manufacturer = pki.create_ca(pki.Role.MANUFACTURER, "Test Manufacturer")
    device_key = pki.generate_key()
    device = pki.issue_device_certificate(manufacturer, device_key.public_key(), bytes.fromhex("00163e5a1b2c"), "EXAMPLE.TEST")
    auth_pack = pkinit.AuthPack({"pkAuthenticator": {"cusec": 0, "ctime": T0, "nonce": 7, "paChecksum": b"\x00" * 20}})
    signed = _signed(auth_pack, oids.ID_PKINIT_AUTHDATA)
    signed["certificates"] = [asn1_x509.Certificate.load(device.public_bytes(Encoding.DER))]
    req = pkinit.PA_PK_AS_REQ({"signedAuthPack": pkinit.ContentInfoOctets(pkinit.signed_data_content_info(signed))})
    data = req.dump()
    decoded = decode_as(pkinit.PA_PK_AS_REQ, data)
    assert decoded.dump(force=True) == data
    signed_data, _ = pkinit.unwrap_auth_pack(decoded["signedAuthPack"].parsed)
    certificate_der = signed_data["certificates"][0].chosen.dump()
    assert pki.principal_from_certificate(pki.parse_certificate(certificate_der)).components == ("cta", "00163e5a1b2c")
