"""scd.signaling.SignalingEngine in memory: REGISTER checks, OPTIONS, malformed input, expiry."""

from __future__ import annotations

import itertools

import pytest

from common.pki import phone_id
from common.sip.message import NameAddr, SipResponse, SipUri, parse_message
from common.sip.ua import build_options, build_register
from ctad.signaling import CtaUserAgent, AllRegistered, PeerLost
from scd.signaling import (
    CtaIdentity,
    KeepAliveLost,
    MalformedRequest,
    Registered,
    RegisterRefused,
    RegistrationExpired,
    SignalingConfig,
    SignalingEngine,
    Unregistered,
)

NUMBER = "+15551230001"
OTHER = "+15551230002"
CTA = "cta/020000000001@EXAMPLE.TEST"
SOURCE = ("127.0.0.1", 5060)


def counter_rng():
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def engine(**kw) -> SignalingEngine:
    return SignalingEngine(SignalingConfig(**kw), rng=counter_rng())


def provisioned(*numbers: str) -> CtaIdentity:
    return CtaIdentity(CTA, frozenset(phone_id(n) for n in numbers))


def register(number: str, expires: int = 600, *, cseq: int = 1, call_id: str = "reg-1", branch: str = "1") -> bytes:
    aor = NameAddr(SipUri(host="sc1.example.test", user=number))
    contact = NameAddr(SipUri(host="127.0.0.1", port=5060, user=number))
    return bytes(build_register(
        registrar=SipUri(host="sc1.example.test"), aor=aor, contact=contact, expires=expires,
        call_id=call_id, cseq=cseq, from_tag="ft", local=SOURCE, branch="z9hG4bK" + branch))


def replies(sig: SignalingEngine) -> list[SipResponse]:
    out = []
    for principal, data, port in sig.datagrams_to_send():
        assert principal == CTA and port == 5060
        message = parse_message(data)
        assert isinstance(message, SipResponse)
        out.append(message)
    return out


def events(sig: SignalingEngine) -> list:
    out = []
    while (e := sig.next_event()) is not None:
        out.append(e)
    return out


def test_register_authorized_number_binds_it():
    sig = engine()
    sig.open_channel(provisioned(NUMBER), 0.0)
    sig.receive(CTA, register(NUMBER), 0.0, SOURCE)
    [resp] = replies(sig)
    assert resp.status == 200 and resp.headers.get("Expires") == "600"
    assert "expires=600" in resp.headers.get("Contact")
    assert events(sig) == [Registered(CTA, NUMBER, 600, False)]
    assert sig.registrations[NUMBER].principal == CTA
    # a refresh keeps the binding
    sig.receive(CTA, register(NUMBER, cseq=2, branch="2"), 10.0, SOURCE)
    assert [r.status for r in replies(sig)] == [200]
    assert events(sig) == [Registered(CTA, NUMBER, 600, True)]


def test_register_other_number_is_403():
    sig = engine()
    sig.open_channel(provisioned(NUMBER), 0.0)
    sig.receive(CTA, register(OTHER), 0.0, SOURCE)
    [resp] = replies(sig)
    assert resp.status == 403
    [ev] = events(sig)
    assert isinstance(ev, RegisterRefused) and ev.status == 403
    assert OTHER not in sig.registrations


def test_restricted_cta_may_register_nothing_but_keeps_its_channel():
    sig = engine()
    sig.open_channel(CtaIdentity(CTA, None, restrictions=object()), 0.0)
    sig.receive(CTA, register(NUMBER), 0.0, SOURCE)
    assert [r.status for r in replies(sig)] == [403]
    assert CTA in sig.channels and not sig.registrations
    # it can still keep its channel alive
    options = build_options(SipUri(host="sc1.example.test"), from_=NameAddr(SipUri(host="cta.invalid")).with_tag("a"),
                            call_id="o1", cseq=1, local=SOURCE, branch="z9hG4bKo1")
    sig.receive(CTA, bytes(options), 1.0, SOURCE)
    [resp] = replies(sig)
    assert resp.status == 200 and "REGISTER" in resp.headers.get("Allow")


def test_ticket_without_phone_ids_needs_allow_unlisted():
    sig = engine()
    sig.open_channel(CtaIdentity(CTA), 0.0)
    sig.receive(CTA, register(NUMBER), 0.0, SOURCE)
    assert [r.status for r in replies(sig)] == [403]
    sig = engine(allow_unlisted_numbers=True)
    sig.open_channel(CtaIdentity(CTA), 0.0)
    sig.receive(CTA, register(NUMBER), 0.0, SOURCE)
    assert [r.status for r in replies(sig)] == [200]


def test_interval_too_brief_and_clamping():
    sig = engine(min_expires=60, max_expires=300)
    sig.open_channel(provisioned(NUMBER), 0.0)
    sig.receive(CTA, register(NUMBER, expires=10), 0.0, SOURCE)
    [resp] = replies(sig)
    assert resp.status == 423 and resp.headers.get("Min-Expires") == "60"
    sig.receive(CTA, register(NUMBER, expires=99999, cseq=2, branch="2"), 0.0, SOURCE)
    [resp] = replies(sig)
    assert resp.status == 200 and resp.headers.get("Expires") == "300"


@pytest.mark.parametrize("data, status", [
    (b"REGISTER sip:sc1.example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n"
     b"To: <sip:+15551230001@sc1.example.test>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
     b"Content-Length: 0\r\n\r\n", 400),  # no From
    (b"REGISTER sip:sc1.example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKy\r\n"
     b"From: <sip:+15551230001@sc1.example.test>;tag=a\r\nTo: <sip:+15551230001@sc1.example.test>\r\n"
     b"Call-ID: c\r\nCSeq: 1 REGISTER\r\nRequire: frobnicate\r\nContent-Length: 0\r\n\r\n", 420),
    (b"INVITE sip:611@sc1.example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKz\r\n"
     b"From: <sip:+15551230001@sc1.example.test>;tag=a\r\nTo: <sip:611@sc1.example.test>\r\n"
     b"Call-ID: c2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", 405),
])
def test_malformed_or_unsupported_gets_4xx(data, status):
    sig = engine()
    sig.open_channel(provisioned(NUMBER), 0.0)
    sig.receive(CTA, data, 0.0, SOURCE)
    [(_, data, _)] = sig.datagrams_to_send()
    assert data.split(b" ", 2)[1] == str(status).encode()  # (a 400 for a missing From has no From)
    if status in (400, 420):
        assert any(isinstance(e, MalformedRequest) for e in events(sig))


def test_garbage_is_counted_not_answered():
    sig = engine()
    sig.open_channel(provisioned(NUMBER), 0.0)
    sig.receive(CTA, b"\x00\x01 not sip at all", 0.0, SOURCE)
    assert replies(sig) == []
    assert sig.stats["malformed"] == 1


def test_registration_expires_and_unregister():
    sig = engine(min_expires=60)
    sig.open_channel(provisioned(NUMBER, OTHER), 0.0)
    sig.receive(CTA, register(NUMBER, expires=60), 0.0, SOURCE)
    sig.receive(CTA, register(OTHER, expires=600, call_id="reg-2", branch="2"), 0.0, SOURCE)
    replies(sig)
    events(sig)
    assert sig.get_timer() is not None
    sig.handle_timer(60.5)
    assert RegistrationExpired(CTA, NUMBER) in events(sig)
    assert set(sig.registrations) == {OTHER}
    sig.receive(CTA, register(OTHER, expires=0, call_id="reg-2", cseq=2, branch="3"), 61.0, SOURCE)
    assert [r.status for r in replies(sig)] == [200]
    assert events(sig) == [Unregistered(CTA, OTHER, "removed")]
    assert not sig.registrations


def test_close_channel_drops_registrations():
    sig = engine()
    sig.open_channel(provisioned(NUMBER), 0.0)
    sig.receive(CTA, register(NUMBER), 0.0, SOURCE)
    replies(sig)
    events(sig)
    sig.close_channel(CTA)
    assert events(sig) == [Unregistered(CTA, NUMBER, "channel closed")]
    with pytest.raises(KeyError):
        sig.receive(CTA, register(NUMBER), 1.0, SOURCE)


def test_retransmitted_register_is_absorbed():
    sig = engine()
    sig.open_channel(provisioned(NUMBER), 0.0)
    sig.receive(CTA, register(NUMBER), 0.0, SOURCE)
    first = replies(sig)
    sig.receive(CTA, register(NUMBER), 0.3, SOURCE)
    again = replies(sig)
    assert [bytes(r) for r in again] == [bytes(r) for r in first]
    assert len([e for e in events(sig) if isinstance(e, Registered)]) == 1


def test_sc_keepalive_loss_drops_registrations():
    sig = engine(keepalive_interval=5.0, t1=0.1)
    sig.open_channel(provisioned(NUMBER), 0.0)
    sig.receive(CTA, register(NUMBER), 0.0, SOURCE)
    replies(sig)
    events(sig)
    now = 0.0
    sent_options = 0
    while now < 30 and NUMBER in sig.registrations:
        now = sig.get_timer()
        sig.handle_timer(now)
        for _, data, _ in sig.datagrams_to_send():
            sent_options += data.startswith(b"OPTIONS")
    assert sent_options >= 1
    evs = events(sig)
    assert KeepAliveLost(CTA) in evs and Unregistered(CTA, NUMBER, "keep-alive lost") in evs


def test_cta_user_agent_against_sc_engine():
    """The CTA's UA and the SC's engine in memory: register both lines, keep alive, detect loss."""
    sig = engine()
    sig.open_channel(provisioned(NUMBER, OTHER), 0.0)
    ua = CtaUserAgent([NUMBER, OTHER], domain="sc1.example.test", local_host="127.0.0.1",
                      keepalive_interval=2.0, keepalive_timeout=1.0, rng=counter_rng())
    now = 0.0
    ua.start(now)
    ua_events = []

    def pump(now: float, deliver: bool = True) -> None:
        for _ in range(5):
            for data in ua.datagrams_to_send():
                if deliver:
                    sig.receive(CTA, data, now, SOURCE)
            for _, data, _ in sig.datagrams_to_send():
                ua.receive(data, now)
        while (e := ua.next_event()) is not None:
            ua_events.append(e)

    pump(now)
    assert any(isinstance(e, AllRegistered) and sorted(e.registered) == [NUMBER, OTHER] for e in ua_events)
    assert set(sig.registrations) == {NUMBER, OTHER}
    # keep-alives flow while the SC answers
    for _ in range(3):
        now = ua.get_timer()
        ua.handle_timer(now)
        pump(now)
    assert not any(isinstance(e, PeerLost) for e in ua_events)
    assert sig.stats["options"] >= 1
    # the SC goes away: the next keep-alive times out
    deadline = now + 10
    while now < deadline and not any(isinstance(e, PeerLost) for e in ua_events):
        now = ua.get_timer()
        ua.handle_timer(now)
        pump(now, deliver=False)
    assert any(isinstance(e, PeerLost) for e in ua_events)
    assert now <= 0 + 3 * 2.0 + 2.0 + 1.0 + 1.0


def test_identity_from_ticket_authorization_data():
    """scd reads the KDC's authorized phone IDs (and fails closed on a malformed element)."""
    from types import SimpleNamespace

    from common.asn1.kerbtel import AD_KERBTEL_PHONE_IDS, phone_ids_authorization_data
    from scd.server import identity_from_event

    ad = phone_ids_authorization_data([phone_id(NUMBER)])
    inner = [(e["ad-type"].native, e["ad-data"].native) for e in ad]
    from common.asn1 import decode_as
    from common.asn1.krb5 import AD_IF_RELEVANT

    flat = [(x["ad-type"].native, x["ad-data"].native) for x in decode_as(AD_IF_RELEVANT, inner[0][1])]
    ev = SimpleNamespace(client=CTA, restrictions=None, authorization_data=tuple(flat))
    assert identity_from_event(ev) == CtaIdentity(CTA, frozenset({phone_id(NUMBER)}))
    bad = SimpleNamespace(client=CTA, restrictions=None, authorization_data=((AD_KERBTEL_PHONE_IDS, b"\x30\x00"),))
    assert identity_from_event(bad).phone_ids == frozenset()
    none = SimpleNamespace(client=CTA, restrictions=None, authorization_data=())
    assert identity_from_event(none).phone_ids is None
