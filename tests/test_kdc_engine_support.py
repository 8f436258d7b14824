"""Shared plumbing for the tests/test_kdc_engine*.py modules: an in-memory realm (temporary
SQLite database, the PKI world of test_pki_factories, a KdcEngine) and a small client built
directly on the codec that makes AS-REQs (PKINIT DH/ECDH/RSA, PA-ENC-TIMESTAMP) and TGS-REQs
(with and without FAST) and opens the replies. The clock is always chosen by the test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass

from common import cms
from common.asn1 import ErrorCode, PaDataType, decode, decode_as, decode_enc_kdc_rep_part, field_bytes, oids
from common.asn1.fast import PA_FX_FAST_REPLY, PA_FX_FAST_REQUEST, KrbFastResponse
from common.asn1.krb5 import (
    AP_REQ,
    AS_REP,
    AS_REQ,
    KDC_REQ_BODY,
    KRB_ERROR,
    PA_ENC_TS_ENC,
    TGS_REP,
    TGS_REQ,
    Authenticator,
    EncryptionKey,
    EncTicketPart,
    principal_to_asn1,
)
from common.asn1.pkinit import (
    PA_PK_AS_REP,
    PA_PK_AS_REQ,
    AuthPack,
    ContentInfoOctets,
    build_kdf_other_info,
    decode_dh_public_value,
    decode_enc_key_pack_content,
    dh_client_public_value,
    ec_client_public_value,
    signed_data_content_info,
    unwrap_kdc_dh_key_info,
    unwrap_reply_key_pack,
)
from common.crypto import Key, KeyUsage, cf2, decrypt, encrypt, generate_key, make_checksum, required_checksum_type, verify_checksum
from common.crypto.dh import MODP_2048, DhGroup, EcdhKeyPair, curve_by_name
from common.crypto.pkinit import KDF_HASH_BY_OID, KDF_OID_BY_HASH, octetstring2key, rfc8636_kdf
from common.pki import phone_id
from common.principal import NameType, Principal
from kdcd.db import PrincipalAttributes, SQLiteDatabase, generate_master_key
from kdcd.engine import KdcEngine
from kdcd.pkinit import PkinitCredentials
from kdcd.policy import KdcPolicy
from test_pki_factories import MAC, NOW, PHONE, REALM, World, world

UTC = dt.timezone.utc
SC = Principal(("sc", "sc1.example.test"), REALM, NameType.SRV_HST)
KRBTGT = Principal.krbtgt(REALM)
ALICE = Principal(("alice",), REALM)
ALICE_PASSWORD = "correct horse battery staple"
CTA = Principal(("cta", MAC.hex()), REALM)
PEER = "192.0.2.10:40000"
CSR = ("+18005550100",)
EMERGENCY = ("911",)

_nonces = itertools.count(1000)


def next_nonce() -> int:
    return next(_nonces)


@dataclass
class RealmFixture:
    world: World
    db: SQLiteDatabase
    policy: KdcPolicy
    engine: KdcEngine
    customer_id: int
    now: dt.datetime = NOW
    monotonic: float = 1000.0

    def send(self, data: bytes, *, at: dt.datetime | None = None, peer: str = PEER):
        """handle_request at the fixture's clock (or `at`); decodes the reply."""
        when = at or self.now
        self.monotonic += 1.0
        reply = self.engine.handle_request(data, wallclock=when, now=self.monotonic, peer=peer)
        return None if reply is None else decode(reply)


def make_realm(tmp_path, *, engine_kwargs: dict | None = None, **policy_overrides) -> RealmFixture:
    w = world()
    db = SQLiteDatabase.create(tmp_path / "kdc.db", REALM, master_key=generate_master_key(), now=NOW - dt.timedelta(days=2))
    db.add_principal(SC, now=NOW - dt.timedelta(days=2), attributes=PrincipalAttributes(is_service=True))
    db.add_principal(ALICE, now=NOW - dt.timedelta(days=2), password=ALICE_PASSWORD)
    customer = db.add_customer(now=NOW - dt.timedelta(days=2), phone_ids=[phone_id(PHONE)])
    policy = KdcPolicy(realm=REALM, csr_numbers=CSR, emergency_numbers=EMERGENCY, **policy_overrides)
    creds = PkinitCredentials(
        certificate=w.kdc,
        private_key=w.kdc_key,
        manufacturer_anchors=(w.manufacturer.certificate,),
        operator_anchors=(w.operator.certificate,),
    )
    engine = KdcEngine(policy, db, pkinit=creds, **(engine_kwargs or {}))
    return RealmFixture(w, db, policy, engine, customer.id)


# --- request building ----------------------------------------------------------------------


def req_body(
    cname: Principal | None,
    sname: Principal,
    *,
    nonce: int,
    till: dt.datetime,
    etypes=(18, 17),
    options: int = 0,
    rtime: dt.datetime | None = None,
    realm: str | None = None,
) -> KDC_REQ_BODY:
    sname_asn1, srealm = principal_to_asn1(sname)
    value = {
        "kdc-options": int(options),
        "realm": realm or srealm,
        "sname": sname_asn1,
        "till": till,
        "nonce": nonce,
        "etype": list(etypes),
    }
    if cname is not None:
        value["cname"] = principal_to_asn1(cname)[0]
    if rtime is not None:
        value["rtime"] = rtime
    return KDC_REQ_BODY(value)


def as_req(body: KDC_REQ_BODY, padata: list[tuple[int, bytes]]) -> bytes:
    value = {"req-body": body}
    if padata:
        value["padata"] = [{"padata-type": t, "padata-value": v} for t, v in padata]
    return AS_REQ(value).dump()


@dataclass
class PkinitRequest:
    data: bytes
    cname: Principal
    sname: Principal
    nonce: int
    mode: str
    key_pair: object = None
    client_dh_nonce: bytes | None = None
    client_key: object = None
    client_cert: object = None


def pkinit_request(
    cert,
    key,
    *,
    cname: Principal = CTA,
    sname: Principal = KRBTGT,
    mode: str = "dh",
    now: dt.datetime = NOW,
    nonce: int | None = None,
    pa_nonce: int | None = None,
    etypes=(18, 17),
    kdfs: tuple[str, ...] | None = ("sha256", "sha1", "sha512"),
    group: DhGroup = MODP_2048,
    curve: str = "P-256",
    freshness: bytes | None = None,
    pa_checksum: bytes | None | str = "auto",
    client_dh_nonce: bytes | None = None,
    certificates=(),
    ctime: dt.datetime | None = None,
    options: int = 0,
    till: dt.datetime | None = None,
    signer_cert=None,
    dh_parameters: tuple[int, int, int] | None = None,
) -> PkinitRequest:
    nonce = next_nonce() if nonce is None else nonce
    body = req_body(cname, sname, nonce=nonce, till=till or now + dt.timedelta(days=1), etypes=etypes, options=options)
    body_der = body.dump()
    ctime = ctime or now
    authenticator = {
        "cusec": ctime.microsecond,
        "ctime": ctime.replace(microsecond=0),
        "nonce": nonce if pa_nonce is None else pa_nonce,
    }
    if pa_checksum == "auto":
        authenticator["paChecksum"] = hashlib.sha1(body_der).digest()
    elif pa_checksum is not None:
        authenticator["paChecksum"] = pa_checksum
    if freshness is not None:
        authenticator["freshnessToken"] = freshness
    pack: dict = {"pkAuthenticator": authenticator, "supportedCMSTypes": [{"algorithm": "1.2.840.113549.3.7"}]}
    key_pair = None
    if mode == "dh":
        key_pair = group.generate_key_pair()
        p, g, q = dh_parameters or (group.p, group.g, group.q)
        pack["clientPublicValue"] = dh_client_public_value(p, g, q, key_pair.public_value)
    elif mode == "ecdh":
        key_pair = EcdhKeyPair.generate(curve_by_name(curve))
        pack["clientPublicValue"] = ec_client_public_value(key_pair.curve.oid, key_pair.public_point)
    if kdfs is not None:
        pack["supportedKDFs"] = [{"kdf-id": KDF_OID_BY_HASH[k]} for k in kdfs]
    if client_dh_nonce is not None:
        pack["clientDHNonce"] = client_dh_nonce
    signed = cms.sign_signed_data(
        AuthPack(pack).dump(), oids.ID_PKINIT_AUTHDATA, signer_cert or cert, key, certificates=certificates
    )
    pa = PA_PK_AS_REQ({"signedAuthPack": ContentInfoOctets(signed_data_content_info(signed))}).dump()
    data = as_req(body, [(PaDataType.PA_PK_AS_REQ, pa)])
    return PkinitRequest(data, cname, sname, nonce, mode, key_pair, client_dh_nonce, key, cert)


def padata_value(message, pa_type: int) -> bytes | None:
    if message["padata"].native is None:
        return None
    for item in message["padata"]:
        if item["padata-type"].native == pa_type:
            return item["padata-value"].native
    return None


@dataclass
class Credentials:
    ticket: object  # Ticket
    session_key: Key
    enc_part: object
    reply_key: Key
    cname: Principal


def open_pkinit_reply(request: PkinitRequest, reply, kdc_cert=None) -> Credentials:
    assert isinstance(reply, AS_REP), _explain(reply)
    value = padata_value(reply, PaDataType.PA_PK_AS_REP)
    pk_rep = decode_as(PA_PK_AS_REP, value)
    enctype = reply["enc-part"]["etype"].native
    if request.mode == "rsa":
        assert pk_rep.name == "encKeyPack"
        content = cms.open_envelope(pk_rep.chosen.parsed, request.client_key)
        signed = decode_enc_key_pack_content(content)
        cms.verify_signed_data(signed, expected_content_type=oids.ID_PKINIT_RKEYDATA)
        pack = unwrap_reply_key_pack(signed)
        reply_key = pack["replyKey"].to_key()
        checksum = pack["asChecksum"]
        verify_checksum(checksum["cksumtype"].native, reply_key, KeyUsage.PKINIT_AS_CHECKSUM, request.data, checksum["checksum"].native)
    else:
        assert pk_rep.name == "dhInfo"
        info = pk_rep.chosen
        signed, key_info = unwrap_kdc_dh_key_info(info["dhSignedData"].parsed)
        verified = cms.verify_signed_data(signed, expected_content_type=oids.ID_PKINIT_DHKEYDATA)
        if kdc_cert is not None:
            assert verified.signer_certificate == kdc_cert
        assert key_info["nonce"].native == request.nonce
        public = key_info["subjectPublicKey"].native
        if request.mode == "dh":
            z = request.key_pair.shared_secret(decode_dh_public_value(public))
        else:
            z = request.key_pair.shared_secret(public)
        if info["kdf"].native is not None:
            kdf_oid = info["kdf"]["kdf-id"].dotted
            other = build_kdf_other_info(kdf_oid, request.cname, request.sname, enctype, request.data, value)
            reply_key = rfc8636_kdf(KDF_HASH_BY_OID[kdf_oid], z, other, enctype)
        else:
            reply_key = octetstring2key(z, enctype, request.client_dh_nonce or b"", info["serverDHNonce"].native or b"")
    enc_part = decode_enc_kdc_rep_part(decrypt(reply_key, KeyUsage.AS_REP_ENC_PART, reply["enc-part"]["cipher"].native), padded=True)
    assert enc_part["nonce"].native == request.nonce
    return Credentials(reply["ticket"], enc_part["key"].to_key(), enc_part, reply_key, request.cname)


def enc_timestamp_request(
    cname: Principal, key: Key, *, sname: Principal = KRBTGT, now: dt.datetime = NOW, nonce: int | None = None, etypes=(18, 17), options: int = 0, kvno: int | None = None
) -> tuple[bytes, int]:
    nonce = next_nonce() if nonce is None else nonce
    body = req_body(cname, sname, nonce=nonce, till=now + dt.timedelta(hours=10), etypes=etypes, options=options)
    ts = PA_ENC_TS_ENC({"patimestamp": now.replace(microsecond=0), "pausec": now.microsecond}).dump()
    enc = {"etype": key.enctype, "cipher": encrypt(key, KeyUsage.PA_ENC_TIMESTAMP, ts)}
    if kvno is not None:
        enc["kvno"] = kvno
    from common.asn1.krb5 import PA_ENC_TIMESTAMP

    return as_req(body, [(PaDataType.PA_ENC_TIMESTAMP, PA_ENC_TIMESTAMP(enc).dump())]), nonce


def open_key_reply(reply, key: Key, nonce: int, cname: Principal) -> Credentials:
    assert isinstance(reply, AS_REP), _explain(reply)
    enc_part = decode_enc_kdc_rep_part(decrypt(key, KeyUsage.AS_REP_ENC_PART, reply["enc-part"]["cipher"].native), padded=True)
    assert enc_part["nonce"].native == nonce
    return Credentials(reply["ticket"], enc_part["key"].to_key(), enc_part, key, cname)


@dataclass
class TgsRequest:
    data: bytes
    nonce: int
    session_key: Key
    subkey: Key | None
    armor_key: Key | None


def tgs_request(
    creds: Credentials,
    sname: Principal = SC,
    *,
    now: dt.datetime = NOW,
    nonce: int | None = None,
    subkey: bool = True,
    fast: bool = True,
    etypes=(18, 17),
    options: int = 0,
    checksum_body: bytes | None = None,
    authenticator_cname: Principal | None = None,
    fast_options: int = 0,
    ticket=None,
) -> TgsRequest:
    nonce = next_nonce() if nonce is None else nonce
    body = req_body(None, sname, nonce=nonce, till=now + dt.timedelta(hours=8), etypes=etypes, options=options)
    body_der = body.dump()
    session_key = creds.session_key
    sub = generate_key(session_key.enctype) if subkey else None
    cksumtype = required_checksum_type(session_key.enctype)
    cname_asn1, crealm = principal_to_asn1(authenticator_cname or creds.cname)
    auth = {
        "crealm": crealm,
        "cname": cname_asn1,
        "cksum": {"cksumtype": cksumtype, "checksum": make_checksum(cksumtype, session_key, KeyUsage.TGS_REQ_AUTH_CKSUM, checksum_body or body_der)},
        "cusec": now.microsecond,
        "ctime": now.replace(microsecond=0),
    }
    if sub is not None:
        auth["subkey"] = EncryptionKey.from_key(sub)
    ap_req = AP_REQ(
        {
            "ap-options": 0,
            "ticket": ticket if ticket is not None else creds.ticket,
            "authenticator": {"etype": session_key.enctype, "cipher": encrypt(session_key, KeyUsage.TGS_REQ_AUTH, Authenticator(auth).dump())},
        }
    ).dump()
    padata = [{"padata-type": PaDataType.PA_TGS_REQ, "padata-value": ap_req}]
    armor_key = None
    if fast:
        from common.asn1.fast import KrbFastReq

        armor_key = cf2(sub, session_key, b"subkeyarmor", b"ticketarmor")
        fast_req = KrbFastReq({"fast-options": fast_options, "padata": [], "req-body": body}).dump()
        armor_cksum = required_checksum_type(armor_key.enctype)
        armored = {
            "req-checksum": {"cksumtype": armor_cksum, "checksum": make_checksum(armor_cksum, armor_key, KeyUsage.FAST_REQ_CHKSUM, ap_req)},
            "enc-fast-req": {"etype": armor_key.enctype, "cipher": encrypt(armor_key, KeyUsage.FAST_ENC, fast_req)},
        }
        padata.append({"padata-type": PaDataType.PA_FX_FAST, "padata-value": PA_FX_FAST_REQUEST(name="armored-data", value=armored).dump()})
    data = TGS_REQ({"padata": padata, "req-body": body}).dump()
    return TgsRequest(data, nonce, session_key, sub, armor_key)


def open_tgs_reply(request: TgsRequest, reply, cname: Principal) -> Credentials:
    assert isinstance(reply, TGS_REP), _explain(reply)
    reply_key = request.subkey or request.session_key
    usage = KeyUsage.TGS_REP_ENC_PART_SUBKEY if request.subkey else KeyUsage.TGS_REP_ENC_PART_SESSION_KEY
    if request.armor_key is not None:
        value = decode_as(PA_FX_FAST_REPLY, padata_value(reply, PaDataType.PA_FX_FAST))
        response = decode_as(KrbFastResponse, decrypt(request.armor_key, KeyUsage.FAST_REP, value.chosen["enc-fast-rep"]["cipher"].native), padded=True)
        assert response["nonce"].native == request.nonce
        finished = response["finished"]
        verify_checksum(
            finished["ticket-checksum"]["cksumtype"].native, request.armor_key, KeyUsage.FAST_FINISHED,
            field_bytes(reply, "ticket"), finished["ticket-checksum"]["checksum"].native,
        )
        reply_key = cf2(response["strengthen-key"].to_key(), reply_key, b"strengthenkey", b"replykey")
    enc_part = decode_enc_kdc_rep_part(decrypt(reply_key, usage, reply["enc-part"]["cipher"].native), padded=True)
    assert enc_part["nonce"].native == request.nonce
    return Credentials(reply["ticket"], enc_part["key"].to_key(), enc_part, reply_key, cname)


def decrypt_ticket(realm: RealmFixture, ticket) -> EncTicketPart:
    sname = Principal(tuple(ticket["sname"]["name-string"].native), ticket["realm"].native)
    enc = ticket["enc-part"]
    key = realm.db.get_key(sname, enc["etype"].native, enc["kvno"].native).key
    return decode(decrypt(key, KeyUsage.TICKET, enc["cipher"].native), padded=True)


def _explain(reply) -> str:
    if isinstance(reply, KRB_ERROR):
        return f"KRB-ERROR {ErrorCode(reply['error-code'].native).name}: {reply['e-text'].native}"
    return repr(reply)


def error_code(reply) -> int:
    assert isinstance(reply, KRB_ERROR), f"expected a KRB-ERROR, got {type(reply).__name__}"
    return reply["error-code"].native
