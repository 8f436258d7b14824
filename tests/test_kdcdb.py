"""kdcd.db: the SQLite principal, customer and device database."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import stat
import threading

import pytest

from common.crypto import Key, generate_key, string_to_key
from common.pki import phone_id
from common.principal import NameType, Principal
from kdcd import db as kdb
from kdcd.db import (
    DEFAULT_ENCTYPES,
    LATEST_VERSION,
    AlreadyExists,
    CustomerStatus,
    DatabaseBusy,
    DatabaseError,
    DeviceStatus,
    InvalidValue,
    MasterKeyError,
    NotFound,
    PrincipalAttributes,
    PrincipalDatabase,
    SchemaError,
    SQLiteDatabase,
    ThumbprintMismatch,
    generate_master_key,
    load_master_key,
    save_master_key,
)
from kdcd.db import schema

REALM = "EXAMPLE.TEST"
T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
SC = Principal.parse("sc/sc1.example.test@EXAMPLE.TEST", name_type=NameType.SRV_HST)
GW = Principal.parse("gw/gw1.example.test@EXAMPLE.TEST")
KRBTGT = Principal.krbtgt(REALM)
P1 = phone_id("+15551230001")
P2 = phone_id("+15551230002")
P3 = phone_id("+15551230003")
MAC = "001122aabbcc"
THUMB_A = bytes(range(32))
THUMB_B = bytes(range(1, 33))


def later(**kw) -> dt.datetime:
    return T0 + dt.timedelta(**kw)


@pytest.fixture
def mkey():
    return generate_master_key()


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "kdc.db")


@pytest.fixture
def db(path, mkey):
    handle = SQLiteDatabase.create(path, REALM, master_key=mkey, now=T0)
    yield handle
    handle.close()


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} - {"sqlite_sequence"}


# --- creation, files, pragmas ------------------------------------------------------------------


def test_create_holds_krbtgt_with_default_enctypes(db):
    entry = db.get_principal(KRBTGT)
    assert entry.kvno == 1
    assert entry.enctypes == DEFAULT_ENCTYPES
    assert entry.attributes.is_service and entry.attributes.requires_preauth
    assert entry.principal.name_type == NameType.SRV_INST
    assert entry.created == T0 and entry.modified == T0
    assert db.realm == REALM and db.schema_version() == LATEST_VERSION
    assert isinstance(db, PrincipalDatabase)


def test_database_files_are_0600_wal_and_foreign_keys(db, path):
    db.add_customer(now=T0, phone_ids=[P1])
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(path + suffix).st_mode) == 0o600, suffix
    conn = db._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_create_under_a_permissive_umask_is_still_0600(path, mkey):
    old = os.umask(0)
    try:
        SQLiteDatabase.create(path, REALM, master_key=mkey, now=T0).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_create_refuses_existing_file_and_bad_realm(db, path, mkey, tmp_path):
    with pytest.raises(AlreadyExists):
        SQLiteDatabase.create(path, REALM, master_key=mkey, now=T0)
    for realm in ("", "A/B", "A@B"):
        target = tmp_path / "other.db"
        with pytest.raises(InvalidValue):
            SQLiteDatabase.create(target, realm, master_key=mkey, now=T0)
        assert not target.exists()


def test_create_failure_leaves_no_file(tmp_path, mkey):
    target = tmp_path / "k.db"
    with pytest.raises(InvalidValue):
        SQLiteDatabase.create(target, REALM, master_key=mkey, now=T0, krbtgt_enctypes=[99])
    assert list(tmp_path.iterdir()) == []


def test_open_errors(tmp_path, db, path, mkey):
    with pytest.raises(NotFound):
        SQLiteDatabase.open(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an sqlite database at all" * 100)
    with pytest.raises(SchemaError):
        SQLiteDatabase.open(junk)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(SchemaError, match="not a kerbtel database"):
        SQLiteDatabase.open(empty)
    db._conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(SchemaError, match="understands up to"):
        SQLiteDatabase.open(path)


def test_open_without_settings_is_a_schema_error(db, path):
    db._conn.execute("DELETE FROM meta WHERE name = 'realm'")
    with pytest.raises(SchemaError, match="realm"):
        SQLiteDatabase.open(path)


def test_closed_handle_raises_database_error(db):
    db.close()
    with pytest.raises(DatabaseError):
        db.list_customers()


# --- migrations ------------------------------------------------------------------------------


def test_migrations_from_empty_file(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert schema.user_version(conn) == 0
    conn.execute("BEGIN IMMEDIATE")
    assert schema.migrate(conn) == 0
    conn.execute("COMMIT")
    assert schema.user_version(conn) == LATEST_VERSION == len(schema.MIGRATIONS)
    assert tables(conn) == {"meta", "principals", "principal_keys", "customers", "customer_phones", "devices"}


@pytest.mark.parametrize("start", range(1, LATEST_VERSION))
def test_migrations_step_by_step_reach_the_same_schema(tmp_path, start):
    def schema_sql(conn):
        return sorted(r for r in conn.execute("SELECT type, name, sql FROM sqlite_master"))

    a = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    schema.migrate(a)
    b = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    schema.migrate(b, start)
    assert schema.user_version(b) == start
    assert schema.migrate(b) == start
    assert schema_sql(a) == schema_sql(b)


def _downgrade_to_v1(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = OFF")
    for table in ("devices", "customer_phones", "customers"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def test_upgrade_from_version_1_keeps_principals_and_keys(db, path, mkey):
    db.add_principal(SC, now=T0, attributes=PrincipalAttributes(is_service=True))
    before = db.get_principal(SC)
    db.close()
    _downgrade_to_v1(path)
    with pytest.raises(SchemaError, match="version 1"):
        SQLiteDatabase.open(path, master_key=mkey, upgrade=False)
    with SQLiteDatabase.open(path, master_key=mkey) as upgraded:
        assert upgraded.schema_version() == LATEST_VERSION
        assert upgraded.get_principal(SC) == before
        assert upgraded.add_customer(now=T0, phone_ids=[P1]).id == 1
        assert upgraded.record_device_seen(MAC, THUMB_A, now=T0).mac == MAC


def test_failed_migration_step_leaves_previous_version(db, path, mkey, monkeypatch):
    db.close()
    _downgrade_to_v1(path)

    def broken(conn):
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk on fire")

    monkeypatch.setattr(schema, "MIGRATIONS", (schema.MIGRATIONS[0], broken, *schema.MIGRATIONS[2:]))
    with pytest.raises(DatabaseError, match="disk on fire"):
        SQLiteDatabase.open(path, master_key=mkey)
    conn = sqlite3.connect(path)
    assert schema.user_version(conn) == 1
    assert "half_done" not in tables(conn)
    monkeypatch.undo()
    with SQLiteDatabase.open(path, master_key=mkey) as upgraded:
        assert upgraded.schema_version() == LATEST_VERSION


# --- master key ------------------------------------------------------------------------------


def test_master_key_stash_roundtrip_and_checks(tmp_path, db, path, mkey):
    stash = tmp_path / "kdc.db.mkey"
    save_master_key(stash, mkey, REALM)
    assert stat.S_IMODE(stash.stat().st_mode) == 0o600
    assert load_master_key(stash) == mkey
    db.close()
    with SQLiteDatabase.open(path, master_key=load_master_key(stash)) as again:
        assert again.get_principal(KRBTGT).kvno == 1
    with pytest.raises(MasterKeyError, match="does not match"):
        SQLiteDatabase.open(path, master_key=generate_master_key())
    with pytest.raises(MasterKeyError, match="kvno"):
        SQLiteDatabase.open(path, master_key=kdb.MasterKey(mkey.key, 2))
    os.chmod(stash, 0o644)
    with pytest.raises(MasterKeyError, match="0600"):
        load_master_key(stash)
    with pytest.raises(NotFound):
        load_master_key(tmp_path / "none.mkey")
    (tmp_path / "bad.mkey").write_bytes(b"\x05\x02garbage")
    os.chmod(tmp_path / "bad.mkey", 0o600)
    with pytest.raises(MasterKeyError):
        load_master_key(tmp_path / "bad.mkey")


def test_keys_are_not_stored_in_the_clear(db, path):
    key = generate_key(18)
    db.add_principal(GW, now=T0, keys=[key])
    db.close()
    with open(path, "rb") as fh:
        raw = fh.read()
    for suffix in ("-wal",):
        if os.path.exists(path + suffix):
            raw += open(path + suffix, "rb").read()
    assert key.contents not in raw


def test_wrapped_key_moved_to_another_principal_is_refused(db):
    known = db.add_principal(GW, now=T0, keys=[generate_key(18)])
    assert known.kvno == 1
    conn = db._conn
    wrapped = conn.execute(
        "SELECT wrapped FROM principal_keys JOIN principals ON principals.id = principal_id"
        " WHERE name = ? AND enctype = 18",
        (str(GW),),
    ).fetchone()[0]
    conn.execute(
        "UPDATE principal_keys SET wrapped = ? WHERE enctype = 18 AND principal_id ="
        " (SELECT id FROM principals WHERE name = ?)",
        (wrapped, str(KRBTGT)),
    )
    with pytest.raises(MasterKeyError, match="another record"):
        db.get_principal(KRBTGT)
    conn.execute("UPDATE principal_keys SET wrapped = ? WHERE principal_id = 1 AND enctype = 18", (b"x" * 60,))
    with pytest.raises(MasterKeyError):
        db.get_principal(KRBTGT)


def test_without_master_key_only_key_operations_fail(db, path):
    db.add_principal(SC, now=T0)
    db.close()
    with SQLiteDatabase.open(path) as csr:
        assert not csr.has_master_key
        assert [str(e.principal) for e in csr.list_principals()] == [str(KRBTGT), str(SC)]
        assert csr.get_principal(SC, with_keys=False).keys == ()
        assert csr.add_customer(now=T0, phone_ids=[P1]).active
        for call in (
            lambda: csr.get_principal(SC),
            lambda: csr.add_principal(GW, now=T0),
            lambda: csr.rotate_keys(SC, now=T0),
            lambda: csr.list_principals(with_keys=True),
        ):
            with pytest.raises(MasterKeyError):
                call()


# --- principals ------------------------------------------------------------------------------


def test_add_random_keys_roundtrip(db, path, mkey):
    entry = db.add_principal(SC, now=T0, attributes=PrincipalAttributes(is_service=True), max_life=3600)
    assert entry.kvno == 1 and entry.enctypes == DEFAULT_ENCTYPES
    assert [len(k.key.contents) for k in entry.keys] == [32, 16, 32, 16, 24]
    assert all(k.salt is None and k.expires is None and k.created == T0 for k in entry.keys)
    assert entry.max_life == 3600 and entry.attributes.is_service
    assert entry.principal == SC  # the name type is kept
    db.close()
    with SQLiteDatabase.open(path, master_key=mkey) as again:
        assert again.get_principal(SC) == entry
        # lookups ignore the name type, as Kerberos does
        assert again.get_principal(SC.with_name_type(NameType.PRINCIPAL)) == entry


def test_password_keys_equal_string_to_key_with_default_salt(db):
    entry = db.add_principal(GW, now=T0, password="s3cret pässword", enctypes=[18, 20, 16])
    salt = "EXAMPLE.TESTgwgw1.example.test"
    assert GW.default_salt() == salt
    for k in entry.keys:
        assert k.key == string_to_key(k.enctype, "s3cret pässword", salt)
        assert k.salt == salt.encode()
    assert entry.enctypes == (18, 20, 16)


def test_explicit_keys_roundtrip(db):
    keys = [generate_key(17), generate_key(19)]
    entry = db.add_principal(GW, now=T0, keys=keys)
    assert [k.key for k in entry.keys] == keys


def test_key_repr_never_shows_bytes(db):
    entry = db.add_principal(GW, now=T0, keys=[generate_key(18)])
    assert entry.keys[0].key.contents.hex() not in repr(entry)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"enctypes": [18, 99]}, "unsupported enctype 99"),
        ({"enctypes": []}, "non-empty"),
        ({"password": ""}, "non-empty"),
        ({"password": "x", "keys": [Key(18, bytes(32))]}, "not both"),
        ({"keys": [Key(18, bytes(16))]}, "32 bytes"),
        ({"keys": [Key(18, bytes(32)), Key(18, bytes(32))]}, "same enctype"),
        ({"keys": []}, "at least one"),
        ({"max_life": 0}, "max_life"),
        ({"max_life": -5}, "max_life"),
        ({"max_renewable_life": 1.5}, "whole seconds"),
        ({"attributes": {"is_service": True}}, "PrincipalAttributes"),
    ],
)
def test_add_principal_invalid_values_store_nothing(db, kwargs, message):
    with pytest.raises(InvalidValue, match=message):
        db.add_principal(GW, now=T0, **kwargs)
    with pytest.raises(NotFound):
        db.get_principal(GW)


def test_add_principal_errors(db):
    db.add_principal(GW, now=T0)
    with pytest.raises(AlreadyExists):
        db.add_principal(GW.with_name_type(NameType.SRV_HST), now=T0)
    with pytest.raises(InvalidValue, match="not in realm"):
        db.add_principal(Principal.parse("gw/x@OTHER.TEST"), now=T0)
    with pytest.raises(InvalidValue, match="expected a Principal"):
        db.add_principal("gw/x@EXAMPLE.TEST", now=T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="datetime"):
        db.add_principal(SC, now=1700000000)  # type: ignore[arg-type]


def test_naive_now_is_utc_and_microseconds_dropped(db):
    entry = db.add_principal(GW, now=dt.datetime(2025, 3, 1, 12, 0, 0, 999))
    assert entry.created == T0


def test_list_principals_sorted(db):
    db.add_principal(SC, now=T0)
    db.add_principal(GW, now=T0)
    names = [str(e.principal) for e in db.list_principals()]
    assert names == sorted(names) and len(names) == 3
    assert all(e.keys == () for e in db.list_principals())
    assert all(e.keys for e in db.list_principals(with_keys=True))


def test_rotate_keeps_old_keys_for_grace_period(db):
    first = db.add_principal(SC, now=T0, max_life=3600, max_renewable_life=0)
    rotated = db.rotate_keys(SC, now=later(hours=1), grace=7200)
    assert rotated.kvno == 2 and rotated.modified == later(hours=1)
    assert {k.kvno for k in rotated.keys} == {1, 2}
    assert rotated.enctypes == first.enctypes
    assert [k.kvno for k in rotated.keys][:5] == [2] * 5  # current first
    assert all(k.expires == later(hours=3) for k in rotated.keys if k.kvno == 1)
    assert {k.key for k in rotated.current_keys}.isdisjoint({k.key for k in first.keys})
    old = db.get_key(SC, 18, kvno=1, now=later(hours=2))
    assert old.key == first.keys[0].key
    assert db.get_key(SC, 18, kvno=1).key == old.key  # without now: no expiry filter
    with pytest.raises(NotFound):
        db.get_key(SC, 18, kvno=1, now=later(hours=3))
    assert db.get_key(SC, 18, now=later(days=365)).kvno == 2
    # the next rotation drops keys whose grace ended
    third = db.rotate_keys(SC, now=later(hours=4), grace=3600)
    assert third.kvno == 3 and {k.kvno for k in third.keys} == {2, 3}
    assert db.purge_expired_keys(later(hours=4)) == 0
    assert db.purge_expired_keys(later(hours=5)) == 5
    assert {k.kvno for k in db.get_principal(SC).keys} == {3}
    # grace 0: the superseded keys go at once
    assert {k.kvno for k in db.rotate_keys(SC, now=later(hours=6), grace=0).keys} == {4}


def test_rotate_default_grace_is_longest_ticket_life(db):
    db.add_principal(SC, now=T0, max_life=3600, max_renewable_life=86400)
    rotated = db.rotate_keys(SC, now=T0)
    assert {k.expires for k in rotated.keys if k.kvno == 1} == {later(days=1)}


def test_rotate_with_password_and_new_enctypes(db):
    db.add_principal(GW, now=T0, password="one")
    rotated = db.rotate_keys(GW, now=T0, password="two", enctypes=[20])
    assert rotated.enctypes == (20,)
    assert rotated.current_keys[0].key == string_to_key(20, "two", GW.default_salt())
    with pytest.raises(NotFound):
        db.rotate_keys(SC, now=T0)
    with pytest.raises(InvalidValue):
        db.rotate_keys(GW, now=T0, grace=-1)
    assert db.get_principal(GW).kvno == 2  # the failed calls changed nothing


def test_strongest_key_follows_preference(db):
    db.add_principal(SC, now=T0, enctypes=[17, 20, 16])
    assert db.strongest_key(SC).enctype == 17  # default preference 18, 17, ...
    assert db.strongest_key(SC, [20, 17]).enctype == 20
    assert db.strongest_key(SC, [18, 19, 16]).enctype == 16
    with pytest.raises(NotFound):
        db.strongest_key(SC, [18, 19])
    with pytest.raises(NotFound):
        db.strongest_key(SC, [17], kvno=7)


def test_modify_principal(db):
    db.add_principal(GW, now=T0)
    entry = db.modify_principal(
        GW, now=later(minutes=5), attributes=PrincipalAttributes(disabled=True, requires_preauth=False), max_life=60
    )
    assert entry.attributes.disabled and not entry.attributes.requires_preauth
    assert entry.max_life == 60 and entry.modified == later(minutes=5) and entry.created == T0
    with pytest.raises(InvalidValue):
        db.modify_principal(GW, now=T0, max_renewable_life=-1)
    with pytest.raises(NotFound):
        db.modify_principal(SC, now=T0)


def test_delete_principal(db):
    db.add_principal(GW, now=T0)
    db.delete_principal(GW)
    with pytest.raises(NotFound):
        db.get_principal(GW)
    assert db._conn.execute("SELECT count(*) FROM principal_keys WHERE principal_id = 2").fetchone()[0] == 0
    with pytest.raises(NotFound):
        db.delete_principal(GW)
    with pytest.raises(InvalidValue, match="ticket-granting"):
        db.delete_principal(KRBTGT)


# --- customers -------------------------------------------------------------------------------


def test_add_and_lookup_customer(db):
    customer = db.add_customer(now=T0, phone_ids=[P1, P2], label="acct 42", options={"caller_id": True})
    assert customer.id == 1 and customer.generation == 1 and customer.active
    assert customer.phone_ids == (P1, P2) and customer.label == "acct 42"
    assert dict(customer.options) == {"caller_id": True}
    assert db.lookup_phone(P2) == customer == db.get_customer(1)
    with pytest.raises(NotFound):
        db.lookup_phone(P3)
    with pytest.raises(NotFound):
        db.get_customer(2)
    with pytest.raises(TypeError):
        customer.options["caller_id"] = False  # read-only


def test_generation_counts_every_change(db):
    c = db.add_customer(now=T0, phone_ids=[P1])
    steps = [
        lambda: db.set_customer_status(c.id, "suspended", now=later(seconds=1)),
        lambda: db.set_customer_status(c.id, CustomerStatus.ACTIVE, now=later(seconds=2)),
        lambda: db.set_customer_options(c.id, {"international": False}, now=later(seconds=3)),
        lambda: db.set_customer_options(c.id, {"caller_id": True}, now=later(seconds=4), merge=True),
        lambda: db.set_customer_label(c.id, "new", now=later(seconds=5)),
        lambda: db.add_phone(c.id, P2, now=later(seconds=6)),
        lambda: db.remove_phone(c.id, P1, now=later(seconds=7)),
    ]
    for i, step in enumerate(steps, start=2):
        updated = step()
        assert updated.generation == i
        assert updated.modified == later(seconds=i - 1)
    final = db.get_customer(c.id)
    assert final.phone_ids == (P2,) and dict(final.options) == {"caller_id": True, "international": False}
    # no-ops are not changes
    assert db.set_customer_status(c.id, "active", now=later(hours=1)).generation == 8
    assert db.set_customer_label(c.id, "new", now=later(hours=1)).generation == 8
    assert db.set_customer_options(c.id, {"caller_id": True}, now=later(hours=1), merge=True).generation == 8
    assert db.get_customer(c.id).modified == later(seconds=7)
    # merge with None removes an option
    assert dict(db.set_customer_options(c.id, {"caller_id": None}, now=later(hours=2), merge=True).options) == {
        "international": False
    }


def test_terminated_is_final(db):
    c = db.add_customer(now=T0, phone_ids=[P1])
    assert db.set_customer_status(c.id, "terminated", now=T0).status is CustomerStatus.TERMINATED
    assert not db.lookup_phone(P1).active
    with pytest.raises(InvalidValue, match="never reactivated"):
        db.set_customer_status(c.id, "active", now=T0)
    with pytest.raises(InvalidValue, match="terminated"):
        db.add_phone(c.id, P2, now=T0)
    # the number can be released and given to a new customer
    db.remove_phone(c.id, P1, now=T0)
    assert db.add_customer(now=T0, phone_ids=[P1]).id == 2


def test_phone_id_belongs_to_one_customer_and_failures_store_nothing(db):
    db.add_customer(now=T0, phone_ids=[P1])
    with pytest.raises(AlreadyExists, match="customer 1"):
        db.add_customer(now=T0, phone_ids=[P2, P1])
    assert [c.id for c in db.list_customers()] == [1]
    with pytest.raises(NotFound):
        db.lookup_phone(P2)  # rolled back with the failed customer
    c2 = db.add_customer(now=T0, phone_ids=[P2])
    assert c2.id == 2  # the failed add never existed
    with pytest.raises(AlreadyExists):
        db.add_phone(c2.id, P1, now=T0)
    with pytest.raises(AlreadyExists):
        db.add_phone(c2.id, P2, now=T0)
    with pytest.raises(NotFound):
        db.remove_phone(c2.id, P1, now=T0)
    assert db.get_customer(c2.id).generation == 1
    # ids of customers that existed are never reused (AUTOINCREMENT)
    db._conn.execute("DELETE FROM customers WHERE id = 2")
    assert db.add_customer(now=T0, phone_ids=[P3]).id == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"phone_ids": [b"short"]}, "20 bytes"),
        ({"phone_ids": ["+15551230001"]}, "20 bytes"),
        ({"phone_ids": P1}, "sequence"),
        ({"phone_ids": [P1, P1]}, "twice"),
        ({"label": "x" * 201}, "more than 200"),
        ({"label": "a\nb"}, "control"),
        ({"options": {"Caller": True}}, "must match"),
        ({"options": {"rate": 1.5}}, "bool, int, string"),
        ({"options": {"list": [1]}}, "bool, int, string"),
        ({"options": {f"o{i}": 1 for i in range(65)}}, "more than 64"),
        ({"options": {"big": "x" * 5000}}, "4096"),
        ({"options": ["caller_id"]}, "mapping"),
        ({"status": "closed"}, "not one of"),
    ],
)
def test_add_customer_invalid_values(db, kwargs, message):
    with pytest.raises(InvalidValue, match=message):
        db.add_customer(now=T0, **kwargs)
    assert db.list_customers() == []


def test_customer_id_validation(db):
    for bad in (0, -1, True, "1"):
        with pytest.raises(InvalidValue):
            db.get_customer(bad)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        db.set_customer_status(5, "active", now=T0)


def test_list_and_phone_id_queries(db):
    a = db.add_customer(now=T0, phone_ids=[P1, P2])
    b = db.add_customer(now=T0, phone_ids=[P3], status="suspended")
    assert [c.id for c in db.list_customers()] == [a.id, b.id]
    assert [c.id for c in db.list_customers("suspended")] == [b.id]
    assert db.list_customers(CustomerStatus.TERMINATED) == []
    with pytest.raises(InvalidValue):
        db.list_customers("gone")
    unknown = phone_id("+4930123456")
    assert [c.id for c in db.customers_for_phone_ids([unknown, P3, P2, P1])] == [b.id, a.id]
    assert db.customers_for_phone_ids([unknown]) == []


# --- devices ---------------------------------------------------------------------------------


def test_record_device_seen(db):
    first = db.record_device_seen("00:11:22:AA:BB:CC", THUMB_A, now=T0, peer="192.0.2.7:5000")
    assert first.mac == MAC and first.thumbprint == THUMB_A and first.status is DeviceStatus.OK
    assert first.first_seen == first.last_seen == T0 and first.last_peer == "192.0.2.7:5000"
    again = db.record_device_seen(bytes.fromhex(MAC), THUMB_A, now=later(hours=1), peer="192.0.2.8:5000")
    assert again.first_seen == T0 and again.last_seen == later(hours=1) and again.last_peer == "192.0.2.8:5000"
    # an older sighting (another worker, late) does not move last_seen back
    late = db.record_device_seen("0011.22aa.bbcc", THUMB_A, now=later(minutes=30), peer="198.51.100.1:1")
    assert late.last_seen == later(hours=1) and late.last_peer == "192.0.2.8:5000"
    assert db.get_device("00-11-22-aa-bb-cc") == late
    assert db.list_devices() == [late]


def test_thumbprint_mismatch_changes_nothing(db):
    db.record_device_seen(MAC, THUMB_A, now=T0)
    with pytest.raises(ThumbprintMismatch) as info:
        db.record_device_seen(MAC, THUMB_B, now=later(hours=1))
    assert info.value.stored == THUMB_A and info.value.presented == THUMB_B
    assert isinstance(info.value, InvalidValue)
    assert db.get_device(MAC).last_seen == T0
    replaced = db.record_device_seen(MAC, THUMB_B, now=later(hours=2), replace_thumbprint=True)
    assert replaced.thumbprint == THUMB_B


def test_mark_bad_before_and_after_sighting(db):
    bad = db.mark_device_bad("aa:bb:cc:dd:ee:ff", now=T0, reason="clone reported by head-end")
    assert bad.status is DeviceStatus.BAD and bad.thumbprint is None and bad.first_seen is None
    seen = db.record_device_seen("aabbccddeeff", THUMB_A, now=later(hours=1))
    assert seen.status is DeviceStatus.BAD and seen.thumbprint == THUMB_A
    assert seen.status_reason == "clone reported by head-end"
    ok = db.set_device_status("aabbccddeeff", "ok", now=later(hours=2))
    assert ok.status is DeviceStatus.OK and ok.thumbprint == THUMB_A
    with pytest.raises(InvalidValue):
        db.set_device_status(MAC, "cloned", now=T0)


def test_link_device_to_customer(db):
    c = db.add_customer(now=T0, phone_ids=[P1])
    db.record_device_seen(MAC, THUMB_A, now=T0)
    assert db.link_device(MAC, c.id, now=T0).customer_id == c.id
    assert db.get_customer(c.id).generation == 1  # the customer record itself did not change
    assert db.link_device(MAC, None, now=T0).customer_id is None
    with pytest.raises(NotFound):
        db.link_device(MAC, 99, now=T0)
    with pytest.raises(NotFound):
        db.link_device("ffffffffffff", c.id, now=T0)


@pytest.mark.parametrize(
    "call",
    [
        lambda db: db.record_device_seen("00112233445", THUMB_A, now=T0),
        lambda db: db.record_device_seen("gg1122334455", THUMB_A, now=T0),
        lambda db: db.record_device_seen(b"\x00" * 5, THUMB_A, now=T0),
        lambda db: db.record_device_seen(MAC, b"\x00" * 20, now=T0),
        lambda db: db.record_device_seen(MAC, THUMB_A, now=T0, peer=""),
        lambda db: db.record_device_seen(MAC, THUMB_A, now=T0, peer="x" * 200),
        lambda db: db.get_device(12),
    ],
)
def test_device_invalid_values(db, call):
    with pytest.raises(InvalidValue):
        call(db)
    assert db.list_devices() == []


def test_get_unknown_device(db):
    with pytest.raises(NotFound):
        db.get_device(MAC)


# --- concurrency -----------------------------------------------------------------------------


def test_reader_is_not_blocked_by_a_writer_and_writers_queue(db, path, mkey):
    c = db.add_customer(now=T0, phone_ids=[P1])
    reader = SQLiteDatabase.open(path)
    other_writer = SQLiteDatabase.open(path, busy_timeout=0.1)
    try:
        with db._transaction(write=True) as conn:
            conn.execute("UPDATE customers SET status = 'suspended', generation = generation + 1 WHERE id = ?", (c.id,))
            # WAL: the reader sees the last committed state while the write is open
            assert reader.lookup_phone(P1).active
            with pytest.raises(DatabaseBusy):
                other_writer.add_customer(now=T0, phone_ids=[P2])
        assert reader.lookup_phone(P1).status is CustomerStatus.SUSPENDED
        assert other_writer.add_customer(now=T0, phone_ids=[P2]).id == 2
    finally:
        reader.close()
        other_writer.close()


def test_threads_with_own_handles(db, path, mkey):
    phones = [phone_id(f"+1555000{i:04d}") for i in range(40)]
    errors: list[BaseException] = []
    done = threading.Event()

    def writer():
        try:
            with SQLiteDatabase.open(path) as w:
                for i, pid in enumerate(phones):
                    cid = w.add_customer(now=T0, phone_ids=[pid]).id
                    if i % 2:
                        w.set_customer_status(cid, "suspended", now=T0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader():
        try:
            with SQLiteDatabase.open(path, master_key=mkey) as r:
                while not done.is_set():
                    for pid in phones[:5]:
                        try:
                            r.lookup_phone(pid)
                        except NotFound:
                            pass
                    r.get_principal(KRBTGT)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(db.list_customers()) == 40
    assert len(db.list_customers("suspended")) == 20


def test_concurrent_open_of_an_old_database_upgrades_once(db, path, mkey):
    db.close()
    _downgrade_to_v1(path)
    versions = []
    errors = []

    def opener():
        try:
            with SQLiteDatabase.open(path, master_key=mkey) as handle:
                versions.append(handle.schema_version())
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert versions == [LATEST_VERSION] * 4
