"""Verifying kerbtel certificate chains for one purpose at an explicit time.

Sans-I/O: the verifier never reads the clock or the disk. The caller passes `now` (the wall
clock, UTC) and the certificates; the result says which anchor (and so which role: manufacturer
or operator) vouched for the certificate and what identities it carries.

Order of checks, so that each failure has exactly one name:
1. path building from the leaf through the given intermediates to an anchor: issuer name and
   AKI/SKI chaining (UntrustedIssuer), signature algorithm (DigestNotAccepted) and signature
   (BadSignature) of every link;
2. per certificate of the path: validity at `now` (NotYetValid, Expired), unknown critical
   extensions (UnknownCriticalExtension); per issuer: CA-ness (NotACA) and path length
   (PathLengthExceeded);
3. the leaf's purpose: keyUsage (WrongKeyUsage), extendedKeyUsage (MissingExtendedKeyUsage,
   WrongExtendedKeyUsage);
4. identities: MAC address, phone IDs, PKINIT principals (MissingExtension, MalformedExtension,
   InconsistentIdentity), then the expected principal (PrincipalMismatch, KdcNameMismatch).
"""

from __future__ import annotations

import datetime as _dt
import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, SignatureAlgorithmOID

from common.asn1 import oids
from common.principal import Principal

from .errors import (
    BadSignature,
    CertificateError,
    DigestNotAccepted,
    Expired,
    InconsistentIdentity,
    KdcNameMismatch,
    MalformedCertificate,
    MissingExtendedKeyUsage,
    MissingExtension,
    NotACA,
    NotYetValid,
    PathLengthExceeded,
    PrincipalMismatch,
    UnknownCriticalExtension,
    UntrustedIssuer,
    WrongExtendedKeyUsage,
    WrongKeyUsage,
)
from .identity import (
    OID_MAC_ADDRESS,
    OID_PHONE_IDS,
    Role,
    check_cta_identity,
    mac_from_certificate,
    phone_ids_from_certificate,
    principals_from_certificate,
    role_from_certificate,
)

__all__ = ["CertificateVerifier", "Purpose", "TrustAnchor", "VerifiedCertificate", "supersedes", "thumbprint", "verify_chain"]

OID_KP_CLIENT_AUTH = x509.ObjectIdentifier(oids.ID_PKINIT_KPCLIENTAUTH)
OID_KP_KDC = x509.ObjectIdentifier(oids.ID_PKINIT_KPKDC)
OID_MS_SC_LOGON = x509.ObjectIdentifier(oids.ID_MS_KP_SC_LOGON)

# Signature algorithms we accept on certificates; anything else is DigestNotAccepted.
_ACCEPTED_SIGNATURES = {
    SignatureAlgorithmOID.RSA_WITH_SHA256,
    SignatureAlgorithmOID.RSA_WITH_SHA384,
    SignatureAlgorithmOID.RSA_WITH_SHA512,
    SignatureAlgorithmOID.RSASSA_PSS,
    SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512,
}
_ACCEPTED_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)

# Extensions this module processes; any other extension marked critical fails the certificate.
_UNDERSTOOD_EXTENSIONS = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.CERTIFICATE_POLICIES,
    OID_MAC_ADDRESS,
    OID_PHONE_IDS,
}

_DER = Encoding.DER

DEFAULT_MAX_PATH = 4  # certificates between leaf and anchor, at most


def thumbprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER: the key of the KDC's verified-certificate cache."""
    return hashlib.sha256(cert.public_bytes(_DER)).digest()



def supersedes(new: x509.Certificate, old: x509.Certificate) -> bool:
    """True if `new` may replace `old` on a CTA: same public key, strictly later notBefore.

    The seed's replay check for re-provisioning: "the new certificate's starting time is greater
    than the starting time of the old certificate". Verify `new` first; this only compares.
    """
    spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    same_key = new.public_key().public_bytes(*spki) == old.public_key().public_bytes(*spki)
    return same_key and new.not_valid_before_utc > old.not_valid_before_utc


class Purpose(str, enum.Enum):
    """What the leaf certificate is being accepted for."""

    CTA = "cta"  # PKINIT client certificate of a CTA: KPClientAuth, cta/<mac>@REALM
    KDC = "kdc"  # PKINIT KDC certificate: KPKdc, krbtgt/REALM@REALM
    SERVICE = "service"  # server certificate (signaling controller): serverAuth
    CA = "ca"  # a CA certificate itself (checking an anchor or a subordinate CA)
    ANY = "any"  # path and validity only


@dataclass(frozen=True)
class TrustAnchor:
    """A trusted CA certificate and the role it vouches for (default: its policy OID)."""

    certificate: x509.Certificate
    role: Role | None = None

    @classmethod
    def of(cls, anchor: x509.Certificate | TrustAnchor) -> TrustAnchor:
        if isinstance(anchor, TrustAnchor):
            if anchor.role is None:
                return cls(anchor.certificate, role_from_certificate(anchor.certificate))
            return anchor
        return cls(anchor, role_from_certificate(anchor))


@dataclass(frozen=True)
class VerifiedCertificate:
    """The outcome of a successful verification.

    `role` is the verifying anchor's role: MANUFACTURER means an unprovisioned CTA (factory
    certificate), OPERATOR a provisioned one (or a KDC / service of this operator).
    `valid_from`/`valid_until` bound the validity of the whole chain, for caches keyed by
    `thumbprint`.
    """

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # leaf first, anchor last
    anchor: TrustAnchor
    purpose: Purpose
    principals: tuple[Principal, ...]
    mac: bytes | None
    phone_ids: tuple[bytes, ...]
    thumbprint: bytes = field(repr=False)
    valid_from: _dt.datetime
    valid_until: _dt.datetime

    @property
    def role(self) -> Role | None:
        return self.anchor.role

    @property
    def provisioned(self) -> bool:
        """True for an operator-issued certificate (the issuer, not the name, tells)."""
        return self.anchor.role is Role.OPERATOR

    @property
    def principal(self) -> Principal | None:
        return self.principals[0] if self.principals else None

    @property
    def public_key(self):
        return self.certificate.public_key()

    @property
    def key_transport_allowed(self) -> bool:
        """RSA key with keyEncipherment (or no keyUsage): RFC 4556 3.2.3.2 may encipher to it."""
        if not isinstance(self.certificate.public_key(), rsa.RSAPublicKey):
            return False
        ku = _key_usage(self.certificate)
        return ku is None or ku.key_encipherment


def _utc(value: _dt.datetime) -> _dt.datetime:
    if not isinstance(value, _dt.datetime):
        raise TypeError("now must be a datetime")
    return value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value.astimezone(_dt.timezone.utc)


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier):
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise MalformedCertificate(f"certificate {_describe(cert)} has unparseable extensions: {exc}", cert) from exc


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    ext = _ext(cert, ExtensionOID.KEY_USAGE)
    return ext.value if ext else None


def _describe(cert: x509.Certificate) -> str:
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:  # pragma: no cover
        subject = "<unparseable subject>"
    return f"'{subject}' (serial {cert.serial_number:x})"


def _aki_keyid(cert: x509.Certificate) -> bytes | None:
    ext = _ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    return ext.value.key_identifier if ext else None


def _ski(cert: x509.Certificate) -> bytes | None:
    ext = _ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    return ext.value.digest if ext else None


def _could_have_issued(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    if issuer.subject != cert.issuer:
        return False
    keyid, ski = _aki_keyid(cert), _ski(issuer)
    return keyid is None or ski is None or keyid == ski


def _alg_name(oid: x509.ObjectIdentifier) -> str:
    name = getattr(oid, "_name", None)
    return f"{name} ({oid.dotted_string})" if name and name != "Unknown OID" else oid.dotted_string


def _verify_signature(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Signature of `cert` under `issuer`'s key: RSA PKCS#1 v1.5, RSA-PSS or ECDSA, SHA-2 only."""
    alg = cert.signature_algorithm_oid
    if alg not in _ACCEPTED_SIGNATURES:
        raise DigestNotAccepted(f"certificate {_describe(cert)} is signed with {_alg_name(alg)}", cert)
    try:
        hash_alg = cert.signature_hash_algorithm
        params = cert.signature_algorithm_parameters
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise DigestNotAccepted(f"certificate {_describe(cert)} has unsupported signature parameters: {exc}", cert) from exc
    if not isinstance(hash_alg, _ACCEPTED_HASHES):
        raise DigestNotAccepted(f"certificate {_describe(cert)} is signed with hash {getattr(hash_alg, 'name', None)}", cert)
    if isinstance(params, padding.PSS):
        mgf_hash = getattr(getattr(params, "mgf", None), "_algorithm", None)
        if mgf_hash is not None and not isinstance(mgf_hash, _ACCEPTED_HASHES):
            raise DigestNotAccepted(f"certificate {_describe(cert)} uses PSS with MGF1-{mgf_hash.name}", cert)
    public_key = issuer.public_key()
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and isinstance(params, (padding.PKCS1v15, padding.PSS)):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, params, hash_alg)
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, params)
        else:
            raise BadSignature(
                f"certificate {_describe(cert)} signature ({_alg_name(alg)}) does not fit the issuer's "
                f"{type(public_key).__name__}",
                cert,
            )
    except InvalidSignature as exc:
        raise BadSignature(f"signature on certificate {_describe(cert)} does not verify with issuer {_describe(issuer)}", cert) from exc


class CertificateVerifier:
    """Verifies chains against a fixed set of trust anchors (the KDC's and the CTA's trust store).

    `anchors` are CA certificates, or `TrustAnchor`s to give a role explicitly (otherwise the
    role comes from the anchor's kerbtel certificate policy). `accept_ms_smartcard_logon`
    additionally accepts Microsoft's smart-card-logon EKU on client certificates, as MIT does.
    """

    def __init__(
        self,
        anchors: Iterable[x509.Certificate | TrustAnchor],
        *,
        max_path_length: int = DEFAULT_MAX_PATH,
        accept_ms_smartcard_logon: bool = False,
    ) -> None:
        self.anchors = tuple(TrustAnchor.of(a) for a in anchors)
        if not self.anchors:
            raise ValueError("a CertificateVerifier needs at least one trust anchor")
        self.max_path_length = max_path_length
        self.accept_ms_smartcard_logon = accept_ms_smartcard_logon
        self._anchor_by_der = {a.certificate.public_bytes(_DER): a for a in self.anchors}

    # --- path building ---------------------------------------------------------------------

    def _build_path(
        self, leaf: x509.Certificate, intermediates: tuple[x509.Certificate, ...]
    ) -> tuple[list[x509.Certificate], TrustAnchor]:
        path = [leaf]
        current = leaf
        for _ in range(self.max_path_length + 1):
            anchor = self._anchor_by_der.get(current.public_bytes(_DER))
            if anchor is not None:
                return path, anchor
            signature_error: CertificateError | None = None
            for anchor in self.anchors:
                if _could_have_issued(anchor.certificate, current):
                    try:
                        _verify_signature(current, anchor.certificate)
                    except BadSignature as exc:
                        signature_error = exc
                        continue
                    path.append(anchor.certificate)
                    return path, anchor
            next_cert = None
            for candidate in intermediates:
                if candidate in path or not _could_have_issued(candidate, current):
                    continue
                try:
                    _verify_signature(current, candidate)
                except BadSignature as exc:
                    signature_error = exc
                    continue
                next_cert = candidate
                break
            if next_cert is None:
                if signature_error is not None:
                    raise signature_error
                raise UntrustedIssuer(
                    f"no trusted issuer '{current.issuer.rfc4514_string()}' for certificate {_describe(current)}",
                    current,
                )
            path.append(next_cert)
            current = next_cert
        raise UntrustedIssuer(f"no trust anchor within {self.max_path_length} certificates of {_describe(leaf)}", leaf)

    # --- checks ----------------------------------------------------------------------------

    @staticmethod
    def _check_validity(cert: x509.Certificate, now: _dt.datetime) -> None:
        if now < cert.not_valid_before_utc:
            raise NotYetValid(f"certificate {_describe(cert)} is not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}", cert)
        if now > cert.not_valid_after_utc:
            raise Expired(f"certificate {_describe(cert)} expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}", cert)

    @staticmethod
    def _check_critical(cert: x509.Certificate) -> None:
        try:
            extensions = cert.extensions
        except (ValueError, x509.DuplicateExtension) as exc:
            raise MalformedCertificate(f"certificate {_describe(cert)} has unparseable extensions: {exc}", cert) from exc
        for ext in extensions:
            if ext.critical and ext.oid not in _UNDERSTOOD_EXTENSIONS:
                raise UnknownCriticalExtension(
                    f"certificate {_describe(cert)} has unknown critical extension {ext.oid.dotted_string}", cert
                )

    @staticmethod
    def _check_issuer_is_ca(issuer: x509.Certificate, below: int) -> None:
        """`below`: number of CA certificates between `issuer` and the leaf."""
        ext = _ext(issuer, ExtensionOID.BASIC_CONSTRAINTS)
        if ext is None or not ext.value.ca:
            raise NotACA(f"certificate {_describe(issuer)} signed another certificate but is not a CA", issuer)
        ku = _key_usage(issuer)
        if ku is not None and not ku.key_cert_sign:
            raise NotACA(f"CA certificate {_describe(issuer)} lacks keyUsage keyCertSign", issuer)
        limit = ext.value.path_length
        if limit is not None and below > limit:
            raise PathLengthExceeded(
                f"CA {_describe(issuer)} allows {limit} CA(s) below it, the path has {below}", issuer
            )

    def _check_purpose(self, leaf: x509.Certificate, purpose: Purpose) -> None:
        if purpose is Purpose.ANY:
            return
        bc = _ext(leaf, ExtensionOID.BASIC_CONSTRAINTS)
        is_ca = bc is not None and bc.value.ca
        ku = _key_usage(leaf)
        if purpose is Purpose.CA:
            if not is_ca:
                raise NotACA(f"certificate {_describe(leaf)} is not a CA", leaf)
            if ku is not None and not ku.key_cert_sign:
                raise NotACA(f"CA certificate {_describe(leaf)} lacks keyUsage keyCertSign", leaf)
            return
        if is_ca:
            raise WrongKeyUsage(f"CA certificate {_describe(leaf)} presented as a {purpose.value} certificate", leaf)
        if ku is not None and not ku.digital_signature:
            raise WrongKeyUsage(f"certificate {_describe(leaf)} lacks keyUsage digitalSignature", leaf)
        wanted = {
            Purpose.CTA: {OID_KP_CLIENT_AUTH} | ({OID_MS_SC_LOGON} if self.accept_ms_smartcard_logon else set()),
            Purpose.KDC: {OID_KP_KDC},
            Purpose.SERVICE: {ExtendedKeyUsageOID.SERVER_AUTH},
        }[purpose]
        eku = _ext(leaf, ExtensionOID.EXTENDED_KEY_USAGE)
        if eku is None:
            raise MissingExtendedKeyUsage(f"certificate {_describe(leaf)} has no extendedKeyUsage", leaf)
        if not wanted & set(eku.value):
            names = ", ".join(o.dotted_string for o in eku.value) or "none"
            raise WrongExtendedKeyUsage(
                f"certificate {_describe(leaf)} EKU ({names}) lacks {', '.join(sorted(o.dotted_string for o in wanted))}",
                leaf,
            )

    # --- entry point -----------------------------------------------------------------------

    def verify(
        self,
        certificate: x509.Certificate,
        intermediates: Iterable[x509.Certificate] = (),
        *,
        now: _dt.datetime,
        purpose: Purpose | str = Purpose.ANY,
        expected_principal: Principal | None = None,
    ) -> VerifiedCertificate:
        """Verify `certificate` for `purpose` at `now` (naive datetimes are taken as UTC).

        With `expected_principal`, one of the certificate's id-pkinit-san principals must equal
        it (components and realm; the name type is not compared): PrincipalMismatch otherwise
        (KdcNameMismatch for Purpose.KDC). For Purpose.KDC without an expected principal, the
        certificate must still name some krbtgt/REALM@REALM.
        """
        purpose = Purpose(purpose)
        now = _utc(now)
        intermediates = tuple(intermediates)
        path, anchor = self._build_path(certificate, intermediates)
        for cert in path:
            self._check_validity(cert, now)
            self._check_critical(cert)
        for index, issuer in enumerate(path[1:], start=1):
            self._check_issuer_is_ca(issuer, below=index - 1)
        self._check_purpose(certificate, purpose)

        mac = mac_from_certificate(certificate)
        phone_ids = phone_ids_from_certificate(certificate)
        principals = principals_from_certificate(certificate)
        role = anchor.role
        if purpose is Purpose.CTA:
            check_cta_identity(certificate)
            if role is Role.MANUFACTURER:
                if mac is None:
                    raise MissingExtension(f"manufacturer-issued CTA certificate {_describe(certificate)} has no MAC address", certificate)
                if phone_ids:
                    raise InconsistentIdentity(
                        f"manufacturer-issued CTA certificate {_describe(certificate)} carries phone IDs; only the operator assigns them",
                        certificate,
                    )
            elif role is Role.OPERATOR and not phone_ids:
                raise MissingExtension(f"operator-issued CTA certificate {_describe(certificate)} has no phone IDs", certificate)
        if purpose is Purpose.KDC and expected_principal is None:
            if not any(
                len(p.components) == 2 and p.components[0] == "krbtgt" and p.components[1] == p.realm for p in principals
            ):
                raise MissingExtension(f"KDC certificate {_describe(certificate)} names no krbtgt/REALM@REALM", certificate)
        if expected_principal is not None and not any(p.same_name(expected_principal) for p in principals):
            error = KdcNameMismatch if purpose is Purpose.KDC else PrincipalMismatch
            found = ", ".join(str(p) for p in principals) or "no principal"
            raise error(f"certificate {_describe(certificate)} names {found}, not {expected_principal}", certificate)

        return VerifiedCertificate(
            certificate=certificate,
            chain=tuple(path),
            anchor=anchor,
            purpose=purpose,
            principals=principals,
            mac=mac,
            phone_ids=phone_ids,
            thumbprint=thumbprint(certificate),
            valid_from=max(c.not_valid_before_utc for c in path),
            valid_until=min(c.not_valid_after_utc for c in path),
        )


def verify_chain(
    certificate: x509.Certificate,
    anchors: Iterable[x509.Certificate | TrustAnchor],
    intermediates: Iterable[x509.Certificate] = (),
    *,
    now: _dt.datetime,
    purpose: Purpose | str = Purpose.ANY,
    expected_principal: Principal | None = None,
) -> VerifiedCertificate:
    """One-shot `CertificateVerifier(anchors).verify(...)`."""
    return CertificateVerifier(anchors).verify(
        certificate, intermediates, now=now, purpose=purpose, expected_principal=expected_principal
    )
