"""RFC 4556 PKINIT on asn1crypto, with RFC 8636 KDFs, RFC 8070 freshness tokens, MS-PKCA
paChecksum2 and RFC 5349 elliptic-curve keys.

The CMS layers are asn1crypto.cms objects:
- signedAuthPack / dhSignedData: DER `ContentInfo{signedData}` inside an IMPLICIT OCTET STRING,
  whose SignedData encapsulates the AuthPack / KDCDHKeyInfo as eContent of type
  id-pkinit-authData / id-pkinit-DHKeyData.
- encKeyPack: DER `ContentInfo{envelopedData}`; the decrypted content is a *bare* SignedData
  (as MIT sends it) encapsulating a ReplyKeyPack as id-pkinit-rkeyData.
Our content-type OIDs are not registered in asn1crypto's global ContentType map: eContent stays
raw octets (`cms.EncapsulatedContentInfo['content']`) and the helpers below check the type and
decode the payload explicitly. That keeps signed-attribute content-type comparisons on dotted
OIDs and leaves asn1crypto's module state alone.

Signing and verifying the SignedData is the KDC's job; this module only encodes and decodes.
"""

from __future__ import annotations

from asn1crypto import algos, cms, core, keys

from common.principal import Principal

from . import der, oids
from .krb5 import Checksum, EncryptionKey, PrincipalName, principal_from_asn1, principal_to_asn1
from .types import Asn1DecodeError, DerOctets, Int32, KerberosTime, Microseconds, Realm, UInt32, decode_as

# --- principals in certificates (RFC 4556 3.2.2) -------------------------------------------------


class KRB5PrincipalName(core.Sequence):
    """The id-pkinit-san otherName value."""

    _fields = [
        ("realm", Realm, {"explicit": 0}),
        ("principalName", PrincipalName, {"explicit": 1}),
    ]

    @classmethod
    def from_principal(cls, principal: Principal) -> KRB5PrincipalName:
        name, realm = principal_to_asn1(principal)
        return cls({"realm": realm, "principalName": name})

    def to_principal(self) -> Principal:
        return principal_from_asn1(self["principalName"], self["realm"])


def encode_pkinit_san(principal: Principal) -> bytes:
    """DER of the KRB5PrincipalName for `principal` (the name-type is encoded as given)."""
    return KRB5PrincipalName.from_principal(principal).dump(force=True)


def decode_pkinit_san(data: bytes) -> Principal:
    """The Principal in a DER KRB5PrincipalName; Asn1DecodeError if malformed or empty."""
    value = decode_as(KRB5PrincipalName, data)
    try:
        return value.to_principal()
    except ValueError as exc:
        raise Asn1DecodeError(f"KRB5PrincipalName.principalName: {exc}") from exc


# --- shared pieces -------------------------------------------------------------------------------


class ContentInfoOctets(DerOctets):
    """IMPLICIT OCTET STRING holding a DER CMS ContentInfo (`.parsed` is a cms.ContentInfo)."""

    _inner = cms.ContentInfo


class ExternalPrincipalIdentifier(core.Sequence):
    _extensible = True  # "..." in RFC 4556
    # Each field holds DER (Name, IssuerAndSerialNumber) or a key id, as RFC 4556 3.2.1 says.
    _fields = [
        ("subjectName", core.OctetString, {"implicit": 0, "optional": True}),
        ("issuerAndSerialNumber", core.OctetString, {"implicit": 1, "optional": True}),
        ("subjectKeyIdentifier", core.OctetString, {"implicit": 2, "optional": True}),
    ]


class SequenceOfExternalPrincipalIdentifier(core.SequenceOf):
    _child_spec = ExternalPrincipalIdentifier


class TD_TRUSTED_CERTIFIERS(SequenceOfExternalPrincipalIdentifier):
    pass


class TD_INVALID_CERTIFICATES(SequenceOfExternalPrincipalIdentifier):
    pass


class AD_INITIAL_VERIFIED_CAS(SequenceOfExternalPrincipalIdentifier):
    pass


class TrustedCA(core.Choice):
    """draft-ietf-cat-kerberos-pk-init-09 TrustedCA (Windows 2000 PA-PK-AS-REQ-Win2k).

    MIT encodes all three alternatives as primitive context tags over DER octets (a PrincipalName,
    a Name, an IssuerAndSerialNumber), so they are IMPLICIT OCTET STRINGs here.
    """

    _alternatives = [
        ("principalName", core.OctetString, {"implicit": 0}),
        ("caName", core.OctetString, {"implicit": 1}),
        ("issuerAndSerial", core.OctetString, {"implicit": 2}),
    ]


class SequenceOfAlgorithmIdentifier(core.SequenceOf):
    _child_spec = algos.AlgorithmIdentifier


class TD_DH_PARAMETERS(core.SequenceOf):
    """Acceptable DH groups: AlgorithmIdentifiers with dhpublicnumber DomainParameters."""

    _child_spec = keys.PublicKeyAlgorithm


class KDFAlgorithmId(core.Sequence):
    """RFC 8636 3."""

    _extensible = True  # "..." in RFC 4556
    _fields = [("kdf-id", core.ObjectIdentifier, {"explicit": 0})]


class SequenceOfKDFAlgorithmId(core.SequenceOf):
    _child_spec = KDFAlgorithmId


# X9.42 DH parameters (RFC 3279 2.3.3) and RFC 5480 EC parameters for clientPublicValue:
# asn1crypto models these already; re-exported under the RFC names.
DomainParameters = keys.DomainParameters
ValidationParms = keys.ValidationParms
ECParameters = keys.ECDomainParameters


class SubjectPublicKeyInfo(keys.PublicKeyInfo):
    """keys.PublicKeyInfo that keeps an unknown algorithm's key as opaque bits instead of
    failing to decode, so the KDC can answer with a PKINIT error rather than a parse error."""

    def _public_key_spec(self):
        try:
            return super()._public_key_spec()
        except KeyError:
            return (core.OctetBitString, None)

    _spec_callbacks = {"public_key": _public_key_spec}


# --- the request (RFC 4556 3.2.1) ----------------------------------------------------------------


class PAChecksum2(core.Sequence):
    """MS-PKCA 2.2.3: checksum over KDC-REQ-BODY with an agile digest algorithm."""

    _fields = [
        ("checksum", core.OctetString, {"explicit": 0}),
        ("algorithmIdentifier", algos.DigestAlgorithm, {"explicit": 1}),
    ]


class PKAuthenticator(core.Sequence):
    _extensible = True  # "..." in RFC 4556
    _fields = [
        ("cusec", Microseconds, {"explicit": 0}),
        ("ctime", KerberosTime, {"explicit": 1}),
        ("nonce", UInt32, {"explicit": 2}),
        ("paChecksum", core.OctetString, {"explicit": 3, "optional": True}),
        ("freshnessToken", core.OctetString, {"explicit": 4, "optional": True}),  # RFC 8070 4
        ("paChecksum2", PAChecksum2, {"explicit": 5, "optional": True}),  # MS-PKCA 2.2.3
    ]


class AuthPack(core.Sequence):
    _extensible = True  # "..." in RFC 4556
    _fields = [
        ("pkAuthenticator", PKAuthenticator, {"explicit": 0}),
        ("clientPublicValue", SubjectPublicKeyInfo, {"explicit": 1, "optional": True}),
        ("supportedCMSTypes", SequenceOfAlgorithmIdentifier, {"explicit": 2, "optional": True}),
        ("clientDHNonce", core.OctetString, {"explicit": 3, "optional": True}),
        ("supportedKDFs", SequenceOfKDFAlgorithmId, {"explicit": 4, "optional": True}),  # RFC 8636
    ]


class PA_PK_AS_REQ(core.Sequence):
    _extensible = True  # "..." in RFC 4556
    _fields = [
        ("signedAuthPack", ContentInfoOctets, {"implicit": 0}),
        ("trustedCertifiers", SequenceOfExternalPrincipalIdentifier, {"explicit": 1, "optional": True}),
        ("kdcPkId", core.OctetString, {"implicit": 2, "optional": True}),
    ]


# --- the reply (RFC 4556 3.2.3) ------------------------------------------------------------------


class DHRepInfo(core.Sequence):
    _extensible = True  # "..." in RFC 4556
    _fields = [
        ("dhSignedData", ContentInfoOctets, {"implicit": 0}),
        ("serverDHNonce", core.OctetString, {"explicit": 1, "optional": True}),
        ("kdf", KDFAlgorithmId, {"explicit": 2, "optional": True}),  # RFC 8636
    ]


class PA_PK_AS_REP(core.Choice):
    _alternatives = [
        ("dhInfo", DHRepInfo, {"explicit": 0}),
        ("encKeyPack", ContentInfoOctets, {"implicit": 1}),
    ]


class KDCDHKeyInfo(core.Sequence):
    """subjectPublicKey is the BIT STRING of a SubjectPublicKeyInfo: for DH the DER INTEGER y
    (`encode_dh_public_value`), for ECDH the raw EC point (RFC 5349)."""

    _fields = [
        ("subjectPublicKey", core.OctetBitString, {"explicit": 0}),
        ("nonce", UInt32, {"explicit": 1}),
        ("dhKeyExpiration", KerberosTime, {"explicit": 2, "optional": True}),
    ]


class ReplyKeyPack(core.Sequence):
    _fields = [
        ("replyKey", EncryptionKey, {"explicit": 0}),
        ("asChecksum", Checksum, {"explicit": 1}),
    ]


# --- Diffie-Hellman public values ----------------------------------------------------------------


def encode_dh_public_value(y: int) -> bytes:
    """The DER INTEGER that goes inside the subjectPublicKey BIT STRING (RFC 3279 2.3.3)."""
    if y <= 0:
        raise ValueError("a DH public value is a positive integer")
    return der.integer(y)


def decode_dh_public_value(data: bytes) -> int:
    """The DH public value y from the BIT STRING contents; Asn1DecodeError if not an INTEGER."""
    y = decode_as(core.Integer, data).native
    if y <= 0:
        raise Asn1DecodeError(f"DH public value: {y} is not a positive integer")
    return y


def dh_value_bytes(value: int, p: int) -> bytes:
    """`value` big-endian, left-padded to the length of the modulus p.

    Shared secrets and public values are hashed and compared at this fixed width (RFC 4556
    3.2.3.1): stripping leading zero bytes breaks one exchange in 256.
    """
    return value.to_bytes((p.bit_length() + 7) // 8, "big")


def dh_client_public_value(p: int, g: int, q: int, y: int) -> SubjectPublicKeyInfo:
    """clientPublicValue for finite-field DH: dhpublicnumber with X9.42 DomainParameters."""
    return SubjectPublicKeyInfo(
        {
            "algorithm": {"algorithm": oids.DHPUBLICNUMBER, "parameters": DomainParameters({"p": p, "g": g, "q": q})},
            "public_key": core.Integer(y),
        }
    )


def ec_client_public_value(curve_oid: str, point: bytes) -> SubjectPublicKeyInfo:
    """clientPublicValue for ECDH (RFC 5349): id-ecPublicKey, namedCurve, uncompressed point."""
    return SubjectPublicKeyInfo(
        {
            "algorithm": {"algorithm": oids.ID_EC_PUBLIC_KEY, "parameters": ECParameters(("named", curve_oid))},
            "public_key": keys.ECPointBitString(point),
        }
    )


# --- CMS wrapping --------------------------------------------------------------------------------


def encap_content_info(payload: core.Asn1Value, content_type: str) -> cms.EncapsulatedContentInfo:
    """The encapContentInfo for a SignedData carrying `payload` (DER) as eContent."""
    return cms.EncapsulatedContentInfo({"content_type": content_type, "content": payload.dump()})


def signed_data_content_info(signed_data: cms.SignedData) -> cms.ContentInfo:
    """ContentInfo{id-signedData}: what signedAuthPack and dhSignedData hold."""
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})


def _signed_data(content_info: cms.ContentInfo, what: str) -> cms.SignedData:
    if content_info["content_type"].dotted != oids.ID_SIGNED_DATA:
        raise Asn1DecodeError(f"{what}: ContentInfo type {content_info['content_type'].dotted} is not id-signedData")
    return content_info["content"]


def _payload(signed_data: cms.SignedData, content_type: str, cls: type, what: str):
    encap = signed_data["encap_content_info"]
    if encap["content_type"].dotted != content_type:
        raise Asn1DecodeError(f"{what}: eContentType {encap['content_type'].dotted} is not {content_type}")
    content = encap["content"]
    if content.contents is None:
        raise Asn1DecodeError(f"{what}: SignedData has no eContent")
    return decode_as(cls, bytes(content))


def unwrap_auth_pack(content_info: cms.ContentInfo) -> tuple[cms.SignedData, AuthPack]:
    """The SignedData (to verify) and the AuthPack from PA-PK-AS-REQ signedAuthPack."""
    signed = _signed_data(content_info, "signedAuthPack")
    return signed, _payload(signed, oids.ID_PKINIT_AUTHDATA, AuthPack, "signedAuthPack")


def unwrap_kdc_dh_key_info(content_info: cms.ContentInfo) -> tuple[cms.SignedData, KDCDHKeyInfo]:
    """The SignedData (to verify) and the KDCDHKeyInfo from DHRepInfo dhSignedData."""
    signed = _signed_data(content_info, "dhSignedData")
    return signed, _payload(signed, oids.ID_PKINIT_DHKEYDATA, KDCDHKeyInfo, "dhSignedData")


def decode_enc_key_pack_content(data: bytes) -> cms.SignedData:
    """The SignedData inside a decrypted encKeyPack.

    MIT sends the SignedData bare, as CMS prescribes for EnvelopedData content; a ContentInfo
    wrapper (seen from some implementations) is accepted too. The two are told apart by the
    first element: a SignedData starts with its INTEGER version, a ContentInfo with an OID.
    """
    if len(data) > 2 and data[0] == 0x30:
        inner_tag_at = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)
        if inner_tag_at < len(data) and data[inner_tag_at] == 0x06:
            return _signed_data(decode_as(cms.ContentInfo, data), "encKeyPack")
    return decode_as(cms.SignedData, data)


def unwrap_reply_key_pack(signed_data: cms.SignedData) -> ReplyKeyPack:
    """The ReplyKeyPack from the (verified) SignedData of an encKeyPack."""
    return _payload(signed_data, oids.ID_PKINIT_RKEYDATA, ReplyKeyPack, "encKeyPack")


# --- RFC 8636 KDF input --------------------------------------------------------------------------


class KdfAlgorithmIdentifier(core.Sequence):
    _fields = [
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class OtherInfo(core.Sequence):
    """RFC 8636 3.1 / SP 800-56A OtherInfo, the 'info' input of the PKINIT KDF."""

    _fields = [
        ("algorithmID", KdfAlgorithmIdentifier),
        ("partyUInfo", core.OctetString, {"explicit": 0}),
        ("partyVInfo", core.OctetString, {"explicit": 1}),
        ("suppPubInfo", core.OctetString, {"explicit": 2, "optional": True}),
        ("suppPrivInfo", core.OctetString, {"explicit": 3, "optional": True}),
    ]


class PkinitSuppPubInfo(core.Sequence):
    _fields = [
        ("enctype", Int32, {"explicit": 0}),
        ("as-REQ", core.OctetString, {"explicit": 1}),
        ("pk-as-rep", core.OctetString, {"explicit": 2}),
    ]


def build_kdf_other_info(
    kdf_oid: str, client: Principal, server: Principal, enctype: int, as_req: bytes, pk_as_rep: bytes
) -> bytes:
    """DER OtherInfo for the RFC 8636 KDF.

    partyUInfo/partyVInfo are the DER KRB5PrincipalNames of client and server with their
    name-types exactly as given (RFC 8636's vectors use NT-PRINCIPAL for krbtgt/SU.SE); as_req is
    the whole AS-REQ and pk_as_rep the PA-PK-AS-REP value, as sent.
    """
    supp = PkinitSuppPubInfo({"enctype": enctype, "as-REQ": as_req, "pk-as-rep": pk_as_rep})
    return OtherInfo(
        {
            "algorithmID": {"algorithm": kdf_oid},
            "partyUInfo": encode_pkinit_san(client),
            "partyVInfo": encode_pkinit_san(server),
            "suppPubInfo": supp.dump(),
        }
    ).dump(force=True)
