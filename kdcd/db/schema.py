"""SQLite schema and its migrations.

`PRAGMA user_version` holds the number of migration steps applied. `MIGRATIONS[i]` takes the
schema from version i to i + 1. The rule: steps are append-only -- a step that has been released
is never edited; a change to the schema is a new step at the end (with a test that upgrades a
database written at the previous version). Each step runs inside the same BEGIN IMMEDIATE
transaction as the `user_version` update, so a failed or interrupted upgrade leaves the previous
version intact, and two processes opening an old database at once upgrade it only once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["LATEST_VERSION", "MIGRATIONS", "migrate"]


def _v1_principals(conn: sqlite3.Connection) -> None:
    for statement in (
        """CREATE TABLE meta (
            name  TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE principals (
            id                 INTEGER PRIMARY KEY AUTOINCREMENT,
            name               TEXT NOT NULL UNIQUE,
            name_type          INTEGER NOT NULL,
            kvno               INTEGER NOT NULL CHECK (kvno BETWEEN 1 AND 4294967295),
            requires_preauth   INTEGER NOT NULL CHECK (requires_preauth IN (0, 1)),
            is_service         INTEGER NOT NULL CHECK (is_service IN (0, 1)),
            allow_pkinit       INTEGER NOT NULL CHECK (allow_pkinit IN (0, 1)),
            disabled           INTEGER NOT NULL CHECK (disabled IN (0, 1)),
            max_life           INTEGER NOT NULL CHECK (max_life > 0),
            max_renewable_life INTEGER NOT NULL CHECK (max_renewable_life >= 0),
            created            INTEGER NOT NULL,
            modified           INTEGER NOT NULL
        )""",
        """CREATE TABLE principal_keys (
            principal_id INTEGER NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
            kvno         INTEGER NOT NULL,
            enctype      INTEGER NOT NULL,
            salt         BLOB,
            master_kvno  INTEGER NOT NULL,
            wrapped      BLOB NOT NULL,
            created      INTEGER NOT NULL,
            expires      INTEGER,
            PRIMARY KEY (principal_id, kvno, enctype)
        )""",
    ):
        conn.execute(statement)


def _v2_customers(conn: sqlite3.Connection) -> None:
    for statement in (
        """CREATE TABLE customers (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            status     TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'terminated')),
            label      TEXT NOT NULL DEFAULT '',
            options    TEXT NOT NULL DEFAULT '{}',
            generation INTEGER NOT NULL CHECK (generation >= 1),
            created    INTEGER NOT NULL,
            modified   INTEGER NOT NULL
        )""",
        """CREATE TABLE customer_phones (
            phone_id    BLOB PRIMARY KEY NOT NULL CHECK (typeof(phone_id) = 'blob' AND length(phone_id) = 20),
            customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
            added       INTEGER NOT NULL
        )""",
        "CREATE INDEX customer_phones_by_customer ON customer_phones(customer_id)",
    ):
        conn.execute(statement)


def _v3_devices(conn: sqlite3.Connection) -> None:
    for statement in (
        """CREATE TABLE devices (
            mac           TEXT PRIMARY KEY NOT NULL CHECK (length(mac) = 12 AND mac NOT GLOB '*[^0-9a-f]*'),
            thumbprint    BLOB CHECK (thumbprint IS NULL OR length(thumbprint) = 32),
            status        TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'bad')),
            status_reason TEXT NOT NULL DEFAULT '',
            customer_id   INTEGER REFERENCES customers(id) ON DELETE SET NULL,
            first_seen    INTEGER,
            last_seen     INTEGER,
            last_peer     TEXT,
            modified      INTEGER NOT NULL
        )""",
        "CREATE INDEX devices_by_customer ON devices(customer_id)",
    ):
        conn.execute(statement)


# Append-only. Index i upgrades version i to i + 1.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1_principals,  # 1: meta, principals, principal_keys
    _v2_customers,  # 2: customers, customer_phones (phone IDs only)
    _v3_devices,  # 3: devices (MAC, manufacturer-certificate thumbprint, bad marks)
)
LATEST_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Apply the missing steps up to `target` inside the caller's write transaction; returns the old version."""
    current = user_version(conn)
    for step in range(current, target):
        MIGRATIONS[step](conn)
        conn.execute(f"PRAGMA user_version = {step + 1}")
    return current
