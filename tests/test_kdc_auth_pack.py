"""kdcd.auth_pack: the fast signedAuthPack path gives what the reference path (asn1crypto +
common.cms) gives, and gives up (None) wherever the reference refuses, so the KDC's answer to
a bad request is the reference's, word for word."""

from __future__ import annotations

import dataclasses

import pytest
from asn1crypto import cms as asn1_cms

from common import cms
from common.asn1 import ErrorCode, PaDataType, oids
from common.asn1.fastdecode_as import read_as_req
from common.asn1.pkinit import PA_PK_AS_REQ, AuthPack
from common.pki import thumbprint
from kdcd.auth_pack import SignedAuthPackReader, client_auth_pack, read_reference
from test_kdc_engine_support import SC, error_code, make_realm, open_pkinit_reply, pkinit_request
from test_kdc_fastdecode_as import authenticator, pa_with, signed_pack
from test_pki_factories import build, ec_key, world


def _pa(request) -> bytes:
    return dict(read_as_req(request.data).padata)[PaDataType.PA_PK_AS_REQ]


def _reference(pa: bytes):
    signed, pack = read_reference(pa)
    return cms.verify_signed_data(signed, expected_content_type=oids.ID_PKINIT_AUTHDATA), client_auth_pack(pack)


def _same(fast, pa: bytes) -> None:
    signed, auth = _reference(pa)
    assert fast is not None
    assert fast.signed == signed
    assert fast.thumbprint == thumbprint(signed.signer_certificate)
    ours = dataclasses.replace(fast.auth_pack, dh=None, ec=None)
    theirs = dataclasses.replace(auth, public_value_asn1=None)
    assert ours == theirs
    if auth.public_value_asn1 is not None:
        value = auth.public_value_asn1
        if auth.public_algorithm == oids.DHPUBLICNUMBER:
            params = value["algorithm"]["parameters"]
            assert fast.auth_pack.dh[:3] == (params["p"].native, params["g"].native, params["q"].native)
        else:
            assert fast.auth_pack.ec == (value["algorithm"]["parameters"].chosen.dotted, value["public_key"].__bytes__())


@pytest.mark.parametrize("mode", ["dh", "ecdh", "rsa"])
def test_fast_path_equals_the_reference(mode):
    w = world()
    request = pkinit_request(w.provisioned, w.device_key, sname=SC, mode=mode, client_dh_nonce=b"n" * 32,
                             certificates=(w.operator.certificate,))
    pa = _pa(request)
    _same(SignedAuthPackReader().read(pa), pa)


def test_ecdsa_signatures_including_mit_labelling():
    w = world()
    cert, key = build(w.operator, key=ec_key(7))
    signed = signed_pack({"pkAuthenticator": authenticator()}, key=key, cert=cert)
    pa = pa_with(signed)
    _same(SignedAuthPackReader().read(pa), pa)
    # MIT 1.20 labels its ECDSA signatures sha256WithRSAEncryption; common.cms accepts that.
    signed["signer_infos"][0]["signature_algorithm"] = {"algorithm": "sha256_rsa"}
    pa = pa_with(asn1_cms.SignedData.load(signed.dump(force=True)))
    _same(SignedAuthPackReader().read(pa), pa)


def _tampered_signature(signed):
    signer = signed["signer_infos"][0]
    sig = bytearray(signer["signature"].native)
    sig[-1] ^= 1
    signer["signature"] = bytes(sig)
    return asn1_cms.SignedData.load(signed.dump(force=True))


def _other_content(signed):
    other = signed_pack({"pkAuthenticator": authenticator(nonce=43)})
    signed["encap_content_info"] = other["encap_content_info"]  # messageDigest no longer matches
    return asn1_cms.SignedData.load(signed.dump(force=True))


def _without_certificates(signed):
    del signed["certificates"]
    return asn1_cms.SignedData.load(signed.dump(force=True))


def _md5(signed):
    signed["signer_infos"][0]["digest_algorithm"] = {"algorithm": "md5"}
    return asn1_cms.SignedData.load(signed.dump(force=True))


def _wrong_content_type_attribute(signed):
    w = world()
    other = cms.sign_signed_data(AuthPack({"pkAuthenticator": authenticator()}).dump(), oids.ID_PKINIT_DHKEYDATA,
                                 w.provisioned, w.device_key)
    signed["signer_infos"] = other["signer_infos"]
    return asn1_cms.SignedData.load(signed.dump(force=True))


@pytest.mark.parametrize("spoil", [_tampered_signature, _other_content, _without_certificates, _md5,
                                   _wrong_content_type_attribute])
def test_fast_path_gives_up_wherever_the_reference_refuses(spoil):
    pa = pa_with(spoil(signed_pack({"pkAuthenticator": authenticator()})))
    assert SignedAuthPackReader().read(pa) is None
    with pytest.raises(cms.CmsError):
        _reference(pa)


def test_engine_answers_a_bad_signature_with_the_reference_error(tmp_path):
    realm = make_realm(tmp_path)
    w = realm.world
    request = pkinit_request(w.provisioned, w.device_key, sname=SC)
    pa = _pa(request)
    pk_req = PA_PK_AS_REQ.load(pa)
    signed = _tampered_signature(asn1_cms.SignedData.load(pk_req["signedAuthPack"].parsed["content"].untag().dump()))
    bad = request.data.replace(pa, pa_with(signed))
    assert bad != request.data
    try:
        _reference(pa_with(signed))
    except cms.CmsError as exc:
        expected = exc.krb_error_code
    assert error_code(realm.send(bad)) == expected
    open_pkinit_reply(request, realm.send(request.data))  # the untouched request still works


def test_request_from_the_reference_path_is_served_the_same(tmp_path, monkeypatch):
    """With the fast reader switched off the engine serves the same request the same way."""
    realm = make_realm(tmp_path)
    w = realm.world
    for mode in ("dh", "ecdh", "rsa"):
        request = pkinit_request(w.provisioned, w.device_key, sname=SC, mode=mode)
        open_pkinit_reply(request, realm.send(request.data))
    monkeypatch.setattr(SignedAuthPackReader, "read", lambda self, pa: None)
    monkeypatch.setattr("kdcd.engine.read_as_req", lambda data: None)
    for mode in ("dh", "ecdh", "rsa"):
        request = pkinit_request(w.provisioned, w.device_key, sname=SC, mode=mode)
        open_pkinit_reply(request, realm.send(request.data))


def test_checks_after_the_signature_apply_to_fast_path_requests(tmp_path):
    realm = make_realm(tmp_path)
    w = realm.world
    request = pkinit_request(w.provisioned, w.device_key, sname=SC, pa_checksum=None)
    reply = realm.send(request.data)
    assert error_code(reply) == ErrorCode.KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED
