"""Fuzz: whatever arrives, only SipParseError comes out of the parser (h11's fuzz invariant),
a message that parses re-serialises to a fixed point, and the transaction layer never raises."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.sip.message import SipParseError, parse_message, response_for_error
from common.sip.sdp import SdpParseError, SessionDescription
from common.sip.transaction import TransactionLayer

VECTORS = Path(__file__).parent / "vectors" / "sip"
SEEDS = [p.read_bytes() for p in sorted(VECTORS.glob("*/*")) if p.suffix in (".dat", ".sip")]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as exc:
        response = response_for_error(data, exc)
        if response is not None:
            assert bytes(response).startswith(b"SIP/2.0 ")
        return
    canonical = bytes(message)
    assert bytes(parse_message(canonical)) == canonical
    layer = TransactionLayer()
    layer.receive_datagram(data, ("127.0.0.1", 5060), 0.0)
    layer.handle_timer(100.0)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.sampled_from(b" \t\r\n:;,<>\"\\@=%/0x\x00\xff"))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b"\r\n", b" ", b",", b";", b"\r\n ", b"\"", b"<", b">", b"\xc3", b"%"]))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            line_end = data.find(b"\r\n", pos)
            if line_end > 0:
                line_start = data.rfind(b"\r\n", 0, pos) + 2
                data[line_end:line_end] = data[line_start - 2:line_end]
    return bytes(data)


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_sip_parse_error(data):
    check(data)


@SETTINGS
@given(st.binary(max_size=200).map(lambda b: b"INVITE sip:a@b SIP/2.0\r\n" + b))
def test_random_headers_only_raise_sip_parse_error(data):
    check(data + b"\r\n\r\n")


@SETTINGS
@given(mutated())
def test_mutated_valid_messages_only_raise_sip_parse_error(data):
    check(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_sdp_only_raises_sdp_parse_error(data):
    try:
        sd = SessionDescription.parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n" + data)
    except SdpParseError:
        return
    for m in sd.media:
        m.codecs, m.direction, m.ptime
