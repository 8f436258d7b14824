"""The TGS exchange (RFC 4120 3.3) with RFC 6113 FAST as MIT 1.20's `kvno` sends it.

The PA-TGS-REQ AP-REQ carries the TGT (krbtgt key) and an authenticator under the TGT session key
(usage 7) whose checksum covers the outer KDC-REQ-BODY (usage 6). With PA-FX-FAST the TGS-REQ is
armored implicitly by that AP-REQ: armor key = KRB-FX-CF2(authenticator subkey, TGT session key,
"subkeyarmor", "ticketarmor"); req-checksum (usage 50) covers the PA-TGS-REQ padata-value;
the KrbFastReq (usage 51) holds the real req-body. The reply carries a KrbFastResponse (usage 52)
with a fresh strengthen key and KrbFastFinished; the enc-part key becomes
KRB-FX-CF2(strengthen key, subkey or session key, "strengthenkey", "replykey") (RFC 6113 5.4.3).

RENEW (RFC 4120 2.3, 3.3.3; MIT `kinit -R`): the PA-TGS-REQ ticket may then be any ticket of this
realm (a TGT or a service ticket, decrypted with that service's key); the request's sname must
name it (KDC_ERR_SERVER_NOMATCH), it must be RENEWABLE (KDC_ERR_BADOPTION) with renew-till not
passed (KRB_AP_ERR_TKT_EXPIRED). The new ticket keeps client, authtime, flags, renew-till,
addresses and authorization-data; starttime = now, endtime = min(now + the presented ticket's
endtime - starttime, renew-till); it gets a new session key, as RFC 4120 2.3 and MIT do.
VALIDATE is refused (KDC_ERR_BADOPTION): this KDC never issues postdated/invalid tickets.

Customer status (docs/protocol.md, "Authorized phone IDs"): a ticket that carries kerbtel's
KerbtelAuthorizedPhoneIds element was issued to a CTA honoured for those phone IDs; every TGS
request (and renewal) looks them up again. None held by an active customer any more ->
KDC_ERR_CLIENT_REVOKED; otherwise the new ticket lists the ones still active. Tickets without the
element (password principals, unprovisioned CTAs, tickets issued before the element existed) are
not affected. Client-supplied enc-authorization-data never passes kerbtel's KDC-issued elements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from common.asn1 import (
    Asn1DecodeError,
    ErrorCode,
    KDCOptions,
    PaDataType,
    TicketFlags,
    decode,
    decode_as,
    principal_from_asn1,
)
from common.asn1.constants import FAST_CRITICAL_OPTIONS
from common.asn1.kerbtel import (
    find_authorized_phone_ids,
    find_restrictions,
    holds_kdc_issued,
    phone_ids_authorization_data_der,
    replace_authorized_phone_ids,
)
from common.asn1.fast import PA_FX_FAST_REPLY, PA_FX_FAST_REQUEST, KrbFastReq, KrbFastResponse
from common.asn1.krb5 import (
    AP_REQ,
    TGS_REP,
    TGS_REQ,
    Authenticator,
    AuthorizationData,
    EncTGSRepPart,
    EncTicketPart,
    principal_to_asn1,
)
from common.crypto import (
    CryptoError,
    Key,
    KeyUsage,
    cf2,
    decrypt,
    encrypt,
    generate_key,
    get_checksum_type,
    make_checksum,
    required_checksum_type,
    verify_checksum,
)
from common.principal import Principal
from kdcd.db import Customer
from common.krberror import ErrorContext, KrbError
from kdcd.tickets import (
    TGS_ALLOWED_OPTIONS,
    TicketTimes,
    build_enc_rep_part,
    build_ticket,
    check_options,
    choose_enctype,
    compute_times,
)

if TYPE_CHECKING:
    from kdcd.engine import KdcEngine, RequestFields

__all__ = ["FastState", "active_phone_ids", "customer_authorization_data", "handle_tgs_req"]


@dataclass
class FastState:
    """Set once the armor key is known, so errors can be returned inside PA-FX-FAST."""

    armor_key: Key
    nonce: int


def _padata_value(req: TGS_REQ, pa_type: int) -> bytes | None:
    if req["padata"].native is None:
        return None
    for item in req["padata"]:
        if item["padata-type"].native == pa_type:
            return item["padata-value"].native
    return None


def _decrypt_tgt(engine: KdcEngine, ap_req: AP_REQ, wallclock: datetime, *, any_service: bool = False) -> tuple[Principal, EncTicketPart]:
    """The PA-TGS-REQ ticket's server and EncTicketPart. Normally it must be this realm's TGT;
    with `any_service` (a RENEW request) any service ticket of the realm is decrypted too."""
    ticket = ap_req["ticket"]
    try:
        server = principal_from_asn1(ticket["sname"], ticket["realm"])
        enc = ticket["enc-part"]
        etype, kvno, cipher = enc["etype"].native, enc["kvno"].native, enc["cipher"].native
    except ValueError as exc:
        raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"malformed ticket in PA-TGS-REQ: {exc}") from None
    krbtgt = Principal.krbtgt(engine.policy.realm)
    if server.same_name(krbtgt):
        entry = engine.find_principal(krbtgt)
        if entry is None:  # pragma: no cover - the database always holds the realm's krbtgt
            raise KrbError(ErrorCode.KDC_ERR_S_PRINCIPAL_UNKNOWN, f"{krbtgt} is missing from the database", log_level="error")
    elif not any_service or server.realm != engine.policy.realm:
        raise KrbError(ErrorCode.KRB_AP_ERR_NOT_US, f"PA-TGS-REQ ticket is for {server}, not {krbtgt}")
    else:
        entry = engine.find_principal(server)
        if entry is None:
            raise KrbError(ErrorCode.KDC_ERR_S_PRINCIPAL_UNKNOWN, f"PA-TGS-REQ ticket is for {server}, which is not in the database")
    keys = [k for k in entry.keys if k.enctype == etype and (kvno is None or k.kvno == kvno) and k.usable_at(wallclock)]
    if not keys:
        code = ErrorCode.KRB_AP_ERR_BADKEYVER if any(k.enctype == etype for k in entry.keys) else ErrorCode.KRB_AP_ERR_NOKEY
        raise KrbError(code, f"no {entry.principal} key for enctype {etype} kvno {kvno}")
    try:
        plain = decrypt(keys[0].key, KeyUsage.TICKET, cipher)
        part = decode_as(EncTicketPart, plain, padded=True)
        part.native  # noqa: B018 - force every field to decode now
    except (CryptoError, Asn1DecodeError, ValueError):
        raise KrbError(ErrorCode.KRB_AP_ERR_BAD_INTEGRITY, f"the PA-TGS-REQ ticket does not decrypt with the {entry.principal} key") from None
    return server, part


def _check_ticket_times(engine: KdcEngine, part: EncTicketPart, wallclock: datetime) -> None:
    skew = timedelta(seconds=engine.policy.max_skew)
    flags = TicketFlags(int(part["flags"].native))
    start = part["starttime"].native or part["authtime"].native
    if flags & TicketFlags.INVALID or start - skew > wallclock:
        raise KrbError(ErrorCode.KRB_AP_ERR_TKT_NYV, f"the TGT is not valid before {start:%Y-%m-%dT%H:%M:%SZ}")
    end = part["endtime"].native
    if end + skew < wallclock:
        raise KrbError(ErrorCode.KRB_AP_ERR_TKT_EXPIRED, f"the TGT expired at {end:%Y-%m-%dT%H:%M:%SZ}")


def _authenticator(engine: KdcEngine, ap_req: AP_REQ, session_key: Key, ctx: ErrorContext, wallclock: datetime) -> Authenticator:
    try:
        plain = decrypt(session_key, KeyUsage.TGS_REQ_AUTH, ap_req["authenticator"]["cipher"].native)
        authenticator = decode(plain, padded=True)
        if not isinstance(authenticator, Authenticator):
            raise ValueError("not an Authenticator")
        authenticator.native  # noqa: B018
    except (CryptoError, Asn1DecodeError, ValueError):
        raise KrbError(ErrorCode.KRB_AP_ERR_BAD_INTEGRITY, "the authenticator does not decrypt with the TGT session key") from None
    ctime = authenticator["ctime"].native
    cusec = authenticator["cusec"].native
    ctx.ctime, ctx.cusec = ctime, cusec
    skew = abs((wallclock - (ctime + timedelta(microseconds=cusec))).total_seconds())
    if skew > engine.policy.max_skew:
        raise KrbError(
            ErrorCode.KRB_AP_ERR_SKEW,
            f"authenticator time is {skew:.0f} s from the KDC's clock (limit {engine.policy.max_skew} s)",
            ctime=ctime,
            cusec=cusec,
        )
    return authenticator


def _keyed_checksum(cksum, key: Key, usage: int, data: bytes, what: str) -> None:
    if cksum.native is None:
        raise KrbError(ErrorCode.KRB_AP_ERR_INAPP_CKSUM, f"{what}: checksum missing")
    cksumtype = cksum["cksumtype"].native
    try:
        ctype = get_checksum_type(cksumtype)
    except CryptoError:
        raise KrbError(ErrorCode.KDC_ERR_SUMTYPE_NOSUPP, f"{what}: checksum type {cksumtype} is not supported") from None
    if ctype.enctype is None:
        raise KrbError(ErrorCode.KRB_AP_ERR_INAPP_CKSUM, f"{what}: unkeyed checksum type {ctype.name} is not acceptable")
    try:
        verify_checksum(cksumtype, key, usage, data, cksum["checksum"].native)
    except CryptoError:
        raise KrbError(ErrorCode.KRB_AP_ERR_MODIFIED, f"{what}: checksum does not verify") from None


def _unwrap_fast(
    fast_value: bytes, tgs_req_value: bytes, subkey: Key | None, session_key: Key, nonce: int, ctx: ErrorContext
) -> KrbFastReq:
    if subkey is None:
        raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, "FAST TGS armor needs a subkey in the PA-TGS-REQ authenticator")
    armor_key = cf2(subkey, session_key, b"subkeyarmor", b"ticketarmor")
    ctx.extra["fast"] = FastState(armor_key, nonce)
    try:
        fast = decode_as(PA_FX_FAST_REQUEST, fast_value)
        armored = fast.chosen
    except (Asn1DecodeError, ValueError) as exc:
        raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, f"malformed PA-FX-FAST: {exc}") from None
    if armored["armor"].native is not None:
        raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, "explicit FAST armor in a TGS-REQ is not supported (the TGT is the armor)")
    _keyed_checksum(armored["req-checksum"], armor_key, KeyUsage.FAST_REQ_CHKSUM, tgs_req_value, "FAST req-checksum")
    try:
        plain = decrypt(armor_key, KeyUsage.FAST_ENC, armored["enc-fast-req"]["cipher"].native)
        fast_req = decode_as(KrbFastReq, plain, padded=True)
        fast_req.native  # noqa: B018
    except (CryptoError, Asn1DecodeError, ValueError):
        raise KrbError(ErrorCode.KRB_AP_ERR_MODIFIED, "enc-fast-req does not decrypt with the armor key") from None
    options = int(fast_req["fast-options"].native)
    if options & FAST_CRITICAL_OPTIONS:
        raise KrbError(ErrorCode.KDC_ERR_UNKNOWN_CRITICAL_FAST_OPTIONS, f"critical FAST options {options:#010x} not supported")
    try:
        inner_nonce = fast_req["req-body"]["nonce"].native
    except ValueError:  # pragma: no cover - decoded above
        inner_nonce = nonce
    ctx.extra["fast"] = FastState(armor_key, inner_nonce)
    return fast_req


# --- customer status (the seed's rule, re-checked for every ticket the TGS issues) ------------


def active_phone_ids(db, phone_ids, customers=None) -> tuple[tuple[bytes, ...], list[Customer]]:
    """The phone IDs among `phone_ids` that an *active* customer holds now (in the given order),
    and the customers holding any of them (for the e-text when none is active). `customers`:
    the records `db.customers_for_phone_ids(phone_ids)` returned in this same request."""
    customers = db.customers_for_phone_ids(list(phone_ids)) if customers is None else list(customers)
    held = {p for c in customers if c.active for p in c.phone_ids}
    return tuple(p for p in phone_ids if p in held), customers


def _revoked_text(phone_ids, customers: list[Customer]) -> str:
    if not customers:
        ids = ", ".join(p[:4].hex() + "..." for p in phone_ids)
        return f"no customer record holds the ticket's phone ID(s) {ids} any more"
    states = ", ".join(f"customer {c.id} is {c.status.value}" for c in customers)
    return f"no active customer for the ticket's phone ID(s): {states}"


def customer_authorization_data(db, phone_ids, customers=None) -> bytes:
    """For the AS exchange: DER AuthorizationData holding the KerbtelAuthorizedPhoneIds element of
    a ticket issued to a CTA honoured for its operator certificate (`phone_ids` = the
    certificate's), listing those an active customer holds (one indexed query per phone ID, ~20 us,
    unless the PKINIT customer rule passes the `customers` it just read; the DER is written
    directly, ~5 us). KDC_ERR_CLIENT_REVOKED if none does."""
    active, customers = active_phone_ids(db, phone_ids, customers)
    if not active:
        raise KrbError(ErrorCode.KDC_ERR_CLIENT_REVOKED, _revoked_text(phone_ids, customers))
    return phone_ids_authorization_data_der(active)


def _ticket_authorization_data(engine: KdcEngine, tgt: EncTicketPart) -> list:
    """The presented ticket's authorization-data elements for the new ticket, after the customer
    check: a KerbtelAuthorizedPhoneIds element is narrowed to the phone IDs still active."""
    ad = tgt["authorization-data"]
    if not ad.native:
        return []
    try:
        phone_ids = find_authorized_phone_ids(ad)
    except Asn1DecodeError as exc:
        raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"the ticket's kerbtel authorization-data is malformed: {exc}", log_level="error") from None
    if phone_ids is None:
        return list(ad)
    active, customers = active_phone_ids(engine.db, phone_ids)
    if not active:
        raise KrbError(ErrorCode.KDC_ERR_CLIENT_REVOKED, _revoked_text(phone_ids, customers))
    if active == phone_ids:
        return list(ad)
    return list(replace_authorized_phone_ids(ad, active))


def _renewal_times(tgt: EncTicketPart, wallclock: datetime) -> TicketTimes:
    """RFC 4120 3.3.3.1: the same lifetime as the presented ticket from now, capped at renew-till."""
    flags = TicketFlags(int(tgt["flags"].native))
    renew_till = tgt["renew-till"].native
    if not flags & TicketFlags.RENEWABLE or renew_till is None:
        raise KrbError(ErrorCode.KDC_ERR_BADOPTION, "RENEW: the ticket is not renewable")
    if wallclock > renew_till:
        raise KrbError(ErrorCode.KRB_AP_ERR_TKT_EXPIRED, f"RENEW: the ticket's renew-till {renew_till:%Y-%m-%dT%H:%M:%SZ} has passed")
    authtime = tgt["authtime"].native
    old_start = tgt["starttime"].native or authtime
    start = wallclock.replace(microsecond=0)
    end = min(start + (tgt["endtime"].native - old_start), renew_till)
    if end <= start:
        raise KrbError(ErrorCode.KRB_AP_ERR_TKT_EXPIRED, f"RENEW: the ticket's renew-till {renew_till:%Y-%m-%dT%H:%M:%SZ} has passed")
    return TicketTimes(authtime, start, end, renew_till, flags & ~TicketFlags.INVALID)


def _request_authorization_data(engine: KdcEngine, body, subkey: Key | None, session_key: Key) -> list:
    """enc-authorization-data (under the subkey, usage 5, or the session key, 4), without
    kerbtel's KDC-issued elements: a client cannot add a restriction or phone IDs itself."""
    enc_ad = body["enc-authorization-data"]
    if enc_ad.native is None:
        return []
    key, usage = (subkey, KeyUsage.TGS_REQ_AUTH_DATA_SUBKEY) if subkey else (session_key, KeyUsage.TGS_REQ_AUTH_DATA_SESSION_KEY)
    try:
        added = decode_as(AuthorizationData, decrypt(key, usage, enc_ad["cipher"].native), padded=True)
        added.native  # noqa: B018
    except (CryptoError, Asn1DecodeError, ValueError):
        raise KrbError(ErrorCode.KRB_AP_ERR_BAD_INTEGRITY, "enc-authorization-data does not decrypt") from None
    kept = [e for e in added if not holds_kdc_issued(e)]
    if len(kept) != len(added):
        engine.counters.count("kdc_tgs_client_ad_dropped", engine.log, dropped=len(added) - len(kept))
    return kept


def handle_tgs_req(
    engine: KdcEngine, req: TGS_REQ, raw: bytes, fields: RequestFields, ctx: ErrorContext, *, wallclock: datetime, now: float, peer: str
) -> bytes:
    policy = engine.policy
    tgs_req_value = _padata_value(req, PaDataType.PA_TGS_REQ)
    if tgs_req_value is None:
        raise KrbError(ErrorCode.KDC_ERR_PADATA_TYPE_NOSUPP, "TGS-REQ without PA-TGS-REQ")
    try:
        ap_req = decode(tgs_req_value)
    except Asn1DecodeError as exc:
        raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"malformed PA-TGS-REQ: {exc}") from None
    if not isinstance(ap_req, AP_REQ):
        raise KrbError(ErrorCode.KRB_AP_ERR_MSG_TYPE, f"PA-TGS-REQ holds a {type(ap_req).__name__}, not an AP-REQ")

    # The outer options decide which key opens the ticket (FAST may change them below: a RENEW
    # only in the armored body still works for a TGT, and a service ticket without RENEW is refused).
    header_server, tgt = _decrypt_tgt(engine, ap_req, wallclock, any_service=bool(fields.options & KDCOptions.RENEW))
    try:
        client = principal_from_asn1(tgt["cname"], tgt["crealm"])
        session_key = tgt["key"].to_key()
    except ValueError as exc:
        raise KrbError(ErrorCode.KRB_AP_ERR_BAD_INTEGRITY, f"unusable TGT: {exc}") from None
    ctx.cname = client
    authenticator = _authenticator(engine, ap_req, session_key, ctx, wallclock)
    _check_ticket_times(engine, tgt, wallclock)
    auth_client = principal_from_asn1(authenticator["cname"], authenticator["crealm"])
    if not auth_client.same_name(client):
        raise KrbError(ErrorCode.KRB_AP_ERR_BADMATCH, f"authenticator names {auth_client}, the ticket {client}")
    subkey = authenticator["subkey"].to_key() if authenticator["subkey"].native is not None else None

    _keyed_checksum(authenticator["cksum"], session_key, KeyUsage.TGS_REQ_AUTH_CKSUM, req.req_body_bytes(), "PA-TGS-REQ authenticator")

    body = req["req-body"]
    fast_value = _padata_value(req, PaDataType.PA_FX_FAST)
    fast: FastState | None = None
    if fast_value is not None:
        fast_req = _unwrap_fast(fast_value, tgs_req_value, subkey, session_key, fields.nonce, ctx)
        fast = ctx.extra["fast"]
        body = fast_req["req-body"]
        fields = engine.request_fields(body, ctx)

    if fields.realm != policy.realm:
        raise KrbError(ErrorCode.KDC_ERR_WRONG_REALM, f"this KDC serves {policy.realm}, not {fields.realm}")
    if fields.sname is None:
        raise KrbError(ErrorCode.KDC_ERR_S_PRINCIPAL_UNKNOWN, "TGS-REQ without sname")
    check_options(fields.options, TGS_ALLOWED_OPTIONS, "TGS-REQ")
    options = KDCOptions(int(fields.options))
    renew = bool(options & KDCOptions.RENEW)
    if not renew and not header_server.same_name(Principal.krbtgt(policy.realm)):
        raise KrbError(ErrorCode.KRB_AP_ERR_NOT_US, f"PA-TGS-REQ ticket is for {header_server}, not a TGT, and RENEW is not asked")
    sname = fields.sname
    if renew and not sname.same_name(header_server):
        raise KrbError(ErrorCode.KDC_ERR_SERVER_NOMATCH, f"RENEW names {sname}, the ticket is for {header_server}")
    server = engine.lookup_server(sname, wallclock)
    client_entry = engine.find_principal(client) if client.realm == policy.realm else None
    if client_entry is not None and client_entry.attributes.disabled:
        raise KrbError(ErrorCode.KDC_ERR_CLIENT_REVOKED, f"client {client} is disabled")

    tgt_flags = TicketFlags(int(tgt["flags"].native))
    if renew:
        times = _renewal_times(tgt, wallclock)
        flags = times.flags
        sname = header_server  # the ticket's own sname, name-type as issued
    else:
        times = compute_times(
            policy,
            options=fields.options,
            now=wallclock,
            till=fields.till,
            rtime=fields.rtime,
            principals=[client_entry, server],
            authtime=tgt["authtime"].native,
            limit_end=tgt["endtime"].native,
            limit_renew=tgt["renew-till"].native,
            renewable_allowed=bool(tgt_flags & TicketFlags.RENEWABLE),
        )
        flags = times.flags | (tgt_flags & (TicketFlags.PRE_AUTHENT | TicketFlags.HW_AUTHENT))
        if options & KDCOptions.FORWARDABLE and tgt_flags & TicketFlags.FORWARDABLE:
            flags |= TicketFlags.FORWARDABLE
        if options & KDCOptions.PROXIABLE and tgt_flags & TicketFlags.PROXIABLE:
            flags |= TicketFlags.PROXIABLE

    # Authorization data: the presented ticket's (an unprovisioned CTA's restriction follows it;
    # authorized phone IDs are re-checked against the customer database here), then what the
    # client adds in enc-authorization-data.
    elements = _ticket_authorization_data(engine, tgt)
    elements += _request_authorization_data(engine, body, subkey, session_key)
    authorization_data = AuthorizationData([e.native for e in elements]) if elements else None

    session_enctype = choose_enctype(fields.etypes, policy, server)
    new_session_key = generate_key(session_enctype)
    ticket = build_ticket(
        sname=sname,
        server_key=engine.ticket_key(server, wallclock),
        session_key=new_session_key,
        cname=client,
        times=times,
        flags=flags,
        authorization_data=authorization_data,
        caddr=tgt["caddr"] if tgt["caddr"].native else None,
    )

    reply_key, usage = (subkey, KeyUsage.TGS_REP_ENC_PART_SUBKEY) if subkey else (session_key, KeyUsage.TGS_REP_ENC_PART_SESSION_KEY)
    padata: list[dict] = []
    if fast is not None:
        strengthen = generate_key(reply_key.enctype)
        reply_key = cf2(strengthen, reply_key, b"strengthenkey", b"replykey")
        cname_asn1, crealm = principal_to_asn1(client)
        ticket_cksumtype = required_checksum_type(fast.armor_key.enctype)
        response = KrbFastResponse(
            {
                "padata": [],
                "strengthen-key": {"keytype": strengthen.enctype, "keyvalue": strengthen.contents},
                "finished": {
                    "timestamp": wallclock.replace(microsecond=0),
                    "usec": wallclock.microsecond,
                    "crealm": crealm,
                    "cname": cname_asn1,
                    "ticket-checksum": {
                        "cksumtype": ticket_cksumtype,
                        "checksum": make_checksum(ticket_cksumtype, fast.armor_key, KeyUsage.FAST_FINISHED, ticket.dump()),
                    },
                },
                "nonce": fast.nonce,
            }
        )
        padata.append({"padata-type": PaDataType.PA_FX_FAST, "padata-value": fast_reply(fast.armor_key, response)})

    rep_part = build_enc_rep_part(
        EncTGSRepPart, session_key=new_session_key, nonce=fields.nonce, times=times, flags=flags, sname=sname
    )
    cname_asn1, crealm = principal_to_asn1(client)
    value: dict = {
        "crealm": crealm,
        "cname": cname_asn1,
        "ticket": ticket,
        "enc-part": {"etype": reply_key.enctype, "cipher": encrypt(reply_key, usage, rep_part.dump())},
    }
    if padata:
        value["padata"] = padata
    engine.note_issued(
        "tgs", client=client, server=sname, peer=peer,
        method=("fast" if fast else "plain") + ("-renew" if renew else ""), enctype=session_enctype,
        restricted=find_restrictions(authorization_data) is not None, endtime=times.endtime, cert_cached=False,
    )
    return TGS_REP(value).dump()


def fast_reply(armor_key: Key, response: KrbFastResponse) -> bytes:
    """DER PA-FX-FAST-REPLY holding `response` under the armor key (usage 52)."""
    cipher = encrypt(armor_key, KeyUsage.FAST_REP, response.dump())
    return PA_FX_FAST_REPLY(name="armored-data", value={"enc-fast-rep": {"etype": armor_key.enctype, "cipher": cipher}}).dump()
