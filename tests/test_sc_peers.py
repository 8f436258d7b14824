"""scd/peers.py in memory: two signaling controllers, each with its ScKeyManager and a PeerLink,
kdcd's engine as the KDC, and a clock the test moves.

sc1 gets a ticket for sc2 with its keytab (PA-ENC-TIMESTAMP), runs the AP exchange with sc2's
ScKeyManager and both pass ESP both ways; the pair rekeys like a CTA's; the ticket is renewed
before it ends; a peer that changed its key (BADKEYVER) makes the link fetch a new ticket; an
unreachable KDC is retried with backoff; a Wake Up from the responder starts an idle link.
"""

from __future__ import annotations

import datetime as dt

import pytest

from common.config import ConfigError, config_from_dict
from common.keytab import Keytab, KeytabEntry
from common.krb5client import KeyIdentity
from common.principal import NameType, Principal
from kdcd.db import PrincipalAttributes
from kmutil import Clock, seeded_rng
from scd.km import SaEstablished, SaRecoveredEvent, ScKeyManager
from scd.km import SendTo as ScSendTo
from scd.peers import (
    KdcRequest,
    PeerLink,
    PeerLinkProblem,
    PeerSaEstablished,
    PeeringConfig,
    PeerScConfig,
    SendKm,
    TicketObtained,
    is_initiator_message,
    peer_for_client,
    should_initiate,
)
from test_kdc_engine_support import NOW, REALM, SC, make_realm

SC1 = SC
SC2 = Principal(("sc", "sc2.example.test"), REALM, NameType.SRV_HST)
KM1, KM2 = ("127.0.0.1", 11293), ("127.0.0.1", 21293)
ESP1, ESP2 = ("127.0.0.1", 14500), ("127.0.0.1", 24500)


def keytab_of(realm, principal, *, only_current=True) -> Keytab:
    entry = realm.db.get_principal(principal)
    keys = entry.current_keys if only_current else entry.keys
    return Keytab([KeytabEntry(entry.principal, k.kvno, k.key) for k in keys])


class Node:
    """One SC: its ScKeyManager (responder) and PeerLinks (initiators) on one km address."""

    def __init__(self, realm, principal, km_address, seed):
        self.principal = principal
        self.address = km_address
        self.keytab = keytab_of(realm, principal)
        self.responder = ScKeyManager(principal, self.keytab, rng=seeded_rng(seed))
        self.links: dict[tuple, PeerLink] = {}
        self.peer_sas: dict[str, PeerSaEstablished] = {}
        self.responder_sas: list[SaEstablished] = []
        self.acked: list[SaRecoveredEvent] = []
        self.problems: list[PeerLinkProblem] = []
        self.tickets: list[TicketObtained] = []

    def link_to(self, other: "Node", esp, seed, **kwargs) -> PeerLink:
        peer = PeerScConfig(name=str(other.principal.components[1].split(".")[0]), principal=str(other.principal),
                            km=other.address, esp=esp)
        link = PeerLink(self.principal, KeyIdentity.from_keytab(self.keytab, self.principal), peer,
                        rng=seeded_rng(seed), spi_in_use=lambda spi: self.responder.inbound_sa(spi) is not None,
                        **kwargs)
        self.links[other.address] = link
        return link


class Net:
    """Delivers every event at once: km datagrams between nodes, KDC requests to the engine."""

    def __init__(self, realm, clock, *nodes):
        self.realm, self.clock = realm, clock
        self.nodes = {n.address: n for n in nodes}
        self.kdc_down = False
        self.kdc_requests = 0

    def run(self, node: Node, events: list) -> None:
        queue = [(node, e) for e in events]
        while queue:
            owner, event = queue.pop(0)
            now, wall = self.clock.now, self.clock.wallclock
            if isinstance(event, KdcRequest):
                link = next(l for l in owner.links.values() if l.name == event.peer)
                self.kdc_requests += 1
                if self.kdc_down:
                    more = link.kdc_failed(event.exchange, "connection refused", now, wall)
                else:
                    reply = self.realm.engine.handle_request(event.data, wallclock=wall, now=now, peer="127.0.0.1:1")
                    more = link.receive_kdc(event.exchange, reply, now, wall)
                queue += [(owner, e) for e in more]
            elif isinstance(event, (SendKm, ScSendTo)):
                address = event.address if isinstance(event, SendKm) else event.peer
                queue += [(self.nodes[address], e) for e in self.deliver(owner, self.nodes[address], event.data)]
            elif isinstance(event, PeerSaEstablished):
                owner.peer_sas[event.peer] = event
            elif isinstance(event, SaEstablished):
                owner.responder_sas.append(event)
            elif isinstance(event, SaRecoveredEvent):
                owner.acked.append(event)
            elif isinstance(event, PeerLinkProblem):
                owner.problems.append(event)
            elif isinstance(event, TicketObtained):
                owner.tickets.append(event)

    def deliver(self, sender: Node, receiver: Node, data: bytes) -> list:
        now, wall = self.clock.now, self.clock.wallclock
        if is_initiator_message(data):
            return receiver.links[sender.address].receive_km(data, now, wall)
        return receiver.responder.receive(data, sender.address, now=now, wallclock=wall)

    def timers(self) -> None:
        for node in self.nodes.values():
            for link in node.links.values():
                if (t := link.get_timer()) is not None and t <= self.clock.now:
                    self.run(node, link.handle_timer(self.clock.now, self.clock.wallclock))
            if (t := node.responder.get_timer()) is not None and t <= self.clock.now:
                self.run(node, node.responder.handle_timer(self.clock.now, self.clock.wallclock))

    def advance(self, seconds: float, step: float = 1.0) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.advance(min(step, end - self.clock.now))
            self.timers()


@pytest.fixture
def world(tmp_path):
    realm = make_realm(tmp_path)
    realm.db.add_principal(SC2, now=NOW - dt.timedelta(days=2), attributes=PrincipalAttributes(is_service=True))
    clock = Clock(base=NOW)
    sc1, sc2 = Node(realm, SC1, KM1, 1), Node(realm, SC2, KM2, 2)
    return realm, clock, sc1, sc2, Net(realm, clock, sc1, sc2)


def esp_both_ways(sender_out, receiver_in, receiver_out, sender_in, text=b"INVITE sip:+15551230002 SIP/2.0"):
    _, inner = receiver_in.unprotect(sender_out.protect(text))
    assert inner == text
    _, inner = sender_in.unprotect(receiver_out.protect(b"SIP/2.0 180 Ringing"))
    assert inner == b"SIP/2.0 180 Ringing"


def test_two_scs_establish_one_pair_and_pass_esp_both_ways(world):
    realm, clock, sc1, sc2, net = world
    link = sc1.link_to(sc2, ESP2, 11)
    assert link.state == "idle"
    net.run(sc1, link.start(clock.now, clock.wallclock))
    assert link.state == "established" and net.kdc_requests == 1  # optimistic PA-ENC-TIMESTAMP
    assert [t.mode for t in sc1.tickets] == ["enc-timestamp"] and sc1.tickets[0].server.same_name(SC2)
    sa = sc1.peer_sas["sc2"]
    (resp,) = sc2.responder_sas
    assert resp.client.same_name(SC1) and resp.restrictions is None
    assert (resp.sc_spi, resp.cta_spi) == (sa.remote_spi, sa.local_spi)
    assert sc2.acked  # sc1 acknowledged: sc2 may send on the pair now
    out2 = sc2.responder.outbound_sa(KM1)
    assert out2 is not None
    esp_both_ways(link.outbound_sa(), sc2.responder.inbound_sa(sa.remote_spi), out2, link.inbound_sa(sa.local_spi))
    # The responder knows the SA is a peer SC's trunk, not a CTA's.
    peers = [PeerScConfig(name="sc1", principal=str(SC1), km=KM1, esp=ESP1)]
    assert peer_for_client(peers, resp.client).name == "sc1"
    assert peer_for_client(peers, Principal.parse(f"cta/020000000001@{REALM}")) is None


def test_each_sc_initiating_gives_two_independent_pairs(world):
    realm, clock, sc1, sc2, net = world
    l12, l21 = sc1.link_to(sc2, ESP2, 11), sc2.link_to(sc1, ESP1, 12)
    net.run(sc1, l12.start(clock.now, clock.wallclock))
    net.run(sc2, l21.start(clock.now, clock.wallclock))
    a, b = sc1.peer_sas["sc2"], sc2.peer_sas["sc1"]
    esp_both_ways(l12.outbound_sa(), sc2.responder.inbound_sa(a.remote_spi), sc2.responder.outbound_sa(KM1),
                  l12.inbound_sa(a.local_spi))
    esp_both_ways(l21.outbound_sa(), sc1.responder.inbound_sa(b.remote_spi), sc1.responder.outbound_sa(KM2),
                  l21.inbound_sa(b.local_spi))
    # sc1's inbound SPIs (its responder's and its link's) never collide: one ESP socket serves both.
    assert a.local_spi != sc1.responder_sas[0].sc_spi


def test_pair_rekeys_like_a_cta(world):
    realm, clock, sc1, sc2, net = world
    link = sc1.link_to(sc2, ESP2, 11)
    net.run(sc1, link.start(clock.now, clock.wallclock))
    first = sc1.peer_sas["sc2"]
    net.advance(3600 - 60 + 2)  # ScKeyManager's default lifetime 3600 s, grace 60 s: Rekey
    second = sc1.peer_sas["sc2"]
    assert second.rekey and second.local_spi != first.local_spi and second.remote_spi != first.remote_spi
    assert net.kdc_requests == 1  # a rekey needs no new ticket
    esp_both_ways(link.outbound_sa(), sc2.responder.inbound_sa(second.remote_spi), sc2.responder.outbound_sa(KM1),
                  link.inbound_sa(second.local_spi))


def test_ticket_is_renewed_before_it_ends(world):
    realm, clock, sc1, sc2, net = world
    link = sc1.link_to(sc2, ESP2, 11, ticket_lifetime=3600, renew_before=300)
    net.run(sc1, link.start(clock.now, clock.wallclock))
    end = link.ticket.endtime
    net.advance(3600 - 300 + 1, step=10)
    assert net.kdc_requests == 2 and link.ticket.endtime > end
    assert link.state == "established"


def test_peer_key_change_fetches_a_new_ticket(world):
    realm, clock, sc1, sc2, net = world
    link = sc1.link_to(sc2, ESP2, 11)
    net.run(sc1, link.start(clock.now, clock.wallclock))
    # sc2's key is rotated and sc2 restarts with only the new kvno in its keytab.
    realm.db.rotate_keys(SC2, now=clock.wallclock)
    sc2.responder = ScKeyManager(SC2, keytab_of(realm, SC2), rng=seeded_rng(5))
    net.run(sc2, sc2.responder.wake_up(KM1, now=clock.now, wallclock=clock.wallclock))
    codes = [p.code for p in sc1.problems if p.stage == "km"]
    assert codes and codes[0] == 44  # KRB_AP_ERR_BADKEYVER: a ticket problem
    assert net.kdc_requests == 2 and link.state == "established"
    sa = sc1.peer_sas["sc2"]
    esp_both_ways(link.outbound_sa(), sc2.responder.inbound_sa(sa.remote_spi), sc2.responder.outbound_sa(KM1),
                  link.inbound_sa(sa.local_spi))


def test_unreachable_kdc_is_retried_with_backoff(world):
    realm, clock, sc1, sc2, net = world
    link = sc1.link_to(sc2, ESP2, 11, kdc_retry_initial=1.0, kdc_retry_max=4.0)
    net.kdc_down = True
    net.run(sc1, link.start(clock.now, clock.wallclock))
    net.advance(12, step=0.1)
    retries = [p.retry_at for p in sc1.problems]
    gaps = [b - a for a, b in zip(retries, retries[1:])]
    assert all(g <= 4.0 * 1.1 + 0.2 for g in gaps) and gaps[-1] > 3  # doubling, capped
    net.kdc_down = False
    net.advance(5, step=0.1)
    assert link.state == "established"


def test_kdc_refusal_is_a_problem_not_an_exception(world):
    realm, clock, sc1, sc2, net = world
    sc1.keytab = Keytab([KeytabEntry(SC1, 1, e.key.__class__(e.key.enctype, bytes(len(e.key.contents))))
                         for e in sc1.keytab])  # wrong keys
    link = sc1.link_to(sc2, ESP2, 11)
    net.run(sc1, link.start(clock.now, clock.wallclock))
    assert sc1.problems[0].stage == "kdc" and sc1.problems[0].code == 24  # PREAUTH_FAILED
    assert link.state == "idle" and link.get_timer() == sc1.problems[0].retry_at


def test_wake_up_from_the_responder_starts_an_idle_link(world):
    realm, clock, sc1, sc2, net = world
    link = sc1.link_to(sc2, ESP2, 11)
    net.run(sc2, sc2.responder.wake_up(KM1, now=clock.now, wallclock=clock.wallclock))
    assert link.state == "established"


def test_stale_kdc_replies_are_ignored(world):
    realm, clock, sc1, sc2, net = world
    link = sc1.link_to(sc2, ESP2, 11)
    (request,) = link.start(clock.now, clock.wallclock)
    assert link.receive_kdc(request.exchange + 7, b"\x00", clock.now, clock.wallclock) == []
    assert link.kdc_failed(request.exchange + 7, "late", clock.now, clock.wallclock) == []
    assert link.stats["kdc_stale_reply"] == 1


# --- configuration and helpers -------------------------------------------------------------------


def test_peering_config_from_toml_table():
    table = {
        "kdc": "127.0.0.1:88",
        "peers": [{"name": "sc2", "principal": f"sc/sc2.example.test@{REALM}", "km": "127.0.0.1:1293",
                   "esp": "127.0.0.1:4500"}],
    }
    cfg = config_from_dict(table, PeeringConfig)
    assert cfg.peers[0].km == ("127.0.0.1", 1293) and cfg.peers[0].initiate == "auto"
    assert should_initiate(SC1, cfg.peers[0]) and not should_initiate(Principal.parse(f"sc/sc3.example.test@{REALM}"),
                                                                       cfg.peers[0])
    with pytest.raises(ConfigError, match="kdc"):
        config_from_dict({"peers": table["peers"]}, PeeringConfig)
    with pytest.raises(ConfigError, match="same name"):
        config_from_dict({**table, "peers": table["peers"] * 2}, PeeringConfig)
    with pytest.raises(ConfigError, match="principal"):
        config_from_dict({**table, "peers": [{**table["peers"][0], "principal": "a@b@c"}]}, PeeringConfig)
    with pytest.raises(ConfigError, match="initiate"):
        config_from_dict({**table, "peers": [{**table["peers"][0], "initiate": "maybe"}]}, PeeringConfig)
    assert config_from_dict({}, PeeringConfig).peers == []


def test_message_routing():
    assert [is_initiator_message(bytes([i, 1, 0x10])) for i in range(1, 7)] == [True, False, True, False, True, True]
    assert not is_initiator_message(b"")
