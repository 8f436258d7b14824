"""Ticket issuing shared by the AS and TGS exchanges: enctype choice, times and flags, and the
Ticket / EncKDCRepPart structures (RFC 4120 3.1.3, 3.3.3, 5.3, 5.4.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from common.asn1 import ErrorCode, KDCOptions, TicketFlags, TransitedType
from common.asn1 import encode
from common.asn1.krb5 import AuthorizationData, EncryptionKey, EncTicketPart, Ticket, principal_to_asn1
from common.crypto import Key, KeyUsage, encrypt
from common.principal import Principal
from kdcd.db import KeyEntry, PrincipalEntry
from common.krberror import KrbError
from kdcd.policy import KdcPolicy

__all__ = [
    "TicketTimes",
    "build_enc_rep_part",
    "build_ticket",
    "choose_enctype",
    "compute_times",
    "enc_rep_part_der",
    "is_infinite",
    "ticket_der",
]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Requests use 19700101000000Z ("zero") for "as long as allowed"; treat anything before 1980 so.
_INFINITE_BEFORE = datetime(1980, 1, 1, tzinfo=timezone.utc)
# Requests use far-future times (MIT: 20370913024805Z) the same way; no special case needed.

# Options the KDC acts on or may safely ignore; anything else set -> KDC_ERR_BADOPTION.
AS_ALLOWED_OPTIONS = (
    KDCOptions.FORWARDABLE
    | KDCOptions.PROXIABLE
    | KDCOptions.ALLOW_POSTDATE
    | KDCOptions.RENEWABLE
    | KDCOptions.CANONICALIZE
    | KDCOptions.RENEWABLE_OK
    | KDCOptions.DISABLE_TRANSITED_CHECK
    | KDCOptions.OPT_HARDWARE_AUTH
)
TGS_ALLOWED_OPTIONS = AS_ALLOWED_OPTIONS | KDCOptions.RENEW  # renewal: kdcd/tgs.py (VALIDATE stays refused)


def is_infinite(value: datetime | None) -> bool:
    return value is None or value < _INFINITE_BEFORE


def check_options(options: int, allowed: int, exchange: str) -> None:
    options = int(options)
    if options & int(KDCOptions.POSTDATED):
        raise KrbError(ErrorCode.KDC_ERR_CANNOT_POSTDATE, "postdated tickets are not issued by this KDC")
    unknown = options & ~int(allowed) & 0x7FFFFFFF & ~0xFFFF  # bits 0..15 only; 16..31 are ignorable
    named = options & ~int(allowed) & int(
        KDCOptions.FORWARDED | KDCOptions.PROXY | KDCOptions.ENC_TKT_IN_SKEY | KDCOptions.RENEW | KDCOptions.VALIDATE
        | KDCOptions.CNAME_IN_ADDL_TKT | KDCOptions.REQUEST_ANONYMOUS
    )
    bad = unknown | named
    if bad:
        names = [f.name for f in KDCOptions if f.value & bad and f.name] or [f"{bad:#010x}"]
        raise KrbError(ErrorCode.KDC_ERR_BADOPTION, f"{exchange}: KDC option(s) {', '.join(names)} not supported")


def choose_enctype(client_etypes: Sequence[int], policy: KdcPolicy, server: PrincipalEntry | None = None) -> int:
    """The session (or reply) key enctype: the client's first listed etype that the KDC supports
    (and the server has a key for, when one does; otherwise the first the KDC supports)."""
    supported = [e for e in client_etypes if e in policy.supported_enctypes]
    if not supported:
        listed = ", ".join(str(e) for e in client_etypes) or "none"
        raise KrbError(ErrorCode.KDC_ERR_ETYPE_NOSUPP, f"no requested enctype ({listed}) is supported")
    if server is not None:
        server_enctypes = set(server.enctypes)
        for enctype in supported:
            if enctype in server_enctypes:
                return enctype
    return supported[0]


def ticket_key(server: PrincipalEntry, policy: KdcPolicy, wallclock: datetime) -> KeyEntry:
    """The service's strongest current key in policy order (KDC_ERR_ETYPE_NOSUPP without one)."""
    available = {k.enctype: k for k in server.current_keys if k.usable_at(wallclock)}
    for enctype in policy.supported_enctypes:
        if enctype in available:
            return available[enctype]
    raise KrbError(
        ErrorCode.KDC_ERR_ETYPE_NOSUPP, f"service {server.principal} has no key of a supported enctype", log_level="warning"
    )


@dataclass(frozen=True)
class TicketTimes:
    authtime: datetime
    starttime: datetime
    endtime: datetime
    renew_till: datetime | None
    flags: TicketFlags


def compute_times(
    policy: KdcPolicy,
    *,
    options: int,
    now: datetime,
    till: datetime | None,
    rtime: datetime | None,
    principals: Sequence[PrincipalEntry | None],
    authtime: datetime | None = None,
    limit_end: datetime | None = None,
    limit_renew: datetime | None = None,
    renewable_allowed: bool = True,
) -> TicketTimes:
    """Lifetime = min(request till, every principal's max_life, policy maximum[, the TGT's end]).

    RENEWABLE (or RENEWABLE-OK when till could not be granted) gives a renewable ticket when
    the principals and policy allow renewal at all.
    """
    start = now.replace(microsecond=0)
    max_life = min([policy.max_ticket_lifetime] + [p.max_life for p in principals if p is not None])
    end = start + timedelta(seconds=max_life)
    if is_infinite(till):
        end = min(end, start + timedelta(seconds=policy.default_ticket_lifetime))
    else:
        end = min(end, till)
    if limit_end is not None:
        end = min(end, limit_end)
    if end <= start:
        raise KrbError(ErrorCode.KDC_ERR_NEVER_VALID, f"requested end time {till} is not after the start time {start}")
    flags = TicketFlags(0)
    renew_till = None
    options = KDCOptions(int(options))
    wants_renewable = bool(options & KDCOptions.RENEWABLE)
    if not wants_renewable and options & KDCOptions.RENEWABLE_OK and (is_infinite(till) or till > end):
        wants_renewable = True
        rtime = till
    if wants_renewable and renewable_allowed:
        max_renew = min([policy.max_renewable_lifetime] + [p.max_renewable_life for p in principals if p is not None])
        if max_renew > 0:
            limit = start + timedelta(seconds=max_renew)
            wanted = limit if is_infinite(rtime) else rtime
            renew = min(wanted, limit)
            if limit_renew is not None:
                renew = min(renew, limit_renew)
            if renew > end:
                renew_till = renew
                flags |= TicketFlags.RENEWABLE
    return TicketTimes(authtime or start, start, end, renew_till, flags)


def build_ticket(
    *,
    sname: Principal,
    server_key: KeyEntry,
    session_key: Key,
    cname: Principal,
    times: TicketTimes,
    flags: TicketFlags,
    authorization_data: AuthorizationData | None = None,
    caddr=None,
) -> Ticket:
    """The Ticket for `sname` (as sent by the client), enc-part under the service key (usage 2)."""
    cname_asn1, crealm = principal_to_asn1(cname)
    part: dict = {
        "flags": int(flags),
        "key": EncryptionKey.from_key(session_key),
        "crealm": crealm,
        "cname": cname_asn1,
        "transited": {"tr-type": TransitedType.DOMAIN_X500_COMPRESS, "contents": b""},
        "authtime": times.authtime,
        "starttime": times.starttime,
        "endtime": times.endtime,
    }
    if times.renew_till is not None:
        part["renew-till"] = times.renew_till
    if caddr is not None:
        part["caddr"] = caddr
    if authorization_data is not None and len(authorization_data):
        part["authorization-data"] = authorization_data
    plain = EncTicketPart(part).dump()
    sname_asn1, realm = principal_to_asn1(sname)
    return Ticket(
        {
            "realm": realm,
            "sname": sname_asn1,
            "enc-part": {
                "etype": server_key.enctype,
                "kvno": server_key.kvno,
                "cipher": encrypt(server_key.key, KeyUsage.TICKET, plain),
            },
        }
    )


def build_enc_rep_part(
    cls, *, session_key: Key, nonce: int, times: TicketTimes, flags: TicketFlags, sname: Principal, key_expiration=None
):
    """EncASRepPart (AS, [APPLICATION 25]) or EncTGSRepPart (TGS, [APPLICATION 26])."""
    sname_asn1, srealm = principal_to_asn1(sname)
    value: dict = {
        "key": EncryptionKey.from_key(session_key),
        "last-req": [{"lr-type": 0, "lr-value": times.authtime}],
        "nonce": nonce,
        "flags": int(flags),
        "authtime": times.authtime,
        "starttime": times.starttime,
        "endtime": times.endtime,
        "srealm": srealm,
        "sname": sname_asn1,
    }
    if key_expiration is not None:
        value["key-expiration"] = key_expiration
    if times.renew_till is not None:
        value["renew-till"] = times.renew_till
    return cls(value)


# --- the same structures written directly as DER (the AS hot path) -------------------------------
# Byte-identical to build_ticket(...).dump() / build_enc_rep_part(...).dump() (tests/test_asn1_der.py
# checks the encoders against asn1crypto; tests/test_kdc_perf.py checks these two end to end).


def ticket_der(
    *,
    sname: Principal,
    server_key: KeyEntry,
    session_key: Key,
    cname: Principal,
    times: TicketTimes,
    flags: TicketFlags,
    authorization_data: bytes | None = None,
    caddr: bytes | None = None,
) -> bytes:
    """DER of `build_ticket`'s Ticket; `authorization_data` / `caddr` are already encoded."""
    plain = encode.enc_ticket_part(
        flags=int(flags),
        key=session_key,
        cname=cname,
        transited_type=TransitedType.DOMAIN_X500_COMPRESS,
        transited_contents=b"",
        authtime=times.authtime,
        starttime=times.starttime,
        endtime=times.endtime,
        renew_till=times.renew_till,
        caddr=caddr,
        authorization_data=authorization_data,
    )
    cipher = encrypt(server_key.key, KeyUsage.TICKET, plain)
    return encode.ticket(sname, encode.encrypted_data(server_key.enctype, cipher, server_key.kvno))


def enc_rep_part_der(
    application_tag: int, *, session_key: Key, nonce: int, times: TicketTimes, flags: TicketFlags, sname: Principal,
    key_expiration=None,
) -> bytes:
    """DER of `build_enc_rep_part`'s value: EncASRepPart (25) or EncTGSRepPart (26)."""
    return encode.enc_kdc_rep_part(
        application_tag,
        key=session_key,
        last_req=((0, times.authtime),),
        nonce=nonce,
        flags=int(flags),
        authtime=times.authtime,
        starttime=times.starttime,
        endtime=times.endtime,
        sname=sname,
        key_expiration=key_expiration,
        renew_till=times.renew_till,
    )
