"""kerbtel's authorization-data elements (docs/protocol.md, "Restricted tickets" and "Authorized
phone IDs"): the restriction of unprovisioned CTAs and the phone IDs a ticket was honoured for.

The KDC puts them into tickets (kdcd/as_exchange.py, kdcd/tgs.py); signaling controllers read
them (the restriction to refuse calls to any other number, the phone IDs to check the numbers a
CTA registers), so they live in the shared codec.

A CTA that authenticates with its manufacturer (factory) certificate gets a ticket that names the
only numbers it may call: the customer-service (CSR) numbers and the emergency numbers of the
KDC policy. The element travels in the ticket's authorization-data inside AD-IF-RELEVANT:

    AuthorizationData ::= { AD-IF-RELEVANT { { ad-type = -27508, ad-data = DER(KerbtelRestrictions) } } }

    KerbtelRestrictions ::= SEQUENCE {
        version       [0] INTEGER (1),
        destinations  [1] SEQUENCE OF KerbtelDestination,  -- the ONLY numbers the CTA may call
        device-mac    [2] OCTET STRING (SIZE (6)) OPTIONAL, -- from the manufacturer certificate
        ...
    }
    KerbtelDestination ::= SEQUENCE {
        number  [0] KerberosString,   -- dial string as configured ("911", "+18005550100")
        kind    [1] Int32,            -- 1 customer service (CSR), 2 emergency
        ...
    }

ad-type -27508 (-0x6B74, "kt") is in the range RFC 4120 7.5.4 reserves for local use (negative
values). The TGS copies the TGT's authorization-data into every ticket it issues, so the
restriction follows the CTA through a TGT. The signaling controller must understand it: a ticket
carrying it is a restricted ticket, and calls to any other number are refused.

A CTA that authenticates with an *operator-issued* certificate is honoured only if one of the
certificate's phone IDs belongs to an active customer; its ticket records which ones did:

    AuthorizationData ::= { AD-IF-RELEVANT { { ad-type = -27507, ad-data = DER(KerbtelAuthorizedPhoneIds) } } }

    KerbtelAuthorizedPhoneIds ::= SEQUENCE {
        version    [0] INTEGER (1),
        phone-ids  [1] SEQUENCE SIZE (1..MAX) OF OCTET STRING (SIZE (20)),
                        -- SHA-1 phone IDs (common.pki.phone_id) of the certificate that belonged to
                        -- an active customer when the ticket was issued, in certificate order
        ...
    }

ad-type -27507 (-0x6B73) is the next local-use value. The TGS looks the phone IDs up again on
every request (and renewal): none held by an active customer any more -> KDC_ERR_CLIENT_REVOKED;
otherwise the ticket it issues lists the ones still active (never more than it was given).

Both elements are *KDC-issued*: a ticket carries them only because the KDC put them there. The
TGS drops client-supplied enc-authorization-data elements of these ad-types (as MIT drops its
own KDC-issued types), and a service must read them only from the decrypted ticket, never from
an authenticator.
"""

from __future__ import annotations

from asn1crypto import core

from common.asn1 import Asn1DecodeError, AuthorizationDataType, decode_as
from common.asn1.krb5 import AD_IF_RELEVANT, AuthorizationData
from common.asn1.types import Int32, KerberosString

__all__ = [
    "AD_KERBTEL_PHONE_IDS",
    "AD_KERBTEL_RESTRICTIONS",
    "DESTINATION_CSR",
    "DESTINATION_EMERGENCY",
    "KDC_ISSUED_AD_TYPES",
    "KerbtelAuthorizedPhoneIds",
    "KerbtelDestination",
    "KerbtelRestrictions",
    "find_authorized_phone_ids",
    "find_restrictions",
    "holds_kdc_issued",
    "phone_ids_authorization_data",
    "phone_ids_authorization_data_der",
    "replace_authorized_phone_ids",
    "restriction_authorization_data",
]

AD_KERBTEL_RESTRICTIONS = -27508
AD_KERBTEL_PHONE_IDS = -27507
KDC_ISSUED_AD_TYPES = frozenset({AD_KERBTEL_RESTRICTIONS, AD_KERBTEL_PHONE_IDS})
PHONE_ID_LENGTH = 20  # SHA-1
DESTINATION_CSR = 1
DESTINATION_EMERGENCY = 2


class KerbtelDestination(core.Sequence):
    _extensible = True
    _fields = [
        ("number", KerberosString, {"explicit": 0}),
        ("kind", Int32, {"explicit": 1}),
    ]


class SequenceOfKerbtelDestination(core.SequenceOf):
    _child_spec = KerbtelDestination


class KerbtelRestrictions(core.Sequence):
    _extensible = True
    _fields = [
        ("version", core.Integer, {"explicit": 0}),
        ("destinations", SequenceOfKerbtelDestination, {"explicit": 1}),
        ("device-mac", core.OctetString, {"explicit": 2, "optional": True}),
    ]


def restriction_authorization_data(
    csr_numbers: tuple[str, ...], emergency_numbers: tuple[str, ...], mac: bytes | None = None
) -> AuthorizationData:
    """The ticket authorization-data for an unprovisioned CTA."""
    destinations = [{"number": n, "kind": DESTINATION_CSR} for n in csr_numbers]
    destinations += [{"number": n, "kind": DESTINATION_EMERGENCY} for n in emergency_numbers]
    value = {"version": 1, "destinations": destinations}
    if mac is not None:
        value["device-mac"] = mac
    element = KerbtelRestrictions(value).dump()
    inner = AD_IF_RELEVANT([{"ad-type": AD_KERBTEL_RESTRICTIONS, "ad-data": element}]).dump()
    return AuthorizationData([{"ad-type": AuthorizationDataType.AD_IF_RELEVANT, "ad-data": inner}])


def find_restrictions(authorization_data: AuthorizationData | None) -> KerbtelRestrictions | None:
    """The KerbtelRestrictions in a ticket's authorization-data (looking inside AD-IF-RELEVANT),
    None when the ticket is unrestricted. Asn1DecodeError if the element is malformed."""
    if authorization_data is None or authorization_data.native is None:
        return None
    for entry in authorization_data:
        ad_type = entry["ad-type"].native
        if ad_type == AD_KERBTEL_RESTRICTIONS:
            return decode_as(KerbtelRestrictions, entry["ad-data"].native)
        if ad_type == AuthorizationDataType.AD_IF_RELEVANT:
            found = find_restrictions(decode_as(AD_IF_RELEVANT, entry["ad-data"].native))
            if found is not None:
                return found
    return None


# --- authorized phone IDs ------------------------------------------------------------------


class SequenceOfPhoneId(core.SequenceOf):
    _child_spec = core.OctetString


class KerbtelAuthorizedPhoneIds(core.Sequence):
    _extensible = True
    _fields = [
        ("version", core.Integer, {"explicit": 0}),
        ("phone-ids", SequenceOfPhoneId, {"explicit": 1}),
    ]


def _check_phone_ids(phone_ids) -> tuple[bytes, ...]:
    ids = tuple(bytes(p) for p in phone_ids)
    if not ids:
        raise ValueError("KerbtelAuthorizedPhoneIds: phone-ids is empty")
    for p in ids:
        if len(p) != PHONE_ID_LENGTH:
            raise ValueError(f"KerbtelAuthorizedPhoneIds: a phone ID is {PHONE_ID_LENGTH} bytes (SHA-1), not {len(p)}")
    return ids


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _ad_entry(ad_type: int, ad_data: bytes) -> bytes:
    """DER AuthorizationData entry: SEQUENCE { [0] Int32, [1] OCTET STRING }."""
    value = ad_type.to_bytes((ad_type + (ad_type < 0)).bit_length() // 8 + 1, "big", signed=True)
    return _tlv(0x30, _tlv(0xA0, _tlv(0x02, value)) + _tlv(0xA1, _tlv(0x04, ad_data)))


def phone_ids_authorization_data_der(phone_ids) -> bytes:
    """DER of `phone_ids_authorization_data(phone_ids)`, written directly (the AS hot path:
    asn1crypto takes ~0.1 ms to build it; tests check the bytes are the same)."""
    ids = _check_phone_ids(phone_ids)
    element = _tlv(0x30, _tlv(0xA0, b"\x02\x01\x01") + _tlv(0xA1, _tlv(0x30, b"".join(_tlv(0x04, p) for p in ids))))
    inner = _tlv(0x30, _ad_entry(AD_KERBTEL_PHONE_IDS, element))
    return _tlv(0x30, _ad_entry(AuthorizationDataType.AD_IF_RELEVANT, inner))


def phone_ids_authorization_data(phone_ids) -> AuthorizationData:
    """The ticket authorization-data naming the phone IDs (20-byte SHA-1 values, at least one)
    a provisioned CTA's certificate was honoured for. ValueError for an empty or malformed list."""
    return AuthorizationData.load(phone_ids_authorization_data_der(phone_ids))


def find_authorized_phone_ids(authorization_data: AuthorizationData | None) -> tuple[bytes, ...] | None:
    """The phone IDs of the KerbtelAuthorizedPhoneIds element in a ticket's authorization-data
    (looking inside AD-IF-RELEVANT), None when the ticket has none. Asn1DecodeError if the element
    is malformed (wrong version, empty list, a phone ID that is not 20 bytes)."""
    if authorization_data is None or authorization_data.native is None:
        return None
    for entry in authorization_data:
        ad_type = entry["ad-type"].native
        if ad_type == AD_KERBTEL_PHONE_IDS:
            value = decode_as(KerbtelAuthorizedPhoneIds, entry["ad-data"].native)
            if value["version"].native != 1:
                raise Asn1DecodeError(f"KerbtelAuthorizedPhoneIds: version {value['version'].native} is not 1")
            try:
                return _check_phone_ids(value["phone-ids"].native)
            except ValueError as exc:
                raise Asn1DecodeError(str(exc)) from None
        if ad_type == AuthorizationDataType.AD_IF_RELEVANT:
            found = find_authorized_phone_ids(decode_as(AD_IF_RELEVANT, entry["ad-data"].native))
            if found is not None:
                return found
    return None


def holds_kdc_issued(entry) -> bool:
    """Whether one AuthorizationData entry is, or contains inside AD-IF-RELEVANT (at any depth), a
    kerbtel KDC-issued element. A container that does not decode counts as holding one (a KDC
    filtering client-supplied authorization-data must not pass what it cannot inspect)."""
    ad_type = entry["ad-type"].native
    if ad_type in KDC_ISSUED_AD_TYPES:
        return True
    if ad_type != AuthorizationDataType.AD_IF_RELEVANT:
        return False
    try:
        inner = decode_as(AD_IF_RELEVANT, entry["ad-data"].native)
    except Asn1DecodeError:
        return True
    return any(holds_kdc_issued(e) for e in inner)


def replace_authorized_phone_ids(authorization_data: AuthorizationData, phone_ids) -> AuthorizationData:
    """A copy of `authorization_data` whose KerbtelAuthorizedPhoneIds element (wherever it sits
    inside AD-IF-RELEVANT) lists `phone_ids` instead; every other element is kept unchanged."""
    element = KerbtelAuthorizedPhoneIds({"version": 1, "phone-ids": list(_check_phone_ids(phone_ids))}).dump()

    def rewrite(entry) -> dict:
        ad_type = entry["ad-type"].native
        if ad_type == AD_KERBTEL_PHONE_IDS:
            return {"ad-type": ad_type, "ad-data": element}
        if ad_type == AuthorizationDataType.AD_IF_RELEVANT:
            inner = decode_as(AD_IF_RELEVANT, entry["ad-data"].native)
            if find_authorized_phone_ids(inner) is not None:
                return {"ad-type": ad_type, "ad-data": AD_IF_RELEVANT([rewrite(e) for e in inner]).dump()}
        return entry.native

    return AuthorizationData([rewrite(e) for e in authorization_data])
