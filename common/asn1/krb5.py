"""RFC 4120 section 5 (plus RFC 6806 encrypted-pa-data and MS-KILE PA-PAC-REQUEST) on asn1crypto.

Field names are the RFC's ASN.1 names, so `req['req-body']['till']` reads like the RFC; class
names are the RFC's with '-' turned into '_'. The module uses EXPLICIT tags throughout.
Application-tagged types set `explicit = (1, N)` (class APPLICATION, tag N).

Messages with `pvno`/`msg-type` (or `tkt-vno`, `authenticator-vno`) fill them in when built from
a dict that leaves them out, so callers write only the fields that carry information.
"""

from __future__ import annotations

from asn1crypto import core

from common.crypto.key import Key
from common.principal import Principal

from .constants import MessageType
from .types import (
    APOptionsBits,
    Int32,
    KDCOptionsBits,
    KerberosString,
    KerberosTime,
    Microseconds,
    Realm,
    TicketFlagsBits,
    UInt32,
    decode_as,
    field_bytes,
)

PVNO = 5


class _Defaults:
    """Fills version/msg-type fields missing from a dict value (they carry no information)."""

    _defaults: dict[str, int] = {}

    def __init__(self, value=None, **kwargs):
        if isinstance(value, dict) and self._defaults:
            value = {**self._defaults, **value}
        super().__init__(value, **kwargs)


# --- names and simple structures (RFC 4120 5.2) --------------------------------------------------


class SequenceOfKerberosString(core.SequenceOf):
    _child_spec = KerberosString


class PrincipalName(core.Sequence):
    _fields = [
        ("name-type", Int32, {"explicit": 0}),
        ("name-string", SequenceOfKerberosString, {"explicit": 1}),
    ]


def principal_to_asn1(principal: Principal) -> tuple[PrincipalName, Realm]:
    """The (PrincipalName, Realm) pair RFC 4120 carries a principal as; name-type as given."""
    name = PrincipalName({"name-type": int(principal.name_type), "name-string": list(principal.components)})
    return name, Realm(principal.realm)


def principal_from_asn1(name: PrincipalName, realm: Realm | str) -> Principal:
    """The Principal for a PrincipalName and its realm; the name-type is kept as sent.

    Raises ValueError (common.principal.PrincipalSyntaxError) for an empty name-string.
    """
    realm_text = realm if isinstance(realm, str) else realm.native
    return Principal(tuple(name["name-string"].native), realm_text, int(name["name-type"].native))


class HostAddress(core.Sequence):
    _fields = [
        ("addr-type", Int32, {"explicit": 0}),
        ("address", core.OctetString, {"explicit": 1}),
    ]


class HostAddresses(core.SequenceOf):
    _child_spec = HostAddress


class AuthorizationDataEntry(core.Sequence):
    _fields = [
        ("ad-type", Int32, {"explicit": 0}),
        ("ad-data", core.OctetString, {"explicit": 1}),
    ]


class AuthorizationData(core.SequenceOf):
    _child_spec = AuthorizationDataEntry


class AD_IF_RELEVANT(AuthorizationData):
    pass


class AD_MANDATORY_FOR_KDC(AuthorizationData):
    pass


class PA_DATA(core.Sequence):
    # RFC 4120 numbers these from 1: [0] was the pre-RFC 1510 padata-type.
    _fields = [
        ("padata-type", Int32, {"explicit": 1}),
        ("padata-value", core.OctetString, {"explicit": 2}),
    ]


class METHOD_DATA(core.SequenceOf):
    _child_spec = PA_DATA


class TypedDataEntry(core.Sequence):
    _fields = [
        ("data-type", Int32, {"explicit": 0}),
        ("data-value", core.OctetString, {"explicit": 1, "optional": True}),
    ]


class TYPED_DATA(core.SequenceOf):
    _child_spec = TypedDataEntry


class SequenceOfInt32(core.SequenceOf):
    _child_spec = Int32


class EncryptedData(core.Sequence):
    _fields = [
        ("etype", Int32, {"explicit": 0}),
        ("kvno", UInt32, {"explicit": 1, "optional": True}),
        ("cipher", core.OctetString, {"explicit": 2}),
    ]


class EncryptionKey(core.Sequence):
    _fields = [
        ("keytype", Int32, {"explicit": 0}),
        ("keyvalue", core.OctetString, {"explicit": 1}),
    ]

    @classmethod
    def from_key(cls, key: Key) -> EncryptionKey:
        return cls({"keytype": key.enctype, "keyvalue": key.contents})

    def to_key(self) -> Key:
        return Key(self["keytype"].native, self["keyvalue"].native)


class Checksum(core.Sequence):
    _fields = [
        ("cksumtype", Int32, {"explicit": 0}),
        ("checksum", core.OctetString, {"explicit": 1}),
    ]


class AD_KDCIssued(core.Sequence):
    _fields = [
        ("ad-checksum", Checksum, {"explicit": 0}),
        ("i-realm", Realm, {"explicit": 1, "optional": True}),
        ("i-sname", PrincipalName, {"explicit": 2, "optional": True}),
        ("elements", AuthorizationData, {"explicit": 3}),
    ]


class AD_AND_OR(core.Sequence):
    _fields = [
        ("condition-count", Int32, {"explicit": 0}),
        ("elements", AuthorizationData, {"explicit": 1}),
    ]


class TransitedEncoding(core.Sequence):
    _fields = [
        ("tr-type", Int32, {"explicit": 0}),
        ("contents", core.OctetString, {"explicit": 1}),
    ]


class LastReqEntry(core.Sequence):
    _fields = [
        ("lr-type", Int32, {"explicit": 0}),
        ("lr-value", KerberosTime, {"explicit": 1}),
    ]


class LastReq(core.SequenceOf):
    _child_spec = LastReqEntry


# --- tickets (RFC 4120 5.3) ----------------------------------------------------------------------


class Ticket(_Defaults, core.Sequence):
    explicit = (1, 1)
    _defaults = {"tkt-vno": PVNO}
    _fields = [
        ("tkt-vno", core.Integer, {"explicit": 0}),
        ("realm", Realm, {"explicit": 1}),
        ("sname", PrincipalName, {"explicit": 2}),
        ("enc-part", EncryptedData, {"explicit": 3}),
    ]


class SequenceOfTicket(core.SequenceOf):
    _child_spec = Ticket


class EncTicketPart(core.Sequence):
    explicit = (1, 3)
    _fields = [
        ("flags", TicketFlagsBits, {"explicit": 0}),
        ("key", EncryptionKey, {"explicit": 1}),
        ("crealm", Realm, {"explicit": 2}),
        ("cname", PrincipalName, {"explicit": 3}),
        ("transited", TransitedEncoding, {"explicit": 4}),
        ("authtime", KerberosTime, {"explicit": 5}),
        ("starttime", KerberosTime, {"explicit": 6, "optional": True}),
        ("endtime", KerberosTime, {"explicit": 7}),
        ("renew-till", KerberosTime, {"explicit": 8, "optional": True}),
        ("caddr", HostAddresses, {"explicit": 9, "optional": True}),
        ("authorization-data", AuthorizationData, {"explicit": 10, "optional": True}),
    ]


# --- AS and TGS exchanges (RFC 4120 5.4) ---------------------------------------------------------


class KDC_REQ_BODY(core.Sequence):
    _fields = [
        ("kdc-options", KDCOptionsBits, {"explicit": 0}),
        ("cname", PrincipalName, {"explicit": 1, "optional": True}),
        ("realm", Realm, {"explicit": 2}),
        ("sname", PrincipalName, {"explicit": 3, "optional": True}),
        ("from", KerberosTime, {"explicit": 4, "optional": True}),
        ("till", KerberosTime, {"explicit": 5}),
        ("rtime", KerberosTime, {"explicit": 6, "optional": True}),
        ("nonce", UInt32, {"explicit": 7}),
        ("etype", SequenceOfInt32, {"explicit": 8}),
        ("addresses", HostAddresses, {"explicit": 9, "optional": True}),
        ("enc-authorization-data", EncryptedData, {"explicit": 10, "optional": True}),
        ("additional-tickets", SequenceOfTicket, {"explicit": 11, "optional": True}),
    ]


class KDC_REQ(_Defaults, core.Sequence):
    _fields = [
        ("pvno", core.Integer, {"explicit": 1}),
        ("msg-type", core.Integer, {"explicit": 2}),
        ("padata", METHOD_DATA, {"explicit": 3, "optional": True}),
        ("req-body", KDC_REQ_BODY, {"explicit": 4}),
    ]

    def req_body_bytes(self) -> bytes:
        """The KDC-REQ-BODY exactly as received: the bytes the PA-TGS-REQ authenticator checksum
        and the PKINIT paChecksum/paChecksum2 cover (without the [4] EXPLICIT wrapper that
        `self['req-body'].dump()` includes; see `field_bytes`)."""
        return field_bytes(self, "req-body")


class AS_REQ(KDC_REQ):
    explicit = (1, 10)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.AS_REQ}


class TGS_REQ(KDC_REQ):
    explicit = (1, 12)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.TGS_REQ}


class KDC_REP(_Defaults, core.Sequence):
    _fields = [
        ("pvno", core.Integer, {"explicit": 0}),
        ("msg-type", core.Integer, {"explicit": 1}),
        ("padata", METHOD_DATA, {"explicit": 2, "optional": True}),
        ("crealm", Realm, {"explicit": 3}),
        ("cname", PrincipalName, {"explicit": 4}),
        ("ticket", Ticket, {"explicit": 5}),
        ("enc-part", EncryptedData, {"explicit": 6}),
    ]


class AS_REP(KDC_REP):
    explicit = (1, 11)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.AS_REP}


class TGS_REP(KDC_REP):
    explicit = (1, 13)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.TGS_REP}


class EncKDCRepPart(core.Sequence):
    _fields = [
        ("key", EncryptionKey, {"explicit": 0}),
        ("last-req", LastReq, {"explicit": 1}),
        ("nonce", UInt32, {"explicit": 2}),
        ("key-expiration", KerberosTime, {"explicit": 3, "optional": True}),
        ("flags", TicketFlagsBits, {"explicit": 4}),
        ("authtime", KerberosTime, {"explicit": 5}),
        ("starttime", KerberosTime, {"explicit": 6, "optional": True}),
        ("endtime", KerberosTime, {"explicit": 7}),
        ("renew-till", KerberosTime, {"explicit": 8, "optional": True}),
        ("srealm", Realm, {"explicit": 9}),
        ("sname", PrincipalName, {"explicit": 10}),
        ("caddr", HostAddresses, {"explicit": 11, "optional": True}),
        ("encrypted-pa-data", METHOD_DATA, {"explicit": 12, "optional": True}),  # RFC 6806 11
    ]


class EncASRepPart(EncKDCRepPart):
    explicit = (1, 25)


class EncTGSRepPart(EncKDCRepPart):
    explicit = (1, 26)


# --- client/server authentication (RFC 4120 5.5) -------------------------------------------------


class AP_REQ(_Defaults, core.Sequence):
    explicit = (1, 14)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.AP_REQ}
    _fields = [
        ("pvno", core.Integer, {"explicit": 0}),
        ("msg-type", core.Integer, {"explicit": 1}),
        ("ap-options", APOptionsBits, {"explicit": 2}),
        ("ticket", Ticket, {"explicit": 3}),
        ("authenticator", EncryptedData, {"explicit": 4}),
    ]


class Authenticator(_Defaults, core.Sequence):
    explicit = (1, 2)
    _defaults = {"authenticator-vno": PVNO}
    _fields = [
        ("authenticator-vno", core.Integer, {"explicit": 0}),
        ("crealm", Realm, {"explicit": 1}),
        ("cname", PrincipalName, {"explicit": 2}),
        ("cksum", Checksum, {"explicit": 3, "optional": True}),
        ("cusec", Microseconds, {"explicit": 4}),
        ("ctime", KerberosTime, {"explicit": 5}),
        ("subkey", EncryptionKey, {"explicit": 6, "optional": True}),
        ("seq-number", UInt32, {"explicit": 7, "optional": True}),
        ("authorization-data", AuthorizationData, {"explicit": 8, "optional": True}),
    ]


class AP_REP(_Defaults, core.Sequence):
    explicit = (1, 15)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.AP_REP}
    _fields = [
        ("pvno", core.Integer, {"explicit": 0}),
        ("msg-type", core.Integer, {"explicit": 1}),
        ("enc-part", EncryptedData, {"explicit": 2}),
    ]


class EncAPRepPart(core.Sequence):
    explicit = (1, 27)
    _fields = [
        ("ctime", KerberosTime, {"explicit": 0}),
        ("cusec", Microseconds, {"explicit": 1}),
        ("subkey", EncryptionKey, {"explicit": 2, "optional": True}),
        ("seq-number", UInt32, {"explicit": 3, "optional": True}),
    ]


# --- KRB-SAFE, KRB-PRIV, KRB-CRED (RFC 4120 5.6-5.8) ---------------------------------------------


class KRB_SAFE_BODY(core.Sequence):
    _fields = [
        ("user-data", core.OctetString, {"explicit": 0}),
        ("timestamp", KerberosTime, {"explicit": 1, "optional": True}),
        ("usec", Microseconds, {"explicit": 2, "optional": True}),
        ("seq-number", UInt32, {"explicit": 3, "optional": True}),
        ("s-address", HostAddress, {"explicit": 4}),
        ("r-address", HostAddress, {"explicit": 5, "optional": True}),
    ]


class KRB_SAFE(_Defaults, core.Sequence):
    explicit = (1, 20)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.KRB_SAFE}
    _fields = [
        ("pvno", core.Integer, {"explicit": 0}),
        ("msg-type", core.Integer, {"explicit": 1}),
        ("safe-body", KRB_SAFE_BODY, {"explicit": 2}),
        ("cksum", Checksum, {"explicit": 3}),
    ]


class KRB_PRIV(_Defaults, core.Sequence):
    explicit = (1, 21)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.KRB_PRIV}
    _fields = [
        ("pvno", core.Integer, {"explicit": 0}),
        ("msg-type", core.Integer, {"explicit": 1}),
        ("enc-part", EncryptedData, {"explicit": 3}),  # [2] is unused in RFC 4120
    ]


class EncKrbPrivPart(core.Sequence):
    explicit = (1, 28)
    _fields = [
        ("user-data", core.OctetString, {"explicit": 0}),
        ("timestamp", KerberosTime, {"explicit": 1, "optional": True}),
        ("usec", Microseconds, {"explicit": 2, "optional": True}),
        ("seq-number", UInt32, {"explicit": 3, "optional": True}),
        ("s-address", HostAddress, {"explicit": 4}),
        ("r-address", HostAddress, {"explicit": 5, "optional": True}),
    ]


class KRB_CRED(_Defaults, core.Sequence):
    explicit = (1, 22)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.KRB_CRED}
    _fields = [
        ("pvno", core.Integer, {"explicit": 0}),
        ("msg-type", core.Integer, {"explicit": 1}),
        ("tickets", SequenceOfTicket, {"explicit": 2}),
        ("enc-part", EncryptedData, {"explicit": 3}),
    ]


class KrbCredInfo(core.Sequence):
    _fields = [
        ("key", EncryptionKey, {"explicit": 0}),
        ("prealm", Realm, {"explicit": 1, "optional": True}),
        ("pname", PrincipalName, {"explicit": 2, "optional": True}),
        ("flags", TicketFlagsBits, {"explicit": 3, "optional": True}),
        ("authtime", KerberosTime, {"explicit": 4, "optional": True}),
        ("starttime", KerberosTime, {"explicit": 5, "optional": True}),
        ("endtime", KerberosTime, {"explicit": 6, "optional": True}),
        ("renew-till", KerberosTime, {"explicit": 7, "optional": True}),
        ("srealm", Realm, {"explicit": 8, "optional": True}),
        ("sname", PrincipalName, {"explicit": 9, "optional": True}),
        ("caddr", HostAddresses, {"explicit": 10, "optional": True}),
    ]


class SequenceOfKrbCredInfo(core.SequenceOf):
    _child_spec = KrbCredInfo


class EncKrbCredPart(core.Sequence):
    explicit = (1, 29)
    _fields = [
        ("ticket-info", SequenceOfKrbCredInfo, {"explicit": 0}),
        ("nonce", UInt32, {"explicit": 1, "optional": True}),
        ("timestamp", KerberosTime, {"explicit": 2, "optional": True}),
        ("usec", Microseconds, {"explicit": 3, "optional": True}),
        ("s-address", HostAddress, {"explicit": 4, "optional": True}),
        ("r-address", HostAddress, {"explicit": 5, "optional": True}),
    ]


# --- KRB-ERROR (RFC 4120 5.9) --------------------------------------------------------------------


class KRB_ERROR(_Defaults, core.Sequence):
    """KRB-ERROR. e-data is kept as octets; `method_data()` / `typed_data()` decode the two
    shapes RFC 4120 and RFC 4556 put there (which one depends on the error code)."""

    explicit = (1, 30)
    _defaults = {"pvno": PVNO, "msg-type": MessageType.KRB_ERROR}
    _fields = [
        ("pvno", core.Integer, {"explicit": 0}),
        ("msg-type", core.Integer, {"explicit": 1}),
        ("ctime", KerberosTime, {"explicit": 2, "optional": True}),
        ("cusec", Microseconds, {"explicit": 3, "optional": True}),
        ("stime", KerberosTime, {"explicit": 4}),
        ("susec", Microseconds, {"explicit": 5}),
        ("error-code", Int32, {"explicit": 6}),
        ("crealm", Realm, {"explicit": 7, "optional": True}),
        ("cname", PrincipalName, {"explicit": 8, "optional": True}),
        ("realm", Realm, {"explicit": 9}),
        ("sname", PrincipalName, {"explicit": 10}),
        ("e-text", KerberosString, {"explicit": 11, "optional": True}),
        ("e-data", core.OctetString, {"explicit": 12, "optional": True}),
    ]

    def method_data(self) -> METHOD_DATA | None:
        """e-data as METHOD-DATA (e.g. with KDC_ERR_PREAUTH_REQUIRED); None when absent."""
        return self._e_data(METHOD_DATA)

    def typed_data(self) -> TYPED_DATA | None:
        """e-data as TYPED-DATA (e.g. with the RFC 4556 PKINIT errors); None when absent."""
        return self._e_data(TYPED_DATA)

    def _e_data(self, cls):
        e_data = self["e-data"].native
        return None if e_data is None else decode_as(cls, e_data)


# --- pre-authentication data (RFC 4120 5.2.7, MS-KILE) -------------------------------------------


class PA_ENC_TIMESTAMP(EncryptedData):
    pass


class PA_ENC_TS_ENC(core.Sequence):
    _fields = [
        ("patimestamp", KerberosTime, {"explicit": 0}),
        ("pausec", Microseconds, {"explicit": 1, "optional": True}),
    ]


class ETYPE_INFO_ENTRY(core.Sequence):
    _fields = [
        ("etype", Int32, {"explicit": 0}),
        ("salt", core.OctetString, {"explicit": 1, "optional": True}),
    ]


class ETYPE_INFO(core.SequenceOf):
    _child_spec = ETYPE_INFO_ENTRY


class ETYPE_INFO2_ENTRY(core.Sequence):
    _fields = [
        ("etype", Int32, {"explicit": 0}),
        ("salt", KerberosString, {"explicit": 1, "optional": True}),
        ("s2kparams", core.OctetString, {"explicit": 2, "optional": True}),
    ]


class ETYPE_INFO2(core.SequenceOf):
    _child_spec = ETYPE_INFO2_ENTRY


class PA_PAC_REQUEST(core.Sequence):
    """KERB-PA-PAC-REQUEST (MS-KILE 2.2.3)."""

    _fields = [("include-pac", core.Boolean, {"explicit": 0})]
