"""kerbtel's authorization-data element for unprovisioned CTAs (docs/protocol.md, "Restricted tickets").

The KDC puts it into tickets (kdcd/as_exchange.py); signaling controllers read it to refuse calls
to any other number, so it lives in the shared codec.

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
"""

from __future__ import annotations

from asn1crypto import core

from common.asn1 import AuthorizationDataType, decode_as
from common.asn1.krb5 import AD_IF_RELEVANT, AuthorizationData
from common.asn1.types import Int32, KerberosString

__all__ = [
    "AD_KERBTEL_RESTRICTIONS",
    "DESTINATION_CSR",
    "DESTINATION_EMERGENCY",
    "KerbtelDestination",
    "KerbtelRestrictions",
    "find_restrictions",
    "restriction_authorization_data",
]

AD_KERBTEL_RESTRICTIONS = -27508
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
