"""The AP exchange's fast ASN.1 paths against the asn1crypto reference (common.asn1.krb5).

- `encode.enc_ap_rep_part` / `encode.ap_rep` write byte for byte what asn1crypto writes.
- `fastdecode.read_ap_req` / `read_authenticator` return the values asn1crypto's `decode` returns,
  and return None (the caller then uses asn1crypto) for everything outside strict DER: a reader
  never accepts bytes the reference refuses, checked on random values and on mutations of them.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.asn1 import decode, encode
from common.asn1.fastdecode import TicketMemo, read_ap_req, read_authenticator
from common.asn1.krb5 import AP_REP, AP_REQ, Authenticator, EncAPRepPart, EncryptionKey, Ticket, principal_to_asn1
from common.crypto import Key
from common.principal import Principal

SETTINGS = settings(max_examples=150, deadline=None)

int32 = st.integers(-(2**31), 2**31 - 1)
uint32 = st.integers(0, 2**32 - 1)
text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_categories=("Cs",)), min_size=0, max_size=30)
principals = st.builds(Principal, st.lists(text, min_size=1, max_size=4).map(tuple), text, st.integers(-5, 12))
times = st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31), timezones=st.just(dt.timezone.utc)).map(
    lambda t: t.replace(microsecond=0)
)
keys = st.builds(Key, int32, st.binary(max_size=40))
blobs = st.binary(max_size=400)  # crosses the short / 1-byte / 2-byte length forms


# --- encoders ------------------------------------------------------------------------------------


@given(times, st.integers(0, 999_999), st.none() | keys, st.none() | uint32)
@SETTINGS
def test_enc_ap_rep_part_matches_asn1crypto(ctime, cusec, subkey, seq):
    value = {"ctime": ctime, "cusec": cusec}
    if subkey is not None:
        value["subkey"] = EncryptionKey.from_key(subkey)
    if seq is not None:
        value["seq-number"] = seq
    assert encode.enc_ap_rep_part(ctime, cusec, subkey, seq) == EncAPRepPart(value).dump()


@given(int32, st.binary(max_size=700), st.none() | uint32)
@SETTINGS
def test_ap_rep_matches_asn1crypto(etype, cipher, kvno):
    enc = {"etype": etype, "cipher": cipher}
    if kvno is not None:
        enc["kvno"] = kvno
    assert encode.ap_rep(etype, cipher, kvno) == AP_REP({"enc-part": enc}).dump()


def test_encoders_refuse_out_of_range_values_like_asn1crypto():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for bad in (-1, 1_000_000):
        with pytest.raises(ValueError):
            EncAPRepPart({"ctime": now, "cusec": bad}).dump()
        with pytest.raises(ValueError):
            encode.enc_ap_rep_part(now, bad)
    with pytest.raises(ValueError):
        encode.enc_ap_rep_part(now, 0, None, 2**32)
    with pytest.raises(ValueError):
        encode.ap_rep(2**31, b"")


# --- decoders: reference values ------------------------------------------------------------------


def _reference_ap_req(data: bytes):
    ap_req = decode(data)
    assert isinstance(ap_req, AP_REQ)
    ticket, auth = ap_req["ticket"], ap_req["authenticator"]
    enc = ticket["enc-part"]
    return (
        ap_req["pvno"].native, ap_req["msg-type"].native, int(ap_req["ap-options"].native),
        ticket["sname"]["name-type"].native, tuple(ticket["sname"]["name-string"].native), ticket["realm"].native,
        enc["etype"].native, enc["kvno"].native, enc["cipher"].native,
        auth["etype"].native, auth["kvno"].native, auth["cipher"].native,
    )


def _fast_ap_req(fields):
    return (
        fields.pvno, fields.msg_type, fields.ap_options, fields.sname_type, fields.sname, fields.realm,
        fields.ticket_etype, fields.ticket_kvno, fields.ticket_cipher, fields.auth_etype, fields.auth_kvno, fields.auth_cipher,
    )


def _reference_authenticator(data: bytes):
    auth = decode(data, padded=True)
    assert isinstance(auth, Authenticator)
    cksum = auth["cksum"]
    subkey = auth["subkey"]
    ad = auth["authorization-data"]
    return (
        auth["authenticator-vno"].native, auth["crealm"].native, auth["cname"]["name-type"].native,
        tuple(auth["cname"]["name-string"].native),
        None if cksum.native is None else (cksum["cksumtype"].native, cksum["checksum"].native),
        auth["cusec"].native, auth["ctime"].native,
        None if subkey.native is None else (subkey["keytype"].native, subkey["keyvalue"].native),
        auth["seq-number"].native,
        None if ad.native is None else tuple((e["ad-type"].native, e["ad-data"].native) for e in ad),
    )


def _fast_authenticator(f):
    return (f.vno, f.crealm, f.cname_type, f.cname, f.cksum, f.cusec, f.ctime, f.subkey, f.seq_number, f.authorization_data)


def _ap_req_bytes(pvno, msg_type, options, server, tkvno, tkt_cipher, etype, akvno, auth_cipher) -> bytes:
    sname, realm = principal_to_asn1(server)
    tenc = {"etype": etype, "cipher": tkt_cipher}
    if tkvno is not None:
        tenc["kvno"] = tkvno
    aenc = {"etype": etype, "cipher": auth_cipher}
    if akvno is not None:
        aenc["kvno"] = akvno
    ticket = Ticket({"realm": realm, "sname": sname, "enc-part": tenc})
    return AP_REQ({"pvno": pvno, "msg-type": msg_type, "ap-options": options, "ticket": ticket, "authenticator": aenc}).dump()


ap_reqs = st.builds(
    _ap_req_bytes, st.integers(-300, 300), st.integers(-300, 300), uint32, principals, st.none() | uint32, blobs,
    int32, st.none() | uint32, blobs,
)


def _authenticator_bytes(vno, client, cksum, cusec, ctime, subkey, seq, ad, padding) -> bytes:
    cname, crealm = principal_to_asn1(client)
    value = {"authenticator-vno": vno, "crealm": crealm, "cname": cname, "cusec": cusec, "ctime": ctime}
    if cksum is not None:
        value["cksum"] = {"cksumtype": cksum[0], "checksum": cksum[1]}
    if subkey is not None:
        value["subkey"] = EncryptionKey.from_key(subkey)
    if seq is not None:
        value["seq-number"] = seq
    if ad is not None:
        value["authorization-data"] = [{"ad-type": t, "ad-data": d} for t, d in ad]
    return Authenticator(value).dump() + bytes(padding)


authenticators = st.builds(
    _authenticator_bytes, st.integers(-300, 300), principals, st.none() | st.tuples(int32, st.binary(max_size=40)),
    st.integers(0, 999_999), times, st.none() | keys, st.none() | uint32,
    st.none() | st.lists(st.tuples(int32, st.binary(max_size=200)), max_size=3), st.integers(0, 7),
)


@given(ap_reqs)
@SETTINGS
def test_read_ap_req_gives_the_reference_values(data):
    fields = read_ap_req(data)
    assert fields is not None
    assert _fast_ap_req(fields) == _reference_ap_req(data)


@given(authenticators)
@SETTINGS
def test_read_authenticator_gives_the_reference_values(data):
    fields = read_authenticator(data)
    assert fields is not None
    assert _fast_authenticator(fields) == _reference_authenticator(data)


# --- decoders: never more lenient than the reference ---------------------------------------------


def _mutations(draw, data: bytes) -> bytes:
    kind = draw(st.integers(0, 3))
    i = draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == 0:
        return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    if kind == 1:
        return data[:i]
    if kind == 2:
        return data + draw(st.binary(min_size=1, max_size=9))
    return data[:i] + data[i + 1 :]


@st.composite
def mutated_ap_reqs(draw):
    return _mutations(draw, draw(ap_reqs))


@st.composite
def mutated_authenticators(draw):
    return _mutations(draw, draw(authenticators))


@given(mutated_ap_reqs())
@settings(max_examples=400, deadline=None)
def test_read_ap_req_accepts_only_what_the_reference_accepts(data):
    fields = read_ap_req(data)
    if fields is not None:
        assert _fast_ap_req(fields) == _reference_ap_req(data)


@given(mutated_authenticators())
@settings(max_examples=400, deadline=None)
def test_read_authenticator_accepts_only_what_the_reference_accepts(data):
    fields = read_authenticator(data)
    if fields is not None:
        assert _fast_authenticator(fields) == _reference_authenticator(data)


@given(st.binary(max_size=200))
@SETTINGS
def test_readers_on_random_bytes(data):
    for reader, reference in ((read_ap_req, _reference_ap_req), (read_authenticator, _reference_authenticator)):
        for candidate in (data, bytes([0x6E if reader is read_ap_req else 0x62]) + data):
            fields = reader(candidate)
            if fields is not None:
                expected = _fast_ap_req(fields) if reader is read_ap_req else _fast_authenticator(fields)
                assert expected == reference(candidate)


AUTH = _authenticator_bytes(
    5, Principal(("cta", "0011"), "EXAMPLE.TEST", 1), None, 123, dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc),
    None, 77, None, 0,
)


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1
    return data.replace(old, new)


def test_read_authenticator_strict_der_only():
    assert read_authenticator(AUTH) is not None
    # The time with a fraction and no Z is valid for the lenient reference, not for the reader.
    lenient = _replace(AUTH, b"\x18\x0f20261126120000Z", b"\x18\x1020261126120000.5")
    assert read_authenticator(lenient) is None
    # ...and a non-minimal length (BER) of the outer SEQUENCE.
    ber = AUTH[:2] + b"\x30\x81" + AUTH[3:]
    assert read_authenticator(ber) is None
    assert read_authenticator(AUTH + b"\x00" * 7) is not None
    assert read_authenticator(AUTH + b"\x00" * 8) is None
    assert read_authenticator(AUTH[:-1]) is None


def test_read_ap_req_strict_der_only():
    server = Principal(("sc", "sc1.example.test"), "EXAMPLE.TEST", 2)
    data = _ap_req_bytes(5, 14, 0x20000000, server, 2, b"t" * 150, 18, None, b"a" * 90)
    assert read_ap_req(data) is not None
    assert read_ap_req(data + b"\x00") is None
    # ap-options with 31 bits (reference: padded), with an Int32 out of range, an empty name
    assert read_ap_req(_replace(data, b"\x03\x05\x00\x20\x00\x00\x00", b"\x03\x05\x01\x20\x00\x00\x00")) is None
    empty = _ap_req_bytes(5, 14, 0, Principal(("x",), "R", 2), None, b"", 18, None, b"")
    empty = _replace(empty, b"\xa1\x05\x30\x03\x1b\x01x", b"\xa1\x02\x30\x00")
    assert read_ap_req(empty) is None


@given(ap_reqs, ap_reqs)
@settings(max_examples=60, deadline=None)
def test_ticket_memo_gives_what_reading_again_gives(first, second):
    memo = TicketMemo(1)
    for data in (first, second, first, first):
        assert _fast_ap_req(read_ap_req(data, memo)) == _fast_ap_req(read_ap_req(data))
    assert len(memo) == 1  # bounded: the oldest ticket went


def test_ticket_memo_keeps_only_strictly_read_tickets():
    server = Principal(("sc", "sc1.example.test"), "EXAMPLE.TEST", 2)
    data = _ap_req_bytes(5, 14, 0, server, 2, b"t" * 150, 18, None, b"a" * 90)
    memo = TicketMemo(8)
    # A realm that is not UTF-8: the strict reader refuses the ticket, so nothing is remembered.
    assert read_ap_req(_replace(data, b"\x1b\x0cEXAMPLE.TEST", b"\x1b\x0cEXAMPLE.TES\xff"), memo) is None
    assert len(memo) == 0
    assert all(read_ap_req(data, memo) is not None for _ in range(2))
    assert len(memo) == 1


def test_ticket_memo_does_not_keep_oversized_tickets():
    server = Principal(("sc", "sc1.example.test"), "EXAMPLE.TEST", 2)
    memo = TicketMemo(8)
    big = _ap_req_bytes(5, 14, 0, server, 2, b"t" * (TicketMemo.MAX_TICKET + 10), 18, None, b"a" * 90)
    assert read_ap_req(big, memo) is not None  # read as usual...
    assert len(memo) == 0  # ...but an unauthenticated sender cannot pin big tickets in memory
