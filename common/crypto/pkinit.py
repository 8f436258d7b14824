"""PKINIT reply-key derivation from a (EC)DH shared secret.

Two KDFs exist: RFC 4556 3.2.3.1 octetstring2key (the default, SHA-1 based) and the RFC 8636
SP 800-56A single-step KDF the client may offer in supportedKDFs. Both end in random-to-key
of the enctype, so the result is a `Key` ready for the AS-REP.
"""

from __future__ import annotations

import hashlib

from common.asn1 import oids
from common.crypto.enctypes import get_enctype
from common.crypto.errors import CryptoError
from common.crypto.key import Key

# RFC 8636 3: KDF algorithm identifiers and the hash each one uses.
KDF_HASH_BY_OID: dict[str, str] = {
    oids.ID_PKINIT_KDF_AH_SHA1: "sha1",
    oids.ID_PKINIT_KDF_AH_SHA256: "sha256",
    oids.ID_PKINIT_KDF_AH_SHA384: "sha384",
    oids.ID_PKINIT_KDF_AH_SHA512: "sha512",
}
KDF_OID_BY_HASH: dict[str, str] = {name: oid for oid, name in KDF_HASH_BY_OID.items()}


def kdf_hash_for_oid(kdf_oid: str) -> str:
    """The hash name of an RFC 8636 KDF OID; CryptoError for any other OID."""
    try:
        return KDF_HASH_BY_OID[kdf_oid]
    except KeyError:
        raise CryptoError(f"unsupported PKINIT KDF {kdf_oid}") from None


def octetstring2key(x: bytes, enctype: int, client_dh_nonce: bytes = b"", server_dh_nonce: bytes = b"") -> Key:
    """RFC 4556 3.2.3.1: K-truncate(SHA1(00|x|n_c|n_s) | SHA1(01|x|n_c|n_s) | ...), then random-to-key.

    The counter is one octet starting at zero; K is the enctype's key-generation seed length.
    """
    cls = get_enctype(enctype)
    material = bytes(x) + bytes(client_dh_nonce) + bytes(server_dh_nonce)
    out = b""
    counter = 0
    while len(out) < cls.seed_bytes:
        out += hashlib.sha1(bytes([counter]) + material).digest()
        counter += 1
    return Key(cls.number, cls.random_to_key(out[: cls.seed_bytes]))


def rfc8636_kdf(hash_name: str, z: bytes, other_info: bytes, enctype: int) -> Key:
    """RFC 8636 / SP 800-56A single-step KDF: H(counter32 | Z | OtherInfo) for counter = 1, 2, ...,
    truncated to the enctype's seed length, then random-to-key.

    `other_info` is the DER OtherInfo (common.asn1.pkinit.build_kdf_other_info); `z` is the
    shared secret with leading zeros kept (see common.crypto.dh).
    """
    if hash_name not in KDF_OID_BY_HASH:
        raise CryptoError(f"unsupported PKINIT KDF hash {hash_name!r}; expected one of {sorted(KDF_OID_BY_HASH)}")
    cls = get_enctype(enctype)
    out = b""
    counter = 1
    while len(out) < cls.seed_bytes:
        out += hashlib.new(hash_name, counter.to_bytes(4, "big") + bytes(z) + bytes(other_info)).digest()
        counter += 1
    return Key(cls.number, cls.random_to_key(out[: cls.seed_bytes]))
