"""CMS (RFC 5652) signing, verification and key-transport enveloping for PKINIT.

Used on both sides of the AS exchange:

- the client signs its AuthPack, the KDC its KDCDHKeyInfo / ReplyKeyPack: `sign_signed_data`;
- the other side checks the signature: `verify_signed_data` -> `VerifiedSignedData`;
- RSA key-transport replies seal the signed ReplyKeyPack to the client: `envelope` /
  `open_envelope`.

Shapes follow what MIT krb5 sends (see ../shared/peers.md): SignedData v3, one SignerInfo v1 with
an issuerAndSerialNumber sid, signedAttrs {contentType, messageDigest}, digest parameters NULL,
RSA PKCS#1 v1.5 labelled sha256WithRSAEncryption; EnvelopedData v0 with one KeyTransRecipientInfo
v0 (issuerAndSerialNumber, rsaEncryption) and des-ede3-cbc content encryption.

This module checks the *signature* only. Whether the signer's certificate is trusted (chain,
validity, EKU, SAN) is `common.pki.CertificateVerifier`'s job; `VerifiedSignedData` hands over
the signer certificate and the other embedded certificates for that.

Every failure is a `CmsError` subclass carrying the KRB-ERROR code a KDC answers with
(`exc.krb_error_code`); a client reports the same codes when the KDC's signature fails.
"""

from __future__ import annotations

import functools
import hmac
import os
from collections.abc import Callable
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as _CryptoUnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding

from common.asn1.constants import ErrorCode

__all__ = [
    "CmsError",
    "ContentTypeMismatch",
    "DecryptionFailed",
    "DigestNotAccepted",
    "InvalidSignature",
    "MalformedCms",
    "SignerNotFound",
    "UnsupportedAlgorithm",
    "VerifiedSignedData",
    "DIGESTS",
    "CIPHERS",
    "content_info",
    "envelope",
    "envelope_der",
    "open_envelope",
    "sign_signed_data",
    "sign_signed_data_der",
    "signer",
    "signed_attributes_der",
    "verify_signed_data",
]


# --- errors --------------------------------------------------------------------------------------


class CmsError(ValueError):
    """A CMS structure failed to verify or open. `krb_error_code` is the KRB-ERROR to answer with."""

    krb_error_code: int = ErrorCode.KDC_ERR_INVALID_SIG


class MalformedCms(CmsError):
    """The SignedData/EnvelopedData is structurally unusable (no signer, several signers, a
    missing or repeated signed attribute, no eContent, ...)."""


class InvalidSignature(CmsError):
    """The signature, or the messageDigest attribute, does not match the content."""


class ContentTypeMismatch(CmsError):
    """eContentType or the signed contentType attribute is not the expected content type."""


class SignerNotFound(CmsError):
    """No embedded (or supplied) certificate matches the SignerInfo's sid."""

    krb_error_code = ErrorCode.KDC_ERR_CANT_VERIFY_CERTIFICATE


class DigestNotAccepted(CmsError):
    """The digest algorithm is unknown or not in the accepted set (MD5, SHA-3, ...)."""

    krb_error_code = ErrorCode.KDC_ERR_DIGEST_IN_SIGNED_DATA_NOT_ACCEPTED


class UnsupportedAlgorithm(CmsError):
    """A signature, key-transport or content-encryption algorithm we do not implement."""


class DecryptionFailed(CmsError):
    """The EnvelopedData does not open with this key. One message for every cause (wrong key,
    bad RSA padding, bad CBC padding), so the error is not a padding oracle."""

    krb_error_code = ErrorCode.KDC_ERR_PREAUTH_FAILED

    def __init__(self) -> None:
        super().__init__("cannot decrypt the EnvelopedData")


# --- algorithms ----------------------------------------------------------------------------------

# asn1crypto digest names -> cryptography hash classes.
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

_RSA_SIGNATURE_NAMES = {
    "sha1": "sha1_rsa",
    "sha224": "sha224_rsa",
    "sha256": "sha256_rsa",
    "sha384": "sha384_rsa",
    "sha512": "sha512_rsa",
}
_ECDSA_SIGNATURE_NAMES = {
    "sha1": "sha1_ecdsa",
    "sha224": "sha224_ecdsa",
    "sha256": "sha256_ecdsa",
    "sha384": "sha384_ecdsa",
    "sha512": "sha512_ecdsa",
}

# cipher name -> (asn1crypto EncryptionAlgorithmId name, key bytes, cryptography algorithm class)
CIPHERS: dict[str, tuple[str, int, type]] = {
    "des-ede3-cbc": ("tripledes_3key", 24, TripleDES),
    "aes128-cbc": ("aes128_cbc", 16, algorithms.AES),
    "aes256-cbc": ("aes256_cbc", 32, algorithms.AES),
}
_CIPHERS_BY_OID_NAME = {asn1_name: (key_len, cls) for asn1_name, key_len, cls in CIPHERS.values()}


def _hash(name: str, accepted: Iterable[str] | None = None) -> hashes.HashAlgorithm:
    if name not in DIGESTS or (accepted is not None and name not in accepted):
        raise DigestNotAccepted(f"digest algorithm {name} is not accepted")
    return DIGESTS[name]()


def _digest(name: str, data: bytes) -> bytes:
    h = hashes.Hash(_hash(name))
    h.update(data)
    return h.finalize()


# --- helpers -------------------------------------------------------------------------------------


def _to_crypto_cert(cert) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, asn1_x509.Certificate):
        return x509.load_der_x509_certificate(cert.dump())
    if isinstance(cert, (bytes, bytearray)):
        return x509.load_der_x509_certificate(bytes(cert))
    raise TypeError(f"not a certificate: {type(cert).__name__}")


def _asn1_cert(cert) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(_to_crypto_cert(cert).public_bytes(Encoding.DER))


def _issuer_and_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    return cms.IssuerAndSerialNumber(
        {"issuer": asn1_x509.Name.load(cert.issuer.public_bytes()), "serial_number": cert.serial_number}
    )


def signed_attributes_der(signed_attrs: cms.CMSAttributes) -> bytes:
    """The bytes a SignerInfo signature covers: signedAttrs re-tagged as a universal SET OF
    (RFC 5652 5.4). For a received value this keeps the sender's encoding of the attributes."""
    encoded = signed_attrs.dump()
    if not encoded or encoded[0] not in (0xA0, 0x31):  # in a SignerInfo, or built standalone
        raise MalformedCms("signedAttrs is not [0] IMPLICIT SET OF Attribute")
    return b"\x31" + encoded[1:]


def content_info(value: cms.SignedData | cms.EnvelopedData) -> cms.ContentInfo:
    """Wrap a SignedData or EnvelopedData in a ContentInfo."""
    kind = "signed_data" if isinstance(value, cms.SignedData) else "enveloped_data"
    return cms.ContentInfo({"content_type": kind, "content": value})


# --- signing -------------------------------------------------------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    """One DER TLV with a low tag number."""
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + body


_OID_CONTENT_TYPE = core.ObjectIdentifier("1.2.840.113549.1.9.3").dump()
_OID_MESSAGE_DIGEST = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()


class _SignerTemplate:
    """The constant parts of a signer's SignedData, DER-encoded once.

    A KDC signs every reply with the same certificate, key and digest; building the SignedData
    with asn1crypto objects costs ~0.5 ms per signature, more than the RSA operation itself.
    The template keeps the encodings of everything that does not change (digestAlgorithms,
    certificates, sid, algorithm identifiers), taken from a SignedData built the slow way, and
    encodes only eContentType, eContent, the signed attributes and the signature per call.
    tests/test_kdc_perf.py checks the result is byte-identical to the slow path."""

    def __init__(self, cert: x509.Certificate, key, digest: str, extra: tuple, include_signer: bool) -> None:
        reference = _build_signed_data(b"", "1.3.6.1.5.2.3.1", cert, key, digest=digest, certificates=extra,
                                       rsa_padding="pkcs1v15", include_signer_certificate=include_signer)
        signer = reference["signer_infos"][0]
        self.key = key
        self.digest = digest
        self.hash = _hash(digest)
        self.digest_algorithms = reference["digest_algorithms"].dump()
        self.certificates = b"" if isinstance(reference["certificates"], core.Void) else reference["certificates"].dump()
        self.signer_head = signer["version"].dump() + signer["sid"].dump() + signer["digest_algorithm"].dump()
        self.signature_algorithm = signer["signature_algorithm"].dump()
        self._oids: dict[str, bytes] = {}

    def sign(self, content: bytes, content_type: str) -> cms.SignedData:
        return cms.SignedData.load(self.sign_der(content, content_type))

    def sign_der(self, content: bytes, content_type: str) -> bytes:
        oid = self._oids.get(content_type)
        if oid is None:
            oid = self._oids[content_type] = core.ObjectIdentifier(content_type).dump()
        attributes = sorted((  # DER: SET OF in ascending order of the encodings
            _der(0x30, _OID_CONTENT_TYPE + _der(0x31, oid)),
            _der(0x30, _OID_MESSAGE_DIGEST + _der(0x31, _der(0x04, _digest(self.digest, content)))),
        ))
        body = b"".join(attributes)
        to_sign = _der(0x31, body)
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(to_sign, padding.PKCS1v15(), self.hash)
        else:
            signature = self.key.sign(to_sign, ec.ECDSA(self.hash))
        signer_info = _der(0x30, self.signer_head + _der(0xA0, body) + self.signature_algorithm + _der(0x04, signature))
        version = b"\x02\x01\x01" if content_type == "1.2.840.113549.1.7.1" else b"\x02\x01\x03"
        encap = _der(0x30, oid + _der(0xA0, _der(0x04, content)))
        return _der(0x30, version + self.digest_algorithms + encap + self.certificates + _der(0x31, signer_info))


@functools.lru_cache(maxsize=64)
def _signer_template(cert: x509.Certificate, key, digest: str, extra: tuple, include_signer: bool) -> _SignerTemplate:
    return _SignerTemplate(cert, key, digest, extra, include_signer)


def sign_signed_data(
    content: bytes,
    content_type: str,
    signer_cert,
    signer_key,
    *,
    digest: str = "sha256",
    certificates: Sequence = (),
    rsa_padding: str = "pkcs1v15",
    include_signer_certificate: bool = True,
) -> cms.SignedData:
    """A SignedData over `content` (the eContent octets) of type `content_type` (dotted OID).

    RSA PKCS#1 v1.5 and ECDSA signatures come from a per-signer template of pre-encoded parts
    (`_SignerTemplate`, cached for the last 64 signers); the result is the same DER.
    """
    if (isinstance(signer_key, ec.EllipticCurvePrivateKey) and digest in _ECDSA_SIGNATURE_NAMES) or (
        isinstance(signer_key, rsa.RSAPrivateKey) and rsa_padding == "pkcs1v15" and digest in _RSA_SIGNATURE_NAMES
    ):
        extra = tuple(_to_crypto_cert(c) for c in certificates)
        template = _signer_template(_to_crypto_cert(signer_cert), signer_key, digest, extra, include_signer_certificate)
        return template.sign(content, content_type)
    return _build_signed_data(content, content_type, signer_cert, signer_key, digest=digest, certificates=certificates,
                              rsa_padding=rsa_padding, include_signer_certificate=include_signer_certificate)


def signer(signer_cert, signer_key, *, digest: str = "sha256", certificates: Sequence = (),
           include_signer_certificate: bool = True):
    """A reusable signer for one certificate and key: `.sign_der(content, content_type)` gives
    the same bytes as `sign_signed_data_der` (RSA PKCS#1 v1.5 or ECDSA keys only). A KDC builds
    it once, at start-up."""
    if not (isinstance(signer_key, ec.EllipticCurvePrivateKey) and digest in _ECDSA_SIGNATURE_NAMES) and not (
        isinstance(signer_key, rsa.RSAPrivateKey) and digest in _RSA_SIGNATURE_NAMES
    ):
        raise UnsupportedAlgorithm(f"no signer template for a {type(signer_key).__name__} with {digest}")
    extra = tuple(_to_crypto_cert(c) for c in certificates)
    return _signer_template(_to_crypto_cert(signer_cert), signer_key, digest, extra, include_signer_certificate)


def sign_signed_data_der(
    content: bytes,
    content_type: str,
    signer_cert,
    signer_key,
    *,
    digest: str = "sha256",
    certificates: Sequence = (),
    include_signer_certificate: bool = True,
) -> bytes:
    """`sign_signed_data(...).dump()` without building an asn1crypto object (the KDC's replies)."""
    if (isinstance(signer_key, ec.EllipticCurvePrivateKey) and digest in _ECDSA_SIGNATURE_NAMES) or (
        isinstance(signer_key, rsa.RSAPrivateKey) and digest in _RSA_SIGNATURE_NAMES
    ):
        extra = tuple(_to_crypto_cert(c) for c in certificates)
        template = _signer_template(_to_crypto_cert(signer_cert), signer_key, digest, extra, include_signer_certificate)
        return template.sign_der(content, content_type)
    return _build_signed_data(content, content_type, signer_cert, signer_key, digest=digest, certificates=certificates,
                              include_signer_certificate=include_signer_certificate).dump()


def _build_signed_data(
    content: bytes,
    content_type: str,
    signer_cert,
    signer_key,
    *,
    digest: str = "sha256",
    certificates: Sequence = (),
    rsa_padding: str = "pkcs1v15",
    include_signer_certificate: bool = True,
) -> cms.SignedData:
    """A SignedData over `content` (the eContent octets) of type `content_type` (dotted OID),
    built field by field with asn1crypto (the reference the template is checked against).

    signedAttrs are {contentType, messageDigest}; the sid is the signer's issuerAndSerialNumber.
    `certificates` are extra certificates to embed after the signer's (intermediates).
    RSA keys sign with PKCS#1 v1.5 (`rsa_padding='pkcs1v15'`, MIT's choice) or RSASSA-PSS
    (`'pss'`, salt = digest length, MGF1 with the same digest); EC keys sign with ECDSA.
    """
    hash_alg = _hash(digest)
    cert = _to_crypto_cert(signer_cert)
    digest_algorithm = algos.DigestAlgorithm({"algorithm": digest, "parameters": core.Null()})

    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": [content_type]}),
            cms.CMSAttribute({"type": "message_digest", "values": [_digest(digest, content)]}),
        ]
    )
    to_sign = signed_attributes_der(signed_attrs)

    if isinstance(signer_key, rsa.RSAPrivateKey):
        if rsa_padding == "pkcs1v15":
            signature = signer_key.sign(to_sign, padding.PKCS1v15(), hash_alg)
            signature_algorithm = algos.SignedDigestAlgorithm(
                {"algorithm": _RSA_SIGNATURE_NAMES[digest], "parameters": core.Null()}
            )
        elif rsa_padding == "pss":
            salt = hash_alg.digest_size
            signature = signer_key.sign(to_sign, padding.PSS(padding.MGF1(hash_alg), salt), hash_alg)
            params = algos.RSASSAPSSParams(
                {
                    "hash_algorithm": {"algorithm": digest, "parameters": core.Null()},
                    "mask_gen_algorithm": {
                        "algorithm": "mgf1",
                        "parameters": {"algorithm": digest, "parameters": core.Null()},
                    },
                    "salt_length": salt,
                }
            )
            signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params})
        else:
            raise ValueError(f"rsa_padding must be 'pkcs1v15' or 'pss', not {rsa_padding!r}")
    elif isinstance(signer_key, ec.EllipticCurvePrivateKey):
        signature = signer_key.sign(to_sign, ec.ECDSA(hash_alg))
        signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": _ECDSA_SIGNATURE_NAMES[digest]})
    else:
        raise UnsupportedAlgorithm(f"cannot sign with a {type(signer_key).__name__}")

    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": _issuer_and_serial(cert)}),
            "digest_algorithm": digest_algorithm,
            "signed_attrs": signed_attrs,
            "signature_algorithm": signature_algorithm,
            "signature": signature,
        }
    )
    embedded = ([cert] if include_signer_certificate else []) + [_to_crypto_cert(c) for c in certificates]
    value = {
        # RFC 5652 5.1: v3 when eContentType is not id-data.
        "version": "v1" if content_type == "1.2.840.113549.1.7.1" else "v3",
        "digest_algorithms": [digest_algorithm],
        "encap_content_info": cms.EncapsulatedContentInfo({"content_type": content_type, "content": content}),
        "signer_infos": [signer_info],
    }
    if embedded:
        value["certificates"] = [cms.CertificateChoices({"certificate": _asn1_cert(c)}) for c in embedded]
    return cms.SignedData(value)


# --- verification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedSignedData:
    """A SignedData whose signature verified. The signer's certificate is *not* yet trusted."""

    content: bytes
    signer_certificate: x509.Certificate
    certificates: list[x509.Certificate] = field(default_factory=list)  # every embedded certificate
    digest_algorithm: str = "sha256"

    @property
    def intermediates(self) -> list[x509.Certificate]:
        """The embedded certificates other than the signer's, for chain building."""
        return [c for c in self.certificates if c != self.signer_certificate]


@dataclass(frozen=True)
class _ParsedCertificate:
    certificate: x509.Certificate
    issuer_der: bytes
    public_key: object


# Parsed embedded certificates by their DER bytes. A PKINIT client sends the same certificate
# with every request; parsing it, its issuer Name and its public key costs more than verifying
# the signature. Equal bytes parse to equal objects, so this cannot change any outcome.
_PARSED_CERTIFICATES: dict[bytes, _ParsedCertificate] = {}
# The same entries by the certificate object's id(): the KDC asks for a parsed certificate's
# public key and issuer on every request, and exporting its DER to find the entry costs more
# than the lookup. An entry counts only if it holds that very object (ids are reused).
_PARSED_BY_OBJECT: dict[int, _ParsedCertificate] = {}
PARSED_CERTIFICATE_CACHE_SIZE = 1024


def _parsed_certificate(der_bytes: bytes) -> _ParsedCertificate:
    entry = _PARSED_CERTIFICATES.get(der_bytes)
    if entry is None:
        cert = x509.load_der_x509_certificate(der_bytes)
        entry = _ParsedCertificate(cert, cert.issuer.public_bytes(), cert.public_key())
        if len(_PARSED_CERTIFICATES) >= PARSED_CERTIFICATE_CACHE_SIZE:
            _PARSED_CERTIFICATES.clear()
            _PARSED_BY_OBJECT.clear()
        _PARSED_CERTIFICATES[der_bytes] = entry
        _PARSED_BY_OBJECT[id(cert)] = entry
    return entry


def _parsed_entry(cert: x509.Certificate) -> _ParsedCertificate:
    """The entry for this certificate object, made on first use (it holds the object, so the
    id cannot be reused while the entry is cached)."""
    entry = _PARSED_BY_OBJECT.get(id(cert))
    if entry is None or entry.certificate is not cert:
        try:
            public_key = cert.public_key()
        except (ValueError, _CryptoUnsupportedAlgorithm):
            public_key = None  # _public_key asks again and raises; the issuer is still usable
        entry = _ParsedCertificate(cert, cert.issuer.public_bytes(), public_key)
        if len(_PARSED_BY_OBJECT) >= PARSED_CERTIFICATE_CACHE_SIZE:
            _PARSED_BY_OBJECT.clear()
        _PARSED_BY_OBJECT[id(cert)] = entry
    return entry


def _embedded_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    found = []
    certs = signed_data["certificates"]
    if isinstance(certs, core.Void):
        return found
    for choice in certs:
        if choice.name != "certificate":
            continue  # attribute certificates and "other" formats cannot sign
        try:
            found.append(_parsed_certificate(choice.chosen.dump()).certificate)
        except ValueError as exc:
            raise MalformedCms(f"embedded certificate does not parse: {exc}") from exc
    return found


def _public_key(cert: x509.Certificate):
    """The certificate's public key, from the parse cache when the certificate came from it."""
    public_key = _parsed_entry(cert).public_key
    return cert.public_key() if public_key is None else public_key


def _issuer_der(cert: x509.Certificate) -> bytes:
    return _parsed_entry(cert).issuer_der


def _subject_key_identifier(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return None


def _find_signer(sid: cms.SignerIdentifier, candidates: Iterable[x509.Certificate]) -> x509.Certificate:
    if sid.name == "issuer_and_serial_number":
        wanted_issuer = sid.chosen["issuer"]
        wanted_serial = sid.chosen["serial_number"].native
        wanted_der = wanted_issuer.dump()
        for cert in candidates:
            if cert.serial_number != wanted_serial:
                continue
            issuer_der = _issuer_der(cert)
            if issuer_der == wanted_der or asn1_x509.Name.load(issuer_der) == wanted_issuer:
                return cert
        raise SignerNotFound(f"no certificate with serial {wanted_serial:#x} from {wanted_issuer.human_friendly}")
    if sid.name == "subject_key_identifier":
        wanted = sid.chosen.native
        for cert in candidates:
            ski = _subject_key_identifier(cert)
            if ski is not None and hmac.compare_digest(ski, wanted):
                return cert
        raise SignerNotFound(f"no certificate with subjectKeyIdentifier {wanted.hex()}")
    raise MalformedCms(f"unknown SignerIdentifier {sid.name}")


def _single_attribute(signed_attrs: cms.CMSAttributes, name: str):
    values = [attr["values"] for attr in signed_attrs if attr["type"].native == name]
    if len(values) != 1 or len(values[0]) != 1:
        raise MalformedCms(f"signedAttrs must hold exactly one {name} attribute with one value")
    return values[0][0]


def _verify_signature(
    public_key, signature_algorithm: algos.SignedDigestAlgorithm, signature: bytes, data: bytes,
    digest: str, accepted_digests,
) -> None:
    algorithm = signature_algorithm["algorithm"].native
    hash_alg = _hash(digest, accepted_digests)
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            if algorithm == "rsassa_pss":
                params = signature_algorithm["parameters"]
                pss_hash = _hash(params["hash_algorithm"]["algorithm"].native, accepted_digests)
                mgf = params["mask_gen_algorithm"]
                if mgf["algorithm"].native != "mgf1":
                    raise UnsupportedAlgorithm(f"PSS mask generation {mgf['algorithm'].native}")
                mgf_hash = _hash(mgf["parameters"]["algorithm"].native, accepted_digests)
                salt = params["salt_length"].native
                public_key.verify(signature, data, padding.PSS(padding.MGF1(mgf_hash), salt), pss_hash)
            elif algorithm in ("rsassa_pkcs1v15", "sha1_rsa", "sha224_rsa", "sha256_rsa", "sha384_rsa", "sha512_rsa"):
                # The digestAlgorithm decides the hash (RFC 5652 5.4), whatever the label says.
                public_key.verify(signature, data, padding.PKCS1v15(), hash_alg)
            else:
                raise UnsupportedAlgorithm(f"signature algorithm {algorithm} with an RSA key")
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            # MIT 1.20 labels ECDSA signatures sha256WithRSAEncryption: dispatch on the key type.
            if algorithm == "rsassa_pss":
                raise UnsupportedAlgorithm("RSASSA-PSS with an EC key")
            public_key.verify(signature, data, ec.ECDSA(hash_alg))
        else:
            raise UnsupportedAlgorithm(f"cannot verify with a {type(public_key).__name__} key")
    except _CryptoInvalidSignature:
        raise InvalidSignature("the SignedData signature does not verify") from None


def verify_signed_data(
    signed_data: cms.SignedData | cms.ContentInfo,
    *,
    expected_content_type: str,
    extra_certificates: Iterable = (),
    accepted_digests: Iterable[str] | None = None,
) -> VerifiedSignedData:
    """Check the one signature on `signed_data` (or a ContentInfo holding one).

    The signer certificate is looked up among the embedded certificates, then
    `extra_certificates` (by issuerAndSerialNumber or subjectKeyIdentifier). Checks: eContentType
    and the contentType attribute equal `expected_content_type`; messageDigest equals the digest of
    eContent (constant time); the signature over the DER SET OF signedAttrs (RSA PKCS#1 v1.5, PSS,
    ECDSA). `accepted_digests` restricts the digests (default: SHA-1, SHA-224/256/384/512).
    Chain validation is not done here.
    """
    try:
        return _verify(signed_data, expected_content_type, extra_certificates, accepted_digests)
    except CmsError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # asn1crypto parses lazily: a malformed inner field surfaces here.
        raise MalformedCms(f"malformed SignedData: {exc}") from exc


def _verify(signed_data, expected_content_type, extra_certificates, accepted_digests) -> VerifiedSignedData:
    if isinstance(signed_data, cms.ContentInfo):
        if signed_data["content_type"].native != "signed_data":
            raise MalformedCms(f"ContentInfo holds {signed_data['content_type'].native}, not signed-data")
        signed_data = signed_data["content"]
    if not isinstance(signed_data, cms.SignedData):
        raise TypeError("verify_signed_data wants a cms.SignedData or cms.ContentInfo")
    accepted = None if accepted_digests is None else frozenset(accepted_digests)

    encap = signed_data["encap_content_info"]
    if encap["content_type"].dotted != expected_content_type:
        raise ContentTypeMismatch(f"eContentType {encap['content_type'].dotted} is not {expected_content_type}")
    if encap["content"].contents is None or isinstance(encap["content"], core.Void):
        raise MalformedCms("SignedData has no eContent (detached signatures are not used in PKINIT)")
    content = bytes(encap["content"].contents)

    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise MalformedCms(f"SignedData has {len(signer_infos)} SignerInfos, PKINIT wants exactly one")
    signer_info = signer_infos[0]

    digest = signer_info["digest_algorithm"]["algorithm"].native
    _hash(digest, accepted)

    certificates = _embedded_certificates(signed_data)
    extra = [_to_crypto_cert(c) for c in extra_certificates]
    signer_cert = _find_signer(signer_info["sid"], certificates + extra)

    signed_attrs = signer_info["signed_attrs"]
    if signed_attrs.contents is None or isinstance(signed_attrs, core.Void) or len(signed_attrs) == 0:
        raise MalformedCms("SignerInfo has no signedAttrs")
    content_type = _single_attribute(signed_attrs, "content_type")
    if content_type.dotted != expected_content_type:
        raise ContentTypeMismatch(f"contentType attribute {content_type.dotted} is not {expected_content_type}")
    message_digest = _single_attribute(signed_attrs, "message_digest").native
    if not hmac.compare_digest(message_digest, _digest(digest, content)):
        raise InvalidSignature("messageDigest does not match the content")

    _verify_signature(
        _public_key(signer_cert),
        signer_info["signature_algorithm"],
        signer_info["signature"].native,
        signed_attributes_der(signed_attrs),
        digest,
        accepted,
    )
    return VerifiedSignedData(
        content=content,
        signer_certificate=signer_cert,
        certificates=certificates,
        digest_algorithm=digest,
    )


# --- key transport -------------------------------------------------------------------------------


def envelope(
    content: bytes,
    recipient_cert,
    *,
    cipher: str = "des-ede3-cbc",
    content_type: str = "1.2.840.113549.1.7.2",
    rng: Callable[[int], bytes] = os.urandom,
) -> cms.ContentInfo:
    """ContentInfo(EnvelopedData v0) sealing `content` to the RSA key in `recipient_cert`.

    `rng` supplies the content-encryption key and IV (injectable like the engines' randomness;
    the PKCS#1 v1.5 padding randomness stays inside `cryptography`).

    One KeyTransRecipientInfo v0 (issuerAndSerialNumber, rsaEncryption PKCS#1 v1.5); the content
    is encrypted with a fresh random key in CBC mode (PKCS#7 padding). `content_type` labels the
    encrypted content: id-signedData by default, as MIT labels the SignedData in encKeyPack.
    """
    return _enveloped_asn1(_seal(content, recipient_cert, cipher, rng), content_type)


def envelope_der(
    content: bytes,
    recipient_cert,
    *,
    cipher: str = "des-ede3-cbc",
    content_type: str = "1.2.840.113549.1.7.2",
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """`envelope(...).dump()` written directly as DER (the KDC's RSA-mode replies)."""
    return _enveloped_der(_seal(content, recipient_cert, cipher, rng), content_type)


@dataclass(frozen=True)
class _Sealed:
    cert: x509.Certificate
    encrypted_key: bytes
    cipher_name: str  # asn1crypto EncryptionAlgorithmId name
    iv: bytes
    encrypted: bytes = field(repr=False)


def _seal(content: bytes, recipient_cert, cipher: str, rng: Callable[[int], bytes]) -> _Sealed:
    if cipher not in CIPHERS:
        raise ValueError(f"cipher must be one of {sorted(CIPHERS)}")
    asn1_name, key_len, cipher_cls = CIPHERS[cipher]
    cert = _to_crypto_cert(recipient_cert)
    public_key = _public_key(cert)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise UnsupportedAlgorithm("key transport needs an RSA recipient key")

    key = rng(key_len)
    block = cipher_cls.block_size // 8
    iv = rng(block)
    pad = block - len(content) % block
    encryptor = Cipher(cipher_cls(key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(content + bytes([pad]) * pad) + encryptor.finalize()
    encrypted_key = public_key.encrypt(key, padding.PKCS1v15())
    return _Sealed(cert, encrypted_key, asn1_name, iv, encrypted)


def _enveloped_asn1(sealed: _Sealed, content_type: str) -> cms.ContentInfo:
    """The reference encoding, built with asn1crypto objects."""
    recipient = cms.KeyTransRecipientInfo(
        {
            "version": "v0",
            "rid": cms.RecipientIdentifier({"issuer_and_serial_number": _issuer_and_serial(sealed.cert)}),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()},
            "encrypted_key": sealed.encrypted_key,
        }
    )
    enveloped = cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [cms.RecipientInfo({"ktri": recipient})],
            "encrypted_content_info": {
                "content_type": content_type,
                "content_encryption_algorithm": {"algorithm": sealed.cipher_name, "parameters": core.OctetString(sealed.iv)},
                "encrypted_content": sealed.encrypted,
            },
        }
    )
    return content_info(enveloped)


def _enveloped_der(sealed: _Sealed, content_type: str) -> bytes:
    """The same bytes as `_enveloped_asn1(...).dump()` (tests/test_asn1_der_cms.py)."""
    from common.asn1 import der  # common.asn1 does not import this module: no cycle

    cert = sealed.cert
    rid = der.seq(_issuer_der(cert), der.integer(cert.serial_number))
    kea = der.seq(der.oid(_OID_RSA_ENCRYPTION), der.null())
    ktri = der.seq(der.integer(0), rid, kea, der.octet_string(sealed.encrypted_key))
    cea = der.seq(der.oid(_CIPHER_OIDS[sealed.cipher_name]), der.octet_string(sealed.iv))
    eci = der.seq(der.oid(content_type), cea, der.context_primitive(0, sealed.encrypted))
    enveloped = der.seq(der.integer(0), der.tlv(0x31, ktri), eci)
    return der.seq(der.oid(_OID_ENVELOPED_DATA), der.explicit(0, enveloped))


_OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_CIPHER_OIDS = {name: oid for oid, name in algos.EncryptionAlgorithmId._map.items() if name in _CIPHERS_BY_OID_NAME}
_OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"


def open_envelope(content_info_or_enveloped, recipient_key, recipient_cert=None) -> bytes:
    """The plaintext content of an EnvelopedData sealed to `recipient_key` (RSA).

    With `recipient_cert`, the KeyTransRecipientInfo whose rid names it is used; otherwise the
    first key-transport recipient. Wrong key, bad RSA padding and bad CBC padding all raise the
    same `DecryptionFailed`; unsupported algorithms or shapes raise `UnsupportedAlgorithm` /
    `MalformedCms`.
    """
    try:
        return _open(content_info_or_enveloped, recipient_key, recipient_cert)
    except CmsError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedCms(f"malformed EnvelopedData: {exc}") from exc


def _open(value, recipient_key, recipient_cert) -> bytes:
    if isinstance(value, cms.ContentInfo):
        if value["content_type"].native != "enveloped_data":
            raise MalformedCms(f"ContentInfo holds {value['content_type'].native}, not enveloped-data")
        value = value["content"]
    if not isinstance(value, cms.EnvelopedData):
        raise TypeError("open_envelope wants a cms.EnvelopedData or cms.ContentInfo")
    if not isinstance(recipient_key, rsa.RSAPrivateKey):
        raise UnsupportedAlgorithm("key transport needs an RSA private key")

    ktris = [ri.chosen for ri in value["recipient_infos"] if ri.name == "ktri"]
    if not ktris:
        raise MalformedCms("EnvelopedData has no KeyTransRecipientInfo")
    recipient = ktris[0]
    if recipient_cert is not None:
        cert = _to_crypto_cert(recipient_cert)
        matching = []
        for ktri in ktris:
            try:
                _find_signer(ktri["rid"], [cert])
            except SignerNotFound:
                continue
            matching.append(ktri)
        if not matching:
            raise SignerNotFound("no KeyTransRecipientInfo names the recipient certificate")
        recipient = matching[0]
    kea = recipient["key_encryption_algorithm"]["algorithm"].native
    if kea not in ("rsaes_pkcs1v15", "rsa"):
        raise UnsupportedAlgorithm(f"key transport algorithm {kea}")

    eci = value["encrypted_content_info"]
    cea = eci["content_encryption_algorithm"]
    cea_name = cea["algorithm"].native
    if cea_name not in _CIPHERS_BY_OID_NAME:
        raise UnsupportedAlgorithm(f"content encryption algorithm {cea_name}")
    key_len, cipher_cls = _CIPHERS_BY_OID_NAME[cea_name]
    block = cipher_cls.block_size // 8
    iv = cea["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != block:
        raise MalformedCms(f"{cea_name} parameters are not a {block}-byte IV")
    encrypted = eci["encrypted_content"].native
    if not encrypted or len(encrypted) % block:
        raise DecryptionFailed()

    # RSA PKCS#1 v1.5: on a padding failure carry on with a random key (implicit rejection,
    # RFC 3218 2.3.2), so both failure paths end in the same CBC-padding check below.
    try:
        key = recipient_key.decrypt(recipient["encrypted_key"].native, padding.PKCS1v15())
    except ValueError:
        key = b""
    valid_key = len(key) == key_len
    if not valid_key:
        key = os.urandom(key_len)
    decryptor = Cipher(cipher_cls(key), modes.CBC(iv)).decryptor()
    plain = decryptor.update(encrypted) + decryptor.finalize()
    pad = plain[-1]
    pad_ok = 1 <= pad <= block
    expected = bytes([pad]) * pad if pad_ok else b"\x01"
    good_pad = hmac.compare_digest(plain[-len(expected):], expected) and pad_ok
    if not (valid_key and good_pad):
        raise DecryptionFailed()
    return plain[:-pad]
