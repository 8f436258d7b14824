"""The golden MIT kinit/kvno requests (tests/vectors/mit) replayed through KdcEngine.

The engine's clock is set from each vector's own timestamps and the CTA certificate is anchored
at tests/vectors/mit/operator-ca.pem; the DB holds the keytab's keys (krbtgt, sc). MIT's
freshness token came from MIT's KDC, so those replays use a token checker that accepts it; what
is checked is that the real requests parse, verify (CMS signature, paChecksum over the body as
received, certificate chain, SAN, EKU, customer rule) and get a reply MIT's client could use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from common import cms
from common.asn1 import ErrorCode, PaDataType, decode, decode_as, decode_enc_kdc_rep_part, oids
from common.asn1.krb5 import AS_REP, KRB_ERROR, TGS_REP, Authenticator, EncTicketPart, principal_from_asn1
from common.asn1.pkinit import (
    PA_PK_AS_REP,
    PA_PK_AS_REQ,
    decode_enc_key_pack_content,
    unwrap_auth_pack,
    unwrap_kdc_dh_key_info,
    unwrap_reply_key_pack,
)
from common.ccache import Ccache
from common.crypto import KeyUsage, decrypt, verify_checksum
from common.keytab import Keytab
from common.pki import load_certificate, phone_ids_from_certificate
from common.principal import Principal
from kdcd.db import KeyEntry, SQLiteDatabase, generate_master_key
from kdcd.engine import KdcEngine
from kdcd.pkinit import PkinitCredentials
from kdcd.policy import KdcPolicy
from test_kdc_engine_support import padata_value
from test_pki_factories import world

VECTORS = Path(__file__).parent / "vectors" / "mit"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
REALM = MANIFEST["realm"]
KEYTAB = Keytab.parse((VECTORS / "keytab.bin").read_bytes())
CCACHE = Ccache.parse((VECTORS / "ccache.bin").read_bytes())
CTA_CERT = load_certificate(VECTORS / "cta-operator.pem")
OPERATOR_CA = load_certificate(VECTORS / "operator-ca.pem")


def raw(name: str) -> bytes:
    return (VECTORS / MANIFEST["vectors"][name]["file"]).read_bytes()


class KeytabOverlay:
    """The test database, with the keytab's keys for the principals the keytab holds (MIT made
    the TGT and tickets in the vectors with them)."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    def __getattr__(self, name):
        return getattr(self._db, name)

    def get_principal(self, principal, *, with_keys=True):
        entry = self._db.get_principal(principal, with_keys=with_keys)
        keys = [e for e in KEYTAB.entries if e.principal.same_name(principal)]
        if not keys:
            return entry
        created = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
        entries = tuple(KeyEntry(kvno=e.kvno, key=e.key, salt=None, created=created, expires=None) for e in keys)
        return dataclasses.replace(entry, keys=entries, kvno=keys[0].kvno)

    def get_key(self, principal, enctype, kvno=None, *, now=None):
        for e in self.get_principal(principal).keys:
            if e.enctype == enctype and (kvno is None or e.kvno == kvno):
                return e
        raise LookupError(principal)


class AcceptAnyToken:
    def check(self, token, now_seconds, skew):
        return now_seconds

    def issue(self, now_seconds):  # pragma: no cover
        return b"token"


@pytest.fixture
def engine(tmp_path):
    created = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    db = SQLiteDatabase.create(tmp_path / "kdc.db", REALM, master_key=generate_master_key(), now=created)
    from kdcd.db import PrincipalAttributes

    db.add_principal(Principal.parse(MANIFEST["principals"]["service"]), now=created, attributes=PrincipalAttributes(is_service=True))
    db.add_principal(Principal.parse(MANIFEST["principals"]["password_client"]), now=created, password=MANIFEST["password"]["alice@EXAMPLE.TEST"])
    db.add_customer(now=created, phone_ids=list(phone_ids_from_certificate(CTA_CERT)))
    w = world()  # our own KDC certificate: the client side is not checked here
    creds = PkinitCredentials(certificate=w.kdc, private_key=w.kdc_key, operator_anchors=(OPERATOR_CA,))
    policy = KdcPolicy(realm=REALM, dh_min_bits=2048)
    return KdcEngine(policy, KeytabOverlay(db), pkinit=creds)


def pk_authenticator_time(name: str) -> dt.datetime:
    req = decode(raw(name))
    pk = decode_as(PA_PK_AS_REQ, padata_value(req, PaDataType.PA_PK_AS_REQ))
    _, pack = unwrap_auth_pack(pk["signedAuthPack"].parsed)
    auth = pack["pkAuthenticator"]
    return auth["ctime"].native + dt.timedelta(microseconds=auth["cusec"].native)


def test_initial_as_req_gets_preauth_required_with_a_freshness_token(engine):
    req = decode(raw("as-req-initial"))
    when = req["req-body"]["till"].native - dt.timedelta(hours=10)
    reply = decode(engine.handle_request(raw("as-req-initial"), wallclock=when, now=1.0, peer="mit"))
    assert isinstance(reply, KRB_ERROR)
    assert reply["error-code"].native == ErrorCode.KDC_ERR_PREAUTH_REQUIRED
    methods = {m["padata-type"].native: m["padata-value"].native for m in reply.method_data()}
    assert methods[PaDataType.PA_PK_AS_REQ] == b""
    assert methods[PaDataType.PA_AS_FRESHNESS]


def test_mit_freshness_token_is_not_ours(engine):
    when = pk_authenticator_time("as-req-pkinit-dh")
    reply = decode(engine.handle_request(raw("as-req-pkinit-dh"), wallclock=when, now=1.0, peer="mit"))
    assert reply["error-code"].native == ErrorCode.KDC_ERR_PREAUTH_FAILED
    assert "freshness" in reply["e-text"].native


def test_mit_dh_as_req_is_answered(engine):
    engine.pkinit.freshness = AcceptAnyToken()
    when = pk_authenticator_time("as-req-pkinit-dh")
    data = raw("as-req-pkinit-dh")
    reply = decode(engine.handle_request(data, wallclock=when, now=1.0, peer="mit"))
    assert isinstance(reply, AS_REP), reply.native
    pk_rep = decode_as(PA_PK_AS_REP, padata_value(reply, PaDataType.PA_PK_AS_REP))
    assert pk_rep.name == "dhInfo"
    assert pk_rep.chosen["kdf"]["kdf-id"].dotted == oids.ID_PKINIT_KDF_AH_SHA256  # MIT's first choice
    signed, key_info = unwrap_kdc_dh_key_info(pk_rep.chosen["dhSignedData"].parsed)
    cms.verify_signed_data(signed, expected_content_type=oids.ID_PKINIT_DHKEYDATA)
    req = decode(data)
    _, pack = unwrap_auth_pack(decode_as(PA_PK_AS_REQ, padata_value(req, PaDataType.PA_PK_AS_REQ))["signedAuthPack"].parsed)
    assert key_info["nonce"].native == pack["pkAuthenticator"]["nonce"].native
    assert reply["enc-part"]["etype"].native == 18
    ticket = reply["ticket"]
    key = KEYTAB.key_for(Principal.krbtgt(REALM), 18)
    part = decode(decrypt(key, KeyUsage.TICKET, ticket["enc-part"]["cipher"].native))
    assert isinstance(part, EncTicketPart)
    assert principal_from_asn1(part["cname"], part["crealm"]) == Principal.parse(MANIFEST["principals"]["cta"])


def test_mit_rsa_as_req_is_answered_and_opens_with_the_cta_key(engine):
    engine.pkinit.freshness = AcceptAnyToken()
    when = pk_authenticator_time("as-req-pkinit-rsa")
    data = raw("as-req-pkinit-rsa")
    reply = decode(engine.handle_request(data, wallclock=when, now=1.0, peer="mit"))
    assert isinstance(reply, AS_REP), reply.native
    pk_rep = decode_as(PA_PK_AS_REP, padata_value(reply, PaDataType.PA_PK_AS_REP))
    assert pk_rep.name == "encKeyPack"
    cta_key = serialization.load_pem_private_key((VECTORS / "cta.key").read_bytes(), None)
    content = cms.open_envelope(pk_rep.chosen.parsed, cta_key)
    assert content[0] == 0x30 and content[4] == 0x02  # a bare SignedData, as MIT sends it
    signed = decode_enc_key_pack_content(content)
    cms.verify_signed_data(signed, expected_content_type=oids.ID_PKINIT_RKEYDATA)
    pack = unwrap_reply_key_pack(signed)
    reply_key = pack["replyKey"].to_key()
    checksum = pack["asChecksum"]
    verify_checksum(checksum["cksumtype"].native, reply_key, KeyUsage.PKINIT_AS_CHECKSUM, data, checksum["checksum"].native)
    enc_part = decode_enc_kdc_rep_part(decrypt(reply_key, KeyUsage.AS_REP_ENC_PART, reply["enc-part"]["cipher"].native))
    assert enc_part["nonce"].native == decode(data)["req-body"]["nonce"].native


def test_mit_replayed_pkinit_request_is_refused(engine):
    engine.pkinit.freshness = AcceptAnyToken()
    when = pk_authenticator_time("as-req-pkinit-rsa")
    data = raw("as-req-pkinit-rsa")
    assert isinstance(decode(engine.handle_request(data, wallclock=when, now=1.0, peer="mit")), AS_REP)
    again = decode(engine.handle_request(data, wallclock=when, now=2.0, peer="mit"))
    assert again["error-code"].native == ErrorCode.KRB_AP_ERR_REPEAT


def test_mit_dh_2048_refused_under_min_bits_4096(tmp_path, engine):
    engine.pkinit.freshness = AcceptAnyToken()
    engine.pkinit.policy = dataclasses.replace(engine.policy, dh_min_bits=4096)
    when = pk_authenticator_time("as-req-pkinit-dh-2048-refused")
    reply = decode(engine.handle_request(raw("as-req-pkinit-dh-2048-refused"), wallclock=when, now=1.0, peer="mit"))
    assert reply["error-code"].native == ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED
    (entry,) = reply.typed_data()
    from common.asn1.pkinit import TD_DH_PARAMETERS

    groups = decode_as(TD_DH_PARAMETERS, entry["data-value"].native)
    assert [g["parameters"]["p"].native.bit_length() for g in groups] == [4096]
    when = pk_authenticator_time("as-req-pkinit-dh-4096")
    reply = decode(engine.handle_request(raw("as-req-pkinit-dh-4096"), wallclock=when, now=2.0, peer="mit"))
    assert isinstance(reply, AS_REP)


def test_mit_password_as_req(engine):
    data = raw("as-req-password")
    req = decode(data)
    from common.asn1.krb5 import PA_ENC_TIMESTAMP, PA_ENC_TS_ENC
    from common.crypto import string_to_key

    key = string_to_key(18, MANIFEST["password"]["alice@EXAMPLE.TEST"], "EXAMPLE.TESTalice")
    enc = decode_as(PA_ENC_TIMESTAMP, padata_value(req, PaDataType.PA_ENC_TIMESTAMP))
    ts = decode_as(PA_ENC_TS_ENC, decrypt(key, KeyUsage.PA_ENC_TIMESTAMP, enc["cipher"].native))
    reply = decode(engine.handle_request(data, wallclock=ts["patimestamp"].native, now=1.0, peer="mit"))
    assert isinstance(reply, AS_REP), reply.native
    enc_part = decode_enc_kdc_rep_part(decrypt(key, KeyUsage.AS_REP_ENC_PART, reply["enc-part"]["cipher"].native))
    assert enc_part["nonce"].native == req["req-body"]["nonce"].native


def test_mit_fast_tgs_req(engine):
    data = raw("tgs-req")
    req = decode(data)
    ap_req = decode(padata_value(req, PaDataType.PA_TGS_REQ))
    tgt = CCACHE.find(Principal.krbtgt(REALM))
    authenticator = decode(decrypt(tgt.key, KeyUsage.TGS_REQ_AUTH, ap_req["authenticator"]["cipher"].native))
    assert isinstance(authenticator, Authenticator)
    when = authenticator["ctime"].native
    reply = decode(engine.handle_request(data, wallclock=when, now=1.0, peer="mit"))
    assert isinstance(reply, TGS_REP), reply.native
    # Open it exactly as MIT's client does (see test_vectors_mit.test_tgs_exchange).
    from common.asn1.fast import PA_FX_FAST_REPLY, KrbFastResponse
    from common.crypto import cf2

    subkey = authenticator["subkey"].to_key()
    armor_key = cf2(subkey, tgt.key, b"subkeyarmor", b"ticketarmor")
    fast = decode_as(PA_FX_FAST_REPLY, padata_value(reply, PaDataType.PA_FX_FAST))
    response = decode_as(KrbFastResponse, decrypt(armor_key, KeyUsage.FAST_REP, fast.chosen["enc-fast-rep"]["cipher"].native))
    reply_key = cf2(response["strengthen-key"].to_key(), subkey, b"strengthenkey", b"replykey")
    enc_part = decode_enc_kdc_rep_part(decrypt(reply_key, KeyUsage.TGS_REP_ENC_PART_SUBKEY, reply["enc-part"]["cipher"].native))
    assert enc_part["nonce"].native == req["req-body"]["nonce"].native
    service_key = KEYTAB.key_for(Principal.parse(MANIFEST["principals"]["service"]), reply["ticket"]["enc-part"]["etype"].native)
    part = decode(decrypt(service_key, KeyUsage.TICKET, reply["ticket"]["enc-part"]["cipher"].native))
    assert part["key"].to_key() == enc_part["key"].to_key()
