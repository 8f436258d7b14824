"""PA-ENC-TIMESTAMP with a keytab against real KDCs.

MIT krb5kdc 1.20: a password principal (+requires_preauth) whose keys MIT extracted to a keytab
(`ktadd -norandkey`): our client, optimistic and MIT-like (PREAUTH_REQUIRED with ETYPE-INFO2 and
its salt, then the hinted key), gets a ticket for a service that decrypts with the service's MIT
keytab; MIT's enc-part is tagged [APPLICATION 26]. A stale keytab fails cleanly.

kdcd from `kerbtel init`: sc1 authenticates with scs/sc1/sc.keytab and gets a ticket for sc2 (the
SC-to-SC case of issue 5), in-process and with `kerbtel kinit --keytab`; MIT `klist` reads the
ccache, and MIT `kinit -k` (an independent PA-ENC-TIMESTAMP client) gets the same from kdcd.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess

import pytest

from common.asn1 import ErrorCode, decode
from common.asn1.krb5 import AS_REP
from common.ccache import Ccache
from common.keytab import Keytab
from common.krb5client import AsClientConfig, AsExchange, AsResult, KdcError, KeyIdentity, send_to_kdc
from common.principal import Principal
from conftest import require_peer
from peers.mit import MIT_PROGRAMS, realm_fixture
from tests.peers.kdcd import deployment_fixture, kerbtel, open_ticket

pytestmark = pytest.mark.interop

REALM = "EXAMPLE.TEST"
PEER_SC = Principal.parse(f"scpeer@{REALM}")
PASSWORD = "kerbtel sc peer password"
SERVICE = Principal.parse(f"sc/sc2.example.test@{REALM}")


def _setup(realm, tmp_dir):
    realm.add_principal("scpeer", password=PASSWORD, requires_preauth=True)
    realm.add_principal("sc/sc2.example.test")
    client = realm.ktadd(tmp_dir / "scpeer.keytab", "scpeer", norandkey=True)
    # kadmin cannot pick enctypes with -norandkey: keep MIT's aes128 entry only, in a second file.
    only128 = Keytab([e for e in Keytab.load(client) if e.key.enctype == 17])
    only128.save(tmp_dir / "scpeer128.keytab")
    return {
        "client": client,
        "client128": tmp_dir / "scpeer128.keytab",
        "service": realm.ktadd(tmp_dir / "sc2.keytab", "sc/sc2.example.test"),
    }


mit = realm_fixture(_setup, name="mit", realm=REALM)


def _run(host: str, port: int, config: AsClientConfig) -> tuple[AsResult, list[str], list[bytes]]:
    async def go():
        exchange = AsExchange(config)
        request = exchange.start(wallclock=dt.datetime.now(dt.timezone.utc))
        reasons, replies = [], []
        while True:
            reply = await send_to_kdc(host, port, request, timeout=20)
            replies.append(reply)
            step = exchange.receive(reply, wallclock=dt.datetime.now(dt.timezone.utc))
            if isinstance(step, AsResult):
                return step, reasons, replies
            reasons.append(step.reason)
            request = step.request

    return asyncio.run(go())


def _enc_part_tag(reply: bytes, key) -> int:
    from common.crypto import KeyUsage, decrypt

    rep = decode(reply)
    assert isinstance(rep, AS_REP)
    return decrypt(key, KeyUsage.AS_REP_ENC_PART, rep["enc-part"]["cipher"].native)[0]


# --- MIT krb5kdc ------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimistic", [True, False], ids=["optimistic", "mit-like"])
def test_mit_password_principal_keytab(mit, optimistic):
    identity = KeyIdentity.from_keytab(Keytab.load(mit.extra["client"]), PEER_SC)
    config = AsClientConfig(identity=identity, client=PEER_SC, realm=REALM, service=SERVICE, optimistic=optimistic)
    result, reasons, replies = _run(mit.host, mit.port, config)
    assert reasons == ([] if optimistic else ["PA-ENC-TIMESTAMP etype 18"])
    assert result.mode == "enc-timestamp" and result.reply_key.enctype == 18
    assert _enc_part_tag(replies[-1], result.reply_key) == 0x7A  # [APPLICATION 26], as peers.md says
    ticket, enc = open_ticket(result.ticket, mit.extra["service"])
    assert enc["key"].to_key() == result.session_key
    assert tuple(enc["cname"]["name-string"].native) == ("scpeer",)


def test_mit_hint_selects_the_keytab_entry(mit):
    """Keytab with aes128 only: the request offers 17 only, MIT hints 17, the reply is under it."""
    identity = KeyIdentity.from_keytab(Keytab.load(mit.extra["client128"]), PEER_SC)
    assert identity.enctypes == (17,)
    config = AsClientConfig(identity=identity, client=PEER_SC, realm=REALM, service=SERVICE, optimistic=False)
    result, reasons, _ = _run(mit.host, mit.port, config)
    assert reasons == ["PA-ENC-TIMESTAMP etype 17"] and result.reply_key.enctype == 17


def test_mit_wrong_key_fails_cleanly(mit):
    from common.crypto import string_to_key

    key = string_to_key(18, "not the password", PEER_SC.default_salt())
    config = AsClientConfig(identity=KeyIdentity((key,)), client=PEER_SC, realm=REALM, service=SERVICE)
    with pytest.raises(KdcError) as info:
        _run(mit.host, mit.port, config)
    assert info.value.code == ErrorCode.KDC_ERR_PREAUTH_FAILED


def test_kerbtel_kinit_keytab_against_mit_and_klist(mit, tmp_path):
    cc = tmp_path / "cc"
    out = kerbtel("kinit", "--keytab", mit.extra["client"], "--kdc", f"{mit.host}:{mit.port}",
                  "--service", str(SERVICE), "--ccache", cc).stdout
    assert "enc-timestamp" in out
    listing = mit.klist("-e", ccache=cc).stdout
    assert f"scpeer@{REALM}" in listing and f"sc/sc2.example.test@{REALM}" in listing


# --- kdcd from `kerbtel init` -------------------------------------------------------------------------


deployment = deployment_fixture()


def _sc(dep, name: str) -> dict:
    return next(s for s in dep.manifest["scs"] if s["name"] == name)


def test_sc1_gets_a_ticket_for_sc2_from_live_kdcd(deployment):
    sc1, sc2 = _sc(deployment, "sc1"), _sc(deployment, "sc2")
    client = Principal.parse(sc1["principal"])
    identity = KeyIdentity.from_keytab(Keytab.load(sc1["keytab"]), client)
    config = AsClientConfig(identity=identity, client=client, realm=REALM, service=Principal.parse(sc2["principal"]))
    result, reasons, replies = _run(deployment.host, deployment.port, config)
    assert reasons == [] and result.mode == "enc-timestamp"
    assert _enc_part_tag(replies[-1], result.reply_key) == 0x79  # kdcd: EncASRepPart [APPLICATION 25]
    ticket, enc = open_ticket(result.ticket, sc2["keytab"])
    assert enc["key"].to_key() == result.session_key
    assert tuple(enc["cname"]["name-string"].native) == client.components


def test_kerbtel_kinit_keytab_against_kdcd(deployment, tmp_path):
    sc1, sc2 = _sc(deployment, "sc1"), _sc(deployment, "sc2")
    cc = tmp_path / "cc"
    kerbtel("kinit", "--keytab", sc1["keytab"], "--kdc", deployment.address, "--service", sc2["principal"],
            "--ccache", cc)
    cred = Ccache.load(cc).credentials[0]
    assert str(cred.server) == sc2["principal"]
    require_peer("klist")
    listing = subprocess.run(["klist", "-e", str(cc)], capture_output=True, text=True, check=True,
                             env=deployment.mit_env(cc)).stdout
    assert sc1["principal"] in listing and sc2["principal"] in listing


def test_kerbtel_kinit_keytab_errors(deployment, tmp_path):
    sc1 = _sc(deployment, "sc1")
    proc = kerbtel("kinit", "--keytab", tmp_path / "missing.keytab", "--kdc", deployment.address,
                   "--ccache", tmp_path / "cc", check=False)
    assert proc.returncode == 2 and "missing.keytab" in proc.stderr
    proc = kerbtel("kinit", "--keytab", sc1["keytab"], "--principal", f"sc/other@{REALM}", "--kdc", deployment.address,
                   "--ccache", tmp_path / "cc", check=False)
    assert proc.returncode == 2 and "no key for" in proc.stderr


def test_mit_kinit_keytab_against_kdcd(deployment, tmp_path):
    """MIT's own PA-ENC-TIMESTAMP client with sc1's keytab, straight to an sc2 ticket."""
    require_peer(*MIT_PROGRAMS)
    sc1, sc2 = _sc(deployment, "sc1"), _sc(deployment, "sc2")
    cc = tmp_path / "cc"
    subprocess.run(["kinit", "-k", "-t", sc1["keytab"], "-S", sc2["principal"], sc1["principal"]],
                   env=deployment.mit_env(cc), check=True, capture_output=True, text=True, timeout=30)
    # MIT also stores configuration entries (X-CACHECONF:...); take the ticket for sc2.
    cred = next(c for c in Ccache.load(cc).credentials if str(c.server) == sc2["principal"])
    _, enc = open_ticket(cred.ticket, sc2["keytab"])
    assert enc["key"].to_key() == cred.key
