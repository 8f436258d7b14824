"""Calls in memory: two SCs (scd.calls.CallEngine) and their CTAs (ctad.calls.CallAgent), SIP
passed between engines as the ESP payload would be, with a clock the test chooses."""

from __future__ import annotations

import base64
import itertools
import re

import pytest

from common.asn1.kerbtel import find_restrictions, restriction_authorization_data
from common.callkey import ACK_HEADER, KEY_HEADER, CallKey, CallKeyAck, CallKeyError, make_ack, verify_ack
from common.esp import SUITE_AES_GCM_16
from common.pki import phone_id
from common.srtp import derive_media_keys
from ctad.calls import CallAgent, CallEnded, CallEstablished, CallKeysReady, IncomingCall
from ctad.signaling import CtaUserAgent
from scd.calls import CallConfig, CallEngine, CallRecord, CallRefused, KeyAckVerified
from scd.calls import CallEnded as ScCallEnded
from scd.signaling import CtaIdentity, SignalingConfig, SignalingEngine

A_NUM, B_NUM, C_NUM = "+15551230001", "+15552340001", "+15551230002"
CSR, PSAP_NUM = "+18005550100", "+15551230911"
SDP_A = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
SDP_B = b"v=0\r\no=- 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\n"


def counter_rng(start: int):
    counter = itertools.count(start)
    return lambda n: (next(counter) * 0x9E3779B97F4A7C15 % (1 << 64)).to_bytes(8, "big").ljust(n, b"\x5a")[:n] \
        if n <= 8 else b"".join((next(counter) * 0x9E3779B97F4A7C15 % (1 << 64)).to_bytes(8, "big") for _ in range((n + 7) // 8))[:n]


class MemorySink:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, record: CallRecord) -> None:
        self.records.append(record)


class Sc:
    def __init__(self, name: str, config: CallConfig, seed: int) -> None:
        self.name = name
        self.sig = SignalingEngine(SignalingConfig(domain=f"{name}.example.test"), rng=counter_rng(seed))
        self.sink = MemorySink()
        self.calls = CallEngine(self.sig, config, sink=self.sink, rng=counter_rng(seed + 50_000))
        self.calls.set_wallclock(1_700_000_000.0, 0.0)


class Cta:
    def __init__(self, name: str, sc: Sc, numbers: list[str], seed: int, restrictions=None) -> None:
        self.name, self.sc = name, sc
        self.principal = f"cta/{seed:012x}@EXAMPLE.TEST"
        self.ua = CtaUserAgent(numbers, domain=sc.sig.config.domain, local_host=f"10.0.0.{seed % 250}",
                               keepalive_interval=0, rng=counter_rng(seed * 1000))
        self.agent = CallAgent(self.ua)
        self.esp_address = (self.ua.local_host, 4500 + seed)  # where its ESP comes from
        ids = None if restrictions is not None else frozenset(phone_id(n) for n in numbers)
        sc.sig.open_channel(CtaIdentity(self.principal, ids, restrictions), 0.0)


class Net:
    """Moves datagrams until nothing moves; collects every engine's events in one ordered log."""

    def __init__(self) -> None:
        self.now = 0.0
        self.scs: dict[str, Sc] = {}
        self.ctas: list[Cta] = []
        self.log: list[tuple[str, object]] = []
        self.tamper = None  # f(bytes) -> bytes, applied to every datagram
        self.cta_tamper = None  # f(bytes) -> bytes, applied to what CTAs send their SC only
        self.esp_sources = True  # SCs learn each CTA's ESP address (as scd's server tells them)
        self.drop_direct = None  # f(DirectDatagram) -> bool: lose this CTA-to-CTA datagram
        self.direct: list = []  # every CTA-to-CTA datagram sent: (sender name, DirectDatagram)
        self.to_sc: list = []  # every datagram a CTA sent its SC: (sender name, bytes)

    def sc(self, name: str, **config) -> Sc:
        sc = self.scs[name] = Sc(name, CallConfig(**config), 1000 * (len(self.scs) + 1))
        return sc

    def cta(self, name: str, sc: Sc, numbers: list[str], restrictions=None) -> Cta:
        cta = Cta(name, sc, numbers, len(self.ctas) + 1, restrictions)
        self.ctas.append(cta)
        cta.ua.start(self.now)
        self.run()
        return cta

    def _x(self, data: bytes) -> bytes:
        return self.tamper(data) if self.tamper else data

    def run(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for cta in self.ctas:
                for data in cta.agent.datagrams_to_send():
                    moved = True
                    self.to_sc.append((cta.name, data))
                    if self.cta_tamper:
                        data = self.cta_tamper(data)
                    cta.sc.sig.receive(cta.principal, self._x(data), self.now, (cta.ua.local_host, 5060),
                                       cta.esp_address if self.esp_sources else None)
                    self._collect()
                for datagram in cta.agent.direct_datagrams_to_send():
                    moved = True
                    self.direct.append((cta.name, datagram))
                    if self.drop_direct and self.drop_direct(datagram):
                        continue
                    peer = next(c for c in self.ctas if c.esp_address == datagram.peer)
                    assert peer.agent.receive_direct(datagram.spi, self._x(datagram.data), self.now)
                    self._collect()
            for sc in self.scs.values():
                for principal, data, _port in sc.sig.datagrams_to_send():
                    moved = True
                    cta = next(c for c in self.ctas if c.principal == principal)
                    cta.ua.receive(self._x(data), self.now)
                    self._collect()
                for peer, data, _port in sc.calls.peer_datagrams_to_send():
                    moved = True
                    self.scs[peer].calls.receive_peer(sc.name, self._x(data), self.now)
                    self._collect()
            if not moved:
                return
        raise AssertionError("the network did not settle")

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            timers = [t for e in (*[s.calls for s in self.scs.values()], *[c.agent for c in self.ctas])
                      if (t := e.get_timer()) is not None and t <= end]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            for sc in self.scs.values():
                sc.calls.handle_timer(self.now)
            for cta in self.ctas:
                cta.agent.handle_timer(self.now)
            self._collect()
            self.run()
        self.now = end

    def _collect(self) -> None:
        for sc in self.scs.values():
            while (e := sc.calls.next_event()) is not None:
                self.log.append((sc.name, e))
        for cta in self.ctas:
            while (e := cta.agent.next_event()) is not None:
                self.log.append((cta.name, e))

    def events(self, who: str, kind=object) -> list:
        return [e for w, e in self.log if w == who and isinstance(e, kind)]

    def index(self, who: str, predicate) -> int:
        return next(i for i, (w, e) in enumerate(self.log) if w == who and predicate(e))


def two_scs() -> tuple[Net, Cta, Cta]:
    net = Net()
    sca = net.sc("sca", owned=("+1555123",), routes={"+1555234": "scb", "+1800": "scb"}, aliases={"911": PSAP_NUM})
    scb = net.sc("scb", owned=("+15552340000-+15552349999", "+1800555"), routes={"+1555123": "sca"})
    a = net.cta("A", sca, [A_NUM])
    b = net.cta("B", scb, [B_NUM])
    return net, a, b


def establish(net: Net, caller: Cta, callee: Cta, dialed: str, line: str | None) -> tuple[str, str]:
    call_a = caller.agent.place_call(dialed, SDP_A, net.now, line=line)
    net.run()
    incoming = net.events(callee.name, IncomingCall)[-1]
    net.advance(1.0)
    callee.agent.answer(incoming.call_id, SDP_B, net.now)
    net.run()
    return call_a, incoming.call_id


def only(items: list):
    assert len(items) == 1, items
    return items[0]


# --- the main flow ----------------------------------------------------------------------------


def test_cross_sc_call_same_keys_order_and_hangup():
    net, a, b = two_scs()
    call_a, call_b = establish(net, a, b, B_NUM, A_NUM)

    keys_a = only(net.events("A", CallKeysReady))
    keys_b = only(net.events("B", CallKeysReady))
    assert keys_a.role == "A" and keys_b.role == "B"
    assert keys_a.call_ref == keys_b.call_ref and keys_a.spi == keys_b.spi
    # media keys per direction: A's tx is B's rx and the other way round
    assert keys_a.media_tx.libsrtp_key() == keys_b.media_rx.libsrtp_key()
    assert keys_a.media_rx.libsrtp_key() == keys_b.media_tx.libsrtp_key()
    assert keys_a.media_tx.libsrtp_key() != keys_a.media_rx.libsrtp_key()
    # the CTA-to-CTA ESP SA pair: SPI for A -> B, SPI + 1 for B -> A
    assert keys_a.esp_out.spi == keys_b.esp_in.spi == keys_a.spi
    assert keys_b.esp_out.spi == keys_a.esp_in.spi == keys_a.spi + 1
    assert keys_a.esp_out.enc_key == keys_b.esp_in.enc_key and keys_a.esp_out.salt == keys_b.esp_in.salt
    assert keys_a.esp_out.enc_key != keys_a.esp_in.enc_key
    assert keys_b.remote_media == ("10.0.0.1", 40000)

    # seed order: key at B, B's ack verified by the source SC, only then the key at A, then A's ack
    ref = keys_a.call_ref
    i_b = net.index("B", lambda e: isinstance(e, CallKeysReady))
    i_ack_b = net.index("sca", lambda e: e == KeyAckVerified(ref, "B"))
    i_a = net.index("A", lambda e: isinstance(e, CallKeysReady))
    i_ack_a = net.index("sca", lambda e: e == KeyAckVerified(ref, "A"))
    assert i_b < i_ack_b < i_a < i_ack_a
    assert net.events("scb", KeyAckVerified) == []  # the destination SC only relays

    est_a = only(net.events("A", CallEstablished))
    assert est_a.remote_media == ("10.0.0.2", 40002) and est_a.remote_sdp == SDP_B
    assert only(net.events("B", CallEstablished)).remote_sdp == SDP_A

    net.advance(30.0)
    a.agent.hangup(call_a, net.now)
    net.run()
    assert only(net.events("A", CallEnded)).reason == "hung up"
    assert only(net.events("B", CallEnded)).reason == "hung up by the other party"
    for name in ("sca", "scb"):
        ended = only(net.events(name, ScCallEnded))
        assert not ended.failed and ended.call_id == ref
    assert not net.scs["sca"].calls.calls and not net.scs["scb"].calls.calls

    # lawful intercept: one record per call at each SC, with the sub-key the CTAs used
    for name, role in (("sca", "source"), ("scb", "destination")):
        rec = only(net.scs[name].sink.records)
        assert (rec.call_id, rec.role, rec.caller, rec.callee) == (ref, role, A_NUM, B_NUM)
        assert rec.outcome == "completed" and rec.spi == keys_a.spi
        assert rec.setup < rec.start < rec.end and rec.end - rec.start == pytest.approx(30.0)
        assert rec.setup >= 1_700_000_000.0
        assert rec.media_keys().a_to_b.libsrtp_key() == keys_a.media_tx.libsrtp_key()
        text = repr(rec) + str(rec)
        for secret in (rec.subkey.hex(), base64.urlsafe_b64encode(rec.subkey).decode().rstrip("="),
                       repr(rec.subkey)):
            assert secret not in text
    rec = net.scs["sca"].sink.records[0]
    assert rec.caller_principal == a.principal and rec.callee_principal == "sc:scb"


def test_hangup_from_the_callee_ends_both_legs():
    net, a, b = two_scs()
    call_a, call_b = establish(net, a, b, B_NUM, A_NUM)
    b.agent.hangup(call_b, net.now)
    net.run()
    assert only(net.events("A", CallEnded)).reason == "hung up by the other party"
    assert only(net.events("B", CallEnded)).reason == "hung up"
    assert only(net.events("sca", ScCallEnded)).reason == "hung up by the callee"
    assert only(net.events("scb", ScCallEnded)).reason == "hung up by the callee"
    assert len(net.scs["sca"].sink.records) == len(net.scs["scb"].sink.records) == 1


def test_same_sc_call():
    net, a, _b = two_scs()
    c = net.cta("C", net.scs["sca"], [C_NUM])
    call_a, call_c = establish(net, a, c, C_NUM, A_NUM)
    keys_a, keys_c = only(net.events("A", CallKeysReady)), only(net.events("C", CallKeysReady))
    assert keys_a.spi == keys_c.spi and keys_a.media_tx.libsrtp_key() == keys_c.media_rx.libsrtp_key()
    ref = keys_a.call_ref
    assert [e.party for e in net.events("sca", KeyAckVerified)] == ["B", "A"]
    assert net.index("C", lambda e: isinstance(e, CallKeysReady)) < net.index("A", lambda e: isinstance(e, CallKeysReady))
    assert only(net.events("C", CallEstablished)) and only(net.events("A", CallEstablished))
    c.agent.hangup(call_c, net.now)
    net.run()
    assert only(net.events("A", CallEnded)) and only(net.events("C", CallEnded))
    rec = only(net.scs["sca"].sink.records)
    assert (rec.call_id, rec.role, rec.callee_principal) == (ref, "local", c.principal)
    assert net.scs["scb"].sink.records == []


# --- restrictions and routing -----------------------------------------------------------------


def restricted_net() -> tuple[Net, Cta]:
    net, a, b = two_scs()
    net.cta("CSR", net.scs["scb"], [CSR])
    net.cta("PSAP", net.scs["sca"], [PSAP_NUM])
    restrictions = find_restrictions(restriction_authorization_data((CSR,), ("911",)))
    u = net.cta("U", net.scs["sca"], [], restrictions=restrictions)
    return net, u


@pytest.mark.parametrize("dialed, callee", [(CSR, "CSR"), ("911", "PSAP")])
def test_restricted_cta_reaches_csr_and_emergency(dialed, callee):
    net, u = restricted_net()
    call_u, _ = establish(net, u, next(c for c in net.ctas if c.name == callee), dialed, None)
    assert only(net.events("U", CallEstablished))
    assert only(net.events(callee, IncomingCall)).caller == "anonymous"
    keys_u, keys_x = only(net.events("U", CallKeysReady)), only(net.events(callee, CallKeysReady))
    assert keys_u.media_tx.libsrtp_key() == keys_x.media_rx.libsrtp_key()


@pytest.mark.parametrize("dialed, line", [(B_NUM, None), (B_NUM, A_NUM), (C_NUM, A_NUM), ("912", None), ("+15551230911", None)])
def test_restricted_cta_refused_elsewhere_whatever_it_sends(dialed, line):
    net, u = restricted_net()
    u.agent.place_call(dialed, SDP_A, net.now, line=line)
    net.run()
    ended = only(net.events("U", CallEnded))
    assert ended.status == 403 and "unprovisioned CTA" in ended.reason
    refused = only(net.events("sca", CallRefused))
    assert refused.status == 403 and refused.origin == u.principal
    assert net.events("B", IncomingCall) == [] and net.scs["sca"].sink.records == []


def test_restricted_cta_key_header_is_ignored():
    """A CTA cannot choose its own call key: the SC strips it and generates one."""
    net, u = restricted_net()
    forged = CallKey("ab" * 16, 4096, SUITE_AES_GCM_16, "AES_CM_128_HMAC_SHA1_80", bytes(32))

    def inject(data: bytes) -> bytes:
        if data.startswith(b"INVITE ") and b"Kerbtel-Call-Key" not in data:
            return data.replace(b"\r\nContent-Type", f"\r\n{KEY_HEADER}: {forged.header_value()}\r\nContent-Type".encode(), 1)
        return data

    net.tamper = inject
    establish(net, u, next(c for c in net.ctas if c.name == "CSR"), CSR, None)
    keys = only(net.events("CSR", CallKeysReady))
    assert keys.call_ref != forged.ref and keys.spi != forged.spi


def test_provisioned_cta_cannot_call_from_a_line_it_did_not_register():
    net, a, b = two_scs()
    a.agent.place_call(B_NUM, SDP_A, net.now, line=C_NUM)
    net.run()
    assert only(net.events("A", CallEnded)).status == 403


def test_unknown_number_404_and_unregistered_owned_number_480_then_a_call_works():
    net, a, b = two_scs()
    a.agent.place_call("+4930123456", SDP_A, net.now, line=A_NUM)
    net.run()
    assert only(net.events("A", CallEnded)).status == 404
    a.agent.place_call("+15551239999", SDP_A, net.now, line=A_NUM)  # owned by sca, nobody there
    net.run()
    assert net.events("A", CallEnded)[-1].status == 480
    a.agent.place_call("+15552345555", SDP_A, net.now, line=A_NUM)  # scb's range, not registered
    net.run()
    assert net.events("A", CallEnded)[-1].status == 480
    assert [e.status for e in net.events("sca", CallRefused)] == [404, 480]
    assert [e.status for e in net.events("scb", CallRefused)] == [480]
    establish(net, a, b, B_NUM, A_NUM)
    assert only(net.events("A", CallEstablished))


# --- failures -------------------------------------------------------------------------------


def _corrupt_ack(party: str):
    pattern = re.compile(rb"(Kerbtel-Call-Key-Ack: ref=[0-9a-f]+;party=" + party.encode() + rb";hash=)([0-9a-f])")

    def tamper(data: bytes) -> bytes:
        return pattern.sub(lambda m: m.group(1) + (b"0" if m.group(2) != b"0" else b"1"), data)
    return tamper


def test_wrong_callee_ack_fails_cleanly_and_the_next_call_succeeds():
    net, a, b = two_scs()
    net.tamper = _corrupt_ack("B")
    a.agent.place_call(B_NUM, SDP_A, net.now, line=A_NUM)
    net.run()
    ended = only(net.events("A", CallEnded))
    assert ended.status == 502 and "acknowledgement hash does not match" in ended.reason
    assert net.events("A", CallKeysReady) == []  # the caller never got the key
    assert only(net.events("B", CallEnded)).status == 487  # the callee's ringing leg was cancelled
    sc_end = only(net.events("sca", ScCallEnded))
    assert sc_end.failed and "callee's key acknowledgement" in sc_end.reason
    rec = only(net.scs["sca"].sink.records)
    assert rec.start is None and "acknowledgement" in rec.outcome
    net.advance(40.0)
    net.tamper = None
    establish(net, a, b, B_NUM, A_NUM)
    assert only(net.events("A", CallEstablished)) and only(net.events("B", CallEstablished))
    assert len(net.scs["sca"].sink.records) == 1  # the second call is still up


def test_wrong_caller_ack_tears_down_both_legs():
    net, a, b = two_scs()
    net.tamper = _corrupt_ack("A")
    call_a, call_b = establish(net, a, b, B_NUM, A_NUM)
    sc_end = only(net.events("sca", ScCallEnded))
    assert sc_end.failed and "caller's key acknowledgement" in sc_end.reason
    assert only(net.events("A", CallEnded)).reason == "hung up by the other party"
    assert only(net.events("B", CallEnded)).reason == "hung up by the other party"
    assert [e.party for e in net.events("sca", KeyAckVerified)] == ["B"]
    assert not net.scs["sca"].calls.calls and not net.scs["scb"].calls.calls


def test_cancel_before_answer():
    net, a, b = two_scs()
    call_a = a.agent.place_call(B_NUM, SDP_A, net.now, line=A_NUM)
    net.run()
    assert only(net.events("B", IncomingCall))
    net.advance(2.0)
    a.agent.hangup(call_a, net.now)
    net.run()
    assert only(net.events("A", CallEnded)).reason == "hung up"
    b_end = only(net.events("B", CallEnded))
    assert b_end.status == 487 and "cancelled" in b_end.reason
    for name in ("sca", "scb"):
        assert "cancelled" in only(net.events(name, ScCallEnded)).reason
        rec = only(net.scs[name].sink.records)
        assert rec.start is None and rec.end - rec.setup == pytest.approx(2.0)
    net.advance(40.0)  # timers drain; nothing is left behind
    assert not a.agent.calls and not b.agent.calls
    assert not net.scs["sca"].calls._by_tx and not net.scs["scb"].calls._by_tx


def test_callee_rejects_and_the_caller_gets_the_status():
    net, a, b = two_scs()
    a.agent.place_call(B_NUM, SDP_A, net.now, line=A_NUM)
    net.run()
    b.agent.reject(only(net.events("B", IncomingCall)).call_id, net.now, 486)
    net.run()
    assert only(net.events("A", CallEnded)).status == 486
    assert only(net.scs["sca"].sink.records).outcome.startswith("callee answered 486")


def test_callee_channel_closing_ends_the_call():
    net, a, b = two_scs()
    establish(net, a, b, B_NUM, A_NUM)
    net.scs["scb"].sig.close_channel(b.principal, "SA expired")
    net.run()
    assert "CTA channel closed" in only(net.events("scb", ScCallEnded)).reason
    assert only(net.events("A", CallEnded)).reason == "hung up by the other party"


def test_peer_invite_without_a_key_is_refused():
    net, a, b = two_scs()
    from common.sip.message import NameAddr, SipUri
    from common.sip.ua import build_request

    invite = build_request("INVITE", SipUri(host="scb", user=B_NUM), from_=NameAddr(SipUri(host="sca", user=A_NUM)).with_tag("t"),
                           to=NameAddr(SipUri(host="scb", user=B_NUM)), call_id="x", cseq=1, local=("sca", 5060),
                           branch="z9hG4bKnokey", contact=NameAddr(SipUri(host="sca")), body=SDP_A)
    net.scs["scb"].calls.receive_peer("sca", bytes(invite), net.now)
    out = net.scs["scb"].calls.peer_datagrams_to_send()
    assert b"SIP/2.0 400 Bad Request (no Kerbtel-Call-Key" in out[0][1]
    assert net.events("B", IncomingCall) == []


# --- the wire format ------------------------------------------------------------------------


def test_call_key_header_round_trip_and_ack():
    key = CallKey("0123456789abcdef" * 2, 0x10000, SUITE_AES_GCM_16, "AES_CM_128_HMAC_SHA1_80", bytes(range(32)))
    assert CallKey.parse(key.header_value()) == key
    assert bytes(range(32)).hex() not in repr(key)
    ack = make_ack(key, "B")
    assert CallKeyAck.parse(ack.header_value()) == ack
    assert verify_ack(key, "B", ack) is None
    assert verify_ack(key, "A", ack) is not None  # B's ack cannot stand in for A's
    other = CallKey(key.ref, key.spi + 2, key.suite, key.profile, key.subkey)
    assert verify_ack(other, "B", ack) == "acknowledgement hash does not match the sub-key and SPI"
    media = key.media_keys()
    assert media.a_to_b == derive_media_keys(bytes(range(32)), "AES_CM_128_HMAC_SHA1_80", 0x10000).a_to_b


@pytest.mark.parametrize("value", [
    "", "ref=00;spi=300;esp=20.0;media=AES_CM_128_HMAC_SHA1_80;key=AAAA",
    "ref=" + "0" * 32 + ";spi=255;esp=20.0;media=AES_CM_128_HMAC_SHA1_80;key=" + "A" * 43,
    "ref=" + "0" * 32 + ";spi=4294967295;esp=20.0;media=AES_CM_128_HMAC_SHA1_80;key=" + "A" * 43,
    "ref=" + "0" * 32 + ";spi=300;esp=99.0;media=AES_CM_128_HMAC_SHA1_80;key=" + "A" * 43,
    "ref=" + "0" * 32 + ";spi=300;esp=20.0;media=ROT13;key=" + "A" * 43,
    "ref=" + "0" * 32 + ";spi=300;esp=20.0;media=AES_CM_128_HMAC_SHA1_80;key=" + "A" * 20,
    "ref=" + "0" * 32 + ";spi=300;esp=20.0;media=AES_CM_128_HMAC_SHA1_80;key=" + "A" * 42 + "+",
    "ref=" + "0" * 32 + ";ref=" + "0" * 32 + ";spi=300;esp=20.0;media=X;key=A",
])
def test_call_key_header_refuses_malformed(value):
    with pytest.raises(CallKeyError):
        CallKey.parse(value)


def test_cta_refuses_invite_with_a_malformed_key():
    net, a, b = two_scs()

    def mangle(data: bytes) -> bytes:
        return re.sub(rb"(Kerbtel-Call-Key: [^\r]*;key=)[A-Za-z0-9_-]+", rb"\1AAAA", data)

    net.tamper = mangle
    a.agent.place_call(B_NUM, SDP_A, net.now, line=A_NUM)
    net.run()
    ended = only(net.events("A", CallEnded))
    assert ended.status == 400
    assert net.events("B", IncomingCall) == []
    assert ACK_HEADER not in repr(net.log)
