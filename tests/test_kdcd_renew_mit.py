"""kdcd as a daemon against MIT krb5 1.20 clients: ticket renewal (`kinit -R`) and the customer
rule at the TGS (a suspended customer's TGT stops yielding service tickets).

One `kerbtel init` deployment and one running kdcd for the module (tests/peers/kdcd.py). The
customer status is changed with `kerbtel customer set-status` in another process while kdcd runs,
as an operator would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from common.asn1 import TicketFlags
from common.asn1.kerbtel import find_authorized_phone_ids
from common.ccache import Ccache
from common.pki import phone_id
from common.principal import Principal
from tests.conftest import require_peer
from tests.peers.kdcd import deployment_fixture, kerbtel, open_ticket

pytestmark = pytest.mark.interop

deployment = deployment_fixture()

SC1 = "sc/sc1.example.test@EXAMPLE.TEST"
KRBTGT = "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST"


def _run(argv, env, dep, check=True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"{' '.join(map(str, argv))}: {proc.stdout}{proc.stderr}{dep.log_tail()}"
    return proc


def _kinit(dep, cta: dict, env, *extra: str) -> None:
    _run(["kinit", *extra, "-X", f"X509_user_identity=FILE:{cta['cert']},{cta['key']}", cta["principal"]], env, dep)


def _tgt(ccache: Path):
    return Ccache.load(ccache).find(Principal.parse(KRBTGT))


def _set_status(dep, number: str, status: str) -> None:
    kerbtel("customer", "set-status", "--db", dep.directory / "kdcd.db", "--phone", number, status)


def _tgs_issued(dep, principal: str) -> list[dict]:
    records = [json.loads(line) for line in dep.log_text().splitlines() if line.startswith("{")]
    return [r for r in records if r.get("event") == "kdc_tgs_issued" and r.get("principal") == principal]


def test_mit_kinit_renew(deployment, tmp_path):
    """`kinit -r 2d` gets a renewable TGT from kdcd; `kinit -R` renews it through our TGS: same
    client, authtime and renew-till, a later start, the same lifetime, a new session key."""
    require_peer("kinit", "klist")
    dep = deployment
    cta = dep.manifest["ctas"][0]
    ccache = tmp_path / "cc"
    env = dep.mit_env(ccache)
    _kinit(dep, cta, env, "-r", "2d", "-l", "10h")
    first = _tgt(ccache)
    assert first.ticket_flags & TicketFlags.RENEWABLE
    assert first.renew_till - first.starttime == 2 * 86400
    assert first.endtime - first.starttime == 10 * 3600

    time.sleep(1.5)  # so the renewed ticket starts visibly later
    renews_before = sum(r["method"].endswith("-renew") for r in _tgs_issued(dep, cta["principal"]))
    _run(["kinit", "-R"], env, dep)
    renewed = _tgt(ccache)
    assert renewed.client == first.client
    assert renewed.authtime == first.authtime
    assert renewed.starttime > first.starttime
    assert renewed.endtime - renewed.starttime == 10 * 3600
    assert renewed.renew_till == first.renew_till
    assert renewed.ticket_flags == first.ticket_flags
    assert renewed.key != first.key and renewed.ticket != first.ticket
    assert sum(r["method"].endswith("-renew") for r in _tgs_issued(dep, cta["principal"])) == renews_before + 1

    # klist shows the renewed TGT (its new start time) and its renew-till.
    out = _run(["klist"], env, dep).stdout
    start = time.strftime("%m/%d/%y %H:%M:%S", time.localtime(renewed.starttime))
    renew_until = time.strftime("%m/%d/%y %H:%M:%S", time.localtime(renewed.renew_till))
    assert any(line.startswith(start) and line.rstrip().endswith(KRBTGT) for line in out.splitlines()), out
    assert f"renew until {renew_until}" in out, out

    # The renewed TGT serves the TGS, and the service ticket records the customer's phone ID.
    require_peer("kvno")
    _run(["kvno", SC1], env, dep)
    cred = Ccache.load(ccache).find(Principal.parse(SC1))
    _, enc = open_ticket(cred.ticket, dep.manifest["scs"][0]["keytab"])
    assert enc["key"].to_key() == cred.key
    assert find_authorized_phone_ids(enc["authorization-data"]) == (phone_id("+15551230001"),)


def test_mit_kvno_and_renewal_follow_the_customer_status(deployment, tmp_path):
    """With the customer suspended, MIT `kvno` (FAST-armored TGS-REQ) and `kinit -R` with the
    TGT issued before are refused (KDC_ERR_CLIENT_REVOKED); once reactivated both work again."""
    require_peer("kinit", "kvno")
    dep = deployment
    cta = dep.manifest["ctas"][1]  # customer +15551230002
    number = "+15551230002"
    ccache = tmp_path / "cc"
    env = dep.mit_env(ccache)
    _kinit(dep, cta, env, "-r", "2d")
    spare = tmp_path / "spare"
    shutil.copy(ccache, spare)  # the same TGT, without a cached service ticket
    _run(["kvno", SC1], dep.mit_env(spare), dep)  # works while the customer is active

    try:
        _set_status(dep, number, "suspended")
        refused = _run(["kvno", SC1], env, dep, check=False)
        assert refused.returncode != 0 and "revoked" in refused.stderr.lower(), refused.stderr + dep.log_tail()
        refused = _run(["kinit", "-R"], env, dep, check=False)
        assert refused.returncode != 0 and "revoked" in refused.stderr.lower(), refused.stderr + dep.log_tail()
        # Another customer's CTA is unaffected.
        other = tmp_path / "other"
        _kinit(dep, dep.manifest["ctas"][0], dep.mit_env(other))
        _run(["kvno", SC1], dep.mit_env(other), dep)
    finally:
        _set_status(dep, number, "active")

    out = _run(["kvno", SC1], env, dep).stdout
    assert f"{SC1}: kvno = 1" in out
    _run(["kinit", "-R"], env, dep)
    _run(["klist", "-s"], env, dep)
