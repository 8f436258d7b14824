"""Golden messages recorded from MIT krb5 1.20 (tests/vectors/mit, see regenerate.py).

No MIT at test time: the bytes are committed. Every message decodes with our codec, carries the
fields MIT is known to send, re-encodes byte for byte, and whatever we hold keys for decrypts:
tickets (keytab.bin), the password AS-REP (the test password), the RSA-mode PKINIT reply (the
throw-away CTA key), the TGS-REP and AP-REQ authenticator (session keys in ccache.bin).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding

from common.asn1 import (
    ErrorCode,
    FastOptions,
    MessageType,
    PaDataType,
    decode,
    decode_as,
    decode_enc_kdc_rep_part,
    field_bytes,
)
from common.asn1.krb5 import (
    AP_REQ,
    AS_REP,
    AS_REQ,
    ETYPE_INFO2,
    KRB_ERROR,
    TGS_REP,
    TGS_REQ,
    Authenticator,
    EncTGSRepPart,
    EncTicketPart,
    principal_from_asn1,
)
from common.asn1.fast import PA_FX_FAST_REPLY, PA_FX_FAST_REQUEST, KrbFastReq, KrbFastResponse
from common.asn1.pkinit import (
    PA_PK_AS_REP,
    PA_PK_AS_REQ,
    TD_DH_PARAMETERS,
    decode_enc_key_pack_content,
    unwrap_auth_pack,
    unwrap_kdc_dh_key_info,
    unwrap_reply_key_pack,
)
from common.ccache import Ccache
from common.crypto import KeyUsage, cf2, decrypt, string_to_key, verify_checksum
from common.crypto.ciphers import des3_cbc_decrypt
from common.keytab import Keytab
from common.principal import Principal

VECTORS = Path(__file__).parent / "vectors" / "mit"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
REALM = MANIFEST["realm"]
CTA = Principal.parse(MANIFEST["principals"]["cta"])
ALICE = Principal.parse(MANIFEST["principals"]["password_client"])
SC = Principal.parse(MANIFEST["principals"]["service"])
KRBTGT = Principal.krbtgt(REALM)
KEYTAB = Keytab.parse((VECTORS / MANIFEST["keytab"]["file"]).read_bytes())
CCACHE = Ccache.parse((VECTORS / MANIFEST["ccache"]["file"]).read_bytes())


@cache
def raw(name: str) -> bytes:
    return (VECTORS / MANIFEST["vectors"][name]["file"]).read_bytes()


def msg(name: str):
    return decode(raw(name))


def padata(message, pa_type: int) -> bytes:
    for item in message["padata"]:
        if item["padata-type"].native == pa_type:
            return item["padata-value"].native
    raise AssertionError(f"no padata {pa_type}")


def padata_types(message) -> list[int]:
    return [item["padata-type"].native for item in message["padata"]]


def name(pname, realm) -> Principal:
    return principal_from_asn1(pname, realm)


def decrypt_ticket(ticket) -> EncTicketPart:
    enc = ticket["enc-part"]
    sname = name(ticket["sname"], ticket["realm"])
    key = KEYTAB.key_for(sname, enc["etype"].native, kvno=enc["kvno"].native)
    part = decode(decrypt(key, KeyUsage.TICKET, enc["cipher"].native))
    assert isinstance(part, EncTicketPart)
    return part


def same_ticket(message, field: str, der: bytes) -> bool:
    """A Ticket field of a decoded message equals Ticket DER from a ccache. The field's dump()
    includes the field's own [n] EXPLICIT wrapper, so compare values and the inner bytes."""
    return message[field].native == decode(der).native and field_bytes(message, field) == der


def auth_pack(name_: str):
    req = msg(name_)
    pk_req = decode_as(PA_PK_AS_REQ, padata(req, PaDataType.PA_PK_AS_REQ))
    signed, pack = unwrap_auth_pack(pk_req["signedAuthPack"].parsed)
    return req, signed, pack


# --- every vector ----------------------------------------------------------------------------


@pytest.mark.parametrize("name_", sorted(MANIFEST["vectors"]))
def test_decodes_and_reencodes_byte_for_byte(name_):
    data = raw(name_)
    obj = decode(data)
    assert obj.dump(force=True) == data
    assert obj["msg-type"].native == {
        AS_REQ: MessageType.AS_REQ,
        AS_REP: MessageType.AS_REP,
        TGS_REQ: MessageType.TGS_REQ,
        TGS_REP: MessageType.TGS_REP,
        AP_REQ: MessageType.AP_REQ,
        KRB_ERROR: MessageType.KRB_ERROR,
    }[type(obj)]
    assert obj["pvno"].native == 5


def test_manifest_describes_the_recording():
    assert MANIFEST["mit_krb5_version"].startswith("1.")
    assert {"as-req-initial", "krb-error-preauth-required", "as-req-pkinit-dh", "as-rep-pkinit-dh",
            "as-req-pkinit-rsa", "as-rep-pkinit-rsa", "tgs-req", "tgs-rep", "ap-req",
            "krb-error-dh-parameters"} <= set(MANIFEST["vectors"])


def test_files_round_trip_through_our_keytab_and_ccache_code():
    assert bytes(KEYTAB) == (VECTORS / "keytab.bin").read_bytes()
    assert bytes(CCACHE) == (VECTORS / "ccache.bin").read_bytes()
    assert {p.name for p in KEYTAB.principals()} == {SC.name, KRBTGT.name}
    assert CCACHE.principal == ALICE


# --- the PKINIT exchange ---------------------------------------------------------------------

@pytest.mark.parametrize("vector", ["as-req-pkinit-dh", "as-rep-pkinit-dh", "as-req-pkinit-rsa", "as-rep-pkinit-rsa"])
def test_pkinit_padata_with_real_certificates_decodes_and_reencodes(vector):
    """PA-PK-AS-REQ/REP carry X.509 certificates with an id-pkinit-san otherName (regression:
    decode_as once walked into them and failed on asn1crypto's AnotherName)."""
    message = msg(vector)
    pa_type = PaDataType.PA_PK_AS_REQ if isinstance(message, AS_REQ) else PaDataType.PA_PK_AS_REP
    cls = PA_PK_AS_REQ if isinstance(message, AS_REQ) else PA_PK_AS_REP
    value = decode_as(cls, padata(message, pa_type))
    assert value.dump(force=True) == padata(message, pa_type)


def test_first_as_req_has_only_freshness_and_req_enc_pa_rep():
    req = msg("as-req-initial")
    assert isinstance(req, AS_REQ)
    assert padata_types(req) == [PaDataType.PA_AS_FRESHNESS, PaDataType.PA_REQ_ENC_PA_REP]
    body = req["req-body"]
    assert name(body["cname"], body["realm"]) == CTA
    assert name(body["sname"], body["realm"]) == KRBTGT  # NT-SRV-INST as sent


def test_preauth_required_lists_pkinit():
    err = msg("krb-error-preauth-required")
    assert isinstance(err, KRB_ERROR)
    assert err["error-code"].native == ErrorCode.KDC_ERR_PREAUTH_REQUIRED
    methods = [m["padata-type"].native for m in err.method_data()]
    assert PaDataType.PA_PK_AS_REQ in methods and PaDataType.PA_AS_FRESHNESS in methods
    assert name(err["sname"], err["realm"]).same_name(KRBTGT)


@pytest.mark.parametrize("vector, dh", [("as-req-pkinit-dh", True), ("as-req-pkinit-rsa", False)])
def test_pkinit_as_req(vector, dh):
    req, signed, pack = auth_pack(vector)
    assert PaDataType.PA_PK_AS_REQ in padata_types(req)
    authenticator = pack["pkAuthenticator"]
    # paChecksum is SHA-1 over the req-body exactly as sent.
    assert authenticator["paChecksum"].native == hashlib.sha1(req.req_body_bytes()).digest()
    assert authenticator["freshnessToken"].native  # echoed from the KRB-ERROR
    assert (pack["clientPublicValue"].native is not None) is dh
    if dh:
        params = pack["clientPublicValue"]["algorithm"]["parameters"]
        assert params["p"].native.bit_length() == 2048
    assert len(signed["certificates"]) == 1  # client certificate only
    assert signed["digest_algorithms"][0]["algorithm"].native == "sha256"


def test_pkinit_dh_reply():
    req, _, pack = auth_pack("as-req-pkinit-dh")
    rep = msg("as-rep-pkinit-dh")
    assert isinstance(rep, AS_REP)
    pk_rep = decode_as(PA_PK_AS_REP, padata(rep, PaDataType.PA_PK_AS_REP))
    assert pk_rep.name == "dhInfo"
    _, key_info = unwrap_kdc_dh_key_info(pk_rep.chosen["dhSignedData"].parsed)
    assert key_info["nonce"].native == pack["pkAuthenticator"]["nonce"].native
    assert pk_rep.chosen["kdf"]["kdf-id"].dotted == "1.3.6.1.5.2.3.6.2"  # id-pkinit-kdf-sha256
    assert name(rep["cname"], rep["crealm"]) == CTA
    part = decrypt_ticket(rep["ticket"])
    assert name(part["cname"], part["crealm"]).same_name(CTA)


def test_pkinit_rsa_reply_decrypts_with_the_cta_key():
    """encKeyPack: EnvelopedData (RSA PKCS#1 v1.5, des-ede3-cbc) -> bare SignedData ->
    ReplyKeyPack; the reply key opens the AS-REP enc-part (tag 26 from MIT)."""
    req = msg("as-req-pkinit-rsa")
    rep = msg("as-rep-pkinit-rsa")
    pk_rep = decode_as(PA_PK_AS_REP, padata(rep, PaDataType.PA_PK_AS_REP))
    assert pk_rep.name == "encKeyPack"
    enveloped = pk_rep.chosen.parsed
    assert enveloped["content_type"].native == "enveloped_data"
    env = enveloped["content"]
    (recipient,) = env["recipient_infos"]
    assert recipient.name == "ktri"
    cta_key = serialization.load_pem_private_key((VECTORS / MANIFEST["certificates"]["cta_key"]).read_bytes(), None)
    cek = cta_key.decrypt(recipient.chosen["encrypted_key"].native, padding.PKCS1v15())
    content_info = env["encrypted_content_info"]
    algorithm = content_info["content_encryption_algorithm"]
    assert algorithm["algorithm"].native == "tripledes_3key"
    padded = des3_cbc_decrypt(cek, content_info["encrypted_content"].native, algorithm["parameters"].native)
    content = padded[: -padded[-1]]
    assert content[0] == 0x30 and content[4] == 0x02  # a bare SignedData (INTEGER version first)
    reply_key_pack = unwrap_reply_key_pack(decode_enc_key_pack_content(content))
    reply_key = reply_key_pack["replyKey"].to_key()
    # asChecksum: keyed checksum with the reply key over the whole AS-REQ, key usage 6.
    checksum = reply_key_pack["asChecksum"]
    verify_checksum(checksum["cksumtype"].native, reply_key, KeyUsage.PKINIT_AS_CHECKSUM, raw("as-req-pkinit-rsa"), checksum["checksum"].native)
    plain = decrypt(reply_key, KeyUsage.AS_REP_ENC_PART, rep["enc-part"]["cipher"].native)
    enc_part = decode_enc_kdc_rep_part(plain)
    assert isinstance(enc_part, EncTGSRepPart)  # MIT tags the AS-REP enc-part [APPLICATION 26]
    assert enc_part["nonce"].native == req["req-body"]["nonce"].native
    ticket_part = decrypt_ticket(rep["ticket"])
    assert enc_part["key"].to_key() == ticket_part["key"].to_key()


def test_td_dh_parameters():
    err = msg("krb-error-dh-parameters")
    assert err["error-code"].native == ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED
    typed = {t["data-type"].native: t["data-value"].native for t in err.typed_data()}
    groups = decode_as(TD_DH_PARAMETERS, typed[109])  # TD-DH-PARAMETERS
    assert groups[0]["algorithm"].dotted == "1.2.840.10046.2.1"  # dhpublicnumber
    assert groups[0]["parameters"]["p"].native.bit_length() == 4096


def test_dh_group_retry():
    _, _, refused = auth_pack("as-req-pkinit-dh-2048-refused")
    _, _, retry = auth_pack("as-req-pkinit-dh-4096")
    assert refused["clientPublicValue"]["algorithm"]["parameters"]["p"].native.bit_length() == 2048
    assert retry["clientPublicValue"]["algorithm"]["parameters"]["p"].native.bit_length() == 4096


# --- password AS, TGS and AP ---------------------------------------------------------------------


def test_password_as_rep_decrypts_with_string_to_key():
    err = msg("krb-error-preauth-required-password")
    methods = {m["padata-type"].native: m["padata-value"].native for m in err.method_data()}
    (info,) = decode_as(ETYPE_INFO2, methods[PaDataType.PA_ETYPE_INFO2])
    salt = info["salt"].native if info["salt"].native is not None else REALM + "alice"
    req = msg("as-req-password")
    assert PaDataType.PA_ENC_TIMESTAMP in padata_types(req)
    rep = msg("as-rep-password")
    key = string_to_key(info["etype"].native, MANIFEST["password"][str(ALICE)], salt)
    enc_part = decode_enc_kdc_rep_part(decrypt(key, KeyUsage.AS_REP_ENC_PART, rep["enc-part"]["cipher"].native))
    assert enc_part["nonce"].native == req["req-body"]["nonce"].native
    assert name(enc_part["sname"], enc_part["srealm"]).same_name(KRBTGT)
    assert enc_part["key"].to_key() == decrypt_ticket(rep["ticket"])["key"].to_key()


def test_tgs_exchange():
    req = msg("tgs-req")
    rep = msg("tgs-rep")
    assert isinstance(req, TGS_REQ) and isinstance(rep, TGS_REP)
    assert name(req["req-body"]["sname"], req["req-body"]["realm"]).same_name(SC)
    ap_req = decode(padata(req, PaDataType.PA_TGS_REQ))
    assert isinstance(ap_req, AP_REQ)
    tgt = CCACHE.find(KRBTGT)
    assert same_ticket(ap_req, "ticket", tgt.ticket)
    # The authenticator is under the TGT session key; its checksum covers the req-body as sent.
    authenticator = decode(decrypt(tgt.key, KeyUsage.TGS_REQ_AUTH, ap_req["authenticator"]["cipher"].native))
    assert isinstance(authenticator, Authenticator)
    cksum = authenticator["cksum"]
    verify_checksum(cksum["cksumtype"].native, tgt.key, KeyUsage.TGS_REQ_AUTH_CKSUM, req.req_body_bytes(), cksum["checksum"].native)
    # MIT's client puts a subkey in the authenticator and armors the TGS-REQ with FAST (RFC 6113
    # 5.4.1.1 implicit TGT armor): armor key = KRB-FX-CF2(subkey, TGT session key, "subkeyarmor",
    # "ticketarmor"). The KDC's PA-FX-FAST reply, under the armor key (usage 52), carries a
    # strengthen key; the enc-part is under KRB-FX-CF2(strengthen key, subkey, "strengthenkey",
    # "replykey") with key usage 9 (RFC 6113 5.4.3).
    subkey = authenticator["subkey"].to_key()
    assert subkey.enctype == tgt.key.enctype and subkey != tgt.key
    assert PaDataType.PA_FX_FAST in padata_types(req)
    armor_key = cf2(subkey, tgt.key, b"subkeyarmor", b"ticketarmor")
    fast_reply = decode_as(PA_FX_FAST_REPLY, padata(rep, PaDataType.PA_FX_FAST))
    enc_fast_rep = fast_reply.chosen["enc-fast-rep"]["cipher"].native
    fast_response = decode_as(KrbFastResponse, decrypt(armor_key, KeyUsage.FAST_REP, enc_fast_rep))
    assert fast_response["nonce"].native == req["req-body"]["nonce"].native
    reply_key = cf2(fast_response["strengthen-key"].to_key(), subkey, b"strengthenkey", b"replykey")
    cipher = rep["enc-part"]["cipher"].native
    enc_part = decode_enc_kdc_rep_part(decrypt(reply_key, KeyUsage.TGS_REP_ENC_PART_SUBKEY, cipher))
    assert isinstance(enc_part, EncTGSRepPart)
    assert enc_part["nonce"].native == req["req-body"]["nonce"].native
    service = CCACHE.find(SC)
    assert enc_part["key"].to_key() == service.key
    assert same_ticket(rep, "ticket", service.ticket)
    ticket_part = decrypt_ticket(rep["ticket"])
    assert ticket_part["key"].to_key() == service.key
    assert name(ticket_part["cname"], ticket_part["crealm"]) == ALICE
    # KrbFastFinished: the authoritative client name, and a checksum over the Ticket as sent.
    finished = fast_response["finished"]
    assert name(finished["cname"], finished["crealm"]) == ALICE
    ticket_checksum = finished["ticket-checksum"]
    verify_checksum(ticket_checksum["cksumtype"].native, armor_key, KeyUsage.FAST_FINISHED,
                    field_bytes(rep, "ticket"), ticket_checksum["checksum"].native)


def test_tgs_req_fast_request_decodes_fully():
    """MIT 1.20 always armors TGS requests: PA-FX-FAST carries a KrbFastArmoredReq without armor
    (the PA-TGS-REQ is the armor, RFC 6113 5.4.1.1) whose req-checksum covers the PA-TGS-REQ
    padata-value and whose enc-fast-req holds a KrbFastReq under the armor key (RFC 6113 5.4.2)."""
    req = msg("tgs-req")
    value = padata(req, PaDataType.PA_FX_FAST)
    fast = decode_as(PA_FX_FAST_REQUEST, value)
    assert fast.dump(force=True) == value
    assert fast.name == "armored-data"
    armored = fast.chosen
    assert armored["armor"].native is None
    tgt = CCACHE.find(KRBTGT)
    ap_req = decode(padata(req, PaDataType.PA_TGS_REQ))
    authenticator = decode(decrypt(tgt.key, KeyUsage.TGS_REQ_AUTH, ap_req["authenticator"]["cipher"].native))
    armor_key = cf2(authenticator["subkey"].to_key(), tgt.key, b"subkeyarmor", b"ticketarmor")
    checksum = armored["req-checksum"]
    verify_checksum(checksum["cksumtype"].native, armor_key, KeyUsage.FAST_REQ_CHKSUM,
                    padata(req, PaDataType.PA_TGS_REQ), checksum["checksum"].native)
    enc = armored["enc-fast-req"]
    assert enc["etype"].native == armor_key.enctype
    plain = decrypt(armor_key, KeyUsage.FAST_ENC, enc["cipher"].native)
    fast_req = decode_as(KrbFastReq, plain)
    assert fast_req.dump(force=True) == plain
    assert fast_req["fast-options"].native == FastOptions(0)
    assert fast_req["padata"].native == []
    # The inner req-body is the real one; MIT sends the same body outside.
    assert field_bytes(fast_req, "req-body") == req.req_body_bytes()


def test_ap_req_from_libkrb5():
    ap_req = msg("ap-req")
    service = CCACHE.find(SC)
    assert same_ticket(ap_req, "ticket", service.ticket)
    authenticator = decode(decrypt(service.key, KeyUsage.AP_REQ_AUTH, ap_req["authenticator"]["cipher"].native))
    assert isinstance(authenticator, Authenticator)
    assert name(authenticator["cname"], authenticator["crealm"]) == ALICE
    assert authenticator.dump(force=True) == authenticator.dump()
