"""The decode invariant: any input either decodes or raises Asn1DecodeError, nothing else.

Inputs are random bytes and random mutations (byte flips, insertions, deletions, truncations)
of valid messages, so the fuzzer reaches deep into the structures instead of failing at byte 0.
"""

from __future__ import annotations

from asn1crypto import cms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.asn1 import Asn1DecodeError, decode, decode_as, decode_enc_kdc_rep_part, fast, krb5, oids, pkinit
from tests.test_asn1_fast import ARMORED_REQ, RESPONSE
from tests.test_asn1_roundtrip import MESSAGES, PADATA, REQ_BODY, T0
from tests.test_asn1_vectors import MIT_ENC_KDC_REP_PART, MIT_MESSAGES, h

SEEDS = [cls(value).dump() for cls, value in MESSAGES] + [h(text) for text in MIT_MESSAGES.values()]
SEEDS.append(h(MIT_ENC_KDC_REP_PART))


def _pk_as_req() -> bytes:
    auth_pack = pkinit.AuthPack(
        {
            "pkAuthenticator": {"cusec": 1, "ctime": T0, "nonce": 5, "paChecksum": b"\x00" * 20},
            "clientPublicValue": pkinit.dh_client_public_value(23, 5, 11, 19),
            "supportedKDFs": [{"kdf-id": oids.ID_PKINIT_KDF_AH_SHA256}],
        }
    )
    encap = pkinit.encap_content_info(auth_pack, oids.ID_PKINIT_AUTHDATA)
    signed = cms.SignedData({"version": "v3", "digest_algorithms": [], "encap_content_info": encap, "signer_infos": []})
    return pkinit.PA_PK_AS_REQ({"signedAuthPack": pkinit.ContentInfoOctets(pkinit.signed_data_content_info(signed))}).dump()


TYPED_SEEDS = [
    (pkinit.PA_PK_AS_REQ, _pk_as_req()),
    (pkinit.KRB5PrincipalName, pkinit.KRB5PrincipalName({"realm": "R", "principalName": {"name-type": 1, "name-string": ["a", "b"]}}).dump()),
    (krb5.PA_ENC_TS_ENC, krb5.PA_ENC_TS_ENC({"patimestamp": T0, "pausec": 5}).dump()),
    (krb5.ETYPE_INFO2, krb5.ETYPE_INFO2([{"etype": 18, "salt": "s", "s2kparams": b"\x00"}]).dump()),
    (pkinit.KDCDHKeyInfo, pkinit.KDCDHKeyInfo({"subjectPublicKey": b"\x02\x01\x05", "nonce": 1, "dhKeyExpiration": T0}).dump()),
    (fast.PA_FX_FAST_REQUEST, fast.PA_FX_FAST_REQUEST(("armored-data", ARMORED_REQ)).dump()),
    (fast.KrbFastReq, fast.KrbFastReq({"fast-options": 0, "padata": PADATA, "req-body": REQ_BODY}).dump()),
    (fast.KrbFastResponse, fast.KrbFastResponse(RESPONSE).dump()),
]


@st.composite
def mutated(draw, seeds):
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0x84, 0xFF, 0x04, 0x18, 0x1B, 0x30, 0xA0]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 4))]
        else:
            del data[at:]
    return bytes(data)


def _decodes_or_raises_our_error(fn, data):
    try:
        value = fn(data)
    except Asn1DecodeError as exc:
        assert str(exc)  # a message that says what is wrong
        return
    # Whatever decoded must be usable: fully parsed and re-encodable without surprises.
    value.native
    value.dump(force=True)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data):
    _decodes_or_raises_our_error(decode, data)
    _decodes_or_raises_our_error(lambda d: decode(d, padded=True), data)
    _decodes_or_raises_our_error(decode_enc_kdc_rep_part, data)
    _decodes_or_raises_our_error(lambda d: decode_as(pkinit.AuthPack, d), data)


@FUZZ
@given(st.binary(max_size=200).map(lambda tail: bytes([0x60 | (tail[0] % 31 if tail else 10)]) + tail))
def test_random_bytes_behind_an_application_tag(data):
    _decodes_or_raises_our_error(decode, data)


@FUZZ
@given(mutated(SEEDS))
def test_mutated_messages(data):
    _decodes_or_raises_our_error(decode, data)
    _decodes_or_raises_our_error(lambda d: decode(d, padded=True), data)


@FUZZ
@given(st.integers(0, len(TYPED_SEEDS) - 1), st.data())
def test_mutated_typed_values(index, data):
    cls, seed = TYPED_SEEDS[index]
    mutant = data.draw(mutated([seed]))
    _decodes_or_raises_our_error(lambda d: decode_as(cls, d), mutant)


@FUZZ
@given(mutated([TYPED_SEEDS[1][1]]))
def test_mutated_pkinit_san(data):
    try:
        pkinit.decode_pkinit_san(data)
    except Asn1DecodeError:
        pass


def test_every_truncation_of_every_seed():
    for seed in SEEDS:
        for end in range(len(seed)):
            _decodes_or_raises_our_error(decode, seed[:end])
