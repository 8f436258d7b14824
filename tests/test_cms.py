"""common.cms: SignedData and EnvelopedData for PKINIT.

Round trips for every key type and digest, one test per verification failure with its KRB-ERROR,
OpenSSL as an independent CMS implementation in both directions, and MIT krb5's own PKINIT CMS
from the golden vectors (tests/vectors/mit).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from common import cms as C
from common.asn1 import ErrorCode, PaDataType, decode, decode_as, oids
from common.asn1.pkinit import (
    PA_PK_AS_REP,
    PA_PK_AS_REQ,
    decode_enc_key_pack_content,
    unwrap_auth_pack,
    unwrap_kdc_dh_key_info,
    unwrap_reply_key_pack,
)
from common.pki import load_certificates, load_private_key
from tests.conftest import require_peer

VECTORS = Path(__file__).parent / "vectors" / "mit"
AUTHDATA = oids.ID_PKINIT_AUTHDATA
DIGESTS = ["sha1", "sha224", "sha256", "sha384", "sha512"]
CONTENT = b"\x30\x03\x02\x01\x07 an AuthPack stand-in"

# --- certificate factory -----------------------------------------------------------------------


def _cert(key, name: str, *, serial: int, ski: bool = True) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
    )
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def rsa_identity():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _cert(key, "rsa signer", serial=0x1001), key


@pytest.fixture(scope="module")
def other_rsa_identity():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _cert(key, "another signer", serial=0x1002), key


@pytest.fixture(scope="module")
def ec_identity():
    key = ec.generate_private_key(ec.SECP256R1())
    return _cert(key, "ec signer", serial=0x1003), key


def _reload(signed: cms.SignedData) -> cms.SignedData:
    """Through the wire: DER out, parse back (verification must work on received bytes)."""
    return cms.ContentInfo.load(C.content_info(signed).dump())["content"]


def _signer_info(signed):
    return signed["signer_infos"][0]


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("digest", DIGESTS)
@pytest.mark.parametrize("kind", ["rsa-pkcs1v15", "rsa-pss", "ec"])
def test_sign_verify_round_trip(kind, digest, rsa_identity, ec_identity):
    cert, key = ec_identity if kind == "ec" else rsa_identity
    signed = C.sign_signed_data(
        CONTENT, AUTHDATA, cert, key, digest=digest, rsa_padding="pss" if kind == "rsa-pss" else "pkcs1v15"
    )
    verified = C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)
    assert verified.content == CONTENT
    assert verified.signer_certificate == cert
    assert verified.certificates == [cert]
    assert verified.digest_algorithm == digest


def test_signed_data_has_mit_shape(rsa_identity):
    cert, key = rsa_identity
    signed = _reload(C.sign_signed_data(CONTENT, AUTHDATA, cert, key))
    assert signed["version"].native == "v3"
    assert signed["digest_algorithms"].dump().hex() == "310f300d06096086480165030402010500"  # sha256, NULL
    info = _signer_info(signed)
    assert info["version"].native == "v1"
    assert info["sid"].name == "issuer_and_serial_number"
    assert info["sid"].chosen["serial_number"].native == cert.serial_number
    assert info["signature_algorithm"]["algorithm"].native == "sha256_rsa"
    assert [a["type"].native for a in info["signed_attrs"]] == ["content_type", "message_digest"]
    assert signed["encap_content_info"]["content_type"].dotted == AUTHDATA


def test_verify_accepts_a_content_info(rsa_identity):
    cert, key = rsa_identity
    info = cms.ContentInfo.load(C.content_info(C.sign_signed_data(CONTENT, AUTHDATA, cert, key)).dump())
    assert C.verify_signed_data(info, expected_content_type=AUTHDATA).content == CONTENT


def test_intermediates_are_embedded_after_the_signer(rsa_identity, ec_identity):
    cert, key = rsa_identity
    signed = C.sign_signed_data(CONTENT, AUTHDATA, cert, key, certificates=[ec_identity[0]])
    verified = C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)
    # CertificateSet is a SET OF: DER sorts it, so the order is not the order given.
    assert set(verified.certificates) == {cert, ec_identity[0]}
    assert verified.intermediates == [ec_identity[0]]


def test_signer_found_by_subject_key_identifier(rsa_identity, ec_identity):
    cert, key = rsa_identity
    signed = C.sign_signed_data(CONTENT, AUTHDATA, cert, key, certificates=[ec_identity[0]])
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    info = _signer_info(signed)
    info["version"] = "v3"
    info["sid"] = cms.SignerIdentifier({"subject_key_identifier": ski})
    assert C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA).signer_certificate == cert


def test_signer_certificate_supplied_out_of_band(rsa_identity):
    cert, key = rsa_identity
    signed = C.sign_signed_data(CONTENT, AUTHDATA, cert, key, include_signer_certificate=False)
    with pytest.raises(C.SignerNotFound) as err:
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)
    assert err.value.krb_error_code == ErrorCode.KDC_ERR_CANT_VERIFY_CERTIFICATE
    verified = C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA, extra_certificates=[cert])
    assert verified.signer_certificate == cert and verified.certificates == []


def test_ec_signature_labelled_rsa_is_accepted(ec_identity):
    """MIT 1.20 labels an ECDSA signature sha256WithRSAEncryption: dispatch on the key type."""
    cert, key = ec_identity
    signed = C.sign_signed_data(CONTENT, AUTHDATA, cert, key)
    _signer_info(signed)["signature_algorithm"] = {"algorithm": "sha256_rsa", "parameters": core.Null()}
    assert C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA).content == CONTENT


def test_signed_attributes_der_is_a_set(rsa_identity):
    cert, key = rsa_identity
    attrs = _signer_info(C.sign_signed_data(CONTENT, AUTHDATA, cert, key))["signed_attrs"]
    der = C.signed_attributes_der(attrs)
    assert der[0] == 0x31 and der[1:] == attrs.dump()[1:]


# --- every failure, with its KRB-ERROR ---------------------------------------------------------


def _signed(identity, **kwargs):
    cert, key = identity
    return _reload(C.sign_signed_data(CONTENT, AUTHDATA, cert, key, **kwargs))


def test_tampered_content_fails_message_digest(rsa_identity):
    signed = _signed(rsa_identity)
    signed["encap_content_info"] = {"content_type": AUTHDATA, "content": CONTENT + b"!"}
    with pytest.raises(C.InvalidSignature, match="messageDigest") as err:
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)
    assert err.value.krb_error_code == ErrorCode.KDC_ERR_INVALID_SIG


@pytest.mark.parametrize("identity", ["rsa", "rsa-pss", "ec"])
def test_tampered_signed_attributes_fail_signature(identity, rsa_identity, ec_identity):
    """Content and messageDigest changed together: only the signature over the attrs catches it."""
    ident = ec_identity if identity == "ec" else rsa_identity
    signed = _signed(ident, rsa_padding="pss" if identity == "rsa-pss" else "pkcs1v15")
    forged = CONTENT + b"forged"
    signed["encap_content_info"] = {"content_type": AUTHDATA, "content": forged}
    attrs = _signer_info(signed)["signed_attrs"]
    new_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": [AUTHDATA]}),
            cms.CMSAttribute({"type": "message_digest", "values": [_sha256(forged)]}),
        ]
    )
    assert new_attrs.dump() != attrs.dump()
    _signer_info(signed)["signed_attrs"] = new_attrs
    with pytest.raises(C.InvalidSignature, match="does not verify") as err:
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)
    assert err.value.krb_error_code == 64


@pytest.mark.parametrize("identity", ["rsa", "rsa-pss", "ec"])
def test_tampered_signature(identity, rsa_identity, ec_identity):
    ident = ec_identity if identity == "ec" else rsa_identity
    signed = _signed(ident, rsa_padding="pss" if identity == "rsa-pss" else "pkcs1v15")
    sig = bytearray(_signer_info(signed)["signature"].native)
    sig[len(sig) // 2] ^= 0x01
    _signer_info(signed)["signature"] = bytes(sig)
    with pytest.raises(C.InvalidSignature):
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)


def test_signature_by_another_key(rsa_identity, other_rsa_identity):
    """The signer certificate is swapped for another one with the same issuer and serial."""
    cert, key = rsa_identity
    other_key = other_rsa_identity[1]
    impostor = _cert(other_key, "rsa signer", serial=cert.serial_number)
    signed = C.sign_signed_data(CONTENT, AUTHDATA, impostor, key)
    with pytest.raises(C.InvalidSignature):
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)


def test_wrong_econtent_type(rsa_identity):
    with pytest.raises(C.ContentTypeMismatch, match="eContentType"):
        C.verify_signed_data(_signed(rsa_identity), expected_content_type=oids.ID_PKINIT_DHKEYDATA)


def test_content_type_attribute_mismatch(rsa_identity):
    signed = _signed(rsa_identity)
    signed["encap_content_info"] = {"content_type": oids.ID_PKINIT_DHKEYDATA, "content": CONTENT}
    with pytest.raises(C.ContentTypeMismatch, match="contentType attribute") as err:
        C.verify_signed_data(_reload(signed), expected_content_type=oids.ID_PKINIT_DHKEYDATA)
    assert err.value.krb_error_code == ErrorCode.KDC_ERR_INVALID_SIG


def test_md5_is_not_accepted(rsa_identity):
    signed = _signed(rsa_identity)
    _signer_info(signed)["digest_algorithm"] = {"algorithm": "md5"}
    with pytest.raises(C.DigestNotAccepted) as err:
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)
    assert err.value.krb_error_code == ErrorCode.KDC_ERR_DIGEST_IN_SIGNED_DATA_NOT_ACCEPTED


def test_accepted_digests_restrict(rsa_identity):
    signed = _signed(rsa_identity, digest="sha1")
    with pytest.raises(C.DigestNotAccepted):
        C.verify_signed_data(signed, expected_content_type=AUTHDATA, accepted_digests={"sha256", "sha512"})
    assert C.verify_signed_data(signed, expected_content_type=AUTHDATA, accepted_digests={"sha1"}).content == CONTENT


def test_pss_with_a_rejected_hash(rsa_identity):
    signed = _signed(rsa_identity, rsa_padding="pss", digest="sha256")
    with pytest.raises(C.DigestNotAccepted):
        C.verify_signed_data(signed, expected_content_type=AUTHDATA, accepted_digests={"sha1", "sha384"})


def test_exactly_one_signer(rsa_identity):
    signed = _signed(rsa_identity)
    info = _signer_info(signed)
    signed["signer_infos"] = [info, info]
    with pytest.raises(C.MalformedCms, match="2 SignerInfos"):
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)
    signed["signer_infos"] = []
    with pytest.raises(C.MalformedCms, match="0 SignerInfos"):
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)


def test_signed_attributes_are_required(rsa_identity):
    signed = _signed(rsa_identity)
    info = _signer_info(signed)
    signed["signer_infos"] = [
        cms.SignerInfo({name: info[name] for name in ("version", "sid", "digest_algorithm", "signature_algorithm", "signature")})
    ]
    with pytest.raises(C.MalformedCms, match="no signedAttrs"):
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)


def test_message_digest_attribute_required(rsa_identity):
    signed = _signed(rsa_identity)
    _signer_info(signed)["signed_attrs"] = cms.CMSAttributes(
        [cms.CMSAttribute({"type": "content_type", "values": [AUTHDATA]})]
    )
    with pytest.raises(C.MalformedCms, match="message_digest"):
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)


def test_detached_signature_refused(rsa_identity):
    signed = _signed(rsa_identity)
    signed["encap_content_info"] = {"content_type": AUTHDATA}
    with pytest.raises(C.MalformedCms, match="no eContent"):
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)


def test_unknown_signer(rsa_identity, other_rsa_identity):
    cert, key = rsa_identity
    signed = C.sign_signed_data(CONTENT, AUTHDATA, cert, key, include_signer_certificate=False,
                                certificates=[other_rsa_identity[0]])
    with pytest.raises(C.SignerNotFound, match="serial"):
        C.verify_signed_data(_reload(signed), expected_content_type=AUTHDATA)


def test_garbage_inside_is_malformed(rsa_identity):
    signed = _signed(rsa_identity)
    der = bytearray(C.content_info(signed).dump())
    # Corrupt the tag of the embedded certificate's inner TBSCertificate.
    i = der.find(b"\xa0\x03\x02\x01\x02")  # [0] EXPLICIT version v3 inside the certificate
    der[i] = 0x04
    with pytest.raises(C.CmsError):
        C.verify_signed_data(cms.ContentInfo.load(bytes(der)), expected_content_type=AUTHDATA)


def test_error_codes():
    assert issubclass(C.CmsError, ValueError)
    assert C.InvalidSignature("x").krb_error_code == 64
    assert C.DigestNotAccepted("x").krb_error_code == 80
    assert C.SignerNotFound("x").krb_error_code == 70
    assert str(C.DecryptionFailed()) == "cannot decrypt the EnvelopedData"


def _sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


# --- EnvelopedData ------------------------------------------------------------------------------


@pytest.mark.parametrize("cipher", ["des-ede3-cbc", "aes128-cbc", "aes256-cbc"])
@pytest.mark.parametrize("length", [0, 1, 8, 15, 16, 100])
def test_envelope_round_trip(cipher, length, rsa_identity):
    cert, key = rsa_identity
    content = bytes(range(length))
    sealed = cms.ContentInfo.load(C.envelope(content, cert, cipher=cipher).dump())
    assert C.open_envelope(sealed, key) == content
    assert C.open_envelope(sealed["content"], key, cert) == content


def test_envelope_has_mit_shape(rsa_identity):
    cert, _ = rsa_identity
    sealed = cms.ContentInfo.load(C.envelope(CONTENT, cert).dump())
    assert sealed["content_type"].native == "enveloped_data"
    env = sealed["content"]
    assert env["version"].native == "v0"
    (ri,) = env["recipient_infos"]
    assert ri.name == "ktri" and ri.chosen["version"].native == "v0"
    assert ri.chosen["rid"].name == "issuer_and_serial_number"
    assert ri.chosen["key_encryption_algorithm"].dump().hex() == "300d06092a864886f70d0101010500"
    eci = env["encrypted_content_info"]
    assert eci["content_type"].native == "signed_data"
    assert eci["content_encryption_algorithm"]["algorithm"].native == "tripledes_3key"


def test_open_with_wrong_key(rsa_identity, other_rsa_identity):
    sealed = C.envelope(CONTENT, rsa_identity[0])
    with pytest.raises(C.DecryptionFailed):
        C.open_envelope(sealed, other_rsa_identity[1])


def test_open_for_another_recipient(rsa_identity, other_rsa_identity):
    sealed = C.envelope(CONTENT, rsa_identity[0])
    with pytest.raises(C.SignerNotFound):
        C.open_envelope(sealed, other_rsa_identity[1], other_rsa_identity[0])


def test_open_truncated_ciphertext(rsa_identity):
    cert, key = rsa_identity
    sealed = cms.ContentInfo.load(C.envelope(CONTENT, cert).dump())
    eci = sealed["content"]["encrypted_content_info"]
    eci["encrypted_content"] = eci["encrypted_content"].native[:-3]
    with pytest.raises(C.DecryptionFailed):
        C.open_envelope(cms.ContentInfo.load(sealed.dump(force=True)), key)


def test_envelope_needs_rsa(ec_identity):
    with pytest.raises(C.UnsupportedAlgorithm):
        C.envelope(CONTENT, ec_identity[0])


# --- OpenSSL, an independent CMS implementation ------------------------------------------------


def _pem_files(tmp_path: Path, identity, name: str) -> tuple[Path, Path]:
    cert, key = identity
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _openssl(*args: str | Path) -> bytes:
    proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.mark.interop
@pytest.mark.parametrize("kind", ["rsa-pkcs1v15", "rsa-pss", "ec"])
def test_openssl_verifies_our_signed_data(kind, tmp_path, rsa_identity, ec_identity):
    require_peer("openssl")
    cert, key = ec_identity if kind == "ec" else rsa_identity
    signed = C.sign_signed_data(CONTENT, AUTHDATA, cert, key, rsa_padding="pss" if kind == "rsa-pss" else "pkcs1v15")
    (tmp_path / "signed.der").write_bytes(C.content_info(signed).dump())
    out = _openssl("cms", "-verify", "-noverify", "-binary", "-inform", "DER", "-in", tmp_path / "signed.der")
    assert out == CONTENT


@pytest.mark.interop
@pytest.mark.parametrize("kind", ["rsa", "rsa-pss", "ec"])
def test_we_verify_openssl_signed_data(kind, tmp_path, rsa_identity, ec_identity):
    require_peer("openssl")
    cert_path, key_path = _pem_files(tmp_path, ec_identity if kind == "ec" else rsa_identity, "signer")
    (tmp_path / "content").write_bytes(CONTENT)
    extra = ["-keyopt", "rsa_padding_mode:pss"] if kind == "rsa-pss" else []
    _openssl("cms", "-sign", "-binary", "-nodetach", "-outform", "DER", "-md", "sha384",
             "-econtent_type", AUTHDATA, "-in", tmp_path / "content", "-signer", cert_path, "-inkey", key_path,
             *extra, "-out", tmp_path / "signed.der")
    info = cms.ContentInfo.load((tmp_path / "signed.der").read_bytes())
    verified = C.verify_signed_data(info, expected_content_type=AUTHDATA)
    assert verified.content == CONTENT and verified.digest_algorithm == "sha384"
    if kind == "rsa-pss":
        assert _signer_info(info["content"])["signature_algorithm"]["algorithm"].native == "rsassa_pss"


@pytest.mark.interop
def test_openssl_opens_our_envelope(tmp_path, rsa_identity):
    require_peer("openssl")
    cert_path, key_path = _pem_files(tmp_path, rsa_identity, "recipient")
    (tmp_path / "env.der").write_bytes(C.envelope(CONTENT, rsa_identity[0]).dump())
    out = _openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", tmp_path / "env.der",
                   "-recip", cert_path, "-inkey", key_path)
    assert out == CONTENT


@pytest.mark.interop
@pytest.mark.parametrize("cipher, flag", [("tripledes_3key", "-des3"), ("aes256_cbc", "-aes256")])
def test_we_open_openssl_envelope(cipher, flag, tmp_path, rsa_identity):
    require_peer("openssl")
    cert_path, _ = _pem_files(tmp_path, rsa_identity, "recipient")
    (tmp_path / "content").write_bytes(CONTENT)
    _openssl("cms", "-encrypt", "-binary", flag, "-outform", "DER", "-in", tmp_path / "content",
             "-out", tmp_path / "env.der", cert_path)
    info = cms.ContentInfo.load((tmp_path / "env.der").read_bytes())
    assert info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native == cipher
    assert C.open_envelope(info, rsa_identity[1], rsa_identity[0]) == CONTENT


# --- MIT krb5's own PKINIT CMS (golden vectors) ------------------------------------------------


def _padata(message, pa_type: int) -> bytes:
    for item in message["padata"]:
        if item["padata-type"].native == pa_type:
            return item["padata-value"].native
    raise AssertionError(f"no padata {pa_type}")


@pytest.mark.parametrize("vector", ["as-req-pkinit-dh.bin", "as-req-pkinit-rsa.bin", "as-req-pkinit-dh-4096.bin"])
def test_mit_auth_pack_signature_verifies(vector):
    req = decode((VECTORS / vector).read_bytes())
    pk_req = decode_as(PA_PK_AS_REQ, _padata(req, PaDataType.PA_PK_AS_REQ))
    signed, pack = unwrap_auth_pack(pk_req["signedAuthPack"].parsed)
    verified = C.verify_signed_data(pk_req["signedAuthPack"].parsed, expected_content_type=AUTHDATA)
    (cta,) = load_certificates(VECTORS / "cta-operator.pem")
    assert verified.signer_certificate == cta
    assert verified.content == pack.dump()
    assert verified.digest_algorithm == "sha256"


def test_mit_auth_pack_tampered_fails():
    req = decode((VECTORS / "as-req-pkinit-dh.bin").read_bytes())
    pk_req = decode_as(PA_PK_AS_REQ, _padata(req, PaDataType.PA_PK_AS_REQ))
    info = pk_req["signedAuthPack"].parsed
    signed = info["content"]
    sig = bytearray(_signer_info(signed)["signature"].native)
    sig[-1] ^= 0x80
    _signer_info(signed)["signature"] = bytes(sig)
    with pytest.raises(C.InvalidSignature):
        C.verify_signed_data(cms.ContentInfo.load(info.dump(force=True)), expected_content_type=AUTHDATA)


def test_mit_dh_signed_data_verifies_against_kdc_certificate():
    rep = decode((VECTORS / "as-rep-pkinit-dh.bin").read_bytes())
    pk_rep = decode_as(PA_PK_AS_REP, _padata(rep, PaDataType.PA_PK_AS_REP))
    dh_signed = pk_rep.chosen["dhSignedData"].parsed
    _, key_info = unwrap_kdc_dh_key_info(dh_signed)
    verified = C.verify_signed_data(dh_signed, expected_content_type=oids.ID_PKINIT_DHKEYDATA)
    (kdc,) = load_certificates(VECTORS / "kdc.pem")
    assert verified.signer_certificate == kdc
    assert verified.content == key_info.dump()


def test_mit_enc_key_pack_opens_with_the_cta_key():
    rep = decode((VECTORS / "as-rep-pkinit-rsa.bin").read_bytes())
    pk_rep = decode_as(PA_PK_AS_REP, _padata(rep, PaDataType.PA_PK_AS_REP))
    assert pk_rep.name == "encKeyPack"
    key = load_private_key(VECTORS / "cta.key", check_mode=False)
    (cta,) = load_certificates(VECTORS / "cta-operator.pem")
    plain = C.open_envelope(pk_rep.chosen.parsed, key, cta)
    signed = decode_enc_key_pack_content(plain)
    verified = C.verify_signed_data(signed, expected_content_type=oids.ID_PKINIT_RKEYDATA)
    (kdc,) = load_certificates(VECTORS / "kdc.pem")
    assert verified.signer_certificate == kdc
    assert unwrap_reply_key_pack(signed)["replyKey"]["keytype"].native == 18
