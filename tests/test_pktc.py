"""common/pktc.py: the PacketCable key-management messages, round trips and every malformed case."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from common import pktc
from common.pktc import (
    ApReply,
    ApRequest,
    ErrorReply,
    PktcFormatError,
    Rekey,
    SaRecovered,
    WakeUp,
    parse_km_message,
    rekey_material,
)

AP_REQ = bytes.fromhex("6e0a") + bytes(10)  # only the DER header matters to the framing
AP_REP = bytes.fromhex("6f820003") + b"abc"  # long-form length
KRB_ERROR = bytes.fromhex("7e03") + b"xyz"
H = b"\x5a" * 20
STAMP = datetime(2026, 11, 26, 12, 34, 56, tzinfo=timezone.utc)

MESSAGES = [
    WakeUp(0x01020304, "sc/sc1.example.test@EXAMPLE.TEST"),
    ApRequest(AP_REQ, 7, 0x1001, ((0, 20), (5, 12), (2, 3)), False, H),
    ApRequest(AP_REQ, 0, 0xFFFFFFFF, ((2, 3),), True, H),
    ApReply(AP_REP, 0x2002, (5, 12), 3600, 60, False, True, H),
    SaRecovered(H),
    Rekey(9, "sc/sc1.example.test@EXAMPLE.TEST", STAMP, 0x3003, ((0, 20),), 3600, 60, False, H),
    ErrorReply(KRB_ERROR),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    data = bytes(message)
    assert data[1:3] == b"\x01\x10"
    assert data[0] == message.MSG_ID
    assert parse_km_message(data) == message
    assert type(message).parse(data) == message
    assert bytes(parse_km_message(data)) == data


def test_exact_bytes():
    assert bytes(WakeUp(1, "a@B")) == b"\x01\x01\x10\x00\x00\x00\x01a@B\x00"
    assert bytes(SaRecovered(H)) == b"\x04\x01\x10" + H
    data = bytes(ApReply(AP_REP, 0x2002, (5, 12), 3600, 60, False, True, H))
    assert data == b"\x03\x01\x10" + AP_REP + bytes.fromhex("00002002 01 050c 00000e10 0000003c 00 01") + H
    rekey = bytes(MESSAGES[5])
    assert b"261126123456Z" in rekey
    assert MESSAGES[1].signed_bytes() == bytes(MESSAGES[1])[:-20]


def _req(**kw) -> bytes:
    fields = dict(ap_req=AP_REQ, server_nonce=7, spi=0x1001, suites=((0, 20),), reestablish=False, hmac=H)
    fields.update(kw)
    return bytes(ApRequest(**fields))


GOOD_REQ = _req()
GOOD_REP = bytes(MESSAGES[3])
GOOD_REKEY = bytes(MESSAGES[5])

MALFORMED = [
    (b"", "key-management message of 0 bytes is shorter than its 3-byte header"),
    (b"\x02\x01", "key-management message of 2 bytes is shorter than its 3-byte header"),
    (b"\x07\x01\x10", "unknown key-management message id 0x07"),
    (b"\x00\x01\x10", "unknown key-management message id 0x00"),
    (b"\x02\x02\x10" + GOOD_REQ[3:], "DOI 0x02 is not IPsec (0x01)"),
    (b"\x02\x01\x20" + GOOD_REQ[3:], "version 2.0 is not 1.0 (0x10)"),
    (b"\x02\x01\x10", "AP Request AP-REQ is missing"),
    (b"\x02\x01\x10\x30\x00", "AP Request carries outer tag 0x30, not AP-REQ (0x6e)"),
    (b"\x02\x01\x10\x6e", "AP Request AP-REQ is truncated in its DER length"),
    (b"\x02\x01\x10\x6e\x80\x00\x00", "AP Request AP-REQ uses the indefinite length form, which DER forbids"),
    (b"\x02\x01\x10\x6e\x85" + bytes(5), "AP Request AP-REQ has a 5-byte DER length"),
    (b"\x02\x01\x10\x6e\x82\x01", "AP Request AP-REQ is truncated in its DER length"),
    (b"\x02\x01\x10\x6e\x05ab", "AP Request AP-REQ claims 5 content bytes but only 2 remain"),
    (GOOD_REQ[:3 + len(AP_REQ) + 2], "AP Request truncated in server nonce (need 4 bytes, 2 left)"),
    (GOOD_REQ[:3 + len(AP_REQ) + 4], "AP Request truncated in SPI (need 4 bytes, 0 left)"),
    (_req(spi=255), "AP Request SPI 255 is reserved (RFC 4303: 0-255)"),
    (GOOD_REQ[:3 + len(AP_REQ) + 8], "AP Request truncated in suite count (need 1 bytes, 0 left)"),
    (_req(suites=())[:-21] , "AP Request lists no cipher suite"),
    (GOOD_REQ[:3 + len(AP_REQ) + 10], "AP Request truncated in suite list (need 2 bytes, 1 left)"),
    (GOOD_REQ[:3 + len(AP_REQ) + 11], "AP Request truncated in re-establish flag (need 1 bytes, 0 left)"),
    (GOOD_REQ[:-21] + b"\x02" + H, "AP Request re-establish flag is 0x02, not 0 or 1"),
    (GOOD_REQ[:-1], "AP Request truncated in HMAC (need 20 bytes, 19 left)"),
    (GOOD_REQ + b"\x00", "AP Request has 1 trailing bytes"),
    (b"\x03\x01\x10" + AP_REQ, "AP Reply carries outer tag 0x6e, not AP-REP (0x6f)"),
    (GOOD_REP.replace(b"\x01\x05\x0c", b"\x02\x05\x0c\x00\x14"), "AP Reply selects 2 cipher suites; exactly 1 expected"),
    (GOOD_REP[:-22] + b"\x00\x07" + H, "AP Reply ack-required flag is 0x07, not 0 or 1"),
    (GOOD_REP[:-24], "AP Reply truncated in grace period (need 4 bytes, 2 left)"),
    (b"\x04\x01\x10" + H[:10], "SA Recovered truncated in HMAC (need 20 bytes, 10 left)"),
    (b"\x04\x01\x10" + H + b"!", "SA Recovered has 1 trailing bytes"),
    (b"\x01\x01\x10\x00\x00\x00\x01", "Wake Up server principal has no NUL terminator"),
    (b"\x01\x01\x10\x00\x00\x00\x01\x00", "Wake Up server principal is empty"),
    (b"\x01\x01\x10\x00\x00\x00\x01a b\x00", "Wake Up server principal is not printable ASCII"),
    (b"\x01\x01\x10\x00\x00\x00\x01" + b"a" * 256 + b"\x00", "Wake Up server principal is 256 bytes long (limit 255)"),
    (b"\x01\x01\x10\x00\x00\x00\x01a\x00b", "Wake Up has 1 trailing bytes"),
    (GOOD_REKEY.replace(b"261126123456Z", b"261126123456X"), "Rekey timestamp b'261126123456X' is not YYMMDDhhmmssZ"),
    (GOOD_REKEY.replace(b"261126123456Z", b"261326123456Z"), "Rekey timestamp b'261326123456Z' is not a valid date"),
    (b"\x06\x01\x10" + AP_REQ, "Error Reply carries outer tag 0x6e, not KRB-ERROR (0x7e)"),
    (b"\x06\x01\x10" + KRB_ERROR + b"\x00", "Error Reply has 1 trailing bytes"),
    (b"\x06\x01\x10\x7f\x81\x00", "Error Reply carries outer tag 0x7f, not KRB-ERROR (0x7e)"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed(data, message):
    with pytest.raises(PktcFormatError) as info:
        parse_km_message(data)
    assert str(info.value) == message


def test_wrong_class():
    with pytest.raises(PktcFormatError, match=r"^message id 0x02 \(AP Request\) is not AP Reply \(0x03\)$"):
        ApReply.parse(GOOD_REQ)


def test_not_bytes():
    with pytest.raises(PktcFormatError, match="expected bytes, got str"):
        parse_km_message("abc")


def test_hmac_keys_are_separated_by_purpose():
    secret = bytes(range(32))
    keys = {p: pktc.hmac_key(secret, p) for p in (pktc.PURPOSE_AP_REQUEST, pktc.PURPOSE_AP_REPLY, pktc.PURPOSE_SA_RECOVERED, pktc.PURPOSE_REKEY)}
    assert len(set(keys.values())) == 4 and all(len(k) == 20 for k in keys.values())
    mac = pktc.compute_hmac(keys[pktc.PURPOSE_AP_REQUEST], b"abc")
    assert pktc.verify_hmac(keys[pktc.PURPOSE_AP_REQUEST], mac, b"a", b"bc")
    assert not pktc.verify_hmac(keys[pktc.PURPOSE_AP_REPLY], mac, b"abc")


def test_rekey_material_avoids_the_current_spis():
    rekey = MESSAGES[5]
    subkey, spi = rekey_material(b"k" * 32, rekey, 0x1234)
    assert len(subkey) == 32 and subkey != b"k" * 32 and 256 <= spi < 2**32
    assert rekey_material(b"k" * 32, rekey, spi)[1] == spi + 1 or spi == 2**32 - 1


def test_der_length_multi_byte_tag():
    with pytest.raises(PktcFormatError, match="^x has a multi-byte tag 0x7f, not a Kerberos message$"):
        pktc.der_length(b"\x7f\x81\x00", 0, "x")
    assert pktc.der_length(b"\x30\x81\x01\x00", 0, "x") == 4
