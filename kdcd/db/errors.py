"""The database's exceptions: one base class, one subclass per kind of failure.

No sqlite3 exception ever leaves `kdcd.db`; each is translated into one of these. Messages name
the record (principal name, customer id, MAC) but never key bytes or a phone number.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "DatabaseBusy",
    "DatabaseError",
    "InvalidValue",
    "MasterKeyError",
    "NotFound",
    "SchemaError",
    "ThumbprintMismatch",
]


class DatabaseError(Exception):
    """Base of every error raised by the principal and customer database."""


class NotFound(DatabaseError, LookupError):
    """No principal, key, customer, phone ID or device matches (or the database file is missing)."""


class AlreadyExists(DatabaseError):
    """A principal, phone ID or database file with that name already exists."""


class InvalidValue(DatabaseError, ValueError):
    """An argument is malformed or not allowed in the record's current state."""


class ThumbprintMismatch(InvalidValue):
    """A device presented a manufacturer certificate other than the one recorded for its MAC.

    `stored` and `presented` are the two SHA-256 thumbprints. Nothing was changed; the caller
    decides (mark the device bad, or call again with `replace_thumbprint=True`).
    """

    def __init__(self, mac: str, stored: bytes, presented: bytes) -> None:
        super().__init__(
            f"device {mac} presented certificate {presented.hex()[:16]}..., "
            f"but {stored.hex()[:16]}... is recorded for it"
        )
        self.mac = mac
        self.stored = stored
        self.presented = presented


class MasterKeyError(DatabaseError):
    """The master key is missing, does not match the database, or wrapped key data fails to unwrap."""


class SchemaError(DatabaseError):
    """The file is not a kerbtel database, or its schema is newer than this code understands."""


class DatabaseBusy(DatabaseError):
    """Another connection held the write lock for longer than the busy timeout."""
