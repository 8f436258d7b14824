"""`KrbError`: the one exception Kerberos engines raise inside, and the one place it becomes KRB-ERROR bytes.

Used by the KDC (kdcd) and by the signaling controller's AP engine (scd/km.py). Inside an engine
every refusal is `raise KrbError(ErrorCode.X, "precise text", e_data=...)`.
`KdcEngine.handle_request` (likewise `ScKeyManager.receive`) catches it once and calls `encode_krb_error` with what it knows of
the request (`ErrorContext`): stime/susec always, ctime/cusec when the request carried an
authenticator whose time was read, crealm/cname and realm/sname from the request body when it
was parsed (else the KDC's own krbtgt name, RFC 4120 5.9.1 requires sname).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from common.asn1 import ErrorCode
from common.asn1.krb5 import KRB_ERROR, TYPED_DATA, principal_to_asn1
from common.principal import Principal

__all__ = ["ErrorContext", "KrbError", "encode_krb_error", "typed_data"]

MAX_E_TEXT = 400  # characters; e-text is for humans and logs, not a channel for request data


class KrbError(Exception):
    """A Kerberos protocol refusal: `code` (ErrorCode), `text` (e-text), optional `e_data`.

    `ctime`/`cusec` may be set by whoever read the client's timestamp (KRB_AP_ERR_SKEW replies
    echo it). `log_level` says how loudly the boundary should log it ('debug' for the client's
    mistakes and attacks, 'warning' for the KDC's own trouble).
    """

    def __init__(
        self,
        code: int,
        text: str,
        *,
        e_data: bytes | None = None,
        ctime: datetime | None = None,
        cusec: int | None = None,
        log_level: str = "debug",
    ) -> None:
        super().__init__(int(code), text)
        self.code = int(code)
        self.text = text
        self.e_data = e_data
        self.ctime = ctime
        self.cusec = cusec
        self.log_level = log_level

    @property
    def name(self) -> str:
        try:
            return ErrorCode(self.code).name
        except ValueError:  # pragma: no cover - codes come from ErrorCode
            return str(self.code)

    def __str__(self) -> str:
        return f"{self.name} ({self.code}): {self.text}"


@dataclass
class ErrorContext:
    """What the engine learned about a request before it failed (filled in as parsing goes)."""

    realm: str
    sname: Principal | None = None
    cname: Principal | None = None
    ctime: datetime | None = None
    cusec: int | None = None
    extra: dict = field(default_factory=dict)


def typed_data(*entries: tuple[int, bytes | None]) -> bytes:
    """DER TYPED-DATA from (data-type, data-value) pairs (RFC 4120 5.9.1, RFC 4556 errors)."""
    return TYPED_DATA([{"data-type": t, "data-value": v} for t, v in entries]).dump()


def _clip(text: str) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= MAX_E_TEXT else text[: MAX_E_TEXT - 3] + "..."


def encode_krb_error(error: KrbError, context: ErrorContext, *, wallclock: datetime) -> bytes:
    """The KRB-ERROR for `error`, with stime/susec from `wallclock` and names from `context`."""
    sname = context.sname or Principal.krbtgt(context.realm)
    sname_asn1, realm = principal_to_asn1(sname)
    value: dict = {
        "stime": wallclock.replace(microsecond=0),
        "susec": wallclock.microsecond,
        "error-code": error.code,
        "realm": realm,
        "sname": sname_asn1,
        "e-text": _clip(error.text),
    }
    ctime = error.ctime or context.ctime
    cusec = error.cusec if error.ctime is not None else context.cusec
    if ctime is not None:
        value["ctime"] = ctime.replace(microsecond=0)
        value["cusec"] = cusec if cusec is not None and 0 <= cusec <= 999_999 else 0
    if context.cname is not None:
        cname, crealm = principal_to_asn1(context.cname)
        value["crealm"] = crealm
        value["cname"] = cname
    if error.e_data is not None:
        value["e-data"] = error.e_data
    return KRB_ERROR(value).dump()
