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
