"""Identities carried in kerbtel certificates: MAC address, phone IDs, principals, roles.

Encodings (docs/pki.md has the full profiles):

    kerbtel-mac-address  ::= OCTET STRING (SIZE (6))             -- ID_KERBTEL_EXT_MAC_ADDRESS
    kerbtel-phone-ids    ::= SEQUENCE SIZE (1..MAX) OF PhoneID   -- ID_KERBTEL_EXT_PHONE_IDS
    PhoneID              ::= OCTET STRING (SIZE (20))            -- SHA-1(normalised number)

The phone number itself never appears in a certificate; only its SHA-1 does.
"""

from __future__ import annotations

import enum
import hashlib
import re

from asn1crypto import core
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from common.asn1 import oids
from common.principal import NameType, Principal

from .errors import InconsistentIdentity, MalformedCertificate, MalformedExtension, MissingExtension

__all__ = [
    "MAC_LENGTH",
    "PHONE_ID_LENGTH",
    "Role",
    "check_cta_identity",
    "cta_principal",
    "decode_mac_extension",
    "decode_phone_ids_extension",
    "encode_mac_extension",
    "encode_phone_ids_extension",
    "format_mac",
    "kdc_principal",
    "mac_from_certificate",
    "normalise_phone_number",
    "parse_mac",
    "phone_id",
    "phone_ids_from_certificate",
    "principal_from_certificate",
    "principals_from_certificate",
    "role_from_certificate",
    "service_principal",
]

MAC_LENGTH = 6
PHONE_ID_LENGTH = 20  # SHA-1

OID_MAC_ADDRESS = x509.ObjectIdentifier(oids.ID_KERBTEL_EXT_MAC_ADDRESS)
OID_PHONE_IDS = x509.ObjectIdentifier(oids.ID_KERBTEL_EXT_PHONE_IDS)
OID_PKINIT_SAN = x509.ObjectIdentifier(oids.ID_PKINIT_SAN)
OID_POLICY_MANUFACTURER = x509.ObjectIdentifier(oids.ID_KERBTEL_POLICY_MANUFACTURER)
OID_POLICY_OPERATOR = x509.ObjectIdentifier(oids.ID_KERBTEL_POLICY_OPERATOR)

CTA_SERVICE = "cta"
SIGNALING_CONTROLLER_SERVICE = "sc"


class Role(str, enum.Enum):
    """Which kind of CA issued (or is) a certificate; told apart by certificate policy OID."""

    MANUFACTURER = "manufacturer"
    OPERATOR = "operator"

    @property
    def policy_oid(self) -> x509.ObjectIdentifier:
        return OID_POLICY_MANUFACTURER if self is Role.MANUFACTURER else OID_POLICY_OPERATOR


# --- MAC addresses ---------------------------------------------------------------------------

_MAC_SEPARATORS = re.compile(r"[:\-.]")


def parse_mac(text: str) -> bytes:
    """'00:11:22:AA:BB:CC', '00-11-22-aa-bb-cc', '0011.22aa.bbcc' or '001122aabbcc' -> 6 bytes."""
    compact = _MAC_SEPARATORS.sub("", text.strip())
    if len(compact) != 2 * MAC_LENGTH or not re.fullmatch(r"[0-9A-Fa-f]+", compact):
        raise ValueError(f"not a MAC address: {text!r} (expected 12 hex digits, optionally separated)")
    return bytes.fromhex(compact)


def format_mac(mac: bytes) -> str:
    """6 bytes -> 12 lowercase hex digits, the form used in principal names ('001122aabbcc')."""
    if len(mac) != MAC_LENGTH:
        raise ValueError(f"a MAC address is {MAC_LENGTH} bytes, not {len(mac)}")
    return mac.hex()


def encode_mac_extension(mac: bytes) -> bytes:
    """DER of the MAC-address extension value: OCTET STRING (SIZE (6))."""
    if len(mac) != MAC_LENGTH:
        raise ValueError(f"a MAC address is {MAC_LENGTH} bytes, not {len(mac)}")
    return core.OctetString(bytes(mac)).dump()


def decode_mac_extension(der: bytes) -> bytes:
    """Inverse of `encode_mac_extension`; MalformedExtension on anything but exact DER of 6 bytes."""
    try:
        value = core.OctetString.load(der, strict=True)
        mac = value.native
    except (ValueError, TypeError) as exc:
        raise MalformedExtension(f"MAC-address extension is not a DER OCTET STRING: {exc}") from exc
    if not isinstance(mac, bytes) or len(mac) != MAC_LENGTH:
        raise MalformedExtension(f"MAC-address extension holds {len(mac or b'')} bytes, not {MAC_LENGTH}")
    if value.dump(force=True) != der:
        raise MalformedExtension("MAC-address extension is not DER")
    return mac


# --- phone IDs -------------------------------------------------------------------------------

_PHONE_PUNCTUATION = re.compile(r"[\s\-.()/]")
_E164 = re.compile(r"\+[1-9][0-9]{0,14}")


def normalise_phone_number(number: str) -> str:
    """The canonical text hashed into a phone ID: '+' followed by the E.164 digits.

    Spaces (any whitespace), dashes, dots, slashes and parentheses are removed; the result must
    be a leading '+' and 1 to 15 digits, the first not 0 (E.164 country codes never start with 0).
    National numbers without '+' are refused rather than guessed. '+1 (555) 123-0001' and
    '+1-555-123-0001' both normalise to '+15551230001'.
    """
    compact = _PHONE_PUNCTUATION.sub("", number)
    if not _E164.fullmatch(compact):
        # Do not echo the number: it may be unlisted (the point of phone IDs).
        raise ValueError("not an E.164 phone number: expected '+' and up to 15 digits, country code first")
    return compact


def phone_id(number: str) -> bytes:
    """SHA-1 of the ASCII normalised number (`normalise_phone_number`): 20 bytes."""
    return hashlib.sha1(normalise_phone_number(number).encode("ascii")).digest()


class _PhoneIds(core.SequenceOf):
    _child_spec = core.OctetString


def encode_phone_ids_extension(ids: list[bytes] | tuple[bytes, ...]) -> bytes:
    """DER of the phone-IDs extension value: SEQUENCE SIZE (1..MAX) OF OCTET STRING (SIZE (20))."""
    ids = list(ids)
    if not ids:
        raise ValueError("at least one phone ID is required")
    for pid in ids:
        if len(pid) != PHONE_ID_LENGTH:
            raise ValueError(f"a phone ID is {PHONE_ID_LENGTH} bytes (SHA-1), not {len(pid)}")
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate phone ID")
    return _PhoneIds([core.OctetString(bytes(p)) for p in ids]).dump()


def decode_phone_ids_extension(der: bytes) -> tuple[bytes, ...]:
    """Inverse of `encode_phone_ids_extension`; MalformedExtension on any deviation."""
    try:
        value = _PhoneIds.load(der, strict=True)
        ids = tuple(value.native)
    except (ValueError, TypeError) as exc:
        raise MalformedExtension(f"phone-IDs extension is not a DER SEQUENCE OF OCTET STRING: {exc}") from exc
    if not ids:
        raise MalformedExtension("phone-IDs extension is empty")
    for pid in ids:
        if not isinstance(pid, bytes) or len(pid) != PHONE_ID_LENGTH:
            raise MalformedExtension(f"phone-IDs extension holds an entry that is not {PHONE_ID_LENGTH} bytes")
    if len(set(ids)) != len(ids):
        raise MalformedExtension("phone-IDs extension holds a duplicate")
    if value.dump(force=True) != der:
        raise MalformedExtension("phone-IDs extension is not DER")
    return ids


# --- principals ------------------------------------------------------------------------------


def cta_principal(mac: bytes, realm: str) -> Principal:
    """cta/<12 lowercase hex>@REALM, NT-PRINCIPAL: the CTA's name before and after provisioning."""
    return Principal((CTA_SERVICE, format_mac(mac)), realm, NameType.PRINCIPAL)


def kdc_principal(realm: str) -> Principal:
    """krbtgt/REALM@REALM, NT-SRV-INST: the name in a KDC certificate (RFC 4556 3.2.4)."""
    return Principal.krbtgt(realm)


def service_principal(service: str, hostname: str, realm: str) -> Principal:
    """<service>/<fqdn>@REALM, NT-SRV-HST (signaling controllers: service 'sc')."""
    if not service or "/" in service or "@" in service:
        raise ValueError(f"bad service name {service!r}")
    return Principal((service, hostname.lower().rstrip(".")), realm, NameType.SRV_HST)


# --- reading certificates --------------------------------------------------------------------


def _extensions(cert: x509.Certificate) -> x509.Extensions:
    try:
        return cert.extensions
    except (ValueError, x509.DuplicateExtension) as exc:
        raise MalformedCertificate(f"certificate extensions do not parse: {exc}", cert) from exc


def _raw_extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = _extensions(cert).get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - cryptography learnt our OID
        raise MalformedExtension(f"extension {oid.dotted_string} decoded as {type(value).__name__}", cert)
    return value.value


def mac_from_certificate(cert: x509.Certificate) -> bytes | None:
    """The MAC-address extension's 6 bytes, None if absent; MalformedExtension if undecodable."""
    raw = _raw_extension(cert, OID_MAC_ADDRESS)
    if raw is None:
        return None
    try:
        return decode_mac_extension(raw)
    except MalformedExtension as exc:
        exc.certificate = cert
        raise


def phone_ids_from_certificate(cert: x509.Certificate) -> tuple[bytes, ...]:
    """The phone IDs (20-byte SHA-1 values) in the certificate, () if the extension is absent."""
    raw = _raw_extension(cert, OID_PHONE_IDS)
    if raw is None:
        return ()
    try:
        return decode_phone_ids_extension(raw)
    except MalformedExtension as exc:
        exc.certificate = cert
        raise


def principals_from_certificate(cert: x509.Certificate) -> tuple[Principal, ...]:
    """Every id-pkinit-san otherName in subjectAltName, decoded; () without any."""
    from common.asn1.pkinit import decode_pkinit_san

    try:
        san = _extensions(cert).get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    result = []
    for name in san.get_values_for_type(x509.OtherName):
        if name.type_id != OID_PKINIT_SAN:
            continue
        try:
            result.append(decode_pkinit_san(name.value))
        except ValueError as exc:
            raise MalformedExtension(f"id-pkinit-san does not decode as KRB5PrincipalName: {exc}", cert) from exc
    return tuple(result)


def principal_from_certificate(cert: x509.Certificate) -> Principal | None:
    """The single id-pkinit-san principal; None if there is none, MalformedExtension if several."""
    found = principals_from_certificate(cert)
    if len(found) > 1:
        raise MalformedExtension(f"certificate names {len(found)} PKINIT principals; kerbtel issues one", cert)
    return found[0] if found else None


def role_from_certificate(cert: x509.Certificate) -> Role | None:
    """The kerbtel role a certificate's policies claim (a CA's own role, or its issuer's for a leaf).

    This is a label for display and for configuring anchors. It is not proof of anything:
    after verification, the anchor that verified a certificate is what decides its role.
    """
    try:
        policies = _extensions(cert).get_extension_for_oid(ExtensionOID.CERTIFICATE_POLICIES).value
    except x509.ExtensionNotFound:
        return None
    found = {Role.MANUFACTURER: False, Role.OPERATOR: False}
    for info in policies:
        for role in Role:
            if info.policy_identifier == role.policy_oid:
                found[role] = True
    claimed = [role for role, hit in found.items() if hit]
    if len(claimed) > 1:
        raise MalformedExtension("certificate claims both the manufacturer and the operator policy", cert)
    return claimed[0] if claimed else None


def check_cta_identity(cert: x509.Certificate) -> tuple[Principal, bytes | None]:
    """A CTA certificate's principal, checked against its MAC extension when that is present.

    The principal must be cta/<12 lowercase hex digits>@REALM; if the MAC-address extension is
    present it must hold the same 6 bytes (InconsistentIdentity otherwise).
    """
    principal = principal_from_certificate(cert)
    if principal is None:
        raise MissingExtension("CTA certificate has no id-pkinit-san principal", cert)
    comps = principal.components
    if len(comps) != 2 or comps[0] != CTA_SERVICE or not re.fullmatch(r"[0-9a-f]{12}", comps[1]):
        raise MalformedExtension(f"CTA principal {principal} is not cta/<12 lowercase hex digits>@REALM", cert)
    mac = mac_from_certificate(cert)
    if mac is not None and format_mac(mac) != comps[1]:
        raise InconsistentIdentity(
            f"MAC-address extension {format_mac(mac)} does not match principal {principal}", cert
        )
    return principal, mac
