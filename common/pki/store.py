"""Keys and certificates on disk: PEM files, keys 0600, certificates 0644, written atomically.

Directory layouts (docs/pki.md):

    CA directory (kerbtel pki init-ca):   ca.pem  (CA certificate, 0644)   ca.key  (0600)
    leaf directory (issue-kdc/-device):   cert.pem (0644)  key.pem (0600)  issuer.pem (0644)
    operator-issued CTA (issue-operator): cert.pem (0644)  issuer.pem (0644), no key: the
                                          key stays with the device (its key.pem)
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from common.fileio import PUBLIC_MODE, atomic_write, read_file, write_private

from .errors import MalformedCertificate
from .issue import CertificateAuthority, PrivateKey

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CERT_FILE",
    "ISSUER_FILE",
    "KEY_FILE",
    "certificate_pem",
    "load_ca",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "parse_certificate",
    "parse_certificates",
    "save_ca",
    "save_certificates",
    "save_private_key",
]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
ISSUER_FILE = "issuer.pem"

_PEM_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"


def parse_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in PEM data (a bundle), or the one certificate in DER data."""
    try:
        if _PEM_CERT_MARKER in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise MalformedCertificate(f"not an X.509 certificate: {exc}") from exc


def parse_certificate(data: bytes) -> x509.Certificate:
    """Exactly one certificate from PEM or DER bytes (MalformedCertificate otherwise)."""
    certs = parse_certificates(data)
    if len(certs) != 1:
        raise MalformedCertificate(f"expected one certificate, found {len(certs)}")
    return certs[0]


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """A PEM bundle (or single DER certificate) from a file."""
    try:
        return parse_certificates(read_file(path))
    except MalformedCertificate as exc:
        raise MalformedCertificate(f"{os.fspath(path)}: {exc}") from exc


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """The first certificate of a PEM file (or the DER certificate); the leaf of a chain file."""
    return load_certificates(path)[0]


def certificate_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def save_certificates(path: str | os.PathLike[str], *certs: x509.Certificate) -> None:
    """Write one or more certificates as PEM, mode 0644, atomically."""
    if not certs:
        raise ValueError("no certificate to save")
    atomic_write(path, certificate_pem(*certs), PUBLIC_MODE)


def save_private_key(path: str | os.PathLike[str], key: PrivateKey) -> None:
    """Write an unencrypted PKCS#8 PEM private key, mode 0600, atomically.

    Unencrypted because the daemons must start unattended (MIT's FILE: identities and OpenSSL
    read it as is); the file mode is the protection. A CA key belongs offline.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)


def load_private_key(
    path: str | os.PathLike[str], *, password: bytes | None = None, check_mode: bool = True
) -> PrivateKey:
    """An RSA or EC private key from PEM (PKCS#8 or traditional) or DER.

    With `check_mode` (the default) the file must not be accessible to group or others
    (common.fileio.InsecureFileMode, a PermissionError, otherwise).
    """
    data = read_file(path, private=check_mode)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=password)
        else:
            key = serialization.load_der_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{os.fspath(path)}: not a usable private key: {exc}") from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"{os.fspath(path)}: {type(key).__name__} keys are not supported (RSA or EC P-256)")
    return key


def _same_public_key(key: PrivateKey, cert: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def load_ca(directory: str | os.PathLike[str]) -> CertificateAuthority:
    """DIR/ca.pem + DIR/ca.key, checked to belong together."""
    directory = Path(directory)
    cert = load_certificate(directory / CA_CERT_FILE)
    key = load_private_key(directory / CA_KEY_FILE)
    if not _same_public_key(key, cert):
        raise ValueError(f"{directory / CA_KEY_FILE} is not the key of {directory / CA_CERT_FILE}")
    return CertificateAuthority(cert, key)


def save_ca(ca: CertificateAuthority, directory: str | os.PathLike[str]) -> None:
    """Write DIR/ca.key (0600) then DIR/ca.pem (0644); creates DIR with mode 0700 if needed."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    save_private_key(directory / CA_KEY_FILE, ca.private_key)
    save_certificates(directory / CA_CERT_FILE, ca.certificate)
