"""The seed's customer rule at the TGS, in memory: a ticket issued to a CTA for its operator
certificate records the phone IDs it was honoured for (KerbtelAuthorizedPhoneIds in
AD-IF-RELEVANT, common/asn1/kerbtel.py), and every TGS request and renewal looks them up again:
none held by an active customer any more -> KDC_ERR_CLIENT_REVOKED (18).
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from common import pki
from common.asn1 import Asn1DecodeError, AuthorizationDataType, ErrorCode, KDCOptions, PaDataType, decode_as
from common.asn1.kerbtel import (
    AD_KERBTEL_PHONE_IDS,
    AD_KERBTEL_RESTRICTIONS,
    KerbtelAuthorizedPhoneIds,
    find_authorized_phone_ids,
    find_restrictions,
    holds_kdc_issued,
    phone_ids_authorization_data,
    phone_ids_authorization_data_der,
    replace_authorized_phone_ids,
    restriction_authorization_data,
)
from common.asn1.krb5 import AD_IF_RELEVANT, AP_REQ, TGS_REQ, Authenticator, AuthorizationData, EncryptionKey, EncTicketPart, Ticket, principal_to_asn1
from common.crypto import KeyUsage, encrypt, generate_key, make_checksum, required_checksum_type, string_to_key
from common.pki import phone_id
from test_kdc_engine_support import (
    ALICE,
    ALICE_PASSWORD,
    CTA,
    KRBTGT,
    SC,
    Credentials,
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
from test_pki_factories import NOW, PHONE

HOUR = dt.timedelta(hours=1)
PHONE_ID = phone_id(PHONE)
PHONE2 = "+15551239999"


@pytest.fixture
def realm(tmp_path):
    return make_realm(tmp_path)


def _pkinit(realm, *, cert=None, sname=KRBTGT, options=KDCOptions.RENEWABLE, at=NOW) -> Credentials:
    request = pkinit_request(cert or realm.world.provisioned, realm.world.device_key, sname=sname, options=options, now=at)
    return open_pkinit_reply(request, realm.send(request.data, at=at))


def _service(realm, creds, at, cname=CTA, **kwargs):
    request = tgs_request(creds, SC, now=at, **kwargs)
    return request, realm.send(request.data, at=at)


def _phone_ids(realm, creds):
    return find_authorized_phone_ids(decrypt_ticket(realm, creds.ticket)["authorization-data"])


def _set_status(realm, status, customer_id=None):
    realm.db.set_customer_status(customer_id or realm.customer_id, status, now=NOW)


# --- the AS records the phone IDs -------------------------------------------------------------


@pytest.mark.parametrize("sname", [KRBTGT, SC], ids=["tgt", "service-ticket"])
def test_the_as_records_the_authorizing_phone_ids(realm, sname):
    creds = _pkinit(realm, sname=sname)
    part = decrypt_ticket(realm, creds.ticket)
    assert [e["ad-type"].native for e in part["authorization-data"]] == [AuthorizationDataType.AD_IF_RELEVANT]
    assert find_authorized_phone_ids(part["authorization-data"]) == (PHONE_ID,)
    assert find_restrictions(part["authorization-data"]) is None  # a provisioned CTA is not restricted


def test_unprovisioned_ctas_and_password_principals_get_no_phone_ids(realm):
    restricted = _pkinit(realm, cert=realm.world.device)
    assert _phone_ids(realm, restricted) is None
    key = string_to_key(18, ALICE_PASSWORD, "EXAMPLE.TESTalice")
    data, nonce = enc_timestamp_request(ALICE, key)
    assert decrypt_ticket(realm, open_key_reply(realm.send(data), key, nonce, ALICE).ticket)["authorization-data"].native is None


def test_the_as_lists_only_phone_ids_of_active_customers(realm):
    w = realm.world
    cert = pki.issue_operator_certificate(w.operator, w.device, "EXAMPLE.TEST", phone_numbers=[PHONE, PHONE2], now=NOW - dt.timedelta(days=1))
    other = realm.db.add_customer(now=NOW, phone_ids=[phone_id(PHONE2)])
    assert _phone_ids(realm, _pkinit(realm, cert=cert)) == (PHONE_ID, phone_id(PHONE2))
    _set_status(realm, "suspended")
    assert _phone_ids(realm, _pkinit(realm, cert=cert, at=NOW + dt.timedelta(seconds=1))) == (phone_id(PHONE2),)
    _set_status(realm, "suspended", other.id)
    request = pkinit_request(cert, w.device_key, now=NOW + dt.timedelta(seconds=2))
    assert error_code(realm.send(request.data, at=NOW + dt.timedelta(seconds=2))) == ErrorCode.KDC_ERR_CLIENT_REVOKED


# --- the TGS re-checks them --------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_a_suspended_customers_tgt_is_refused_then_honoured_after_reactivation(realm, fast):
    tgt = _pkinit(realm)
    request, reply = _service(realm, tgt, NOW + HOUR, fast=fast)
    open_tgs_reply(request, reply, CTA)

    _set_status(realm, "suspended")
    _, reply = _service(realm, tgt, NOW + 2 * HOUR, fast=fast)
    assert error_code(reply) == ErrorCode.KDC_ERR_CLIENT_REVOKED == 18
    assert "suspended" in reply["e-text"].native

    _set_status(realm, "active")
    request, reply = _service(realm, tgt, NOW + 3 * HOUR, fast=fast)
    service = open_tgs_reply(request, reply, CTA)
    assert _phone_ids(realm, service) == (PHONE_ID,)  # the service ticket carries them on


def test_a_terminated_customer_or_a_released_number_is_revoked(realm):
    tgt = _pkinit(realm)
    realm.db.remove_phone(realm.customer_id, PHONE_ID, now=NOW)
    _, reply = _service(realm, tgt, NOW + HOUR)
    assert error_code(reply) == ErrorCode.KDC_ERR_CLIENT_REVOKED
    assert "no customer record" in reply["e-text"].native
    realm.db.add_phone(realm.customer_id, PHONE_ID, now=NOW)
    open_tgs_reply(*_service(realm, tgt, NOW + HOUR), CTA)
    _set_status(realm, "terminated")
    _, reply = _service(realm, tgt, NOW + 2 * HOUR)
    assert error_code(reply) == ErrorCode.KDC_ERR_CLIENT_REVOKED
    assert "terminated" in reply["e-text"].native


def test_renewal_is_refused_for_a_suspended_customer_and_works_after_reactivation(realm):
    for i, sname in enumerate((KRBTGT, SC)):
        creds = _pkinit(realm, sname=sname, at=NOW + dt.timedelta(seconds=i))
        _set_status(realm, "suspended")
        request = tgs_request(creds, sname, now=NOW + HOUR, options=KDCOptions.RENEW | KDCOptions.RENEWABLE)
        reply = realm.send(request.data, at=NOW + HOUR)
        assert error_code(reply) == ErrorCode.KDC_ERR_CLIENT_REVOKED
        _set_status(realm, "active")
        request = tgs_request(creds, sname, now=NOW + HOUR, options=KDCOptions.RENEW | KDCOptions.RENEWABLE)
        renewed = open_tgs_reply(request, realm.send(request.data, at=NOW + HOUR), CTA)
        assert _phone_ids(realm, renewed) == (PHONE_ID,)


def test_the_tgs_narrows_the_phone_ids_to_the_active_ones(realm):
    w = realm.world
    cert = pki.issue_operator_certificate(w.operator, w.device, "EXAMPLE.TEST", phone_numbers=[PHONE, PHONE2], now=NOW - dt.timedelta(days=1))
    other = realm.db.add_customer(now=NOW, phone_ids=[phone_id(PHONE2)])
    tgt = _pkinit(realm, cert=cert)
    assert _phone_ids(realm, tgt) == (PHONE_ID, phone_id(PHONE2))
    _set_status(realm, "suspended", other.id)
    service = open_tgs_reply(*_service(realm, tgt, NOW + HOUR), CTA)
    assert _phone_ids(realm, service) == (PHONE_ID,)
    _set_status(realm, "active", other.id)
    service = open_tgs_reply(*_service(realm, tgt, NOW + HOUR), CTA)
    assert _phone_ids(realm, service) == (PHONE_ID, phone_id(PHONE2))  # never more than the TGT holds


def _reissue_tgt(realm, creds: Credentials, authorization_data) -> Credentials:
    """The same TGT with other authorization-data, sealed with the krbtgt key (a ticket as an
    older kdcd issued it, or with an element the AS never writes)."""
    part = decrypt_ticket(realm, creds.ticket).native
    if authorization_data is None:
        part.pop("authorization-data", None)
    else:
        part["authorization-data"] = authorization_data
    enc = creds.ticket["enc-part"]
    key = realm.db.get_key(KRBTGT, enc["etype"].native, enc["kvno"].native)
    cipher = encrypt(key.key, KeyUsage.TICKET, EncTicketPart(part).dump())
    ticket = Ticket({"realm": creds.ticket["realm"].native, "sname": creds.ticket["sname"].native,
                     "enc-part": {"etype": key.enctype, "kvno": key.kvno, "cipher": cipher}})
    return Credentials(ticket, creds.session_key, creds.enc_part, creds.reply_key, creds.cname)


def test_tickets_without_the_element_keep_working(realm):
    """A TGT issued before the element existed is not checked (it expires on its own)."""
    legacy = _reissue_tgt(realm, _pkinit(realm), None)
    _set_status(realm, "suspended")
    service = open_tgs_reply(*_service(realm, legacy, NOW + HOUR), CTA)
    assert decrypt_ticket(realm, service.ticket)["authorization-data"].native is None


def test_a_malformed_element_in_a_ticket_is_refused(realm):
    bad = KerbtelAuthorizedPhoneIds({"version": 1, "phone-ids": [b"short"]}).dump()
    inner = AD_IF_RELEVANT([{"ad-type": AD_KERBTEL_PHONE_IDS, "ad-data": bad}]).dump()
    tgt = _reissue_tgt(realm, _pkinit(realm), [{"ad-type": 1, "ad-data": inner}])
    _, reply = _service(realm, tgt, NOW + HOUR)
    assert error_code(reply) == ErrorCode.KRB_ERR_GENERIC


def _tgs_with_authorization_data(creds: Credentials, elements, at) -> tuple[bytes, object]:
    """A plain (unarmored) TGS-REQ for SC carrying enc-authorization-data under the subkey (usage 5)."""
    subkey = generate_key(creds.session_key.enctype)
    plain = AuthorizationData(elements).dump()
    body = req_body(None, SC, nonce=next_nonce(), till=at + HOUR).native
    body["enc-authorization-data"] = {"etype": subkey.enctype, "cipher": encrypt(subkey, KeyUsage.TGS_REQ_AUTH_DATA_SUBKEY, plain)}
    from common.asn1.krb5 import KDC_REQ_BODY

    body = KDC_REQ_BODY(body)
    cksumtype = required_checksum_type(creds.session_key.enctype)
    cname, crealm = principal_to_asn1(creds.cname)
    auth = Authenticator({
        "crealm": crealm, "cname": cname, "cusec": 0, "ctime": at.replace(microsecond=0),
        "cksum": {"cksumtype": cksumtype, "checksum": make_checksum(cksumtype, creds.session_key, KeyUsage.TGS_REQ_AUTH_CKSUM, body.dump())},
        "subkey": EncryptionKey.from_key(subkey),
    })
    ap_req = AP_REQ({"ap-options": 0, "ticket": creds.ticket,
                     "authenticator": {"etype": creds.session_key.enctype, "cipher": encrypt(creds.session_key, KeyUsage.TGS_REQ_AUTH, auth.dump())}})
    data = TGS_REQ({"padata": [{"padata-type": PaDataType.PA_TGS_REQ, "padata-value": ap_req.dump()}], "req-body": body}).dump()
    from test_kdc_engine_support import TgsRequest

    return data, TgsRequest(data, body["nonce"].native, creds.session_key, subkey, None)


def test_a_client_cannot_add_kerbtel_elements_itself(realm):
    """enc-authorization-data holding a kerbtel KDC-issued element (at any depth) is dropped;
    other elements pass."""
    key = string_to_key(18, ALICE_PASSWORD, "EXAMPLE.TESTalice")
    data, nonce = enc_timestamp_request(ALICE, key)
    tgt = open_key_reply(realm.send(data), key, nonce, ALICE)
    forged = phone_ids_authorization_data([phone_id("+15550000000")])
    nested = AuthorizationData([{"ad-type": 1, "ad-data": AD_IF_RELEVANT([forged[0].native]).dump()}])
    harmless = {"ad-type": 1, "ad-data": AD_IF_RELEVANT([{"ad-type": -1, "ad-data": b"x"}]).dump()}
    garbage = {"ad-type": 1, "ad-data": b"\x30\x03\x02\x01"}
    elements = [forged[0].native, nested[0].native, {"ad-type": AD_KERBTEL_PHONE_IDS, "ad-data": b"\x30\x00"}, garbage, harmless]
    data, request = _tgs_with_authorization_data(tgt, elements, NOW)
    service = open_tgs_reply(request, realm.send(data), ALICE)
    part = decrypt_ticket(realm, service.ticket)
    assert [e.native for e in part["authorization-data"]] == [harmless]
    assert realm.engine.counters["kdc_tgs_client_ad_dropped"] == 1


# --- the codec ---------------------------------------------------------------------------------


def test_kerbtel_authorized_phone_ids_encoding():
    ad = phone_ids_authorization_data([PHONE_ID])
    # AD-IF-RELEVANT (1) { ad-type -27507, KerbtelAuthorizedPhoneIds { version 1, phone-ids { PHONE_ID } } }
    element = "302ba0040202948da1230421301fa003020101a11830160414" + PHONE_ID.hex()
    assert ad.dump().hex() == "303a3038a003020101a131042f302d" + element
    assert find_authorized_phone_ids(ad) == (PHONE_ID,)
    assert holds_kdc_issued(ad[0])
    assert find_authorized_phone_ids(restriction_authorization_data(("611",), ("911",))) is None
    assert holds_kdc_issued(restriction_authorization_data(("611",), ("911",))[0])
    assert not holds_kdc_issued(AuthorizationData([{"ad-type": 1, "ad-data": AD_IF_RELEVANT([]).dump()}])[0])
    assert AD_KERBTEL_RESTRICTIONS - AD_KERBTEL_PHONE_IDS == -1


@pytest.mark.parametrize("count", [1, 2, 5, 6, 7, 100])  # 6 and 7 cross the 127-byte length form
def test_the_direct_der_equals_asn1crypto(count):
    ids = [hashlib.sha1(bytes([i])).digest() for i in range(count)]
    element = KerbtelAuthorizedPhoneIds({"version": 1, "phone-ids": ids}).dump()
    inner = AD_IF_RELEVANT([{"ad-type": AD_KERBTEL_PHONE_IDS, "ad-data": element}]).dump()
    expected = AuthorizationData([{"ad-type": AuthorizationDataType.AD_IF_RELEVANT, "ad-data": inner}]).dump()
    assert phone_ids_authorization_data_der(ids) == expected
    assert find_authorized_phone_ids(phone_ids_authorization_data(ids)) == tuple(ids)


@pytest.mark.parametrize(
    "value",
    [
        {"version": 2, "phone-ids": [PHONE_ID]},
        {"version": 1, "phone-ids": []},
        {"version": 1, "phone-ids": [PHONE_ID[:19]]},
    ],
    ids=["version", "empty", "short-id"],
)
def test_malformed_phone_ids_elements_raise(value):
    element = KerbtelAuthorizedPhoneIds(value).dump()
    ad = AuthorizationData([{"ad-type": AD_KERBTEL_PHONE_IDS, "ad-data": element}])
    with pytest.raises(Asn1DecodeError):
        find_authorized_phone_ids(ad)
    if value["version"] == 1:  # and the builder refuses to write them
        with pytest.raises(ValueError):
            phone_ids_authorization_data(value["phone-ids"])


def test_replace_keeps_the_other_elements():
    restriction = restriction_authorization_data(("611",), ("911",))
    p2 = phone_id(PHONE2)
    both = phone_ids_authorization_data([PHONE_ID, p2])
    mixed_inner = AD_IF_RELEVANT([{"ad-type": -1, "ad-data": b"keep"}, decode_as(AD_IF_RELEVANT, both[0]["ad-data"].native)[0].native])
    ad = AuthorizationData([restriction[0].native, {"ad-type": 1, "ad-data": mixed_inner.dump()}, {"ad-type": -2, "ad-data": b"z"}])
    out = replace_authorized_phone_ids(ad, [p2])
    assert find_authorized_phone_ids(out) == (p2,)
    assert out[0].dump() == ad[0].dump() and out[2].dump() == ad[2].dump()
    assert decode_as(AD_IF_RELEVANT, out[1]["ad-data"].native)[0].native == {"ad-type": -1, "ad-data": b"keep"}
