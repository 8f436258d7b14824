"""Certificates made by `common.pki` work with MIT krb5 1.20's PKINIT (client and KDC).

MIT's kinit trusts our KDC certificate (operator CA as pkinit_anchors, SAN krbtgt/REALM, EKU
id-pkinit-KPKdc) and MIT's krb5kdc accepts our CTA certificates (SAN cta/<mac>@REALM, EKU
id-pkinit-KPClientAuth) in both DH (group 14) and RSA key-transport modes.
"""

from __future__ import annotations

import pytest

from common.ccache import Ccache, TicketFlags
from common.principal import Principal
from conftest import require_peer
from peers.mit import MIT_PROGRAMS, realm_fixture

pytestmark = pytest.mark.interop

REALM = "EXAMPLE.TEST"
OTHER_MAC = bytes.fromhex("0011223344bb")


def _setup(realm, tmp_dir):
    realm.add_principal(str(realm.pki.cta_principal), requires_preauth=True, nokey=True)
    realm.add_principal(f"cta/{OTHER_MAC.hex()}", requires_preauth=True, nokey=True)
    realm.add_principal("sc/sc1.example.test")


mit = realm_fixture(_setup, name="mit", with_pki=True, realm=REALM)


def _tgt(cc) -> tuple[Ccache, object]:
    cache = Ccache.load(cc)
    (tgt,) = cache.tickets()
    return cache, tgt


@pytest.mark.parametrize("rsa", [False, True], ids=["dh", "rsa"])
def test_mit_kinit_with_operator_cta_certificate(mit, tmp_path, rsa):
    require_peer(*MIT_PROGRAMS)
    pki = mit.pki
    cc = tmp_path / "cc"
    proc = mit.kinit(str(pki.cta_principal), identity=pki.cta_operator_identity, rsa=rsa, ccache=cc, trace=True)
    cache, tgt = _tgt(cc)
    assert cache.principal == pki.cta_principal
    assert tgt.server.same_name(Principal.krbtgt(REALM))
    assert TicketFlags.PRE_AUTHENT in tgt.flags and TicketFlags.INITIAL in tgt.flags
    assert cache.config()[("pa_type", f"krbtgt/{REALM}@{REALM}")] == b"16"  # PA-PK-AS-REQ was used
    # MIT's trace shows which mode ran and that our KDC certificate's SAN matched.
    mode = "RSA" if rsa else "DH"
    assert f"PKINIT client making {mode} request" in proc.stderr
    assert f"PKINIT client verified {mode} reply" in proc.stderr
    assert f"PKINIT client matched KDC principal krbtgt/{REALM}@{REALM} against id-pkinit-san" in proc.stderr


def test_mit_kinit_service_ticket_straight_from_as_exchange(mit, tmp_path):
    require_peer(*MIT_PROGRAMS)
    pki = mit.pki
    cc = tmp_path / "cc"
    mit.kinit(str(pki.cta_principal), identity=pki.cta_operator_identity, service="sc/sc1.example.test", ccache=cc)
    _, cred = _tgt(cc)
    assert cred.server.same_name(Principal(("sc", "sc1.example.test"), REALM))


def test_mit_kinit_with_manufacturer_device_certificate(mit, tmp_path):
    """The factory certificate, chained to the manufacturer CA (the client must trust both CAs
    locally: MIT verifies its own certificate chain before sending it)."""
    require_peer(*MIT_PROGRAMS)
    pki = mit.pki
    cc = tmp_path / "cc"
    anchors = ["-X", f"X509_anchors=FILE:{pki.manufacturer_ca}", "-X", f"X509_anchors=FILE:{pki.operator_ca}"]
    mit.kinit(str(pki.cta_principal), identity=pki.cta_device_identity, extra_args=anchors, ccache=cc)
    cache, _ = _tgt(cc)
    assert cache.principal == pki.cta_principal


def test_mit_kdc_rejects_certificate_for_another_principal(mit, tmp_path):
    """MIT checks SAN == cname: our certificate for cta/0011223344aa cannot log in as ...bb."""
    require_peer(*MIT_PROGRAMS)
    pki = mit.pki
    proc = mit.kinit(
        f"cta/{OTHER_MAC.hex()}", identity=pki.cta_operator_identity, ccache=tmp_path / "cc", check=False
    )
    assert proc.returncode != 0
    assert not (tmp_path / "cc").exists() or not Ccache.load(tmp_path / "cc").tickets()
