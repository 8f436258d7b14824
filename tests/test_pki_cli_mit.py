"""MIT krb5 accepts certificates made by the `kerbtel pki` CLI (issue 2, section 4).

The operator and manufacturer CAs, the KDC certificate, a CTA's factory certificate and its
operator certificate are all made with `kerbtel pki ...` commands (not the library); MIT krb5kdc
runs with them (tests/peers/mit.py), and MIT kinit obtains tickets with the CTA's certificates
while trusting the CLI-made KDC certificate.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from common.cli import main as kerbtel
from tests.conftest import require_peer
from tests.peers.mit import MIT_PROGRAMS, MitRealm, PkinitFiles

pytestmark = pytest.mark.interop

REALM = "EXAMPLE.TEST"
MAC = "02:11:22:33:44:55"
CTA = f"cta/021122334455@{REALM}"
SC = f"sc/sc1.example.test@{REALM}"


def _cli(*args: object) -> None:
    assert kerbtel([str(a) for a in args]) == 0, args


@pytest.fixture(scope="module")
def cli_pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli-pki")
    _cli("pki", "init-ca", "--role", "operator", "--name", f"{REALM} operator CA", "--out", d / "operator-ca")
    _cli("pki", "init-ca", "--role", "manufacturer", "--name", "Test CTA manufacturer CA", "--out", d / "manufacturer-ca")
    _cli("pki", "issue-kdc", "--ca", d / "operator-ca", "--realm", REALM, "--hostname", "kdc.example.test", "--out", d / "kdc")
    _cli("pki", "issue-device", "--ca", d / "manufacturer-ca", "--mac", MAC, "--realm", REALM, "--out", d / "device")
    _cli("pki", "issue-operator", "--ca", d / "operator-ca", "--device", d / "device", "--phone", "+15551230001",
         "--manufacturer-anchor", d / "manufacturer-ca" / "ca.pem", "--out", d / "provisioned")
    return d


@pytest.fixture(scope="module")
def mit_realm(cli_pki, tmp_path_factory):
    require_peer(*MIT_PROGRAMS)
    d = cli_pki
    realm = MitRealm(
        tmp_path_factory.mktemp("mit") / "realm",
        REALM,
        pkinit=PkinitFiles(
            kdc_cert=d / "kdc" / "cert.pem",
            kdc_key=d / "kdc" / "key.pem",
            client_ca=(d / "operator-ca" / "ca.pem", d / "manufacturer-ca" / "ca.pem"),
            kdc_ca=(d / "operator-ca" / "ca.pem",),
        ),
    )
    try:
        realm.create()
        realm.add_principal(CTA, requires_preauth=True, nokey=True)
        realm.add_principal(SC)
        realm.start()
        yield realm
    finally:
        realm.stop()


def test_cli_wrote_private_keys_0600(cli_pki):
    for path in ("operator-ca/ca.key", "manufacturer-ca/ca.key", "kdc/key.pem", "device/key.pem"):
        assert stat.S_IMODE((cli_pki / path).stat().st_mode) == 0o600, path
    assert not (cli_pki / "provisioned" / "key.pem").exists()  # the device key is the CTA's key for life


@pytest.mark.parametrize("rsa", [False, True], ids=["dh", "rsa"])
def test_mit_krb5kdc_accepts_the_cli_operator_certificate(mit_realm, cli_pki, tmp_path, rsa):
    ccache = tmp_path / "cc"
    identity = (cli_pki / "provisioned" / "cert.pem", cli_pki / "device" / "key.pem")
    proc = mit_realm.kinit(CTA, identity=identity, rsa=rsa, service=SC, ccache=ccache, trace=True)
    # MIT kinit trusted the CLI-made KDC certificate through its id-pkinit-san.
    assert f"PKINIT client matched KDC principal krbtgt/{REALM}@{REALM} against id-pkinit-san" in proc.stderr
    out = mit_realm.klist("-e", ccache=ccache).stdout
    assert f"Default principal: {CTA}" in out and SC in out


def test_mit_krb5kdc_accepts_the_cli_device_certificate(mit_realm, cli_pki, tmp_path):
    ccache = tmp_path / "cc"
    anchors = [cli_pki / "operator-ca" / "ca.pem", cli_pki / "manufacturer-ca" / "ca.pem"]
    # -X X509_anchors replaces krb5.conf's anchors; MIT also builds the client's own chain with them.
    extra = [arg for a in anchors for arg in ("-X", f"X509_anchors=FILE:{a}")]
    mit_realm.kinit(CTA, identity=(cli_pki / "device" / "cert.pem", cli_pki / "device" / "key.pem"),
                    ccache=ccache, extra_args=extra)
    out = mit_realm.klist(ccache=ccache).stdout
    assert f"krbtgt/{REALM}@{REALM}" in out
