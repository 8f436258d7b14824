"""The AP exchange's fast paths keep scd's behaviour: same bytes, same values, same errors.

No timings here (`kerbtel bench km` measures); these tests pin what the speed-ups must not change:
- the hand-written HKDF equals `cryptography`'s (RFC 5869 A.3 vector and random inputs);
- `verify_ap_request` is the verification `receive` performs, with the same refusals;
- the AP-REP the engine writes with common/asn1/der.py decodes with asn1crypto and re-encodes
  to the same bytes;
- an AP-REQ in BER (non-minimal lengths) that the strict reader leaves to asn1crypto is still
  accepted, and malformed ones are refused with the reference's messages.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from common.asn1 import ErrorCode, decode, der
from common.asn1.fastdecode import read_ap_req, read_authenticator
from common.crypto import KeyUsage, decrypt
from common.esp import hkdf_sha256
from common.krberror import KrbError
from common.pktc import PURPOSE_AP_REQUEST, ApReply, ApRequest, hmac_key, parse_km_message
from scd import km as skm
from tests.kmutil import Clock
from tests.test_km import PEER, client, error_code, new_cta, new_sc, sends


def _reference_hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def test_hkdf_rfc5869_a3():
    """RFC 5869 A.3: SHA-256, zero-length salt and info."""
    ikm = bytes.fromhex("0b" * 22)
    okm = bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )
    assert hkdf_sha256(ikm, b"", 42) == okm == _reference_hkdf(ikm, b"", 42)


@given(st.binary(max_size=80), st.binary(max_size=80), st.integers(1, 200))
@settings(max_examples=200, deadline=None)
def test_hkdf_matches_cryptography(ikm, info, length):
    assert hkdf_sha256(ikm, info, length) == _reference_hkdf(ikm, info, length)


def test_hkdf_refuses_impossible_lengths():
    with pytest.raises(ValueError):
        hkdf_sha256(b"k", b"", 255 * 32 + 1)
    with pytest.raises(ValueError):
        hkdf_sha256(b"k", b"", 0)


def _request(cta, clock) -> bytes:
    return sends(cta.start(clock.now, clock.wallclock))[0]


def test_verify_ap_request_is_what_receive_checks():
    clock = Clock()
    sc, cta = new_sc(), new_cta()
    data = _request(cta, clock)
    ap_req = ApRequest.parse(data).ap_req
    verified = sc.verify_ap_request(ap_req, clock.wallclock)
    assert verified.client == client(1) and verified.session_key == cta._session_key
    assert read_ap_req(ap_req) is not None  # the strict reader took it
    # Verification alone keeps no replay state: receive still accepts the same request once.
    events = sc.receive(data, PEER, now=clock.now, wallclock=clock.wallclock)
    assert isinstance(events[-1], skm.SaEstablished)
    assert error_code(sc.receive(data, ("192.0.2.99", 1), now=clock.now, wallclock=clock.wallclock)) == ErrorCode.KRB_AP_ERR_REPEAT


def test_verify_ap_request_refusals_carry_the_same_codes():
    clock = Clock()
    sc = new_sc()
    ap_req = ApRequest.parse(_request(new_cta(), clock)).ap_req
    with pytest.raises(KrbError) as info:
        sc.verify_ap_request(ap_req, clock.wallclock.replace(year=clock.wallclock.year + 1))
    assert info.value.code == ErrorCode.KRB_AP_ERR_TKT_EXPIRED
    with pytest.raises(KrbError) as info:
        sc.verify_ap_request(ap_req[:-1] + bytes([ap_req[-1] ^ 1]), clock.wallclock)
    assert info.value.code == ErrorCode.KRB_AP_ERR_BAD_INTEGRITY
    with pytest.raises(KrbError) as info:
        sc.verify_ap_request(b"\x6e\x03\x02\x01\x05", clock.wallclock)
    assert info.value.code == ErrorCode.KRB_ERR_GENERIC and info.value.text.startswith("malformed AP-REQ: ")


def test_ap_rep_written_with_der_is_canonical_and_carries_the_subkey():
    clock = Clock()
    sc, cta = new_sc(), new_cta()
    events = sc.receive(_request(cta, clock), PEER, now=clock.now, wallclock=clock.wallclock)
    reply = parse_km_message(sends(events)[0])
    assert isinstance(reply, ApReply)
    ap_rep = decode(reply.ap_rep)
    assert ap_rep.dump(force=True) == reply.ap_rep
    part = decode(decrypt(cta._session_key, KeyUsage.AP_REP_ENC_PART, ap_rep["enc-part"]["cipher"].native), padded=True)
    assert part.dump(force=True) == part.dump()
    est = events[-1]
    assert part["subkey"]["keyvalue"].native == est.subkey


def _ber(ap_req: bytes) -> bytes:
    """The same AP-REQ with the [0] pvno wrapper's length in the (non-minimal) long form."""
    body = ap_req[2:] if ap_req[1] < 0x80 else ap_req[2 + (ap_req[1] & 0x7F):]
    seq_len_octets = body[1] - 0x80 if body[1] > 0x80 else 0
    seq_content = body[2 + seq_len_octets:]
    assert seq_content[:5] == b"\xa0\x03\x02\x01\x05"
    seq_content = b"\xa0\x81\x03\x02\x01\x05" + seq_content[5:]
    return der.tlv(0x6E, der.tlv(0x30, seq_content))


def test_ber_ap_req_goes_the_reference_way_and_is_accepted():
    clock = Clock()
    sc, cta = new_sc(), new_cta()
    ap_req = ApRequest.parse(_request(cta, clock)).ap_req
    ber = _ber(ap_req)
    assert read_ap_req(ber) is None
    verified = sc.verify_ap_request(ber, clock.wallclock)
    assert verified.client == client(1)


def test_authenticator_reader_took_ctad_authenticators():
    clock = Clock()
    cta = new_cta()
    ap_req = decode(ApRequest.parse(_request(cta, clock)).ap_req)
    plain = decrypt(cta._session_key, KeyUsage.AP_REQ_AUTH, ap_req["authenticator"]["cipher"].native)
    fields = read_authenticator(plain)
    assert fields is not None and fields.cname == client(1).components


def test_ticket_cache_keeps_per_ticket_derived_values():
    clock = Clock()
    sc, cta = new_sc(), new_cta()
    sc.receive(_request(cta, clock), PEER, now=clock.now, wallclock=clock.wallclock)
    (info,) = sc._tickets.values()
    assert info.request_hmac_key == hmac_key(cta._session_key.contents, PURPOSE_AP_REQUEST)
    assert info.client_text == str(client(1))
    assert info.request_hmac_key.hex() not in repr(info)


def test_ticket_with_an_unusable_session_key_refuses_its_authenticators_as_before():
    """The per-ticket authenticator decryptor cannot be made for a session key of an unknown
    enctype: the cached ticket falls back to decrypt(), whose refusal is the same KRB-ERROR."""
    from common.asn1.krb5 import AP_REQ, EncryptionKey, EncTicketPart, Ticket, principal_to_asn1
    from common.crypto import Key, encrypt
    from tests.kmutil import SERVICE
    from tests.test_km import KEYTAB

    kvno = 2  # the newest service key in tests.test_km's keytab

    clock = Clock()
    cname, crealm = principal_to_asn1(client(1))
    part = EncTicketPart({
        "flags": 0x40810000, "key": EncryptionKey.from_key(Key(99, bytes(32))), "crealm": crealm, "cname": cname,
        "transited": {"tr-type": 1, "contents": b""}, "authtime": clock.wallclock, "endtime": clock.wallclock.replace(year=2100),
    }).dump()
    service_key = KEYTAB.key_for(SERVICE, 18, kvno)
    sname, srealm = principal_to_asn1(SERVICE)
    ticket = Ticket({"realm": srealm, "sname": sname, "enc-part": {
        "etype": 18, "kvno": kvno, "cipher": encrypt(service_key, KeyUsage.TICKET, part)}})
    ap_req = AP_REQ({"pvno": 5, "msg-type": 14, "ap-options": 0, "ticket": ticket,
                     "authenticator": {"etype": 99, "cipher": bytes(60)}}).dump()
    sc = new_sc()
    for _ in range(2):  # the ticket decrypted, then from the cache
        with pytest.raises(KrbError) as info:
            sc.verify_ap_request(ap_req, clock.wallclock)
        assert info.value.code == ErrorCode.KRB_AP_ERR_BAD_INTEGRITY
        assert info.value.text == "the authenticator does not decrypt with the ticket session key"
    assert sc.stats["ticket_decrypted"] == 1 and sc.stats["ticket_cache_hit"] == 1
