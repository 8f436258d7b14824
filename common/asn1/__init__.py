"""Kerberos (RFC 4120) and PKINIT (RFC 4556, 8636, 8070, 5349) ASN.1 on asn1crypto.

Decoding: `decode(data)` for any APPLICATION-tagged Kerberos message, `decode_as(cls, data)` for
everything else (AuthPack, PA-ENC-TS-ENC, METHOD-DATA, ...). Both parse the whole tree at once,
reject trailing bytes, and raise only `Asn1DecodeError` (a ValueError) naming the bad field.
For decrypted plaintext pass `padded=True`: up to 7 trailing zero bytes (des3-cbc-sha1-kd block
padding) are then accepted and dropped.

Encoding: build from dicts of Python values and call `.dump()`. Decoded values dump back their
received bytes unchanged; `field_bytes(value, name)` is a field's value as received without its
[n] EXPLICIT wrapper (`req.req_body_bytes()` is `field_bytes(req, 'req-body')`, the checksummed
KDC-REQ-BODY). `.dump(force=True)` re-encodes as strict DER, which equals the input for DER input.

RFC 6113 FAST types are in `common.asn1.fast`. The KDC's hot path writes its replies with
`common.asn1.encode` (on the small DER writer `common.asn1.der`), byte-identical to these classes.
"""

from __future__ import annotations

from .constants import (
    AddressType,
    APOptions,
    ApplicationTag,
    AuthorizationDataType,
    ErrorCode,
    FastArmorType,
    FastOptions,
    KDCOptions,
    LastReqType,
    MessageType,
    PaDataType,
    TicketFlags,
    TransitedType,
)
from .krb5 import (
    AP_REP,
    AP_REQ,
    AS_REP,
    AS_REQ,
    KRB_CRED,
    KRB_ERROR,
    KRB_PRIV,
    KRB_SAFE,
    TGS_REP,
    TGS_REQ,
    Authenticator,
    EncAPRepPart,
    EncASRepPart,
    EncKrbCredPart,
    EncKrbPrivPart,
    EncTGSRepPart,
    EncTicketPart,
    Ticket,
    principal_from_asn1,
    principal_to_asn1,
)
from .types import MAX_PLAINTEXT_PADDING, Asn1DecodeError, decode_as, field_bytes

_BY_TAG = {
    ApplicationTag.TICKET: Ticket,
    ApplicationTag.AUTHENTICATOR: Authenticator,
    ApplicationTag.ENC_TICKET_PART: EncTicketPart,
    ApplicationTag.AS_REQ: AS_REQ,
    ApplicationTag.AS_REP: AS_REP,
    ApplicationTag.TGS_REQ: TGS_REQ,
    ApplicationTag.TGS_REP: TGS_REP,
    ApplicationTag.AP_REQ: AP_REQ,
    ApplicationTag.AP_REP: AP_REP,
    ApplicationTag.KRB_SAFE: KRB_SAFE,
    ApplicationTag.KRB_PRIV: KRB_PRIV,
    ApplicationTag.KRB_CRED: KRB_CRED,
    ApplicationTag.ENC_AS_REP_PART: EncASRepPart,
    ApplicationTag.ENC_TGS_REP_PART: EncTGSRepPart,
    ApplicationTag.ENC_AP_REP_PART: EncAPRepPart,
    ApplicationTag.ENC_KRB_PRIV_PART: EncKrbPrivPart,
    ApplicationTag.ENC_KRB_CRED_PART: EncKrbCredPart,
    ApplicationTag.KRB_ERROR: KRB_ERROR,
}


def _application_tag(data: bytes) -> int:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Asn1DecodeError(f"expected bytes, got {type(data).__name__}")
    if not data:
        raise Asn1DecodeError("empty message")
    first = data[0]
    # APPLICATION class, constructed, low tag number: 0b011xxxxx with xxxxx < 31.
    if first & 0xE0 != 0x60 or first & 0x1F == 0x1F:
        raise Asn1DecodeError(f"outer identifier octet {first:#04x} is not a constructed APPLICATION tag")
    return first & 0x1F


def decode(data: bytes, *, padded: bool = False):
    """Decode one Kerberos message, dispatching on its outer APPLICATION tag.

    `padded=True` for decrypted plaintext (EncTicketPart, Authenticator, ...): see `decode_as`.
    """
    tag = _application_tag(data)
    cls = _BY_TAG.get(tag)
    if cls is None:
        raise Asn1DecodeError(f"no Kerberos type has outer tag [APPLICATION {tag}]")
    return decode_as(cls, data, padded=padded)


def decode_enc_kdc_rep_part(data: bytes, *, padded: bool = False) -> EncASRepPart | EncTGSRepPart:
    """The decrypted enc-part of an AS-REP or TGS-REP (`padded` as for `decode_as`).

    Either tag is accepted for either reply: RFC 4120 5.4.2 notes that some implementations send
    EncTGSRepPart [APPLICATION 26] in AS-REPs, and MIT's client accepts both.
    """
    tag = _application_tag(data)
    if tag == ApplicationTag.ENC_AS_REP_PART:
        return decode_as(EncASRepPart, data, padded=padded)
    if tag == ApplicationTag.ENC_TGS_REP_PART:
        return decode_as(EncTGSRepPart, data, padded=padded)
    raise Asn1DecodeError(f"outer tag [APPLICATION {tag}] is neither EncASRepPart (25) nor EncTGSRepPart (26)")


__all__ = [
    "APOptions",
    "AddressType",
    "ApplicationTag",
    "Asn1DecodeError",
    "AuthorizationDataType",
    "ErrorCode",
    "FastArmorType",
    "FastOptions",
    "KDCOptions",
    "LastReqType",
    "MAX_PLAINTEXT_PADDING",
    "MessageType",
    "PaDataType",
    "TicketFlags",
    "TransitedType",
    "decode",
    "decode_as",
    "decode_enc_kdc_rep_part",
    "field_bytes",
    "principal_from_asn1",
    "principal_to_asn1",
]
