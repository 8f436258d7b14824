"""Our PKINIT client (common.krb5client) against MIT krb5kdc 1.20 configured with our certificates.

DH group 14, group 16 forced by `pkinit_dh_min_bits = 4096` on the KDC (TD-DH-PARAMETERS retry),
RSA key transport; a signaling-controller ticket straight from the AS exchange and a TGT. The
ccache we write is read by MIT `klist`, and MIT `kvno` uses our TGT; the service ticket decrypts
with the service key MIT extracted to a keytab and carries the session key we derived.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys

import pytest

from common.asn1 import decode
from common.ccache import Ccache
from common.crypto import KeyUsage, decrypt
from common.keytab import Keytab
from common.krb5client import AsClientConfig, AsExchange, AsResult, ClientIdentity, KdcError, send_to_kdc
from common.pki import load_certificates, load_private_key
from common.principal import Principal
from conftest import require_peer
from peers.mit import MIT_PROGRAMS, realm_fixture

pytestmark = pytest.mark.interop

REALM = "EXAMPLE.TEST"
SC = Principal.parse(f"sc/sc1.example.test@{REALM}")


def _setup(realm, tmp_dir):
    realm.add_principal(str(realm.pki.cta_principal), requires_preauth=True, nokey=True)
    realm.add_principal("sc/sc1.example.test")
    return realm.ktadd(tmp_dir / "sc.keytab", "sc/sc1.example.test")


mit = realm_fixture(_setup, name="mit", with_pki=True, realm=REALM)


def _config(mit, **kwargs) -> AsClientConfig:
    pki = mit.pki
    identity = ClientIdentity(load_certificates(pki.cta_operator_cert)[0], load_private_key(pki.cta_key))
    return AsClientConfig(
        identity=identity,
        client=pki.cta_principal,
        realm=REALM,
        anchors=tuple(load_certificates(pki.operator_ca)),
        **kwargs,
    )


def _run(mit, config: AsClientConfig) -> tuple[AsResult, list[str]]:
    async def go():
        exchange = AsExchange(config)
        request = exchange.start(wallclock=dt.datetime.now(dt.timezone.utc))
        reasons = []
        while True:
            reply = await send_to_kdc(mit.host, mit.port, request, timeout=20)
            step = exchange.receive(reply, wallclock=dt.datetime.now(dt.timezone.utc))
            if isinstance(step, AsResult):
                return step, reasons
            reasons.append(step.reason)
            request = step.request

    return asyncio.run(go())


def _service_ticket_key(mit, result: AsResult):
    keytab = Keytab.load(mit.extra)
    ticket = decode(result.ticket)
    enc = ticket["enc-part"]
    key = keytab.key_for(SC, enc["etype"].native, kvno=enc["kvno"].native)
    return decode(decrypt(key, KeyUsage.TICKET, enc["cipher"].native), padded=True)


@pytest.mark.parametrize("mode", ["dh", "rsa"])
@pytest.mark.parametrize("optimistic", [True, False], ids=["optimistic", "mit-like"])
def test_service_ticket_from_mit_kdc(mit, mode, optimistic):
    require_peer(*MIT_PROGRAMS)
    result, reasons = _run(mit, _config(mit, service=SC, mode=mode, optimistic=optimistic))
    assert reasons == ([] if optimistic else ["freshness token"])
    assert result.server.same_name(SC) and result.client.same_name(mit.pki.cta_principal)
    assert result.kdf == ("sha256" if mode == "dh" else None)
    part = _service_ticket_key(mit, result)
    assert part["key"].to_key() == result.session_key
    assert Principal(tuple(part["cname"]["name-string"].native), part["crealm"].native).same_name(result.client)


@pytest.mark.parametrize("mode", ["dh", "rsa"])
def test_tgt_written_to_ccache_works_with_mit_klist_and_kvno(mit, tmp_path, mode):
    require_peer(*MIT_PROGRAMS)
    result, _ = _run(mit, _config(mit, mode=mode))
    cc = tmp_path / "cc"
    cache = Ccache(result.client, [result.to_credential()])
    cache.save(cc)
    out = mit.klist("-e", ccache=cc).stdout
    assert f"Default principal: {mit.pki.cta_principal}" in out
    assert f"krbtgt/{REALM}@{REALM}" in out
    kvno = mit.kvno("sc/sc1.example.test", ccache=cc).stdout
    assert "sc/sc1.example.test@EXAMPLE.TEST: kvno =" in kvno
    assert "sc/sc1.example.test@EXAMPLE.TEST" in mit.klist(ccache=cc).stdout


def test_dh_group_16_after_td_dh_parameters(mit):
    require_peer(*MIT_PROGRAMS)
    mit.reconfigure(pkinit_dh_min_bits=4096)
    try:
        result, reasons = _run(mit, _config(mit, service=SC, mode="dh"))
    finally:
        mit.reconfigure(pkinit_dh_min_bits=2048)
    assert reasons == ["DH group 16"]
    assert _service_ticket_key(mit, result)["key"].to_key() == result.session_key


def test_dh_group_16_asked_directly(mit):
    require_peer(*MIT_PROGRAMS)
    result, reasons = _run(mit, _config(mit, service=SC, mode="dh", dh_group=16))
    assert reasons == []
    assert _service_ticket_key(mit, result)["key"].to_key() == result.session_key


def test_kdf_sha1_only_and_no_kdf(mit):
    """Offering only SHA-1 makes MIT pick it; offering none makes it use octetstring2key."""
    require_peer(*MIT_PROGRAMS)
    result, _ = _run(mit, _config(mit, service=SC, kdfs=("sha1",)))
    assert result.kdf == "sha1"
    assert _service_ticket_key(mit, result)["key"].to_key() == result.session_key
    result, _ = _run(mit, _config(mit, service=SC, kdfs=()))
    assert result.kdf is None
    assert _service_ticket_key(mit, result)["key"].to_key() == result.session_key


def test_kdc_error_for_unknown_client(mit):
    require_peer(*MIT_PROGRAMS)
    config = _config(mit, service=SC)
    config = AsClientConfig(**{**config.__dict__, "client": Principal.parse(f"cta/0011223344ff@{REALM}")})
    with pytest.raises(KdcError) as err:
        _run(mit, config)
    assert err.value.code in (6, 75)  # C_PRINCIPAL_UNKNOWN, or CLIENT_NAME_MISMATCH if the SAN is checked first


def test_kerbtel_kinit_cli_writes_a_ccache_mit_klist_reads(mit, tmp_path):
    require_peer(*MIT_PROGRAMS)
    pki = mit.pki
    ident = tmp_path / "ident"
    ident.mkdir()
    (ident / "cert.pem").write_bytes(pki.cta_operator_cert.read_bytes())
    (ident / "key.pem").write_bytes(pki.cta_key.read_bytes())
    (ident / "key.pem").chmod(0o600)
    cc = tmp_path / "cc"
    proc = subprocess.run(
        [sys.executable, "-m", "common.cli", "kinit", "--identity", str(ident), "--kdc", f"{mit.host}:{mit.port}",
         "--service", str(SC), "--anchor", str(pki.operator_ca), "--ccache", str(cc)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert cc.stat().st_mode & 0o777 == 0o600
    out = mit.klist(ccache=cc).stdout
    assert str(SC) in out and f"Default principal: {pki.cta_principal}" in out
