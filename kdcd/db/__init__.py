"""The KDC's principal, customer and device database (docs/kdc-database.md).

    from kdcd.db import SQLiteDatabase, generate_master_key, save_master_key, load_master_key

    mkey = generate_master_key(); save_master_key("kdc.db.mkey", mkey, "EXAMPLE.TEST")
    db = SQLiteDatabase.create("kdc.db", "EXAMPLE.TEST", master_key=mkey, now=wallclock)
    db.add_principal(Principal.parse("sc/sc1.example.test@EXAMPLE.TEST"), now=wallclock,
                     attributes=PrincipalAttributes(is_service=True))
    customer = db.add_customer(now=wallclock, phone_ids=[phone_id("+15551230001")])
    db.lookup_phone(phone_id("+15551230001")).active

`PrincipalDatabase` is the interface (a Protocol); `SQLiteDatabase` its SQLite implementation.
"""

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
from .masterkey import MASTER_ENCTYPE, MasterKey, generate_master_key, load_master_key, save_master_key
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
    PrincipalDatabase,
    PrincipalEntry,
    normalise_mac,
)
from .schema import LATEST_VERSION, MIGRATIONS
from .sqlite import SQLiteDatabase

__all__ = [
    "AlreadyExists",
    "Customer",
    "CustomerStatus",
    "DEFAULT_ENCTYPES",
    "DEFAULT_MAX_LIFE",
    "DEFAULT_MAX_RENEWABLE_LIFE",
    "DatabaseBusy",
    "DatabaseError",
    "Device",
    "DeviceStatus",
    "InvalidValue",
    "KeyEntry",
    "LATEST_VERSION",
    "MASTER_ENCTYPE",
    "MIGRATIONS",
    "MasterKey",
    "MasterKeyError",
    "NotFound",
    "PrincipalAttributes",
    "PrincipalDatabase",
    "PrincipalEntry",
    "SQLiteDatabase",
    "SchemaError",
    "ThumbprintMismatch",
    "generate_master_key",
    "load_master_key",
    "normalise_mac",
    "save_master_key",
]
