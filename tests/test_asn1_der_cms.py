"""The KDC's direct-DER CMS outputs equal the asn1crypto builds: sign_signed_data_der and
envelope_der (RSA-mode encKeyPack), for every cipher and several recipient certificates."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from common import cms as C
from common.asn1 import oids

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _cert(key, name: str, serial: int, issuer: str = "issuing CA") -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kerbtel"), x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=30))
    )
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("cipher", sorted(C.CIPHERS))
@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFFFF, 2**159 - 1])
@pytest.mark.parametrize("size", [0, 1, 100, 127, 128, 300, 70_000])
def test_envelope_der_equals_asn1crypto(rsa_key, cipher, serial, size):
    cert = _cert(rsa_key, "cta", serial)
    counter = iter(range(1, 1_000_000))

    def rng(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    sealed = C._seal(bytes(range(256)) * (size // 256) + bytes(size % 256), cert, cipher, rng)
    for content_type in (oids.ID_SIGNED_DATA, oids.ID_DATA):
        assert C._enveloped_der(sealed, content_type) == C._enveloped_asn1(sealed, content_type).dump()


def test_envelope_der_opens(rsa_key):
    cert = _cert(rsa_key, "cta", 42)
    sealed = C.envelope_der(b"signed reply key pack", cert, cipher="aes256-cbc")
    assert C.open_envelope(C.cms.ContentInfo.load(sealed), rsa_key, cert) == b"signed reply key pack"


def test_envelope_der_refuses_ec_recipient():
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(C.UnsupportedAlgorithm):
        C.envelope_der(b"x", _cert(key, "ec", 7))


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_sign_signed_data_der_equals_sign_signed_data(rsa_key, digest):
    cert = _cert(rsa_key, "kdc", 9)
    for content in (b"", b"\x30\x00", bytes(500)):
        der = C.sign_signed_data_der(content, oids.ID_PKINIT_DHKEYDATA, cert, rsa_key, digest=digest)
        assert der == C.sign_signed_data(content, oids.ID_PKINIT_DHKEYDATA, cert, rsa_key, digest=digest).dump()
        assert der == C._build_signed_data(content, oids.ID_PKINIT_DHKEYDATA, cert, rsa_key, digest=digest).dump()
