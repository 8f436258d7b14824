"""kdcd as a daemon against real clients (issue 3, "Must work against real peers" 1 and 2).

One `kerbtel init` deployment and one running kdcd for the whole module (tests/peers/kdcd.py).
Every ticket is checked the way a signaling controller would: decrypted with the key from the SC
keytab that `kerbtel init` wrote (our keytab, crypto and codec), and its session key compared with
the one the client stored in its ccache.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import subprocess
from pathlib import Path

import pytest

from common import pki
from common.asn1 import AS_REQ, TGS_REQ, MessageType, PaDataType, decode_as
from common.asn1.kerbtel import DESTINATION_CSR, DESTINATION_EMERGENCY, find_restrictions
from common.asn1.pkinit import PA_PK_AS_REP, PA_PK_AS_REQ, unwrap_auth_pack
from common.ccache import Ccache
from common.krb5client import AsClientConfig, AsExchange, AsResult, ClientIdentity, KdcError, send_to_kdc
from common.principal import Principal
from tests.conftest import require_peer
from tests.peers.kdcd import TcpRecorder, deployment_fixture, kerbtel, open_ticket

pytestmark = pytest.mark.interop

deployment = deployment_fixture()

SC1 = "sc/sc1.example.test@EXAMPLE.TEST"


def _run(argv, env, check=True, dep=None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=60)
    if check:
        tail = dep.log_tail() if dep is not None else ""
        assert proc.returncode == 0, f"{' '.join(map(str, argv))}: {proc.stdout}{proc.stderr}{tail}"
    return proc


def _klist_services(dep, ccache: Path) -> dict[str, tuple[str, str]]:
    """{service principal: (session key enctype, ticket enctype)} as MIT `klist -e` shows them."""
    out = _run(["klist", "-e", ccache], dep.mit_env(ccache)).stdout
    found = re.findall(r"^\S+ \S+\s+\S+ \S+\s+(\S+)\n\s+Etype \(skey, tkt\): (\S+), (\S+)", out, re.M)
    return {service: (skey, tkt) for service, skey, tkt in found}


def _sc_keytab(dep) -> str:
    return dep.manifest["scs"][0]["keytab"]


def _check_service_ticket(dep, ccache: Path, cta: dict):
    """The SC ticket in `ccache` decrypts with the SC keytab and holds the ccache's session key."""
    cred = Ccache.load(ccache).find(Principal.parse(SC1))
    ticket, enc = open_ticket(cred.ticket, _sc_keytab(dep))
    assert enc["key"].to_key() == cred.key
    assert enc["crealm"].native == "EXAMPLE.TEST"
    assert "/".join(enc["cname"]["name-string"].native) + "@EXAMPLE.TEST" == cta["principal"]
    assert ticket["enc-part"]["etype"].native == 18  # the service's strongest key
    return enc


# --- 1. MIT kinit against kdcd --------------------------------------------------------------------


def test_mit_kinit_dh_group16_then_kvno_through_our_tgs(deployment, tmp_path):
    """MIT kinit with pkinit_dh_min_bits = 4096 (MODP group 16) gets a TGT from kdcd over TCP;
    MIT kvno then gets the SC ticket through our TGS, armored with FAST as MIT 1.20 does."""
    require_peer("kinit", "klist", "kvno")
    dep = deployment
    cta = dep.manifest["ctas"][0]
    ccache = tmp_path / "cc"
    with TcpRecorder((dep.host, dep.port)) as relay:
        config = dep.client_config(tmp_path / "krb5.conf", kdc=relay.address, pkinit_dh_min_bits=4096)
        env = dep.mit_env(ccache, config)
        _run(["kinit", "-X", f"X509_user_identity=FILE:{cta['cert']},{cta['key']}", cta["principal"]], env, dep=dep)
        services = _klist_services(dep, ccache)
        assert services == {"krbtgt/EXAMPLE.TEST@EXAMPLE.TEST": ("aes256-cts-hmac-sha1-96", "aes256-cts-hmac-sha1-96")}
        out = _run(["kvno", SC1], env, dep=dep).stdout
        assert f"{SC1}: kvno = 1" in out

    # What MIT sent: a group 16 clientPublicValue, then a FAST-armored TGS-REQ.
    pkinit_requests = []
    for message in relay.requests:
        if message[0] != 0x6A:  # [APPLICATION 10] AS-REQ
            continue
        for pa in decode_as(AS_REQ, message)["padata"] or []:
            if pa["padata-type"].native == PaDataType.PA_PK_AS_REQ:
                pkinit_requests.append(decode_as(PA_PK_AS_REQ, pa["padata-value"].native))
    assert len(pkinit_requests) == 1
    _, auth_pack = unwrap_auth_pack(pkinit_requests[0]["signedAuthPack"].parsed)
    parameters = auth_pack["clientPublicValue"]["algorithm"]["parameters"]
    assert parameters["p"].native.bit_length() == 4096
    tgs = [decode_as(TGS_REQ, m) for m in relay.requests if m[0] == 0x6C]  # [APPLICATION 12]
    assert len(tgs) == 1
    assert PaDataType.PA_FX_FAST in [pa["padata-type"].native for pa in tgs[0]["padata"]]

    services = _klist_services(dep, ccache)
    assert services[SC1] == ("aes256-cts-hmac-sha1-96", "aes256-cts-hmac-sha1-96")
    _check_service_ticket(dep, ccache, cta)


@pytest.mark.parametrize("rsa", [False, True], ids=["dh14", "rsa"])
def test_mit_kinit_service_ticket_straight_from_as(deployment, tmp_path, rsa):
    require_peer("kinit", "klist")
    dep = deployment
    cta = dep.manifest["ctas"][1]
    ccache = tmp_path / "cc"
    args = ["kinit", "-X", f"X509_user_identity=FILE:{cta['cert']},{cta['key']}", "-S", SC1, cta["principal"]]
    if rsa:
        args[1:1] = ["-X", "flag_RSA_PROTOCOL=yes"]
    _run(args, dep.mit_env(ccache), dep=dep)
    assert _klist_services(dep, ccache) == {SC1: ("aes256-cts-hmac-sha1-96", "aes256-cts-hmac-sha1-96")}
    _check_service_ticket(dep, ccache, cta)


def _assert_restricted(enc, cta: dict) -> None:
    """The ticket carries kerbtel's restriction (docs/protocol.md): only the CSR and emergency
    numbers of the deployment's policy, and the device's MAC, inside AD-IF-RELEVANT (ad-type 1)."""
    assert [e["ad-type"].native for e in enc["authorization-data"]] == [1]
    restrictions = find_restrictions(enc["authorization-data"])
    assert restrictions is not None
    assert restrictions["version"].native == 1
    destinations = [(d["number"].native, d["kind"].native) for d in restrictions["destinations"]]
    assert destinations == [("611", DESTINATION_CSR), ("911", DESTINATION_EMERGENCY)]
    mac = Principal.parse(cta["principal"]).components[1]
    assert restrictions["device-mac"].native == bytes.fromhex(mac)


def test_mit_factory_fresh_cta_restriction_follows_the_tgt_through_our_tgs(deployment, tmp_path):
    require_peer("kinit", "klist", "kvno")
    dep = deployment
    cta = dep.manifest["ctas"][2]
    ccache = tmp_path / "cc"
    env = dep.mit_env(ccache)
    # MIT verifies the client's own chain too, so it needs the manufacturer root besides the
    # operator CA (-X X509_anchors replaces krb5.conf's pkinit_anchors).
    _run(["kinit", "-X", f"X509_user_identity=FILE:{cta['cert']},{cta['key']}",
          "-X", f"X509_anchors=FILE:{dep.manifest['kdc']['anchor']}", "-X", f"X509_anchors=FILE:{cta['issuer_anchor']}",
          cta["principal"]], env, dep=dep)
    _run(["kvno", SC1], env, dep=dep)
    assert SC1 in _klist_services(dep, ccache)
    _assert_restricted(_check_service_ticket(dep, ccache, cta), cta)


# --- 2. our client (the kerbtel kinit CLI) against kdcd ------------------------------------------


@pytest.mark.parametrize("mode", ["dh", "ecdh", "rsa"])
def test_kerbtel_kinit_provisioned(deployment, tmp_path, mode):
    require_peer("klist")
    dep = deployment
    cta = dep.manifest["ctas"][0]
    ccache = tmp_path / "cc"
    out = kerbtel("kinit", "--identity", cta["identity_dir"], "--kdc", dep.address, "--service", SC1,
                  "--mode", mode, "--ccache", ccache).stdout
    assert f"({mode}" in out
    assert _klist_services(dep, ccache) == {SC1: ("aes256-cts-hmac-sha1-96", "aes256-cts-hmac-sha1-96")}
    enc = _check_service_ticket(dep, ccache, cta)
    assert find_restrictions(enc["authorization-data"]) is None  # a provisioned CTA is unrestricted


def test_kerbtel_kinit_factory_fresh_cta_gets_a_restricted_ticket(deployment, tmp_path):
    require_peer("klist")
    dep = deployment
    cta = dep.manifest["ctas"][2]
    assert not cta["provisioned"]
    ccache = tmp_path / "cc"
    # Its issuer.pem is the manufacturer CA; the KDC certificate chains to the operator CA.
    kerbtel("kinit", "--identity", cta["identity_dir"], "--kdc", dep.address, "--service", SC1,
            "--anchor", dep.manifest["kdc"]["anchor"], "--ccache", ccache)
    assert SC1 in _klist_services(dep, ccache)
    _assert_restricted(_check_service_ticket(dep, ccache, cta), cta)


def _pkinit(dep, cta: dict, mode: str = "rsa", replies: list[bytes] | None = None, **options) -> AsResult:
    """One PKINIT AS exchange with our client library (in process); `replies` collects the
    KDC's replies, `options` go to AsClientConfig."""
    directory = Path(cta["identity_dir"])
    config = AsClientConfig(
        identity=ClientIdentity(pki.load_certificate(directory / "cert.pem"), pki.load_private_key(directory / "key.pem")),
        client=Principal.parse(cta["principal"]),
        realm="EXAMPLE.TEST",
        anchors=(pki.load_certificate(dep.manifest["kdc"]["anchor"]),),
        mode=mode,
        **options,
    )

    async def run() -> AsResult:
        exchange = AsExchange(config)
        request = exchange.start(wallclock=dt.datetime.now(dt.timezone.utc))
        while True:
            reply = await send_to_kdc(dep.host, dep.port, request, timeout=10)
            if replies is not None:
                replies.append(reply)
            step = exchange.receive(reply, wallclock=dt.datetime.now(dt.timezone.utc))
            if isinstance(step, AsResult):
                return step
            request = step.request

    return asyncio.run(run())


def test_suspended_customer_is_revoked_and_reactivation_is_noticed(deployment, tmp_path):
    """`kerbtel customer set-status` in another process while kdcd runs: the next PKINIT of the
    customer's CTA fails with KDC_ERR_CLIENT_REVOKED (18) although kdcd has the certificate in
    its verified-certificate cache, and succeeds again once the customer is active."""
    require_peer("kinit")
    dep = deployment
    cta = dep.manifest["ctas"][1]  # customer +15551230002
    db = dep.directory / "kdcd.db"
    first = _pkinit(dep, cta)  # puts the certificate into kdcd's cache...
    assert str(first.client) == cta["principal"]
    _pkinit(dep, cta, "dh")  # ...and this one is served from it
    assert _issued(dep, cta["principal"])[-1]["cert_cached"] is True
    try:
        kerbtel("customer", "set-status", "--db", db, "--phone", "+15551230002", "suspended")
        for mode in ("rsa", "dh"):
            with pytest.raises(KdcError) as info:
                _pkinit(dep, cta, mode)
            assert info.value.code == 18, info.value
            assert "suspended" in info.value.text
        mit = _run(["kinit", "-X", f"X509_user_identity=FILE:{cta['cert']},{cta['key']}", cta["principal"]],
                   dep.mit_env(tmp_path / "cc"), check=False)
        assert mit.returncode != 0 and "revoked" in mit.stderr.lower(), mit.stderr
        # The other customer is unaffected.
        assert _pkinit(dep, dep.manifest["ctas"][0]).client == Principal.parse(dep.manifest["ctas"][0]["principal"])
    finally:
        kerbtel("customer", "set-status", "--db", db, "--phone", "+15551230002", "active")
    before = len(_issued(dep, cta["principal"]))
    again = _pkinit(dep, cta)
    assert again.client == first.client
    assert len(_issued(dep, cta["principal"])) == before + 1


@pytest.mark.parametrize(
    ("offered", "used"),
    [
        (None, "aes256_cbc"),  # our client's default offer: aes256-cbc, then des-ede3-cbc
        (("aes128-cbc", "des-ede3-cbc"), "aes128_cbc"),
        (("des-ede3-cbc",), "tripledes_3key"),  # what MIT kinit 1.20 offers
    ],
)
def test_rsa_mode_reply_is_enveloped_with_the_first_cipher_the_client_offers(deployment, offered, used):
    """RFC 4556 3.2.3.2: the KDC encrypts encKeyPack with a supportedCMSTypes cipher, the
    client's order being its preference."""
    from common.asn1 import decode

    dep = deployment
    replies: list[bytes] = []
    options = {} if offered is None else {"cms_types": offered}
    _pkinit(dep, dep.manifest["ctas"][0], "rsa", replies, **options)
    as_rep = decode(replies[-1])
    (pa_value,) = [p["padata-value"].native for p in as_rep["padata"] if p["padata-type"].native == PaDataType.PA_PK_AS_REP]
    enveloped = decode_as(PA_PK_AS_REP, pa_value).chosen.parsed["content"]
    assert enveloped["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native == used


def _issued(dep, principal: str) -> list[dict]:
    """kdcd's kdc_as_issued log records for `principal`."""
    records = [json.loads(line) for line in dep.log_text().splitlines() if line.startswith("{")]
    return [r for r in records if r.get("event") == "kdc_as_issued" and r.get("principal") == principal]
