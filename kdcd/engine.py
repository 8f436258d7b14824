"""The KDC protocol engine: bytes in, bytes out, no clock and no sockets.

    engine = KdcEngine(policy, db, pkinit=PkinitCredentials.load(policy))
    reply = engine.handle_request(data, wallclock=datetime.now(timezone.utc), now=time.monotonic(), peer="192.0.2.7:5123")

`handle_request` returns the reply (AS-REP, TGS-REP or KRB-ERROR) or None when the input is not
a Kerberos message at all (the transport then drops the datagram or closes the connection).
Nothing escapes it: protocol failures are `KrbError`s raised inside and turned into KRB-ERROR
bytes at this one boundary; database trouble becomes KDC_ERR_SVC_UNAVAILABLE and any other
exception (a bug) KRB_ERR_GENERIC, logged with its traceback.

The engine is not thread-safe (its caches are plain dicts); each kdcd worker process owns one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import structlog

from common.asn1 import Asn1DecodeError, ErrorCode, MessageType, PaDataType, decode, principal_from_asn1
from common.asn1.fast import KrbFastResponse
from common.asn1.krb5 import AS_REQ, KDC_REQ_BODY, METHOD_DATA, TGS_REQ
from common.crypto import Key
from common.logsetup import Counters, get_logger
from common.principal import Principal
from common.asn1.fastdecode_as import AsReqFields, read_as_req
from kdcd.as_exchange import AsRequestParts, handle_as_req
from kdcd.db import DatabaseError, KeyEntry, NotFound, PrincipalEntry
from common.krberror import ErrorContext, KrbError, encode_krb_error
from kdcd.caches import principal_text
from kdcd.freshness import FreshnessTokens
from kdcd.pkinit import PkinitCredentials, PkinitServer
from kdcd.policy import KdcPolicy
from kdcd.tgs import FastState, fast_reply, handle_tgs_req
from kdcd.tickets import ticket_key

__all__ = ["KdcEngine", "RequestFields"]

_AS_REQ_TAG = 0x6A  # [APPLICATION 10] constructed
_TGS_REQ_TAG = 0x6C  # [APPLICATION 12] constructed
_CTA_NAME = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class RequestFields:
    """The KDC-REQ-BODY fields, read once (every read can raise on malformed input)."""

    options: int
    cname: Principal | None
    realm: str
    sname: Principal | None
    till: datetime | None
    rtime: datetime | None
    nonce: int
    etypes: list[int]


class KdcEngine:
    """One realm's KDC. `db` is a `kdcd.db.PrincipalDatabase`; `pkinit` the loaded credentials
    (None: PKINIT is not offered); `rng(n)` gives n random bytes (freshness tokens, DH nonces)."""

    def __init__(
        self,
        policy: KdcPolicy,
        db,
        *,
        pkinit: PkinitCredentials | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        counters: Counters | None = None,
        logger=None,
    ) -> None:
        self.policy = policy
        self.db = db
        self.rng = rng
        self.counters = counters or Counters()
        self.log = logger or get_logger("kdcd.engine")
        # True: the engine logs each outcome itself. kdcd.server.RequestHandler sets it False and
        # writes one line per request with what the engine bound into the logging context.
        self.log_outcomes = True
        self.freshness = FreshnessTokens(self._krbtgt_key, policy.freshness_token_lifetime, rng)
        self.pkinit = (
            PkinitServer(policy, pkinit, db, self.freshness, rng=rng) if pkinit is not None and policy.pkinit_enabled else None
        )

    @classmethod
    def from_policy(cls, policy: KdcPolicy, db, **kwargs) -> KdcEngine:
        """Load the PKINIT credentials the policy names (file I/O happens here, once)."""
        creds = PkinitCredentials.load(policy) if policy.pkinit_enabled and policy.kdc_certificate else None
        return cls(policy, db, pkinit=creds, **kwargs)

    # --- the boundary --------------------------------------------------------------------------

    def handle_request(self, data: bytes, *, wallclock: datetime, now: float, peer: str) -> bytes | None:
        """The reply to one request; None if `data` is not a Kerberos message (close/drop)."""
        if wallclock.tzinfo is None:
            wallclock = wallclock.replace(tzinfo=timezone.utc)
        else:
            wallclock = wallclock.astimezone(timezone.utc)
        data = bytes(data)
        ctx = ErrorContext(realm=self.policy.realm)
        if not data or data[0] & 0xE0 != 0x60 or data[0] & 0x1F == 0x1F:
            self.counters.count("kdc_not_kerberos", self.log, peer=peer)
            return None
        try:
            return self._dispatch(data, ctx, wallclock=wallclock, now=now, peer=peer)
        except KrbError as error:
            return self._error_reply(error, ctx, wallclock, peer)
        except DatabaseError as exc:
            self.log.warning("kdc_database_error", peer=peer, error=str(exc))
            error = KrbError(ErrorCode.KDC_ERR_SVC_UNAVAILABLE, "the KDC database is unavailable", log_level="warning")
            return self._error_reply(error, ctx, wallclock, peer)
        except Exception:  # noqa: BLE001 - the boundary: a bug must not take the KDC down
            self.log.exception("kdc_internal_error", peer=peer)
            self.counters.count("kdc_internal_error")
            return self._error_reply(KrbError(ErrorCode.KRB_ERR_GENERIC, "internal KDC error"), ctx, wallclock, peer)

    def _error_reply(self, error: KrbError, ctx: ErrorContext, wallclock: datetime, peer: str) -> bytes:
        self.counters.count(f"kdc_error_{error.name.lower()}")
        level = error.log_level if error.log_level in ("debug", "info", "warning", "error") else "debug"
        principal = str(ctx.cname) if ctx.cname else None
        if self.log_outcomes or level != "debug":
            getattr(self.log, level)("kdc_refused", peer=peer, principal=principal, code=error.code, error=error.name, text=error.text)
        else:  # the caller's one (debug) line per request carries them
            structlog.contextvars.bind_contextvars(outcome="kdc_refused", principal=principal, code=error.code, error=error.name, text=error.text)
        try:
            fast: FastState | None = ctx.extra.get("fast")
            if fast is not None:
                return self._fast_error(error, ctx, wallclock, fast)
            return encode_krb_error(error, ctx, wallclock=wallclock)
        except Exception:  # noqa: BLE001 - e.g. an unencodable name from the request
            self.log.exception("kdc_error_encoding_failed", peer=peer)
            bare = ErrorContext(realm=self.policy.realm)
            return encode_krb_error(KrbError(error.code, "request refused"), bare, wallclock=wallclock)

    def _fast_error(self, error: KrbError, ctx: ErrorContext, wallclock: datetime, fast: FastState) -> bytes:
        """RFC 6113 5.4.4: the real error inside PA-FX-ERROR in an armored KrbFastResponse."""
        inner = KrbError(error.code, error.text, ctime=error.ctime, cusec=error.cusec)
        padata = [{"padata-type": PaDataType.PA_FX_ERROR, "padata-value": encode_krb_error(inner, ctx, wallclock=wallclock)}]
        if error.e_data is not None:
            try:
                padata += [m.native for m in METHOD_DATA.load(error.e_data)]
            except ValueError:
                pass
        response = KrbFastResponse({"padata": padata, "nonce": fast.nonce})
        outer_e_data = METHOD_DATA([{"padata-type": PaDataType.PA_FX_FAST, "padata-value": fast_reply(fast.armor_key, response)}]).dump()
        outer = KrbError(error.code, error.text, e_data=outer_e_data, ctime=error.ctime, cusec=error.cusec)
        return encode_krb_error(outer, ctx, wallclock=wallclock)

    # --- dispatch ------------------------------------------------------------------------------

    def _dispatch(self, data: bytes, ctx: ErrorContext, *, wallclock: datetime, now: float, peer: str) -> bytes:
        if len(data) > self.policy.max_request_size:
            raise KrbError(ErrorCode.KRB_ERR_FIELD_TOOLONG, f"request of {len(data)} bytes exceeds {self.policy.max_request_size}")
        tag = data[0]
        if tag not in (_AS_REQ_TAG, _TGS_REQ_TAG):
            raise KrbError(ErrorCode.KRB_AP_ERR_MSG_TYPE, f"[APPLICATION {tag & 0x1F}] is not a KDC request")
        what = "AS-REQ" if tag == _AS_REQ_TAG else "TGS-REQ"
        if tag == _AS_REQ_TAG:
            fast = read_as_req(data)  # strict DER in one pass; None: asn1crypto below
            if fast is not None:
                self._check_header(fast.pvno, fast.msg_type, MessageType.AS_REQ, what)
                return self._as_req(AsRequestParts.from_fields(fast), data, self._fast_request_fields(fast, ctx), ctx,
                                    wallclock=wallclock, now=now, peer=peer)
        try:
            req = decode(data)
        except Asn1DecodeError as exc:
            raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"malformed {what}: {exc}") from None
        try:
            pvno, msg_type = req["pvno"].native, req["msg-type"].native
        except ValueError as exc:
            raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"malformed {what}: {exc}") from None
        expected = MessageType.AS_REQ if isinstance(req, AS_REQ) else MessageType.TGS_REQ
        self._check_header(pvno, msg_type, expected, what)
        fields = self.request_fields(req["req-body"], ctx)
        if isinstance(req, AS_REQ):
            return self._as_req(AsRequestParts.from_asn1(req), data, fields, ctx, wallclock=wallclock, now=now, peer=peer)
        assert isinstance(req, TGS_REQ)
        self.counters.count("kdc_tgs_req")
        return handle_tgs_req(self, req, data, fields, ctx, wallclock=wallclock, now=now, peer=peer)

    @staticmethod
    def _check_header(pvno: int, msg_type: int, expected: int, what: str) -> None:
        if pvno != 5:
            raise KrbError(ErrorCode.KDC_ERR_BAD_PVNO, f"pvno {pvno} is not 5")
        if msg_type != expected:
            raise KrbError(ErrorCode.KRB_AP_ERR_MSG_TYPE, f"msg-type {msg_type} in a {what}")

    def _as_req(self, req: AsRequestParts, data: bytes, fields: RequestFields, ctx: ErrorContext, *,
                wallclock: datetime, now: float, peer: str) -> bytes:
        if fields.realm != self.policy.realm:
            raise KrbError(ErrorCode.KDC_ERR_WRONG_REALM, f"this KDC serves {self.policy.realm}, not {fields.realm}")
        self.counters.count("kdc_as_req")
        return handle_as_req(self, req, data, fields, ctx, wallclock=wallclock, now=now, peer=peer)

    @staticmethod
    def _fast_request_fields(fast: AsReqFields, ctx: ErrorContext) -> RequestFields:
        """`request_fields` for the fast reader's values (the same Principals, the same errors)."""
        try:
            realm = fast.realm
            sname = Principal(fast.sname[1], realm, fast.sname[0]) if fast.sname is not None else None
            if sname is not None:
                ctx.sname = sname
            cname = Principal(fast.cname[1], realm, fast.cname[0]) if fast.cname is not None else None
            if cname is not None and ctx.cname is None:
                ctx.cname = cname
        except (ValueError, TypeError) as exc:
            raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"malformed KDC-REQ-BODY: {exc}") from None
        return RequestFields(
            options=fast.kdc_options,
            cname=cname,
            realm=realm,
            sname=sname,
            till=fast.till,
            rtime=fast.rtime,
            nonce=fast.nonce,
            etypes=list(fast.etypes),
        )

    def request_fields(self, body: KDC_REQ_BODY, ctx: ErrorContext) -> RequestFields:
        """Read the KDC-REQ-BODY into plain values, naming the request in `ctx` for errors."""
        try:
            realm = body["realm"].native
            sname = principal_from_asn1(body["sname"], realm) if body["sname"].native is not None else None
            if sname is not None:
                ctx.sname = sname
            cname = principal_from_asn1(body["cname"], realm) if body["cname"].native is not None else None
            if cname is not None and ctx.cname is None:
                ctx.cname = cname
            return RequestFields(
                options=int(body["kdc-options"].native),
                cname=cname,
                realm=realm,
                sname=sname,
                till=body["till"].native,
                rtime=body["rtime"].native,
                nonce=body["nonce"].native,
                etypes=list(body["etype"].native),
            )
        except (ValueError, TypeError) as exc:
            raise KrbError(ErrorCode.KRB_ERR_GENERIC, f"malformed KDC-REQ-BODY: {exc}") from None

    # --- database helpers used by the exchanges ---------------------------------------------

    def find_principal(self, principal: Principal) -> PrincipalEntry | None:
        if principal.realm != self.policy.realm:
            return None
        try:
            return self.db.get_principal(principal)
        except NotFound:
            return None

    def lookup_server(self, sname: Principal, wallclock: datetime) -> PrincipalEntry:
        if sname.realm != self.policy.realm:
            raise KrbError(ErrorCode.KDC_ERR_WRONG_REALM, f"service {sname} is not in realm {self.policy.realm}")
        entry = self.find_principal(sname)
        if entry is None:
            raise KrbError(ErrorCode.KDC_ERR_S_PRINCIPAL_UNKNOWN, f"service {sname} is not in the database")
        if entry.attributes.disabled:
            raise KrbError(ErrorCode.KDC_ERR_SERVICE_REVOKED, f"service {sname} is disabled")
        if not entry.attributes.is_service:
            raise KrbError(ErrorCode.KDC_ERR_POLICY, f"{sname} is not a service principal")
        return entry

    def ticket_key(self, server: PrincipalEntry, wallclock: datetime) -> KeyEntry:
        return ticket_key(server, self.policy, wallclock)

    @staticmethod
    def is_cta_name(principal: Principal) -> bool:
        return len(principal.components) == 2 and principal.components[0] == "cta" and bool(_CTA_NAME.fullmatch(principal.components[1]))

    def _krbtgt_key(self, kvno: int | None) -> tuple[int, Key]:
        entry = self.db.get_principal(Principal.krbtgt(self.policy.realm))
        want = entry.kvno if kvno is None else kvno
        keys = [k for k in entry.keys if k.kvno == want]
        for enctype in self.policy.supported_enctypes:
            for k in keys:
                if k.enctype == enctype:
                    return want, k.key
        raise LookupError(f"no krbtgt key of kvno {want}")

    def note_issued(self, exchange: str, *, client, server, peer, method, enctype, restricted, endtime, cert_cached) -> None:
        """Count and record an issued ticket: one `kdc_<exchange>_issued` info line, or, when the
        caller logs the request itself (`log_outcomes = False`, kdcd.server.RequestHandler), the
        same fields bound into the request's logging context for the caller's one line."""
        event = f"kdc_{exchange}_issued"
        self.counters.count(event)
        fields = {
            "principal": principal_text(client),
            "server": principal_text(server),
            "method": method,
            "enctype": enctype,
            "restricted": restricted,
            "endtime": endtime.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cert_cached": cert_cached,
        }
        if self.log_outcomes:
            self.log.info(event, peer=peer, **fields)
        else:
            structlog.contextvars.bind_contextvars(outcome=event, **fields)
