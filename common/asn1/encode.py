"""Direct DER encoders for the structures the KDC writes on every AS exchange.

Each function returns the same bytes as building the asn1crypto value of `common.asn1.krb5` /
`common.asn1.pkinit` and calling `.dump()` (tests/test_asn1_der_encode.py checks that with
random inputs), at a fraction of the cost. They take plain Python values; optional fields are
left out when None. Range checks match the asn1crypto types' (Int32, UInt32, 32-bit flags).

The asn1crypto classes stay the reference and the decoder; these are for output only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from common.crypto.key import Key
from common.principal import Principal

from . import der, oids

__all__ = [
    "ap_rep",
    "dh_rep_info_pa_value",
    "enc_ap_rep_part",
    "enc_key_pack_pa_value",
    "enc_kdc_rep_part",
    "enc_ticket_part",
    "encrypted_data",
    "encryption_key",
    "host_addresses",
    "kdc_dh_key_info",
    "kdc_rep",
    "kdf_other_info",
    "krb5_principal_name",
    "method_data",
    "principal_name",
    "reply_key_pack",
    "signed_data_content_info",
    "ticket",
]

_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)


def _int32(value: int, what: str) -> bytes:
    value = int(value)
    if not _INT32[0] <= value <= _INT32[1]:
        raise ValueError(f"Int32 value {value} ({what}) is outside [{_INT32[0]}, {_INT32[1]}]")
    return der.integer(value)


def _microseconds(value: int, what: str) -> bytes:
    value = int(value)
    if not 0 <= value <= 999_999:
        raise ValueError(f"Microseconds value {value} ({what}) is outside [0, 999999]")
    return der.integer(value)


def _uint32(value: int, what: str) -> bytes:
    value = int(value)
    if not _UINT32[0] <= value <= _UINT32[1]:
        raise ValueError(f"UInt32 value {value} ({what}) is outside [{_UINT32[0]}, {_UINT32[1]}]")
    return der.integer(value)


# --- RFC 4120 ------------------------------------------------------------------------------------


def principal_name(principal: Principal) -> bytes:
    """PrincipalName {name-type (as given), name-string}."""
    strings = b"".join(der.general_string(c) for c in principal.components)
    return der.seq(der.explicit(0, _int32(principal.name_type, "name-type")), der.explicit(1, der.tlv(0x30, strings)))


def realm(principal: Principal) -> bytes:
    return der.general_string(principal.realm)


def encryption_key(key: Key) -> bytes:
    return der.seq(der.explicit(0, _int32(key.enctype, "keytype")), der.explicit(1, der.octet_string(key.contents)))


def encrypted_data(etype: int, cipher: bytes, kvno: int | None = None) -> bytes:
    parts = [der.explicit(0, _int32(etype, "etype"))]
    if kvno is not None:
        parts.append(der.explicit(1, _uint32(kvno, "kvno")))
    parts.append(der.explicit(2, der.octet_string(cipher)))
    return der.seq(*parts)


def host_addresses(entries: Iterable[tuple[int, bytes]]) -> bytes:
    """HostAddresses: SEQUENCE OF HostAddress {[0] addr-type, [1] address}."""
    return der.seq(
        *(der.seq(der.explicit(0, _int32(t, "addr-type")), der.explicit(1, der.octet_string(a))) for t, a in entries)
    )


def method_data(entries: Iterable[tuple[int, bytes]]) -> bytes:
    """METHOD-DATA / padata: SEQUENCE OF PA-DATA {[1] padata-type, [2] padata-value}."""
    return der.seq(
        *(der.seq(der.explicit(1, _int32(t, "padata-type")), der.explicit(2, der.octet_string(v))) for t, v in entries)
    )


def enc_ticket_part(
    *,
    flags: int,
    key: Key,
    cname: Principal,
    transited_type: int,
    transited_contents: bytes,
    authtime: datetime,
    starttime: datetime | None,
    endtime: datetime,
    renew_till: datetime | None = None,
    caddr: bytes | None = None,
    authorization_data: bytes | None = None,
) -> bytes:
    """EncTicketPart [APPLICATION 3]; `caddr` / `authorization_data` are encoded HostAddresses /
    AuthorizationData (or None)."""
    parts = [
        der.explicit(0, der.flags32(flags)),
        der.explicit(1, encryption_key(key)),
        der.explicit(2, realm(cname)),
        der.explicit(3, principal_name(cname)),
        der.explicit(4, der.seq(der.explicit(0, _int32(transited_type, "tr-type")), der.explicit(1, der.octet_string(transited_contents)))),
        der.explicit(5, der.kerberos_time(authtime)),
    ]
    if starttime is not None:
        parts.append(der.explicit(6, der.kerberos_time(starttime)))
    parts.append(der.explicit(7, der.kerberos_time(endtime)))
    if renew_till is not None:
        parts.append(der.explicit(8, der.kerberos_time(renew_till)))
    if caddr is not None:
        parts.append(der.explicit(9, caddr))
    if authorization_data is not None:
        parts.append(der.explicit(10, authorization_data))
    return der.application(3, der.seq(*parts))


def ticket(sname: Principal, enc_part: bytes) -> bytes:
    """Ticket [APPLICATION 1] {tkt-vno 5, realm, sname, enc-part (an encoded EncryptedData)}."""
    return der.application(
        1,
        der.seq(
            der.explicit(0, der.integer(5)),
            der.explicit(1, realm(sname)),
            der.explicit(2, principal_name(sname)),
            der.explicit(3, enc_part),
        ),
    )


def enc_kdc_rep_part(
    application_tag: int,
    *,
    key: Key,
    last_req: Iterable[tuple[int, datetime]],
    nonce: int,
    flags: int,
    authtime: datetime,
    starttime: datetime | None,
    endtime: datetime,
    sname: Principal,
    key_expiration: datetime | None = None,
    renew_till: datetime | None = None,
    caddr: bytes | None = None,
    encrypted_pa_data: bytes | None = None,
) -> bytes:
    """EncASRepPart ([APPLICATION 25]) or EncTGSRepPart ([APPLICATION 26])."""
    lr = der.seq(*(der.seq(der.explicit(0, _int32(t, "lr-type")), der.explicit(1, der.kerberos_time(v))) for t, v in last_req))
    parts = [
        der.explicit(0, encryption_key(key)),
        der.explicit(1, lr),
        der.explicit(2, _uint32(nonce, "nonce")),
    ]
    if key_expiration is not None:
        parts.append(der.explicit(3, der.kerberos_time(key_expiration)))
    parts.append(der.explicit(4, der.flags32(flags)))
    parts.append(der.explicit(5, der.kerberos_time(authtime)))
    if starttime is not None:
        parts.append(der.explicit(6, der.kerberos_time(starttime)))
    parts.append(der.explicit(7, der.kerberos_time(endtime)))
    if renew_till is not None:
        parts.append(der.explicit(8, der.kerberos_time(renew_till)))
    parts.append(der.explicit(9, realm(sname)))
    parts.append(der.explicit(10, principal_name(sname)))
    if caddr is not None:
        parts.append(der.explicit(11, caddr))
    if encrypted_pa_data is not None:
        parts.append(der.explicit(12, encrypted_pa_data))
    return der.application(application_tag, der.seq(*parts))


def kdc_rep(
    application_tag: int, msg_type: int, *, cname: Principal, ticket: bytes, enc_part: bytes, padata: bytes | None = None
) -> bytes:
    """AS-REP ([APPLICATION 11], msg-type 11) or TGS-REP ([APPLICATION 13], 13). `ticket` is an
    encoded Ticket, `enc_part` an encoded EncryptedData, `padata` an encoded METHOD-DATA."""
    parts = [der.explicit(0, der.integer(5)), der.explicit(1, der.integer(msg_type))]
    if padata is not None:
        parts.append(der.explicit(2, padata))
    parts += [
        der.explicit(3, realm(cname)),
        der.explicit(4, principal_name(cname)),
        der.explicit(5, ticket),
        der.explicit(6, enc_part),
    ]
    return der.application(application_tag, der.seq(*parts))


def enc_ap_rep_part(ctime: datetime, cusec: int, subkey: Key | None = None, seq_number: int | None = None) -> bytes:
    """EncAPRepPart [APPLICATION 27] {ctime, cusec, subkey, seq-number} (RFC 4120 5.5.2)."""
    parts = [der.explicit(0, der.kerberos_time(ctime)), der.explicit(1, _microseconds(cusec, "cusec"))]
    if subkey is not None:
        parts.append(der.explicit(2, encryption_key(subkey)))
    if seq_number is not None:
        parts.append(der.explicit(3, _uint32(seq_number, "seq-number")))
    return der.application(27, der.seq(*parts))


def ap_rep(etype: int, cipher: bytes, kvno: int | None = None) -> bytes:
    """AP-REP [APPLICATION 15] {pvno 5, msg-type 15, enc-part EncryptedData}."""
    return der.application(
        15, der.seq(b"\xa0\x03\x02\x01\x05", b"\xa1\x03\x02\x01\x0f", der.explicit(2, encrypted_data(etype, cipher, kvno)))
    )


# --- RFC 4556 / RFC 8636 -------------------------------------------------------------------------


def krb5_principal_name(principal: Principal) -> bytes:
    """KRB5PrincipalName {realm, principalName} (the id-pkinit-san value; name-type as given)."""
    return der.seq(der.explicit(0, realm(principal)), der.explicit(1, principal_name(principal)))


def kdc_dh_key_info(subject_public_key: bytes, nonce: int, dh_key_expiration: datetime | None = None) -> bytes:
    parts = [der.explicit(0, der.bit_string(subject_public_key)), der.explicit(1, _uint32(nonce, "nonce"))]
    if dh_key_expiration is not None:
        parts.append(der.explicit(2, der.kerberos_time(dh_key_expiration)))
    return der.seq(*parts)


def signed_data_content_info(signed_data: bytes) -> bytes:
    """ContentInfo {id-signedData, [0] EXPLICIT SignedData} around an encoded SignedData."""
    return der.seq(der.oid(oids.ID_SIGNED_DATA), der.explicit(0, signed_data))


def dh_rep_info_pa_value(content_info: bytes, server_dh_nonce: bytes | None = None, kdf_oid: str | None = None) -> bytes:
    """PA-PK-AS-REP dhInfo: [0] DHRepInfo {[0] IMPLICIT dhSignedData, serverDHNonce, kdf}."""
    parts = [der.context_primitive(0, content_info)]
    if server_dh_nonce is not None:
        parts.append(der.explicit(1, der.octet_string(server_dh_nonce)))
    if kdf_oid is not None:
        parts.append(der.explicit(2, der.seq(der.explicit(0, der.oid(kdf_oid)))))
    return der.explicit(0, der.seq(*parts))


def enc_key_pack_pa_value(content_info: bytes) -> bytes:
    """PA-PK-AS-REP encKeyPack: [1] IMPLICIT OCTET STRING holding the ContentInfo."""
    return der.context_primitive(1, content_info)


def reply_key_pack(key: Key, cksumtype: int, checksum: bytes) -> bytes:
    return der.seq(
        der.explicit(0, encryption_key(key)),
        der.explicit(1, der.seq(der.explicit(0, _int32(cksumtype, "cksumtype")), der.explicit(1, der.octet_string(checksum)))),
    )


def kdf_other_info(kdf_oid: str, client: Principal, server: Principal, enctype: int, as_req: bytes, pk_as_rep: bytes) -> bytes:
    """RFC 8636 OtherInfo, as `common.asn1.pkinit.build_kdf_other_info` (the reference)."""
    supp = der.seq(
        der.explicit(0, _int32(enctype, "enctype")),
        der.explicit(1, der.octet_string(as_req)),
        der.explicit(2, der.octet_string(pk_as_rep)),
    )
    return der.seq(
        der.seq(der.oid(kdf_oid)),
        der.explicit(0, der.octet_string(krb5_principal_name(client))),
        der.explicit(1, der.octet_string(krb5_principal_name(server))),
        der.explicit(2, der.octet_string(supp)),
    )
