"""The CTA's line side in memory (ctad.line.LineSide): registrar and B2BUA between softphones
(ctad.softphone.PhoneAgent, sans I/O) and the CTA's calls with its SC (ctad.calls.CallAgent with
scd.calls.CallEngine), every datagram moved by the test with a clock it chooses. Media objects
are real `MediaRelay`s with fixed addresses, so a test can push RTP through both relays and see
that the two CTAs were keyed alike."""

from __future__ import annotations

import itertools
import struct

import pytest

from common.pki import phone_id
from common.sip.message import SipRequest, SipResponse, parse_message
from common.sip.sdp import SessionDescription
from ctad.calls import CallAgent
from ctad.line import LineCallEnded, LineConfig, LineSide, PhoneRegistered, StartMedia, StopMedia
from ctad.media import LINE_RTP, NETWORK, MediaRelay, sdp_for_line, sdp_for_network
from ctad.signaling import CtaUserAgent
from ctad.softphone import CallClosed, CallEstablished, IncomingCall, InfoReceived, PhoneAgent, Registered, Ringing
from scd.calls import CallConfig, CallEngine
from scd.calls import CallEnded as ScCallEnded
from scd.signaling import CtaIdentity, SignalingConfig, SignalingEngine

A_NUM, B_NUM = "+15551230001", "+15551230002"


def counter_rng(start: int):
    counter = itertools.count(start)

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += (next(counter) * 0x9E3779B97F4A7C15 % (1 << 64)).to_bytes(8, "big")
        return out[:n]

    return rng


class FakeMedia:
    """A real MediaRelay with made-up socket addresses (what MediaSession adds is sockets)."""

    def __init__(self, call: str, role: str, host: str, port: int) -> None:
        self.relay = MediaRelay.for_call(call, role)  # type: ignore[arg-type]
        self.line_address = (host, port)
        self.network_address = (host, port + 10)
        self.stopped = False

    def line_to_network_sdp(self, sdp: bytes) -> bytes:
        self.relay.accept_line_sdp(sdp)
        return bytes(sdp_for_network(sdp, self.network_address))

    def network_to_line_sdp(self, sdp: bytes) -> bytes:
        self.relay.accept_network_sdp(sdp)
        return bytes(sdp_for_line(sdp, self.line_address, self.line_address[1] + 1))


class Cta:
    def __init__(self, net: Net, name: str, number: str, seed: int, *, phone=None, hold_media=False) -> None:
        self.name, self.number, self.net = name, number, net
        self.host = f"127.0.0.{seed}"
        self.principal = f"cta/{seed:012x}@EXAMPLE.TEST"
        self.ua = CtaUserAgent([number], domain="sc1.example.test", local_host=self.host, keepalive_interval=0,
                               rng=counter_rng(seed * 1000))
        self.agent = CallAgent(self.ua)
        self.line = LineSide(LineConfig(numbers=(number,), host=self.host, port=5062, phone=phone),
                             ids=None)
        self.line.attach(self.agent, 0.0)
        self.hold_media = hold_media
        self.held: list[StartMedia] = []
        self.media: dict[str, FakeMedia] = {}
        self.events: list = []
        self._ports = itertools.count(20000, 100)
        net.sc.sig.open_channel(CtaIdentity(self.principal, frozenset([phone_id(number)]), None), 0.0)

    def start_media(self, ev: StartMedia) -> None:
        media = FakeMedia(ev.call, ev.role, self.host, next(self._ports))
        self.media[ev.call] = media
        self.line.media_started(ev.call, media, self.net.now)


class Net:
    def __init__(self) -> None:
        self.now = 0.0
        sig = SignalingEngine(SignalingConfig(domain="sc1.example.test"), rng=counter_rng(1))
        self.sc = type("Sc", (), {})()
        self.sc.sig = sig
        self.sc.calls = CallEngine(sig, CallConfig(owned=("+1555123",)), rng=counter_rng(5000))
        self.ctas: list[Cta] = []
        self.phones: dict[tuple[str, int], PhoneAgent] = {}
        self.phone_events: dict[str, list] = {}
        self.sc_events: list = []
        self.wire: list[tuple[tuple[str, int], bytes]] = []  # every line-side datagram, (to, data)
        self.inject: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []
        self.direct: list[tuple[str, bytes]] = []  # CTA-to-CTA datagrams: (sender, SIP)

    def cta(self, name: str, number: str, **kw) -> Cta:
        cta = Cta(self, name, number, len(self.ctas) + 1, **kw)
        self.ctas.append(cta)
        cta.ua.start(self.now)
        self.run()
        return cta

    def phone(self, name: str, number: str, cta: Cta | None, *, port: int, register: bool = False,
              auto_answer: bool = True, contact_user: str | None = None) -> PhoneAgent:
        host = "127.0.1.1"
        agent = PhoneAgent(number, host=host, sip_port=port, rtp_port=port + 1000,
                           line=(cta.host, 5062) if cta else None, auto_answer=auto_answer, rng=counter_rng(port * 7))
        if contact_user is not None:
            agent.contact = lambda: type(agent.aor())(type(agent.aor().uri)(host=host, user=contact_user, port=port))
        agent.name = name
        self.phones[(host, port)] = agent
        self.phone_events[name] = []
        if register:
            agent.register(self.now)
            self.run()
        return agent

    def line_of(self, address):
        return next((c for c in self.ctas if (c.host, 5062) == tuple(address)), None)

    def run(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            moved = False
            for source, dest, data in self.inject:
                moved = True
                cta = self.line_of(dest)
                cta.line.receive_datagram(data, source, self.now)
            self.inject = []
            for cta in self.ctas:
                for data in cta.ua.datagrams_to_send():
                    moved = True
                    self.sc.sig.receive(cta.principal, data, self.now, (cta.host, 5060), (cta.host, 4500))
                for datagram in cta.agent.direct_datagrams_to_send():  # CTA to CTA (in ESP, in ctad)
                    moved = True
                    self.direct.append((cta.name, datagram.data))
                    peer = next(c for c in self.ctas if (c.host, 4500) == datagram.peer)
                    peer.agent.receive_direct(datagram.spi, datagram.data, self.now)
                for data, dest in cta.line.datagrams_to_send():
                    moved = True
                    self.wire.append((dest, data))
                    phone = self.phones.get(tuple(dest))
                    if phone is not None:
                        phone.receive_datagram(data, (cta.host, 5062), self.now)
            for principal, data, _port in self.sc.sig.datagrams_to_send():
                moved = True
                cta = next(c for c in self.ctas if c.principal == principal)
                cta.ua.receive(data, self.now)
            for address, phone in self.phones.items():
                for data, dest in phone.datagrams_to_send():
                    moved = True
                    self.wire.append((dest, data))
                    cta = self.line_of(dest)
                    if cta is not None:
                        cta.line.receive_datagram(data, address, self.now)
            moved |= self._pump()
            if not moved:
                return
        raise AssertionError("the network did not settle")

    def _pump(self) -> bool:
        moved = False
        for cta in self.ctas:
            while (e := cta.agent.next_event()) is not None:
                moved = True
                cta.line.on_call_event(e, self.now)
            while (e := cta.line.next_event()) is not None:
                moved = True
                cta.events.append(e)
                if isinstance(e, StartMedia):
                    if cta.hold_media:
                        cta.held.append(e)
                    else:
                        cta.start_media(e)
                elif isinstance(e, StopMedia):
                    e.media.stopped = True
        while (e := self.sc.calls.next_event()) is not None:
            self.sc_events.append(e)
        for phone in self.phones.values():
            while (e := phone.next_event()) is not None:
                moved = True
                self.phone_events[phone.name].append(e)
        return moved

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            engines = [self.sc.calls, *[c.agent for c in self.ctas], *[c.line for c in self.ctas],
                       *self.phones.values()]
            timers = [t for e in engines if (t := e.get_timer()) is not None and t <= end]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            self.sc.calls.handle_timer(self.now)
            for cta in self.ctas:
                cta.agent.handle_timer(self.now)
                cta.line.handle_timer(self.now)
            for phone in self.phones.values():
                phone.handle_timer(self.now)
            self.run()
        self.now = end

    def events(self, phone: str, kind) -> list:
        return [e for e in self.phone_events[phone] if isinstance(e, kind)]

    def sent_to(self, address, method_or_status) -> list:
        out = []
        for dest, data in self.wire:
            if tuple(dest) != tuple(address):
                continue
            msg = parse_message(data)
            if isinstance(msg, SipRequest) and msg.method == method_or_status:
                out.append(msg)
            elif isinstance(msg, SipResponse) and msg.status == method_or_status:
                out.append(msg)
        return out


def only(items):
    assert len(items) == 1, items
    return items[0]


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


@pytest.fixture
def net():
    return Net()


def two_lines(net: Net, *, register_b=True, **kw):
    a = net.cta("A", A_NUM)
    b = net.cta("B", B_NUM, **kw)
    pa = net.phone("pa", A_NUM, a, port=7000)
    pb = net.phone("pb", B_NUM, b, port=7100, register=register_b)
    return a, b, pa, pb


def relay_audio(a: Cta, b: Cta, pa: PhoneAgent, pb: PhoneAgent, now: float) -> None:
    """RTP from phone A through A's relay (encrypt) and B's relay (decrypt) arrives at phone B
    unchanged, and the other way round."""
    ma, mb = only(list(a.media.values())), only(list(b.media.values()))
    for src, dst, m_src, m_dst, phone_src, phone_dst in ((a, b, ma, mb, pa, pb), (b, a, mb, ma, pb, pa)):
        packet = rtp(7, ssrc=0x1000 + len(src.name))
        out = m_src.relay.from_line(packet, ("127.0.1.1", phone_src.rtp_port), now)
        assert out is not None and out[0] == NETWORK, m_src.relay.stats()
        assert out[2] == m_dst.network_address and out[1] != packet
        back = m_dst.relay.from_network(out[1], m_src.network_address, now)
        assert back is not None, m_dst.relay.stats()
        assert back == (LINE_RTP, packet, ("127.0.1.1", phone_dst.rtp_port))


# --- registrar ----------------------------------------------------------------------------------


def test_register_binds_the_contact_and_lists_it(net):
    a = net.cta("A", A_NUM)
    phone = net.phone("pa", A_NUM, a, port=7000, contact_user="1000-0xabc")
    phone.register(net.now)
    net.run()
    reg = only(net.events("pa", Registered))
    assert reg.expires == 3600
    ok = only(net.sent_to(("127.0.1.1", 7000), 200))
    assert [str(c.uri) for c in ok.contacts] == ["sip:1000-0xabc@127.0.1.1:7000"]
    assert ok.contacts[0].expires == 3600
    assert only([e for e in a.events if isinstance(e, PhoneRegistered)]).contact == "sip:1000-0xabc@127.0.1.1:7000"
    uri, address = a.line.target_for(A_NUM, net.now)
    assert str(uri) == "sip:1000-0xabc@127.0.1.1:7000" and address == ("127.0.1.1", 7000)
    assert a.line.stats()["registrations"] == 1
    # the binding expires
    assert a.line.target_for(A_NUM, net.now + 3601) is None
    # unregister: expires 0
    phone.register(net.now, expires=0)
    net.run()
    assert a.line.target_for(A_NUM, net.now) is None


def _raw(method: str, uri: str, to: str, *, extra: str = "", body: bytes = b"", branch: str = "z9hG4bKx1",
         tag: str = ";tag=t1", contact: str = "<sip:x@127.0.1.1:7000>") -> bytes:
    head = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.1.1:7000;branch={branch}\r\n"
            f"From: <sip:x@127.0.0.1>{tag}\r\nTo: <{to}>\r\nCall-ID: c-{branch}\r\nCSeq: 1 {method}\r\n"
            f"Max-Forwards: 70\r\n" + (f"Contact: {contact}\r\n" if contact else "") + extra)
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _answers(net: Net, data: bytes):
    a = net.ctas[0]
    start = len(net.wire)
    net.inject.append((("127.0.1.1", 7000), (a.host, 5062), data))
    net.run()
    return [parse_message(d) for _, d in net.wire[start:]]


def test_registrar_refusals(net):
    a = net.cta("A", A_NUM)
    # not one of our numbers
    [r] = _answers(net, _raw("REGISTER", f"sip:{a.host}:5062", f"sip:+19999@{a.host}:5062"))
    assert r.status == 404
    # too brief
    [r] = _answers(net, _raw("REGISTER", f"sip:{a.host}:5062", f"sip:{A_NUM}@{a.host}:5062",
                             extra="Expires: 1\r\n", branch="z9hG4bKx2"))
    assert r.status == 423 and r.headers.get("Min-Expires") == "10"
    # Contact: * without Expires: 0
    [r] = _answers(net, _raw("REGISTER", f"sip:{a.host}:5062", f"sip:{A_NUM}@{a.host}:5062", contact="*",
                             branch="z9hG4bKx3"))
    assert r.status == 400
    # above the maximum: granted as the maximum; then Contact: * removes it
    [r] = _answers(net, _raw("REGISTER", f"sip:{a.host}:5062", f"sip:{A_NUM}@{a.host}:5062",
                             extra="Expires: 999999\r\n", branch="z9hG4bKx4"))
    assert r.status == 200 and r.contacts[0].expires == 86400
    [r] = _answers(net, _raw("REGISTER", f"sip:{a.host}:5062", f"sip:{A_NUM}@{a.host}:5062", contact="*",
                             extra="Expires: 0\r\n", branch="z9hG4bKx5"))
    assert r.status == 200 and r.contacts == [] and a.line.target_for(A_NUM, net.now) is None


def test_malformed_and_unusable_requests_get_4xx(net):
    a = net.cta("A", A_NUM)
    sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.1.1\r\ns=-\r\nc=IN IP4 127.0.1.1\r\nt=0 0\r\nm=audio 8000 RTP/AVP 0\r\n"
    # unparsable
    start = len(net.wire)
    net.inject.append((("127.0.1.1", 7000), (a.host, 5062),
                       b"INVITE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.1.1:7000;branch=z9hG4bKm\r\nCSeq: 1 INVITE\r\n\r\n"))
    net.run()
    assert [d.split(b" ", 2)[1] for _, d in net.wire[start:]] == [b"400"]
    cases = [
        (_raw("INVITE", f"sip:{a.host}:5062", f"sip:{a.host}:5062", body=sdp, branch="z9hG4bKm1"), 484),
        (_raw("INVITE", f"sip:abc@{a.host}:5062", f"sip:abc@{a.host}:5062", body=sdp, branch="z9hG4bKm2"), 484),
        (_raw("INVITE", f"sip:{B_NUM}@{a.host}:5062", f"sip:{B_NUM}@{a.host}", branch="z9hG4bKm3"), 488),
        (_raw("INVITE", f"sip:{B_NUM}@{a.host}:5062", f"sip:{B_NUM}@{a.host}", body=sdp, contact="",
              branch="z9hG4bKm4"), 400),
        (_raw("INVITE", f"sip:{B_NUM}@{a.host}:5062", f"sip:{B_NUM}@{a.host}", body=sdp, tag="",
              branch="z9hG4bKm5"), 400),
        (_raw("BYE", f"sip:{A_NUM}@{a.host}:5062", f"sip:{A_NUM}@{a.host};tag=zz", branch="z9hG4bKm6"), 481),
        (_raw("SUBSCRIBE", f"sip:{A_NUM}@{a.host}:5062", f"sip:{A_NUM}@{a.host}", branch="z9hG4bKm7"), 405),
        (_raw("INVITE", f"sip:{B_NUM}@{a.host}:5062", f"sip:{B_NUM}@{a.host}", body=sdp,
              extra="Require: 100rel\r\n", branch="z9hG4bKm8"), 420),
        (_raw("OPTIONS", f"sip:{a.host}:5062", f"sip:{a.host}:5062", branch="z9hG4bKm9"), 200),
    ]
    for data, status in cases:
        answers = _answers(net, data)
        assert [r.status for r in answers] == [status], (data, answers)
    assert a.line.stats()["malformed"] == 1
    assert not a.line.calls and not a.agent.calls


def test_no_sc_channel_is_503(net):
    a = net.cta("A", A_NUM)
    a.line.attach(None, net.now)
    pa = net.phone("pa", A_NUM, a, port=7000)
    pa.dial(B_NUM, net.now)
    net.run()
    closed = only(net.events("pa", CallClosed))
    assert closed.reason.startswith("503")


# --- calls --------------------------------------------------------------------------------------


def test_call_from_phone_a_to_registered_phone_b_and_hangup_by_a(net):
    a, b, pa, pb = two_lines(net, register_b=False)
    # B's phone registers with a Contact user that is not the AOR user (as baresip does)
    pb.contact = lambda: type(pb.aor())(type(pb.aor().uri)(host="127.0.1.1", user="1002-0xfeed", port=7100))
    pb.register(net.now)
    net.run()
    pa.dial(B_NUM, net.now)
    net.run()
    # A's phone sees ringing then the answer; B's phone was called on its registered Contact
    assert only(net.events("pa", Ringing)).status == 180
    est_a = only(net.events("pa", CallEstablished))
    est_b = only(net.events("pb", CallEstablished))
    invite = only(net.sent_to(("127.0.1.1", 7100), "INVITE"))
    assert str(invite.uri) == "sip:1002-0xfeed@127.0.1.1:7100"
    assert invite.from_.uri.user == A_NUM and invite.to.uri.user == B_NUM
    ma, mb = only(list(a.media.values())), only(list(b.media.values()))
    # each phone was given its own CTA's line address for media
    assert est_a.remote_media == ma.line_address and est_b.remote_media == mb.line_address
    # the SC leg carried the CTAs' network addresses, not the phones'
    assert ma.relay.network_peer == mb.network_address and mb.relay.network_peer == ma.network_address
    assert ma.relay.keyed and mb.relay.keyed
    relay_audio(a, b, pa, pb, net.now)
    assert a.line.stats()["established"] == b.line.stats()["established"] == 1
    # hang up at A: both legs end, media stopped
    net.advance(5)
    pa.hangup(net.now)
    net.run()
    assert only(net.events("pa", CallClosed)).reason == "local BYE"
    assert only(net.events("pb", CallClosed)).reason == "remote BYE"
    assert ma.stopped and mb.stopped
    assert not a.line.calls and not b.line.calls and not a.agent.calls and not b.agent.calls
    ended = only([e for e in net.sc_events if isinstance(e, ScCallEnded)])
    assert not ended.failed
    assert only([e for e in a.events if isinstance(e, LineCallEnded)]).established
    assert a.line.stats()["completed"] == b.line.stats()["completed"] == 1


def direct_sent(net: Net, cta: str) -> list[str]:
    out = []
    for who, data in net.direct:
        if who == cta:
            msg = parse_message(data)
            out.append(msg.method if isinstance(msg, SipRequest) else f"{msg.status}/{msg.cseq.method}")
    return out


def test_info_from_a_phone_reaches_the_other_phone_cta_to_cta(net):
    a, b, pa, pb = two_lines(net)
    pa.dial(B_NUM, net.now)
    net.run()
    only(net.events("pb", CallEstablished))
    before = dict(net.sc.calls.stats)  # the SC's counters must not move
    dtmf = b"Signal=7\r\nDuration=250\r\n"
    assert pa.send_info(dtmf, "application/dtmf-relay", net.now)
    net.run()
    info = only(net.events("pb", InfoReceived))
    assert (info.body, info.content_type) == (dtmf, "application/dtmf-relay")
    assert direct_sent(net, "A") == ["INFO"]
    assert dict(net.sc.calls.stats) == before
    # and back: B's phone to A's phone
    assert pb.send_info(b"Signal=#\r\nDuration=100\r\n", "application/dtmf-relay", net.now)
    net.run()
    assert only(net.events("pa", InfoReceived)).body.startswith(b"Signal=#")
    # the hang-up goes CTA to CTA as well, and the SC still sees the call end
    pa.hangup(net.now)
    net.run()
    assert direct_sent(net, "A") == ["INFO", "200/INFO", "BYE"]
    assert only(net.events("pb", CallClosed)).reason == "remote BYE"
    assert not only([e for e in net.sc_events if isinstance(e, ScCallEnded)]).failed


def test_hangup_by_the_called_phone(net):
    a, b, pa, pb = two_lines(net)
    pa.dial(B_NUM, net.now)
    net.run()
    assert only(net.events("pb", CallEstablished))
    pb.hangup(net.now)
    net.run()
    assert only(net.events("pa", CallClosed)).reason == "remote BYE"
    assert only(net.events("pb", CallClosed)).reason == "local BYE"
    assert not a.line.calls and not b.line.calls


def test_unregistered_phone_rung_on_the_configured_phone_address(net):
    a = net.cta("A", A_NUM)
    b = net.cta("B", B_NUM, phone=("127.0.1.1", 7100))
    pa = net.phone("pa", A_NUM, a, port=7000)
    pb = net.phone("pb", B_NUM, b, port=7100)
    pa.dial(B_NUM, net.now)
    net.run()
    invite = only(net.sent_to(("127.0.1.1", 7100), "INVITE"))
    assert str(invite.uri) == f"sip:{B_NUM}@127.0.1.1:7100"
    assert only(net.events("pa", CallEstablished)) and only(net.events("pb", CallEstablished))
    relay_audio(a, b, pa, pb, net.now)


def test_nobody_to_ring_is_480(net):
    a = net.cta("A", A_NUM)
    net.cta("B", B_NUM)
    pa = net.phone("pa", A_NUM, a, port=7000)
    pa.dial(B_NUM, net.now)
    net.run()
    assert only(net.events("pa", CallClosed)).reason.startswith("480")
    assert not a.line.calls and not a.agent.calls


def test_sc_refusal_status_reaches_the_phone(net):
    a = net.cta("A", A_NUM)
    pa = net.phone("pa", A_NUM, a, port=7000)
    pa.dial("+15551239999", net.now)  # owned, not registered: 480 from the SC
    net.run()
    assert only(net.events("pa", CallClosed)).reason.startswith("480")
    pa.dial("+4930123", net.now)  # no route: 404
    net.run()
    assert net.events("pa", CallClosed)[-1].reason.startswith("404")
    assert a.line.stats()["failed"] == 2


def test_route_header_from_an_outbound_proxy_is_stripped(net):
    a, b, pa, pb = two_lines(net)
    original = pa.dial

    def dial_with_route(target, now):
        call_id = original(target, now)
        return call_id

    invite_sent = []
    orig_send = pa.layer.send_request

    def send_request(request, destination, now):
        if request.method == "INVITE":
            request.headers.add("Route", f"<sip:{a.host}:5062;lr>")
            invite_sent.append(request)
        return orig_send(request, destination, now)

    pa.layer.send_request = send_request
    dial_with_route(B_NUM, net.now)
    net.run()
    assert invite_sent and invite_sent[0].headers.get("Route")
    assert only(net.events("pa", CallEstablished)) and only(net.events("pb", CallEstablished))


def test_cancel_from_the_calling_phone_before_the_answer(net):
    a, b, pa, pb = two_lines(net)
    pb.auto_answer = False
    pa.dial(B_NUM, net.now)
    net.run()
    assert only(net.events("pa", Ringing)) and only(net.events("pb", IncomingCall))
    pa.hangup(net.now)  # CANCEL
    net.run()
    assert only(net.events("pa", CallClosed)).reason.startswith("487")
    assert only(net.events("pb", CallClosed)).reason == "remote CANCEL"
    assert not a.line.calls and not b.line.calls and not a.agent.calls and not b.agent.calls
    assert all(m.stopped for c in (a, b) for m in c.media.values())


def test_called_phone_declines(net):
    a, b, pa, pb = two_lines(net)
    pb.auto_answer = False
    pa.dial(B_NUM, net.now)
    net.run()
    pb.hangup(net.now)  # 486 Busy Here
    net.run()
    assert only(net.events("pa", CallClosed)).reason.startswith("486")
    assert not a.line.calls and not b.line.calls
    assert b.line.stats()["completed"] == 1


def test_unanswered_phone_times_out(net):
    a, b, pa, pb = two_lines(net)
    pb.auto_answer = False
    pa.dial(B_NUM, net.now)
    net.run()
    net.advance(b.line.config.ring_timeout + 1)
    assert only(net.events("pb", CallClosed)).reason == "remote CANCEL"
    assert only(net.events("pa", CallClosed)).reason.startswith("480")
    assert not b.line.calls and b.line.stats()["failed"] == 1


def test_media_held_until_the_adapter_started_it_and_keys_waiting(net):
    a = net.cta("A", A_NUM)
    b = net.cta("B", B_NUM, hold_media=True)
    pa = net.phone("pa", A_NUM, a, port=7000)
    net.phone("pb", B_NUM, b, port=7100, register=True)
    pa.dial(B_NUM, net.now)
    net.run()
    # B's keys arrived before its media existed; nothing went to B's phone yet
    held = only(b.held)
    assert held.role == "B" and not net.sent_to(("127.0.1.1", 7100), "INVITE")
    b.start_media(held)
    net.run()
    assert only(list(b.media.values())).relay.keyed
    assert only(net.events("pa", CallEstablished)) and only(net.events("pb", CallEstablished))


def test_media_started_after_the_call_ended_is_stopped(net):
    a = net.cta("A", A_NUM, hold_media=True)
    net.cta("B", B_NUM)
    pa = net.phone("pa", A_NUM, a, port=7000)
    pa.dial(B_NUM, net.now)
    net.run()
    held = only(a.held)
    pa.hangup(net.now)  # CANCEL while the line side waits for media
    net.run()
    assert net.events("pa", CallClosed)[-1].reason.startswith("487")
    a.start_media(held)
    net.run()
    assert any(isinstance(e, StopMedia) and e.call == held.call for e in a.events)


def test_re_established_sc_channel_ends_calls_towards_the_phone(net):
    a, b, pa, pb = two_lines(net)
    pa.dial(B_NUM, net.now)
    net.run()
    assert only(net.events("pa", CallEstablished))
    a.line.attach(CallAgent(CtaUserAgent([A_NUM], domain="sc1.example.test", local_host=a.host,
                                         keepalive_interval=0)), net.now)
    net.run()
    assert only(net.events("pa", CallClosed)).reason == "remote BYE"


def test_second_call_after_the_first(net):
    a, b, pa, pb = two_lines(net)
    for n in range(2):
        pa.dial(B_NUM, net.now)
        net.run()
        assert len(net.events("pa", CallEstablished)) == n + 1
        pb.hangup(net.now)
        net.run()
        assert len(net.events("pa", CallClosed)) == n + 1
    assert a.line.stats()["completed"] == 2 and a.line.stats()["calls_from_phone"] == 2
    assert b.line.stats()["calls_to_phone"] == 2 and not b.line.calls


def test_sdp_passed_through_the_relays_keeps_codecs(net):
    a, b, pa, pb = two_lines(net)
    pa.dial(B_NUM, net.now)
    net.run()
    invite = only(net.sent_to(("127.0.1.1", 7100), "INVITE"))
    sd = SessionDescription.parse(invite.body)
    audio = sd.audio()
    assert audio.proto == "RTP/AVP" and [c.name for c in audio.codecs][:2] == ["PCMU", "PCMA"]
    mb = only(list(b.media.values()))
    assert sd.media_address(audio) == mb.line_address


def test_kerbtel_init_gives_every_cta_a_line_side(tmp_path):
    from ctad.config import load_ctad_config
    from kdcd.deployment import create_deployment

    dep = create_deployment(tmp_path / "realm")
    manifest = dep.manifest()
    lines = [c["line"] for c in manifest["ctas"]]
    assert len(set(lines)) == 3 and all(line.startswith("127.0.0.1:") for line in lines)
    for cta in manifest["ctas"]:
        cfg = load_ctad_config(cta["config"])
        assert f"{cfg.line.listen.host}:{cfg.line.listen.port}" == cta["line"]
        assert cfg.line.phone is None and cfg.media.host == "127.0.0.1"
