"""The client's signed AuthPack as plain values, read and verified by one of two equivalent paths.

- The fast path (`SignedAuthPackReader.read`): `common.asn1.fastdecode_as.read_pa_pk_as_req`
  reads the PA-PK-AS-REQ in one pass and the CMS checks are done here on its values. It accepts
  only what it knows exactly (strict DER, the usual algorithms) and *only succeeds*: any
  irregular shape and any failed check returns None.
- The reference path (`read_reference`): asn1crypto decoding and `common.cms.verify_signed_data`,
  which also words every refusal. On None the KDC runs it, so a refused request gets exactly
  the error it always got, and an accepted one was checked as strictly as the reference checks.

The CMS checks of the fast path are those of `common.cms.verify_signed_data` for an AuthPack:
ContentInfo signedData, eContentType and the contentType attribute id-pkinit-authData, exactly
one SignerInfo, an accepted digest (SHA-1, SHA-2), the signer certificate among the embedded ones
(issuerAndSerialNumber or subjectKeyIdentifier), messageDigest equal to the content's digest
(constant time), and the signature over the DER SET OF signedAttrs (RSA PKCS#1 v1.5 or ECDSA).
Nothing is cached except parsed certificates (by their DER bytes: equal bytes parse equally).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from common import cms
from common.asn1 import Asn1DecodeError, decode_as, oids
from common.asn1.fastdecode_as import read_pa_pk_as_req
from common.asn1.pkinit import PA_PK_AS_REQ, AuthPack, unwrap_auth_pack

__all__ = ["ClientAuthPack", "MalformedAuthPack", "SignedAuthPackReader", "VerifiedAuthPack", "client_auth_pack", "read_reference"]

# Digests common.cms accepts by default, by OID (names as asn1crypto and common.cms give them).
_DIGESTS = {
    "1.3.14.3.2.26": ("sha1", hashes.SHA1),
    "2.16.840.1.101.3.4.2.4": ("sha224", hashes.SHA224),
    "2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512),
}
# Signature algorithms common.cms verifies with PKCS#1 v1.5 for an RSA key (rsassa_pkcs1v15,
# sha*_rsa); with an EC key it verifies ECDSA whatever the label (MIT labels ECDSA signatures
# sha256WithRSAEncryption), except RSASSA-PSS. The digestAlgorithm decides the hash.
_RSA_PKCS1 = frozenset(
    ("1.2.840.113549.1.1.1", "1.2.840.113549.1.1.5", "1.2.840.113549.1.1.14", "1.2.840.113549.1.1.11",
     "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13")
)
_ECDSA = frozenset(
    ("1.2.840.10045.4.1", "1.2.840.10045.4.3.1", "1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4")
)
PARSED_CERTIFICATE_CACHE_SIZE = 1024


@dataclass(frozen=True)
class ClientAuthPack:
    """The AuthPack's values the KDC uses.

    clientPublicValue: `public_algorithm` is its dotted algorithm OID (None: no clientPublicValue,
    RSA key transport). The fast path gives it read and split (`dh` = (p, g, q, y), `ec` =
    (named-curve OID, point)); the reference path keeps the asn1crypto SubjectPublicKeyInfo in
    `public_value_asn1`, read by the KDC when it answers, as it always was.
    """

    cusec: int
    ctime: datetime
    nonce: int
    pa_checksum: bytes | None
    freshness_token: bytes | None
    pa_checksum2: tuple[str, bytes] | None  # (digest name as asn1crypto names it, checksum)
    public_algorithm: str | None
    kdfs: tuple[str, ...] | None  # dotted OIDs of supportedKDFs
    cms_types: tuple[str, ...] | None  # dotted OIDs of supportedCMSTypes
    client_dh_nonce: bytes | None
    dh: tuple[int, int, int, int] | None = None
    ec: tuple[str, bytes] | None = None
    public_value_asn1: object = None


@dataclass(frozen=True)
class VerifiedAuthPack:
    """A signedAuthPack whose CMS signature verified (the certificate is not yet trusted)."""

    signed: cms.VerifiedSignedData
    thumbprint: bytes  # SHA-256 of the signer certificate's DER
    auth_pack: ClientAuthPack


@dataclass(frozen=True)
class _ParsedCertificate:
    certificate: x509.Certificate
    issuer_der: bytes
    public_key: object
    thumbprint: bytes

    @property
    def subject_key_identifier(self) -> bytes | None:
        try:
            return self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except (x509.ExtensionNotFound, ValueError):
            return None


class SignedAuthPackReader:
    """The fast path, with its parsed-certificate cache (one per KDC engine)."""

    def __init__(self) -> None:
        self._certificates: dict[bytes, _ParsedCertificate] = {}
        self._names: set[bytes] = set()

    def _parsed(self, der: bytes) -> _ParsedCertificate:
        """The certificate parsed by cryptography, after the reference path's own decoding of it
        (asn1crypto, as `decode_as` walks a certificate) succeeded: once per distinct DER.
        ValueError when either refuses it (the reference path then words the error)."""
        entry = self._certificates.get(der)
        if entry is None:
            decode_as(asn1_x509.Certificate, der)  # Asn1DecodeError is a ValueError
            cert = x509.load_der_x509_certificate(der)
            entry = _ParsedCertificate(cert, cert.issuer.public_bytes(), cert.public_key(), hashlib.sha256(der).digest())
            if len(self._certificates) >= PARSED_CERTIFICATE_CACHE_SIZE:
                self._certificates.clear()
            self._certificates[der] = entry
        return entry

    def _name_decodes(self, name_der: bytes) -> bool:
        """The sid's issuer Name decodes as the reference path decodes it (asn1crypto, fully);
        remembered per distinct encoding."""
        if name_der in self._names:
            return True
        try:
            decode_as(asn1_x509.Name, name_der)
        except ValueError:
            return False
        if len(self._names) >= PARSED_CERTIFICATE_CACHE_SIZE:
            self._names.clear()
        self._names.add(name_der)
        return True

    def read(self, pa_value: bytes) -> VerifiedAuthPack | None:
        """The verified AuthPack, or None: use `read_reference` (irregular input or a failed check)."""
        fields = read_pa_pk_as_req(pa_value)
        if fields is None or fields.content_type_attribute != oids.ID_PKINIT_AUTHDATA:
            return None
        digest = _DIGESTS.get(fields.digest_algorithm)
        if digest is None:
            return None
        digest_name, hash_class = digest
        try:
            certificates = [self._parsed(der) for der in fields.certificates]
        except ValueError:
            return None
        signer = None
        if fields.sid_issuer is not None:
            if not self._name_decodes(fields.sid_issuer):
                return None
            for cert in certificates:
                if cert.certificate.serial_number == fields.sid_serial and cert.issuer_der == fields.sid_issuer:
                    signer = cert
                    break
        else:
            for cert in certificates:
                ski = cert.subject_key_identifier
                if ski is not None and hmac.compare_digest(ski, fields.sid_key_id):
                    signer = cert
                    break
        if signer is None:
            return None
        if not hmac.compare_digest(fields.message_digest, hashlib.new(digest_name, fields.content).digest()):
            return None
        key = signer.public_key
        algorithm = fields.signature_algorithm
        try:
            if isinstance(key, rsa.RSAPublicKey) and algorithm in _RSA_PKCS1:
                key.verify(fields.signature, fields.signed_attributes, padding.PKCS1v15(), hash_class())
            elif isinstance(key, ec.EllipticCurvePublicKey) and (algorithm in _RSA_PKCS1 or algorithm in _ECDSA):
                key.verify(fields.signature, fields.signed_attributes, ec.ECDSA(hash_class()))
            else:
                return None
        except (InvalidSignature, ValueError):
            return None
        pack = fields.auth_pack
        checksum2 = None
        if pack.pa_checksum2 is not None:
            oid, value = pack.pa_checksum2
            checksum2 = (algos.DigestAlgorithmId.map(oid), value)
        auth_pack = ClientAuthPack(
            cusec=pack.cusec,
            ctime=pack.ctime,
            nonce=pack.nonce,
            pa_checksum=pack.pa_checksum,
            freshness_token=pack.freshness_token,
            pa_checksum2=checksum2,
            public_algorithm=pack.public_algorithm,
            kdfs=pack.kdfs,
            cms_types=pack.cms_types,
            client_dh_nonce=pack.client_dh_nonce,
            dh=pack.dh,
            ec=pack.ec,
        )
        signed = cms.VerifiedSignedData(
            content=fields.content,
            signer_certificate=signer.certificate,
            certificates=[c.certificate for c in certificates],
            digest_algorithm=digest_name,
        )
        return VerifiedAuthPack(signed, signer.thumbprint, auth_pack)


class MalformedAuthPack(ValueError):
    """The reference path could not read the PA-PK-AS-REQ or its AuthPack (the text says where)."""


def read_reference(pa_value: bytes):
    """Decode the PA-PK-AS-REQ with asn1crypto: (SignedData to verify, AuthPack). Raises
    MalformedAuthPack when it does not decode."""
    try:
        pk_req = decode_as(PA_PK_AS_REQ, pa_value)
        return unwrap_auth_pack(pk_req["signedAuthPack"].parsed)
    except (Asn1DecodeError, ValueError) as exc:
        raise MalformedAuthPack(str(exc)) from None


def client_auth_pack(auth_pack: AuthPack) -> ClientAuthPack:
    """The reference path's values (ValueError from the pkAuthenticator's time, usec or nonce)."""
    authenticator = auth_pack["pkAuthenticator"]
    ctime = authenticator["ctime"].native
    cusec = authenticator["cusec"].native
    nonce = authenticator["nonce"].native
    checksum2 = authenticator["paChecksum2"]
    pa_checksum2 = None
    if checksum2.native is not None:
        pa_checksum2 = (checksum2["algorithmIdentifier"]["algorithm"].native, checksum2["checksum"].native)
    public_value = auth_pack["clientPublicValue"]
    public_algorithm = None
    if public_value.native is not None:
        public_algorithm = public_value["algorithm"]["algorithm"].dotted
    offered_kdfs = auth_pack["supportedKDFs"]
    offered_cms = auth_pack["supportedCMSTypes"]
    return ClientAuthPack(
        cusec=cusec,
        ctime=ctime,
        nonce=nonce,
        pa_checksum=authenticator["paChecksum"].native,
        freshness_token=authenticator["freshnessToken"].native,
        pa_checksum2=pa_checksum2,
        public_algorithm=public_algorithm,
        kdfs=None if offered_kdfs.native is None else tuple(k["kdf-id"].dotted for k in offered_kdfs),
        cms_types=None if offered_cms.native is None else tuple(a["algorithm"].dotted for a in offered_cms),
        client_dh_nonce=auth_pack["clientDHNonce"].native,
        public_value_asn1=public_value if public_algorithm is not None else None,
    )

