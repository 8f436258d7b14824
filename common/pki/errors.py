"""Certificate verification failures, one class per cause.

Every class carries the KRB-ERROR code the KDC answers with (RFC 4556 3.2.2 / 3.2.3, with MIT
krb5's mapping of path-validation failures: an issuer that cannot be found is
CANT_VERIFY_CERTIFICATE, every other path failure is INVALID_CERTIFICATE). The KDC maps with

    except CertificateError as exc:
        raise KrbError(exc.krb_error_code, str(exc))

and the CTA, verifying the KDC's certificate, gets KDC-side names that it can log.
"""

from __future__ import annotations

__all__ = [
    "BadSignature",
    "CertificateError",
    "DigestNotAccepted",
    "Expired",
    "InconsistentIdentity",
    "KdcNameMismatch",
    "MalformedCertificate",
    "MalformedExtension",
    "MissingExtendedKeyUsage",
    "MissingExtension",
    "NotACA",
    "NotYetValid",
    "PathLengthExceeded",
    "PrincipalMismatch",
    "UnknownCriticalExtension",
    "UntrustedIssuer",
    "WrongExtendedKeyUsage",
    "WrongKeyUsage",
    "KRB_ERROR_CODES",
]

# RFC 4556 section 3.1.3 / RFC 4120 7.5.9 error codes used below.
KRB_ERROR_CODES = {
    "KDC_ERR_CLIENT_NOT_TRUSTED": 62,
    "KDC_ERR_KDC_NOT_TRUSTED": 63,
    "KDC_ERR_INVALID_SIG": 64,
    "KDC_ERR_CANT_VERIFY_CERTIFICATE": 70,
    "KDC_ERR_INVALID_CERTIFICATE": 71,
    "KDC_ERR_REVOKED_CERTIFICATE": 72,
    "KDC_ERR_CLIENT_NAME_MISMATCH": 75,
    "KDC_ERR_KDC_NAME_MISMATCH": 76,
    "KDC_ERR_INCONSISTENT_KEY_PURPOSE": 77,
    "KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED": 78,
}


class CertificateError(ValueError):
    """A certificate or chain failed verification. Subclasses name the cause.

    `krb_error_name` / `krb_error_code` give the KRB-ERROR to answer with; `certificate` is the
    certificate the failure is about (the leaf, an intermediate or an anchor), when known.
    """

    krb_error_name = "KDC_ERR_INVALID_CERTIFICATE"

    def __init__(self, message: str, certificate=None) -> None:
        super().__init__(message)
        self.certificate = certificate

    @property
    def krb_error_code(self) -> int:
        return KRB_ERROR_CODES[self.krb_error_name]


class MalformedCertificate(CertificateError):
    """The bytes are not a parseable X.509 certificate (or a known extension does not parse)."""


class UntrustedIssuer(CertificateError):
    """No path from the certificate to a configured trust anchor (unknown or wrong CA)."""

    krb_error_name = "KDC_ERR_CANT_VERIFY_CERTIFICATE"


class BadSignature(CertificateError):
    """A certificate's signature does not verify with its issuer's public key (tampering)."""


class DigestNotAccepted(CertificateError):
    """A certificate is signed with an algorithm we refuse (SHA-1, MD5, unknown)."""

    krb_error_name = "KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED"


class NotYetValid(CertificateError):
    """`now` is before a certificate's notBefore."""


class Expired(CertificateError):
    """`now` is after a certificate's notAfter."""


class NotACA(CertificateError):
    """A certificate that signed another one is not a CA (basicConstraints / keyCertSign)."""


class PathLengthExceeded(CertificateError):
    """More CA certificates below a CA than its basicConstraints pathLenConstraint allows."""


class UnknownCriticalExtension(CertificateError):
    """A certificate has a critical extension we do not process (RFC 5280 4.2)."""


class MissingExtension(CertificateError):
    """An extension the role requires is absent (MAC address, phone IDs, SAN principal...)."""


class MalformedExtension(CertificateError):
    """An extension is present but its value does not decode, or decodes to nonsense."""


class InconsistentIdentity(CertificateError):
    """Two identity fields of one certificate disagree (MAC extension vs cta/<mac> principal)."""


class WrongKeyUsage(CertificateError):
    """keyUsage lacks a bit the role needs (digitalSignature for PKINIT signers)."""

    krb_error_name = "KDC_ERR_INCONSISTENT_KEY_PURPOSE"


class WrongExtendedKeyUsage(CertificateError):
    """extendedKeyUsage does not contain the purpose the role needs (RFC 4556 3.2.2 / 3.2.4)."""

    krb_error_name = "KDC_ERR_INCONSISTENT_KEY_PURPOSE"


class MissingExtendedKeyUsage(WrongExtendedKeyUsage):
    """A PKINIT end-entity certificate without any extendedKeyUsage extension."""


class PrincipalMismatch(CertificateError):
    """The id-pkinit-san principal(s) in the certificate do not match the expected principal."""

    krb_error_name = "KDC_ERR_CLIENT_NAME_MISMATCH"


class KdcNameMismatch(PrincipalMismatch):
    """The KDC certificate does not name krbtgt/REALM@REALM (checked by the client, RFC 4556 3.2.4)."""

    krb_error_name = "KDC_ERR_KDC_NAME_MISMATCH"
