"""common.krb5client without a network: MIT's recorded RSA reply, and an in-test KDC whose replies
can be tampered with, one test per reply-verification failure and its error code."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from common import cms as C
from common.asn1 import ErrorCode, PaDataType, decode, decode_as, oids
from common.asn1.krb5 import AS_REP, KRB_ERROR, EncASRepPart, EncTGSRepPart, METHOD_DATA, TYPED_DATA, Ticket
from common.asn1.pkinit import (
    PA_PK_AS_REP,
    PA_PK_AS_REQ,
    TD_DH_PARAMETERS,
    ContentInfoOctets,
    KDCDHKeyInfo,
    ReplyKeyPack,
    build_kdf_other_info,
    dh_client_public_value,
    encode_dh_public_value,
    unwrap_auth_pack,
)
from common.crypto import KeyUsage, encrypt, generate_key, make_checksum, required_checksum_type
from common.crypto.dh import EcdhKeyPair, curve_by_oid, group_by_id, group_for_parameters
from common.crypto.pkinit import KDF_OID_BY_HASH, octetstring2key, rfc8636_kdf
from common.krb5client import (
    AsClientConfig,
    AsExchange,
    AsResult,
    ClientIdentity,
    KdcCertificateError,
    KdcError,
    KdcSignatureError,
    ReplyError,
    Retry,
    _Sent,
)
from common.pki import create_ca, generate_key as generate_pk, issue_kdc_certificate, load_certificates, load_private_key
from common.principal import Principal
from tests.peers.certs import make_pki

REALM = "EXAMPLE.TEST"
SC = Principal.parse(f"sc/sc1.example.test@{REALM}")
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=123456)
VECTORS = Path(__file__).parent / "vectors" / "mit"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), REALM)


@pytest.fixture(scope="module")
def kdc(pki):
    return load_certificates(pki.kdc_cert)[0], load_private_key(pki.kdc_key)


@pytest.fixture(scope="module")
def rogue_kdc():
    """A KDC certificate from a CA the client does not trust."""
    ca = create_ca("operator", "rogue CA")
    key = generate_pk()
    return issue_kdc_certificate(ca, key.public_key(), REALM, hostname="kdc.example.test"), key


def config(pki, **kwargs) -> AsClientConfig:
    identity = ClientIdentity(load_certificates(pki.cta_operator_cert)[0], load_private_key(pki.cta_key))
    kwargs.setdefault("service", SC)
    return AsClientConfig(identity=identity, client=pki.cta_principal, realm=REALM,
                          anchors=tuple(load_certificates(pki.operator_ca)), **kwargs)


# --- an in-test KDC -------------------------------------------------------------------------------


def kdc_reply(request: bytes, kdc, *, kdf="sha256", dh_nonce_delta=0, enc_nonce_delta=0, sign_with=None,
              cname=None, sname=None, endtime=None, checksum_over=None, server_nonce=None,
              tag=EncTGSRepPart, enctype=18) -> bytes:
    """An AS-REP for `request` as an RFC 4556 KDC builds it, with knobs to break one thing."""
    kdc_cert, kdc_key = kdc
    req = decode(request)
    body = req["req-body"]
    pk = next(p for p in req["padata"] if p["padata-type"].native == PaDataType.PA_PK_AS_REQ)
    pk_req = decode_as(PA_PK_AS_REQ, pk["padata-value"].native)
    _, pack = unwrap_auth_pack(pk_req["signedAuthPack"].parsed)
    nonce = pack["pkAuthenticator"]["nonce"].native
    client = Principal(tuple(body["cname"]["name-string"].native), body["realm"].native, body["cname"]["name-type"].native)
    server = Principal(tuple(body["sname"]["name-string"].native), body["realm"].native, body["sname"]["name-type"].native)
    spki = pack["clientPublicValue"]
    signer_key = sign_with or kdc_key
    if spki.native is not None:
        alg = spki["algorithm"]
        if alg["algorithm"].dotted == oids.DHPUBLICNUMBER:
            params = alg["parameters"]
            group = group_for_parameters(params["p"].native, params["g"].native, params["q"].native)
            mine = group.generate_key_pair()
            z = mine.shared_secret(spki["public_key"].parsed.native)
            public = encode_dh_public_value(mine.public_value)
        else:
            pair = EcdhKeyPair.generate(curve_by_oid(alg["parameters"].chosen.dotted))
            z = pair.shared_secret(bytes(spki["public_key"]))
            public = pair.public_point
        key_info = KDCDHKeyInfo({"subjectPublicKey": public, "nonce": nonce + dh_nonce_delta})
        signed = C.sign_signed_data(key_info.dump(), oids.ID_PKINIT_DHKEYDATA, kdc_cert, signer_key)
        rep_info = {"dhSignedData": ContentInfoOctets(C.content_info(signed))}
        if server_nonce is not None:
            rep_info["serverDHNonce"] = server_nonce
        if kdf is not None:
            rep_info["kdf"] = {"kdf-id": KDF_OID_BY_HASH[kdf]}
        pk_rep = PA_PK_AS_REP({"dhInfo": rep_info}).dump()
        if kdf is not None:
            other = build_kdf_other_info(KDF_OID_BY_HASH[kdf], client, server, enctype, request, pk_rep)
            reply_key = rfc8636_kdf(kdf, z, other, enctype)
        else:
            reply_key = octetstring2key(z, enctype, b"", server_nonce or b"")
    else:
        reply_key = generate_key(enctype)
        ctype = required_checksum_type(enctype)
        checksum = make_checksum(ctype, reply_key, KeyUsage.PKINIT_AS_CHECKSUM, checksum_over or request)
        rkp = ReplyKeyPack({"replyKey": {"keytype": enctype, "keyvalue": reply_key.contents},
                            "asChecksum": {"cksumtype": ctype, "checksum": checksum}})
        signed = C.sign_signed_data(rkp.dump(), oids.ID_PKINIT_RKEYDATA, kdc_cert, signer_key)
        client_cert = C.verify_signed_data(pk_req["signedAuthPack"].parsed,
                                           expected_content_type=oids.ID_PKINIT_AUTHDATA).signer_certificate
        sealed = C.envelope(signed.dump(), client_cert)
        pk_rep = PA_PK_AS_REP({"encKeyPack": ContentInfoOctets(sealed)}).dump()

    session = generate_key(18)
    now = NOW.replace(microsecond=0)
    the_sname = sname or server
    enc = tag({
        "key": {"keytype": 18, "keyvalue": session.contents},
        "last-req": [],
        "nonce": body["nonce"].native + enc_nonce_delta,
        "flags": 0x40E10000,
        "authtime": now,
        "endtime": endtime or now + dt.timedelta(hours=10),
        "srealm": the_sname.realm,
        "sname": {"name-type": the_sname.name_type, "name-string": list(the_sname.components)},
    })
    service_key = generate_key(18)
    ticket = Ticket({"realm": REALM, "sname": body["sname"],
                     "enc-part": {"etype": 18, "kvno": 1, "cipher": encrypt(service_key, 2, b"opaque")}})
    the_cname = cname or client
    return AS_REP({
        "padata": [{"padata-type": PaDataType.PA_PK_AS_REP, "padata-value": pk_rep}],
        "crealm": the_cname.realm,
        "cname": {"name-type": 1, "name-string": list(the_cname.components)},
        "ticket": ticket,
        "enc-part": {"etype": enctype, "cipher": encrypt(reply_key, KeyUsage.AS_REP_ENC_PART, enc.dump())},
    }).dump(), session


def exchange_with(pki, kdc, cfg=None, **reply_kwargs):
    exchange = AsExchange(cfg or config(pki))
    request = exchange.start(wallclock=NOW)
    reply, session = kdc_reply(request, kdc, **reply_kwargs)
    return exchange, request, reply, session


# --- good exchanges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, kdf",
    [(m, k) for m in ("dh", "ecdh") for k in ("sha256", "sha1", "sha512", None)] + [("rsa", None)],
)
def test_exchange_succeeds(pki, kdc, mode, kdf):
    exchange, request, reply, session = exchange_with(pki, kdc, config(pki, mode=mode), kdf=kdf)
    result = exchange.receive(reply, wallclock=NOW)
    assert isinstance(result, AsResult)
    assert result.session_key == session
    assert result.kdf == (kdf if mode != "rsa" else None)
    assert result.server.same_name(SC) and result.client.same_name(pki.cta_principal)
    cred = result.to_credential()
    assert cred.key == session and cred.ticket == result.ticket and decode(cred.ticket)["realm"].native == REALM


def test_request_shape(pki):
    exchange = AsExchange(config(pki))
    req = decode(exchange.start(wallclock=NOW))
    types = [p["padata-type"].native for p in req["padata"]]
    assert types == [PaDataType.PA_PK_AS_REQ, PaDataType.PA_AS_FRESHNESS]
    pk_req = decode_as(PA_PK_AS_REQ, req["padata"][0]["padata-value"].native)
    _, pack = unwrap_auth_pack(pk_req["signedAuthPack"].parsed)
    import hashlib

    auth = pack["pkAuthenticator"]
    assert auth["paChecksum"].native == hashlib.sha1(req.req_body_bytes()).digest()
    assert auth["nonce"].native == req["req-body"]["nonce"].native
    assert auth["cusec"].native == NOW.microsecond
    assert [k["kdf-id"].dotted for k in pack["supportedKDFs"]] == [KDF_OID_BY_HASH[h] for h in ("sha256", "sha1", "sha512")]
    assert pack["clientPublicValue"]["algorithm"]["parameters"]["p"].native == group_by_id(14).p
    assert req["req-body"]["sname"]["name-type"].native == 1  # sc/... as parsed: NT-PRINCIPAL
    assert req["req-body"]["etype"].native == [18, 17, 20, 19, 16]
    krbtgt = decode(AsExchange(config(pki, service=None)).start(wallclock=NOW))
    assert krbtgt["req-body"]["sname"]["name-type"].native == 2  # NT-SRV-INST


def test_enc_part_tag_25_accepted(pki, kdc):
    exchange, _, reply, session = exchange_with(pki, kdc, tag=EncASRepPart)
    assert exchange.receive(reply, wallclock=NOW).session_key == session


def test_server_dh_nonce_in_octetstring2key(pki, kdc):
    exchange, _, reply, session = exchange_with(pki, kdc, kdf=None, server_nonce=b"\x01" * 32)
    assert exchange.receive(reply, wallclock=NOW).session_key == session


# --- the MIT recording -------------------------------------------------------------------------


def test_mit_rsa_reply_verifies_end_to_end():
    """MIT krb5kdc's recorded RSA-mode reply passes every check (signature, KDC chain, asChecksum
    over MIT kinit's AS-REQ, nonce, names) with the recorded CTA key."""
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    request = (VECTORS / "as-req-pkinit-rsa.bin").read_bytes()
    reply = (VECTORS / "as-rep-pkinit-rsa.bin").read_bytes()
    req = decode(request)
    identity = ClientIdentity(load_certificates(VECTORS / "cta-operator.pem")[0],
                              load_private_key(VECTORS / "cta.key", check_mode=False))
    cta = Principal.parse(manifest["principals"]["cta"])
    cfg = AsClientConfig(identity=identity, client=cta, realm=REALM, mode="rsa",
                         anchors=tuple(load_certificates(VECTORS / "operator-ca.pem")),
                         service=Principal(tuple(req["req-body"]["sname"]["name-string"].native), REALM,
                                           req["req-body"]["sname"]["name-type"].native))
    exchange = AsExchange(cfg)
    # Resume as if we had sent MIT's request (its nonce, its bytes for the asChecksum).
    exchange._sent = _Sent(request, req["req-body"]["nonce"].native, True, None)
    wallclock = dt.datetime.fromisoformat(manifest["recorded"].replace("Z", "+00:00"))
    result = exchange.receive(reply, wallclock=wallclock)
    assert result.client == cta and result.session_key.enctype in (17, 18, 19, 20)
    assert abs((result.authtime - wallclock).total_seconds()) < 300

    # One flipped bit in the AS-REQ we claim to have sent: the asChecksum no longer matches.
    exchange = AsExchange(cfg)
    tampered = bytearray(request)
    tampered[-1] ^= 1
    exchange._sent = _Sent(bytes(tampered), req["req-body"]["nonce"].native, True, None)
    with pytest.raises(ReplyError, match="asChecksum") as err:
        exchange.receive(reply, wallclock=wallclock)
    assert err.value.code == ErrorCode.KRB_AP_ERR_MODIFIED


# --- every reply-verification failure ------------------------------------------------------------


def test_bad_kdc_signature(pki, kdc):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    exchange, _, reply, _ = exchange_with(pki, kdc, sign_with=other)
    with pytest.raises(KdcSignatureError) as err:
        exchange.receive(reply, wallclock=NOW)
    assert err.value.code == ErrorCode.KDC_ERR_INVALID_SIG


def test_bad_kdc_signature_rsa_mode(pki, kdc):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    exchange, _, reply, _ = exchange_with(pki, kdc, config(pki, mode="rsa"), sign_with=other)
    with pytest.raises(KdcSignatureError) as err:
        exchange.receive(reply, wallclock=NOW)
    assert err.value.code == ErrorCode.KDC_ERR_INVALID_SIG


def test_untrusted_kdc_certificate(pki, rogue_kdc):
    exchange, _, reply, _ = exchange_with(pki, rogue_kdc)
    with pytest.raises(KdcCertificateError) as err:
        exchange.receive(reply, wallclock=NOW)
    assert err.value.code == ErrorCode.KDC_ERR_CANT_VERIFY_CERTIFICATE


def test_kdc_certificate_expired(pki, kdc):
    exchange, _, reply, _ = exchange_with(pki, kdc)
    later = NOW + dt.timedelta(days=365 * 30)
    with pytest.raises(KdcCertificateError) as err:
        exchange.receive(reply, wallclock=later)
    assert err.value.code == 71  # KDC_ERR_INVALID_CERTIFICATE


def test_client_certificate_is_not_a_kdc_certificate(pki):
    """A reply signed with the CTA's own certificate (no KPKdc EKU, no krbtgt SAN)."""
    cta = load_certificates(pki.cta_operator_cert)[0], load_private_key(pki.cta_key)
    exchange, _, reply, _ = exchange_with(pki, cta)
    with pytest.raises(KdcCertificateError) as err:
        exchange.receive(reply, wallclock=NOW)
    assert err.value.code == ErrorCode.KDC_ERR_KDC_NAME_MISMATCH


def test_wrong_nonce_in_kdc_dh_key_info(pki, kdc):
    exchange, _, reply, _ = exchange_with(pki, kdc, dh_nonce_delta=1)
    with pytest.raises(ReplyError, match="KDCDHKeyInfo nonce") as err:
        exchange.receive(reply, wallclock=NOW)
    assert err.value.code == ErrorCode.KRB_AP_ERR_MODIFIED


def test_wrong_nonce_in_enc_part(pki, kdc):
    exchange, _, reply, _ = exchange_with(pki, kdc, enc_nonce_delta=1)
    with pytest.raises(ReplyError, match="EncKDCRepPart nonce"):
        exchange.receive(reply, wallclock=NOW)


def test_kdf_not_offered(pki, kdc):
    exchange, _, reply, _ = exchange_with(pki, kdc, config(pki, kdfs=("sha256",)), kdf="sha512")
    with pytest.raises(ReplyError, match="KDF") as err:
        exchange.receive(reply, wallclock=NOW)
    assert err.value.code == ErrorCode.KDC_ERR_NO_ACCEPTABLE_KDF


def test_wrong_kdf_inputs_fail_decryption(pki, kdc, monkeypatch):
    """The KDC derived the key with NT-SRV-INST for a name we sent as NT-PRINCIPAL: the reply key
    differs, so the enc-part does not decrypt (partyVInfo must be the sname as sent)."""
    exchange = AsExchange(config(pki))
    request = exchange.start(wallclock=NOW)
    real = build_kdf_other_info
    monkeypatch.setitem(globals(), "build_kdf_other_info",
                        lambda oid, c, s, *a: real(oid, c, s.with_name_type(2), *a))
    reply, _ = kdc_reply(request, kdc)
    with pytest.raises(ReplyError, match="does not decrypt"):
        exchange.receive(reply, wallclock=NOW)


def test_tampered_as_checksum(pki, kdc):
    exchange = AsExchange(config(pki, mode="rsa"))
    request = exchange.start(wallclock=NOW)
    reply, _ = kdc_reply(request, kdc, checksum_over=request + b"\x00")
    with pytest.raises(ReplyError, match="asChecksum") as err:
        exchange.receive(reply, wallclock=NOW)
    assert err.value.code == ErrorCode.KRB_AP_ERR_MODIFIED


def test_wrong_client_name(pki, kdc):
    exchange, _, reply, _ = exchange_with(pki, kdc, cname=Principal.parse(f"cta/0011223344ff@{REALM}"))
    with pytest.raises(ReplyError) as err:
        exchange.receive(reply, wallclock=NOW)
    assert err.value.code == ErrorCode.KDC_ERR_CLIENT_NAME_MISMATCH


def test_wrong_service_name(pki, kdc):
    exchange, _, reply, _ = exchange_with(pki, kdc, sname=Principal.krbtgt(REALM))
    with pytest.raises(ReplyError, match="for service"):
        exchange.receive(reply, wallclock=NOW)


def test_expired_ticket_and_skew(pki, kdc):
    exchange, _, reply, _ = exchange_with(pki, kdc, endtime=NOW.replace(microsecond=0) - dt.timedelta(seconds=1))
    with pytest.raises(ReplyError) as err:
        exchange.receive(reply, wallclock=NOW)
    assert err.value.code == ErrorCode.KRB_AP_ERR_SKEW
    exchange, _, reply, _ = exchange_with(pki, kdc)
    with pytest.raises(ReplyError, match="clock skew"):
        exchange.receive(reply, wallclock=NOW + dt.timedelta(minutes=6))


def test_mode_mismatch(pki, kdc):
    exchange = AsExchange(config(pki, mode="dh"))
    exchange.start(wallclock=NOW)
    rsa_exchange = AsExchange(config(pki, mode="rsa"))
    reply, _ = kdc_reply(rsa_exchange.start(wallclock=NOW), kdc)
    with pytest.raises(ReplyError, match="key-transport reply to a DH request"):
        exchange.receive(reply, wallclock=NOW)


def test_garbage_reply(pki):
    exchange = AsExchange(config(pki))
    exchange.start(wallclock=NOW)
    with pytest.raises(ReplyError, match="does not decode"):
        exchange.receive(b"\x6b\x03\x02\x01\x05", wallclock=NOW)


# --- KRB-ERRORs ------------------------------------------------------------------------------------


def krb_error(code: int, e_data: bytes | None = None, text: str | None = None) -> bytes:
    value = {"stime": NOW.replace(microsecond=0), "susec": 0, "error-code": code, "realm": REALM,
             "sname": {"name-type": 2, "name-string": ["krbtgt", REALM]}}
    if e_data is not None:
        value["e-data"] = e_data
    if text:
        value["e-text"] = text
    return KRB_ERROR(value).dump()


def test_freshness_token_retry(pki, kdc):
    exchange = AsExchange(config(pki, optimistic=False))
    first = decode(exchange.start(wallclock=NOW))
    assert [p["padata-type"].native for p in first["padata"]] == [PaDataType.PA_AS_FRESHNESS]
    methods = METHOD_DATA([{"padata-type": 16, "padata-value": b""}, {"padata-type": 150, "padata-value": b"TOKEN"},
                           {"padata-type": 133, "padata-value": b"COOKIE"}]).dump()
    step = exchange.receive(krb_error(ErrorCode.KDC_ERR_PREAUTH_REQUIRED, methods), wallclock=NOW)
    assert isinstance(step, Retry) and step.reason == "freshness token"
    second = decode(step.request)
    by_type = {p["padata-type"].native: p["padata-value"].native for p in second["padata"]}
    assert by_type[PaDataType.PA_FX_COOKIE] == b"COOKIE" and PaDataType.PA_AS_FRESHNESS not in by_type
    pk_req = decode_as(PA_PK_AS_REQ, by_type[PaDataType.PA_PK_AS_REQ])
    _, pack = unwrap_auth_pack(pk_req["signedAuthPack"].parsed)
    assert pack["pkAuthenticator"]["freshnessToken"].native == b"TOKEN"
    reply, session = kdc_reply(step.request, kdc)
    assert exchange.receive(reply, wallclock=NOW).session_key == session


def test_preauth_required_without_pkinit(pki):
    exchange = AsExchange(config(pki, optimistic=False))
    exchange.start(wallclock=NOW)
    methods = METHOD_DATA([{"padata-type": 2, "padata-value": b""}]).dump()
    with pytest.raises(KdcError, match="does not offer PKINIT") as err:
        exchange.receive(krb_error(ErrorCode.KDC_ERR_PREAUTH_REQUIRED, methods), wallclock=NOW)
    assert err.value.code == ErrorCode.KDC_ERR_PREAUTH_REQUIRED


def test_dh_parameters_retry(pki, kdc):
    exchange = AsExchange(config(pki))
    exchange.start(wallclock=NOW)
    g16 = group_by_id(16)
    params = TD_DH_PARAMETERS([dh_client_public_value(g16.p, g16.g, g16.q, 2)["algorithm"]]).dump()
    typed = TYPED_DATA([{"data-type": PaDataType.TD_DH_PARAMETERS, "data-value": params}]).dump()
    step = exchange.receive(krb_error(ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED, typed), wallclock=NOW)
    assert isinstance(step, Retry) and step.reason == "DH group 16"
    reply, session = kdc_reply(step.request, kdc)
    assert exchange.receive(reply, wallclock=NOW).session_key == session


def test_dh_parameters_from_mit_recording(pki):
    exchange = AsExchange(config(pki))
    exchange.start(wallclock=NOW)
    step = exchange.receive((VECTORS / "krb-error-dh-parameters.bin").read_bytes(), wallclock=NOW)
    assert isinstance(step, Retry) and step.reason.startswith("DH group ")


def test_other_kdc_error(pki):
    exchange = AsExchange(config(pki))
    exchange.start(wallclock=NOW)
    with pytest.raises(KdcError, match="no such client") as err:
        exchange.receive(krb_error(ErrorCode.KDC_ERR_C_PRINCIPAL_UNKNOWN, text="no such client"), wallclock=NOW)
    assert err.value.code == 6 and err.value.krb_error is not None


def test_config_validation(pki):
    with pytest.raises(ValueError, match="mode"):
        config(pki, mode="ecdsa")
    with pytest.raises(ValueError, match="KDF"):
        config(pki, kdfs=("md5",))


# --- transport (real sockets on port 0) ----------------------------------------------------------


async def _fake_kdc(tcp_reply: bytes, udp_reply: bytes, *, raw_tcp: bytes | None = None):
    import asyncio

    seen = {"tcp": [], "udp": []}

    async def handle(reader, writer):
        length = int.from_bytes(await reader.readexactly(4), "big")
        seen["tcp"].append(await reader.readexactly(length))
        writer.write(raw_tcp if raw_tcp is not None else len(tcp_reply).to_bytes(4, "big") + tcp_reply)
        await writer.drain()
        writer.close()

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            seen["udp"].append(data)
            self.transport.sendto(udp_reply, addr)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(Udp, local_addr=("127.0.0.1", port))
    return server, udp, port, seen


async def test_udp_falls_back_to_tcp_on_response_too_big():
    from common.krb5client import send_to_kdc

    too_big = krb_error(ErrorCode.KRB_ERR_RESPONSE_TOO_BIG)
    server, udp, port, seen = await _fake_kdc(b"\x6b\x00", too_big)
    try:
        assert await send_to_kdc("127.0.0.1", port, b"REQ", transport="udp", timeout=5) == b"\x6b\x00"
        assert seen == {"udp": [b"REQ"], "tcp": [b"REQ"]}
        other = krb_error(ErrorCode.KDC_ERR_PREAUTH_REQUIRED)
        udp.close()
    finally:
        server.close()
    server, udp, port, seen = await _fake_kdc(b"unused", other)
    try:
        assert await send_to_kdc("127.0.0.1", port, b"REQ", transport="udp", timeout=5) == other
        assert seen["tcp"] == []
    finally:
        server.close()
        udp.close()


async def test_tcp_reply_with_reserved_bit_is_refused():
    from common.krb5client import TransportError, send_to_kdc

    server, udp, port, _ = await _fake_kdc(b"", b"", raw_tcp=b"\x80\x00\x00\x01x")
    try:
        with pytest.raises(TransportError, match="reserved high bit"):
            await send_to_kdc("127.0.0.1", port, b"REQ", timeout=5)
    finally:
        server.close()
        udp.close()
