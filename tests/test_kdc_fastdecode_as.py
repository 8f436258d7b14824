"""The AS-REQ / PA-PK-AS-REQ fast reader (common.asn1.fastdecode_as) against asn1crypto.

- On valid requests (the test client's, common.krb5client's, MIT-shaped ones, random bodies) the
  readers return exactly the values the asn1crypto path reads.
- They never accept bytes the reference refuses, nor read different values from bytes it
  accepts: checked on random mutations of valid requests.
- Shapes outside what they know give None (the KDC then decodes with asn1crypto).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random

import pytest
from asn1crypto import algos, cms as asn1_cms, core
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from common import cms
from common.asn1 import Asn1DecodeError, PaDataType, decode, decode_as, oids
from common.asn1.fastdecode_as import read_as_req, read_pa_pk_as_req
from common.asn1.krb5 import AS_REQ, KDC_REQ_BODY, principal_to_asn1
from common.asn1.pkinit import (
    PA_PK_AS_REQ,
    AuthPack,
    ContentInfoOctets,
    decode_dh_public_value,
    signed_data_content_info,
    unwrap_auth_pack,
)
from common.principal import Principal
from kdcd.auth_pack import SignedAuthPackReader
from test_kdc_engine_support import CTA, KRBTGT, SC, as_req, pkinit_request, req_body
from test_pki_factories import NOW, world

SETTINGS = settings(max_examples=120, deadline=None)

int32 = st.integers(-(2**31), 2**31 - 1)
uint32 = st.integers(0, 2**32 - 1)
text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_categories=("Cs",)), min_size=0, max_size=20)
principals = st.builds(Principal, st.lists(text, min_size=1, max_size=3).map(tuple), text, st.integers(-5, 12))
times = st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31), timezones=st.just(dt.timezone.utc)).map(
    lambda t: t.replace(microsecond=0)
)


# --- the reference values ----------------------------------------------------------------------------


def _name(name) -> tuple[int, tuple[str, ...]] | None:
    return None if name.native is None else (name["name-type"].native, tuple(name["name-string"].native))


def reference_as_req(data: bytes) -> tuple:
    req = decode_as(AS_REQ, data)
    body = req["req-body"]
    padata = None
    if req["padata"].native is not None:
        padata = tuple((p["padata-type"].native, p["padata-value"].native) for p in req["padata"])
    addresses = body["addresses"].native
    return (
        req["pvno"].native, req["msg-type"].native, padata, req.req_body_bytes(), int(body["kdc-options"].native),
        _name(body["cname"]), body["realm"].native, _name(body["sname"]), body["till"].native, body["rtime"].native,
        body["nonce"].native, tuple(body["etype"].native),
        None if addresses is None else tuple((a["addr-type"], a["address"]) for a in addresses),
    )


def fast_as_req(fields) -> tuple:
    return (
        fields.pvno, fields.msg_type, fields.padata, fields.req_body, fields.kdc_options, fields.cname, fields.realm,
        fields.sname, fields.till, fields.rtime, fields.nonce, fields.etypes, fields.addresses,
    )


def reference_pa(data: bytes) -> tuple:
    pk_req = decode_as(PA_PK_AS_REQ, data)
    signed, pack = unwrap_auth_pack(pk_req["signedAuthPack"].parsed)
    (signer,) = signed["signer_infos"]
    sid = signer["sid"]
    issuer = serial = key_id = None
    if sid.name == "issuer_and_serial_number":
        issuer, serial = sid.chosen["issuer"].dump(), sid.chosen["serial_number"].native
    else:
        key_id = sid.chosen.native
    attrs = {a["type"].dotted: a["values"] for a in signer["signed_attrs"]}
    certs = signed["certificates"]
    certificates = () if isinstance(certs, core.Void) else tuple(c.chosen.dump() for c in certs)
    return (
        bytes(signed["encap_content_info"]["content"]), certificates, issuer, serial, key_id,
        signer["digest_algorithm"]["algorithm"].dotted, cms.signed_attributes_der(signer["signed_attrs"]),
        attrs["1.2.840.113549.1.9.3"][0].dotted, attrs["1.2.840.113549.1.9.4"][0].native,
        signer["signature_algorithm"]["algorithm"].dotted, signer["signature"].native, reference_auth_pack(pack),
    )


def reference_auth_pack(pack: AuthPack) -> tuple:
    a = pack["pkAuthenticator"]
    checksum2 = None
    if a["paChecksum2"].native is not None:
        checksum2 = (a["paChecksum2"]["algorithmIdentifier"]["algorithm"].dotted, a["paChecksum2"]["checksum"].native)
    value = pack["clientPublicValue"]
    algorithm = dh = ec = None
    if value.native is not None:
        algorithm = value["algorithm"]["algorithm"].dotted
        params = value["algorithm"]["parameters"]
        if algorithm == oids.DHPUBLICNUMBER:
            dh = (params["p"].native, params["g"].native, params["q"].native,
                  decode_dh_public_value(value["public_key"].__bytes__()))
        else:
            ec = (params.chosen.dotted, value["public_key"].__bytes__())
    kdfs = pack["supportedKDFs"]
    cms_types = pack["supportedCMSTypes"]
    return (
        a["cusec"].native, a["ctime"].native, a["nonce"].native, a["paChecksum"].native, a["freshnessToken"].native,
        checksum2, algorithm, dh, ec,
        None if cms_types.native is None else tuple(t["algorithm"].dotted for t in cms_types),
        pack["clientDHNonce"].native,
        None if kdfs.native is None else tuple(k["kdf-id"].dotted for k in kdfs),
    )


def fast_pa(fields) -> tuple:
    p = fields.auth_pack
    pack = (p.cusec, p.ctime, p.nonce, p.pa_checksum, p.freshness_token, p.pa_checksum2, p.public_algorithm, p.dh, p.ec,
            p.cms_types, p.client_dh_nonce, p.kdfs)
    return (fields.content, fields.certificates, fields.sid_issuer, fields.sid_serial, fields.sid_key_id,
            fields.digest_algorithm, fields.signed_attributes, fields.content_type_attribute, fields.message_digest,
            fields.signature_algorithm, fields.signature, pack)


def padata_value(data: bytes) -> bytes:
    return dict(read_as_req(data).padata)[PaDataType.PA_PK_AS_REQ]


def pa_with(signed_data, **extra) -> bytes:
    value = {"signedAuthPack": ContentInfoOctets(signed_data_content_info(signed_data)), **extra}
    return PA_PK_AS_REQ(value).dump()


def signed_pack(pack: dict, *, key=None, cert=None, **kwargs):
    w = world()
    return cms.sign_signed_data(AuthPack(pack).dump(), oids.ID_PKINIT_AUTHDATA, cert or w.provisioned,
                                key or w.device_key, **kwargs)


def authenticator(**fields) -> dict:
    value = {"cusec": 123456, "ctime": NOW, "nonce": 42, "paChecksum": bytes(20)}
    value.update(fields)
    return {k: v for k, v in value.items() if v is not None}


# --- valid requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["dh", "ecdh", "rsa"])
@pytest.mark.parametrize("variant", ["plain", "no-kdfs", "freshness", "dh-nonce"])
def test_test_client_requests_read_like_the_reference(mode, variant):
    w = world()
    kwargs = {"no-kdfs": {"kdfs": None}, "freshness": {"freshness": b"KTF1token"}, "dh-nonce": {"client_dh_nonce": bytes(32)}}
    request = pkinit_request(w.provisioned, w.device_key, sname=SC, mode=mode, **kwargs.get(variant, {}))
    fields = read_as_req(request.data)
    assert fields is not None and fast_as_req(fields) == reference_as_req(request.data)
    pa = padata_value(request.data)
    signed = read_pa_pk_as_req(pa)
    assert signed is not None and fast_pa(signed) == reference_pa(pa)


@pytest.mark.parametrize("mode", ["dh", "ecdh", "rsa"])
def test_krb5client_requests_read_like_the_reference(mode):
    from common.krb5client import AsClientConfig, AsExchange, ClientIdentity

    w = world()
    config = AsClientConfig(identity=ClientIdentity(w.provisioned, w.device_key), client=CTA, realm=CTA.realm,
                            anchors=(w.operator.certificate,), service=SC, mode=mode)
    data = AsExchange(config).start(wallclock=NOW)
    assert fast_as_req(read_as_req(data)) == reference_as_req(data)
    pa = padata_value(data)
    assert fast_pa(read_pa_pk_as_req(pa)) == reference_pa(pa)


def test_mit_shaped_pa_pk_as_req_is_read():
    """MIT's kinit sends trustedCertifiers (all three alternatives) and clientDHNonce."""
    pack = {"pkAuthenticator": authenticator(freshnessToken=b"token"), "clientDHNonce": bytes(32),
            "supportedCMSTypes": [{"algorithm": "1.2.840.113549.3.7"}]}
    certifiers = [{"subjectName": b"\x30\x00", "issuerAndSerialNumber": b"\x30\x03\x02\x01\x01", "subjectKeyIdentifier": b"\x04\x01\x00"},
                  {"subjectKeyIdentifier": b"key-id"}]
    for extra in ({"trustedCertifiers": certifiers}, {"kdcPkId": b"kdc key id"}, {"trustedCertifiers": certifiers, "kdcPkId": b"x"}):
        pa = pa_with(signed_pack(pack), **extra)
        fields = read_pa_pk_as_req(pa)
        assert fields is not None and fast_pa(fields) == reference_pa(pa)
        assert fields.auth_pack.client_dh_nonce == bytes(32) and fields.auth_pack.public_algorithm is None


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha384", "sha512"])
def test_pa_checksum2_and_digests(digest):
    pack = {"pkAuthenticator": authenticator(paChecksum2={"checksum": bytes(32), "algorithmIdentifier": {"algorithm": digest}})}
    pa = pa_with(signed_pack(pack, digest=digest))
    fields = read_pa_pk_as_req(pa)
    assert fields is not None and fast_pa(fields) == reference_pa(pa)
    assert fields.auth_pack.pa_checksum2[0] == algos.DigestAlgorithmId.unmap(digest)


def test_signer_identified_by_subject_key_identifier():
    w = world()
    signed = signed_pack({"pkAuthenticator": authenticator()})
    signer = signed["signer_infos"][0]
    ski = w.provisioned.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    signer["sid"] = asn1_cms.SignerIdentifier({"subject_key_identifier": ski})
    pa = pa_with(asn1_cms.SignedData.load(signed.dump(force=True)))
    fields = read_pa_pk_as_req(pa)
    assert fields is not None and fields.sid_key_id == ski and fields.sid_issuer is None
    assert fast_pa(fields) == reference_pa(pa)


@given(
    cname=st.none() | principals,
    sname=principals,
    realm=text,
    till=times,
    rtime=st.none() | times,
    start=st.none() | times,
    nonce=uint32,
    options=uint32,
    etypes=st.lists(int32, max_size=6),
    addresses=st.none() | st.lists(st.tuples(int32, st.binary(max_size=20)), max_size=3),
    padata=st.lists(st.tuples(int32, st.binary(max_size=300)), max_size=3),
    with_padata=st.booleans(),
)
@SETTINGS
def test_random_as_req_bodies_read_like_the_reference(cname, sname, realm, till, rtime, start, nonce, options, etypes,
                                                      addresses, padata, with_padata):
    body = {"kdc-options": options, "realm": realm, "sname": principal_to_asn1(sname)[0], "till": till,
            "nonce": nonce, "etype": etypes}
    if cname is not None:
        body["cname"] = principal_to_asn1(cname)[0]
    if rtime is not None:
        body["rtime"] = rtime
    if start is not None:
        body["from"] = start
    if addresses is not None:
        body["addresses"] = [{"addr-type": t, "address": a} for t, a in addresses]
    value = {"req-body": KDC_REQ_BODY(body)}
    if with_padata:
        value["padata"] = [{"padata-type": t, "padata-value": v} for t, v in padata]
    data = AS_REQ(value).dump()
    fields = read_as_req(data)
    assert fields is not None
    assert fast_as_req(fields) == reference_as_req(data)


# --- shapes the reader leaves to asn1crypto ---------------------------------------------------------


def _body_with(**extra) -> bytes:
    body = req_body(CTA, KRBTGT, nonce=7, till=NOW)
    for name, v in extra.items():
        body[name] = v
    return as_req(KDC_REQ_BODY.load(body.dump(force=True)), [])


def test_elements_the_reader_does_not_know_fall_back():
    good = _body_with()
    assert read_as_req(good) is not None
    assert read_as_req(_body_with(**{"enc-authorization-data": {"etype": 18, "cipher": b"x"}})) is None
    assert read_as_req(good + b"\x00") is None  # trailing bytes
    content = good[2:] if good[1] < 0x80 else good[2 + (good[1] & 0x7F):]
    long_form = good[:1] + b"\x83" + len(content).to_bytes(3, "big") + content  # non-minimal length
    assert read_as_req(long_form) is None
    decode(long_form)  # asn1crypto accepts it: the KDC decodes it there


def test_pa_pk_as_req_shapes_the_reader_leaves_to_asn1crypto():
    w = world()
    base = {"pkAuthenticator": authenticator()}
    assert read_pa_pk_as_req(pa_with(signed_pack(base))) is not None
    # A third signed attribute (signingTime).
    signed = signed_pack(base)
    signer = signed["signer_infos"][0]
    attrs = list(signer["signed_attrs"]) + [asn1_cms.CMSAttribute({"type": "signing_time", "values": [asn1_cms.Time({"utc_time": NOW})]})]
    signer["signed_attrs"] = asn1_cms.CMSAttributes(attrs)
    assert read_pa_pk_as_req(pa_with(asn1_cms.SignedData.load(signed.dump(force=True)))) is None
    # RSASSA-PSS (parameters other than NULL).
    pss = cms.sign_signed_data(AuthPack(base).dump(), oids.ID_PKINIT_AUTHDATA, w.provisioned, w.device_key, rsa_padding="pss")
    assert read_pa_pk_as_req(pa_with(pss)) is None
    # eContentType other than id-pkinit-authData.
    other = cms.sign_signed_data(AuthPack(base).dump(), oids.ID_PKINIT_DHKEYDATA, w.provisioned, w.device_key)
    assert read_pa_pk_as_req(pa_with(other)) is None
    # DH domain parameters with j.
    pack = dict(base, clientPublicValue={"algorithm": {"algorithm": oids.DHPUBLICNUMBER, "parameters": {"p": 23, "g": 5, "q": 11, "j": 2}},
                                         "public_key": core.Integer(4)})
    assert read_pa_pk_as_req(pa_with(signed_pack(pack))) is None
    # supportedCMSTypes with parameters (an IV).
    pack = dict(base, supportedCMSTypes=[{"algorithm": "2.16.840.1.101.3.4.1.42", "parameters": core.OctetString(bytes(16))}])
    assert read_pa_pk_as_req(pa_with(signed_pack(pack))) is None
    assert read_pa_pk_as_req(b"") is None and read_pa_pk_as_req(b"\x30\x00") is None


# --- mutations: never accept what the reference refuses ----------------------------------------------


def _mutations(data: bytes, rng: random.Random, count: int):
    for _ in range(count):
        b = bytearray(data)
        kind = rng.randrange(4)
        at = rng.randrange(len(b))
        if kind == 0:
            b[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b[at] = rng.randrange(256)
        elif kind == 2:
            del b[at : at + rng.randrange(1, 4)]
        else:
            b[at:at] = bytes([rng.randrange(256)])
        yield bytes(b)


def _reference_or_none(fn, data):
    try:
        return fn(data)
    except (Asn1DecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None


@pytest.mark.parametrize("mode", ["dh", "ecdh", "rsa"])
def test_mutated_as_req_never_reads_differently(mode):
    w = world()
    request = pkinit_request(w.provisioned, w.device_key, sname=SC, mode=mode)
    rng = random.Random(f"as-{mode}")
    accepted = 0
    for data in _mutations(request.data, rng, 400):
        fields = read_as_req(data)
        if fields is None:
            continue
        accepted += 1
        reference = _reference_or_none(reference_as_req, data)
        assert reference is not None, data.hex()
        assert fast_as_req(fields) == reference
    assert accepted  # flips inside opaque octets keep the shape


@pytest.mark.parametrize("mode", ["dh", "ecdh", "rsa"])
def test_mutated_pa_pk_as_req_never_reads_differently(mode):
    w = world()
    request = pkinit_request(w.provisioned, w.device_key, sname=SC, mode=mode, freshness=b"tok", client_dh_nonce=b"n" * 32)
    pa = padata_value(request.data)
    rng = random.Random(f"pa-{mode}")
    accepted = 0
    reader = SignedAuthPackReader()
    for data in _mutations(pa, rng, 500):
        fields = read_pa_pk_as_req(data)
        if fields is None:
            continue
        accepted += 1
        reference = _reference_or_none(reference_pa, data)
        if reference is None:
            # Embedded certificates and the sid's issuer Name are opaque to the reader; its
            # verifier decodes them as the reference does before relying on them, and gives up.
            assert reader.read(data) is None
            continue
        assert fast_pa(fields) == reference
    assert accepted


def test_body_checksum_covers_the_bytes_as_received():
    w = world()
    request = pkinit_request(w.provisioned, w.device_key)
    fields = read_as_req(request.data)
    pack = read_pa_pk_as_req(dict(fields.padata)[PaDataType.PA_PK_AS_REQ]).auth_pack
    assert pack.pa_checksum == hashlib.sha1(fields.req_body).digest()
