"""common.asn1.der and common.asn1.encode give byte for byte what asn1crypto gives.

The KDC writes its AS-REP, Ticket, EncTicketPart, EncASRepPart, KDCDHKeyInfo, PA-PK-AS-REP and
RFC 8636 OtherInfo with the direct DER writer; asn1crypto (common.asn1.krb5 / .pkinit) stays the
reference. Random values through both must always agree, so the two can never drift.
"""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import cms, core
from hypothesis import given, settings
from hypothesis import strategies as st

from common.asn1 import der, encode, oids
from common.asn1.krb5 import (
    AS_REP,
    METHOD_DATA,
    TGS_REP,
    AuthorizationData,
    EncASRepPart,
    EncryptedData,
    EncryptionKey,
    EncTGSRepPart,
    EncTicketPart,
    HostAddresses,
    PrincipalName,
    Ticket,
    principal_to_asn1,
)
from common.asn1.pkinit import (
    PA_PK_AS_REP,
    ContentInfoOctets,
    KDCDHKeyInfo,
    ReplyKeyPack,
    build_kdf_other_info,
    encode_pkinit_san,
)
from common.asn1.types import KerberosTime, TicketFlagsBits
from common.crypto import Key
from common.principal import Principal

SETTINGS = settings(max_examples=150, deadline=None)

int32 = st.integers(-(2**31), 2**31 - 1)
uint32 = st.integers(0, 2**32 - 1)
# Printable text plus some non-ASCII (KerberosString is read and written as UTF-8).
text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_categories=("Cs",)), min_size=1, max_size=40)
principals = st.builds(Principal, st.lists(text, min_size=1, max_size=4).map(tuple), text, st.integers(-5, 12))
times = st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(9999, 12, 31), timezones=st.just(dt.timezone.utc))
keys = st.builds(Key, st.sampled_from([17, 18, 19, 20, 16, 23]), st.binary(min_size=0, max_size=300))
blobs = st.binary(max_size=600)  # crosses the short/long (1 and 2 byte) length forms
opt = st.one_of


# --- the writer itself ---------------------------------------------------------------------------


@given(st.integers(-(2**300), 2**300))
@SETTINGS
def test_integer(value):
    assert der.integer(value) == core.Integer(value).dump()


@given(st.integers(0, 70_000))
def test_length_forms(n):
    body = bytes(n)
    assert der.octet_string(body) == core.OctetString(body).dump()


@given(st.lists(st.integers(0, 2**64), min_size=0, max_size=8), st.integers(0, 2), st.integers(0, 39))
def test_oid(tail, first, second):
    dotted = ".".join(str(a) for a in [first, second, *tail])
    assert der.oid(dotted) == core.ObjectIdentifier(dotted).dump()


@pytest.mark.parametrize("bad", ["1", "3.1", "1.40", "0.-1", "1.2.x"])
def test_oid_rejects_invalid(bad):
    with pytest.raises(ValueError):
        der.oid(bad)


@given(times)
def test_kerberos_time(value):
    assert der.kerberos_time(value) == KerberosTime(value).dump()


def test_kerberos_time_rejects_naive():
    with pytest.raises(ValueError):
        der.kerberos_time(dt.datetime(2026, 1, 1))


@given(uint32)
def test_flags(value):
    assert der.flags32(value) == TicketFlagsBits(value).dump()


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_flags_range(bad):
    with pytest.raises(ValueError):
        der.flags32(bad)


def test_explicit_tag_limits():
    with pytest.raises(ValueError):
        der.explicit(31, b"")
    with pytest.raises(ValueError):
        der.application(31, b"")


@given(st.lists(st.binary(max_size=20), max_size=6))
def test_set_of_sorts(parts):
    encoded = [der.octet_string(p) for p in parts]
    assert der.set_of(*encoded) == core.SetOf([core.OctetString(p) for p in parts], spec=core.OctetString).dump(force=True)


# --- Kerberos structures -------------------------------------------------------------------------


@given(principals)
@SETTINGS
def test_principal_name(principal):
    name, realm = principal_to_asn1(principal)
    assert encode.principal_name(principal) == name.dump()
    assert encode.realm(principal) == realm.dump()


@given(keys)
def test_encryption_key(key):
    assert encode.encryption_key(key) == EncryptionKey.from_key(key).dump()


@given(int32, blobs, opt(st.none(), uint32))
def test_encrypted_data(etype, cipher, kvno):
    value = {"etype": etype, "cipher": cipher}
    if kvno is not None:
        value["kvno"] = kvno
    assert encode.encrypted_data(etype, cipher, kvno) == EncryptedData(value).dump()


@given(st.lists(st.tuples(int32, blobs), max_size=4))
def test_method_data(entries):
    reference = METHOD_DATA([{"padata-type": t, "padata-value": v} for t, v in entries]).dump()
    assert encode.method_data(entries) == reference


addresses = st.lists(st.tuples(int32, st.binary(max_size=16)), min_size=1, max_size=3).map(
    lambda a: HostAddresses([{"addr-type": t, "address": v} for t, v in a])
)
authorization = st.lists(st.tuples(int32, blobs), min_size=1, max_size=3).map(
    lambda a: AuthorizationData([{"ad-type": t, "ad-data": v} for t, v in a])
)


@given(
    uint32, keys, principals, int32, st.binary(max_size=40), times, opt(st.none(), times), times, opt(st.none(), times),
    opt(st.none(), addresses), opt(st.none(), authorization),
)
@SETTINGS
def test_enc_ticket_part(flags, key, cname, tr_type, tr_contents, authtime, starttime, endtime, renew_till, caddr, authz):
    name, crealm = principal_to_asn1(cname)
    part = {
        "flags": flags,
        "key": EncryptionKey.from_key(key),
        "crealm": crealm,
        "cname": name,
        "transited": {"tr-type": tr_type, "contents": tr_contents},
        "authtime": authtime,
        "endtime": endtime,
    }
    if starttime is not None:
        part["starttime"] = starttime
    if renew_till is not None:
        part["renew-till"] = renew_till
    if caddr is not None:
        part["caddr"] = caddr
    if authz is not None:
        part["authorization-data"] = authz
    fast = encode.enc_ticket_part(
        flags=flags, key=key, cname=cname, transited_type=tr_type, transited_contents=tr_contents, authtime=authtime,
        starttime=starttime, endtime=endtime, renew_till=renew_till,
        caddr=None if caddr is None else caddr.dump(), authorization_data=None if authz is None else authz.dump(),
    )
    assert fast == EncTicketPart(part).dump()


@given(st.lists(st.tuples(int32, st.binary(max_size=20)), max_size=3))
def test_host_addresses(entries):
    reference = HostAddresses([{"addr-type": t, "address": a} for t, a in entries]).dump()
    assert encode.host_addresses(entries) == reference


def test_enc_ticket_part_with_received_addresses():
    """caddr copied from a decoded request keeps its received encoding in both paths."""
    received = HostAddresses.load(HostAddresses([{"addr-type": 2, "address": b"\x7f\x00\x00\x01"}]).dump())
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cname = Principal(("cta", "001122334455"), "EXAMPLE.TEST")
    name, crealm = principal_to_asn1(cname)
    key = Key(18, bytes(32))
    reference = EncTicketPart({
        "flags": 0x40000000, "key": EncryptionKey.from_key(key), "crealm": crealm, "cname": name,
        "transited": {"tr-type": 1, "contents": b""}, "authtime": now, "endtime": now, "caddr": received,
    }).dump()
    fast = encode.enc_ticket_part(flags=0x40000000, key=key, cname=cname, transited_type=1, transited_contents=b"",
                                  authtime=now, starttime=None, endtime=now, caddr=received.dump())
    assert fast == reference


@given(principals, int32, opt(st.none(), uint32), blobs)
@SETTINGS
def test_ticket(sname, etype, kvno, cipher):
    name, realm = principal_to_asn1(sname)
    enc = {"etype": etype, "cipher": cipher}
    if kvno is not None:
        enc["kvno"] = kvno
    reference = Ticket({"realm": realm, "sname": name, "enc-part": enc}).dump()
    assert encode.ticket(sname, encode.encrypted_data(etype, cipher, kvno)) == reference


@given(
    st.sampled_from([(25, EncASRepPart), (26, EncTGSRepPart)]), keys, st.lists(st.tuples(int32, times), max_size=3),
    uint32, uint32, times, opt(st.none(), times), times, principals, opt(st.none(), times), opt(st.none(), times),
    opt(st.none(), addresses), opt(st.none(), st.lists(st.tuples(int32, blobs), min_size=1, max_size=2)),
)
@SETTINGS
def test_enc_kdc_rep_part(kind, key, last_req, nonce, flags, authtime, starttime, endtime, sname, key_exp, renew_till, caddr, epa):
    tag, cls = kind
    name, srealm = principal_to_asn1(sname)
    value = {
        "key": EncryptionKey.from_key(key),
        "last-req": [{"lr-type": t, "lr-value": v} for t, v in last_req],
        "nonce": nonce,
        "flags": flags,
        "authtime": authtime,
        "endtime": endtime,
        "srealm": srealm,
        "sname": name,
    }
    for field, item in (("starttime", starttime), ("key-expiration", key_exp), ("renew-till", renew_till), ("caddr", caddr)):
        if item is not None:
            value[field] = item
    if epa is not None:
        value["encrypted-pa-data"] = [{"padata-type": t, "padata-value": v} for t, v in epa]
    fast = encode.enc_kdc_rep_part(
        tag, key=key, last_req=last_req, nonce=nonce, flags=flags, authtime=authtime, starttime=starttime, endtime=endtime,
        sname=sname, key_expiration=key_exp, renew_till=renew_till, caddr=None if caddr is None else caddr.dump(),
        encrypted_pa_data=None if epa is None else encode.method_data(epa),
    )
    assert fast == cls(value).dump()


@given(
    st.sampled_from([(11, 11, AS_REP), (13, 13, TGS_REP)]), principals, principals, int32, opt(st.none(), uint32), blobs,
    opt(st.none(), st.lists(st.tuples(int32, blobs), max_size=3)),
)
@SETTINGS
def test_kdc_rep(kind, cname, sname, etype, kvno, cipher, padata):
    tag, msg_type, cls = kind
    ticket = encode.ticket(sname, encode.encrypted_data(18, b"t" * 50, 3))
    name, crealm = principal_to_asn1(cname)
    enc = {"etype": etype, "cipher": cipher}
    if kvno is not None:
        enc["kvno"] = kvno
    value = {"crealm": crealm, "cname": name, "ticket": Ticket.load(ticket), "enc-part": enc}
    if padata is not None:
        value["padata"] = [{"padata-type": t, "padata-value": v} for t, v in padata]
    fast = encode.kdc_rep(
        tag, msg_type, cname=cname, ticket=ticket, enc_part=encode.encrypted_data(etype, cipher, kvno),
        padata=None if padata is None else encode.method_data(padata),
    )
    assert fast == cls(value).dump()


def test_range_checks_match_asn1crypto():
    with pytest.raises(ValueError):
        encode.encrypted_data(2**31, b"")
    with pytest.raises(ValueError):
        encode.encrypted_data(1, b"", kvno=-1)
    with pytest.raises(ValueError):
        encode.kdc_dh_key_info(b"\x04", 2**32)


# --- PKINIT --------------------------------------------------------------------------------------


@given(principals)
def test_krb5_principal_name(principal):
    assert encode.krb5_principal_name(principal) == encode_pkinit_san(principal)


@given(st.binary(min_size=1, max_size=300), uint32, opt(st.none(), times))
@SETTINGS
def test_kdc_dh_key_info(public, nonce, expiration):
    value = {"subjectPublicKey": public, "nonce": nonce}
    if expiration is not None:
        value["dhKeyExpiration"] = expiration
    assert encode.kdc_dh_key_info(public, nonce, expiration) == KDCDHKeyInfo(value).dump()


def _content_info(payload: bytes) -> bytes:
    return cms.ContentInfo({"content_type": "data", "content": core.OctetString(payload)}).dump()


@given(blobs, opt(st.none(), st.binary(min_size=1, max_size=64)), opt(st.none(), st.sampled_from(["1.3.6.1.5.2.3.6.1", "1.3.6.1.5.2.3.6.2", "1.3.6.1.5.2.3.6.3"])))
@SETTINGS
def test_dh_rep_info(payload, server_nonce, kdf):
    content_info = _content_info(payload)
    rep: dict = {"dhSignedData": ContentInfoOctets(content_info)}
    if server_nonce is not None:
        rep["serverDHNonce"] = server_nonce
    if kdf is not None:
        rep["kdf"] = {"kdf-id": kdf}
    reference = PA_PK_AS_REP(name="dhInfo", value=rep).dump()
    assert encode.dh_rep_info_pa_value(content_info, server_nonce, kdf) == reference


@given(blobs)
def test_enc_key_pack(payload):
    content_info = _content_info(payload)
    reference = PA_PK_AS_REP(name="encKeyPack", value=ContentInfoOctets(content_info)).dump()
    assert encode.enc_key_pack_pa_value(content_info) == reference


@given(blobs)
def test_signed_data_content_info(payload):
    # Any SignedData-shaped bytes: a minimal one (version, empty sets, encap with no content).
    signed = der.seq(der.integer(1), der.tlv(0x31, b""), der.seq(der.oid(oids.ID_DATA), der.explicit(0, der.octet_string(payload))), der.tlv(0x31, b""))
    reference = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData.load(signed)}).dump()
    assert encode.signed_data_content_info(signed) == reference


@given(keys, int32, st.binary(max_size=64))
def test_reply_key_pack(key, cksumtype, checksum):
    reference = ReplyKeyPack(
        {"replyKey": EncryptionKey.from_key(key), "asChecksum": {"cksumtype": cksumtype, "checksum": checksum}}
    ).dump()
    assert encode.reply_key_pack(key, cksumtype, checksum) == reference


@given(
    st.sampled_from(["1.3.6.1.5.2.3.6.1", "1.3.6.1.5.2.3.6.2", "1.3.6.1.5.2.3.6.3"]), principals, principals, int32,
    blobs, blobs,
)
@SETTINGS
def test_kdf_other_info(kdf, client, server, enctype, as_req, pk_as_rep):
    assert encode.kdf_other_info(kdf, client, server, enctype, as_req, pk_as_rep) == build_kdf_other_info(
        kdf, client, server, enctype, as_req, pk_as_rep
    )


def test_kdf_other_info_rfc8636_shape():
    """The RFC 8636 vector's inputs (lha@SU.SE, krbtgt/SU.SE@SU.SE as NT-PRINCIPAL)."""
    client = Principal(("lha",), "SU.SE", 1)
    server = Principal(("krbtgt", "SU.SE"), "SU.SE", 1)
    fast = encode.kdf_other_info("1.3.6.1.5.2.3.6.2", client, server, 18, b"\xaa" * 10, b"\xbb" * 9)
    assert fast == build_kdf_other_info("1.3.6.1.5.2.3.6.2", client, server, 18, b"\xaa" * 10, b"\xbb" * 9)
    assert PrincipalName.load(encode.principal_name(server))["name-string"].native == ["krbtgt", "SU.SE"]
