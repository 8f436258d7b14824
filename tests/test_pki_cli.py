"""`kerbtel pki` end to end in tmp_path, with OpenSSL as an independent check of what we wrote."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from common import pki
from common.cli import main
from tests.conftest import require_peer

REALM = "EXAMPLE.TEST"
PHONES = ["+1 555-123-0001", "+15551230002"]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def issued(tmp_path_factory):
    """One full provisioning run: both CAs, a device, its operator certificate, a KDC, an SC."""
    d = tmp_path_factory.mktemp("pki")
    run = lambda *argv: main(["pki", *map(str, argv)])  # noqa: E731
    assert run("init-ca", "--role", "manufacturer", "--name", "Acme CTA Root CA", "--out", d / "mca") == 0
    assert run("init-ca", "--role", "operator", "--name", "Example Telco Root CA", "--out", d / "oca") == 0
    assert run("issue-device", "--ca", d / "mca", "--mac", "00:11:22:AA:BB:CC", "--realm", REALM, "--out", d / "dev") == 0
    assert run(
        "issue-operator", "--ca", d / "oca", "--device", d / "dev", "--phone", PHONES[0], "--phone", PHONES[1],
        "--realm", REALM, "--manufacturer-anchor", d / "mca" / "ca.pem", "--out", d / "prov",
    ) == 0
    assert run("issue-kdc", "--ca", d / "oca", "--realm", REALM, "--hostname", "kdc.example.test", "--out", d / "kdc") == 0
    assert run("issue-kdc", "--ca", d / "oca", "--realm", REALM, "--key-type", "ec", "--out", d / "kdc-ec") == 0
    assert run("issue-service", "--ca", d / "oca", "--hostname", "sc1.example.test", "--realm", REALM, "--out", d / "sc") == 0
    return d


def test_file_layout_and_modes(issued):
    d = issued
    assert mode(d / "mca" / "ca.key") == 0o600 and mode(d / "mca" / "ca.pem") == 0o644
    assert mode(d / "oca" / "ca.key") == 0o600 and mode(d / "oca" / "ca.pem") == 0o644
    for leaf in ("dev", "kdc", "kdc-ec", "sc"):
        assert sorted(os.listdir(d / leaf)) == ["cert.pem", "issuer.pem", "key.pem"]
        assert mode(d / leaf / "key.pem") == 0o600
        assert mode(d / leaf / "cert.pem") == 0o644 and mode(d / leaf / "issuer.pem") == 0o644
    assert sorted(os.listdir(d / "prov")) == ["cert.pem", "issuer.pem"]  # the key stays on the device
    assert (d / "dev" / "issuer.pem").read_bytes() == (d / "mca" / "ca.pem").read_bytes()


def test_issued_certificates_have_the_profiles(issued):
    d = issued
    device = pki.load_certificate(d / "dev" / "cert.pem")
    prov = pki.load_certificate(d / "prov" / "cert.pem")
    key = pki.load_private_key(d / "dev" / "key.pem")
    assert prov.public_key() == device.public_key() == key.public_key()
    assert pki.phone_ids_from_certificate(prov) == tuple(pki.phone_id(p) for p in PHONES)
    assert str(pki.principal_from_certificate(prov)) == "cta/001122aabbcc@EXAMPLE.TEST"
    assert str(pki.principal_from_certificate(pki.load_certificate(d / "kdc" / "cert.pem"))) == "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST"


def test_phone_numbers_appear_in_no_file_and_no_output(issued, capsys):
    d = issued
    main(["pki", "show", str(d / "prov" / "cert.pem")])
    main(["pki", "show", "--json", str(d / "prov" / "cert.pem")])
    out = capsys.readouterr().out
    for root, _, files in os.walk(d):
        for name in files:
            data = open(os.path.join(root, name), "rb").read()
            for number in ("5551230001", "5551230002", "555-123-0001"):
                assert number.encode() not in data, (name, number)
    assert "5551230001" not in out and "5551230002" not in out


def test_show(issued, capsys):
    assert main(["pki", "show", str(issued / "prov" / "cert.pem")]) == 0
    out = capsys.readouterr().out
    for expected in (
        "subject:     CN=cta-001122aabbcc",
        "issuer:      CN=Example Telco Root CA",
        "role:        operator",
        "principal:   cta/001122aabbcc@EXAMPLE.TEST",
        "MAC:         00:11:22:aa:bb:cc",
        f"phone ID:    {pki.phone_id(PHONES[0]).hex()}",
        f"phone ID:    {pki.phone_id(PHONES[1]).hex()}",
        "EKU:         id-pkinit-KPClientAuth",
        f"thumbprint:  {pki.thumbprint(pki.load_certificate(issued / 'prov' / 'cert.pem')).hex()}",
        "not after:",
    ):
        assert expected in out, expected


def test_show_json_and_bundle(issued, capsys):
    bundle = issued / "bundle.pem"
    bundle.write_bytes((issued / "kdc" / "cert.pem").read_bytes() + (issued / "oca" / "ca.pem").read_bytes())
    assert main(["pki", "show", "--json", str(bundle)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [i["type"] for i in info] == ["end entity", "CA (pathlen 0)"]
    assert info[0]["principals"] == ["krbtgt/EXAMPLE.TEST@EXAMPLE.TEST"]
    assert info[0]["dns_names"] == ["kdc.example.test"] and info[0]["eku"] == ["id-pkinit-KPKdc"]
    assert info[1]["role"] == "operator"


@pytest.mark.parametrize(
    "leaf, anchors, extra, expected",
    [
        ("dev", ["mca"], ["--principal", "cta/001122aabbcc@EXAMPLE.TEST"], "role=manufacturer"),
        ("prov", ["mca", "oca"], ["--principal", "cta/001122aabbcc@EXAMPLE.TEST"], "role=operator"),
        ("kdc", ["oca"], ["--principal", "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST"], "purpose=kdc"),
        ("kdc-ec", ["oca"], [], "purpose=kdc"),
        ("sc", ["oca"], [], "purpose=service"),
    ],
)
def test_verify_ok(issued, capsys, leaf, anchors, extra, expected):
    argv = ["pki", "verify"]
    for a in anchors:
        argv += ["--anchor", str(issued / a / "ca.pem")]
    assert main(argv + extra + [str(issued / leaf / "cert.pem")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ") and expected in out


@pytest.mark.parametrize(
    "leaf, anchor, extra, error, krb",
    [
        ("prov", "mca", [], "UntrustedIssuer", "KDC_ERR_CANT_VERIFY_CERTIFICATE"),
        ("prov", "oca", ["--principal", "cta/0011223344ff@EXAMPLE.TEST"], "PrincipalMismatch", "KDC_ERR_CLIENT_NAME_MISMATCH"),
        ("kdc", "oca", ["--principal", "krbtgt/OTHER@OTHER"], "KdcNameMismatch", "KDC_ERR_KDC_NAME_MISMATCH"),
        ("prov", "oca", ["--at", "2199-01-01T00:00:00Z"], "Expired", "KDC_ERR_INVALID_CERTIFICATE"),
        ("dev", "mca", ["--at", "2001-01-01T00:00:00"], "NotYetValid", "KDC_ERR_INVALID_CERTIFICATE"),
        ("dev", "mca", ["--purpose", "kdc"], "WrongExtendedKeyUsage", "KDC_ERR_INCONSISTENT_KEY_PURPOSE"),
    ],
)
def test_verify_failures(issued, capsys, leaf, anchor, extra, error, krb):
    argv = ["pki", "verify", "--anchor", str(issued / anchor / "ca.pem"), *extra, str(issued / leaf / "cert.pem")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAILED {error} ({krb}): ")


def test_verify_tampered_file(issued, capsys, tmp_path):
    data = bytearray(pki.load_certificate(issued / "kdc" / "cert.pem").public_bytes(pki.store.serialization.Encoding.DER))
    data[-1] ^= 1
    (tmp_path / "bad.der").write_bytes(bytes(data))
    assert main(["pki", "verify", "--anchor", str(issued / "oca" / "ca.pem"), str(tmp_path / "bad.der")]) == 1
    assert capsys.readouterr().out.startswith("FAILED BadSignature")


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["pki", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("init-ca", "issue-device", "issue-operator", "issue-kdc", "issue-service", "show", "verify", "phone-id"):
        assert name in out


def test_phone_id_command(capsys):
    assert main(["pki", "phone-id", "+1 (555) 123-0001"]) == 0
    assert capsys.readouterr().out.strip() == pki.phone_id("+15551230001").hex()
    assert main(["pki", "phone-id", "5551230001"]) == 2


def test_operator_mistakes_exit_2(issued, tmp_path, capsys):
    d = issued
    cases = [
        ["init-ca", "--role", "operator", "--name", "x", "--out", d / "oca"],  # would overwrite the CA key
        ["issue-device", "--ca", d / "mca", "--mac", "00:11:22", "--realm", REALM, "--out", tmp_path / "a"],
        ["issue-device", "--ca", d / "oca", "--mac", "001122aabbcc", "--realm", REALM, "--out", tmp_path / "b"],
        ["issue-device", "--ca", tmp_path / "nowhere", "--mac", "001122aabbcc", "--realm", REALM, "--out", tmp_path / "c"],
        ["issue-device", "--ca", d / "mca", "--mac", "001122aabbcc", "--realm", "BAD/REALM", "--out", tmp_path / "d"],
        ["issue-operator", "--ca", d / "oca", "--device", d / "dev", "--phone", "5551230001", "--out", tmp_path / "e"],
        ["issue-operator", "--ca", d / "oca", "--device", d / "dev", "--phone", "+15551230001", "--out", d / "dev"],
        ["issue-operator", "--ca", d / "oca", "--device", d / "prov", "--phone", "+15551230001",
         "--manufacturer-anchor", d / "mca" / "ca.pem", "--out", tmp_path / "f"],
        ["issue-kdc", "--ca", d / "oca", "--realm", REALM, "--out", d / "kdc"],  # exists
        ["show", tmp_path / "missing.pem"],
        ["verify", "--anchor", tmp_path / "missing.pem", d / "kdc" / "cert.pem"],
        ["verify", "--anchor", d / "oca" / "ca.pem", "--at", "yesterday", d / "kdc" / "cert.pem"],
    ]
    for argv in cases:
        assert main(["pki", *map(str, argv)]) == 2, argv
    err = capsys.readouterr().err
    assert "--force" in err and "5551230001" not in err


def test_force_replaces(issued, tmp_path):
    out = tmp_path / "kdc"
    args = ["pki", "issue-kdc", "--ca", str(issued / "oca"), "--realm", REALM, "--out", str(out)]
    assert main(args) == 0
    first = (out / "cert.pem").read_bytes()
    assert main(args + ["--force"]) == 0
    assert (out / "cert.pem").read_bytes() != first
    assert sorted(os.listdir(out)) == ["cert.pem", "issuer.pem", "key.pem"]  # no temp files left


def test_device_option_accepts_a_file_and_realm_defaults(issued, tmp_path):
    out = tmp_path / "prov2"
    argv = ["pki", "issue-operator", "--ca", str(issued / "oca"), "--device", str(issued / "dev" / "cert.pem"),
            "--phone", "+15551230003", "--out", str(out)]
    assert main(argv) == 0
    assert pki.principal_from_certificate(pki.load_certificate(out / "cert.pem")).realm == REALM


# --- OpenSSL as an independent parser and path validator --------------------------------------


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)


def test_openssl_verifies_the_chains(issued):
    require_peer("openssl")
    d = issued
    for leaf, ca in (("dev", "mca"), ("prov", "oca"), ("kdc", "oca"), ("kdc-ec", "oca"), ("sc", "oca")):
        result = openssl("verify", "-x509_strict", "-CAfile", d / ca / "ca.pem", d / leaf / "cert.pem")
        assert result.returncode == 0, (leaf, result.stdout, result.stderr)
        assert result.stdout.strip().endswith(": OK")
    wrong = openssl("verify", "-CAfile", d / "mca" / "ca.pem", d / "prov" / "cert.pem")
    assert wrong.returncode != 0
    expired = openssl("verify", "-attime", "7258118400", "-CAfile", d / "oca" / "ca.pem", d / "prov" / "cert.pem")  # 2200
    assert expired.returncode != 0 and "expired" in (expired.stdout + expired.stderr)
    ca_check = openssl("verify", "-x509_strict", "-CAfile", d / "oca" / "ca.pem", d / "oca" / "ca.pem")
    assert ca_check.returncode == 0


def test_openssl_parses_the_extensions(issued):
    require_peer("openssl")
    d = issued
    kdc = openssl("x509", "-in", d / "kdc" / "cert.pem", "-noout", "-text")
    assert kdc.returncode == 0
    assert "Signing KDC Response" in kdc.stdout  # id-pkinit-KPKdc
    assert "othername: 1.3.6.1.5.2.2" in kdc.stdout.replace("othername:1.3.6.1.5.2.2", "othername: 1.3.6.1.5.2.2")
    assert "DNS:kdc.example.test" in kdc.stdout
    assert "Digital Signature, Key Encipherment, Key Agreement" in kdc.stdout
    assert "CA:FALSE" in kdc.stdout
    prov = openssl("x509", "-in", d / "prov" / "cert.pem", "-noout", "-text")
    assert "PKINIT Client Auth" in prov.stdout  # id-pkinit-KPClientAuth
    assert "Digital Signature, Key Encipherment" in prov.stdout
    from common.asn1 import oids

    assert oids.ID_KERBTEL_EXT_MAC_ADDRESS in prov.stdout and oids.ID_KERBTEL_EXT_PHONE_IDS in prov.stdout
    assert oids.ID_KERBTEL_POLICY_OPERATOR in prov.stdout
    ca = openssl("x509", "-in", d / "mca" / "ca.pem", "-noout", "-text")
    assert "CA:TRUE, pathlen:0" in ca.stdout and "Certificate Sign, CRL Sign" in ca.stdout
    assert oids.ID_KERBTEL_POLICY_MANUFACTURER in ca.stdout


def test_openssl_reads_the_keys_and_they_match(issued):
    require_peer("openssl")
    for leaf in ("dev", "kdc", "kdc-ec"):
        key_pub = openssl("pkey", "-in", issued / leaf / "key.pem", "-pubout")
        cert_pub = openssl("x509", "-in", issued / leaf / "cert.pem", "-noout", "-pubkey")
        assert key_pub.returncode == 0 and key_pub.stdout == cert_pub.stdout


def test_openssl_decodes_the_pkinit_san(issued):
    """The otherName value is KRB5PrincipalName { realm [0], principalName [1] { name-type, name-string } }."""
    require_peer("openssl")
    cert = pki.load_certificate(issued / "kdc" / "cert.pem")
    from cryptography import x509

    (other,) = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.OtherName)
    path = issued / "san.der"
    path.write_bytes(other.value)
    parsed = openssl("asn1parse", "-inform", "DER", "-in", path)
    assert parsed.returncode == 0, parsed.stderr
    lines = parsed.stdout
    assert "cont [ 0 ]" in lines and "cont [ 1 ]" in lines
    shape = [line.split("cons:")[-1].split("prim:")[-1].strip() for line in lines.splitlines()]
    assert shape == [
        "SEQUENCE", "cont [ 0 ]", "GENERALSTRING",  # realm
        "cont [ 1 ]", "SEQUENCE", "cont [ 0 ]", "INTEGER           :02",  # name-type NT-SRV-INST
        "cont [ 1 ]", "SEQUENCE", "GENERALSTRING", "GENERALSTRING",  # "krbtgt", realm
    ]
    assert b"\x1b\x06krbtgt" in other.value and other.value.count(b"\x1b\x0cEXAMPLE.TEST") == 2
