"""UAC helpers for the signaling channel (issue 4): identifiers, REGISTER, OPTIONS, CANCEL.

Identifiers come from an injectable `rng(n) -> n random bytes` (default `os.urandom`), so tests
and engines choose them. Branches carry the RFC 3261 magic cookie; tags and Call-IDs are 64 and
128 random bits in hex (RFC 3261 19.3 asks for at least 32 bits of randomness for tags).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

from common.sip.message import (
    MAGIC_COOKIE,
    Headers,
    NameAddr,
    SipRequest,
    Uri,
    Via,
)

__all__ = ["IdGenerator", "build_cancel", "build_options", "build_register", "build_request"]

Address = tuple[str, int]


@dataclass
class IdGenerator:
    rng: Callable[[int], bytes] = field(default=os.urandom)

    def branch(self) -> str:
        return MAGIC_COOKIE + self.rng(8).hex()

    def tag(self) -> str:
        return self.rng(8).hex()

    def call_id(self, host: str | None = None) -> str:
        value = self.rng(16).hex()
        return f"{value}@{host}" if host else value

    def cseq(self) -> int:
        """A first CSeq number: random, well below 2**31 so a long dialog cannot overflow it."""
        return int.from_bytes(self.rng(2), "big") + 1


def build_request(method: str, uri: Uri, *, from_: NameAddr, to: NameAddr, call_id: str,
                  cseq: int, local: Address, branch: str, transport: str = "UDP",
                  contact: NameAddr | None = None, max_forwards: int = 70,
                  routes: Iterable[NameAddr] = (), headers: Iterable[tuple[str, str]] = (),
                  body: bytes = b"", content_type: str | None = None, rport: bool = True) -> SipRequest:
    """An out-of-dialog request with the headers RFC 3261 8.1.1 requires, in baresip's order."""
    params: dict[str, str | None] = {"branch": branch}
    if rport:
        params["rport"] = None
    h = Headers()
    h.add("Via", str(Via(transport.upper(), local[0], local[1], params)))
    if contact is not None:
        h.add("Contact", str(contact))
    h.add("Max-Forwards", str(max_forwards))
    for route in routes:
        h.add("Route", str(route))
    h.add("To", str(to))
    h.add("From", str(from_))
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} {method}")
    for name, value in headers:
        h.add(name, value)
    if body:
        h.add("Content-Type", content_type or "application/sdp")
    return SipRequest(method, uri, h, body)


def build_register(*, registrar: Uri, aor: NameAddr, contact: NameAddr, expires: int, call_id: str,
                   cseq: int, from_tag: str, local: Address, branch: str,
                   headers: Iterable[tuple[str, str]] = (), transport: str = "UDP") -> SipRequest:
    """REGISTER binding `contact` to `aor` for `expires` seconds (0 removes the binding).
    Keep Call-ID across refreshes and raise `cseq` each time (RFC 3261 10.2)."""
    return build_request(
        "REGISTER", registrar, from_=aor.with_tag(from_tag), to=NameAddr(aor.uri, aor.display_name),
        call_id=call_id, cseq=cseq, local=local, branch=branch, transport=transport,
        contact=contact, headers=[("Expires", str(expires)), *headers])


def build_options(target: Uri, *, from_: NameAddr, call_id: str, cseq: int, local: Address,
                  branch: str, headers: Iterable[tuple[str, str]] = (), transport: str = "UDP") -> SipRequest:
    """OPTIONS keep-alive / capability query to `target` (RFC 3261 11.1); `from_` carries the tag."""
    return build_request("OPTIONS", target, from_=from_, to=NameAddr(target), call_id=call_id,
                         cseq=cseq, local=local, branch=branch, transport=transport,
                         headers=[("Accept", "application/sdp"), *headers])


def build_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for a pending INVITE (RFC 3261 9.1): same Request-URI, Call-ID, To, From, CSeq
    number and top Via (so the same branch), the INVITE's Route headers."""
    h = Headers()
    h.add("Via", invite.headers.get("Via") or "")
    h.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        h.add("Route", route)
    h.add("To", invite.headers.get("To") or "")
    h.add("From", invite.headers.get("From") or "")
    h.add("Call-ID", invite.call_id)
    h.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return SipRequest("CANCEL", invite.uri, h)
