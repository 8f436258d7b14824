"""The direct CTA-to-CTA channel (ctad.calls module docstring): in-dialog requests that the CTAs
send each other in the call's SA pair, in memory with the two-SC network of test_calls."""

from __future__ import annotations

import pytest

from common.callkey import PEER_HEADER, CallKey, CallKeyError, e2e_tags, format_peer, parse_peer
from common.sip.message import parse_message
from ctad.calls import CallEnded, CallKeysReady, DirectChannelClosed, InfoReceived
from scd.calls import CallEnded as ScCallEnded
from tests.test_calls import A_NUM, B_NUM, SDP_A, establish, only, two_scs

T1 = 0.5  # CtaUserAgent's default


def direct_methods(net, sender: str) -> list[str]:
    out = []
    for name, datagram in net.direct:
        if name == sender:
            message = parse_message(datagram.data)
            out.append(getattr(message, "method", None) or f"{message.status}/{message.cseq.method}")
    return out


def test_each_cta_learns_the_other_ctas_esp_address_from_its_sc():
    net, a, b = two_scs()
    establish(net, a, b, B_NUM, A_NUM)
    keys_a, keys_b = only(net.events("A", CallKeysReady)), only(net.events("B", CallKeysReady))
    assert keys_a.peer_esp == b.esp_address and keys_b.peer_esp == a.esp_address
    assert net.direct == []  # nothing direct until someone needs it


def test_a_header_a_cta_writes_itself_is_replaced_by_its_scs():
    net, a, b = two_scs()
    forged = "6.6.6.6:6666"

    def forge(data: bytes) -> bytes:
        if data.startswith(b"INVITE "):
            return data.replace(b"\r\nContent-Length", f"\r\n{PEER_HEADER}: {forged}\r\nContent-Length".encode(), 1)
        return data

    net.cta_tamper = forge
    establish(net, a, b, B_NUM, A_NUM)
    assert only(net.events("B", CallKeysReady)).peer_esp == a.esp_address


def test_bye_goes_direct_and_the_scs_still_see_the_end():
    net, a, b = two_scs()
    call_a, call_b = establish(net, a, b, B_NUM, A_NUM)
    ref = only(net.events("A", CallKeysReady)).call_ref
    net.advance(10.0)
    a.agent.hangup(call_a, net.now)
    net.run()
    assert direct_methods(net, "A") == ["BYE"] and direct_methods(net, "B") == ["200/BYE"]
    bye = parse_message(net.direct[0][1].data)
    keys = only(net.events("A", CallKeysReady))
    tags = e2e_tags(CallKey(keys.call_ref, keys.spi, keys.esp_suite, keys.media_profile, bytes(32)))
    assert bye.call_id == ref and bye.from_.tag == tags["A"] and bye.to.tag == tags["B"]
    # B ended on the direct BYE; the SCs ended on A's BYE on its SC leg and recorded it
    assert only(net.events("B", CallEnded)).reason == "hung up by the other party"
    for name in ("sca", "scb"):
        assert not only(net.events(name, ScCallEnded)).failed
        assert only(net.scs[name].sink.records).outcome == "completed"
    # the SC's BYE that followed reached B's closed call and was answered 200
    assert [d.split(b"\r\n")[0] for name, d in net.to_sc if name == "B" and b" BYE\r\n" in d] \
        == [b"SIP/2.0 200 OK"]
    assert not net.scs["scb"].calls.calls
    # the channels linger for retransmissions, then go
    assert net.events("A", DirectChannelClosed) == []
    net.advance(64 * T1 + 1)
    closed_a, closed_b = only(net.events("A", DirectChannelClosed)), only(net.events("B", DirectChannelClosed))
    assert (closed_a.spi_out, closed_a.spi_in) == (closed_b.spi_in, closed_b.spi_out)


def test_direct_bye_lost_the_sc_bye_ends_the_call_and_a_late_direct_bye_gets_200():
    net, a, b = two_scs()
    call_a, call_b = establish(net, a, b, B_NUM, A_NUM)
    lost = []
    net.drop_direct = lambda d: not lost and not lost.append(d)  # lose the first one only
    a.agent.hangup(call_a, net.now)
    net.run()
    assert only(net.events("B", CallEnded)).reason == "hung up by the other party"  # via the SCs
    net.advance(T1 + 0.01)  # A's BYE retransmission reaches B's lingering channel
    assert direct_methods(net, "A") == ["BYE", "BYE"] and direct_methods(net, "B") == ["200/BYE"]


def test_callee_not_closed_by_its_sc_closes_its_own_sc_leg():
    net, a, b = two_scs()
    call_a, call_b = establish(net, a, b, B_NUM, A_NUM)
    # A's BYEs to its SC are all lost, the direct one arrives: B must not keep its SC leg open forever
    net.cta_tamper = lambda data: b"" if data.startswith(b"BYE ") and b"From: <sip:" + A_NUM.encode() in data else data
    a.agent.hangup(call_a, net.now)
    net.run()
    assert only(net.events("B", CallEnded)).reason == "hung up by the other party"
    assert net.events("scb", ScCallEnded) == []
    net.advance(64 * T1 + 1)
    assert only(net.events("scb", ScCallEnded)).reason == "hung up by the callee"
    assert only(net.scs["sca"].sink.records).outcome == "completed"


def test_info_goes_direct_and_not_through_the_scs():
    net, a, b = two_scs()
    call_a, call_b = establish(net, a, b, B_NUM, A_NUM)
    before = {name: dict(sc.calls.stats) for name, sc in net.scs.items()}
    body = b"Signal=5\r\nDuration=160\r\n"
    assert a.agent.send_info(call_a, body, "application/dtmf-relay", net.now)
    net.run()
    info = only(net.events("B", InfoReceived))
    assert (info.call_id, info.body, info.content_type) == (call_b, body, "application/dtmf-relay")
    assert direct_methods(net, "A") == ["INFO"] and direct_methods(net, "B") == ["200/INFO"]
    assert {name: dict(sc.calls.stats) for name, sc in net.scs.items()} == before
    assert not b.agent.send_info("no-such-call", body, None, net.now)


def test_refresh_reinvite_is_answered_and_acked_directly_and_a_media_change_is_refused():
    net, a, b = two_scs()
    call_a, call_b = establish(net, a, b, B_NUM, A_NUM)
    assert a.agent.refresh(call_a, net.now)
    net.run()
    assert direct_methods(net, "A") == ["INVITE", "ACK"]
    ok = parse_message(net.direct[1][1].data)
    assert ok.status == 200 and b"c=IN IP4 10.0.0.2" in ok.body
    a.agent.calls[call_a].local_sdp = SDP_A.replace(b"10.0.0.1", b"10.9.9.9")
    assert a.agent.refresh(call_a, net.now)
    net.run()
    assert direct_methods(net, "B")[-1] == "488/INVITE"
    assert direct_methods(net, "A")[-1] == "ACK"  # the transaction layer ACKs the 488 itself
    assert net.events("A", CallEnded) == [] and net.events("B", CallEnded) == []  # the call goes on


def test_a_request_from_outside_the_end_to_end_dialog_gets_481():
    net, a, b = two_scs()
    call_a, call_b = establish(net, a, b, B_NUM, A_NUM)
    call = a.agent.calls[call_a]
    call.e2e.remote_tag = "someone-else"
    assert a.agent.send_info(call_a, b"x", "text/plain", net.now)
    net.run()
    assert direct_methods(net, "B") == ["481/INFO"] and net.events("B", InfoReceived) == []


def test_without_an_esp_address_there_is_no_direct_channel_and_hangup_uses_the_scs():
    net, a, b = two_scs()
    net.esp_sources = False
    for sc in net.scs.values():  # as if the SCs had never learnt them (registration came first)
        for channel in sc.sig.channels.values():
            channel.esp_source = None
    call_a, _ = establish(net, a, b, B_NUM, A_NUM)
    assert only(net.events("A", CallKeysReady)).peer_esp is None
    assert not a.agent.send_info(call_a, b"x", "text/plain", net.now)
    a.agent.hangup(call_a, net.now)
    net.run()
    assert net.direct == []
    assert only(net.events("B", CallEnded)).reason == "hung up by the other party"


@pytest.mark.parametrize("value, expected", [
    ("192.0.2.1:4500", ("192.0.2.1", 4500)),
    ("[2001:db8::1]:4500", ("2001:db8::1", 4500)),
])
def test_peer_header_round_trip(value, expected):
    assert parse_peer(value) == expected and format_peer(expected) == value


@pytest.mark.parametrize("value", ["host.example:4500", "192.0.2.1", "192.0.2.1:0", "192.0.2.1:70000",
                                   "[2001:db8::1:4500", "2001:db8::1:4500", ""])
def test_peer_header_refuses_anything_but_an_address_and_port(value):
    with pytest.raises(CallKeyError):
        parse_peer(value)
