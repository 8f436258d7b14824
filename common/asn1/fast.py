"""RFC 6113 FAST (Flexible Authentication Secure Tunneling) and the pre-authentication framework
types on asn1crypto.

A FAST request carries PA-FX-FAST (136) whose padata-value is a PA-FX-FAST-REQUEST; the KDC's
reply (or KRB-ERROR e-data, as METHOD-DATA) carries PA-FX-FAST with a PA-FX-FAST-REPLY. Keys and
key usages (common.crypto.KeyUsage), RFC 6113 5.4:
- armor key: for AS, from the KrbFastArmor (FX_FAST_ARMOR_AP_REQUEST: an AP-REQ, armor key =
  KRB-FX-CF2(authenticator subkey, ticket session key, "subkeyarmor", "ticketarmor")); for TGS
  with no armor field, the same computation over the PA-TGS-REQ AP-REQ (implicit TGT armor);
- req-checksum: the armor key's required checksum, usage FAST_REQ_CHKSUM (50), over the
  outer KDC-REQ-BODY as received (AS, `KDC_REQ.req_body_bytes()`) or over the PA-TGS-REQ
  padata-value (TGS);
- enc-fast-req: a KrbFastReq under the armor key, usage FAST_ENC (51);
- enc-fast-rep: a KrbFastResponse under the armor key, usage FAST_REP (52);
- the reply key becomes KRB-FX-CF2(strengthen-key, reply key, "strengthenkey", "replykey") when
  strengthen-key is present (it must be for TGS);
- KrbFastFinished.ticket-checksum: over the reply's Ticket, armor key, usage FAST_FINISHED (53).

PA-FX-ERROR (137), RFC 6113 5.4.4: when a FAST request fails, the outer KRB-ERROR's e-data is a
METHOD-DATA holding PA-FX-FAST, whose KrbFastResponse has no strengthen-key and no finished,
echoes the request nonce, and carries the padata the error would have carried (PA-ETYPE-INFO2,
the acceptable mechanisms, PA-FX-COOKIE) plus a PA-FX-ERROR. The PA-FX-ERROR padata-value is the
DER of the real KRB-ERROR, without e-data; the client believes it and the armored padata, not the
unauthenticated outer message. `fx_error(response)` extracts it.

PA-FX-COOKIE (133) is opaque state the KDC sends and the client returns unchanged in its next
request: plain octets, no type here. PA-ENCRYPTED-CHALLENGE (138) is an EncryptedChallenge (an
EncryptedData holding a PA-ENC-TS-ENC, usages ENC_CHALLENGE_CLIENT/KDC 54/55), only inside FAST.

Every SEQUENCE and CHOICE here has an extension marker in RFC 6113: unknown trailing elements of
a SEQUENCE are skipped (`_extensible`); an unknown CHOICE alternative cannot be represented and
is an Asn1DecodeError.
"""

from __future__ import annotations

from asn1crypto import core

from .constants import FastOptions, PaDataType
from .krb5 import (
    KDC_REQ_BODY,
    KRB_ERROR,
    METHOD_DATA,
    Checksum,
    EncryptedData,
    EncryptionKey,
    PrincipalName,
)
from .types import Int32, KerberosFlags, KerberosTime, Microseconds, Realm, UInt32, decode_as

# --- the pre-authentication framework (RFC 6113 5.3, 5.4.6) ----------------------------------


class PA_AUTHENTICATION_SET_ELEM(core.Sequence):
    _extensible = True
    _fields = [
        ("pa-type", Int32, {"explicit": 0}),
        ("pa-hint", core.OctetString, {"explicit": 1, "optional": True}),
        ("pa-value", core.OctetString, {"explicit": 2, "optional": True}),
    ]


class PA_AUTHENTICATION_SET(core.SequenceOf):
    """padata-value of PA-AUTHENTICATION-SET (134)."""

    _child_spec = PA_AUTHENTICATION_SET_ELEM


class EncryptedChallenge(EncryptedData):
    """padata-value of PA-ENCRYPTED-CHALLENGE (138): a PA-ENC-TS-ENC under the challenge key."""


# --- requests (RFC 6113 5.4.1, 5.4.2) --------------------------------------------------------


class FastOptionsBits(KerberosFlags):
    """FastOptions ::= KerberosFlags, always 32 bits, read as constants.FastOptions."""

    _flags = FastOptions


class KrbFastArmor(core.Sequence):
    """armor-type is a constants.FastArmorType; for FX_FAST_ARMOR_AP_REQUEST armor-value is the
    DER of an AP-REQ."""

    _extensible = True
    _fields = [
        ("armor-type", Int32, {"explicit": 0}),
        ("armor-value", core.OctetString, {"explicit": 1}),
    ]


class KrbFastArmoredReq(core.Sequence):
    """armor is present in an AS-REQ and absent in a TGS-REQ (the PA-TGS-REQ is the armor)."""

    _extensible = True
    _fields = [
        ("armor", KrbFastArmor, {"explicit": 0, "optional": True}),
        ("req-checksum", Checksum, {"explicit": 1}),
        ("enc-fast-req", EncryptedData, {"explicit": 2}),  # KrbFastReq
    ]


class PA_FX_FAST_REQUEST(core.Choice):
    """padata-value of PA-FX-FAST (136) in a KDC-REQ."""

    _alternatives = [("armored-data", KrbFastArmoredReq, {"explicit": 0})]


class KrbFastReq(core.Sequence):
    """The decrypted enc-fast-req. Its padata and req-body replace the outer request's; the outer
    ones are only what an observer sees."""

    _extensible = True
    _fields = [
        ("fast-options", FastOptionsBits, {"explicit": 0}),
        ("padata", METHOD_DATA, {"explicit": 1}),
        ("req-body", KDC_REQ_BODY, {"explicit": 2}),
    ]


# --- replies (RFC 6113 5.4.3) ----------------------------------------------------------------


class KrbFastArmoredRep(core.Sequence):
    _extensible = True
    _fields = [("enc-fast-rep", EncryptedData, {"explicit": 0})]  # KrbFastResponse


class PA_FX_FAST_REPLY(core.Choice):
    """padata-value of PA-FX-FAST (136) in a KDC-REP or in KRB-ERROR e-data."""

    _alternatives = [("armored-data", KrbFastArmoredRep, {"explicit": 0})]


class KrbFastFinished(core.Sequence):
    """The client name and realm here are authoritative (hide-client-names hides the outer ones)."""

    _extensible = True
    _fields = [
        ("timestamp", KerberosTime, {"explicit": 0}),
        ("usec", Microseconds, {"explicit": 1}),
        ("crealm", Realm, {"explicit": 2}),
        ("cname", PrincipalName, {"explicit": 3}),
        ("ticket-checksum", Checksum, {"explicit": 4}),
    ]


class KrbFastResponse(core.Sequence):
    """The decrypted enc-fast-rep. strengthen-key must be present in a TGS reply and absent in an
    error; finished is present in AS and TGS replies only."""

    _extensible = True
    _fields = [
        ("padata", METHOD_DATA, {"explicit": 0}),
        ("strengthen-key", EncryptionKey, {"explicit": 1, "optional": True}),
        ("finished", KrbFastFinished, {"explicit": 2, "optional": True}),
        ("nonce", UInt32, {"explicit": 3}),
    ]


def fx_error(response: KrbFastResponse) -> KRB_ERROR | None:
    """The KRB-ERROR in the response's PA-FX-ERROR padata (RFC 6113 5.4.4), None without one.

    RFC 6113 requires its e-data to be absent (the padata is the KrbFastResponse's own); any
    e-data is returned as sent, and callers should ignore it. Asn1DecodeError if the value is
    not exactly one KRB-ERROR.
    """
    for item in response["padata"]:
        if item["padata-type"].native == PaDataType.PA_FX_ERROR:
            return decode_as(KRB_ERROR, item["padata-value"].native)
    return None
