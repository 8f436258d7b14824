"""KdcEngine end to end in memory: PKINIT (DH, ECDH, RSA), PA-ENC-TIMESTAMP, TGS with and
without FAST, restricted tickets for unprovisioned CTAs, the caches and freshness tokens.
Clients are built on the codec (tests/test_kdc_engine_support.py); the clock is the test's."""

from __future__ import annotations

import datetime as dt

import pytest

from common.asn1 import ErrorCode, KDCOptions, PaDataType, TicketFlags, decode_as
from common.asn1.krb5 import ETYPE_INFO2, EncASRepPart, EncTGSRepPart
from common.crypto import string_to_key
from common.crypto.dh import MODP_4096
from common.asn1.kerbtel import AD_KERBTEL_RESTRICTIONS, DESTINATION_CSR, DESTINATION_EMERGENCY, find_restrictions
from common.krberror import KrbError
from test_kdc_engine_support import (
    ALICE,
    ALICE_PASSWORD,
    CSR,
    CTA,
    EMERGENCY,
    KRBTGT,
    SC,
    as_req,
    decrypt_ticket,
    enc_timestamp_request,
    error_code,
    make_realm,
    next_nonce,
    open_key_reply,
    open_pkinit_reply,
    open_tgs_reply,
    pkinit_request,
    req_body,
    tgs_request,
)
from test_pki_factories import MAC, NOW

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def realm(tmp_path):
    return make_realm(tmp_path)


def provisioned(realm):
    return realm.world.provisioned, realm.world.device_key


def unprovisioned(realm):
    return realm.world.device, realm.world.device_key


# --- the first AS-REQ ------------------------------------------------------------------------


def test_preauth_required_lists_pkinit_and_a_freshness_token(realm):
    body = req_body(CTA, KRBTGT, nonce=next_nonce(), till=NOW + HOUR)
    reply = realm.send(as_req(body, [(PaDataType.PA_AS_FRESHNESS, b""), (PaDataType.PA_REQ_ENC_PA_REP, b"")]))
    assert error_code(reply) == ErrorCode.KDC_ERR_PREAUTH_REQUIRED
    methods = {m["padata-type"].native: m["padata-value"].native for m in reply.method_data()}
    assert PaDataType.PA_PK_AS_REQ in methods
    assert PaDataType.PA_ENC_TIMESTAMP not in methods  # an unregistered CTA has no key
    assert methods[PaDataType.PA_AS_FRESHNESS]
    assert reply["stime"].native == NOW.replace(microsecond=0)
    assert reply["cname"]["name-string"].native == ["cta", MAC.hex()]


def test_preauth_required_for_a_password_principal_has_etype_info2(realm):
    body = req_body(ALICE, KRBTGT, nonce=next_nonce(), till=NOW + HOUR)
    reply = realm.send(as_req(body, []))
    assert error_code(reply) == ErrorCode.KDC_ERR_PREAUTH_REQUIRED
    methods = {m["padata-type"].native: m["padata-value"].native for m in reply.method_data()}
    assert PaDataType.PA_ENC_TIMESTAMP in methods and PaDataType.PA_PK_AS_REQ not in methods
    (info,) = decode_as(ETYPE_INFO2, methods[PaDataType.PA_ETYPE_INFO2])
    assert info["etype"].native == 18 and info["salt"].native == "EXAMPLE.TESTalice"


# --- PKINIT ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["dh", "ecdh", "rsa"])
def test_pkinit_provisioned_cta_gets_a_signaling_controller_ticket(realm, mode):
    cert, key = provisioned(realm)
    request = pkinit_request(cert, key, sname=SC, mode=mode)
    creds = open_pkinit_reply(request, realm.send(request.data), kdc_cert=realm.world.kdc)
    part = decrypt_ticket(realm, creds.ticket)
    assert part["key"].to_key() == creds.session_key
    assert part["cname"]["name-string"].native == ["cta", MAC.hex()]
    flags = TicketFlags(int(part["flags"].native))
    assert flags & TicketFlags.INITIAL and flags & TicketFlags.PRE_AUTHENT
    assert find_restrictions(part["authorization-data"]) is None  # provisioned: unrestricted
    assert isinstance(creds.enc_part, EncASRepPart)  # [APPLICATION 25]
    assert creds.ticket["sname"]["name-type"].native == SC.name_type


def test_pkinit_without_kdf_uses_octetstring2key(realm):
    cert, key = provisioned(realm)
    request = pkinit_request(cert, key, kdfs=None)
    reply = realm.send(request.data)
    open_pkinit_reply(request, reply)


@pytest.mark.parametrize("kdfs", [("sha512",), ("sha1",), ("sha1", "sha512")])
def test_pkinit_kdf_choice_follows_policy_preference(realm, kdfs):
    cert, key = provisioned(realm)
    request = pkinit_request(cert, key, kdfs=kdfs)
    open_pkinit_reply(request, realm.send(request.data))


def test_pkinit_with_group_16(realm):
    cert, key = provisioned(realm)
    request = pkinit_request(cert, key, group=MODP_4096)
    open_pkinit_reply(request, realm.send(request.data))


def test_unprovisioned_cta_gets_a_restricted_ticket_and_is_recorded(realm):
    cert, key = unprovisioned(realm)
    request = pkinit_request(cert, key, sname=SC)
    creds = open_pkinit_reply(request, realm.send(request.data, peer="198.51.100.7:1234"))
    part = decrypt_ticket(realm, creds.ticket)
    restrictions = find_restrictions(part["authorization-data"])
    assert restrictions is not None
    assert part["authorization-data"][0]["ad-type"].native == 1  # AD-IF-RELEVANT
    destinations = [(d["number"].native, d["kind"].native) for d in restrictions["destinations"]]
    assert destinations == [(n, DESTINATION_CSR) for n in CSR] + [(n, DESTINATION_EMERGENCY) for n in EMERGENCY]
    assert restrictions["device-mac"].native == MAC
    device = realm.db.get_device(MAC)
    assert device.last_peer == "198.51.100.7:1234"
    assert AD_KERBTEL_RESTRICTIONS < 0


def test_restriction_follows_the_cta_through_the_tgs(realm):
    cert, key = unprovisioned(realm)
    request = pkinit_request(cert, key)
    tgt = open_pkinit_reply(request, realm.send(request.data))
    tgs = tgs_request(tgt, SC, now=NOW + dt.timedelta(seconds=5))
    service = open_tgs_reply(tgs, realm.send(tgs.data, at=NOW + dt.timedelta(seconds=5)), CTA)
    assert find_restrictions(decrypt_ticket(realm, service.ticket)["authorization-data"]) is not None


def test_freshness_token_round_trip(realm):
    body = req_body(CTA, KRBTGT, nonce=next_nonce(), till=NOW + HOUR)
    err = realm.send(as_req(body, [(PaDataType.PA_AS_FRESHNESS, b"")]))
    token = {m["padata-type"].native: m["padata-value"].native for m in err.method_data()}[PaDataType.PA_AS_FRESHNESS]
    cert, key = provisioned(realm)
    request = pkinit_request(cert, key, freshness=token, now=NOW + dt.timedelta(seconds=30))
    open_pkinit_reply(request, realm.send(request.data, at=NOW + dt.timedelta(seconds=30)))


def test_repeat_pkinit_uses_the_certificate_cache(realm):
    cert, key = provisioned(realm)
    pkinit = realm.engine.pkinit
    for i in range(3):
        when = NOW + dt.timedelta(seconds=i)
        request = pkinit_request(cert, key, now=when)
        open_pkinit_reply(request, realm.send(request.data, at=when))
    assert len(pkinit.certificate_cache) == 1
    assert pkinit.certificate_cache.hits == 2


def test_certificate_cache_entry_dies_when_the_customer_changes(realm):
    cert, key = provisioned(realm)
    request = pkinit_request(cert, key)
    open_pkinit_reply(request, realm.send(request.data))
    realm.db.set_customer_status(realm.customer_id, "suspended", now=NOW)
    request = pkinit_request(cert, key, now=NOW + dt.timedelta(seconds=1))
    reply = realm.send(request.data, at=NOW + dt.timedelta(seconds=1))
    assert error_code(reply) == ErrorCode.KDC_ERR_CLIENT_REVOKED
    assert len(realm.engine.pkinit.certificate_cache) == 0
    realm.db.set_customer_status(realm.customer_id, "active", now=NOW)
    request = pkinit_request(cert, key, now=NOW + dt.timedelta(seconds=2))
    open_pkinit_reply(request, realm.send(request.data, at=NOW + dt.timedelta(seconds=2)))


def test_dh_key_reuse_with_client_nonce(tmp_path):
    realm = make_realm(tmp_path, dh_key_reuse_seconds=600)
    cert, key = provisioned(realm)
    publics = []
    for i in range(2):
        when = NOW + dt.timedelta(seconds=i)
        request = pkinit_request(cert, key, now=when, client_dh_nonce=bytes([i]) * 32, kdfs=None)
        reply = realm.send(request.data, at=when)
        open_pkinit_reply(request, reply)
        from common.asn1.pkinit import PA_PK_AS_REP, unwrap_kdc_dh_key_info
        from test_kdc_engine_support import padata_value

        info = decode_as(PA_PK_AS_REP, padata_value(reply, PaDataType.PA_PK_AS_REP)).chosen
        assert info["serverDHNonce"].native
        _, key_info = unwrap_kdc_dh_key_info(info["dhSignedData"].parsed)
        assert key_info["dhKeyExpiration"].native == NOW + dt.timedelta(seconds=600)
        publics.append(key_info["subjectPublicKey"].native)
    assert publics[0] == publics[1]


# --- PA-ENC-TIMESTAMP and lifetimes ----------------------------------------------------------


def test_enc_timestamp_as_exchange(realm):
    key = string_to_key(18, ALICE_PASSWORD, "EXAMPLE.TESTalice")
    data, nonce = enc_timestamp_request(ALICE, key, options=KDCOptions.FORWARDABLE | KDCOptions.RENEWABLE)
    creds = open_key_reply(realm.send(data), key, nonce, ALICE)
    part = decrypt_ticket(realm, creds.ticket)
    flags = TicketFlags(int(part["flags"].native))
    assert flags & TicketFlags.FORWARDABLE and flags & TicketFlags.PRE_AUTHENT
    assert part["endtime"].native == NOW.replace(microsecond=0) + dt.timedelta(hours=10)


def test_lifetime_is_capped_by_policy(tmp_path):
    realm = make_realm(tmp_path, max_ticket_lifetime=3600, default_ticket_lifetime=3600)
    key = string_to_key(18, ALICE_PASSWORD, "EXAMPLE.TESTalice")
    data, nonce = enc_timestamp_request(ALICE, key)
    creds = open_key_reply(realm.send(data), key, nonce, ALICE)
    assert creds.enc_part["endtime"].native == NOW.replace(microsecond=0) + HOUR


def test_session_enctype_is_the_clients_first_supported(realm):
    key = string_to_key(17, ALICE_PASSWORD, "EXAMPLE.TESTalice")
    data, nonce = enc_timestamp_request(ALICE, key, etypes=(99, 17, 18))
    creds = open_key_reply(realm.send(data), key, nonce, ALICE)
    assert creds.session_key.enctype == 17


# --- TGS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast, subkey", [(True, True), (False, True), (False, False)])
def test_tgs_exchange(realm, fast, subkey):
    key = string_to_key(18, ALICE_PASSWORD, "EXAMPLE.TESTalice")
    data, nonce = enc_timestamp_request(ALICE, key)
    tgt = open_key_reply(realm.send(data), key, nonce, ALICE)
    tgs = tgs_request(tgt, SC, fast=fast, subkey=subkey)
    service = open_tgs_reply(tgs, realm.send(tgs.data), ALICE)
    part = decrypt_ticket(realm, service.ticket)
    assert part["key"].to_key() == service.session_key
    assert part["cname"]["name-string"].native == ["alice"]
    assert isinstance(service.enc_part, EncTGSRepPart)
    assert part["endtime"].native <= tgt.enc_part["endtime"].native


def test_handle_request_returns_none_for_non_kerberos(realm):
    assert realm.engine.handle_request(b"GET / HTTP/1.1\r\n", wallclock=NOW, now=1.0, peer="x") is None
    assert realm.engine.handle_request(b"", wallclock=NOW, now=1.0, peer="x") is None


def test_krb_error_str():
    assert "KDC_ERR_POLICY" in str(KrbError(ErrorCode.KDC_ERR_POLICY, "no"))
