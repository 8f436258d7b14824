"""common.krb5client with a key identity (PA-ENC-TIMESTAMP) against kdcd's engine in memory.

The signaling-controller case of issue 5: sc1 authenticates with the keys of its keytab and gets
a ticket for sc2 straight from the AS exchange. Also: the MIT-like first request without
pre-authentication (PREAUTH_REQUIRED + ETYPE-INFO2 -> the hinted key), a password principal's
derived keys, a principal without required pre-authentication, and each refusal as one clean
`KrbClientError`. The clock is chosen by the test.
"""

from __future__ import annotations

import datetime as dt

import pytest

from common.asn1 import ErrorCode, PaDataType, TicketFlags, decode, decode_as
from common.asn1.krb5 import AS_REQ, ETYPE_INFO2, KRB_ERROR, Ticket
from common.ccache import Ccache
from common.crypto import Key, KeyUsage, decrypt, generate_key, string_to_key
from common.keytab import Keytab, KeytabEntry
from common.krb5client import (
    AsClientConfig,
    AsExchange,
    AsResult,
    KdcError,
    KeyIdentity,
    KrbClientError,
    ReplyError,
    Retry,
)
from common.principal import NameType, Principal
from kdcd.db import PrincipalAttributes
from test_kdc_engine_support import ALICE, ALICE_PASSWORD, NOW, REALM, SC, make_realm

SC2 = Principal(("sc", "sc2.example.test"), REALM, NameType.SRV_HST)
OPEN = Principal(("legacy",), REALM)  # a principal that does not require pre-authentication
PKONLY = Principal(("cta", "020000000001"), REALM)  # PKINIT-only: no PA-ENC-TIMESTAMP offered


@pytest.fixture
def realm(tmp_path):
    r = make_realm(tmp_path)
    made = NOW - dt.timedelta(days=2)
    r.db.add_principal(SC2, now=made, attributes=PrincipalAttributes(is_service=True))
    r.db.add_principal(OPEN, now=made, attributes=PrincipalAttributes(requires_preauth=False))
    r.db.add_principal(PKONLY, now=made, attributes=PrincipalAttributes(requires_preauth=True, allow_pkinit=True))
    return r


def keytab_of(realm, principal: Principal, enctypes=None) -> Keytab:
    """The keytab `kerbtel init` would write for `principal` (optionally only some enctypes)."""
    entry = realm.db.get_principal(principal)
    return Keytab([KeytabEntry(entry.principal, k.kvno, k.key) for k in entry.current_keys
                   if enctypes is None or k.enctype in enctypes])


def run(realm, config: AsClientConfig, *, at: dt.datetime = NOW) -> tuple[AsResult, list[str], list[bytes]]:
    exchange = AsExchange(config)
    request = exchange.start(wallclock=at)
    reasons, requests = [], [request]
    while True:
        reply = realm.engine.handle_request(request, wallclock=at, now=realm.monotonic, peer="192.0.2.1:88")
        step = exchange.receive(reply, wallclock=at)
        if isinstance(step, AsResult):
            return step, reasons, requests
        reasons.append(step.reason)
        request = step.request
        requests.append(request)


def open_ticket(realm, result: AsResult):
    ticket = decode_as(Ticket, result.ticket)
    enc = ticket["enc-part"]
    key = realm.db.get_key(SC2 if ticket["sname"]["name-string"].native[-1].startswith("sc2") else SC,
                           enc["etype"].native, enc["kvno"].native).key
    return decode(decrypt(key, KeyUsage.TICKET, enc["cipher"].native), padded=True)


def padata_types(request: bytes) -> list[int]:
    req = decode(request)
    assert isinstance(req, AS_REQ)
    return [p["padata-type"].native for p in req["padata"]] if req["padata"].native else []


# --- the SC case ----------------------------------------------------------------------------------


def test_sc1_gets_a_ticket_for_sc2_with_its_keytab_optimistically(realm):
    identity = KeyIdentity.from_keytab(keytab_of(realm, SC), SC)
    result, reasons, requests = run(realm, AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2))
    assert reasons == []  # one round trip: PA-ENC-TIMESTAMP under the strongest key at once
    assert padata_types(requests[0]) == [PaDataType.PA_ENC_TIMESTAMP]
    assert result.mode == "enc-timestamp" and result.kdc_certificate is None and result.kdf is None
    assert result.client.same_name(SC) and result.server.same_name(SC2)
    assert result.reply_key.enctype == 18
    part = open_ticket(realm, result)
    assert part["key"].to_key() == result.session_key
    assert tuple(part["cname"]["name-string"].native) == SC.components
    assert int(part["flags"].native) & TicketFlags.PRE_AUTHENT
    assert int(part["flags"].native) & TicketFlags.INITIAL


def test_mit_like_first_request_follows_etype_info2(realm):
    identity = KeyIdentity.from_keytab(keytab_of(realm, SC), SC)
    config = AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2, optimistic=False,
                            enctypes=(17, 18))
    result, reasons, requests = run(realm, config)
    assert padata_types(requests[0]) == []
    assert reasons == ["PA-ENC-TIMESTAMP etype 17"]  # kdcd hints the client's first etype it has
    assert result.reply_key.enctype == 17 and result.mode == "enc-timestamp"


def test_only_the_keytab_enctypes_are_requested(realm):
    identity = KeyIdentity.from_keytab(keytab_of(realm, SC, enctypes={17}), SC)
    config = AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2)
    result, _, requests = run(realm, config)
    assert decode(requests[0])["req-body"]["etype"].native == [17]
    assert result.reply_key.enctype == 17


def test_password_principal_with_derived_keys(realm):
    key = string_to_key(18, ALICE_PASSWORD, ALICE.default_salt())
    config = AsClientConfig(identity=KeyIdentity((key,)), client=ALICE, realm=REALM, optimistic=False)
    result, reasons, _ = run(realm, config)
    assert reasons == ["PA-ENC-TIMESTAMP etype 18"]
    assert result.server.same_name(Principal.krbtgt(REALM))


def test_etype_info2_carries_the_salt_of_password_keys(realm):
    """What a password client would need; a keytab client ignores it (its key is derived)."""
    key = string_to_key(18, ALICE_PASSWORD, ALICE.default_salt())
    exchange = AsExchange(AsClientConfig(identity=KeyIdentity((key,)), client=ALICE, realm=REALM, optimistic=False))
    reply = decode(realm.engine.handle_request(exchange.start(wallclock=NOW), wallclock=NOW, now=1.0, peer="p"))
    assert isinstance(reply, KRB_ERROR) and reply["error-code"].native == ErrorCode.KDC_ERR_PREAUTH_REQUIRED
    info = {m["padata-type"].native: m["padata-value"].native for m in reply.method_data()}
    entry = decode_as(ETYPE_INFO2, info[PaDataType.PA_ETYPE_INFO2])[0]
    assert entry["etype"].native == 18 and entry["salt"].native == ALICE.default_salt()


def test_principal_without_required_preauth_gets_a_reply_under_its_key(realm):
    identity = KeyIdentity.from_keytab(keytab_of(realm, OPEN), OPEN)
    result, reasons, _ = run(realm, AsClientConfig(identity=identity, client=OPEN, realm=REALM, optimistic=False))
    assert reasons == [] and result.mode == "no-preauth"


def test_result_goes_into_a_ccache(realm, tmp_path):
    identity = KeyIdentity.from_keytab(keytab_of(realm, SC), SC)
    result, _, _ = run(realm, AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2))
    Ccache(result.client, [result.to_credential()]).save(tmp_path / "cc")
    cred = Ccache.load(tmp_path / "cc").credentials[0]
    assert cred.server.same_name(SC2) and cred.key == result.session_key


# --- refusals: one clean error each ------------------------------------------------------------


def test_wrong_key_is_preauth_failed(realm):
    identity = KeyIdentity((generate_key(18), generate_key(17)))
    with pytest.raises(KdcError) as info:
        run(realm, AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2))
    assert info.value.code == ErrorCode.KDC_ERR_PREAUTH_FAILED
    with pytest.raises(KdcError) as info:
        run(realm, AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2, optimistic=False))
    assert info.value.code == ErrorCode.KDC_ERR_PREAUTH_FAILED


def test_keytab_with_an_enctype_the_kdc_lacks(realm):
    """sc3's KDC entry has only an aes128 key; its keytab also has an (unknown to the KDC) aes256
    key. Optimistic aes256 is refused (ETYPE_NOSUPP), the plain request's ETYPE-INFO2 names 17."""
    sc3 = Principal(("sc", "sc3.example.test"), REALM)
    entry = realm.db.add_principal(sc3, now=NOW - dt.timedelta(days=1), enctypes=(17,),
                                   attributes=PrincipalAttributes(is_service=True))
    identity = KeyIdentity((generate_key(18), entry.current_keys[0].key))
    result, reasons, requests = run(realm, AsClientConfig(identity=identity, client=sc3, realm=REALM, service=SC2))
    assert reasons == ["optimistic enctype refused", "PA-ENC-TIMESTAMP etype 17"]
    assert padata_types(requests[1]) == []
    assert result.reply_key.enctype == 17
    result, reasons, _ = run(realm, AsClientConfig(identity=identity, client=sc3, realm=REALM, service=SC2,
                                                   optimistic=False))
    assert reasons == ["PA-ENC-TIMESTAMP etype 17"]


def test_key_of_an_enctype_the_kdc_lacks_and_nothing_else(realm):
    sc3 = Principal(("sc", "sc3.example.test"), REALM)
    realm.db.add_principal(sc3, now=NOW - dt.timedelta(days=1), enctypes=(17,),
                           attributes=PrincipalAttributes(is_service=True))
    with pytest.raises(KdcError) as info:
        run(realm, AsClientConfig(identity=KeyIdentity((generate_key(18),)), client=sc3, realm=REALM))
    assert info.value.code == ErrorCode.KDC_ERR_PREAUTH_FAILED  # no ETYPE-INFO2 we can use: our key is refused


def test_kdc_not_offering_enc_timestamp(realm):
    identity = KeyIdentity((generate_key(18),))
    with pytest.raises(KdcError) as info:
        run(realm, AsClientConfig(identity=identity, client=PKONLY, realm=REALM, optimistic=False))
    assert info.value.code == ErrorCode.KDC_ERR_PREAUTH_REQUIRED
    assert "does not offer PA-ENC-TIMESTAMP" in info.value.text


def test_unknown_client(realm):
    identity = KeyIdentity((generate_key(18),))
    who = Principal(("sc", "sc9.example.test"), REALM)
    with pytest.raises(KdcError) as info:
        run(realm, AsClientConfig(identity=identity, client=who, realm=REALM, service=SC2))
    assert info.value.code == ErrorCode.KDC_ERR_C_PRINCIPAL_UNKNOWN


def test_skew_is_reported(realm):
    identity = KeyIdentity.from_keytab(keytab_of(realm, SC), SC)
    exchange = AsExchange(AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2))
    request = exchange.start(wallclock=NOW - dt.timedelta(hours=1))
    reply = realm.engine.handle_request(request, wallclock=NOW, now=1.0, peer="p")
    with pytest.raises(KdcError) as info:
        exchange.receive(reply, wallclock=NOW)
    assert info.value.code == ErrorCode.KRB_AP_ERR_SKEW


def test_reply_to_another_request_fails_the_nonce_check(realm):
    identity = KeyIdentity.from_keytab(keytab_of(realm, SC), SC)
    config = AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2)
    first, second = AsExchange(config), AsExchange(config)
    reply = realm.engine.handle_request(first.start(wallclock=NOW), wallclock=NOW, now=1.0, peer="p")
    second.start(wallclock=NOW)
    with pytest.raises(ReplyError, match="nonce"):
        second.receive(reply, wallclock=NOW)


def test_reply_for_another_service_is_refused(realm):
    identity = KeyIdentity.from_keytab(keytab_of(realm, SC), SC)
    exchange = AsExchange(AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2))
    exchange.start(wallclock=NOW)
    other = AsExchange(AsClientConfig(identity=identity, client=SC, realm=REALM))  # krbtgt
    request = other.start(wallclock=NOW)
    exchange._sent.nonce = decode(request)["req-body"]["nonce"].native  # same nonce, other sname
    reply = realm.engine.handle_request(request, wallclock=NOW, now=1.0, peer="p")
    with pytest.raises(ReplyError, match="service"):
        exchange.receive(reply, wallclock=NOW)


def test_tampered_reply_does_not_decrypt(realm):
    identity = KeyIdentity.from_keytab(keytab_of(realm, SC), SC)
    exchange = AsExchange(AsClientConfig(identity=identity, client=SC, realm=REALM, service=SC2))
    reply = bytearray(realm.engine.handle_request(exchange.start(wallclock=NOW), wallclock=NOW, now=1.0, peer="p"))
    reply[-5] ^= 0x01  # inside the enc-part cipher (the last field of the AS-REP)
    with pytest.raises(ReplyError) as info:
        exchange.receive(bytes(reply), wallclock=NOW)
    assert info.value.code == ErrorCode.KRB_AP_ERR_MODIFIED


def test_config_checks():
    with pytest.raises(ValueError, match="none of them"):
        AsClientConfig(identity=KeyIdentity((generate_key(16),)), client=SC, realm=REALM, enctypes=(18, 17))
    with pytest.raises(ValueError, match="one key per enctype"):
        KeyIdentity((generate_key(18), generate_key(18)))
    with pytest.raises(ValueError, match="no key for"):
        KeyIdentity.from_keytab(Keytab(), SC)
    assert "contents" not in repr(KeyIdentity((Key(18, b"\x01" * 32),)))


def test_keytab_with_two_kvnos_uses_the_highest():
    old, new = generate_key(18), generate_key(18)
    keytab = Keytab([KeytabEntry(SC, 1, old), KeytabEntry(SC, 2, new)])
    identity = KeyIdentity.from_keytab(keytab, SC)
    assert identity.keys == (new,) and identity.kvno == 2


def test_pkinit_config_still_needs_anchors(realm):
    from common.krb5client import ClientIdentity

    identity = ClientIdentity(realm.world.provisioned, realm.world.device_key)
    with pytest.raises(ValueError, match="trust anchor"):
        AsClientConfig(identity=identity, client=SC, realm=REALM)
    assert isinstance(Retry(b"", "x"), Retry)
