"""Kerberos cryptography (RFC 3961/3962/8009) and PKINIT key agreement on `cryptography`."""

from common.crypto.enctypes import (
    CHECKSUM_TYPES,
    ENCTYPES,
    ChecksumType,
    cf2,
    decrypt,
    encrypt,
    generate_key,
    get_checksum_type,
    enctype_by_name,
    get_enctype,
    make_checksum,
    prf,
    random_to_key,
    required_checksum_type,
    string_to_key,
    verify_checksum,
)
from common.crypto.errors import CryptoError, IntegrityError, UnsupportedChecksumTypeError, UnsupportedEnctypeError
from common.crypto.key import Key
from common.crypto.rfc3961 import Enctype
from common.crypto.usages import KeyUsage

__all__ = [
    "CHECKSUM_TYPES",
    "ENCTYPES",
    "ChecksumType",
    "CryptoError",
    "Enctype",
    "IntegrityError",
    "Key",
    "KeyUsage",
    "UnsupportedChecksumTypeError",
    "UnsupportedEnctypeError",
    "cf2",
    "decrypt",
    "encrypt",
    "generate_key",
    "get_checksum_type",
    "enctype_by_name",
    "get_enctype",
    "make_checksum",
    "prf",
    "random_to_key",
    "required_checksum_type",
    "string_to_key",
    "verify_checksum",
]
