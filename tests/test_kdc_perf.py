"""The performance shortcuts on the KDC's hot path give exactly what the slow paths give:
the Jacobi-symbol subgroup check, the pre-encoded CMS signer template, the unwrapped-key cache.
"""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from common import cms as C
from common.asn1 import oids
from common.crypto.dh import DH_GROUPS, MODP_2048, DhError, jacobi_symbol
from common.principal import Principal
from kdcd.db import SQLiteDatabase, generate_master_key
from kdcd.db import sqlite as sqlite_module

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

# --- DH subgroup check ---------------------------------------------------------------------------


@pytest.mark.parametrize("group_id", sorted(DH_GROUPS))
def test_jacobi_symbol_is_eulers_criterion_for_the_modp_groups(group_id):
    group = DH_GROUPS[group_id]
    values = [2, 3, 4, group.p - 2, group.p - 1, group.generate_key_pair().public_value]
    values += [secrets.randbelow(group.p - 3) + 2 for _ in range(6)]
    for y in values:
        euler = pow(y, group.q, group.p)
        assert jacobi_symbol(y, group.p) == (1 if euler == 1 else -1), hex(y)


def test_jacobi_symbol_small_cases():
    # (a/15) for a = 0..14, computed by hand from (a/3)(a/5).
    assert [jacobi_symbol(a, 15) for a in range(15)] == [0, 1, 1, 0, 1, 0, 0, -1, 1, 0, 0, -1, 0, -1, -1]
    assert jacobi_symbol(-1, 7) == -1 and jacobi_symbol(2, 7) == 1
    with pytest.raises(ValueError):
        jacobi_symbol(3, 10)


def test_subgroup_check_still_refuses_non_residues():
    with pytest.raises(DhError, match="not in the prime-order subgroup"):
        MODP_2048.validate_public(MODP_2048.p - 2)
    MODP_2048.validate_public(4)  # 2^2: a residue


# --- the CMS signer template ------------------------------------------------------------------


def _cert(key, name: str, serial: int, issuer_key=None) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=30))
    )
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def rsa_signer():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _cert(key, "kdc", 0x2001), key, _cert(ca_key, "ca", 0x2002)


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("content_type", [oids.ID_PKINIT_AUTHDATA, oids.ID_PKINIT_DHKEYDATA, oids.ID_PKINIT_RKEYDATA])
@pytest.mark.parametrize("shape", ["plain", "intermediate", "no-signer-cert"])
def test_template_is_byte_identical_to_the_asn1crypto_build(rsa_signer, digest, content_type, shape):
    cert, key, intermediate = rsa_signer
    kwargs = {"digest": digest}
    if shape == "intermediate":
        kwargs["certificates"] = [intermediate]
    if shape == "no-signer-cert":
        kwargs["include_signer_certificate"] = False
    for content in (b"", b"\x30\x03\x02\x01\x07", bytes(300)):  # short and long lengths
        fast = C.sign_signed_data(content, content_type, cert, key, **kwargs)
        slow = C._build_signed_data(content, content_type, cert, key, **kwargs)
        assert fast.dump() == slow.dump()  # PKCS#1 v1.5 is deterministic
        if shape != "no-signer-cert":
            assert C.verify_signed_data(fast, expected_content_type=content_type).content == content


def test_template_ecdsa_verifies_and_has_the_slow_shape():
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(key, "ec kdc", 0x2003)
    fast = C.sign_signed_data(b"payload", oids.ID_PKINIT_DHKEYDATA, cert, key)
    slow = C._build_signed_data(b"payload", oids.ID_PKINIT_DHKEYDATA, cert, key)
    assert C.verify_signed_data(fast, expected_content_type=oids.ID_PKINIT_DHKEYDATA).content == b"payload"
    fi, si = fast["signer_infos"][0], slow["signer_infos"][0]
    for name in ("version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm"):
        assert fi[name].dump() == si[name].dump()
    assert fast["certificates"].dump() == slow["certificates"].dump()


def test_pss_still_takes_the_asn1crypto_path(rsa_signer):
    cert, key, _ = rsa_signer
    signed = C.sign_signed_data(b"x", oids.ID_PKINIT_AUTHDATA, cert, key, rsa_padding="pss")
    assert signed["signer_infos"][0]["signature_algorithm"]["algorithm"].native == "rsassa_pss"
    assert C.verify_signed_data(signed, expected_content_type=oids.ID_PKINIT_AUTHDATA).content == b"x"


# --- unwrapped principal keys -------------------------------------------------------------------


def test_unwrapped_key_cache_follows_key_changes_from_another_handle(tmp_path):
    master = generate_master_key()
    path = tmp_path / "kdc.db"
    db = SQLiteDatabase.create(path, "EXAMPLE.TEST", master_key=master, now=NOW)
    sc = Principal.parse("sc/sc1.example.test@EXAMPLE.TEST")
    first = db.add_principal(sc, now=NOW)
    assert db.get_principal(sc).keys == first.keys
    assert db.get_principal(sc).keys == first.keys  # served from the cache
    assert db._unwrapped

    other = SQLiteDatabase.open(path, master_key=master)  # e.g. `kerbtel principal` in another process
    rotated = other.rotate_keys(sc, now=NOW, grace=0)
    other.close()
    seen = db.get_principal(sc)
    assert seen.kvno == first.kvno + 1
    assert [k.key for k in seen.current_keys] == [k.key for k in rotated.current_keys]
    assert {k.key for k in seen.current_keys}.isdisjoint({k.key for k in first.keys})
    db.close()


def test_unwrapped_key_cache_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "UNWRAPPED_CACHE_SIZE", 3)
    db = SQLiteDatabase.create(tmp_path / "kdc.db", "EXAMPLE.TEST", master_key=generate_master_key(), now=NOW)
    for i in range(4):
        db.add_principal(Principal.parse(f"sc/sc{i}.example.test@EXAMPLE.TEST"), now=NOW, enctypes=(18,))
        db.get_principal(Principal.parse(f"sc/sc{i}.example.test@EXAMPLE.TEST"))
        assert len(db._unwrapped) <= 3
    db.close()


# --- cached principal rows ------------------------------------------------------------------------


def test_principal_cache_sees_changes_from_another_handle_at_once(tmp_path):
    """Rows are cached only while SQLite's data_version is unchanged: a change committed by
    another connection (another process) applies to the very next lookup."""
    from kdcd.db import NotFound, PrincipalAttributes

    master = generate_master_key()
    path = tmp_path / "kdc.db"
    db = SQLiteDatabase.create(path, "EXAMPLE.TEST", master_key=master, now=NOW)
    sc = Principal.parse("sc/sc1.example.test@EXAMPLE.TEST")
    db.add_principal(sc, now=NOW, attributes=PrincipalAttributes(is_service=True))
    first = db.get_principal(sc)
    assert db.get_principal(sc) is first  # served from the cache
    assert not first.attributes.disabled

    other = SQLiteDatabase.open(path, master_key=master)
    other.modify_principal(sc, now=NOW, attributes=PrincipalAttributes(is_service=True, disabled=True))
    assert db.get_principal(sc).attributes.disabled
    other.delete_principal(sc)
    other.close()
    with pytest.raises(NotFound):
        db.get_principal(sc)
    db.close()


def test_principal_cache_follows_own_writes(tmp_path):
    from kdcd.db import PrincipalAttributes

    db = SQLiteDatabase.create(tmp_path / "kdc.db", "EXAMPLE.TEST", master_key=generate_master_key(), now=NOW)
    sc = Principal.parse("sc/sc1.example.test@EXAMPLE.TEST")
    db.add_principal(sc, now=NOW, attributes=PrincipalAttributes(is_service=True))
    before = db.get_principal(sc)
    rotated = db.rotate_keys(sc, now=NOW, grace=0)
    assert db.get_principal(sc).kvno == rotated.kvno == before.kvno + 1
    db.modify_principal(sc, now=NOW, attributes=PrincipalAttributes(is_service=True, disabled=True))
    assert db.get_principal(sc).attributes.disabled
    db.close()


def test_customer_cache_sees_changes_from_another_handle_at_once(tmp_path):
    """The customers behind a certificate's phone IDs are cached like principal rows: a status
    change or a phone moved by another connection (`kerbtel customer` in another process)
    applies to the very next lookup."""
    from kdcd.db import CustomerStatus

    master = generate_master_key()
    path = tmp_path / "kdc.db"
    db = SQLiteDatabase.create(path, "EXAMPLE.TEST", master_key=master, now=NOW)
    phone_a, phone_b = bytes([1]) * 20, bytes([2]) * 20
    customer = db.add_customer(now=NOW, phone_ids=[phone_a])
    first = db.customers_for_phone_ids([phone_a, phone_b])
    assert [c.id for c in first] == [customer.id] and first[0].active
    again = db.customers_for_phone_ids([phone_a, phone_b])
    assert again[0] is first[0]  # served from the cache

    other = SQLiteDatabase.open(path, master_key=master)
    other.set_customer_status(customer.id, CustomerStatus.TERMINATED, now=NOW)
    assert not db.customers_for_phone_ids([phone_a, phone_b])[0].active
    second = other.add_customer(now=NOW, phone_ids=[phone_b])
    other.close()
    assert [c.id for c in db.customers_for_phone_ids([phone_a, phone_b])] == [customer.id, second.id]
    db.close()


def test_customer_cache_follows_own_writes(tmp_path):
    from kdcd.db import CustomerStatus

    db = SQLiteDatabase.create(tmp_path / "kdc.db", "EXAMPLE.TEST", master_key=generate_master_key(), now=NOW)
    phone = bytes([7]) * 20
    customer = db.add_customer(now=NOW, phone_ids=[phone])
    assert db.customers_for_phone_ids([phone])[0].active
    db.set_customer_status(customer.id, CustomerStatus.SUSPENDED, now=NOW)
    assert db.customers_for_phone_ids([phone])[0].status is CustomerStatus.SUSPENDED
    db.remove_phone(customer.id, phone, now=NOW)
    assert db.customers_for_phone_ids([phone]) == []
    db.close()


def test_one_block_encryption_is_the_block_cipher_and_keeps_its_context():
    """AesCts encrypts a lone block under the zero IV with a reused ECB context (key derivation
    does this again and again): the same bytes as CBC with a zero IV and as a fresh ECB."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from common.crypto.ciphers import AesCts

    for key in (bytes(range(16)), bytes(range(32))):
        cts = AesCts(key)
        for block in (bytes(16), bytes(range(16, 32)), b"\xff" * 16):
            ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
            cbc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
            assert cts.encrypt(block) == ecb.update(block) == cbc.update(block)
        assert cts.decrypt(cts.encrypt(block)) == block
        iv = bytes(range(100, 116))  # a non-zero IV still takes CBC
        cbc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        assert cts.encrypt(block, iv) == cbc.update(block)


# --- the AS exchange written as direct DER ----------------------------------------------------------


def test_ticket_and_enc_rep_part_der_equal_the_asn1crypto_builds(monkeypatch):
    """kdcd.tickets.ticket_der / enc_rep_part_der against build_ticket / build_enc_rep_part, with
    encryption made the identity so the (randomly confounded) ciphertexts compare too."""
    from common.asn1.kerbtel import restriction_authorization_data
    from common.asn1.krb5 import EncASRepPart, EncTGSRepPart, HostAddresses
    from common.asn1.types import TicketFlagsBits  # noqa: F401 - the flags type under test
    from common.asn1 import TicketFlags, encode
    from common.crypto import Key
    from kdcd import tickets
    from kdcd.db import KeyEntry

    monkeypatch.setattr(tickets, "encrypt", lambda key, usage, plain: b"E" + plain)
    server_key = KeyEntry(3, Key(18, bytes(range(32))), None, NOW, None)
    session = Key(17, bytes(16))
    cname = Principal.parse("cta/001122334455@EXAMPLE.TEST")
    for sname in (Principal.parse("sc/sc1.example.test@EXAMPLE.TEST"), Principal.krbtgt("EXAMPLE.TEST")):
        for renew in (None, NOW + dt.timedelta(days=7)):
            times = tickets.TicketTimes(NOW, NOW, NOW + dt.timedelta(hours=10), renew, TicketFlags(0))
            flags = TicketFlags.INITIAL | TicketFlags.PRE_AUTHENT | TicketFlags.FORWARDABLE
            restriction = restriction_authorization_data(("+18005550100",), ("911",), bytes(6))
            addresses = HostAddresses([{"addr-type": 2, "address": b"\xc0\x00\x02\x0a"}])
            for authz, caddr in ((None, None), (restriction, addresses)):
                slow = tickets.build_ticket(sname=sname, server_key=server_key, session_key=session, cname=cname,
                                            times=times, flags=flags, authorization_data=authz, caddr=caddr)
                fast = tickets.ticket_der(
                    sname=sname, server_key=server_key, session_key=session, cname=cname, times=times, flags=flags,
                    authorization_data=None if authz is None else authz.dump(),
                    caddr=None if caddr is None else encode.host_addresses((a["addr-type"], a["address"]) for a in caddr.native),
                )
                assert fast == slow.dump()
            for tag, cls in ((25, EncASRepPart), (26, EncTGSRepPart)):
                for expiration in (None, NOW + dt.timedelta(days=30)):
                    slow = tickets.build_enc_rep_part(cls, session_key=session, nonce=2**32 - 1, times=times, flags=flags,
                                                      sname=sname, key_expiration=expiration)
                    fast = tickets.enc_rep_part_der(tag, session_key=session, nonce=2**32 - 1, times=times, flags=flags,
                                                    sname=sname, key_expiration=expiration)
                    assert fast == slow.dump()


@pytest.fixture
def kdc_realm(tmp_path):
    from test_kdc_engine_support import make_realm

    return make_realm(tmp_path)


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


def test_malformed_deep_fields_still_get_precise_krb_errors(kdc_realm):
    """The strict decode still rejects a bad value deep inside the request at decode time, with
    the field's path in the e-text, and the KDC then serves a good request."""
    from common.asn1 import ErrorCode
    from common.asn1.types import _format_time
    from test_kdc_engine_support import error_code, open_pkinit_reply, pkinit_request

    from test_pki_factories import NOW as PKI_NOW

    realm = kdc_realm
    at = PKI_NOW + dt.timedelta(seconds=30)
    till = at + dt.timedelta(hours=5)

    def request(**kwargs):
        return pkinit_request(realm.world.provisioned, realm.world.device_key, now=at, till=till, **kwargs)

    # KDC-REQ-BODY.till with month 13: KRB_ERR_GENERIC naming the field.
    good_till = _format_time(till).encode()
    bad = _replace_once(request().data, good_till, good_till[:4] + b"13" + good_till[6:])
    reply = realm.send(bad, at=at)
    assert error_code(reply) == ErrorCode.KRB_ERR_GENERIC
    assert "req-body.till" in reply["e-text"].native

    # A KDC-REQ-BODY realm that is not UTF-8.
    bad = _replace_once(request().data, b"\xa2\x0e\x1b\x0cEXAMPLE.TEST", b"\xa2\x0e\x1b\x0cEXAMPLE.TES\xff")
    reply = realm.send(bad, at=at)
    assert error_code(reply) == ErrorCode.KRB_ERR_GENERIC
    assert "req-body.realm" in reply["e-text"].native

    # pkAuthenticator.ctime inside the signed AuthPack (inside the CMS inside the padata):
    # decoded before the signature is checked, so PREAUTH_FAILED naming the AuthPack field.
    good_ctime = _format_time(at.replace(microsecond=0)).encode()
    bad = _replace_once(request().data, b"\x18\x0f" + good_ctime, b"\x18\x0f" + good_ctime[:8] + b"99" + good_ctime[10:])
    reply = realm.send(bad, at=at)
    assert error_code(reply) == ErrorCode.KDC_ERR_PREAUTH_FAILED
    assert "AuthPack.pkAuthenticator.ctime" in reply["e-text"].native

    # The AuthPack's nonce INTEGER claims more octets than its [2] wrapper holds.
    req = request(nonce=0x01020304)
    bad = _replace_once(req.data, b"\xa2\x06\x02\x04\x01\x02\x03\x04", b"\xa2\x06\x02\x05\x01\x02\x03\x04")
    reply = realm.send(bad, at=at)
    assert error_code(reply) == ErrorCode.KDC_ERR_PREAUTH_FAILED
    assert reply["e-text"].native.startswith("malformed PA-PK-AS-REQ: AuthPack")

    good = request()
    assert open_pkinit_reply(good, realm.send(good.data, at=at)).ticket is not None


def test_one_log_line_per_request_with_principal_peer_and_outcome(kdc_realm):
    """Behind kdcd.server.RequestHandler the engine writes no line of its own: the request's one
    line is its outcome event with the principal, the peer and what was issued."""
    import asyncio

    import structlog
    from structlog.testing import capture_logs

    from common.logsetup import Counters
    from kdcd.server import RequestHandler
    from test_kdc_engine_support import pkinit_request
    from test_pki_factories import NOW as PKI_NOW

    realm = kdc_realm
    handler = RequestHandler(realm.engine, realm.policy.realm, Counters())
    assert realm.engine.log_outcomes is False
    at = PKI_NOW + dt.timedelta(seconds=30)

    async def run(data: bytes) -> bytes:
        return handler.handle(data, "192.0.2.7:5123", "tcp")

    good = pkinit_request(realm.world.provisioned, realm.world.device_key, now=at)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        from unittest import mock

        with mock.patch("kdcd.server.datetime") as clock:
            clock.now.return_value = at
            reply = asyncio.run(run(good.data))
            refused = asyncio.run(run(good.data))  # the same authenticator again: a replay
    assert reply[0] == 0x6B and refused[0] == 0x7E
    assert [e["event"] for e in logs] == ["kdc_as_issued", "kdc_refused"]
    issued, replay = logs
    assert issued["log_level"] == "info" and issued["principal"] == str(good.cname)
    assert issued["peer"] == "192.0.2.7:5123" and issued["transport"] == "tcp"
    assert issued["method"] == "pkinit-dh" and issued["result"] == "AS-REP" and "endtime" in issued
    assert replay["log_level"] == "debug" and replay["error"] == "KRB_AP_ERR_REPEAT" and replay["result"] == "KRB-ERROR"
    assert "principal" not in structlog.contextvars.get_contextvars()
