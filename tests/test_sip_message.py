"""SIP messages: RFC 4475 torture messages, baresip's messages, URIs, responses, SDP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.sip.message import (
    AbsoluteUri,
    CSeq,
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    TelUri,
    check_request,
    make_response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    response_address,
    response_for_error,
    stamp_via,
)
from common.sip.sdp import SdpParseError, SessionDescription, negotiate

VECTORS = Path(__file__).parent / "vectors" / "sip"
RFC4475 = VECTORS / "rfc4475"
BARESIP = VECTORS / "baresip"


def torture(name: str) -> bytes:
    return (RFC4475 / f"{name}.dat").read_bytes()


# RFC 4475 3.1.1, 3.2, 3.3, 3.4: messages an element must parse.
VALID = [
    ("3.1.1.1", "wsinv"), ("3.1.1.2", "intmeth"), ("3.1.1.3", "esc01"), ("3.1.1.4", "escnull"),
    ("3.1.1.5", "esc02"), ("3.1.1.6", "lwsdisp"), ("3.1.1.7", "longreq"), ("3.1.1.8", "dblreq"),
    ("3.1.1.9", "semiuri"), ("3.1.1.10", "transports"), ("3.1.1.11", "mpart01"),
    ("3.1.1.12", "unreason"), ("3.1.1.13", "noreason"), ("3.1.2.12", "baddate"),
    ("3.2.1", "badbranch"), ("3.3.4", "unksm2"), ("3.3.5", "bext01"), ("3.3.6", "invut"),
    ("3.3.7", "regaut01"), ("3.3.10", "bcast"), ("3.3.11", "zeromf"), ("3.3.12", "cparam01"),
    ("3.3.13", "cparam02"), ("3.3.14", "regescrt"), ("3.3.15", "sdp01"), ("3.4.1", "inv2543"),
]

# RFC 4475 3.1.2 and 3.3: requests refused with a status (None: a response, dropped).
INVALID = [
    ("3.1.2.1", "badinv01", 400, "Via"),
    ("3.1.2.2", "clerr", 400, "Content-Length: 9999"),
    ("3.1.2.3", "ncl", 400, "Content-Length: '-999'"),
    ("3.1.2.4", "scalar02", 400, "CSeq: sequence number 36893488147419103232"),
    ("3.1.2.5", "scalarlg", None, "CSeq"),
    ("3.1.2.6", "quotbal", 400, "To: unterminated quoted string"),
    ("3.1.2.7", "ltgtruri", 400, "Request-URI"),
    ("3.1.2.8", "lwsruri", 400, "whitespace inside the Request-URI"),
    ("3.1.2.9", "lwsstart", 400, "more than one space"),
    ("3.1.2.10", "trws", 400, "whitespace at the end of the request line"),
    ("3.1.2.11", "escruri", 400, "Request-URI must not contain headers"),
    ("3.1.2.13", "regbadct", 400, "Contact: a URI with headers must be enclosed in <>"),
    ("3.1.2.14", "badaspec", 400, "To: whitespace inside <"),
    ("3.1.2.15", "baddn", 400, "From: expected a display name token"),
    ("3.1.2.16", "badvers", 505, "SIP version SIP/7.0"),
    ("3.1.2.17", "mismatch01", 400, "CSeq: method INVITE does not match"),
    ("3.1.2.18", "mismatch02", 400, "CSeq: method INVITE does not match"),
    ("3.1.2.19", "bigcode", None, "status code"),
    ("3.3.1", "insuf", 400, "missing From, To, Call-ID"),
    ("3.3.2", "unkscm", 416, "scheme 'nobodyKnowsThisScheme'"),
    ("3.3.3", "novelsc", 416, "scheme 'soap.beep'"),
    ("3.3.8", "multi01", 400, "appears 2 times"),
    ("3.3.9", "mcl01", 400, "Content-Length appears 2 times"),
]


def test_every_vector_file_is_classified():
    names = {n for _, n in VALID} | {n for _, n, _, _ in INVALID}
    assert names == {p.stem for p in RFC4475.glob("*.dat")}


@pytest.mark.parametrize("section,name", VALID)
def test_rfc4475_valid_messages_parse_and_round_trip(section, name):
    message = parse_message(torture(name))
    canonical = bytes(message)
    again = parse_message(canonical)
    assert bytes(again) == canonical
    assert (again.body, again.headers.get_all("Via")) == (message.body, message.headers.get_all("Via"))


@pytest.mark.parametrize("section,name,status,text", INVALID)
def test_rfc4475_invalid_messages(section, name, status, text):
    data = torture(name)
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    error = info.value
    assert text in error.reason
    response = response_for_error(data, error)
    if status is None:
        assert response is None  # a malformed response is dropped
        return
    assert error.status == status
    assert response is not None and response.status == status
    if status == 400:
        assert response.reason == error.reason[:120]
    # Via and CSeq are copied as the peer wrote them (it matches them against its own), so the
    # error response reaches the client transaction that sent the request.
    out = bytes(response)
    assert out.startswith(f"SIP/2.0 {status} ".encode())
    assert response.headers.get_all("Via") and response.headers.get("CSeq")
    assert response.headers.get("Via").encode() in data


def test_wsinv_values():  # RFC 4475 3.1.1.1
    m = parse_message(torture("wsinv"))
    assert isinstance(m, SipRequest) and m.method == "INVITE"
    assert str(m.uri) == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert m.to.tag == "1918181833n" and str(m.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert m.from_.display_name == 'J Rosenberg \\"' and m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.cseq == CSeq(9, "INVITE")
    vias = m.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""' and contact.param("q") == "0.33"
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.routes[0].uri.lr and m.content_length == 150 and m.body.startswith(b"v=0\r\n")


def test_intmeth_and_escapes():  # RFC 4475 3.1.1.2 - 3.1.1.5
    m = parse_message(torture("intmeth"))
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    e = parse_message(torture("esc01"))
    assert e.uri.user == "sips%3Auser%40example.com" and e.uri.host == "example.net"
    assert e.contacts[0].uri.params == {"%6C%72": None, "n%61me": "v%61lue%25%34%31"}
    n = parse_message(torture("escnull"))
    assert [c.uri.user for c in n.contacts] == ["%00", "%00%00"]
    r = parse_message(torture("esc02"))
    assert r.method == "RE%47IST%45R" and len(r.contacts) == 2
    assert r.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_dblreq_trailing_octets_are_discarded():  # RFC 4475 3.1.1.8
    m = parse_message(torture("dblreq"))
    assert m.method == "REGISTER" and m.body == b""
    assert b"INVITE" not in bytes(m)


def test_reason_phrases():  # RFC 4475 3.1.1.12, 3.1.1.13
    u = parse_message(torture("unreason"))
    assert isinstance(u, SipResponse) and u.status == 200 and u.reason.startswith("= 2**3 * 5**2 но")
    n = parse_message(torture("noreason"))
    assert n.status == 100 and n.reason == ""


def test_unknown_schemes_in_headers_and_rfc2543():  # RFC 4475 3.3.4, 3.4.1, 3.2.1
    m = parse_message(torture("unksm2"))
    assert m.to.uri == AbsoluteUri("isbn", "2983792873")
    assert str(m.from_.uri) == "http://www.example.com" and str(m.contacts[0].uri) == "name:John_Smith"
    old = parse_message(torture("inv2543"))
    assert old.top_via.branch is None and old.max_forwards is None
    assert not parse_message(torture("badbranch")).top_via.rfc3261_branch


def test_check_request_require_and_max_forwards():  # RFC 4475 3.3.5, 3.3.11
    m = parse_message(torture("bext01"))
    check_request(m, supported=["nothingSupportsThis", "nothingSupportsThisEither"])
    with pytest.raises(SipParseError) as info:
        check_request(m, supported=["timer"], proxy=True)
    assert info.value.status == 420
    assert info.value.unsupported == ("nothingSupportsThis", "nothingSupportsThisEither",
                                      "noProxiesSupportThis", "norDoAnyProxiesSupportThis")
    response = response_for_error(m, info.value)
    assert response.status == 420 and response.reason == "Bad Extension"
    assert response.headers.get("Unsupported").startswith("nothingSupportsThis, ")
    assert response.to.tag is not None
    z = parse_message(torture("zeromf"))
    check_request(z)  # an endpoint processes it
    with pytest.raises(SipParseError) as info:
        check_request(z, proxy=True)
    assert info.value.status == 483
    assert response_for_error(z, info.value).reason == "Too Many Hops"


def test_message_too_large_is_513():
    data = (BARESIP / "invite.sip").read_bytes()
    with pytest.raises(SipParseError) as info:
        parse_message(data, max_size=100)
    assert info.value.status == 513
    assert response_for_error(data, info.value).status == 513


@pytest.mark.parametrize("name", sorted(p.name for p in BARESIP.glob("*.sip")))
def test_baresip_messages_round_trip_byte_for_byte(name):
    data = (BARESIP / name).read_bytes()
    assert bytes(parse_message(data)) == data


def test_baresip_register_fields():
    m = SipRequest.parse((BARESIP / "register.sip").read_bytes())
    via = m.top_via
    assert via.rport_requested and via.rport is None and via.sent_by == "127.0.0.1:5070"
    (contact,) = m.contacts
    assert contact.expires == 3600
    assert contact.param("+sip.instance") == '"<urn:uuid:69a4004b-6915-6615-3b25-417d79231b39>"'
    assert m.uri == SipUri(host="127.0.0.1", port=5080, params={"transport": "udp"})
    assert m.option_tags("Supported") == []
    with pytest.raises(SipParseError, match="expected a response"):
        SipResponse.parse(bytes(m))


def test_compact_forms_case_and_folding():
    data = (b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:a@b>;tag=1\r\n"
            b"T: <sip:a@b>\r\ni: c1\r\nCSEQ: 1\r\n OPTIONS\r\nk: timer, 100rel\r\nm: *\r\n"
            b"l: 0\r\ns: hi\r\ne: gzip\r\nc: text/plain\r\n\r\n")
    m = parse_message(data)
    assert m.headers.get("via") == m.headers.get("V") == "SIP/2.0/UDP h;branch=z9hG4bKx"
    assert m.cseq == CSeq(1, "OPTIONS") and m.contact_star and m.contacts == []
    assert m.option_tags("Supported") == ["timer", "100rel"]
    assert m.headers.get("Subject") == "hi" and m.headers.get("Content-Encoding") == "gzip"
    out = bytes(m)
    assert out.startswith(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: ")
    assert b"CSeq: 1 OPTIONS\r\n" in out and b"Content-Type: text/plain\r\n" in out


def test_missing_content_length_takes_rest_of_datagram():
    data = re.sub(rb"Content-Length: \d+\r\n", b"", (BARESIP / "invite.sip").read_bytes())
    assert b"Content-Length" not in data
    m = parse_message(data)
    assert m.body.startswith(b"v=0") and m.body.endswith(b"a=ptime:20\r\n")


@pytest.mark.parametrize("data,text", [
    (b"", "empty message"),
    (b"\r\n\r\n", "empty message"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n", "no empty line"),
    (b"OPTIONS sip:a@b SIP/2.0\nVia: x\n\n\r\n\r\n", "bare CR or LF"),
    (b"OPTIONS sip:a@b SIP/2.0\r\n\xff: x\r\n\r\n", "not UTF-8"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nVia x\r\n\r\n", "without a colon"),
    (b"OPTIONS sip:a@b SIP/2.0\r\n Via: x\r\n\r\n", "continuation line"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", "is not a token"),
    (b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", "missing Via, From, To, Call-ID, CSeq"),
    (b"SIP/2.1 200 OK\r\n\r\n", "not SIP/2.0"),
    (b"OPTIONS sip:a@b HTTP/1.1\r\n\r\n", "not SIP/2.0"),
])
def test_parse_errors(data, text):
    with pytest.raises(SipParseError, match=text):
        parse_message(data)


def _with(header: bytes) -> bytes:
    return (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
            b"To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n" + header + b"\r\n\r\n")


@pytest.mark.parametrize("header,text", [
    (b"Max-Forwards: 256", "Max-Forwards: 256 is larger than 255"),
    (b"Max-Forwards: x", "not a non-negative integer"),
    (b"Expires: 4294967296", "Expires: 4294967296 is larger"),
    (b"Contact: *\r\nContact: <sip:x@y>", "'*' must be the only"),
    (b"Contact: <sip:x@y>;;", "Contact: expected a parameter name"),
    (b"Contact: <sip:x@y>,", "empty element"),
    (b"Route: <sip:x@y;lr", "'<' without '>'"),
    (b"Record-Route: <sip:x@[::1>", "bad IPv6 reference"),
    (b"Contact: <sip:x@y:99999>", "bad port"),
    (b"Contact: <sip:@y>", "empty user part"),
    (b"Contact: <sip:x%zz@y>", "bad %-escape"),
    (b"Contact: <sip:x@y;=v>", "empty URI parameter"),
    (b"Contact: <tel:abc!>", "bad tel number"),
    (b"Contact: <sip:x@y> junk", "unexpected 'junk'"),
    (b"Contact: <sip:x@y>;a=1;A=2", "parameter A repeated"),
])
def test_header_errors_name_the_header(header, text):
    with pytest.raises(SipParseError) as info:
        parse_message(_with(header))
    assert text in info.value.reason
    assert info.value.status == 400


@pytest.mark.parametrize("via,text", [
    ("SIP/2.0/UDP", "sent-by host"),
    ("SIP/2.0 UDP h", "expected '/'"),
    ("SIP/2.0/UDP h;rport=x", "bad rport"),
    ("SIP/2.0/UDP h;branch=", "a value for parameter branch"),
])
def test_via_errors(via, text):
    with pytest.raises(SipParseError, match=text):
        parse_via(via)


def test_uris():
    u = parse_uri("sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=hi&x=1")
    assert u == SipUri(host="[2001:db8::1]", user="alice", port=5061, scheme="sips", password="pw",
                       params={"transport": "tcp", "lr": None}, headers={"subject": "hi", "x": "1"})
    assert str(u) == "sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=hi&x=1"
    assert u.lr and u.transport == "tcp" and u.hostport == "[2001:db8::1]:5061"
    t = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert t == TelUri("+1-201-555-0123", {"phone-context": "example.com"}) and str(t).startswith("tel:+1")
    assert str(parse_uri("SIP:Host.Example")) == "sip:Host.Example"
    for bad in ("nocolon", "sip:", "1sip:x", "sip:a b", "sip:h:port"):
        with pytest.raises(SipParseError):
            parse_uri(bad)


def test_name_addr_forms():
    a = parse_name_addr('caller<sip:c@example.com>;tag=9', "From")
    assert a.display_name == "caller" and a.tag == "9" and str(a) == '"caller" <sip:c@example.com>;tag=9'
    b = parse_name_addr("sip:c@example.com;tag=9", "From")
    assert b.display_name is None and b.uri.params == {} and b.tag == "9"
    assert str(NameAddr(parse_uri("sip:x@y"), 'a "q" \\')) == '"a \\"q\\" \\\\" <sip:x@y>'


def test_headers_collection():
    h = Headers([("Via", "a"), ("v", "b"), ("X-Foo", "1")])
    assert h.get_all("VIA") == ["a", "b"] and h.count("via") == 2 and "x-foo" in h
    h.set("Via", "c")
    assert list(h) == [("Via", "c"), ("X-Foo", "1")]
    h.remove("x-FOO")
    assert len(h) == 1 and h.get("X-Foo") is None
    with pytest.raises(ValueError):
        h.add("Bad Name", "x")
    with pytest.raises(ValueError):
        h.add("X", "a\r\nInjected: y")


def test_make_response_copies_rfc3261_8_2_6():
    invite = SipRequest.parse((BARESIP / "invite.sip").read_bytes())
    ringing = make_response(invite, 180, to_tag="abc")
    assert ringing.headers.get_all("Via") == invite.headers.get_all("Via")
    assert ringing.from_ == invite.from_ and ringing.call_id == invite.call_id
    assert ringing.cseq == invite.cseq and ringing.to.tag == "abc" and ringing.reason == "Ringing"
    trying = make_response(invite, 100, to_tag="abc")
    assert trying.to.tag is None
    ok = make_response(invite, 200, to_tag="abc", headers=[("Contact", "<sip:x@127.0.0.1>")],
                       body=b"v=0\r\n")
    parsed = SipResponse.parse(bytes(ok))
    assert parsed.body == b"v=0\r\n" and parsed.content_type == "application/sdp"
    assert parsed.headers.get("Content-Length") == "5"


def test_response_for_error_is_deterministic_and_skips_ack():
    data = torture("mismatch01")
    err = pytest.raises(SipParseError, parse_message, data).value
    r1, r2 = response_for_error(data, err), response_for_error(data, err)
    assert r1 == r2 and r1.to.tag
    ack = data.replace(b"OPTIONS sip", b"ACK sip").replace(b"8 INVITE", b"8 OPTIONS")
    assert response_for_error(ack, SipParseError("x")) is None
    assert response_for_error(b"garbage", SipParseError("x")) is None


def test_stamp_via_and_response_address():
    m = SipRequest.parse((BARESIP / "options.sip").read_bytes())
    stamp_via(m, ("192.0.2.7", 40000))
    via = m.top_via
    assert via.rport == 40000 and via.received == "192.0.2.7"
    assert response_address(via) == ("192.0.2.7", 40000)
    plain = parse_via("SIP/2.0/UDP host.example:5062;branch=z9hG4bK1")
    assert response_address(plain, ("192.0.2.9", 1)) == ("host.example", 5062)
    r = SipRequest.parse(_with(b"Max-Forwards: 70"))
    stamp_via(r, ("h", 5060))
    assert r.top_via.received is None  # host matches, no rport: untouched


# ---- SDP --------------------------------------------------------------------------------


def test_sdp_baresip_offer_round_trip_and_fields():
    invite = SipRequest.parse((BARESIP / "invite.sip").read_bytes())
    sd = SessionDescription.parse(invite.body)
    assert bytes(sd) == invite.body
    audio = sd.audio()
    assert sd.media_address(audio) == ("127.0.0.1", 16906)
    assert [(c.pt, c.name, c.rate) for c in audio.codecs] == [
        (0, "PCMU", 8000), (8, "PCMA", 8000), (101, "telephone-event", 8000)]
    assert audio.codecs[2].fmtp == "0-15" and audio.ptime == 20 and audio.direction == "sendrecv"


def test_sdp_rewrite_and_negotiate():
    body = (b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
            b"m=audio 4000 RTP/AVP 8 0 18 101\r\na=rtpmap:101 telephone-event/8000\r\n"
            b"a=fmtp:101 0-16\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
            b"a=sendonly\r\nm=video 5000 RTP/AVP 31\r\n")
    sd = SessionDescription.parse(body)
    audio = sd.audio()
    assert audio.crypto == ["1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"]
    sd.set_media_address(audio, "192.0.2.5", 30000)
    out = SessionDescription.parse(bytes(sd))
    assert out.media_address(out.audio()) == ("192.0.2.5", 30000)
    assert out.origin == "- 1 2 IN IP4 192.0.2.5" and out.audio().crypto == audio.crypto
    answer = negotiate(sd, ["PCMU", "PCMA", "telephone-event"], host="192.0.2.9", port=40000)
    a = answer.audio()
    assert a.formats == ["8", "0", "101"] and a.direction == "recvonly" and a.port == 40000
    assert answer.media[1].port == 0  # video rejected
    none = negotiate(SessionDescription.parse(body.replace(b"8 0 18 101", b"18")), ["PCMU"],
                     host="192.0.2.9", port=40000)
    assert none.audio().port == 0
    for bad in (b"", b"x=1\r\n", b"v=0\r\no=x\r\nc=IN IP9 a\r\n", b"v=0\r\no=x\r\nm=audio x RTP/AVP 0\r\n",
                b"v=0\r\ns=-\r\n", b"v=0\r\n\xff\r\n"):
        with pytest.raises(SdpParseError):
            SessionDescription.parse(bad)
