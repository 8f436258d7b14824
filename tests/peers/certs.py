"""PKINIT certificates for a test realm, made with `common.pki` and written as PEM files.

    pki = make_pki(directory, "EXAMPLE.TEST")
    MitRealm(..., pkinit=pki.mit_files())          # KDC identity + anchors for MIT krb5kdc
    realm.kinit(str(pki.cta_principal), identity=pki.cta_operator_identity)

One operator CA issues the KDC certificate and the operator CTA certificate; a manufacturer CA
issues the CTA's factory (device) certificate for the same key. The KDC trusts both CAs for
clients; clients trust the operator CA for the KDC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.pki import create_ca, generate_key, issue_device_certificate, issue_kdc_certificate, issue_operator_certificate
from common.pki.identity import cta_principal
from common.pki.store import save_certificates, save_private_key
from common.principal import Principal

from .mit import PkinitFiles

DEFAULT_MAC = bytes.fromhex("0011223344aa")


@dataclass(frozen=True)
class TestPki:
    directory: Path
    realm: str
    operator_ca: Path
    manufacturer_ca: Path
    kdc_cert: Path
    kdc_key: Path
    cta_key: Path
    cta_device_cert: Path
    cta_operator_cert: Path
    cta_principal: Principal

    __test__ = False  # not a pytest test class

    @property
    def cta_operator_identity(self) -> tuple[Path, Path]:
        return self.cta_operator_cert, self.cta_key

    @property
    def cta_device_identity(self) -> tuple[Path, Path]:
        return self.cta_device_cert, self.cta_key

    def mit_files(self) -> PkinitFiles:
        return PkinitFiles(
            kdc_cert=self.kdc_cert,
            kdc_key=self.kdc_key,
            client_ca=(self.operator_ca, self.manufacturer_ca),
            kdc_ca=(self.operator_ca,),
        )


def make_pki(directory: str | Path, realm: str, mac: bytes = DEFAULT_MAC, phone: str = "+15555550100") -> TestPki:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    operator = create_ca("operator", f"{realm} operator CA")
    manufacturer = create_ca("manufacturer", "Test Manufacturer CA")
    kdc_key = generate_key()
    kdc_cert = issue_kdc_certificate(operator, kdc_key.public_key(), realm, hostname="kdc.example.test")
    cta_key = generate_key()
    device_cert = issue_device_certificate(manufacturer, cta_key.public_key(), mac, realm)
    operator_cert = issue_operator_certificate(operator, device_cert, realm, phone_numbers=[phone])
    paths = dict(
        operator_ca=directory / "operator-ca.pem",
        manufacturer_ca=directory / "manufacturer-ca.pem",
        kdc_cert=directory / "kdc.pem",
        kdc_key=directory / "kdc.key",
        cta_key=directory / "cta.key",
        cta_device_cert=directory / "cta-device.pem",
        cta_operator_cert=directory / "cta-operator.pem",
    )
    save_certificates(paths["operator_ca"], operator.certificate)
    save_certificates(paths["manufacturer_ca"], manufacturer.certificate)
    save_certificates(paths["kdc_cert"], kdc_cert)
    save_private_key(paths["kdc_key"], kdc_key)
    save_private_key(paths["cta_key"], cta_key)
    save_certificates(paths["cta_device_cert"], device_cert)
    save_certificates(paths["cta_operator_cert"], operator_cert)
    return TestPki(directory=directory, realm=realm, cta_principal=cta_principal(mac, realm), **paths)
