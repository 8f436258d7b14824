"""SIP transactions: the tables, every timer path with a chosen clock, the layer, paired UAs."""

from __future__ import annotations

import pytest

from common.sip.message import NameAddr, SipRequest, SipResponse, make_response, parse_uri
from common.sip.transaction import (
    INPUTS,
    STATES,
    TABLES,
    AckReceived,
    Input,
    Kind,
    LocalProtocolError,
    MalformedMessage,
    Refuse,
    RequestReceived,
    ResponseReceived,
    State,
    Timeout,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    Transition,
    TransportError,
    make_ack_for_failure,
)
from common.sip.ua import IdGenerator, build_cancel, build_options, build_request

UAC = ("127.0.0.1", 5070)
UAS = ("127.0.0.1", 5080)


def counter_rng():
    state = {"n": 0}

    def rng(n: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(n, "big")
    return rng


IDS = IdGenerator(counter_rng())


def request(method: str = "OPTIONS", body: bytes = b"") -> SipRequest:
    return build_request(
        method, parse_uri("sip:5552002@127.0.0.1:5080"),
        from_=NameAddr(parse_uri("sip:5551001@127.0.0.1")).with_tag(IDS.tag()),
        to=NameAddr(parse_uri("sip:5552002@127.0.0.1")), call_id=IDS.call_id(), cseq=1,
        local=UAC, branch=IDS.branch(), contact=NameAddr(parse_uri("sip:5551001@127.0.0.1:5070")),
        body=body)


def events(layer: TransactionLayer) -> list:
    out = []
    while (e := layer.next_event()) is not None:
        out.append(e)
    return out


def sent(layer: TransactionLayer) -> list[bytes]:
    return [d for d, _ in layer.datagrams_to_send()]


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, bytes]]:
    """Fire every timer up to `end`; returns (time, datagram) for what was sent."""
    out = []
    while (t := layer.get_timer()) is not None and t <= end:
        layer.handle_timer(t)
        out += [(t, d) for d in sent(layer)]
    return out


def respond(req: SipRequest, status: int, tag: str = "totag") -> bytes:
    response = make_response(req, status, to_tag=tag)
    response.headers.replace_first("Via", response.headers.get("Via") + ";received=127.0.0.1")
    return bytes(response)


# ---- tables ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_every_state_input_pair_is_a_transition_or_an_explicit_refusal(kind):
    table = TABLES[kind]
    pairs = {(s, i) for s in STATES[kind] for i in INPUTS[kind]}
    assert set(table) == pairs
    for (state, inp), entry in table.items():
        assert isinstance(entry, (Transition, Refuse)), (state, inp)
        if isinstance(entry, Transition):
            assert entry.target in STATES[kind]
            for action in entry.actions:
                op = action.split(" ")[0]
                assert op in {"report", "ack", "retransmit", "send", "resend", "trying", "report_ack",
                              "timeout", "transport_error", "arm", "backoff", "hold", "cancel"}
        else:
            assert entry.reason
    assert all(isinstance(table[(State.TERMINATED, i)], Refuse) for i in INPUTS[kind])


@pytest.mark.parametrize("kind", list(Kind))
def test_refusals_raise_local_protocol_error(kind):
    layer = TransactionLayer()
    req = request("INVITE" if "INVITE" in kind.value and "non" not in kind.value else "OPTIONS")
    if kind.name.startswith("CLIENT"):
        key = layer.send_request(req, UAS, 0.0)
    else:
        layer.receive_datagram(bytes(req), UAC, 0.0)
        key = events(layer)[0].key
    tx = layer.transaction(key)
    for inp in INPUTS[kind]:
        if isinstance(TABLES[kind][(tx.state, inp)], Refuse):
            with pytest.raises(LocalProtocolError, match=tx.state.value):
                tx.fire(inp, 0.0)


# ---- client INVITE ---------------------------------------------------------------------


def test_client_invite_timer_a_doubles_until_timer_b():
    layer = TransactionLayer()
    req = request("INVITE")
    key = layer.send_request(req, UAS, 0.0)
    assert sent(layer) == [bytes(req)]
    schedule = run_until(layer, 100.0)
    # RFC 3261 17.1.1.2: A = T1, doubling without a cap; B = 64*T1 = 32 s.
    assert [t for t, _ in schedule] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(d == bytes(req) for _, d in schedule)
    assert events(layer) == [Timeout(key, "B"), TransactionTerminated(key)]
    assert layer.get_timer() is None and layer.transaction(key) is None


def test_client_invite_failure_acks_and_waits_timer_d():
    layer = TransactionLayer()
    req = request("INVITE")
    key = layer.send_request(req, UAS, 0.0)
    sent(layer)
    layer.receive_datagram(respond(req, 100), UAS, 0.1)
    assert layer.transaction(key).state is State.PROCEEDING
    assert run_until(layer, 10.0) == []  # no retransmission after a 1xx
    layer.receive_datagram(respond(req, 486), UAS, 10.0)
    (ack,) = sent(layer)
    ack = SipRequest.parse(ack)
    assert ack.method == "ACK" and ack.cseq.seq == req.cseq.seq and ack.to.tag == "totag"
    assert ack.top_via.branch == req.top_via.branch and ack.uri == req.uri
    layer.receive_datagram(respond(req, 486), UAS, 11.0)  # retransmitted final: ACK again
    assert sent(layer) == [bytes(ack)]
    got = events(layer)
    assert [type(e) for e in got] == [ResponseReceived, ResponseReceived]
    assert [e.response.status for e in got] == [100, 486]
    assert layer.get_timer() == 10.0 + 32.0
    run_until(layer, 42.0)
    assert events(layer) == [TransactionTerminated(key)]


def test_client_invite_2xx_accepted_passes_retransmissions_until_timer_m():
    layer = TransactionLayer()
    req = request("INVITE")
    key = layer.send_request(req, UAS, 0.0)
    sent(layer)
    layer.receive_datagram(respond(req, 200), UAS, 0.2)
    layer.receive_datagram(respond(req, 200), UAS, 0.7)
    assert sent(layer) == []  # the TU ACKs a 2xx, not the transaction
    assert [e.response.status for e in events(layer)] == [200, 200]
    assert layer.transaction(key).state is State.ACCEPTED
    run_until(layer, 0.2 + 32.0)
    assert events(layer) == [TransactionTerminated(key)]


def test_client_invite_transport_error():
    layer = TransactionLayer()
    key = layer.send_request(request("INVITE"), UAS, 0.0)
    layer.transport_error(key, 0.1)
    assert events(layer) == [TransportError(key), TransactionTerminated(key)]


# ---- client non-INVITE ---------------------------------------------------------------


def test_client_non_invite_timer_e_caps_at_t2_then_timer_f():
    layer = TransactionLayer()
    req = request("OPTIONS")
    key = layer.send_request(req, UAS, 0.0)
    sent(layer)
    times = [t for t, _ in run_until(layer, 100.0)]
    # E: 0.5, 1, 2, 4, 4, 4 ... (T2 = 4 s); F at 32 s.
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert events(layer) == [Timeout(key, "F"), TransactionTerminated(key)]


def test_client_non_invite_proceeding_retransmits_every_t2_then_k():
    config = TimerConfig(t1=0.1, t2=1.0, t4=2.0)
    layer = TransactionLayer(config)
    req = request("REGISTER")
    key = layer.send_request(req, UAS, 0.0)
    sent(layer)
    layer.receive_datagram(respond(req, 100), UAS, 0.05)
    times = [t for t, _ in run_until(layer, 3.0)]
    assert times == pytest.approx([0.1, 1.1, 2.1])  # E fired once in Trying... then T2 in Proceeding
    layer.receive_datagram(respond(req, 200), UAS, 3.0)
    layer.receive_datagram(respond(req, 200), UAS, 3.5)  # absorbed in Completed
    assert [type(e) for e in events(layer)] == [ResponseReceived, ResponseReceived]
    assert layer.get_timer() == pytest.approx(5.0)  # K = T4
    run_until(layer, 5.0)
    assert events(layer) == [TransactionTerminated(key)]


def test_stray_response_is_dropped():
    layer = TransactionLayer()
    layer.receive_datagram(respond(request(), 200), UAS, 0.0)
    assert events(layer) == [] and layer.stray_responses == 1


# ---- server INVITE ---------------------------------------------------------------------


def test_server_invite_100_trying_after_200ms_then_failure_g_until_h():
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive_datagram(bytes(req), UAC, 0.0)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived) and ev.request.top_via.rport == 5070  # RFC 3581
    assert sent(layer) == [] and layer.get_timer() == pytest.approx(0.2)
    layer.handle_timer(0.2)
    (trying,) = sent(layer)
    assert SipResponse.parse(trying).status == 100
    layer.receive_datagram(bytes(req), UAC, 0.3)  # retransmission: the 100 again
    assert sent(layer) == [trying] and events(layer) == []
    busy = make_response(ev.request, 486, to_tag="t1")
    layer.send_response(busy, 1.0)
    assert sent(layer) == [bytes(busy)]
    schedule = run_until(layer, 100.0)
    # G: 0.5, 1, 2, 4, 4 ... capped at T2; H at 64*T1 = 32 s after the final response.
    assert [t - 1.0 for t, _ in schedule] == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    assert events(layer) == [Timeout(ev.key, "H"), TransactionTerminated(ev.key)]


def test_server_invite_retransmission_before_trying_timer_sends_100_at_once():
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive_datagram(bytes(req), UAC, 0.0)
    layer.receive_datagram(bytes(req), UAC, 0.1)
    assert [SipResponse.parse(d).status for d in sent(layer)] == [100]
    assert layer.get_timer() is None  # the 100 timer was cancelled


def test_server_invite_failure_ack_confirms_then_timer_i():
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive_datagram(bytes(req), UAC, 0.0)
    (ev,) = events(layer)
    layer.send_response(make_response(ev.request, 180, to_tag="t"), 0.05)
    response = make_response(ev.request, 603, to_tag="t")
    layer.send_response(response, 0.1)
    sent(layer)
    ack = make_ack_for_failure(req, response)
    layer.receive_datagram(bytes(ack), UAC, 0.3)
    tx = layer.transaction(ev.key)
    assert tx.state is State.CONFIRMED and events(layer) == []
    layer.receive_datagram(bytes(req), UAC, 0.4)  # absorbed in Confirmed
    assert sent(layer) == [] and layer.get_timer() == pytest.approx(5.3)  # I = T4
    run_until(layer, 10.0)
    assert events(layer) == [TransactionTerminated(ev.key)]
    with pytest.raises(LocalProtocolError, match="no server transaction"):
        layer.send_response(response, 11.0)


def test_server_invite_2xx_accepted_absorbs_invites_and_reports_acks():
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive_datagram(bytes(req), UAC, 0.0)
    (ev,) = events(layer)
    ok = make_response(ev.request, 200, to_tag="t")
    layer.send_response(ok, 0.1)
    layer.receive_datagram(bytes(req), UAC, 0.5)
    assert sent(layer) == [bytes(ok)]  # the retransmitted INVITE is absorbed
    layer.send_response(ok, 0.6)  # the TU retransmits its 2xx through the transaction
    assert sent(layer) == [bytes(ok)]
    with pytest.raises(LocalProtocolError, match="a 2xx was sent"):
        layer.send_response(make_response(ev.request, 500, to_tag="t"), 0.7)
    ack2xx = SipRequest.parse(bytes(req).replace(b"INVITE sip", b"ACK sip").replace(b" INVITE\r\n", b" ACK\r\n")
                              .replace(req.top_via.branch.encode(), b"z9hG4bKnewbranch"))
    layer.receive_datagram(bytes(ack2xx), UAC, 0.8)
    (ack_event,) = events(layer)
    assert isinstance(ack_event, AckReceived) and ack_event.key is None
    run_until(layer, 0.1 + 32.0)
    assert events(layer) == [TransactionTerminated(ev.key)]


def test_cancel_matches_the_invite_server_transaction():
    layer = TransactionLayer()
    invite = request("INVITE")
    layer.receive_datagram(bytes(invite), UAC, 0.0)
    (ev,) = events(layer)
    layer.receive_datagram(bytes(build_cancel(invite)), UAC, 0.1)
    (cancel,) = events(layer)
    assert isinstance(cancel, RequestReceived) and cancel.cancels == ev.key
    assert cancel.key.method == "CANCEL" and cancel.key.branch == ev.key.branch
    layer.send_response(make_response(cancel.request, 200, to_tag="t"), 0.1)
    layer.send_response(make_response(ev.request, 487, to_tag="t"), 0.1)
    assert [SipResponse.parse(d).status for d in sent(layer)] == [200, 487]


# ---- server non-INVITE -----------------------------------------------------------------


def test_server_non_invite_absorbs_then_resends_final_until_timer_j():
    layer = TransactionLayer()
    req = request("OPTIONS")
    layer.receive_datagram(bytes(req), ("192.0.2.1", 40000), 0.0)
    (ev,) = events(layer)
    assert ev.request.top_via.received == "192.0.2.1" and ev.request.top_via.rport == 40000
    layer.receive_datagram(bytes(req), ("192.0.2.1", 40000), 0.5)  # Trying: absorbed
    assert sent(layer) == [] and events(layer) == []
    ok = make_response(ev.request, 200, to_tag="t")
    layer.send_response(ok, 1.0)
    layer.receive_datagram(bytes(req), ("192.0.2.1", 40000), 1.5)
    out = layer.datagrams_to_send()
    assert out == [(bytes(ok), ("192.0.2.1", 40000))] * 2  # rport: back to the source port
    run_until(layer, 1.0 + 32.0)
    assert events(layer) == [TransactionTerminated(ev.key)]


def test_rfc2543_peer_without_magic_cookie():  # RFC 4475 3.2.1 and 3.4.1 style
    layer = TransactionLayer()
    data = (b"OPTIONS sip:user@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\r\n"
            b"To: sip:user@example.com\r\nFrom: sip:caller@example.org;tag=33242\r\n"
            b"Call-ID: badbranch\r\nCSeq: 8 OPTIONS\r\nl: 0\r\n\r\n")
    layer.receive_datagram(data, ("192.0.2.1", 5060), 0.0)
    layer.receive_datagram(data, ("192.0.2.1", 5060), 0.1)
    (ev,) = events(layer)
    assert ev.key.branch.startswith("2543:")
    layer.send_response(make_response(ev.request, 200, to_tag="t"), 0.2)
    assert len(sent(layer)) == 1


# ---- the layer's boundary --------------------------------------------------------------


def test_malformed_request_gets_its_4xx_and_keepalives_are_ignored():
    layer = TransactionLayer()
    layer.receive_datagram(b"\r\n\r\n", UAC, 0.0)
    assert events(layer) == [] and sent(layer) == []
    bad = bytes(request()).replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
    layer.receive_datagram(bad, UAC, 0.0)
    (ev,) = events(layer)
    assert isinstance(ev, MalformedMessage) and ev.responded and ev.error.status == 505
    ((data, dest),) = layer.datagrams_to_send()
    assert SipResponse.parse(data).status == 505 and dest == UAC
    layer.receive_datagram(b"SIP/2.0 999 x\r\n\r\n", UAS, 0.0)
    assert [e.responded for e in events(layer)] == [False] and layer.malformed == 2


def test_local_misuse():
    layer = TransactionLayer()
    req = request()
    req.headers.replace_first("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=old")
    with pytest.raises(LocalProtocolError, match="lacks the z9hG4bK cookie"):
        layer.send_request(req, UAS, 0.0)
    req = request()
    layer.send_request(req, UAS, 0.0)
    with pytest.raises(LocalProtocolError, match="exists already"):
        layer.send_request(req, UAS, 0.0)
    assert layer.send_request(SipRequest.parse(bytes(req).replace(b"OPTIONS", b"ACK")), UAS, 0.0) is None


def test_two_layers_in_memory_with_loss():
    """A UAC and a UAS layer exchange OPTIONS; the first request and the first 200 are lost."""
    uac, uas = TransactionLayer(), TransactionLayer()
    req = build_options(parse_uri("sip:127.0.0.1:5080"), from_=NameAddr(parse_uri("sip:5551001@127.0.0.1")).with_tag("a"),
                        call_id="ka1", cseq=7, local=UAC, branch=IDS.branch())
    key = uac.send_request(req, UAS, 0.0)
    uac.datagrams_to_send()  # lost
    now, drop_next_200, done = 0.0, True, False
    while not done and now < 40:
        now = min(t for t in (uac.get_timer(), uas.get_timer()) if t is not None)
        uac.handle_timer(now)
        uas.handle_timer(now)
        for data, _ in uac.datagrams_to_send():
            uas.receive_datagram(data, UAC, now)
        for ev in iter(uas.next_event, None):
            if isinstance(ev, RequestReceived):
                uas.send_response(make_response(ev.request, 200, to_tag="b"), now)
        for data, _ in uas.datagrams_to_send():
            if drop_next_200:
                drop_next_200 = False
                continue
            uac.receive_datagram(data, UAS, now)
        for ev in iter(uac.next_event, None):
            if isinstance(ev, ResponseReceived):
                assert ev.key == key and ev.response.status == 200
                done = True
    assert done and now == pytest.approx(1.5)  # third transmission (0, 0.5 lost 200, 1.5)
