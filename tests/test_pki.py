"""common.pki: identities, certificate profiles and chain verification (one error class per cause)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from hypothesis import given
from hypothesis import strategies as st

from common import pki
from common.asn1 import oids
from common.principal import NameType, Principal
from tests.test_pki_factories import (
    CTA_PRINCIPAL,
    KDC_PRINCIPAL,
    MAC,
    MAC_TEXT,
    NOW,
    OID_KP_CLIENT_AUTH,
    OID_KP_KDC,
    PHONE,
    PHONE_ID_HEX,
    PHONE_NORMALISED,
    REALM,
    UTC,
    build,
    der,
    ec_key,
    flip_last_signature_byte,
    rsa_key,
    tamper,
    world,
)


def ext(cert, oid):
    return cert.extensions.get_extension_for_oid(oid)


# --- MAC addresses and phone IDs ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["00:11:22:aa:bb:cc", "00-11-22-AA-BB-CC", "0011.22aa.bbcc", "001122aabbcc", " 00:11:22:aa:bb:cc "])
def test_parse_mac_forms(text):
    assert pki.parse_mac(text) == MAC
    assert pki.format_mac(pki.parse_mac(text)) == "001122aabbcc"


def test_parse_mac_uppercase_colons():
    assert pki.parse_mac(MAC_TEXT) == MAC


@given(
    st.from_regex(r"[1-9][0-9]{0,14}", fullmatch=True),
    st.lists(st.sampled_from([" ", "-", ".", "(", ")", "/", "\t"]), max_size=15),
)
def test_formatting_does_not_change_the_phone_id(digits, separators):
    formatted = "+" + "".join(d + (separators[i] if i < len(separators) else "") for i, d in enumerate(digits))
    assert pki.normalise_phone_number(formatted) == "+" + digits
    assert pki.phone_id(formatted) == hashlib.sha1(("+" + digits).encode()).digest()


@pytest.mark.parametrize("text", ["", "00:11:22:aa:bb", "00:11:22:aa:bb:cc:dd", "00:11:22:aa:bb:cg", "0x001122aabbcc"])
def test_parse_mac_rejects(text):
    with pytest.raises(ValueError):
        pki.parse_mac(text)


@pytest.mark.parametrize(
    "number", ["+15551230001", "+1 555 123 0001", "+1-555-123-0001", "+1 (555) 123-0001", "+1.555.123.0001", "\t+1555 1230001\n"]
)
def test_phone_number_normalisation(number):
    assert pki.normalise_phone_number(number) == PHONE_NORMALISED
    assert pki.phone_id(number).hex() == PHONE_ID_HEX


def test_phone_id_is_sha1_of_normalised_ascii():
    assert pki.phone_id(PHONE) == hashlib.sha1(b"+15551230001").digest()
    assert len(pki.phone_id(PHONE)) == 20


@pytest.mark.parametrize("number", ["5551230001", "+", "+0123456", "+1234567890123456", "+1555abc", "++15551230001", "+1 555 123 0001 x12"])
def test_phone_number_rejects_without_echoing_it(number):
    with pytest.raises(ValueError) as info:
        pki.normalise_phone_number(number)
    digits = "".join(ch for ch in number if ch.isdigit())
    assert len(digits) < 4 or digits not in str(info.value)


def test_mac_extension_der():
    assert pki.encode_mac_extension(MAC) == bytes.fromhex("0406001122aabbcc")
    assert pki.decode_mac_extension(bytes.fromhex("0406001122aabbcc")) == MAC


@pytest.mark.parametrize(
    "raw",
    [
        "0405001122aabb",  # 5 bytes
        "0407001122aabbccdd",  # 7 bytes
        "048106001122aabbcc",  # long-form length: BER, not DER
        "0406001122aabbcc00",  # trailing byte
        "0c06001122aabbcc",  # UTF8String, not OCTET STRING
        "",
    ],
)
def test_mac_extension_malformed(raw):
    with pytest.raises(pki.MalformedExtension):
        pki.decode_mac_extension(bytes.fromhex(raw))


def test_phone_ids_extension_der():
    a, b = pki.phone_id("+15551230001"), pki.phone_id("+15551230002")
    encoded = pki.encode_phone_ids_extension([a, b])
    assert encoded == bytes.fromhex("302c0414") + a + bytes.fromhex("0414") + b
    assert pki.decode_phone_ids_extension(encoded) == (a, b)


@pytest.mark.parametrize(
    "raw",
    [
        "3000",  # empty
        "3015" + "0413" + "00" * 19,  # 19-byte entry
        "302c" + ("0414" + "11" * 20) * 2,  # duplicate
        "3016" + "0414" + "11" * 20 + "0500",  # NULL inside
        "3016" + "0414" + "11" * 20 + "00",  # length wrong / trailing
        "0414" + "11" * 20,  # bare OCTET STRING
    ],
)
def test_phone_ids_extension_malformed(raw):
    with pytest.raises(pki.MalformedExtension):
        pki.decode_phone_ids_extension(bytes.fromhex(raw))


def test_phone_ids_encoder_refuses_bad_input():
    with pytest.raises(ValueError):
        pki.encode_phone_ids_extension([])
    with pytest.raises(ValueError):
        pki.encode_phone_ids_extension([b"\x00" * 19])
    with pytest.raises(ValueError):
        pki.encode_phone_ids_extension([b"\x00" * 20] * 2)


@given(st.binary(min_size=6, max_size=6))
def test_mac_extension_roundtrip(mac):
    assert pki.decode_mac_extension(pki.encode_mac_extension(mac)) == mac


@given(st.lists(st.binary(min_size=20, max_size=20), min_size=1, max_size=8, unique=True))
def test_phone_ids_roundtrip(ids):
    assert pki.decode_phone_ids_extension(pki.encode_phone_ids_extension(ids)) == tuple(ids)


@given(st.binary(max_size=64))
def test_extension_decoders_raise_only_malformed_extension(data):
    for decode in (pki.decode_mac_extension, pki.decode_phone_ids_extension):
        try:
            decode(data)
        except pki.MalformedExtension:
            pass


def test_principal_helpers():
    assert pki.cta_principal(MAC, REALM) == Principal(("cta", "001122aabbcc"), REALM, NameType.PRINCIPAL)
    assert str(pki.kdc_principal(REALM)) == "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST"
    assert pki.kdc_principal(REALM).name_type == NameType.SRV_INST
    sc = pki.service_principal("sc", "SC1.Example.Test.", REALM)
    assert str(sc) == "sc/sc1.example.test@EXAMPLE.TEST" and sc.name_type == NameType.SRV_HST


# --- profiles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["manufacturer", "operator"])
def test_ca_profile(which):
    ca = getattr(world(), which)
    cert = ca.certificate
    assert cert.issuer == cert.subject
    bc = ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(cert, ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    ski = ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
    assert ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value.key_identifier == ski
    assert ca.role is pki.Role(which) and pki.role_from_certificate(cert) is pki.Role(which)
    policy = ext(cert, ExtensionOID.CERTIFICATE_POLICIES).value[0].policy_identifier.dotted_string
    assert policy == {"manufacturer": oids.ID_KERBTEL_POLICY_MANUFACTURER, "operator": oids.ID_KERBTEL_POLICY_OPERATOR}[which]
    assert cert.signature_hash_algorithm.name == "sha256"
    years = (cert.not_valid_after_utc - cert.not_valid_before_utc).days / 365
    assert years >= (30 if which == "manufacturer" else 20)
    pki.verify_chain(cert, [cert], now=NOW, purpose="ca")


def _leaf_common(cert, ca, eku_oid):
    assert 0 < cert.serial_number < 2**159
    assert cert.signature_hash_algorithm.name == "sha256"
    bc = ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and not bc.value.ca
    assert list(ext(cert, ExtensionOID.EXTENDED_KEY_USAGE).value) == [eku_oid]
    assert ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value.key_identifier == (
        ext(ca.certificate, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
    )
    ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)


def test_device_profile():
    w = world()
    cert = w.device
    _leaf_common(cert, w.manufacturer, OID_KP_CLIENT_AUTH)
    ku = ext(cert, ExtensionOID.KEY_USAGE).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign and not ku.key_agreement
    assert pki.mac_from_certificate(cert) == MAC
    assert not ext(cert, x509.ObjectIdentifier(oids.ID_KERBTEL_EXT_MAC_ADDRESS)).critical
    assert pki.principal_from_certificate(cert) == CTA_PRINCIPAL
    assert pki.phone_ids_from_certificate(cert) == ()
    assert pki.role_from_certificate(cert) is pki.Role.MANUFACTURER
    assert cert.subject.rfc4514_string() == "CN=cta-001122aabbcc"
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 20 * 365


def test_operator_profile_same_key_phone_ids_and_no_number():
    w = world()
    cert = w.provisioned
    _leaf_common(cert, w.operator, OID_KP_CLIENT_AUTH)
    assert cert.public_key() == w.device.public_key()
    assert pki.phone_ids_from_certificate(cert) == (bytes.fromhex(PHONE_ID_HEX),)
    assert pki.principal_from_certificate(cert) == CTA_PRINCIPAL
    assert pki.mac_from_certificate(cert) == MAC
    assert pki.role_from_certificate(cert) is pki.Role.OPERATOR
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 366
    data = der(cert)
    for needle in ("15551230001", "5551230001", "555-123-0001", "555 123 0001", "1230001", PHONE):
        assert needle.encode() not in data
        assert needle.encode("utf-16-be") not in data
    assert b"\x15\x55\x12\x30\x00\x01" not in data  # not even as BCD
    assert "555" not in cert.subject.rfc4514_string()


def test_operator_certificate_several_numbers_deduplicated():
    w = world()
    cert = pki.issue_operator_certificate(
        w.operator, w.device, REALM, phone_numbers=["+15551230001", "+1 555 123 0001", "+15551230002"], now=NOW
    )
    assert pki.phone_ids_from_certificate(cert) == (pki.phone_id("+15551230001"), pki.phone_id("+15551230002"))
    by_hash = pki.issue_operator_certificate(w.operator, w.device, REALM, phone_ids=[pki.phone_id("+15551230009")], now=NOW)
    assert pki.phone_ids_from_certificate(by_hash) == (pki.phone_id("+15551230009"),)


def test_kdc_profile_rsa_and_ec():
    w = world()
    for cert, rsa_key_ in ((w.kdc, True), (w.kdc_ec, False)):
        _leaf_common(cert, w.operator, OID_KP_KDC)
        ku = ext(cert, ExtensionOID.KEY_USAGE).value
        assert ku.digital_signature and ku.key_agreement and ku.key_encipherment is rsa_key_
        principal = pki.principal_from_certificate(cert)
        assert principal == KDC_PRINCIPAL and principal.name_type == NameType.SRV_INST
    san = ext(w.kdc, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert san.get_values_for_type(x509.DNSName) == ["kdc.example.test"]
    assert ext(w.kdc_ec, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.DNSName) == []
    assert isinstance(w.kdc_ec.public_key(), ec.EllipticCurvePublicKey)


def test_kdc_san_is_mit_krb5principalname():
    # RFC 4556 3.2.2: KRB5PrincipalName ::= SEQUENCE { realm [0] Realm, principalName [1] PrincipalName }
    san = ext(world().kdc, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    (other,) = san.get_values_for_type(x509.OtherName)
    assert other.type_id.dotted_string == "1.3.6.1.5.2.2"
    body = other.value
    assert body[0] == 0x30 and body[2] == 0xA0
    assert b"\x1b\x0cEXAMPLE.TEST" in body and b"\x1b\x06krbtgt" in body
    assert b"\xa0\x03\x02\x01\x02" in body  # name-type NT-SRV-INST


def test_service_profile():
    w = world()
    cert = w.service
    assert set(ext(cert, ExtensionOID.EXTENDED_KEY_USAGE).value) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert str(pki.principal_from_certificate(cert)) == "sc/sc1.example.test@EXAMPLE.TEST"
    assert ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.DNSName) == ["sc1.example.test"]
    assert w.verifier().verify(cert, now=NOW, purpose="service").role is pki.Role.OPERATOR


def test_serials_are_random_and_positive():
    w = world()
    serials = {
        pki.issue_device_certificate(w.manufacturer, w.device_key.public_key(), MAC, REALM, now=NOW).serial_number
        for _ in range(8)
    }
    assert len(serials) == 8 and all(0 < s < 2**159 for s in serials)


def test_issuance_refusals():
    w = world()
    with pytest.raises(ValueError, match="manufacturer CA"):
        pki.issue_device_certificate(w.operator, w.device_key.public_key(), MAC, REALM, now=NOW)
    with pytest.raises(ValueError, match="operator CA"):
        pki.issue_operator_certificate(w.manufacturer, w.device, REALM, phone_numbers=[PHONE], now=NOW)
    with pytest.raises(ValueError, match="operator CA"):
        pki.issue_kdc_certificate(w.manufacturer, w.kdc_key.public_key(), REALM, now=NOW)
    with pytest.raises(ValueError, match="RSA"):
        pki.issue_device_certificate(w.manufacturer, ec_key(2).public_key(), MAC, REALM, now=NOW)
    with pytest.raises(ValueError, match="phone"):
        pki.issue_operator_certificate(w.operator, w.device, REALM, now=NOW)
    with pytest.raises(ValueError, match="E.164"):
        pki.issue_operator_certificate(w.operator, w.device, REALM, phone_numbers=["5551230001"], now=NOW)
    with pytest.raises(ValueError, match="MAC"):
        pki.issue_operator_certificate(w.operator, w.kdc, REALM, phone_numbers=[PHONE], now=NOW)
    with pytest.raises(ValueError, match="expired"):
        pki.issue_kdc_certificate(w.operator, w.kdc_key.public_key(), REALM, now=NOW + dt.timedelta(days=365 * 40))
    with pytest.raises(ValueError):
        pki.generate_key("rsa", 1024)
    with pytest.raises(ValueError):
        pki.generate_key("dsa")


def test_leaf_validity_clamped_to_ca():
    w = world()
    cert = pki.issue_kdc_certificate(w.operator, w.kdc_key.public_key(), REALM, days=365 * 50, now=NOW)
    assert cert.not_valid_after_utc == w.operator.certificate.not_valid_after_utc


def test_rsa_3072_and_pss_and_ec_ca():
    key = pki.generate_key("rsa", 3072)
    assert key.key_size == 3072
    ca = pki.create_ca("operator", "EC Telco Root", key=ec_key(3), now=NOW)
    kdc = pki.issue_kdc_certificate(ca, key.public_key(), REALM, now=NOW)
    assert pki.verify_chain(kdc, [ca.certificate], now=NOW, purpose="kdc").principal == KDC_PRINCIPAL
    cert, _ = build(world().operator, pss=True, phone_ids_ext=pki.encode_phone_ids_extension([pki.phone_id(PHONE)]))
    assert cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
    assert world().verifier().verify(cert, now=NOW, purpose="cta").provisioned


# --- verification: the good cases ----------------------------------------------------------------


def test_verify_manufacturer_issued_cta():
    w = world()
    result = w.verifier().verify(w.device, now=NOW, purpose=pki.Purpose.CTA, expected_principal=CTA_PRINCIPAL)
    assert result.role is pki.Role.MANUFACTURER and not result.provisioned
    assert result.mac == MAC and result.phone_ids == () and result.principal == CTA_PRINCIPAL
    assert result.chain == (w.device, w.manufacturer.certificate)
    assert result.thumbprint == hashlib.sha256(der(w.device)).digest() == pki.thumbprint(w.device)
    assert result.valid_until == w.device.not_valid_after_utc
    assert result.valid_from == w.device.not_valid_before_utc
    assert result.key_transport_allowed


def test_verify_operator_issued_cta():
    w = world()
    result = w.verifier().verify(w.provisioned, now=NOW, purpose="cta", expected_principal=CTA_PRINCIPAL)
    assert result.role is pki.Role.OPERATOR and result.provisioned
    assert result.phone_ids == (pki.phone_id(PHONE),)
    assert result.anchor.certificate == w.operator.certificate


def test_verify_kdc_with_and_without_expected_name():
    w = world()
    assert w.verifier().verify(w.kdc, now=NOW, purpose="kdc", expected_principal=KDC_PRINCIPAL).principal == KDC_PRINCIPAL
    assert w.verifier().verify(w.kdc_ec, now=NOW, purpose="kdc").principal == KDC_PRINCIPAL
    assert not w.verifier().verify(w.kdc_ec, now=NOW, purpose="kdc").key_transport_allowed


def test_expected_principal_ignores_name_type():
    w = world()
    w.verifier().verify(w.device, now=NOW, purpose="cta", expected_principal=CTA_PRINCIPAL.with_name_type(NameType.UNKNOWN))


def test_naive_now_is_utc_and_bounds_are_inclusive():
    w = world()
    v = w.verifier()
    v.verify(w.device, now=NOW.replace(tzinfo=None), purpose="cta")
    v.verify(w.device, now=w.device.not_valid_before_utc, purpose="cta")
    v.verify(w.device, now=w.device.not_valid_after_utc, purpose="cta")


def test_explicit_anchor_role_overrides_policy():
    w = world()
    v = pki.CertificateVerifier([pki.TrustAnchor(w.operator.certificate, pki.Role.OPERATOR), w.manufacturer.certificate])
    assert v.verify(w.kdc, now=NOW, purpose="kdc").role is pki.Role.OPERATOR
    with pytest.raises(ValueError):
        pki.CertificateVerifier([])


def test_intermediate_ca_chain_and_irrelevant_intermediates():
    w = world()
    root = pki.create_ca("operator", "Deep Root", key=rsa_key(5), now=NOW - dt.timedelta(days=10), path_length=1)
    sub = pki.create_ca("operator", "Deep Issuing CA", key=rsa_key(6), issuer=root, now=NOW - dt.timedelta(days=10))
    kdc = pki.issue_kdc_certificate(sub, w.kdc_key.public_key(), REALM, now=NOW)
    result = pki.verify_chain(kdc, [root.certificate], [w.device, sub.certificate, w.rogue.certificate], now=NOW, purpose="kdc")
    assert result.chain == (kdc, sub.certificate, root.certificate)
    assert result.role is pki.Role.OPERATOR
    with pytest.raises(pki.UntrustedIssuer):
        pki.verify_chain(kdc, [root.certificate], now=NOW, purpose="kdc")  # intermediate not supplied


# --- verification: one error class per failure -----------------------------------------------------


def test_expired_and_not_yet_valid():
    w = world()
    v = w.verifier()
    with pytest.raises(pki.Expired) as info:
        v.verify(w.provisioned, now=NOW + dt.timedelta(days=400), purpose="cta")
    assert info.value.certificate == w.provisioned
    with pytest.raises(pki.NotYetValid):
        v.verify(w.device, now=NOW - dt.timedelta(days=2), purpose="cta")
    expired, _ = build(w.operator, not_before=NOW - dt.timedelta(days=30), not_after=NOW - dt.timedelta(seconds=1))
    with pytest.raises(pki.Expired):
        v.verify(expired, now=NOW)
    future, _ = build(w.operator, not_before=NOW + dt.timedelta(seconds=1))
    with pytest.raises(pki.NotYetValid):
        v.verify(future, now=NOW)


def test_expired_ca_fails_the_leaf():
    w = world()
    old_ca = pki.create_ca("operator", "Short CA", key=rsa_key(7), days=10, now=NOW - dt.timedelta(days=20))
    leaf, _ = build(old_ca, not_before=NOW - dt.timedelta(days=15), not_after=NOW + dt.timedelta(days=5))
    with pytest.raises(pki.Expired) as info:
        pki.verify_chain(leaf, [old_ca.certificate], now=NOW)
    assert info.value.certificate == old_ca.certificate
    del w


def test_wrong_ca_is_untrusted():
    w = world()
    rogue_cert = pki.issue_operator_certificate(w.rogue, w.device, REALM, phone_numbers=[PHONE], now=NOW)
    with pytest.raises(pki.UntrustedIssuer) as info:
        w.verifier().verify(rogue_cert, now=NOW, purpose="cta")
    assert info.value.krb_error_name == "KDC_ERR_CANT_VERIFY_CERTIFICATE"
    # Only the manufacturer CA trusted: an operator-issued certificate does not verify.
    with pytest.raises(pki.UntrustedIssuer):
        pki.verify_chain(w.provisioned, [w.manufacturer.certificate], now=NOW, purpose="cta")


def test_impostor_ca_with_same_name():
    w = world()
    forged = pki.issue_kdc_certificate(w.impostor, w.kdc_key.public_key(), REALM, now=NOW)
    with pytest.raises(pki.UntrustedIssuer):  # AKI points at another key
        w.verifier().verify(forged, now=NOW, purpose="kdc")
    no_aki, _ = build(w.impostor, aki=False)
    with pytest.raises(pki.BadSignature):  # name matches, signature does not
        w.verifier().verify(no_aki, now=NOW)


def test_self_signed_leaf_is_untrusted():
    cert, _ = build(None, key=rsa_key(21))
    with pytest.raises(pki.UntrustedIssuer):
        world().verifier().verify(cert, now=NOW)


def test_tampered_certificate_bad_signature():
    w = world()
    forged = tamper(w.provisioned, b"cta-001122aabbcc", b"cta-001122aabbcd")
    with pytest.raises(pki.BadSignature) as info:
        w.verifier().verify(forged, now=NOW, purpose="cta")
    assert info.value.krb_error_name == "KDC_ERR_INVALID_CERTIFICATE"
    with pytest.raises(pki.BadSignature):
        w.verifier().verify(flip_last_signature_byte(w.kdc), now=NOW, purpose="kdc")


def test_sha1_signature_not_accepted():
    w = world()
    sha256_rsa = bytes.fromhex("2a864886f70d01010b")  # sha256WithRSAEncryption
    sha1_rsa = bytes.fromhex("2a864886f70d010105")  # sha1WithRSAEncryption
    data = der(w.device).replace(sha256_rsa, sha1_rsa)
    cert = x509.load_der_x509_certificate(data)
    with pytest.raises(pki.DigestNotAccepted) as info:
        w.verifier().verify(cert, now=NOW, purpose="cta")
    assert info.value.krb_error_name == "KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED"


def test_missing_and_wrong_eku():
    w = world()
    v = w.verifier()
    no_eku, _ = build(w.manufacturer, eku=None, mac_ext=pki.encode_mac_extension(MAC))
    with pytest.raises(pki.MissingExtendedKeyUsage) as info:
        v.verify(no_eku, now=NOW, purpose="cta")
    assert isinstance(info.value, pki.WrongExtendedKeyUsage)
    assert info.value.krb_error_name == "KDC_ERR_INCONSISTENT_KEY_PURPOSE"
    server_only, _ = build(w.manufacturer, eku=[ExtendedKeyUsageOID.SERVER_AUTH], mac_ext=pki.encode_mac_extension(MAC))
    with pytest.raises(pki.WrongExtendedKeyUsage):
        v.verify(server_only, now=NOW, purpose="cta")
    with pytest.raises(pki.WrongExtendedKeyUsage):
        v.verify(w.device, now=NOW, purpose="kdc")  # a CTA certificate cannot act as the KDC
    with pytest.raises(pki.WrongExtendedKeyUsage):
        v.verify(w.kdc, now=NOW, purpose="cta")
    with pytest.raises(pki.WrongExtendedKeyUsage):
        v.verify(w.kdc, now=NOW, purpose="service")


def test_ms_smartcard_logon_only_when_enabled():
    w = world()
    ms = x509.ObjectIdentifier(oids.ID_MS_KP_SC_LOGON)
    cert, _ = build(w.manufacturer, eku=[ms], mac_ext=pki.encode_mac_extension(MAC))
    with pytest.raises(pki.WrongExtendedKeyUsage):
        w.verifier().verify(cert, now=NOW, purpose="cta")
    pki.CertificateVerifier(w.anchors, accept_ms_smartcard_logon=True).verify(cert, now=NOW, purpose="cta")


def test_wrong_key_usage():
    w = world()
    cert, _ = build(w.manufacturer, key_usage={"key_encipherment": True}, mac_ext=pki.encode_mac_extension(MAC))
    with pytest.raises(pki.WrongKeyUsage) as info:
        w.verifier().verify(cert, now=NOW, purpose="cta")
    assert info.value.krb_error_name == "KDC_ERR_INCONSISTENT_KEY_PURPOSE"
    no_ku, _ = build(w.manufacturer, key_usage=None, mac_ext=pki.encode_mac_extension(MAC))
    w.verifier().verify(no_ku, now=NOW, purpose="cta")  # absent keyUsage allows every use (RFC 5280)
    with pytest.raises(pki.WrongKeyUsage):
        w.verifier().verify(w.operator.certificate, now=NOW, purpose="cta")  # a CA is not a CTA


def test_leaf_used_as_ca():
    w = world()
    leaf, leaf_key = build(w.operator, key=rsa_key(22), subject_cn="innocent leaf")
    as_ca = pki.CertificateAuthority(leaf, leaf_key)
    child, _ = build(as_ca, phone_ids_ext=pki.encode_phone_ids_extension([pki.phone_id(PHONE)]))
    with pytest.raises(pki.NotACA) as info:
        w.verifier().verify(child, [leaf], now=NOW, purpose="cta")
    assert info.value.certificate == leaf
    no_bc, no_bc_key = build(w.operator, key=rsa_key(23), subject_cn="no constraints", ca=None)
    child2, _ = build(pki.CertificateAuthority(no_bc, no_bc_key))
    with pytest.raises(pki.NotACA):
        w.verifier().verify(child2, [no_bc], now=NOW)


def test_ca_without_keycertsign():
    w = world()
    sub, sub_key = build(w.operator, key=rsa_key(24), subject_cn="weak CA", ca=True, key_usage={"digital_signature": True})
    child, _ = build(pki.CertificateAuthority(sub, sub_key))
    with pytest.raises(pki.NotACA):
        w.verifier().verify(child, [sub], now=NOW)
    with pytest.raises(pki.NotACA):
        w.verifier().verify(w.kdc, now=NOW, purpose="ca")


def test_path_length_exceeded():
    w = world()  # the operator root has pathlen 0: no CA below it
    sub = pki.create_ca("operator", "Sub CA", key=rsa_key(25), issuer=w.operator, now=NOW - dt.timedelta(days=1))
    leaf, _ = build(sub)
    with pytest.raises(pki.PathLengthExceeded) as info:
        w.verifier().verify(leaf, [sub.certificate], now=NOW)
    assert info.value.certificate == w.operator.certificate
    assert isinstance(info.value, pki.CertificateError) and info.value.krb_error_name == "KDC_ERR_INVALID_CERTIFICATE"


def test_principal_mismatch():
    w = world()
    other = Principal(("cta", "001122aabbcd"), REALM)
    with pytest.raises(pki.PrincipalMismatch) as info:
        w.verifier().verify(w.provisioned, now=NOW, purpose="cta", expected_principal=other)
    assert info.value.krb_error_name == "KDC_ERR_CLIENT_NAME_MISMATCH"
    with pytest.raises(pki.PrincipalMismatch):
        w.verifier().verify(w.device, now=NOW, purpose="cta", expected_principal=Principal(("cta", "001122aabbcc"), "OTHER.TEST"))
    with pytest.raises(pki.KdcNameMismatch) as info:
        w.verifier().verify(w.kdc, now=NOW, purpose="kdc", expected_principal=Principal.krbtgt("OTHER.TEST"))
    assert info.value.krb_error_name == "KDC_ERR_KDC_NAME_MISMATCH"
    no_san, _ = build(w.operator, principals=None)
    with pytest.raises(pki.PrincipalMismatch):
        w.verifier().verify(no_san, now=NOW, expected_principal=CTA_PRINCIPAL)


def test_malformed_extensions():
    w = world()
    v = w.verifier()
    bad_mac, _ = build(w.manufacturer, mac_ext=bytes.fromhex("0405001122aabb"))
    with pytest.raises(pki.MalformedExtension):
        v.verify(bad_mac, now=NOW, purpose="cta")
    bad_ids, _ = build(w.operator, phone_ids_ext=bytes.fromhex("3000"))
    with pytest.raises(pki.MalformedExtension):
        v.verify(bad_ids, now=NOW, purpose="cta")
    bad_san, _ = build(w.operator, principals=None, raw_san_value=bytes.fromhex("0403414243"))
    with pytest.raises(pki.MalformedExtension):
        v.verify(bad_san, now=NOW)
    not_cta_name, _ = build(
        w.operator,
        principals=[Principal(("alice",), REALM)],
        phone_ids_ext=pki.encode_phone_ids_extension([pki.phone_id(PHONE)]),
    )
    with pytest.raises(pki.MalformedExtension):
        v.verify(not_cta_name, now=NOW, purpose="cta")
    with pytest.raises(pki.MalformedExtension):  # extraction helpers raise the same class
        pki.mac_from_certificate(bad_mac)


def test_missing_extensions():
    w = world()
    v = w.verifier()
    no_mac, _ = build(w.manufacturer)
    with pytest.raises(pki.MissingExtension):
        v.verify(no_mac, now=NOW, purpose="cta")
    no_ids, _ = build(w.operator, mac_ext=pki.encode_mac_extension(MAC))
    with pytest.raises(pki.MissingExtension):
        v.verify(no_ids, now=NOW, purpose="cta")
    no_san, _ = build(w.manufacturer, principals=None, mac_ext=pki.encode_mac_extension(MAC))
    with pytest.raises(pki.MissingExtension):
        v.verify(no_san, now=NOW, purpose="cta")
    kdc_no_krbtgt, _ = build(w.operator, eku=[OID_KP_KDC])
    with pytest.raises(pki.MissingExtension):
        v.verify(kdc_no_krbtgt, now=NOW, purpose="kdc")


def test_inconsistent_identity():
    w = world()
    v = w.verifier()
    other_mac, _ = build(w.manufacturer, mac_ext=pki.encode_mac_extension(bytes.fromhex("001122aabbcd")))
    with pytest.raises(pki.InconsistentIdentity):
        v.verify(other_mac, now=NOW, purpose="cta")
    maker_with_ids, _ = build(
        w.manufacturer, mac_ext=pki.encode_mac_extension(MAC), phone_ids_ext=pki.encode_phone_ids_extension([pki.phone_id(PHONE)])
    )
    with pytest.raises(pki.InconsistentIdentity):
        v.verify(maker_with_ids, now=NOW, purpose="cta")


def test_unknown_critical_extension():
    w = world()
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    cert, _ = build(w.operator, extra=[(unknown, True)])
    with pytest.raises(pki.UnknownCriticalExtension):
        w.verifier().verify(cert, now=NOW)
    fine, _ = build(w.operator, extra=[(unknown, False)])
    w.verifier().verify(fine, now=NOW)


def test_check_order_untrusted_before_expired():
    w = world()
    expired_rogue, _ = build(w.rogue, not_after=NOW - dt.timedelta(days=1), not_before=NOW - dt.timedelta(days=2))
    with pytest.raises(pki.UntrustedIssuer):
        w.verifier().verify(expired_rogue, now=NOW)


ERROR_CODES = {
    pki.CertificateError: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.MalformedCertificate: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.UntrustedIssuer: ("KDC_ERR_CANT_VERIFY_CERTIFICATE", 70),
    pki.BadSignature: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.DigestNotAccepted: ("KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED", 78),
    pki.NotYetValid: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.Expired: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.NotACA: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.PathLengthExceeded: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.UnknownCriticalExtension: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.MissingExtension: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.MalformedExtension: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.InconsistentIdentity: ("KDC_ERR_INVALID_CERTIFICATE", 71),
    pki.WrongKeyUsage: ("KDC_ERR_INCONSISTENT_KEY_PURPOSE", 77),
    pki.WrongExtendedKeyUsage: ("KDC_ERR_INCONSISTENT_KEY_PURPOSE", 77),
    pki.MissingExtendedKeyUsage: ("KDC_ERR_INCONSISTENT_KEY_PURPOSE", 77),
    pki.PrincipalMismatch: ("KDC_ERR_CLIENT_NAME_MISMATCH", 75),
    pki.KdcNameMismatch: ("KDC_ERR_KDC_NAME_MISMATCH", 76),
}


@pytest.mark.parametrize("cls", list(ERROR_CODES), ids=lambda c: c.__name__)
def test_error_classes_map_to_krb_errors(cls):
    error = cls("message")
    assert isinstance(error, pki.CertificateError) and isinstance(error, ValueError)
    assert (error.krb_error_name, error.krb_error_code) == ERROR_CODES[cls]


def test_every_error_class_is_listed():
    from common.pki import errors

    classes = {getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert classes == set(ERROR_CODES)


def test_verification_uses_the_given_time_not_the_clock():
    # Everything in world() is issued around NOW (2030): if verification read the real clock,
    # these certificates would be NotYetValid (or, after 2031, Expired).
    w = world()
    real_now = dt.datetime.now(UTC)
    assert not (w.provisioned.not_valid_before_utc <= real_now <= w.provisioned.not_valid_after_utc)
    w.verifier().verify(w.provisioned, now=NOW, purpose="cta", expected_principal=CTA_PRINCIPAL)


def test_supersedes_requires_same_key_and_later_start():
    w = world()
    newer = pki.issue_operator_certificate(w.operator, w.device, REALM, phone_numbers=[PHONE], now=NOW + dt.timedelta(hours=1))
    assert pki.supersedes(newer, w.provisioned)
    assert not pki.supersedes(w.provisioned, newer)  # a replayed older certificate
    assert not pki.supersedes(newer, newer)
    assert not pki.supersedes(w.kdc, w.provisioned)  # another key
