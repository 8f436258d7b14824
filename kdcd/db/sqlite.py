"""The SQLite backend of `PrincipalDatabase` (stdlib sqlite3).

Concurrency model: every process (each KDC worker, each CLI invocation) opens its own
`SQLiteDatabase`; one object is used by one thread. The file is in WAL mode, so readers never
block and are never blocked by the single writer. Every method is one short transaction:
reads in `BEGIN` (a consistent snapshot across the statements of one call), writes in
`BEGIN IMMEDIATE` (the write lock is taken up front, so two writers queue on the busy timeout
instead of deadlocking on a lock upgrade). Anything failing inside a transaction rolls it back.

The file is created with mode 0600 (SQLite gives its -wal and -shm files the same mode).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from common.crypto import Key, UnsupportedEnctypeError, generate_key, get_enctype, string_to_key
from common.principal import Principal

from .errors import (
    AlreadyExists,
    DatabaseBusy,
    DatabaseError,
    InvalidValue,
    MasterKeyError,
    NotFound,
    SchemaError,
    ThumbprintMismatch,
)
from .masterkey import MasterKey
from .model import (
    DEFAULT_ENCTYPES,
    DEFAULT_MAX_LIFE,
    DEFAULT_MAX_RENEWABLE_LIFE,
    Customer,
    CustomerStatus,
    Device,
    DeviceStatus,
    KeyEntry,
    PrincipalAttributes,
    PrincipalEntry,
    check_duration,
    check_enctype,
    check_key,
    check_label,
    check_options,
    check_peer,
    check_phone_id,
    check_status,
    check_thumbprint,
    decode_options,
    encode_options,
    from_seconds,
    normalise_mac,
    to_seconds,
)
from .schema import LATEST_VERSION, migrate, user_version

__all__ = ["SQLiteDatabase"]

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a writer waits for another writer's lock
_MAX_KVNO = 0xFFFFFFFF


def _translate(exc: sqlite3.Error) -> DatabaseError:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return DatabaseBusy(f"database is locked by another writer: {exc}")
    if name.startswith("SQLITE_NOTADB"):
        return SchemaError(f"not a kerbtel database: {exc}")
    if isinstance(exc, sqlite3.IntegrityError):
        return InvalidValue(f"refused by a database constraint: {exc}")
    return DatabaseError(f"sqlite: {exc}")


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise _translate(exc) from None
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise DatabaseError(f"{path}: cannot switch to WAL journal mode (got {mode!r})")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
    except sqlite3.Error as exc:
        conn.close()
        raise _translate(exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _check_id(customer_id: int) -> int:
    if isinstance(customer_id, bool) or not isinstance(customer_id, int) or customer_id <= 0:
        raise InvalidValue(f"customer id must be a positive integer, got {customer_id!r}")
    return customer_id


UNWRAPPED_CACHE_SIZE = 4096  # unwrapped keys kept per database handle (cleared when full)
PRINCIPAL_CACHE_SIZE = 4096  # principal rows kept per handle while data_version is unchanged


class SQLiteDatabase:
    """A handle on one kerbtel database file. Use `create()` or `open()`; close when done."""

    def __init__(self, conn: sqlite3.Connection, path: str, realm: str, master_key: MasterKey | None) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._realm = realm
        self._master = master_key
        # Unwrapped keys by their whole stored record (name, kvno, enctype, master kvno, wrapped
        # bytes): a changed row is a new entry, so nothing ever needs invalidating. Saves the
        # master-key decrypts (~0.1 ms per principal) on every KDC request.
        self._unwrapped: dict[tuple, Key] = {}
        # Loaded principal rows and the customers behind certificates' phone-ID lists, valid
        # while SQLite's data_version is unchanged: any commit by another connection (`kerbtel
        # principal|customer` in another process, another worker) changes it, and our own write
        # transactions clear the caches, so a change applies to the very next request. Device
        # rows are not cached (the KDC writes them).
        self._principals: dict[tuple[str, bool], PrincipalEntry] = {}
        self._customers_by_phones: dict[tuple[bytes, ...], tuple[Customer, ...]] = {}
        self._cache_version: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        realm: str,
        *,
        master_key: MasterKey,
        now: dt.datetime,
        krbtgt_enctypes: Sequence[int] = DEFAULT_ENCTYPES,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> SQLiteDatabase:
        """Create a new database (mode 0600) for `realm` holding krbtgt/REALM@REALM with random keys."""
        path = os.fspath(path)
        if not isinstance(realm, str) or not realm or any(c in realm for c in "/@\\") or not realm.isprintable():
            raise InvalidValue(f"invalid realm {realm!r}")
        if not isinstance(master_key, MasterKey):
            raise InvalidValue("a new database needs a MasterKey (kdcd.db.generate_master_key)")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            raise AlreadyExists(f"{path} already exists") from None
        except OSError as exc:
            raise DatabaseError(f"cannot create {path}: {exc.strerror}") from None
        try:
            os.fchmod(fd, 0o600)  # the umask may have narrowed it; never wider
        finally:
            os.close(fd)
        conn = None
        try:
            conn = _connect(path, busy_timeout)
            db = cls(conn, path, realm, master_key)
            with db._transaction(write=True) as c:
                migrate(c)
                stamp = to_seconds(now)
                c.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [
                        ("realm", realm),
                        ("created", str(stamp)),
                        ("master_kvno", str(master_key.kvno)),
                        ("master_enctype", str(master_key.key.enctype)),
                        ("master_check", master_key.check_value().hex()),
                    ],
                )
                db._insert_principal(
                    c,
                    Principal.krbtgt(realm),
                    stamp,
                    db._make_keys(Principal.krbtgt(realm), None, None, krbtgt_enctypes),
                    PrincipalAttributes(requires_preauth=True, is_service=True),
                    DEFAULT_MAX_LIFE,
                    DEFAULT_MAX_RENEWABLE_LIFE,
                )
            return db
        except BaseException:
            if conn is not None:
                conn.close()
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(path + suffix)
                except FileNotFoundError:
                    pass
            raise

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        master_key: MasterKey | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        upgrade: bool = True,
    ) -> SQLiteDatabase:
        """Open an existing database, upgrading its schema unless `upgrade=False`.

        Without `master_key`, customer and device operations work and key operations raise
        `MasterKeyError` (a CSR tool needs no access to principal keys).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise NotFound(f"no database at {path} (create it with `kerbtel db init`)")
        conn = _connect(path, busy_timeout)
        try:
            db = cls(conn, path, "", master_key)
            version = user_version(conn)
            if version > LATEST_VERSION:
                raise SchemaError(
                    f"{path} has schema version {version}; this kerbtel understands up to {LATEST_VERSION}"
                )
            if version == 0:
                raise SchemaError(f"{path} is not a kerbtel database (schema version 0)")
            if version < LATEST_VERSION:
                if not upgrade:
                    raise SchemaError(f"{path} has schema version {version}, {LATEST_VERSION} is needed")
                with db._transaction(write=True) as c:
                    migrate(c)  # re-reads the version under the write lock: another process may have won
            with db._transaction(write=False) as c:
                meta = dict(c.execute("SELECT name, value FROM meta").fetchall())
            missing = {"realm", "master_kvno", "master_enctype", "master_check"} - meta.keys()
            if missing:
                raise SchemaError(f"{path} lacks database settings: {', '.join(sorted(missing))}")
            db._realm = meta["realm"]
            if master_key is not None:
                if int(meta["master_kvno"]) != master_key.kvno or int(meta["master_enctype"]) != master_key.key.enctype:
                    raise MasterKeyError(
                        f"{path} needs master key kvno {meta['master_kvno']} enctype {meta['master_enctype']}, "
                        f"the stash has kvno {master_key.kvno} enctype {master_key.key.enctype}"
                    )
                if not master_key.matches(bytes.fromhex(meta["master_check"])):
                    raise MasterKeyError(f"the master key does not match {path}")
            return db
        except sqlite3.Error as exc:
            conn.close()
            raise _translate(exc) from None
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SQLiteDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def realm(self) -> str:
        return self._realm

    @property
    def has_master_key(self) -> bool:
        return self._master is not None

    def schema_version(self) -> int:
        with self._transaction(write=False) as c:
            return user_version(c)

    def counts(self) -> dict[str, int]:
        """Number of principals, customers (by status), phone IDs and devices, for `kerbtel db info`."""
        with self._transaction(write=False) as c:
            out = {
                "principals": c.execute("SELECT count(*) FROM principals").fetchone()[0],
                "keys": c.execute("SELECT count(*) FROM principal_keys").fetchone()[0],
                "phone_ids": c.execute("SELECT count(*) FROM customer_phones").fetchone()[0],
                "devices": c.execute("SELECT count(*) FROM devices").fetchone()[0],
                "bad_devices": c.execute("SELECT count(*) FROM devices WHERE status = 'bad'").fetchone()[0],
            }
            for status in CustomerStatus:
                out[f"customers_{status.value}"] = c.execute(
                    "SELECT count(*) FROM customers WHERE status = ?", (status.value,)
                ).fetchone()[0]
            return out

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        if conn is None:
            raise DatabaseError("the database handle is closed")
        if write:
            self._forget_cached_rows()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            raise _translate(exc) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:  # pragma: no cover - rollback of a broken connection
                    pass
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc) from None
            raise

    def _forget_cached_rows(self) -> None:
        self._principals.clear()
        self._customers_by_phones.clear()
        self._cache_version = None

    def _cache_version_now(self, conn: sqlite3.Connection) -> int:
        """SQLite's data_version, dropping the cached rows if another connection committed."""
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise _translate(exc) from None
        if version != self._cache_version:
            self._principals.clear()
            self._customers_by_phones.clear()
            self._cache_version = version
        return version

    # -- principals --------------------------------------------------------------------------

    def _name(self, principal: Principal) -> str:
        if not isinstance(principal, Principal):
            raise InvalidValue(f"expected a Principal, got {type(principal).__name__}")
        if principal.realm != self._realm:
            raise InvalidValue(f"principal {principal} is not in realm {self._realm}")
        return str(Principal(principal.components, principal.realm))  # the name type is not part of the key

    def _require_master(self) -> MasterKey:
        if self._master is None:
            raise MasterKeyError("this operation needs the master key; open the database with master_key=")
        return self._master

    def _make_keys(
        self,
        principal: Principal,
        password: str | None,
        keys: Sequence[Key] | None,
        enctypes: Sequence[int],
    ) -> list[tuple[Key, bytes | None]]:
        if password is not None and keys is not None:
            raise InvalidValue("give either a password or keys, not both")
        if keys is not None:
            checked = [check_key(k) for k in keys]
            if not checked:
                raise InvalidValue("at least one key is required")
            if len({k.enctype for k in checked}) != len(checked):
                raise InvalidValue("two keys of the same enctype")
            return [(k, None) for k in checked]
        if isinstance(enctypes, (int, str)) or not enctypes:
            raise InvalidValue("enctypes must be a non-empty sequence of enctype numbers")
        numbers = list(dict.fromkeys(check_enctype(e) for e in enctypes))
        if password is not None:
            if not isinstance(password, str) or not password:
                raise InvalidValue("the password must be a non-empty string")
            salt = principal.default_salt()
            return [(string_to_key(e, password, salt), salt.encode("utf-8")) for e in numbers]
        return [(generate_key(e), None) for e in numbers]

    def _store_keys(
        self, c: sqlite3.Connection, principal_id: int, name: str, kvno: int, keys: list[tuple[Key, bytes | None]], stamp: int
    ) -> None:
        master = self._require_master()
        c.executemany(
            "INSERT INTO principal_keys (principal_id, kvno, enctype, salt, master_kvno, wrapped, created, expires)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            [(principal_id, kvno, k.enctype, salt, master.kvno, master.wrap(name, kvno, k), stamp) for k, salt in keys],
        )

    def _insert_principal(
        self,
        c: sqlite3.Connection,
        principal: Principal,
        stamp: int,
        keys: list[tuple[Key, bytes | None]],
        attributes: PrincipalAttributes,
        max_life: int,
        max_renewable_life: int,
    ) -> int:
        name = self._name(principal)
        if c.execute("SELECT 1 FROM principals WHERE name = ?", (name,)).fetchone():
            raise AlreadyExists(f"principal {name} already exists")
        a = attributes
        cur = c.execute(
            "INSERT INTO principals (name, name_type, kvno, requires_preauth, is_service, allow_pkinit, disabled,"
            " max_life, max_renewable_life, created, modified) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                int(principal.name_type),
                int(a.requires_preauth),
                int(a.is_service),
                int(a.allow_pkinit),
                int(a.disabled),
                max_life,
                max_renewable_life,
                stamp,
                stamp,
            ),
        )
        self._store_keys(c, cur.lastrowid, name, 1, keys, stamp)
        return cur.lastrowid

    def _load_principal(self, c: sqlite3.Connection, name: str, *, with_keys: bool = True) -> tuple[int, PrincipalEntry]:
        row = c.execute(
            "SELECT id, name_type, kvno, requires_preauth, is_service, allow_pkinit, disabled, max_life,"
            " max_renewable_life, created, modified FROM principals WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no principal {name}")
        pid, name_type, kvno, preauth, service, pkinit, disabled, max_life, max_renew, created, modified = row
        keys: tuple[KeyEntry, ...] = ()
        if with_keys:
            master = self._require_master()
            entries = []
            for k_kvno, enctype, salt, mkvno, wrapped, k_created, expires in c.execute(
                "SELECT kvno, enctype, salt, master_kvno, wrapped, created, expires FROM principal_keys"
                " WHERE principal_id = ? ORDER BY kvno DESC, rowid",
                (pid,),
            ):
                if mkvno != master.kvno:
                    raise MasterKeyError(f"key {name} kvno {k_kvno} is wrapped with master key kvno {mkvno}")
                try:
                    key_bytes = get_enctype(enctype).key_bytes
                except UnsupportedEnctypeError:
                    raise InvalidValue(f"key {name} kvno {k_kvno} has unsupported enctype {enctype}") from None
                record = (name, k_kvno, enctype, mkvno, bytes(wrapped))
                key = self._unwrapped.get(record)
                if key is None:
                    key = master.unwrap(name, k_kvno, enctype, wrapped, key_bytes)
                    if len(self._unwrapped) >= UNWRAPPED_CACHE_SIZE:
                        self._unwrapped.clear()
                    self._unwrapped[record] = key
                entries.append(
                    KeyEntry(k_kvno, key, None if salt is None else bytes(salt), from_seconds(k_created), from_seconds(expires))
                )
            keys = tuple(entries)
        principal = Principal.parse(name, name_type=name_type)
        entry = PrincipalEntry(
            principal=principal,
            kvno=kvno,
            attributes=PrincipalAttributes(bool(preauth), bool(service), bool(pkinit), bool(disabled)),
            max_life=max_life,
            max_renewable_life=max_renew,
            created=from_seconds(created),
            modified=from_seconds(modified),
            keys=keys,
        )
        return pid, entry

    def add_principal(
        self,
        principal: Principal,
        *,
        now: dt.datetime,
        password: str | None = None,
        keys: Sequence[Key] | None = None,
        enctypes: Sequence[int] = DEFAULT_ENCTYPES,
        attributes: PrincipalAttributes = PrincipalAttributes(),
        max_life: int = DEFAULT_MAX_LIFE,
        max_renewable_life: int = DEFAULT_MAX_RENEWABLE_LIFE,
    ) -> PrincipalEntry:
        """Add a principal with kvno 1: `keys` as given, keys from `password` (default salt), or random keys."""
        name = self._name(principal)
        self._require_master()
        if not isinstance(attributes, PrincipalAttributes):
            raise InvalidValue("attributes must be a PrincipalAttributes")
        check_duration("max_life", max_life, allow_zero=False)
        check_duration("max_renewable_life", max_renewable_life, allow_zero=True)
        stamp = to_seconds(now)
        made = self._make_keys(principal, password, keys, enctypes)
        with self._transaction(write=True) as c:
            self._insert_principal(c, principal, stamp, made, attributes, max_life, max_renewable_life)
            return self._load_principal(c, name)[1]

    def get_principal(self, principal: Principal, *, with_keys: bool = True) -> PrincipalEntry:
        """The principal with all stored keys, current kvno first (needs the master key).

        With `with_keys=False`, `keys` is empty and no master key is needed.
        """
        name = self._name(principal)
        if with_keys:
            self._require_master()
        conn = self._conn
        if conn is None:
            raise DatabaseError("the database handle is closed")
        version = self._cache_version_now(conn)
        entry = self._principals.get((name, with_keys))
        if entry is not None:
            return entry
        with self._transaction(write=False) as c:
            entry = self._load_principal(c, name, with_keys=with_keys)[1]
        if self._cache_version == version:  # no write of ours in between
            if len(self._principals) >= PRINCIPAL_CACHE_SIZE:
                self._principals.clear()
            self._principals[(name, with_keys)] = entry
        return entry

    def list_principals(self, *, with_keys: bool = False) -> list[PrincipalEntry]:
        """All principals by name; keys are unwrapped only with `with_keys=True` (needs the master key)."""
        with self._transaction(write=False) as c:
            names = [r[0] for r in c.execute("SELECT name FROM principals ORDER BY name")]
            return [self._load_principal(c, n, with_keys=with_keys)[1] for n in names]

    def key_summary(self, principal: Principal) -> list[tuple[int, int, bool, dt.datetime | None]]:
        """(kvno, enctype, password-derived, expires) per stored key, without the master key or key bytes."""
        name = self._name(principal)
        with self._transaction(write=False) as c:
            pid = self._load_principal(c, name, with_keys=False)[0]
            return [
                (kvno, enctype, salt is not None, from_seconds(expires))
                for kvno, enctype, salt, expires in c.execute(
                    "SELECT kvno, enctype, salt, expires FROM principal_keys WHERE principal_id = ?"
                    " ORDER BY kvno DESC, rowid",
                    (pid,),
                )
            ]

    def modify_principal(
        self,
        principal: Principal,
        *,
        now: dt.datetime,
        attributes: PrincipalAttributes | None = None,
        max_life: int | None = None,
        max_renewable_life: int | None = None,
    ) -> PrincipalEntry:
        name = self._name(principal)
        stamp = to_seconds(now)
        if attributes is not None and not isinstance(attributes, PrincipalAttributes):
            raise InvalidValue("attributes must be a PrincipalAttributes")
        if max_life is not None:
            check_duration("max_life", max_life, allow_zero=False)
        if max_renewable_life is not None:
            check_duration("max_renewable_life", max_renewable_life, allow_zero=True)
        with self._transaction(write=True) as c:
            pid, entry = self._load_principal(c, name, with_keys=False)
            a = attributes or entry.attributes
            c.execute(
                "UPDATE principals SET requires_preauth = ?, is_service = ?, allow_pkinit = ?, disabled = ?,"
                " max_life = ?, max_renewable_life = ?, modified = ? WHERE id = ?",
                (
                    int(a.requires_preauth),
                    int(a.is_service),
                    int(a.allow_pkinit),
                    int(a.disabled),
                    entry.max_life if max_life is None else max_life,
                    entry.max_renewable_life if max_renewable_life is None else max_renewable_life,
                    stamp,
                    pid,
                ),
            )
            return self._load_principal(c, name, with_keys=self._master is not None)[1]

    def rotate_keys(
        self,
        principal: Principal,
        *,
        now: dt.datetime,
        password: str | None = None,
        keys: Sequence[Key] | None = None,
        enctypes: Sequence[int] | None = None,
        grace: int | None = None,
    ) -> PrincipalEntry:
        """New keys under kvno + 1. The previous keys stay usable for `grace` seconds.

        `grace` defaults to the principal's longest ticket life (max of max_life and
        max_renewable_life), so every ticket issued under the old key can still be decrypted until
        it ends. Keys whose grace period is over are deleted. `enctypes` defaults to the enctypes
        of the current keys.
        """
        name = self._name(principal)
        self._require_master()
        stamp = to_seconds(now)
        if grace is not None:
            check_duration("grace", grace, allow_zero=True)
        with self._transaction(write=True) as c:
            pid, entry = self._load_principal(c, name)
            if entry.kvno >= _MAX_KVNO:
                raise InvalidValue(f"principal {name} is at the largest kvno")
            new_kvno = entry.kvno + 1
            made = self._make_keys(principal, password, keys, enctypes or entry.enctypes or DEFAULT_ENCTYPES)
            period = max(entry.max_life, entry.max_renewable_life) if grace is None else grace
            c.execute(
                "UPDATE principal_keys SET expires = ? WHERE principal_id = ? AND expires IS NULL",
                (stamp + period, pid),
            )
            c.execute(
                "DELETE FROM principal_keys WHERE principal_id = ? AND expires IS NOT NULL AND expires <= ?",
                (pid, stamp),
            )
            self._store_keys(c, pid, name, new_kvno, made, stamp)
            c.execute("UPDATE principals SET kvno = ?, modified = ? WHERE id = ?", (new_kvno, stamp, pid))
            return self._load_principal(c, name)[1]

    def delete_principal(self, principal: Principal) -> None:
        name = self._name(principal)
        if principal.same_name(Principal.krbtgt(self._realm)):
            raise InvalidValue(f"{name} is the realm's ticket-granting service and cannot be deleted")
        with self._transaction(write=True) as c:
            if c.execute("DELETE FROM principals WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"no principal {name}")

    def get_key(
        self, principal: Principal, enctype: int, kvno: int | None = None, *, now: dt.datetime | None = None
    ) -> KeyEntry:
        """The key of one enctype at `kvno` (current if None); with `now`, keys past their grace period are NotFound."""
        entry = self.get_principal(principal)
        want = entry.kvno if kvno is None else kvno
        for k in entry.keys:
            if k.kvno == want and k.enctype == enctype and k.usable_at(now):
                return k
        raise NotFound(f"no usable key for {entry.principal} kvno {want} enctype {enctype}")

    def strongest_key(
        self,
        principal: Principal,
        preference: Sequence[int] = DEFAULT_ENCTYPES,
        kvno: int | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> KeyEntry:
        """The key of the first enctype in `preference` that the principal has at `kvno` (current if None)."""
        entry = self.get_principal(principal)
        want = entry.kvno if kvno is None else kvno
        available = {k.enctype: k for k in entry.keys if k.kvno == want and k.usable_at(now)}
        for enctype in preference:
            if enctype in available:
                return available[enctype]
        raise NotFound(
            f"{entry.principal} kvno {want} has no key of enctype {', '.join(map(str, preference)) or '(none given)'}"
        )

    def purge_expired_keys(self, now: dt.datetime) -> int:
        """Delete superseded keys whose grace period ended at or before `now`; returns how many."""
        stamp = to_seconds(now)
        with self._transaction(write=True) as c:
            return c.execute(
                "DELETE FROM principal_keys WHERE expires IS NOT NULL AND expires <= ?", (stamp,)
            ).rowcount

    # -- customers ---------------------------------------------------------------------------

    def _load_customer(self, c: sqlite3.Connection, customer_id: int) -> Customer:
        row = c.execute(
            "SELECT id, status, label, options, generation, created, modified FROM customers WHERE id = ?",
            (customer_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no customer {customer_id}")
        phones = tuple(
            bytes(r[0])
            for r in c.execute(
                "SELECT phone_id FROM customer_phones WHERE customer_id = ? ORDER BY added, rowid", (customer_id,)
            )
        )
        cid, status, label, options, generation, created, modified = row
        return Customer(
            id=cid,
            status=CustomerStatus(status),
            label=label,
            options=decode_options(options),
            phone_ids=phones,
            generation=generation,
            created=from_seconds(created),
            modified=from_seconds(modified),
        )

    @staticmethod
    def _bump(c: sqlite3.Connection, customer_id: int, stamp: int) -> None:
        c.execute("UPDATE customers SET generation = generation + 1, modified = ? WHERE id = ?", (stamp, customer_id))

    @staticmethod
    def _claim_phone(c: sqlite3.Connection, customer_id: int, phone_id: bytes, stamp: int) -> None:
        row = c.execute("SELECT customer_id FROM customer_phones WHERE phone_id = ?", (phone_id,)).fetchone()
        if row is not None:
            raise AlreadyExists(f"phone ID {phone_id.hex()} already belongs to customer {row[0]}")
        c.execute(
            "INSERT INTO customer_phones (phone_id, customer_id, added) VALUES (?, ?, ?)", (phone_id, customer_id, stamp)
        )

    def add_customer(
        self,
        *,
        now: dt.datetime,
        phone_ids: Sequence[bytes] = (),
        label: str = "",
        options: Mapping[str, object] | None = None,
        status: CustomerStatus | str = CustomerStatus.ACTIVE,
    ) -> Customer:
        """A new customer (generation 1) holding `phone_ids`; AlreadyExists if any belongs to someone."""
        stamp = to_seconds(now)
        if isinstance(phone_ids, (bytes, bytearray)):
            raise InvalidValue("phone_ids is a sequence of 20-byte phone IDs, not one bytes value")
        ids = [check_phone_id(p) for p in phone_ids]
        if len(set(ids)) != len(ids):
            raise InvalidValue("the same phone ID is given twice")
        label = check_label(label)
        encoded = encode_options(check_options(options or {}))
        state = check_status(status)
        with self._transaction(write=True) as c:
            cid = c.execute(
                "INSERT INTO customers (status, label, options, generation, created, modified) VALUES (?, ?, ?, 1, ?, ?)",
                (state.value, label, encoded, stamp, stamp),
            ).lastrowid
            for pid in ids:
                self._claim_phone(c, cid, pid, stamp)
            return self._load_customer(c, cid)

    def get_customer(self, customer_id: int) -> Customer:
        _check_id(customer_id)
        with self._transaction(write=False) as c:
            return self._load_customer(c, customer_id)

    def list_customers(self, status: CustomerStatus | str | None = None) -> list[Customer]:
        with self._transaction(write=False) as c:
            if status is None:
                ids = [r[0] for r in c.execute("SELECT id FROM customers ORDER BY id")]
            else:
                value = check_status(status).value
                ids = [r[0] for r in c.execute("SELECT id FROM customers WHERE status = ? ORDER BY id", (value,))]
            return [self._load_customer(c, i) for i in ids]

    def set_customer_status(self, customer_id: int, status: CustomerStatus | str, *, now: dt.datetime) -> Customer:
        """Change the account status. Terminated is final; setting the current status changes nothing."""
        _check_id(customer_id)
        state = check_status(status)
        stamp = to_seconds(now)
        with self._transaction(write=True) as c:
            current = self._load_customer(c, customer_id)
            if current.status is state:
                return current
            if current.status is CustomerStatus.TERMINATED:
                raise InvalidValue(
                    f"customer {customer_id} is terminated; a terminated account is never reactivated (add a new customer)"
                )
            c.execute("UPDATE customers SET status = ? WHERE id = ?", (state.value, customer_id))
            self._bump(c, customer_id, stamp)
            return self._load_customer(c, customer_id)

    def set_customer_options(
        self, customer_id: int, options: Mapping[str, object], *, now: dt.datetime, merge: bool = False
    ) -> Customer:
        """Replace the service options (or, with `merge`, update them; a None value then removes a name)."""
        _check_id(customer_id)
        stamp = to_seconds(now)
        given = check_options(options)
        with self._transaction(write=True) as c:
            current = self._load_customer(c, customer_id)
            if merge:
                combined = dict(current.options)
                for k, v in given.items():
                    if v is None:
                        combined.pop(k, None)
                    else:
                        combined[k] = v
                given = check_options(combined)
            encoded = encode_options(given)
            if encoded == encode_options(current.options):
                return current
            return self._update_customer(c, customer_id, "options", encoded, stamp)

    def set_customer_label(self, customer_id: int, label: str, *, now: dt.datetime) -> Customer:
        _check_id(customer_id)
        label = check_label(label)
        stamp = to_seconds(now)
        with self._transaction(write=True) as c:
            current = self._load_customer(c, customer_id)
            if current.label == label:
                return current
            return self._update_customer(c, customer_id, "label", label, stamp)

    def _update_customer(self, c, customer_id: int, column: str, value, stamp: int) -> Customer:
        """Change one column of a customer record and bump its generation (inside the caller's
        write transaction); the KDC's certificate cache notices the new generation."""
        assert column in ("options", "label")  # never user input: the column name is SQL
        c.execute(f"UPDATE customers SET {column} = ? WHERE id = ?", (value, customer_id))
        self._bump(c, customer_id, stamp)
        return self._load_customer(c, customer_id)

    def add_phone(self, customer_id: int, phone_id: bytes, *, now: dt.datetime) -> Customer:
        _check_id(customer_id)
        pid = check_phone_id(phone_id)
        stamp = to_seconds(now)
        with self._transaction(write=True) as c:
            current = self._load_customer(c, customer_id)
            if current.status is CustomerStatus.TERMINATED:
                raise InvalidValue(f"customer {customer_id} is terminated; no phone IDs can be added")
            self._claim_phone(c, customer_id, pid, stamp)
            self._bump(c, customer_id, stamp)
            return self._load_customer(c, customer_id)

    def remove_phone(self, customer_id: int, phone_id: bytes, *, now: dt.datetime) -> Customer:
        """Release a phone ID (also from a terminated customer, so the number can be reassigned)."""
        _check_id(customer_id)
        pid = check_phone_id(phone_id)
        stamp = to_seconds(now)
        with self._transaction(write=True) as c:
            self._load_customer(c, customer_id)
            deleted = c.execute(
                "DELETE FROM customer_phones WHERE phone_id = ? AND customer_id = ?", (pid, customer_id)
            ).rowcount
            if not deleted:
                raise NotFound(f"phone ID {pid.hex()} does not belong to customer {customer_id}")
            self._bump(c, customer_id, stamp)
            return self._load_customer(c, customer_id)

    def lookup_phone(self, phone_id: bytes) -> Customer:
        """The customer holding `phone_id` (any status: the caller checks `customer.active`)."""
        pid = check_phone_id(phone_id)
        with self._transaction(write=False) as c:
            row = c.execute("SELECT customer_id FROM customer_phones WHERE phone_id = ?", (pid,)).fetchone()
            if row is None:
                raise NotFound(f"no customer holds phone ID {pid.hex()}")
            return self._load_customer(c, row[0])

    def customers_for_phone_ids(self, phone_ids: Sequence[bytes]) -> list[Customer]:
        """The distinct customers holding any of `phone_ids` (a certificate's list), in the list's order.

        Unknown phone IDs are skipped. The KDC honours the certificate if any result is active.
        """
        if isinstance(phone_ids, (bytes, bytearray)):
            raise InvalidValue("phone_ids is a sequence of 20-byte phone IDs, not one bytes value")
        ids = tuple(check_phone_id(p) for p in phone_ids)
        conn = self._conn
        if conn is None:
            raise DatabaseError("the database handle is closed")
        version = self._cache_version_now(conn)
        cached = self._customers_by_phones.get(ids)
        if cached is not None:
            return list(cached)
        out: dict[int, Customer] = {}
        with self._transaction(write=False) as c:
            for pid in ids:
                row = c.execute("SELECT customer_id FROM customer_phones WHERE phone_id = ?", (pid,)).fetchone()
                if row is not None and row[0] not in out:
                    out[row[0]] = self._load_customer(c, row[0])
        found = tuple(out.values())
        if self._cache_version == version:  # no write of ours in between
            if len(self._customers_by_phones) >= PRINCIPAL_CACHE_SIZE:
                self._customers_by_phones.clear()
            self._customers_by_phones[ids] = found
        return list(found)

    # -- devices -----------------------------------------------------------------------------

    @staticmethod
    def _load_device(c: sqlite3.Connection, mac: str) -> Device:
        row = c.execute(
            "SELECT mac, thumbprint, status, status_reason, customer_id, first_seen, last_seen, last_peer, modified"
            " FROM devices WHERE mac = ?",
            (mac,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no device {mac}")
        mac, thumb, status, reason, cid, first, last, peer, modified = row
        return Device(
            mac=mac,
            thumbprint=None if thumb is None else bytes(thumb),
            status=DeviceStatus(status),
            status_reason=reason,
            customer_id=cid,
            first_seen=from_seconds(first),
            last_seen=from_seconds(last),
            last_peer=peer,
            modified=from_seconds(modified),
        )

    def record_device_seen(
        self,
        mac: str | bytes,
        thumbprint: bytes,
        *,
        now: dt.datetime,
        peer: str | None = None,
        replace_thumbprint: bool = False,
    ) -> Device:
        """Record that the device `mac` authenticated with the manufacturer certificate `thumbprint`.

        Creates the device on first sight. A thumbprint other than the recorded one raises
        `ThumbprintMismatch` and changes nothing, unless `replace_thumbprint`. A device marked bad
        stays bad (the returned record says so; refusing it is the KDC's decision).
        """
        mac = normalise_mac(mac)
        thumb = check_thumbprint(thumbprint)
        peer = check_peer(peer)
        stamp = to_seconds(now)
        with self._transaction(write=True) as c:
            try:
                current = self._load_device(c, mac)
            except NotFound:
                c.execute(
                    "INSERT INTO devices (mac, thumbprint, first_seen, last_seen, last_peer, modified)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (mac, thumb, stamp, stamp, peer, stamp),
                )
                return self._load_device(c, mac)
            if current.thumbprint is not None and current.thumbprint != thumb and not replace_thumbprint:
                raise ThumbprintMismatch(mac, current.thumbprint, thumb)
            first = stamp if current.first_seen is None else min(to_seconds(current.first_seen), stamp)
            last_prev = None if current.last_seen is None else to_seconds(current.last_seen)
            newer = last_prev is None or stamp >= last_prev
            c.execute(
                "UPDATE devices SET thumbprint = ?, first_seen = ?, last_seen = ?, last_peer = ?, modified = ?"
                " WHERE mac = ?",
                (
                    thumb,
                    first,
                    stamp if newer else last_prev,
                    peer if newer else current.last_peer,
                    max(stamp, to_seconds(current.modified)),
                    mac,
                ),
            )
            return self._load_device(c, mac)

    def set_device_status(
        self, mac: str | bytes, status: DeviceStatus | str, *, now: dt.datetime, reason: str = ""
    ) -> Device:
        """Mark a MAC ok or bad; a MAC never seen is recorded (the head-end may report clones first)."""
        mac = normalise_mac(mac)
        try:
            state = DeviceStatus(status)
        except ValueError:
            raise InvalidValue(f"device status {status!r} is not one of ok, bad") from None
        reason = check_label(reason)
        stamp = to_seconds(now)
        with self._transaction(write=True) as c:
            c.execute(
                "INSERT INTO devices (mac, status, status_reason, modified) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (mac) DO UPDATE SET status = excluded.status, status_reason = excluded.status_reason,"
                " modified = excluded.modified",
                (mac, state.value, reason, stamp),
            )
            return self._load_device(c, mac)

    def mark_device_bad(self, mac: str | bytes, *, now: dt.datetime, reason: str = "") -> Device:
        return self.set_device_status(mac, DeviceStatus.BAD, now=now, reason=reason)

    def link_device(self, mac: str | bytes, customer_id: int | None, *, now: dt.datetime) -> Device:
        """Link a known device to a customer (None unlinks)."""
        mac = normalise_mac(mac)
        if customer_id is not None:
            _check_id(customer_id)
        stamp = to_seconds(now)
        with self._transaction(write=True) as c:
            self._load_device(c, mac)
            if customer_id is not None:
                self._load_customer(c, customer_id)
            c.execute("UPDATE devices SET customer_id = ?, modified = ? WHERE mac = ?", (customer_id, stamp, mac))
            return self._load_device(c, mac)

    def get_device(self, mac: str | bytes) -> Device:
        mac = normalise_mac(mac)
        with self._transaction(write=False) as c:
            return self._load_device(c, mac)

    def list_devices(self) -> list[Device]:
        with self._transaction(write=False) as c:
            return [self._load_device(c, r[0]) for r in c.execute("SELECT mac FROM devices ORDER BY mac").fetchall()]
