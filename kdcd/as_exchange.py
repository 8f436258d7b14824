"""The AS exchange (RFC 4120 3.1): pre-authentication (PKINIT or PA-ENC-TIMESTAMP), then a
ticket for the service the client names (krbtgt or, as FIG. 3 has it, the signaling
controller directly) and the AS-REP whose enc-part is under the reply key (key usage 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from common.asn1 import (
    ApplicationTag,
    Asn1DecodeError,
    ErrorCode,
    KDCOptions,
    MessageType,
    PaDataType,
    TicketFlags,
    decode_as,
    encode,
)
from common.asn1.krb5 import ETYPE_INFO2, METHOD_DATA, PA_ENC_TIMESTAMP, PA_ENC_TS_ENC, AS_REQ
from common.crypto import CryptoError, KeyUsage, decrypt, encrypt, generate_key
from common.principal import Principal
from common.asn1.kerbtel import restriction_authorization_data
from kdcd.db import KeyEntry, PrincipalEntry
from common.krberror import ErrorContext, KrbError
from kdcd.tgs import customer_authorization_data
from kdcd.tickets import AS_ALLOWED_OPTIONS, check_options, choose_enctype, compute_times, enc_rep_part_der, ticket_der

if TYPE_CHECKING:
    from common.asn1.fastdecode_as import AsReqFields
    from kdcd.engine import KdcEngine, RequestFields

__all__ = ["AsRequestParts", "handle_as_req"]


@dataclass(frozen=True)
class AsRequestParts:
    """What the AS exchange reads from an AS-REQ besides the KDC-REQ-BODY fields, from either
    reader (common.asn1.fastdecode_as or asn1crypto): the padata (first value of each type:
    RFC 4120 5.2.7 defines no repeats), the KDC-REQ-BODY bytes as received (what paChecksum
    covers) and the addresses as (addr-type, address) pairs (None or empty: none)."""

    padata: dict[int, bytes]
    req_body: bytes
    addresses: tuple[tuple[int, bytes], ...] | None

    @classmethod
    def from_asn1(cls, req: AS_REQ) -> AsRequestParts:
        found: dict[int, bytes] = {}
        if req["padata"].native is not None:
            for item in req["padata"]:
                found.setdefault(item["padata-type"].native, item["padata-value"].native)
        addresses = req["req-body"]["addresses"].native
        pairs = tuple((a["addr-type"], a["address"]) for a in addresses) if addresses else None
        return cls(found, req.req_body_bytes(), pairs)

    @classmethod
    def from_fields(cls, fields: AsReqFields) -> AsRequestParts:
        found: dict[int, bytes] = {}
        for kind, value in fields.padata or ():
            found.setdefault(kind, value)
        return cls(found, fields.req_body, fields.addresses)


def _salt_text(key: KeyEntry) -> str | None:
    if key.salt is None:
        return None
    try:
        return key.salt.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _etype_info2(entry: PrincipalEntry, etypes: list[int], engine: KdcEngine, wallclock: datetime) -> bytes | None:
    """ETYPE-INFO2 with one entry: the client's first requested etype that it has a key for."""
    keys = {k.enctype: k for k in entry.current_keys if k.usable_at(wallclock)}
    for etype in etypes:
        if etype in keys and etype in engine.policy.supported_enctypes:
            value: dict = {"etype": etype}
            salt = _salt_text(keys[etype])
            if salt is not None:
                value["salt"] = salt
            return ETYPE_INFO2([value]).dump()
    return None


def _offers_enc_timestamp(entry: PrincipalEntry | None) -> bool:
    if entry is None or not entry.current_keys:
        return False
    return not entry.attributes.allow_pkinit or any(k.salt is not None for k in entry.current_keys)


def _method_data(
    engine: KdcEngine, entry: PrincipalEntry | None, etypes: list[int], padata: dict[int, bytes], wallclock: datetime
) -> bytes:
    methods: list[dict] = []
    if engine.pkinit is not None and (entry is None or entry.attributes.allow_pkinit):
        methods.append({"padata-type": PaDataType.PA_PK_AS_REQ, "padata-value": b""})
    if _offers_enc_timestamp(entry):
        info = _etype_info2(entry, etypes, engine, wallclock)
        if info is not None:
            methods.append({"padata-type": PaDataType.PA_ETYPE_INFO2, "padata-value": info})
        methods.append({"padata-type": PaDataType.PA_ENC_TIMESTAMP, "padata-value": b""})
    if engine.pkinit is not None and PaDataType.PA_AS_FRESHNESS in padata:
        token = engine.freshness.issue(int(wallclock.timestamp()))
        methods.append({"padata-type": PaDataType.PA_AS_FRESHNESS, "padata-value": token})
    return METHOD_DATA(methods).dump()


def _lookup_client(engine: KdcEngine, cname: Principal) -> PrincipalEntry | None:
    entry = engine.find_principal(cname)
    if entry is None:
        if engine.pkinit is not None and engine.policy.allow_unregistered_ctas and engine.is_cta_name(cname):
            return None
        raise KrbError(ErrorCode.KDC_ERR_C_PRINCIPAL_UNKNOWN, f"client {cname} is not in the database")
    if entry.attributes.disabled:
        raise KrbError(ErrorCode.KDC_ERR_CLIENT_REVOKED, f"client {cname} is disabled")
    return entry


def _verify_enc_timestamp(
    engine: KdcEngine, entry: PrincipalEntry, value: bytes, etypes: list[int], wallclock: datetime, padata: dict[int, bytes]
) -> KeyEntry:
    try:
        enc = decode_as(PA_ENC_TIMESTAMP, value)
        etype, kvno, cipher = enc["etype"].native, enc["kvno"].native, enc["cipher"].native
    except (Asn1DecodeError, ValueError) as exc:
        raise KrbError(ErrorCode.KDC_ERR_PREAUTH_FAILED, f"malformed PA-ENC-TIMESTAMP: {exc}") from None
    candidates = [k for k in entry.keys if k.enctype == etype and k.usable_at(wallclock) and (kvno is None or k.kvno == kvno)]
    if not candidates:
        raise KrbError(ErrorCode.KDC_ERR_ETYPE_NOSUPP, f"{entry.principal} has no key of enctype {etype}" + (f" kvno {kvno}" if kvno is not None else ""))
    key = candidates[0]
    failed = KrbError(
        ErrorCode.KDC_ERR_PREAUTH_FAILED,
        "PA-ENC-TIMESTAMP does not decrypt with the client's key",
        e_data=_method_data(engine, entry, etypes, padata, wallclock),
    )
    try:
        plain = decrypt(key.key, KeyUsage.PA_ENC_TIMESTAMP, cipher)
        ts = decode_as(PA_ENC_TS_ENC, plain, padded=True)
        patimestamp = ts["patimestamp"].native
        pausec = ts["pausec"].native or 0
    except (CryptoError, Asn1DecodeError, ValueError):
        raise failed from None
    client_time = patimestamp + timedelta(microseconds=pausec)
    skew = abs((wallclock - client_time).total_seconds())
    if skew > engine.policy.max_skew:
        raise KrbError(
            ErrorCode.KRB_AP_ERR_SKEW,
            f"PA-ENC-TIMESTAMP is {skew:.0f} s from the KDC's clock (limit {engine.policy.max_skew} s)",
            ctime=patimestamp,
            cusec=pausec,
        )
    return key


def handle_as_req(
    engine: KdcEngine, req: AsRequestParts, raw: bytes, fields: RequestFields, ctx: ErrorContext, *, wallclock: datetime, now: float, peer: str
) -> bytes:
    policy = engine.policy
    if fields.cname is None:
        raise KrbError(ErrorCode.KDC_ERR_C_PRINCIPAL_UNKNOWN, "AS-REQ without cname")
    if fields.sname is None:
        raise KrbError(ErrorCode.KDC_ERR_S_PRINCIPAL_UNKNOWN, "AS-REQ without sname")
    check_options(fields.options, AS_ALLOWED_OPTIONS, "AS-REQ")
    cname, sname = fields.cname, fields.sname
    client = _lookup_client(engine, cname)
    server = engine.lookup_server(sname, wallclock)
    padata = req.padata
    etypes = fields.etypes

    pkinit_client = None
    reply_key_entry: KeyEntry | None = None
    preauthenticated = True
    if PaDataType.PA_PK_AS_REQ in padata and engine.pkinit is not None:
        if client is not None and not client.attributes.allow_pkinit:
            raise KrbError(ErrorCode.KDC_ERR_CLIENT_NOT_TRUSTED, f"{cname} may not authenticate with a certificate")
        pkinit_client = engine.pkinit.verify(
            padata[PaDataType.PA_PK_AS_REQ],
            cname=cname,
            req_body=req.req_body,
            nonce=fields.nonce,
            wallclock=wallclock,
            now=now,
            peer=peer,
        )
    elif PaDataType.PA_ENC_TIMESTAMP in padata and _offers_enc_timestamp(client):
        reply_key_entry = _verify_enc_timestamp(engine, client, padata[PaDataType.PA_ENC_TIMESTAMP], etypes, wallclock, padata)
    elif client is not None and not client.attributes.requires_preauth and client.current_keys:
        preauthenticated = False
        keys = {k.enctype: k for k in client.current_keys if k.usable_at(wallclock)}
        usable = [e for e in etypes if e in keys and e in policy.supported_enctypes]
        if not usable:
            raise KrbError(ErrorCode.KDC_ERR_ETYPE_NOSUPP, f"{cname} has no key of a requested enctype")
        reply_key_entry = keys[usable[0]]
    else:
        raise KrbError(
            ErrorCode.KDC_ERR_PREAUTH_REQUIRED,
            "Additional pre-authentication required",
            e_data=_method_data(engine, client, etypes, padata, wallclock),
        )

    # The ticket.
    session_enctype = choose_enctype(etypes, policy, server)
    session_key = generate_key(session_enctype)
    times = compute_times(
        policy,
        options=fields.options,
        now=wallclock,
        till=fields.till,
        rtime=fields.rtime,
        principals=[client, server],
    )
    flags = times.flags | TicketFlags.INITIAL
    if preauthenticated:
        flags |= TicketFlags.PRE_AUTHENT
    options = KDCOptions(int(fields.options))
    if options & KDCOptions.FORWARDABLE:
        flags |= TicketFlags.FORWARDABLE
    if options & KDCOptions.PROXIABLE:
        flags |= TicketFlags.PROXIABLE
    authorization_data = None
    if pkinit_client is not None and pkinit_client.restricted:
        restriction = restriction_authorization_data(policy.csr_numbers, policy.emergency_numbers, pkinit_client.verified.mac)
        if len(restriction):
            authorization_data = restriction.dump()
    elif pkinit_client is not None:
        # The customer records the PKINIT customer rule read a moment ago, not a second query.
        authorization_data = customer_authorization_data(engine.db, pkinit_client.verified.phone_ids, customers=pkinit_client.customers or None)
    caddr = None
    if req.addresses:
        caddr = encode.host_addresses(req.addresses)
    server_key = engine.ticket_key(server, wallclock)
    # Ticket, EncASRepPart and AS-REP are written as DER directly (common.asn1.encode, checked
    # byte for byte against the asn1crypto classes in tests/test_asn1_der.py).
    ticket = ticket_der(
        sname=sname,
        server_key=server_key,
        session_key=session_key,
        cname=cname,
        times=times,
        flags=flags,
        authorization_data=authorization_data,
        caddr=caddr,
    )

    # The reply key and the padata that lets the client compute it.
    reply_padata: list[tuple[int, bytes]] = []
    kvno: int | None = None
    if pkinit_client is not None:
        reply_enctype = choose_enctype(etypes, policy)
        pk_reply = engine.pkinit.reply(
            pkinit_client, request=raw, enctype=reply_enctype, cname=cname, sname=sname, wallclock=wallclock, now=now
        )
        reply_padata.append((PaDataType.PA_PK_AS_REP, pk_reply.pa_value))
        reply_key = pk_reply.reply_key
        method = f"pkinit-{pk_reply.mode}"
    else:
        assert reply_key_entry is not None
        reply_key = reply_key_entry.key
        info = {"etype": reply_key_entry.enctype}
        salt = _salt_text(reply_key_entry)
        if salt is not None:
            info["salt"] = salt
        if preauthenticated:
            reply_padata.append((PaDataType.PA_ETYPE_INFO2, ETYPE_INFO2([info]).dump()))
        kvno = reply_key_entry.kvno
        method = "enc-timestamp" if preauthenticated else "none"

    rep_part = enc_rep_part_der(
        ApplicationTag.ENC_AS_REP_PART, session_key=session_key, nonce=fields.nonce, times=times, flags=flags, sname=sname
    )
    enc_part = encode.encrypted_data(reply_key.enctype, encrypt(reply_key, KeyUsage.AS_REP_ENC_PART, rep_part), kvno)
    engine.note_issued(
        "as",
        client=cname,
        server=sname,
        peer=peer,
        method=method,
        enctype=session_enctype,
        restricted=bool(pkinit_client and pkinit_client.restricted),
        endtime=times.endtime,
        cert_cached=bool(pkinit_client and pkinit_client.from_cache),
    )
    return encode.kdc_rep(
        ApplicationTag.AS_REP,
        MessageType.AS_REP,
        cname=cname,
        ticket=ticket,
        enc_part=enc_part,
        padata=encode.method_data(reply_padata) if reply_padata else None,
    )
