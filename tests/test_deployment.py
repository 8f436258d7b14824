"""`kerbtel init` (kdcd/deployment.py, common/cli/init.py) and kdcd end to end on what it writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from common import pki
from common.asn1 import AS_REQ, KRB_ERROR, ErrorCode, decode_as
from common.asn1.krb5 import KDC_REQ_BODY, principal_to_asn1
from common.cli import main as kerbtel
from common.keytab import Keytab
from common.pki import Purpose, Role
from common.principal import Principal
from kdcd.config import load_kdcd_config
from kdcd.db import SQLiteDatabase, load_master_key
from kdcd.deployment import DeploymentError, create_deployment, load_manifest
from tests.conftest import require_peer

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """One `kerbtel init` through the CLI, shared by the read-only tests below."""
    directory = tmp_path_factory.mktemp("deploy") / "realm"
    assert kerbtel(["init", str(directory), "--realm", "EXAMPLE.TEST"]) == 0
    return directory, load_manifest(directory)


def _paths(manifest: dict) -> list[str]:
    out = [manifest["krb5_conf"]]
    out += [manifest["kdc"][k] for k in ("config", "cert", "key", "anchor")]
    for sc in manifest["scs"]:
        out.append(sc["keytab"])
    for cta in manifest["ctas"]:
        out += [cta[k] for k in ("identity_dir", "cert", "key", "issuer_anchor")]
    return out


def test_manifest_schema(deployment):
    directory, m = deployment
    assert set(m) == {"realm", "krb5_conf", "kdc", "scs", "ctas", "echo", "li"}
    assert set(m["echo"]) == {"name", "principal", "identity_dir", "cert", "key", "config", "sc", "number",
                              "numbers", "key_log"}
    assert m["echo"]["number"] == "+15550009999" and m["echo"]["principal"] not in {c["principal"] for c in m["ctas"]}
    assert m["realm"] == "EXAMPLE.TEST"
    assert set(m["kdc"]) == {"config", "tcp", "udp", "cert", "key", "anchor"}
    host, port = m["kdc"]["tcp"].rsplit(":", 1)
    assert host == "127.0.0.1" and 0 < int(port) < 65536 and m["kdc"]["udp"] == m["kdc"]["tcp"]
    assert [s["name"] for s in m["scs"]] == ["sc1", "sc2"]
    assert [s["principal"] for s in m["scs"]] == ["sc/sc1.example.test@EXAMPLE.TEST", "sc/sc2.example.test@EXAMPLE.TEST"]
    for sc in m["scs"]:
        assert set(sc) == {"name", "principal", "keytab", "config", "km", "esp", "key_log"}
    assert [c["provisioned"] for c in m["ctas"]] == [True, True, False]  # provisioned first
    for cta in m["ctas"]:
        assert set(cta) == {
            "name", "principal", "provisioned", "identity_dir", "cert", "key", "issuer_anchor",
            "config", "sc", "numbers", "line", "key_log",
        }
        principal = Principal.parse(cta["principal"])
        assert principal.realm == "EXAMPLE.TEST" and principal.components[0] == "cta"
        assert len(principal.components[1]) == 12 and int(principal.components[1], 16) >= 0
    assert len({c["principal"] for c in m["ctas"]}) == 3
    for path in _paths(m):
        assert os.path.isabs(path) and os.path.exists(path), path
    assert json.loads((directory / "deployment.json").read_text()) == m


def test_file_modes(deployment):
    directory, m = deployment
    private = [m["kdc"]["key"], directory / "kdcd.db", directory / "kdcd.db.mkey",
               directory / "pki/operator-ca/ca.key", directory / "pki/manufacturer-ca/ca.key"]
    private += [sc["keytab"] for sc in m["scs"]] + [cta["key"] for cta in m["ctas"]]
    for path in private:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    for path in [m["kdc"]["cert"], m["kdc"]["anchor"], m["krb5_conf"]] + [c["cert"] for c in m["ctas"]]:
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0o044, path  # public: 0644
    for cta in m["ctas"]:
        assert stat.S_IMODE(os.stat(cta["identity_dir"]).st_mode) == 0o700


def test_certificates_verify(deployment):
    _, m = deployment
    operator = pki.load_certificate(m["kdc"]["anchor"])
    kdc_cert = pki.load_certificate(m["kdc"]["cert"])
    result = pki.verify_chain(kdc_cert, [operator], now=NOW, purpose=Purpose.KDC,
                              expected_principal=Principal.krbtgt("EXAMPLE.TEST"))
    assert result.role is Role.OPERATOR
    kdc_key = pki.load_private_key(m["kdc"]["key"])
    assert kdc_key.public_key().public_numbers() == kdc_cert.public_key().public_numbers()

    manufacturer = pki.load_certificate(Path(m["ctas"][2]["issuer_anchor"]))
    both = pki.CertificateVerifier([operator, manufacturer])
    for cta in m["ctas"]:
        cert = pki.load_certificate(cta["cert"])
        principal = Principal.parse(cta["principal"])
        verified = both.verify(cert, now=NOW, purpose=Purpose.CTA, expected_principal=principal)
        assert verified.provisioned is cta["provisioned"]
        assert verified.anchor.certificate == pki.load_certificate(cta["issuer_anchor"])
        assert pki.load_certificate(Path(cta["identity_dir"]) / "issuer.pem") == verified.anchor.certificate
        key = pki.load_private_key(cta["key"])
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        device = pki.load_certificate(Path(cta["identity_dir"]) / "device.pem")
        device_ok = pki.verify_chain(device, [manufacturer], now=NOW, purpose=Purpose.CTA, expected_principal=principal)
        assert device_ok.role is Role.MANUFACTURER
        assert key.public_key().public_numbers() == device.public_key().public_numbers()  # one key for life


def test_database_contents(deployment):
    directory, m = deployment
    cfg = load_kdcd_config(m["kdc"]["config"])  # the written config passes every check
    assert cfg.realm == "EXAMPLE.TEST"
    assert cfg.database.path == directory / "kdcd.db"
    assert cfg.kdc.kdc_certificate == Path(m["kdc"]["cert"])
    assert [str(p) for p in cfg.kdc.operator_anchors] == [m["kdc"]["anchor"]]
    assert [str(p) for p in cfg.kdc.manufacturer_anchors] == [m["ctas"][2]["issuer_anchor"]]
    assert cfg.listen.tcp[0].port == int(m["kdc"]["tcp"].rsplit(":", 1)[1])
    with SQLiteDatabase.open(cfg.database.path, master_key=load_master_key(cfg.database.master_key_path)) as db:
        for sc in m["scs"]:
            entry = db.get_principal(Principal.parse(sc["principal"]))
            assert entry.attributes.is_service
            keytab = Keytab.load(sc["keytab"])
            assert {e.key.enctype for e in keytab} == set(entry.enctypes)
            for e in keytab:
                assert e.kvno == entry.kvno and db.get_key(entry.principal, e.key.enctype).key == e.key
        for cta in m["ctas"]:
            principal = Principal.parse(cta["principal"])
            cert = pki.load_certificate(cta["cert"])
            if cta["provisioned"]:
                entry = db.get_principal(principal, with_keys=False)
                assert entry.attributes.requires_preauth and entry.attributes.allow_pkinit
                customers = db.customers_for_phone_ids(pki.phone_ids_from_certificate(cert))
                assert len(customers) == 1 and customers[0].active
            else:
                assert pki.phone_ids_from_certificate(cert) == ()
                with pytest.raises(LookupError):
                    db.get_principal(principal, with_keys=False)


def test_krb5_conf(deployment):
    _, m = deployment
    text = Path(m["krb5_conf"]).read_text()
    assert "default_realm = EXAMPLE.TEST" in text
    assert f"kdc = {m['kdc']['tcp']}" in text
    assert "udp_preference_limit = 1" in text
    assert f"pkinit_anchors = FILE:{m['kdc']['anchor']}" in text
    assert "dns_lookup_kdc = false" in text and "dns_lookup_realm = false" in text


@pytest.mark.interop
def test_mit_klist_reads_the_sc_keytabs(deployment):
    require_peer("klist")
    _, m = deployment
    for sc in m["scs"]:
        out = subprocess.run(["klist", "-ke", sc["keytab"]], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "KRB5_CONFIG": m["krb5_conf"]})
        assert out.returncode == 0, out.stderr
        assert out.stdout.count(sc["principal"]) == 5
        assert "aes256-cts-hmac-sha1-96" in out.stdout and "aes256-cts-hmac-sha384-192" in out.stdout


def test_refuses_non_empty_directory_unless_forced(tmp_path, capsys):
    target = tmp_path / "d"
    target.mkdir()
    (target / "something").write_text("x")
    with pytest.raises(DeploymentError, match="not empty"):
        create_deployment(target)
    assert kerbtel(["init", str(target)]) == 2
    assert "not empty" in capsys.readouterr().err
    first = create_deployment(target, force=True, realm="OTHER.TEST")
    second = create_deployment(target, force=True, realm="OTHER.TEST")  # replaces its own files
    assert (target / "something").exists()
    assert first.ctas[0].principal != second.ctas[0].principal
    assert load_manifest(target)["ctas"][0]["principal"] == second.ctas[0].principal
    with pytest.raises(DeploymentError, match="realm"):
        create_deployment(tmp_path / "e", realm="bad/realm")


# --- end to end: kdcd with the real engine on the deployment --------------------------------


class KdcdProcess:
    def __init__(self, config: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kdcd", "-c", config, "--log-format", "json", *extra],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if '"event": "ready"' in line and '"worker"' not in line:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        self._ready.wait(timeout)
        assert self.proc.poll() is None, "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def plain_as_req(cname: str, sname: str = "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST") -> bytes:
    client, server = Principal.parse(cname), Principal.parse(sname)
    body = KDC_REQ_BODY({
        "kdc-options": 0,
        "cname": principal_to_asn1(client)[0],
        "realm": client.realm,
        "sname": principal_to_asn1(server)[0],
        "till": (NOW + dt.timedelta(days=1)).replace(microsecond=0),
        "nonce": 12345,
        "etype": [18, 17],
    })
    return AS_REQ({"req-body": body}).dump()


def tcp_exchange(address: str, data: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(len(data).to_bytes(4, "big") + data)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
            chunk = sock.recv(65536)
            assert chunk, "connection closed"
            buf += chunk
    return buf[4:]


def udp_exchange(address: str, data: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(data, (host, int(port)))
        return sock.recv(65536)


def _error_code(reply: bytes) -> int:
    return int(decode_as(KRB_ERROR, reply)["error-code"].native)


def _set_workers(config: str, workers: int) -> None:
    path = Path(config)
    path.write_text(path.read_text().replace("workers = 1", f"workers = {workers}"))


@pytest.fixture
def fresh(tmp_path):
    dep = create_deployment(tmp_path / "realm")
    return load_manifest(dep.directory)


@pytest.mark.parametrize("workers", [1, 2])
def test_kdcd_answers_on_the_deployment(fresh, workers):
    m = fresh
    _set_workers(m["kdc"]["config"], workers)
    kdcd = KdcdProcess(m["kdc"]["config"])
    try:
        kdcd.wait_ready()
        request = plain_as_req(m["ctas"][0]["principal"])
        assert _error_code(tcp_exchange(m["kdc"]["tcp"], request)) == ErrorCode.KDC_ERR_PREAUTH_REQUIRED
        assert _error_code(udp_exchange(m["kdc"]["udp"], request)) == ErrorCode.KDC_ERR_PREAUTH_REQUIRED
        unknown = plain_as_req("nobody@EXAMPLE.TEST")
        assert _error_code(tcp_exchange(m["kdc"]["tcp"], unknown)) == ErrorCode.KDC_ERR_C_PRINCIPAL_UNKNOWN
        assert kdcd.stop() == 0
    finally:
        kdcd.stop()


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["dh", "rsa"])
def test_mit_kinit_pkinit_against_kdcd(fresh, tmp_path, mode):
    require_peer("kinit", "klist")
    m = fresh
    kdcd = KdcdProcess(m["kdc"]["config"])
    try:
        kdcd.wait_ready()
        env = {**os.environ, "KRB5_CONFIG": m["krb5_conf"], "KRB5CCNAME": f"FILE:{tmp_path / 'cc'}"}
        sc = m["scs"][0]["principal"]
        for cta in m["ctas"]:
            args = ["kinit", "-X", f"X509_user_identity=FILE:{cta['cert']},{cta['key']}", "-S", sc]
            if not cta["provisioned"]:
                # MIT verifies its own chain too: a factory-fresh CTA needs its manufacturer root
                # besides the operator CA that krb5.conf names for the KDC (-X replaces krb5.conf's).
                args += ["-X", f"X509_anchors=FILE:{m['kdc']['anchor']}", "-X", f"X509_anchors=FILE:{cta['issuer_anchor']}"]
            if mode == "rsa":
                args += ["-X", "flag_RSA_PROTOCOL=yes"]
            out = subprocess.run([*args, cta["principal"]], env=env, capture_output=True, text=True,
                                 timeout=30, stdin=subprocess.DEVNULL)
            assert out.returncode == 0, (cta["name"], out.stderr, "".join(kdcd.lines[-5:]))
            listing = subprocess.run(["klist"], env=env, capture_output=True, text=True, timeout=30)
            assert cta["principal"] in listing.stdout and sc in listing.stdout
        issued = [json.loads(line) for line in kdcd.lines if '"kdcd.server"' in line and '"AS-REP"' in line]
        assert len(issued) >= 3 and all(e["peer"].startswith("127.0.0.1:") for e in issued)
        assert kdcd.stop() == 0
    finally:
        kdcd.stop()


def test_cta_scs_places_a_cta_on_the_other_sc_and_routing_follows(tmp_path):
    from common.cli import main

    assert main(["init", str(tmp_path / "d"), "--cta-sc", "cta2=sc2"]) == 0
    m = json.loads((tmp_path / "d" / "deployment.json").read_text())
    assert [c["sc"] for c in m["ctas"]] == ["sc1", "sc2", "sc1"]
    cta2 = next(c for c in m["ctas"] if c["name"] == "cta2")
    sc2_config = Path(next(s for s in m["scs"] if s["name"] == "sc2")["config"]).read_text()
    assert all(number in sc2_config for number in cta2["numbers"])
    assert "sc/sc2.example.test" in Path(cta2["config"]).read_text()


def test_cta_scs_rejects_unknown_names(tmp_path):
    from common.cli import main

    assert main(["init", str(tmp_path / "d"), "--cta-sc", "cta9=sc2"]) == 2
    assert main(["init", str(tmp_path / "e"), "--cta-sc", "cta2"]) == 2
