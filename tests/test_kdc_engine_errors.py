"""A negative test for every KRB-ERROR the KDC engine produces: each asserts the code (and the
wire details that matter), then shows that a good request still succeeds afterwards."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from common.asn1 import ErrorCode, KDCOptions, PaDataType, decode, decode_as
from common.asn1.fast import PA_FX_FAST_REPLY, KrbFastResponse, fx_error
from common.asn1.krb5 import AS_REQ
from common.asn1.pkinit import TD_DH_PARAMETERS
from common.crypto import KeyUsage, decrypt, string_to_key
from common.crypto.dh import MODP_2048, MODP_3072, DhGroup
from common.pki import Role, encode_mac_extension, encode_phone_ids_extension, phone_id, thumbprint
from kdcd.db import PrincipalAttributes
from test_kdc_engine_support import (
    ALICE,
    ALICE_PASSWORD,
    CTA,
    KRBTGT,
    SC,
    as_req,
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
from test_pki_factories import MAC, NOW, PHONE, REALM, build, rsa_key
from common.principal import Principal

ALICE_KEY = string_to_key(18, ALICE_PASSWORD, "EXAMPLE.TESTalice")


@pytest.fixture
def realm(tmp_path):
    return make_realm(tmp_path)


def good_pkinit(realm, *, at=NOW + dt.timedelta(seconds=50), cert=None, key=None):
    cert = cert or realm.world.provisioned
    key = key or realm.world.device_key
    request = pkinit_request(cert, key, now=at)
    return open_pkinit_reply(request, realm.send(request.data, at=at))


def good_password(realm, at=NOW + dt.timedelta(seconds=55)):
    data, nonce = enc_timestamp_request(ALICE, ALICE_KEY, now=at)
    return open_key_reply(realm.send(data, at=at), ALICE_KEY, nonce, ALICE)


def pk(realm, **kwargs):
    return pkinit_request(realm.world.provisioned, realm.world.device_key, **kwargs)


# --- PKINIT errors (RFC 4556 3.1.3) ----------------------------------------------------------


def test_client_not_trusted_for_a_principal_without_pkinit(realm):
    realm.db.add_principal(CTA, now=NOW, attributes=PrincipalAttributes(allow_pkinit=False))
    assert error_code(realm.send(pk(realm).data)) == ErrorCode.KDC_ERR_CLIENT_NOT_TRUSTED
    realm.db.modify_principal(CTA, now=NOW, attributes=PrincipalAttributes(allow_pkinit=True))
    good_pkinit(realm)


def test_invalid_sig(realm):
    request = pkinit_request(realm.world.provisioned, rsa_key(31))  # signed with another key
    assert error_code(realm.send(request.data)) == ErrorCode.KDC_ERR_INVALID_SIG
    good_pkinit(realm)


def test_dh_key_parameters_not_accepted_lists_groups(tmp_path):
    realm = make_realm(tmp_path, dh_min_bits=3072)
    reply = realm.send(pk(realm, group=MODP_2048).data)
    assert error_code(reply) == ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED
    (entry,) = reply.typed_data()
    assert entry["data-type"].native == PaDataType.TD_DH_PARAMETERS
    groups = decode_as(TD_DH_PARAMETERS, entry["data-value"].native)
    assert [g["parameters"]["p"].native.bit_length() for g in groups] == [3072, 4096]
    request = pk(realm, group=MODP_3072, now=NOW + dt.timedelta(seconds=1))
    open_pkinit_reply(request, realm.send(request.data, at=NOW + dt.timedelta(seconds=1)))


def test_dh_key_parameters_not_well_known_prime(realm):
    fake = DhGroup(99, "fake", MODP_2048.p, 2)
    request = pk(realm, group=MODP_2048, dh_parameters=(MODP_2048.p - 2, 2, (MODP_2048.p - 3) // 2))
    assert error_code(realm.send(request.data)) == ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED
    assert fake.bits == 2048
    good_pkinit(realm)


def test_ecdh_curve_not_allowed(tmp_path):
    realm = make_realm(tmp_path, allowed_ecdh_curves=("P-384",))
    reply = realm.send(pk(realm, mode="ecdh", curve="P-256").data)
    assert error_code(reply) == ErrorCode.KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED
    request = pk(realm, mode="ecdh", curve="P-384", now=NOW + dt.timedelta(seconds=1))
    open_pkinit_reply(request, realm.send(request.data, at=NOW + dt.timedelta(seconds=1)))


def test_cant_verify_certificate_from_an_unknown_ca(realm):
    from test_pki_factories import world

    rogue = world().rogue
    cert, key = build(
        rogue, key=realm.world.device_key, mac_ext=encode_mac_extension(MAC),
        phone_ids_ext=encode_phone_ids_extension([phone_id(PHONE)]), role=Role.OPERATOR,
    )
    assert error_code(realm.send(pkinit_request(cert, key).data)) == ErrorCode.KDC_ERR_CANT_VERIFY_CERTIFICATE
    good_pkinit(realm)


def test_invalid_certificate_when_expired(realm):
    later = NOW + dt.timedelta(days=400)  # the operator certificate lasts 365 days
    request = pk(realm, now=later)
    assert error_code(realm.send(request.data, at=later)) == ErrorCode.KDC_ERR_INVALID_CERTIFICATE
    good_pkinit(realm)


def test_revoked_certificate_on_the_deny_list(tmp_path):
    from test_pki_factories import world

    realm = make_realm(tmp_path, revoked_certificates=(thumbprint(world().provisioned).hex(),))
    assert error_code(realm.send(pk(realm).data)) == ErrorCode.KDC_ERR_REVOKED_CERTIFICATE
    good_pkinit(realm, cert=realm.world.device)  # the same CTA's factory certificate still works


def test_revoked_certificate_for_a_mac_seen_with_another_certificate(realm):
    realm.db.record_device_seen(MAC, b"\x01" * 32, now=NOW)
    request = pkinit_request(realm.world.device, realm.world.device_key)
    assert error_code(realm.send(request.data)) == ErrorCode.KDC_ERR_REVOKED_CERTIFICATE
    good_pkinit(realm)


def test_client_name_mismatch(realm):
    other = Principal(("cta", "ffffffffffff"), REALM)
    assert error_code(realm.send(pk(realm, cname=other).data)) == ErrorCode.KDC_ERR_CLIENT_NAME_MISMATCH
    good_pkinit(realm)


def test_inconsistent_key_purpose(realm):
    cert, key = build(
        realm.world.operator, key=realm.world.device_key, eku=[ExtendedKeyUsageOID.SERVER_AUTH],
        mac_ext=encode_mac_extension(MAC), phone_ids_ext=encode_phone_ids_extension([phone_id(PHONE)]), role=Role.OPERATOR,
    )
    assert error_code(realm.send(pkinit_request(cert, key).data)) == ErrorCode.KDC_ERR_INCONSISTENT_KEY_PURPOSE
    good_pkinit(realm)


@pytest.mark.parametrize("status", ["suspended", "terminated"])
def test_client_revoked_for_an_inactive_customer(tmp_path, status):
    realm = make_realm(tmp_path)
    realm.db.set_customer_status(realm.customer_id, status, now=NOW)
    reply = realm.send(pk(realm).data)
    assert error_code(reply) == ErrorCode.KDC_ERR_CLIENT_REVOKED
    assert status in reply["e-text"].native
    if status == "suspended":
        realm.db.set_customer_status(realm.customer_id, "active", now=NOW)
        good_pkinit(realm)
    else:
        good_pkinit(realm, cert=realm.world.device)  # falls back to the factory certificate


def test_client_revoked_for_unknown_phone_ids(realm):
    realm.db.remove_phone(realm.customer_id, phone_id(PHONE), now=NOW)
    reply = realm.send(pk(realm).data)
    assert error_code(reply) == ErrorCode.KDC_ERR_CLIENT_REVOKED
    assert "phone ID" in reply["e-text"].native
    realm.db.add_phone(realm.customer_id, phone_id(PHONE), now=NOW)
    good_pkinit(realm)


def test_client_revoked_for_a_bad_device(realm):
    realm.db.mark_device_bad(MAC, now=NOW, reason="clone")
    reply = realm.send(pkinit_request(realm.world.device, realm.world.device_key).data)
    assert error_code(reply) == ErrorCode.KDC_ERR_CLIENT_REVOKED
    assert "bad" in reply["e-text"].native
    good_pkinit(realm)


def test_skew_echoes_ctime_and_gives_stime(realm):
    ctime = NOW - dt.timedelta(minutes=10, microseconds=-123)
    reply = realm.send(pk(realm, ctime=ctime).data)
    assert error_code(reply) == ErrorCode.KRB_AP_ERR_SKEW
    assert reply["stime"].native == NOW.replace(microsecond=0) and reply["susec"].native == NOW.microsecond
    assert reply["ctime"].native == ctime.replace(microsecond=0) and reply["cusec"].native == ctime.microsecond
    good_pkinit(realm)


def test_pa_checksum_missing_or_wrong(realm):
    assert error_code(realm.send(pk(realm, pa_checksum=None).data)) == ErrorCode.KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED
    assert error_code(realm.send(pk(realm, pa_checksum=b"\x00" * 20).data)) == ErrorCode.KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED
    good_pkinit(realm)


def test_pkinit_nonce_mismatch(realm):
    assert error_code(realm.send(pk(realm, pa_nonce=7).data)) == ErrorCode.KDC_ERR_PREAUTH_FAILED
    good_pkinit(realm)


def test_no_acceptable_kdf(tmp_path):
    realm = make_realm(tmp_path, kdf_preference=("sha384",))
    assert error_code(realm.send(pk(realm, kdfs=("sha1",)).data)) == ErrorCode.KDC_ERR_NO_ACCEPTABLE_KDF
    request = pk(realm, kdfs=("sha384",), now=NOW + dt.timedelta(seconds=1))
    open_pkinit_reply(request, realm.send(request.data, at=NOW + dt.timedelta(seconds=1)))


def test_freshness_token_expired_or_forged(realm):
    body = req_body(CTA, KRBTGT, nonce=next_nonce(), till=NOW + dt.timedelta(hours=1))
    err = realm.send(as_req(body, [(PaDataType.PA_AS_FRESHNESS, b"")]))
    token = {m["padata-type"].native: m["padata-value"].native for m in err.method_data()}[PaDataType.PA_AS_FRESHNESS]
    late = NOW + dt.timedelta(seconds=realm.policy.freshness_token_lifetime + 10)
    assert error_code(realm.send(pk(realm, freshness=token, now=late).data, at=late)) == ErrorCode.KDC_ERR_PREAUTH_EXPIRED
    forged = token[:-1] + bytes([token[-1] ^ 1])
    assert error_code(realm.send(pk(realm, freshness=forged).data)) == ErrorCode.KDC_ERR_PREAUTH_FAILED
    good_pkinit(realm)


def test_freshness_token_required_by_policy(tmp_path):
    realm = make_realm(tmp_path, require_freshness_token=True)
    assert error_code(realm.send(pk(realm).data)) == ErrorCode.KDC_ERR_PREAUTH_FAILED
    token = realm.engine.freshness.issue(int(NOW.timestamp()))
    request = pk(realm, freshness=token, now=NOW + dt.timedelta(seconds=1))
    open_pkinit_reply(request, realm.send(request.data, at=NOW + dt.timedelta(seconds=1)))


def test_replayed_pkinit_request(realm):
    request = pk(realm)
    open_pkinit_reply(request, realm.send(request.data))
    assert error_code(realm.send(request.data)) == ErrorCode.KRB_AP_ERR_REPEAT
    good_pkinit(realm)


def test_malformed_pa_pk_as_req(realm):
    body = req_body(CTA, KRBTGT, nonce=next_nonce(), till=NOW + dt.timedelta(hours=1))
    assert error_code(realm.send(as_req(body, [(PaDataType.PA_PK_AS_REQ, b"\x30\x00")]))) == ErrorCode.KDC_ERR_PREAUTH_FAILED
    good_pkinit(realm)


# --- PA-ENC-TIMESTAMP and the AS exchange ----------------------------------------------------


def test_preauth_failed_with_a_wrong_password_carries_hints(realm):
    wrong = string_to_key(18, "wrong", "EXAMPLE.TESTalice")
    data, _ = enc_timestamp_request(ALICE, wrong)
    reply = realm.send(data)
    assert error_code(reply) == ErrorCode.KDC_ERR_PREAUTH_FAILED
    assert PaDataType.PA_ETYPE_INFO2 in [m["padata-type"].native for m in reply.method_data()]
    good_password(realm)


def test_enc_timestamp_skew(realm):
    data, _ = enc_timestamp_request(ALICE, ALICE_KEY, now=NOW + dt.timedelta(minutes=6))
    assert error_code(realm.send(data)) == ErrorCode.KRB_AP_ERR_SKEW
    good_password(realm)


def test_principal_unknown(realm):
    data, _ = enc_timestamp_request(Principal(("nobody",), REALM), ALICE_KEY)
    assert error_code(realm.send(data)) == ErrorCode.KDC_ERR_C_PRINCIPAL_UNKNOWN
    data, _ = enc_timestamp_request(ALICE, ALICE_KEY, sname=Principal(("sc", "nowhere"), REALM))
    assert error_code(realm.send(data)) == ErrorCode.KDC_ERR_S_PRINCIPAL_UNKNOWN
    data, _ = enc_timestamp_request(ALICE, ALICE_KEY, sname=ALICE)  # not a service
    assert error_code(realm.send(data)) == ErrorCode.KDC_ERR_POLICY
    good_password(realm)


def test_wrong_realm(realm):
    body = req_body(ALICE, KRBTGT, nonce=next_nonce(), till=NOW + dt.timedelta(hours=1), realm="OTHER.TEST")
    assert error_code(realm.send(as_req(body, []))) == ErrorCode.KDC_ERR_WRONG_REALM
    good_password(realm)


def test_etype_nosupp(realm):
    data, _ = enc_timestamp_request(ALICE, ALICE_KEY, etypes=(23, 3))
    assert error_code(realm.send(data)) == ErrorCode.KDC_ERR_ETYPE_NOSUPP
    good_password(realm)


def test_badoption_and_cannot_postdate(realm):
    data, _ = enc_timestamp_request(ALICE, ALICE_KEY, options=KDCOptions.ENC_TKT_IN_SKEY)
    assert error_code(realm.send(data)) == ErrorCode.KDC_ERR_BADOPTION
    data, _ = enc_timestamp_request(ALICE, ALICE_KEY, options=KDCOptions.POSTDATED)
    assert error_code(realm.send(data)) == ErrorCode.KDC_ERR_CANNOT_POSTDATE
    good_password(realm)


def test_client_revoked_when_disabled(realm):
    realm.db.modify_principal(ALICE, now=NOW, attributes=PrincipalAttributes(disabled=True))
    data, _ = enc_timestamp_request(ALICE, ALICE_KEY)
    assert error_code(realm.send(data)) == ErrorCode.KDC_ERR_CLIENT_REVOKED
    realm.db.modify_principal(ALICE, now=NOW, attributes=PrincipalAttributes())
    good_password(realm)


# --- message-level errors --------------------------------------------------------------------


def test_message_level_errors(realm):
    data, _ = enc_timestamp_request(ALICE, ALICE_KEY)
    req = decode(data)
    bad_pvno = AS_REQ({"pvno": 4, "padata": req["padata"].native, "req-body": req["req-body"].native}).dump()
    assert error_code(realm.send(bad_pvno)) == ErrorCode.KDC_ERR_BAD_PVNO
    bad_type = AS_REQ({"msg-type": 12, "padata": req["padata"].native, "req-body": req["req-body"].native}).dump()
    assert error_code(realm.send(bad_type)) == ErrorCode.KRB_AP_ERR_MSG_TYPE
    assert error_code(realm.send(bytes([0x6E]) + data[1:])) == ErrorCode.KRB_AP_ERR_MSG_TYPE  # [APPLICATION 14]
    assert error_code(realm.send(data[:-5])) == ErrorCode.KRB_ERR_GENERIC
    huge = b"\x6a\x84" + (70000).to_bytes(4, "big") + b"\x00" * 70000
    assert error_code(realm.send(huge)) == ErrorCode.KRB_ERR_FIELD_TOOLONG
    good_password(realm)


# --- TGS -------------------------------------------------------------------------------------


def tgt(realm):
    return good_password(realm, at=NOW)


def test_tgs_without_pa_tgs_req(realm):
    from common.asn1.krb5 import TGS_REQ

    body = req_body(None, SC, nonce=1, till=NOW + dt.timedelta(hours=1))
    assert error_code(realm.send(TGS_REQ({"req-body": body}).dump())) == ErrorCode.KDC_ERR_PADATA_TYPE_NOSUPP


def test_tgs_errors_then_success(realm):
    creds = tgt(realm)
    # Checksum over another body: the request was modified.
    other = req_body(None, SC, nonce=1, till=NOW + dt.timedelta(hours=1)).dump()
    request = tgs_request(creds, fast=False, checksum_body=other)
    assert error_code(realm.send(request.data)) == ErrorCode.KRB_AP_ERR_MODIFIED
    # Authenticator names somebody else.
    request = tgs_request(creds, fast=False, authenticator_cname=Principal(("bob",), REALM))
    assert error_code(realm.send(request.data)) == ErrorCode.KRB_AP_ERR_BADMATCH
    # Skew.
    late = NOW + dt.timedelta(minutes=10)
    request = tgs_request(creds, fast=False)
    assert error_code(realm.send(request.data, at=late)) == ErrorCode.KRB_AP_ERR_SKEW
    # Expired TGT (10 h lifetime).
    much_later = NOW + dt.timedelta(hours=11)
    request = tgs_request(creds, fast=False, now=much_later)
    assert error_code(realm.send(request.data, at=much_later)) == ErrorCode.KRB_AP_ERR_TKT_EXPIRED
    # A tampered TGT.
    ticket = creds.ticket.native
    ticket["enc-part"]["cipher"] = ticket["enc-part"]["cipher"][:-1] + bytes([ticket["enc-part"]["cipher"][-1] ^ 1])
    from common.asn1.krb5 import Ticket

    request = tgs_request(creds, fast=False, ticket=Ticket(ticket))
    assert error_code(realm.send(request.data)) == ErrorCode.KRB_AP_ERR_BAD_INTEGRITY
    # Unknown service.
    request = tgs_request(creds, sname=Principal(("sc", "nowhere"), REALM))
    assert error_code(realm.send(request.data)) == ErrorCode.KDC_ERR_S_PRINCIPAL_UNKNOWN
    request = tgs_request(creds)
    open_tgs_reply(request, realm.send(request.data), ALICE)


def test_fast_errors_are_wrapped_in_pa_fx_error(realm):
    creds = tgt(realm)
    request = tgs_request(creds, fast=True, fast_options=0x40000000)  # hide-client-names: critical
    reply = realm.send(request.data)
    assert error_code(reply) == ErrorCode.KDC_ERR_UNKNOWN_CRITICAL_FAST_OPTIONS
    (item,) = reply.method_data()
    assert item["padata-type"].native == PaDataType.PA_FX_FAST
    fast = decode_as(PA_FX_FAST_REPLY, item["padata-value"].native)
    response = decode_as(KrbFastResponse, decrypt(request.armor_key, KeyUsage.FAST_REP, fast.chosen["enc-fast-rep"]["cipher"].native), padded=True)
    assert response["nonce"].native == request.nonce
    assert fx_error(response)["error-code"].native == ErrorCode.KDC_ERR_UNKNOWN_CRITICAL_FAST_OPTIONS
    request = tgs_request(creds, sname=Principal(("sc", "nowhere"), REALM))
    reply = realm.send(request.data)
    assert error_code(reply) == ErrorCode.KDC_ERR_S_PRINCIPAL_UNKNOWN
    request = tgs_request(creds)
    open_tgs_reply(request, realm.send(request.data), ALICE)
