"""kdcd + scd + two ctads as real processes on loopback: registration, SC restart, ticket cache.

Restart bound (issue 4, real-peer item 5), with the configs `kerbtel init` writes (ctad:
keepalive_interval 3 s, keepalive_timeout 2 s, backoff 0.5-3 s +-30 %, AP Request retransmission
0.5-2 s): after `scd` is SIGKILLed and started again, every CTA is registered again within
RESTART_BOUND seconds of the new scd being ready, without operator action. The usual path: the
CTA's next keep-alive (<= 3 s) reaches the new scd on an SPI it does not know, scd answers with a
Wake Up, the CTA runs one AP exchange and REGISTERs again.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from common.ccache import Ccache
from tests.peers.daemons import daemons_fixture

pytestmark = pytest.mark.interop

RESTART_BOUND = 10.0
daemons = daemons_fixture()


@pytest.fixture(scope="module")
def running(daemons):
    daemons.start_scd("sc1")
    daemons.start_ctad("cta1")
    daemons.start_ctad("cta2")
    numbers = [n for c in ("cta1", "cta2") for n in daemons.cta(c)["numbers"]]
    daemons.wait_registered(numbers, timeout=30)
    return daemons, numbers


def test_both_ctas_register(running):
    d, numbers = running
    for name in ("cta1", "cta2"):
        state = d.wait_log(f"ctad:{name}", lambda r: r.get("event") == "state" and r.get("state") == "registered")
        assert state["lines"] == d.cta(name)["numbers"]
    regs = {r["number"]: r["principal"] for r in d.records("scd:sc1") if r.get("event") == "registered"}
    assert regs == {d.cta(c)["numbers"][0]: d.cta(c)["principal"] for c in ("cta1", "cta2")}
    # the ticket cache is an MIT ccache, mode 0600
    path = d.dir / "ctas" / "cta1" / "ccache"
    assert path.stat().st_mode & 0o777 == 0o600
    assert Ccache.load(path).tickets()[0].server.components[0] == "sc"


def test_scd_sigkill_and_restart_reregisters_every_cta(running):
    d, numbers = running
    d.kill("scd:sc1")
    time.sleep(0.5)
    d.start_scd("sc1")
    ready = time.monotonic()
    elapsed = d.wait_registered(numbers, timeout=RESTART_BOUND + 5)
    print(f"every CTA re-registered {elapsed:.2f} s after scd was ready again")
    assert time.monotonic() - ready <= RESTART_BOUND, f"re-registered after {elapsed:.1f} s"
    assert elapsed <= RESTART_BOUND


def test_ctad_reuses_cached_ticket_and_reruns_pkinit_when_expired(running):
    d, numbers = running
    # cta1: restart with a valid cache -> no PKINIT
    d.stop("ctad:cta1")
    d.start_ctad("cta1")
    d.wait_log("ctad:cta1", lambda r: r.get("event") == "state" and r.get("state") == "registered")
    events = [r.get("event") for r in d.records("ctad:cta1")]
    assert "ticket from cache" in events and "pkinit" not in events
    # cta2: its cached ticket has expired -> a new PKINIT, then registered again
    d.stop("ctad:cta2")
    path = d.dir / "ctas" / "cta2" / "ccache"
    cache = Ccache.load(path)
    past = int((dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).timestamp())
    cache.credentials = [c.__class__(**{**{f: getattr(c, f) for f in c.__slots__}, "endtime": past})
                         for c in cache.credentials]
    cache.save(path)
    d.start_ctad("cta2")
    d.wait_log("ctad:cta2", lambda r: r.get("event") == "state" and r.get("state") == "registered")
    events = [r.get("event") for r in d.records("ctad:cta2")]
    assert "pkinit" in events and "ticket from cache" not in events
    assert Ccache.load(path).tickets()[0].endtime > time.time()
