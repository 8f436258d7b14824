"""Ticket renewal in the TGS (RFC 4120 2.3 and 3.3.3; what MIT `kinit -R` asks for), in memory.

The presented ticket (a TGT or a service ticket) must be RENEWABLE (else KDC_ERR_BADOPTION) with
renew-till not passed (KRB_AP_ERR_TKT_EXPIRED), and the request's sname must name it
(KDC_ERR_SERVER_NOMATCH). The new ticket keeps client, authtime, flags, renew-till and
authorization-data (the kerbtel restriction survives), starts now, lasts as long as the presented
one did (capped at renew-till) and has a new session key (RFC 4120 2.3; MIT does the same).
"""

from __future__ import annotations

import datetime as dt

import pytest

from common.asn1 import ErrorCode, KDCOptions, TicketFlags
from common.asn1.kerbtel import find_restrictions
from common.crypto import string_to_key
from test_kdc_engine_support import (
    ALICE,
    ALICE_PASSWORD,
    CTA,
    KRBTGT,
    SC,
    decrypt_ticket,
    enc_timestamp_request,
    error_code,
    make_realm,
    open_key_reply,
    open_pkinit_reply,
    open_tgs_reply,
    pkinit_request,
    tgs_request,
)
from test_pki_factories import NOW

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
T0 = NOW.replace(microsecond=0)
RENEW = KDCOptions.RENEW | KDCOptions.RENEWABLE  # what MIT's krb5_get_renewed_creds sends


@pytest.fixture
def realm(tmp_path):
    return make_realm(tmp_path)


def _pkinit(realm, *, provisioned: bool = True, sname=KRBTGT, options=KDCOptions.RENEWABLE, at=NOW):
    cert = realm.world.provisioned if provisioned else realm.world.device
    request = pkinit_request(cert, realm.world.device_key, sname=sname, options=options, now=at)
    return open_pkinit_reply(request, realm.send(request.data, at=at))


def _renew(realm, creds, at, *, sname=None, fast=True, options=RENEW):
    request = tgs_request(creds, sname or _sname(creds), now=at, options=options, fast=fast)
    return request, realm.send(request.data, at=at)


def _sname(creds):
    from common.asn1 import principal_from_asn1

    return principal_from_asn1(creds.ticket["sname"], creds.ticket["realm"].native)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_renewing_a_tgt_keeps_everything_but_the_times_and_the_session_key(realm, fast):
    tgt = _pkinit(realm)
    old = decrypt_ticket(realm, tgt.ticket)
    old_flags = TicketFlags(int(old["flags"].native))
    assert old_flags & TicketFlags.RENEWABLE and old_flags & TicketFlags.INITIAL
    lifetime = old["endtime"].native - old["starttime"].native
    assert lifetime == DAY
    renew_till = old["renew-till"].native
    assert renew_till > old["endtime"].native

    later = NOW + 20 * HOUR
    request, reply = _renew(realm, tgt, later, fast=fast)
    renewed = open_tgs_reply(request, reply, CTA)
    new = decrypt_ticket(realm, renewed.ticket)
    assert new["cname"].native == old["cname"].native and new["crealm"].native == old["crealm"].native
    assert renewed.ticket["sname"].native == tgt.ticket["sname"].native
    assert new["authtime"].native == old["authtime"].native == T0
    assert new["starttime"].native == later.replace(microsecond=0)
    assert new["endtime"].native == later.replace(microsecond=0) + lifetime
    assert new["renew-till"].native == renew_till
    assert TicketFlags(int(new["flags"].native)) == old_flags
    # A new session key (RFC 4120 2.3), delivered in the reply.
    assert new["key"].to_key() == renewed.session_key != tgt.session_key
    # The reply's enc-part describes the renewed ticket.
    assert renewed.enc_part["endtime"].native == new["endtime"].native
    assert renewed.enc_part["renew-till"].native == renew_till
    assert TicketFlags(int(renewed.enc_part["flags"].native)) == old_flags


def test_a_renewed_tgt_serves_the_tgs_after_the_original_expired(realm):
    tgt = _pkinit(realm)
    request, reply = _renew(realm, tgt, NOW + 23 * HOUR)
    renewed = open_tgs_reply(request, reply, CTA)
    after = NOW + 30 * HOUR  # the original TGT ended at NOW + 24 h
    old = tgs_request(tgt, SC, now=after)
    assert error_code(realm.send(old.data, at=after)) == ErrorCode.KRB_AP_ERR_TKT_EXPIRED
    new = tgs_request(renewed, SC, now=after)
    service = open_tgs_reply(new, realm.send(new.data, at=after), CTA)
    assert decrypt_ticket(realm, service.ticket)["key"].to_key() == service.session_key
    # And renewed again from the renewed one.
    request, reply = _renew(realm, renewed, after)
    open_tgs_reply(request, reply, CTA)


def test_a_service_ticket_from_the_as_is_renewed_for_its_own_service(realm):
    ticket = _pkinit(realm, sname=SC)
    request, reply = _renew(realm, ticket, NOW + 2 * HOUR, sname=SC)
    renewed = open_tgs_reply(request, reply, CTA)
    assert renewed.ticket["sname"].native == ticket.ticket["sname"].native
    part = decrypt_ticket(realm, renewed.ticket)  # under the SC's key
    assert part["key"].to_key() == renewed.session_key
    assert part["starttime"].native == (NOW + 2 * HOUR).replace(microsecond=0)


@pytest.mark.parametrize("sname", [KRBTGT, SC], ids=["tgt", "service-ticket"])
def test_the_restriction_survives_renewal(realm, sname):
    creds = _pkinit(realm, provisioned=False, sname=sname)
    before = find_restrictions(decrypt_ticket(realm, creds.ticket)["authorization-data"])
    assert before is not None
    request, reply = _renew(realm, creds, NOW + 3 * HOUR, sname=sname)
    renewed = open_tgs_reply(request, reply, CTA)
    part = decrypt_ticket(realm, renewed.ticket)
    after = find_restrictions(part["authorization-data"])
    assert after is not None and after.dump() == before.dump()
    if sname == KRBTGT:  # ...and follows the renewed TGT into service tickets
        tgs = tgs_request(renewed, SC, now=NOW + 3 * HOUR)
        service = open_tgs_reply(tgs, realm.send(tgs.data, at=NOW + 3 * HOUR), CTA)
        assert find_restrictions(decrypt_ticket(realm, service.ticket)["authorization-data"]).dump() == before.dump()


def test_the_renewed_lifetime_is_capped_at_renew_till(tmp_path):
    realm = make_realm(tmp_path, max_renewable_lifetime=30 * 3600)
    tgt = _pkinit(realm)
    assert decrypt_ticket(realm, tgt.ticket)["renew-till"].native == T0 + 30 * HOUR
    request, reply = _renew(realm, tgt, NOW + 20 * HOUR)
    renewed = open_tgs_reply(request, reply, CTA)
    assert decrypt_ticket(realm, renewed.ticket)["endtime"].native == T0 + 30 * HOUR
    assert renewed.enc_part["endtime"].native == T0 + 30 * HOUR


def test_renewal_past_renew_till_is_refused(tmp_path):
    realm = make_realm(tmp_path, max_renewable_lifetime=30 * 3600)
    request, reply = _renew(realm, _pkinit(realm), NOW + 20 * HOUR)
    renewed = open_tgs_reply(request, reply, CTA)  # ends at renew-till, NOW + 30 h
    # One minute after renew-till: the ticket itself is still within the clock skew, renew-till is not.
    late = NOW + 30 * HOUR + dt.timedelta(minutes=1)
    _, reply = _renew(realm, renewed, late)
    assert error_code(reply) == ErrorCode.KRB_AP_ERR_TKT_EXPIRED
    assert "renew-till" in reply["e-text"].native
    # Well past it the ticket has expired as well: still KRB_AP_ERR_TKT_EXPIRED.
    _, reply = _renew(realm, renewed, NOW + 31 * HOUR)
    assert error_code(reply) == ErrorCode.KRB_AP_ERR_TKT_EXPIRED
    # Just before renew-till it works (capped at renew-till).
    request, reply = _renew(realm, renewed, NOW + 29 * HOUR)
    assert open_tgs_reply(request, reply, CTA).enc_part["endtime"].native == T0 + 30 * HOUR


def test_a_ticket_that_is_not_renewable_is_refused_with_badoption(realm):
    key = string_to_key(18, ALICE_PASSWORD, "EXAMPLE.TESTalice")
    data, nonce = enc_timestamp_request(ALICE, key)  # no RENEWABLE asked
    tgt = open_key_reply(realm.send(data), key, nonce, ALICE)
    assert not TicketFlags(int(decrypt_ticket(realm, tgt.ticket)["flags"].native)) & TicketFlags.RENEWABLE
    for fast in (True, False):
        _, reply = _renew(realm, tgt, NOW + HOUR, fast=fast)
        assert error_code(reply) == ErrorCode.KDC_ERR_BADOPTION
    cta = _pkinit(realm, options=0)
    _, reply = _renew(realm, cta, NOW + HOUR)
    assert error_code(reply) == ErrorCode.KDC_ERR_BADOPTION
    # The same TGT still gets service tickets.
    tgs = tgs_request(tgt, SC, now=NOW + HOUR)
    open_tgs_reply(tgs, realm.send(tgs.data, at=NOW + HOUR), ALICE)


def test_renew_must_name_the_tickets_own_service(realm):
    tgt = _pkinit(realm)
    _, reply = _renew(realm, tgt, NOW + HOUR, sname=SC)
    assert error_code(reply) == ErrorCode.KDC_ERR_SERVER_NOMATCH
    service = _pkinit(realm, sname=SC)
    _, reply = _renew(realm, service, NOW + HOUR, sname=KRBTGT)
    assert error_code(reply) == ErrorCode.KDC_ERR_SERVER_NOMATCH


def test_a_service_ticket_without_renew_is_still_not_a_tgt(realm):
    service = _pkinit(realm, sname=SC)
    request = tgs_request(service, SC, now=NOW + HOUR)
    assert error_code(realm.send(request.data, at=NOW + HOUR)) == ErrorCode.KRB_AP_ERR_NOT_US
    # RENEWABLE without RENEW is not a renewal.
    request = tgs_request(service, SC, now=NOW + HOUR, options=KDCOptions.RENEWABLE)
    assert error_code(realm.send(request.data, at=NOW + HOUR)) == ErrorCode.KRB_AP_ERR_NOT_US


def test_validate_stays_refused_and_the_as_refuses_renew(realm):
    tgt = _pkinit(realm)
    _, reply = _renew(realm, tgt, NOW + HOUR, options=KDCOptions.VALIDATE)
    assert error_code(reply) == ErrorCode.KDC_ERR_BADOPTION
    assert "VALIDATE" in reply["e-text"].native
    request = pkinit_request(realm.world.provisioned, realm.world.device_key, options=KDCOptions.RENEW)
    assert error_code(realm.send(request.data)) == ErrorCode.KDC_ERR_BADOPTION


def test_renewal_checks_the_principal_database(realm):
    """A disabled client is refused at renewal like at any TGS request."""
    from kdcd.db import PrincipalAttributes

    key = string_to_key(18, ALICE_PASSWORD, "EXAMPLE.TESTalice")
    data, nonce = enc_timestamp_request(ALICE, key, options=KDCOptions.RENEWABLE)
    tgt = open_key_reply(realm.send(data), key, nonce, ALICE)
    realm.db.modify_principal(ALICE, now=NOW, attributes=PrincipalAttributes(disabled=True))
    _, reply = _renew(realm, tgt, NOW + HOUR)
    assert error_code(reply) == ErrorCode.KDC_ERR_CLIENT_REVOKED
    realm.db.modify_principal(ALICE, now=NOW, attributes=PrincipalAttributes())
    request, reply = _renew(realm, tgt, NOW + HOUR)
    open_tgs_reply(request, reply, ALICE)
