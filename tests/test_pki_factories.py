"""Certificate factories for good and bad certificates, shared by the tests/test_pki*.py modules.

`world()` builds (once per session; RSA key generation is slow) a manufacturer CA, an operator CA,
a rogue operator CA and an impostor with the operator CA's name but another key, plus good CTA,
KDC and service certificates, all issued at NOW. `build()` makes an arbitrary certificate with
exactly the extensions asked for, which is how the bad ones are made.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from common import pki
from common.asn1 import oids
from common.principal import Principal

UTC = dt.timezone.utc
NOW = dt.datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)  # never the real clock: verification takes `now`
REALM = "EXAMPLE.TEST"
MAC = bytes.fromhex("001122aabbcc")
MAC_TEXT = "00:11:22:AA:BB:CC"
PHONE = "+1 555-123-0001"
PHONE_NORMALISED = "+15551230001"
# SHA-1("+15551230001"): the phone ID of PHONE (docs/pki.md, "Phone IDs").
PHONE_ID_HEX = "643287f95a13f2f63326337b395daee152faac7d"
CTA_PRINCIPAL = Principal(("cta", "001122aabbcc"), REALM)
KDC_PRINCIPAL = Principal.krbtgt(REALM)

OID_KP_CLIENT_AUTH = x509.ObjectIdentifier(oids.ID_PKINIT_KPCLIENTAUTH)
OID_KP_KDC = x509.ObjectIdentifier(oids.ID_PKINIT_KPKDC)
OID_MAC = x509.ObjectIdentifier(oids.ID_KERBTEL_EXT_MAC_ADDRESS)
OID_PHONE_IDS = x509.ObjectIdentifier(oids.ID_KERBTEL_EXT_PHONE_IDS)


@functools.lru_cache(maxsize=None)
def rsa_key(index: int, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A cached RSA key per index: tests share keys to stay fast."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.lru_cache(maxsize=None)
def ec_key(index: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class World:
    manufacturer: pki.CertificateAuthority
    operator: pki.CertificateAuthority
    rogue: pki.CertificateAuthority  # another operator's CA: not trusted
    impostor: pki.CertificateAuthority  # same name as `operator`, different key
    device_key: rsa.RSAPrivateKey
    device: x509.Certificate  # manufacturer-issued CTA certificate
    provisioned: x509.Certificate  # operator-issued CTA certificate, same key
    kdc_key: rsa.RSAPrivateKey
    kdc: x509.Certificate
    kdc_ec_key: ec.EllipticCurvePrivateKey
    kdc_ec: x509.Certificate
    service: x509.Certificate

    @property
    def anchors(self) -> list[x509.Certificate]:
        return [self.manufacturer.certificate, self.operator.certificate]

    def verifier(self) -> pki.CertificateVerifier:
        return pki.CertificateVerifier(self.anchors)


@functools.lru_cache(maxsize=None)
def world() -> World:
    issued = NOW - dt.timedelta(days=1)
    manufacturer = pki.create_ca("manufacturer", "Acme CTA Root CA", key=rsa_key(1), now=issued - dt.timedelta(days=30))
    operator = pki.create_ca("operator", "Example Telco Root CA", key=rsa_key(2), now=issued - dt.timedelta(days=30))
    rogue = pki.create_ca("operator", "Rogue Telco Root CA", key=rsa_key(3), now=issued - dt.timedelta(days=30))
    impostor = pki.create_ca("operator", "Example Telco Root CA", key=rsa_key(4), now=issued - dt.timedelta(days=30))
    device = pki.issue_device_certificate(manufacturer, rsa_key(10).public_key(), MAC, REALM, now=issued)
    provisioned = pki.issue_operator_certificate(operator, device, REALM, phone_numbers=[PHONE], now=issued)
    kdc = pki.issue_kdc_certificate(operator, rsa_key(11).public_key(), REALM, hostname="kdc.example.test", now=issued)
    kdc_ec = pki.issue_kdc_certificate(operator, ec_key(1).public_key(), REALM, now=issued)
    service = pki.issue_service_certificate(operator, rsa_key(12).public_key(), "sc", "sc1.example.test", REALM, now=issued)
    return World(
        manufacturer, operator, rogue, impostor, rsa_key(10), device, provisioned, rsa_key(11), kdc, ec_key(1), kdc_ec, service
    )


_DEFAULT = object()


def build(
    issuer: pki.CertificateAuthority | None,
    *,
    key=None,
    subject_cn: str = "cta-001122aabbcc",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    ca: bool | None = False,
    path_length: int | None = None,
    key_usage: dict | None | object = _DEFAULT,
    eku: list[x509.ObjectIdentifier] | None = (OID_KP_CLIENT_AUTH,),
    principals: list[Principal] | None = (CTA_PRINCIPAL,),
    raw_san_value: bytes | None = None,
    mac_ext: bytes | None = None,
    phone_ids_ext: bytes | None = None,
    role: pki.Role | None = None,
    extra: list[tuple[x509.ExtensionType, bool]] = (),
    aki: bool = True,
    pss: bool = False,
) -> tuple[x509.Certificate, object]:
    """One certificate with exactly the given contents; returns (certificate, its private key).

    issuer=None makes it self-signed. `key_usage` is a dict of KeyUsage flags set True (default:
    digitalSignature+keyEncipherment for leaves, keyCertSign+cRLSign for CAs; None: no extension).
    `mac_ext` / `phone_ids_ext` are raw extension values (DER or deliberately not).
    """
    key = key or rsa_key(20)
    not_before = not_before or NOW - dt.timedelta(days=1)
    not_after = not_after or NOW + dt.timedelta(days=30)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    issuer_name = issuer.certificate.subject if issuer else subject
    signing_key = issuer.private_key if issuer else key
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if aki:
        source = issuer.certificate.public_key() if issuer else key.public_key()
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(source), critical=False)
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
    if key_usage is _DEFAULT:
        key_usage = {"key_cert_sign": True, "crl_sign": True} if ca else {"digital_signature": True, "key_encipherment": True}
    if key_usage is not None:
        flags = dict.fromkeys(
            ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"],
            False,
        )
        flags.update(key_usage)
        b = b.add_extension(x509.KeyUsage(**flags), critical=True)
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    names: list[x509.GeneralName] = []
    if principals:
        names += [pki.pkinit_san(p) for p in principals]
    if raw_san_value is not None:
        names.append(x509.OtherName(x509.ObjectIdentifier(oids.ID_PKINIT_SAN), raw_san_value))
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if mac_ext is not None:
        b = b.add_extension(x509.UnrecognizedExtension(OID_MAC, mac_ext), critical=False)
    if phone_ids_ext is not None:
        b = b.add_extension(x509.UnrecognizedExtension(OID_PHONE_IDS, phone_ids_ext), critical=False)
    if role is not None:
        b = b.add_extension(x509.CertificatePolicies([x509.PolicyInformation(role.policy_oid, None)]), critical=False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    if pss and isinstance(signing_key, rsa.RSAPrivateKey):
        cert = b.sign(signing_key, hashes.SHA256(), rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), 32))
    else:
        cert = b.sign(signing_key, hashes.SHA256())
    return cert, key


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def tamper(cert: x509.Certificate, old: bytes, new: bytes) -> x509.Certificate:
    """The certificate with the first `old` in its DER replaced by `new` (same length)."""
    assert len(old) == len(new)
    data = der(cert)
    assert old in data
    return x509.load_der_x509_certificate(data.replace(old, new, 1))


def flip_last_signature_byte(cert: x509.Certificate) -> x509.Certificate:
    data = bytearray(der(cert))
    data[-1] ^= 0x01  # the signature BIT STRING is the last element of the DER
    return x509.load_der_x509_certificate(bytes(data))


# --- the factories themselves ---------------------------------------------------------------


def test_world_is_consistent():
    w = world()
    assert w.device.public_key() == w.provisioned.public_key()
    assert w.device.issuer == w.manufacturer.certificate.subject
    assert w.provisioned.issuer == w.operator.certificate.subject
    assert w.impostor.certificate.subject == w.operator.certificate.subject


def test_build_makes_exactly_what_is_asked():
    cert, _ = build(world().operator, eku=None, key_usage=None, ca=None, principals=None, aki=False)
    oids_present = {e.oid for e in cert.extensions}
    assert oids_present == {x509.oid.ExtensionOID.SUBJECT_KEY_IDENTIFIER}
