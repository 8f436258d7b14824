"""Issuing kerbtel certificates: the CA, CTA device, operator-issued CTA, KDC and service profiles.

Every function takes the issuance time `now` (default: the clock, read here and only here) so
tests can make expired and not-yet-valid certificates. notBefore is backdated by
`BACKDATE` (the Kerberos clock skew) so that a peer whose clock is slightly behind accepts a
fresh certificate; notAfter is clamped to the issuing CA's notAfter.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.asn1 import oids
from common.principal import Principal

from .identity import (
    OID_MAC_ADDRESS,
    OID_PHONE_IDS,
    OID_PKINIT_SAN,
    Role,
    cta_principal,
    encode_mac_extension,
    encode_phone_ids_extension,
    format_mac,
    kdc_principal,
    mac_from_certificate,
    phone_id,
    role_from_certificate,
    service_principal,
)

__all__ = [
    "BACKDATE",
    "CertificateAuthority",
    "DEFAULT_DAYS",
    "PrivateKey",
    "PublicKey",
    "RSA_KEY_SIZES",
    "create_ca",
    "generate_key",
    "issue_device_certificate",
    "issue_kdc_certificate",
    "issue_operator_certificate",
    "issue_service_certificate",
    "pkinit_san",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

RSA_KEY_SIZES = (2048, 3072, 4096)
RSA_PUBLIC_EXPONENT = 65537
BACKDATE = _dt.timedelta(minutes=5)

# Default lifetimes in days, per profile.
DEFAULT_DAYS = {
    "manufacturer-ca": 30 * 365 + 8,  # outlives every device it certifies
    "operator-ca": 20 * 365 + 5,
    "device": 20 * 365 + 5,  # "valid for the lifetime of the CTA"
    "operator-cta": 365,
    "kdc": 365,
    "service": 365,
}

OID_KP_CLIENT_AUTH = x509.ObjectIdentifier(oids.ID_PKINIT_KPCLIENTAUTH)
OID_KP_KDC = x509.ObjectIdentifier(oids.ID_PKINIT_KPKDC)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate with its private key (manufacturer or network-operator root)."""

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)

    @property
    def role(self) -> Role | None:
        return role_from_certificate(self.certificate)

    @property
    def name(self) -> str:
        attrs = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else self.certificate.subject.rfc4514_string()


# --- keys ------------------------------------------------------------------------------------


def generate_key(key_type: str = "rsa", bits: int = 2048) -> PrivateKey:
    """A new RSA key (2048, 3072 or 4096 bits) or EC P-256 key (`key_type='ec'`, bits ignored)."""
    if key_type == "rsa":
        if bits not in RSA_KEY_SIZES:
            raise ValueError(f"RSA key size must be one of {RSA_KEY_SIZES}, not {bits}")
        return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=bits)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key type must be 'rsa' or 'ec', not {key_type!r}")


def _check_public_key(public_key, *, allow_ec: bool, what: str) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise ValueError(f"{what}: RSA keys must be at least 2048 bits, not {public_key.key_size}")
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not allow_ec:
            raise ValueError(f"{what}: must be an RSA key (RSA key transport enciphers to it)")
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise ValueError(f"{what}: the only EC curve allowed is P-256, not {public_key.curve.name}")
        return
    raise ValueError(f"{what}: unsupported public key type {type(public_key).__name__}")


# --- building blocks -------------------------------------------------------------------------


def _now(now: _dt.datetime | None) -> _dt.datetime:
    if now is None:
        return _dt.datetime.now(_dt.timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=_dt.timezone.utc)
    return now


def pkinit_san(principal: Principal) -> x509.OtherName:
    """The subjectAltName entry otherName{id-pkinit-san, KRB5PrincipalName} for `principal`."""
    from common.asn1.pkinit import encode_pkinit_san

    return x509.OtherName(OID_PKINIT_SAN, encode_pkinit_san(principal))


def _serial() -> int:
    # 159 random bits: positive, at most 20 octets in DER (RFC 5280 4.1.2.2), never 0.
    while True:
        serial = x509.random_serial_number()
        if serial:
            return serial


def _policies(role: Role) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(role.policy_oid, None)])


def _key_usage(*, digital_signature=False, key_encipherment=False, key_agreement=False, ca=False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature or ca,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    now: _dt.datetime,
    days: int,
    issuer_not_after: _dt.datetime | None,
) -> x509.CertificateBuilder:
    if days <= 0:
        raise ValueError(f"validity must be at least one day, not {days}")
    not_before = now - BACKDATE
    not_after = now + _dt.timedelta(days=days)
    if issuer_not_after is not None and not_after > issuer_not_after:
        not_after = issuer_not_after
    if not_after <= not_before:
        raise ValueError("the issuing CA has expired (or expires before the new certificate would start)")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(not_before.replace(microsecond=0))
        .not_valid_after(not_after.replace(microsecond=0))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _sign(builder: x509.CertificateBuilder, key: PrivateKey, *, rsa_pss: bool = False) -> x509.Certificate:
    if isinstance(key, rsa.RSAPrivateKey) and rsa_pss:
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return builder.sign(key, hashes.SHA256(), rsa_padding=pss)
    return builder.sign(key, hashes.SHA256())


def _issued_by(builder: x509.CertificateBuilder, ca: CertificateAuthority) -> x509.CertificateBuilder:
    try:
        ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.certificate.public_key())
    return builder.add_extension(aki, critical=False)


def _leaf_constraints(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    return builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)


def _ca_role(ca: CertificateAuthority, expected: Role, what: str) -> Role:
    role = ca.role
    if role is not expected:
        raise ValueError(f"{what} must be issued by a {expected.value} CA; {ca.name!r} is {role.value if role else 'untagged'}")
    return role


# --- profiles --------------------------------------------------------------------------------


def create_ca(
    role: Role | str,
    name: str,
    *,
    key: PrivateKey | None = None,
    key_type: str = "rsa",
    bits: int = 2048,
    days: int | None = None,
    now: _dt.datetime | None = None,
    issuer: CertificateAuthority | None = None,
    path_length: int | None = 0,
) -> CertificateAuthority:
    """A manufacturer or network-operator CA: self-signed root unless `issuer` is given.

    basicConstraints CA:TRUE pathlen:`path_length` (critical), keyUsage keyCertSign+cRLSign+
    digitalSignature (critical), certificatePolicies with the role's policy OID, SKI (and AKI).
    """
    role = Role(role)
    if not name:
        raise ValueError("a CA needs a name")
    now = _now(now)
    if key is None:
        key = generate_key(key_type, bits)
    public_key = key.public_key()
    _check_public_key(public_key, allow_ec=True, what="CA key")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    days = DEFAULT_DAYS[f"{role.value}-ca"] if days is None else days
    issuer_name = issuer.certificate.subject if issuer else subject
    issuer_not_after = issuer.certificate.not_valid_after_utc if issuer else None
    builder = (
        _builder(subject, issuer_name, public_key, now, days, issuer_not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(_policies(role), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        return CertificateAuthority(_sign(builder, key), key)
    if issuer.role is not role:
        raise ValueError(f"a {role.value} CA cannot be issued by {issuer.name!r}")
    return CertificateAuthority(_sign(_issued_by(builder, issuer), issuer.private_key), key)


def issue_device_certificate(
    ca: CertificateAuthority,
    public_key: PublicKey,
    mac: bytes,
    realm: str,
    *,
    days: int | None = None,
    now: _dt.datetime | None = None,
) -> x509.Certificate:
    """The factory certificate of a CTA, signed by the manufacturer CA.

    Subject CN=cta-<mac>; MAC-address extension (non-critical); SAN id-pkinit-san
    cta/<mac>@`realm`; EKU id-pkinit-KPClientAuth; keyUsage digitalSignature+keyEncipherment.
    """
    _ca_role(ca, Role.MANUFACTURER, "a CTA device certificate")
    _check_public_key(public_key, allow_ec=False, what="CTA key")
    now = _now(now)
    days = DEFAULT_DAYS["device"] if days is None else days
    principal = cta_principal(mac, realm)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"cta-{format_mac(mac)}")])
    builder = _builder(subject, ca.certificate.subject, public_key, now, days, ca.certificate.not_valid_after_utc)
    builder = (
        _leaf_constraints(_issued_by(builder, ca))
        .add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([OID_KP_CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([pkinit_san(principal)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(OID_MAC_ADDRESS, encode_mac_extension(mac)), critical=False)
        .add_extension(_policies(Role.MANUFACTURER), critical=False)
    )
    return _sign(builder, ca.private_key)


def issue_operator_certificate(
    ca: CertificateAuthority,
    device_certificate: x509.Certificate,
    realm: str,
    *,
    phone_numbers: Iterable[str] = (),
    phone_ids: Iterable[bytes] = (),
    days: int | None = None,
    now: _dt.datetime | None = None,
) -> x509.Certificate:
    """The network operator's certificate for a provisioned CTA, for the device's own public key.

    The public key and MAC come from the (manufacturer-issued) `device_certificate`, which the
    caller should have verified against the manufacturer anchors first. Phone numbers are hashed
    (`phone_id`) here; pass `phone_ids` instead when only the hashes are known. The numbers
    appear nowhere in the result: subject CN=cta-<mac>, SAN cta/<mac>@`realm`, MAC-address and
    phone-IDs extensions, EKU id-pkinit-KPClientAuth, keyUsage digitalSignature+keyEncipherment.
    """
    _ca_role(ca, Role.OPERATOR, "an operator-issued CTA certificate")
    mac = mac_from_certificate(device_certificate)
    if mac is None:
        raise ValueError("the device certificate has no MAC-address extension")
    public_key = device_certificate.public_key()
    _check_public_key(public_key, allow_ec=False, what="CTA key")
    ids = [phone_id(n) for n in phone_numbers] + [bytes(p) for p in phone_ids]
    ids = list(dict.fromkeys(ids))  # '+1 555...' and '+1555...' are one phone
    if not ids:
        raise ValueError("an operator-issued CTA certificate needs at least one phone number")
    now = _now(now)
    days = DEFAULT_DAYS["operator-cta"] if days is None else days
    principal = cta_principal(mac, realm)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"cta-{format_mac(mac)}")])
    builder = _builder(subject, ca.certificate.subject, public_key, now, days, ca.certificate.not_valid_after_utc)
    builder = (
        _leaf_constraints(_issued_by(builder, ca))
        .add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([OID_KP_CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([pkinit_san(principal)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(OID_MAC_ADDRESS, encode_mac_extension(mac)), critical=False)
        .add_extension(x509.UnrecognizedExtension(OID_PHONE_IDS, encode_phone_ids_extension(ids)), critical=False)
        .add_extension(_policies(Role.OPERATOR), critical=False)
    )
    return _sign(builder, ca.private_key)


def issue_kdc_certificate(
    ca: CertificateAuthority,
    public_key: PublicKey,
    realm: str,
    *,
    hostname: str | None = None,
    days: int | None = None,
    now: _dt.datetime | None = None,
) -> x509.Certificate:
    """The KDC's certificate, signed by the operator CA (MIT krb5's KDC certificate profile).

    EKU id-pkinit-KPKdc; SAN id-pkinit-san krbtgt/REALM@REALM (NT-SRV-INST) plus dNSName
    `hostname` if given; keyUsage digitalSignature+keyEncipherment+keyAgreement for RSA keys,
    digitalSignature+keyAgreement for EC P-256 keys.
    """
    _ca_role(ca, Role.OPERATOR, "a KDC certificate")
    _check_public_key(public_key, allow_ec=True, what="KDC key")
    now = _now(now)
    days = DEFAULT_DAYS["kdc"] if days is None else days
    names: list[x509.GeneralName] = [pkinit_san(kdc_principal(realm))]
    if hostname:
        hostname = hostname.lower().rstrip(".")
        names.append(x509.DNSName(hostname))
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, realm), x509.NameAttribute(NameOID.COMMON_NAME, hostname or "kdc")]
    )
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = _builder(subject, ca.certificate.subject, public_key, now, days, ca.certificate.not_valid_after_utc)
    builder = (
        _leaf_constraints(_issued_by(builder, ca))
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=is_rsa, key_agreement=True), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([OID_KP_KDC]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(_policies(Role.OPERATOR), critical=False)
    )
    return _sign(builder, ca.private_key)


def issue_service_certificate(
    ca: CertificateAuthority,
    public_key: PublicKey,
    service: str,
    hostname: str,
    realm: str,
    *,
    days: int | None = None,
    now: _dt.datetime | None = None,
) -> x509.Certificate:
    """A server certificate (signaling controller: service 'sc'), signed by the operator CA.

    Subject CN=<fqdn>; SAN id-pkinit-san <service>/<fqdn>@REALM (NT-SRV-HST) and dNSName <fqdn>;
    EKU serverAuth+clientAuth; keyUsage digitalSignature (+keyEncipherment for RSA).
    """
    _ca_role(ca, Role.OPERATOR, "a service certificate")
    _check_public_key(public_key, allow_ec=True, what="service key")
    now = _now(now)
    days = DEFAULT_DAYS["service"] if days is None else days
    principal = service_principal(service, hostname, realm)
    fqdn = principal.components[1]
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, realm), x509.NameAttribute(NameOID.COMMON_NAME, fqdn)]
    )
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = _builder(subject, ca.certificate.subject, public_key, now, days, ca.certificate.not_valid_after_utc)
    builder = (
        _leaf_constraints(_issued_by(builder, ca))
        .add_extension(_key_usage(digital_signature=True, key_encipherment=is_rsa), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([pkinit_san(principal), x509.DNSName(fqdn)]), critical=False)
        .add_extension(_policies(Role.OPERATOR), critical=False)
    )
    return _sign(builder, ca.private_key)
