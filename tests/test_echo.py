"""The echo test service (ctad/echo.py) in memory, with a clock the test chooses.

Two harnesses:
- `Net`: the real engines end to end without sockets: a caller CTA (`CallAgent` over a
  `CtaUserAgent`, with a real `MediaRelay` for its network leg), the SC (`SignalingEngine` +
  `CallEngine`) and the echo server (`CallAgent` + `EchoCore`). The SC's sub-key reaches the echo
  server first and its acknowledgement is verified before the caller gets the key (seed 430-442);
  RTP from the caller comes back with the echo's SSRC, encrypted in both directions.
- `FakeAgent`: the core alone, for refusals and the order of answer, keys and media.

Config and `kerbtel init` checks for echo mode are at the end.
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest

from common.callkey import CallKey
from common.config import ConfigError
from common.pki import phone_id
from common.rtp import RtpPacket
from ctad.calls import CallAgent, CallEnded, CallEstablished, CallKeysReady, IncomingCall
from ctad.echo import (
    REFLECTOR,
    CloseMedia,
    EchoAnswered,
    EchoCallEnded,
    EchoConfig,
    EchoCore,
    EchoKeyed,
    EchoRefused,
    OpenMedia,
)
from ctad.media import LINE_RTP, NETWORK, MediaRelay, sdp_for_network
from ctad.signaling import CtaUserAgent
from scd.calls import CallConfig, CallConnected, CallEngine, CallSetup, KeyAckVerified
from scd.calls import CallEnded as ScCallEnded
from scd.config import suite_by_name
from scd.signaling import CtaIdentity, SignalingConfig, SignalingEngine
from tests.test_ctad_line import counter_rng

A_NUM, ECHO_NUM = "+15551230001", "+15550009999"
A_HOST, ECHO_HOST = "127.0.0.2", "127.0.0.3"
A_MEDIA = (A_HOST, 30000)  # the caller CTA's network media leg
PHONE = ("127.0.1.1", 7000)  # the caller's softphone (the relay's line peer)
PROFILES = ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM", "3DES_CBC_SEED")
PHONE_OFFER = (b"v=0\r\no=- 1 1 IN IP4 127.0.1.1\r\ns=-\r\nc=IN IP4 127.0.1.1\r\nt=0 0\r\n"
               b"m=audio 7000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
               b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n")


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes | None = None, pt: int = 0) -> bytes:
    body = payload if payload is not None else bytes((seq + i) & 0x7F for i in range(160))
    return struct.pack("!BBHII", 0x80, pt, seq, 1000 + seq * 160, ssrc) + body


def caller_offer(media: tuple[str, int] = A_MEDIA) -> bytes:
    return bytes(sdp_for_network(PHONE_OFFER, media))


# --- the engines end to end -------------------------------------------------------------------


class Endpoint:
    """A CTA's SIP side towards the SC: user agent + call agent, one number."""

    def __init__(self, net: Net, name: str, number: str, seed: int, host: str) -> None:
        self.name, self.host = name, host
        self.principal = f"cta/{seed:012x}@EXAMPLE.TEST"
        self.ua = CtaUserAgent([number], domain="sc1.example.test", local_host=host, keepalive_interval=0,
                               rng=counter_rng(seed * 1000))
        self.agent = CallAgent(self.ua)
        net.sig.open_channel(CtaIdentity(self.principal, frozenset([phone_id(number)]), None), 0.0)


class Net:
    def __init__(self, *, profile: str = PROFILES[0], **echo) -> None:
        self.now = 0.0
        self.sig = SignalingEngine(SignalingConfig(domain="sc1.example.test"), rng=counter_rng(1))
        self.sc = CallEngine(self.sig, CallConfig(owned=("+1555",), media_profile=profile), rng=counter_rng(5000))
        self.log: list[tuple[str, object]] = []  # every event, in the order the engines produced them
        self.caller = Endpoint(self, "A", A_NUM, 1, A_HOST)
        self.server = Endpoint(self, "echo", ECHO_NUM, 2, ECHO_HOST)
        self.core = EchoCore(EchoConfig((ECHO_NUM,), **echo), rng=counter_rng(9000))
        self.core.attach(self.server.agent, self.now)
        self._ports = itertools.count(40000, 2)
        self.media: dict[str, tuple[str, int]] = {}  # echo call id -> its media socket
        self.closed: list[str] = []
        self.relay: MediaRelay | None = None  # the caller CTA's relay
        self.call_id: str | None = None
        for end in (self.caller, self.server):
            end.ua.start(self.now)
        self.run()

    def endpoint(self, principal: str) -> Endpoint:
        return next(e for e in (self.caller, self.server) if e.principal == principal)

    def run(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            moved = False
            for end in (self.caller, self.server):
                for data in end.ua.datagrams_to_send():
                    moved = True
                    self.sig.receive(end.principal, data, self.now, (end.host, 5060), (end.host, 4500))
                for datagram in end.agent.direct_datagrams_to_send():  # CTA to echo, in ESP in ctad
                    moved = True
                    peer = next(e for e in (self.caller, self.server) if (e.host, 4500) == datagram.peer)
                    peer.agent.receive_direct(datagram.spi, datagram.data, self.now)
            while (event := self.sc.next_event()) is not None:
                self.log.append(("sc", event))
            for principal, data, _port in self.sig.datagrams_to_send():
                moved = True
                self.endpoint(principal).ua.receive(data, self.now)
            moved |= self._pump()
            if not moved:
                return
        raise AssertionError("the network did not settle")

    def _pump(self) -> bool:
        moved = False
        while (event := self.caller.agent.next_event()) is not None:
            moved = True
            self.log.append(("A", event))
            if isinstance(event, CallKeysReady):
                self.relay = MediaRelay(event.call_id, "A", line_peer=PHONE)
                self.relay.set_direction_keys(event.media_profile, event.media_tx, event.media_rx)
            elif isinstance(event, CallEstablished):
                assert self.relay is not None
                self.relay.accept_network_sdp(event.remote_sdp)
        while (event := self.server.agent.next_event()) is not None:
            moved = True
            self.log.append(("echo-agent", event))
            self.core.on_call_event(event, self.now)
        while (event := self.core.next_event()) is not None:
            moved = True
            self.log.append(("echo", event))
            if isinstance(event, OpenMedia):
                address = self.media[event.call_id] = (ECHO_HOST, next(self._ports))
                self.core.media_opened(event.call_id, address, self.now)
            elif isinstance(event, CloseMedia):
                self.closed.append(event.call_id)
        return moved

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            engines = [self.sc, self.caller.agent, self.server.agent, self.core]
            timers = [t for e in engines if (t := e.get_timer()) is not None and t <= end]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            self.sc.handle_timer(self.now)
            self.caller.agent.handle_timer(self.now)
            self.server.agent.handle_timer(self.now)
            self.core.handle_timer(self.now)
            self.run()
        self.now = end

    def call(self, offer: bytes | None = None) -> str:
        self.call_id = self.caller.agent.place_call(ECHO_NUM, offer or caller_offer(), self.now, line=A_NUM)
        self.run()
        return self.call_id

    def events(self, who: str, kind) -> list:
        return [e for w, e in self.log if w == who and isinstance(e, kind)]

    def index(self, who: str, predicate) -> int:
        return next(i for i, (w, e) in enumerate(self.log) if w == who and predicate(e))

    @property
    def echo_call(self) -> str:
        return only(self.events("echo", EchoAnswered)).call_id

    def to_echo(self, packet: bytes) -> bytes:
        """The caller's relay encrypts one RTP packet from its phone: the datagram to the echo."""
        out = self.relay.from_line(packet, PHONE, self.now)
        assert out is not None and out[0] == NETWORK and out[2] == self.media[self.echo_call], self.relay.stats()
        return out[1]

    def reflect(self, packet: bytes) -> bytes | None:
        """One RTP packet from the caller's phone through both relays and the echo, back at its phone."""
        back = self.core.from_network(self.echo_call, self.to_echo(packet), A_MEDIA, self.now)
        if back is None:
            return None
        datagram, destination = back
        assert destination == A_MEDIA
        out = self.relay.from_network(datagram, self.media[self.echo_call], self.now)
        assert out is not None and out[0] == LINE_RTP and out[2] == PHONE, self.relay.stats()
        return out[1]


def only(items):
    assert len(items) == 1, items
    return items[0]


def test_the_sc_keys_the_echo_first_then_the_caller_seed_430_to_442():
    net = Net()
    net.call()
    setup = only(net.events("sc", CallSetup))
    assert setup.next_hop == net.server.principal and setup.callee == ECHO_NUM
    keyed = only(net.events("echo", EchoKeyed))
    answered = only(net.events("echo", EchoAnswered))
    assert keyed.call_ref == setup.call_id == answered.call_ref
    assert answered.caller == A_NUM and answered.line == ECHO_NUM and answered.caller_media == A_MEDIA
    # 430/432: the echo server holds the key and its acknowledgement verified before the caller
    # has the key; 440/442: then the caller gets it and acknowledges in its ACK
    echo_keys = net.index("echo-agent", lambda e: isinstance(e, CallKeysReady))
    ack_b = net.index("sc", lambda e: isinstance(e, KeyAckVerified) and e.party == "B")
    caller_keys = net.index("A", lambda e: isinstance(e, CallKeysReady))
    ack_a = net.index("sc", lambda e: isinstance(e, KeyAckVerified) and e.party == "A")
    connected = net.index("sc", lambda e: isinstance(e, CallConnected))
    assert echo_keys < ack_b < caller_keys < ack_a <= connected
    a_keys = only(net.events("A", CallKeysReady))
    b_keys = only(net.events("echo-agent", CallKeysReady))
    assert (a_keys.call_ref, a_keys.spi, a_keys.role, b_keys.role) == (b_keys.call_ref, b_keys.spi, "A", "B")
    assert only(net.events("A", CallEstablished)).remote_media == net.media[net.echo_call]
    assert net.core.stats()["answered"] == 1 and net.core.stats()["active"] == 1
    assert "key" not in repr(keyed).lower().replace("echokeyed", "")  # no key material in events


@pytest.mark.parametrize("profile", PROFILES)
def test_reflects_with_its_own_ssrc_encrypted_both_ways(profile):
    net = Net(profile=profile)
    net.call()
    answer = only(net.events("A", CallEstablished)).remote_sdp
    assert b"RTP/SAVP" in answer and b"a=rtcp-mux" in answer and b"a=sendrecv" in answer
    assert b"PCMU/8000" in answer and b"telephone-event" in answer
    ours: set[int] = set()
    for seq in range(100, 110):
        sent = rtp(seq)
        wire = net.to_echo(sent)
        assert sent[12:] not in wire and sent[12:44] not in wire  # encrypted towards the echo
        back = net.core.from_network(net.echo_call, wire, A_MEDIA, net.now)
        assert back is not None, net.core.stats()
        assert sent[12:44] not in back[0] and back[0] != wire  # encrypted back, with the other key
        heard = net.relay.from_network(back[0], net.media[net.echo_call], net.now)
        assert heard is not None and heard[0] == LINE_RTP, net.relay.stats()
        got, orig = RtpPacket.parse(heard[1]), RtpPacket.parse(sent)
        assert (got.sequence_number, got.timestamp, got.payload_type, got.marker, got.payload) == \
            (orig.sequence_number, orig.timestamp, orig.payload_type, orig.marker, orig.payload)
        assert got.ssrc != orig.ssrc
        ours.add(got.ssrc)
    assert len(ours) == 1  # one SSRC of ours per caller stream, kept for the call
    # a second stream of the caller gets another SSRC of ours, never the caller's
    other = RtpPacket.parse(net.reflect(rtp(7, ssrc=0x55667788)))
    assert other.ssrc not in ours | {0x55667788, 0x11223344}
    stats = net.core.stats()
    assert stats["echoed"] == 11 and stats["drops"] == {}, stats


def test_echoed_packet_does_not_decrypt_with_the_callers_direction():
    """The two directions have their own keys: what the echo sends cannot pass as the caller's."""
    net = Net()
    net.call()
    back = net.core.from_network(net.echo_call, net.to_echo(rtp(1)), A_MEDIA, net.now)
    assert back is not None
    assert net.core.from_network(net.echo_call, back[0], A_MEDIA, net.now) is None
    assert net.core.stats()["drops"] == {"network_auth": 1}


def test_garbage_is_dropped_and_counted_by_reason():
    net = Net(max_streams=2)
    net.call()
    call, core = net.echo_call, net.core
    good = net.to_echo(rtp(1))
    assert core.from_network(call, good, ("127.0.0.9", 30000), net.now) is None  # not the caller's SDP address
    assert core.from_network(call, b"\x80\x00" + bytes(60), A_MEDIA, net.now) is None  # not authentic
    assert core.from_network(call, b"\x01", A_MEDIA, net.now) is None  # not even a header
    assert core.from_network(call, good, A_MEDIA, net.now) is not None
    assert core.from_network(call, good, A_MEDIA, net.now) is None  # replayed
    rtcp = net.relay.from_line_rtcp(struct.pack("!BBHI", 0x80, 201, 1, 0x11223344), PHONE, net.now)
    assert rtcp is not None
    assert core.from_network(call, rtcp[1], A_MEDIA, net.now) is None  # SRTCP authenticated, not echoed
    assert core.from_network(call, net.to_echo(rtp(2, ssrc=2)), A_MEDIA, net.now) is not None
    assert core.from_network(call, net.to_echo(rtp(3, ssrc=3)), A_MEDIA, net.now) is None  # a third SSRC
    assert core.from_network("no-such-call", good, A_MEDIA, net.now) is None
    drops = core.stats()["drops"]
    assert drops.pop("network_malformed", 0) + drops.pop("network_auth", 0) == 2, core.stats()
    assert drops == {"network_wrong_source": 1, "network_replay": 1, "rtcp_not_echoed": 1, "too_many_ssrc": 1,
                     "unknown_call": 1}
    assert core.stats()["echoed"] == 2


def test_ends_when_the_caller_hangs_up():
    net = Net()
    net.call()
    call = net.echo_call
    net.advance(1.0)
    net.caller.agent.hangup(net.call_id, net.now)
    net.run()
    ended = only(net.events("echo", EchoCallEnded))
    assert ended.reason == "hung up by the other party" and ended.call_id == call
    assert ended.duration == pytest.approx(1.0) and ended.call_ref == only(net.events("echo", EchoKeyed)).call_ref
    assert call in net.closed and net.core.stats()["active"] == 0 and net.core.get_timer() is None
    assert only(net.events("sc", ScCallEnded)).failed is False
    # packets that still arrive for the call are dropped, counted
    assert net.core.from_network(call, b"\x80" + bytes(40), A_MEDIA, net.now) is None
    assert net.core.stats()["drops"] == {"unknown_call": 1}
    assert net.core.stats()["completed"] == 1


def test_hangs_up_at_the_maximum_duration():
    net = Net(max_duration=30.0)
    net.call()
    answered_at = net.now
    assert net.core.get_timer() == pytest.approx(answered_at + 30.0)
    net.advance(29.0)
    assert not net.events("echo", EchoCallEnded)
    assert net.reflect(rtp(1)) is not None  # still echoing
    net.advance(2.0)
    ended = only(net.events("echo", EchoCallEnded))
    assert ended.reason == "maximum duration (30 s) reached" and ended.duration == pytest.approx(30.0)
    assert ended.echoed == 1
    caller_end = only(net.events("A", CallEnded))
    assert caller_end.reason == "hung up by the other party"
    assert only(net.events("sc", ScCallEnded)).failed is False
    assert net.core.stats()["max_duration"] == 1 and net.echo_call in net.closed


def test_a_new_sc_channel_ends_the_calls_of_the_old_one():
    net = Net()
    net.call()
    net.core.attach(None, net.now)
    net._pump()
    ended = only(net.events("echo", EchoCallEnded))
    assert ended.reason == "the SC channel was re-established" and net.echo_call in net.closed


# --- the core alone ---------------------------------------------------------------------------


class FakeAgent:
    def __init__(self) -> None:
        self.actions: list[tuple] = []

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        self.actions.append(("answer", call_id, sdp))

    def reject(self, call_id: str, now: float, status: int = 486) -> None:
        self.actions.append(("reject", call_id, status))

    def hangup(self, call_id: str, now: float) -> None:
        self.actions.append(("hangup", call_id))


def keys_for(call_id: str, profile: str = PROFILES[0]) -> CallKeysReady:
    key = CallKey("ab" * 16, 4096, suite_by_name("aes-gcm-16"), profile, bytes(range(32)))
    tx, rx = key.media_keys().for_cta("B")
    out, inb = key.esp_keys().for_cta("B")
    return CallKeysReady(call_id, key.ref, "B", key.spi, profile, tx, rx, key.suite, out, inb, None)


def core_events(core: EchoCore) -> list:
    out = []
    while (event := core.next_event()) is not None:
        out.append(event)
    return out


@pytest.fixture
def core():
    c = EchoCore(EchoConfig((ECHO_NUM,), max_calls=1), rng=counter_rng(1))
    c.attach(FakeAgent(), 0.0)
    return c


@pytest.mark.parametrize("offer,why", [
    (b"not sdp", "unusable SDP offer"),
    (caller_offer().replace(b"m=audio", b"m=video"), "no active audio stream"),
    (caller_offer().replace(b"c=IN IP4 127.0.0.2", b"c=IN IP4 0.0.0.0"), "no active audio stream"),
    (caller_offer().replace(b"a=sendrecv", b"a=sendonly"), "needs sendrecv audio, not sendonly"),
    (caller_offer().replace(b" 0 8 101", b" 101"), "no audio codec"),
])
def test_unusable_offers_are_refused_488(core, offer, why):
    core.on_call_event(IncomingCall("c1", ECHO_NUM, A_NUM, offer), 0.0)
    refused = only([e for e in core_events(core) if isinstance(e, EchoRefused)])
    assert refused.status == 488 and why in refused.reason, refused
    assert core.agent.actions == [("reject", "c1", 488)] and core.stats()["refused"] == 1


def test_other_numbers_404_and_over_the_limit_486(core):
    core.on_call_event(IncomingCall("c1", "+15551230002", A_NUM, caller_offer()), 0.0)
    core.on_call_event(IncomingCall("c2", ECHO_NUM, A_NUM, caller_offer()), 0.0)  # max_calls = 1
    core.on_call_event(IncomingCall("c3", ECHO_NUM, A_NUM, caller_offer()), 0.0)
    assert core.agent.actions == [("reject", "c1", 404), ("reject", "c3", 486)]
    assert [type(e).__name__ for e in core_events(core)] == ["EchoRefused", "OpenMedia", "EchoRefused"]


def test_answers_only_with_both_media_socket_and_keys(core):
    core.on_call_event(IncomingCall("c1", ECHO_NUM, A_NUM, caller_offer()), 0.0)
    assert core_events(core) == [OpenMedia("c1")]
    core.media_opened("c1", (ECHO_HOST, 40000), 0.1)
    assert core.agent.actions == []  # no keys yet: nothing we could encrypt with
    core.on_call_event(keys_for("c1"), 0.2)
    action, call_id, sdp = only(core.agent.actions)
    assert (action, call_id) == ("answer", "c1")
    assert b"c=IN IP4 127.0.0.3" in sdp and b"m=audio 40000 RTP/SAVP 0 8 101" in sdp and b"a=rtcp-mux" in sdp
    assert b"127.0.0.2" not in sdp  # our own origin and address, not the caller's
    events = core_events(core)
    assert [type(e) for e in events] == [EchoKeyed, EchoAnswered]
    assert core.get_timer() == pytest.approx(0.2 + 300.0)
    core.on_call_event(CallEstablished("c1", b"", None), 0.3)
    core.on_call_event(CallEnded("c1", "hung up by the other party"), 5.0)
    ended = core_events(core)
    assert ended[0] == CloseMedia("c1") and ended[1].duration == pytest.approx(4.8)


def test_media_failure_refuses_503_and_keys_before_media_also_answer(core):
    core.on_call_event(IncomingCall("c1", ECHO_NUM, A_NUM, caller_offer()), 0.0)
    core.media_failed("c1", "no free UDP port", 0.0)
    assert core.agent.actions == [("reject", "c1", 503)]
    assert "no free UDP port" in core_events(core)[-1].reason
    core.on_call_event(IncomingCall("c2", ECHO_NUM, A_NUM, caller_offer()), 1.0)
    core.on_call_event(keys_for("c2", "3DES_CBC_SEED"), 1.0)
    core.media_opened("c2", (ECHO_HOST, 40002), 1.0)
    assert core.agent.actions[-1][:2] == ("answer", "c2")


def test_the_relay_line_peer_is_only_a_name():
    """Decrypted packets leave the relay towards REFLECTOR and re-enter from it: no socket there."""
    relay = MediaRelay("x", "B", line_peer=REFLECTOR)
    assert relay.line_peer.rtp == REFLECTOR and "key" not in repr(relay).lower()


# --- configuration and kerbtel init -----------------------------------------------------------


def _echo_toml(tmp_path: Path, extra: str, numbers: str = f'["{ECHO_NUM}"]') -> Path:
    identity = tmp_path / "id"
    identity.mkdir()
    for name in ("cert.pem", "key.pem", "issuer.pem"):  # the loader checks presence and mode only
        (identity / name).write_text("x")
    (identity / "key.pem").chmod(0o600)
    path = tmp_path / "echo.toml"
    path.write_text(f"""[cta]
identity = "id"
ccache = "ccache"
numbers = {numbers}
[kdc]
address = "127.0.0.1:88"
[sc]
principal = "sc/sc1.example.test@EXAMPLE.TEST"
km = "127.0.0.1:1293"
esp = "127.0.0.1:4500"
{extra}""")
    return path


def test_echo_config_section(tmp_path):
    from ctad.config import load_ctad_config

    cfg = load_ctad_config(_echo_toml(tmp_path, "[echo]\nenabled = true\nmax_duration = 60\n"))
    assert cfg.echo.enabled and cfg.echo.max_duration == 60 and cfg.echo.max_calls == 16
    assert cfg.line.listen is None


@pytest.mark.parametrize("extra,numbers,key", [
    ('[echo]\nenabled = true\n[line]\nlisten = "127.0.0.1:0"\n', f'["{ECHO_NUM}"]', "echo.enabled"),
    ("[echo]\nenabled = true\n", "[]", "cta.numbers"),
    ("[echo]\nenabled = true\nmax_duration = 0\n", f'["{ECHO_NUM}"]', "echo.max_duration"),
])
def test_echo_config_refusals(tmp_path, extra, numbers, key):
    from ctad.config import load_ctad_config

    with pytest.raises(ConfigError) as info:
        load_ctad_config(_echo_toml(tmp_path, extra, numbers))
    assert info.value.key == key, info.value


def test_kerbtel_init_creates_the_echo_server(tmp_path):
    import datetime as dt

    from common import pki
    from common.principal import Principal
    from ctad.config import load_ctad_config
    from kdcd.db import SQLiteDatabase, load_master_key
    from common.cli import main as kerbtel
    from common.cli.init import DEFAULT_ECHO_NUMBER
    from kdcd.deployment import ECHO_NUMBER, DeploymentError, create_deployment, load_manifest

    assert DEFAULT_ECHO_NUMBER == ECHO_NUMBER  # the CLI's copy (kept to start quickly) agrees

    target = tmp_path / "realm"
    assert kerbtel(["init", str(target), "--echo-number", "+1 555 000-7777", "--key-log"]) == 0
    m = load_manifest(target)
    echo = m["echo"]
    assert echo["number"] == "+15550007777" and echo["numbers"] == ["+15550007777"] and echo["sc"] == "sc1"
    assert echo["key_log"] and Path(echo["config"]).name == "echo.toml"
    cfg = load_ctad_config(echo["config"])
    assert cfg.echo.enabled and cfg.line.listen is None and cfg.cta.numbers == ["+15550007777"]
    assert cfg.sc.principal == m["scs"][0]["principal"]
    # an operator certificate with the echo number's phone ID, an active customer, a PKINIT principal
    operator = pki.load_certificate(m["kdc"]["anchor"])
    cert = pki.load_certificate(echo["cert"])
    verified = pki.CertificateVerifier([operator]).verify(
        cert, now=dt.datetime.now(dt.timezone.utc), purpose=pki.Purpose.CTA,
        expected_principal=Principal.parse(echo["principal"]))
    assert verified.provisioned
    assert pki.phone_ids_from_certificate(cert) == (phone_id("+15550007777"),)
    with SQLiteDatabase.open(target / "kdcd.db", master_key=load_master_key(target / "kdcd.db.mkey")) as db:
        assert db.get_principal(Principal.parse(echo["principal"]), with_keys=False).attributes.allow_pkinit
        customers = db.customers_for_phone_ids([phone_id("+15550007777")])
        assert len(customers) == 1 and customers[0].active
    # sc1 owns the number, sc2 routes it to sc1
    sc1, sc2 = (Path(s["config"]).read_text() for s in m["scs"])
    assert '"+15550007777"' in sc1.split("owned = ", 1)[1].split("\n", 1)[0]
    assert '"+15550007777" = "sc1"' in sc2
    with pytest.raises(DeploymentError, match="already"):
        create_deployment(tmp_path / "x", echo_number="+15551230001", key_bits=1024)
    with pytest.raises(DeploymentError, match="echo number"):
        create_deployment(tmp_path / "y", echo_number="611", key_bits=1024)
