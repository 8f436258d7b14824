"""SIP messages (RFC 3261 section 7, 19, 20, 25): parse, inspect, build.

`parse_message(data)` turns one UDP datagram into a `SipRequest` or `SipResponse`; `bytes(msg)`
writes the canonical form back. Canonical means: leading CRLFs dropped, header names in their
long form and usual capitalisation (`v` -> `Via`, `MaX-fOrWaRdS` -> `Max-Forwards`; unknown names
kept as received), folded lines joined with one space, value whitespace trimmed, one line per
Via/Contact/Route/Record-Route value, and Content-Length equal to the body length. So
`bytes(parse(bytes(parse(x)))) == bytes(parse(x))` for every x that parses, and a message already
in canonical form (what every SIP stack we talk to sends) comes back byte for byte.

Parsing is strict and eager: the start line and every header this package interprets (Via, From,
To, Call-ID, CSeq, Max-Forwards, Expires, Contact, Route, Record-Route, Content-Length,
Content-Type) are checked inside `parse_message`, so the typed accessors of a parsed message never
raise. Other headers stay opaque strings. Every malformed input raises `SipParseError`, the only
exception this module lets out for remote data; it names the header and the problem and carries
the status a UAS answers with (400, 416, 505, 513; `check_request` adds 420 and 483).
`response_for_error` builds that answer from the raw datagram whenever enough of it is readable.

Framing (RFC 3261 18.3): one UDP datagram is one message; the body is Content-Length octets after
the empty line (octets beyond it are discarded), or the rest of the datagram without the header.
A Content-Length larger than what arrived is an error (RFC 4475 3.1.2.2).

Deliberate choices: header lines must end in CRLF (a bare CR or LF in the header section is an
error); obsolete line folding is accepted; the header section must be UTF-8; a Request-URI with
`?headers` is refused (RFC 3261 19.1.1, RFC 4475 3.1.2.11); a URI with `?headers` or in a header
field outside `<>` is refused (RFC 3261 20, RFC 4475 3.1.2.13); whitespace inside `<>` is refused
(RFC 4475 3.1.2.14); Max-Forwards above 255, CSeq at or above 2**31 and Expires above 2**32-1 are
errors. Date is not interpreted (RFC 4475 3.1.2.12 allows ignoring it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Union

__all__ = [
    "AbsoluteUri",
    "CSeq",
    "DEFAULT_MAX_SIZE",
    "Headers",
    "NameAddr",
    "REASON_PHRASES",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "TelUri",
    "Uri",
    "Via",
    "check_request",
    "make_response",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "response_address",
    "response_for_error",
    "stamp_via",
]

#: Largest datagram accepted (513 Message Too Large above it): the largest UDP payload over IPv4.
DEFAULT_MAX_SIZE = 65507

MAGIC_COOKIE = "z9hG4bK"

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


class SipParseError(ValueError):
    """A SIP message from the peer is malformed (their bug, never ours).

    `reason` says which part and what is wrong; `status` is the response a UAS sends for it when
    the message is a request (400 unless said otherwise); `header` names the header field, if
    any; `unsupported` lists the option tags for a 420's Unsupported header.
    """

    def __init__(self, reason: str, *, status: int = 400, header: str | None = None,
                 unsupported: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.header = header
        self.unsupported = unsupported


# --------------------------------------------------------------------------------------------
# Character classes (RFC 3261 25.1)

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
TOKEN_CHARS = _ALNUM | frozenset("-.!%*_+`'~")
_UNRESERVED = _ALNUM | frozenset("-_.!~*'()")
_USER_CHARS = _UNRESERVED | frozenset("&=+$,;?/%")
_PASSWORD_CHARS = _UNRESERVED | frozenset("&=+$,%")
_PARAM_CHARS = _UNRESERVED | frozenset("[]/:&+$%")
_HNV_CHARS = _UNRESERVED | frozenset("[]/?:+$%")
_HOST_CHARS = _ALNUM | frozenset("-.")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
# Generic header parameter values: token, host (incl. bare IPv6 in Via received=), or quoted.
_GEN_VALUE_CHARS = TOKEN_CHARS | frozenset(":[]")
_TEL_CHARS = frozenset("0123456789abcdefABCDEF*#+-.()pPwW")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+\Z", re.IGNORECASE)


def _is_token(text: str) -> bool:
    return bool(text) and all(c in TOKEN_CHARS for c in text)


def _check_chars(text: str, allowed: frozenset[str], what: str, header: str | None) -> None:
    for c in text:
        if c not in allowed:
            raise SipParseError(f"{what}: character {c!r} not allowed in {text!r}", header=header)
    if "%" in text and _ESCAPE_RE.search(text):
        raise SipParseError(f"{what}: bad %-escape in {text!r}", header=header)


# --------------------------------------------------------------------------------------------
# Header names

_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info",
        "Contact", "Content-Disposition", "Content-Encoding", "Content-Language",
        "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires",
        "From", "Identity", "Identity-Info", "In-Reply-To", "Max-Forwards", "Min-Expires",
        "MIME-Version", "Organization", "P-Asserted-Identity", "Priority",
        "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
        "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Reply-To",
        "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server",
        "Session-Expires", "Subject", "Supported", "Timestamp", "To", "Unsupported",
        "User-Agent", "Via", "Warning", "WWW-Authenticate",
    )
}

#: RFC 3261 7.3.3 compact forms, plus the ones later RFCs registered.
COMPACT_FORMS = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
    "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding",
    "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by",
    "x": "session-expires", "y": "identity", "n": "identity-info", "a": "accept-contact",
    "j": "reject-contact", "d": "request-disposition",
}

#: Headers whose comma-separated values are split into one entry per value when parsed.
_SPLIT_KEYS = frozenset({"via", "contact", "route", "record-route"})
#: Headers that may appear at most once (RFC 4475 3.3.8, 3.3.9).
_SINGLE_KEYS = ("from", "to", "call-id", "cseq", "max-forwards", "content-length",
                "content-type", "expires")
_REQUIRED_KEYS = ("via", "from", "to", "call-id", "cseq")


def header_key(name: str) -> str:
    """The lookup key of a header name: lower case, compact form expanded."""
    key = name.lower()
    return COMPACT_FORMS.get(key, key)


class Headers:
    """Header fields in order, with repeated names kept; lookups ignore case and compact forms."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        if not _is_token(name):
            raise ValueError(f"header name {name!r} is not a token")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} value contains CR or LF")
        key = header_key(name)
        self._items.append((key, _CANONICAL.get(key, name), value))

    def get(self, name: str, default: str | None = None) -> str | None:
        key = header_key(name)
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = header_key(name)
        return [v for k, _, v in self._items if k == key]

    def count(self, name: str) -> int:
        key = header_key(name)
        return sum(1 for k, _, _ in self._items if k == key)

    def set(self, name: str, value: str) -> None:
        """Replace every `name` field by one with `value`, where the first one was (else at the end)."""
        key = header_key(name)
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (key, _CANONICAL.get(key, name), value)
                self._items[i + 1:] = [item for item in self._items[i + 1:] if item[0] != key]
                return
        self.add(name, value)

    def replace_first(self, name: str, value: str) -> None:
        key = header_key(name)
        for i, (k, n, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (k, n, value)
                return
        raise KeyError(name)

    def remove(self, name: str) -> None:
        key = header_key(name)
        self._items = [item for item in self._items if item[0] != key]

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        return new

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((n, v) for _, n, v in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


# --------------------------------------------------------------------------------------------
# URIs (RFC 3261 19.1, RFC 3966)


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _param(params: dict[str, str | None], name: str) -> str | None:
    lname = name.lower()
    for k, v in params.items():
        if k.lower() == lname:
            return v
    return None


def _has_param(params: dict[str, str | None], name: str) -> bool:
    lname = name.lower()
    return any(k.lower() == lname for k in params)


@dataclass
class SipUri:
    """`sip:` / `sips:` URI. Components are kept %-escaped exactly as on the wire."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def transport(self) -> str | None:
        return self.param("transport")

    @property
    def lr(self) -> bool:
        return _has_param(self.params, "lr")

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.hostport)
        out.append(_format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(out)


@dataclass
class TelUri:
    """`tel:` URI (RFC 3966): the number (global `+...` or local) and its parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)
    scheme: str = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{_format_params(self.params)}"


@dataclass
class AbsoluteUri:
    """Any other scheme, kept opaque (RFC 4475 3.3.4: `isbn:`, `http:` in header fields)."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = Union[SipUri, TelUri, AbsoluteUri]


def _parse_uri_params(text: str, what: str, header: str | None) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not name:
            raise SipParseError(f"{what}: empty URI parameter", header=header)
        _check_chars(name, _PARAM_CHARS, what, header)
        if eq:
            if not value:
                raise SipParseError(f"{what}: URI parameter {name} has an empty value", header=header)
            _check_chars(value, _PARAM_CHARS, what, header)
        params[name] = value if eq else None
    return params


def _parse_host(text: str, what: str, header: str | None) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not all(c in _IPV6_CHARS for c in text[1:end]) or end == 1:
            raise SipParseError(f"{what}: bad IPv6 reference {text!r}", header=header)
        host, rest = text[: end + 1], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"{what}: junk after IPv6 reference in {text!r}", header=header)
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        if not host or not all(c in _HOST_CHARS for c in host):
            raise SipParseError(f"{what}: bad host {host!r}", header=header)
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5 or int(port_text) > 65535:
            raise SipParseError(f"{what}: bad port {port_text!r}", header=header)
        port = int(port_text)
    return host, port


def parse_uri(text: str, what: str = "URI", header: str | None = None) -> Uri:
    """Parse an absolute URI: `SipUri` for sip/sips, `TelUri` for tel, else `AbsoluteUri`."""
    m = _SCHEME_RE.match(text)
    if m is None or text[m.end():m.end() + 1] != ":":
        raise SipParseError(f"{what}: {text[:60]!r} is not an absolute URI", header=header)
    scheme, rest = m.group(0), text[m.end() + 1:]
    lscheme = scheme.lower()
    if not rest:
        raise SipParseError(f"{what}: empty {scheme} URI", header=header)
    for c in rest:
        if c in ' \t"<>\\' or ord(c) < 0x21 or ord(c) == 0x7F:
            raise SipParseError(f"{what}: character {c!r} not allowed in URI {text[:60]!r}", header=header)
    if lscheme in ("sip", "sips"):
        return _parse_sip_uri(lscheme, rest, what, header)
    if lscheme == "tel":
        number, _, ptext = rest.partition(";")
        if not number or not all(c in _TEL_CHARS for c in number):
            raise SipParseError(f"{what}: bad tel number {number!r}", header=header)
        return TelUri(number, _parse_uri_params(ptext, what, header))
    return AbsoluteUri(scheme, rest)


def _parse_sip_uri(scheme: str, rest: str, what: str, header: str | None) -> SipUri:
    user = password = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1:]
        user, colon, pw = userinfo.partition(":")
        if not user:
            raise SipParseError(f"{what}: empty user part", header=header)
        _check_chars(user, _USER_CHARS, what, header)
        if colon:
            _check_chars(pw, _PASSWORD_CHARS, what, header)
            password = pw
    rest, q, htext = rest.partition("?")
    hostport, _, ptext = rest.partition(";")
    host, port = _parse_host(hostport, what, header)
    params = _parse_uri_params(ptext, what, header)
    headers: dict[str, str] = {}
    if q:
        for part in htext.split("&"):
            name, eq, value = part.partition("=")
            if not name or not eq:
                raise SipParseError(f"{what}: bad URI header {part!r}", header=header)
            _check_chars(name, _HNV_CHARS, what, header)
            _check_chars(value, _HNV_CHARS, what, header)
            headers[name] = value
    return SipUri(host=host, user=user, port=port, scheme=scheme, password=password,
                  params=params, headers=headers)


# --------------------------------------------------------------------------------------------
# Header value scanner


class _Scan:
    __slots__ = ("s", "i", "what")

    def __init__(self, text: str, what: str) -> None:
        self.s = text
        self.i = 0
        self.what = what

    def error(self, message: str) -> SipParseError:
        return SipParseError(f"{self.what}: {message}", header=self.what)

    def ws(self) -> None:
        s, i = self.s, self.i
        while i < len(s) and s[i] in " \t":
            i += 1
        self.i = i

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def at_end(self) -> bool:
        return self.i >= len(self.s)

    def expect(self, ch: str) -> None:
        self.ws()
        if self.peek() != ch:
            found = repr(self.peek()) if self.peek() else "end of value"
            raise self.error(f"expected {ch!r} at offset {self.i}, found {found}")
        self.i += 1
        self.ws()

    def run(self, allowed: frozenset[str], name: str) -> str:
        s, start = self.s, self.i
        i = start
        while i < len(s) and s[i] in allowed:
            i += 1
        if i == start:
            found = repr(s[i]) if i < len(s) else "end of value"
            raise self.error(f"expected {name} at offset {start}, found {found}")
        self.i = i
        return s[start:i]

    def quoted(self) -> str:
        """A quoted-string at the position; returns the unescaped content."""
        s = self.s
        if self.peek() != '"':
            raise self.error(f"expected a quoted string at offset {self.i}")
        i = self.i + 1
        out = []
        while i < len(s):
            c = s[i]
            if c == "\\":
                if i + 1 >= len(s):
                    break
                out.append(s[i + 1])
                i += 2
            elif c == '"':
                self.i = i + 1
                return "".join(out)
            else:
                out.append(c)
                i += 1
        raise self.error("unterminated quoted string")

    def params(self) -> dict[str, str | None]:
        params: dict[str, str | None] = {}
        while True:
            self.ws()
            if self.peek() != ";":
                return params
            self.i += 1
            self.ws()
            name = self.run(TOKEN_CHARS, "a parameter name")
            self.ws()
            value: str | None = None
            if self.peek() == "=":
                self.i += 1
                self.ws()
                if self.peek() == '"':
                    value = _quote(self.quoted())
                else:
                    value = self.run(_GEN_VALUE_CHARS, f"a value for parameter {name}")
            if _has_param(params, name):
                raise self.error(f"parameter {name} repeated")
            params[name] = value

    def finish(self) -> None:
        self.ws()
        if not self.at_end():
            raise self.error(f"unexpected {self.s[self.i:self.i + 20]!r} at offset {self.i}")


def _quote(text: str) -> str:
    out = ['"']
    for c in text:
        if c in '"\\' or (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F:
            if c in "\r\n":
                raise ValueError("CR/LF cannot be quoted in SIP")
            out.append("\\")
        out.append(c)
    out.append('"')
    return "".join(out)


def split_commas(value: str, what: str = "header") -> list[str]:
    """Split a header value at top-level commas (not inside quotes or <>)."""
    parts, start, i, n = [], 0, 0, len(value)
    while i < n:
        c = value[i]
        if c == '"':
            i += 1
            while i < n and value[i] != '"':
                i += 2 if value[i] == "\\" else 1
        elif c == "<":
            j = value.find(">", i)
            i = n if j < 0 else j
        elif c == ",":
            parts.append(value[start:i].strip(" \t"))
            start = i + 1
        i += 1
    parts.append(value[start:].strip(" \t"))
    if any(not p for p in parts):
        raise SipParseError(f"{what}: empty element in comma-separated list", header=what)
    return parts


# --------------------------------------------------------------------------------------------
# Typed header values


@dataclass
class Via:
    """One Via value (RFC 3261 20.42; `received`/`rport` RFC 3261 18.2.1 and RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport_requested(self) -> bool:
        return _has_param(self.params, "rport")

    @property
    def rport(self) -> int | None:
        value = self.param("rport")
        return int(value) if value is not None else None

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def rfc3261_branch(self) -> bool:
        """The branch carries the RFC 3261 magic cookie (RFC 3261 17.1.3, 17.2.3)."""
        branch = self.branch
        return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE)

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{_format_params(self.params)}"


def parse_via(value: str) -> Via:
    sc = _Scan(value, "Via")
    sc.ws()
    name = sc.run(TOKEN_CHARS, "a protocol name")
    sc.expect("/")
    version = sc.run(TOKEN_CHARS, "a protocol version")
    sc.expect("/")
    transport = sc.run(TOKEN_CHARS, "a transport")
    sc.ws()
    hostport = sc.run(_HOST_CHARS | frozenset("[]:") | _IPV6_CHARS, "a sent-by host")
    host, port = _parse_host(hostport, "Via", "Via")
    params = sc.params()
    sc.finish()
    for pname in ("rport",):
        v = _param(params, pname)
        if v is not None and (not v.isdigit() or not v.isascii() or int(v) > 65535):
            raise SipParseError(f"Via: bad rport {v!r}", header="Via")
    if _has_param(params, "branch") and not _param(params, "branch"):
        raise SipParseError("Via: empty branch", header="Via")
    return Via(transport=transport.upper(), host=host, port=port, params=params,
               protocol=f"{name.upper()}/{version}")


@dataclass
class NameAddr:
    """name-addr / addr-spec with header parameters: From, To, Contact, Route, Record-Route."""

    uri: Uri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    @property
    def expires(self) -> int | None:
        value = self.param("expires")
        return int(value) if value is not None and value.isdigit() else None

    def with_tag(self, tag: str) -> NameAddr:
        params = {k: v for k, v in self.params.items() if k.lower() != "tag"}
        params["tag"] = tag
        return NameAddr(self.uri, self.display_name, params)

    def __str__(self) -> str:
        dn = "" if self.display_name is None else _quote(self.display_name) + " "
        return f"{dn}<{self.uri}>{_format_params(self.params)}"


def parse_name_addr(value: str, what: str) -> NameAddr:
    sc = _Scan(value, what)
    sc.ws()
    display: str | None = None
    if sc.peek() == '"':
        display = sc.quoted()
        sc.ws()
        if sc.peek() != "<":
            raise sc.error("a quoted display name must be followed by <URI>")
    elif "<" in value:
        words = []
        while True:
            sc.ws()
            if sc.peek() == "<":
                break
            words.append(sc.run(TOKEN_CHARS, "a display name token or '<'"))
        display = " ".join(words) if words else None
    if sc.peek() == "<":
        end = value.find(">", sc.i)
        if end < 0:
            raise sc.error("'<' without '>'")
        inner = value[sc.i + 1:end]
        if any(c in " \t" for c in inner):
            raise sc.error(f"whitespace inside <{inner.strip()}>")
        uri = parse_uri(inner, what, what)
        sc.i = end + 1
    else:
        start = sc.i
        while sc.i < len(value) and value[sc.i] not in " \t;":
            sc.i += 1
        text = value[start:sc.i]
        if "?" in text or "," in text:
            raise sc.error(f"a URI with headers must be enclosed in <>: {text[:60]!r}")
        uri = parse_uri(text, what, what)
    params = sc.params()
    sc.finish()
    if display is not None and display == "":
        display = None
    return NameAddr(uri, display, params)


@dataclass(frozen=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2:
        raise SipParseError(f"CSeq: expected 'number method', got {value[:40]!r}", header="CSeq")
    number, method = parts
    if not number.isdigit() or not number.isascii():
        raise SipParseError(f"CSeq: sequence number {number[:20]!r} is not a number", header="CSeq")
    if len(number) > 10 or int(number) >= 2**31:
        raise SipParseError(f"CSeq: sequence number {number[:30]} is not below 2**31", header="CSeq")
    if not _is_token(method):
        raise SipParseError(f"CSeq: method {method[:30]!r} is not a token", header="CSeq")
    return CSeq(int(number), method)


def _parse_uint(value: str, name: str, limit: int) -> int:
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        raise SipParseError(f"{name}: {text[:30]!r} is not a non-negative integer", header=name)
    if len(text.lstrip("0")) > len(str(limit)) or int(text) > limit:
        raise SipParseError(f"{name}: {text[:30]} is larger than {limit}", header=name)
    return int(text)


# --------------------------------------------------------------------------------------------
# Messages


class _Message:
    headers: Headers
    body: bytes

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        value = self.headers.get("Via")
        if value is None:
            raise SipParseError("missing Via", header="Via")
        return parse_via(value)

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name}", header=name)
        return value

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self._required("From"), "From")

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self._required("To"), "To")

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self._required("CSeq"))

    @property
    def contact_star(self) -> bool:
        return self.headers.get_all("Contact") == ["*"]

    @property
    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v, "Contact") for v in self.headers.get_all("Contact") if v != "*"]

    @property
    def routes(self) -> list[NameAddr]:
        return [parse_name_addr(v, "Route") for v in self.headers.get_all("Route")]

    @property
    def record_routes(self) -> list[NameAddr]:
        return [parse_name_addr(v, "Record-Route") for v in self.headers.get_all("Record-Route")]

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else _parse_uint(value, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        return None if value is None else _parse_uint(value, "Expires", 2**32 - 1)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    @property
    def content_length(self) -> int:
        return len(self.body)

    def option_tags(self, name: str) -> list[str]:
        """Require / Proxy-Require / Supported / Unsupported option tags (empty values allowed)."""
        tags: list[str] = []
        for value in self.headers.get_all(name):
            tags.extend(t.strip() for t in value.split(",") if t.strip())
        return tags

    def _serialize(self, start: str) -> bytes:
        lines = [start]
        has_cl = False
        for name, value in self.headers:
            if header_key(name) == "content-length":
                if has_cl:
                    continue
                has_cl = True
                value = str(len(self.body))
            lines.append(f"{name}: {value}" if value else f"{name}:")
        if not has_cl:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass(eq=True)
class SipRequest(_Message):
    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @classmethod
    def parse(cls, data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> SipRequest:
        message = parse_message(data, max_size=max_size)
        if not isinstance(message, SipRequest):
            raise SipParseError("expected a request, got a response")
        return message

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} SIP/2.0")


@dataclass(eq=True)
class SipResponse(_Message):
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @classmethod
    def parse(cls, data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> SipResponse:
        message = parse_message(data, max_size=max_size)
        if not isinstance(message, SipResponse):
            raise SipParseError("expected a response, got a request")
        return message

    def __bytes__(self) -> bytes:
        return self._serialize(f"SIP/2.0 {self.status} {self.reason}")


SipMessage = Union[SipRequest, SipResponse]


def _split_header_section(head: str) -> tuple[str, list[tuple[str, str]]]:
    """Start line and unfolded (name, value) pairs; names and line structure are checked."""
    lines = head.split("\r\n")
    for line in lines:
        if "\r" in line or "\n" in line:
            raise SipParseError("bare CR or LF in the header section (lines must end in CRLF)")
    start, fields = lines[0], []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("header section starts with a continuation line")
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip(" \t"))
            continue
        colon = line.find(":")
        if colon < 0:
            raise SipParseError(f"header line without a colon: {line[:40]!r}")
        name = line[:colon].rstrip(" \t")
        if not _is_token(name):
            raise SipParseError(f"header name {name[:40]!r} is not a token")
        fields.append((name, line[colon + 1:]))
    return start, [(n, v.strip(" \t")) for n, v in fields]


def parse_message(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> SipMessage:
    """Parse one datagram (see the module docstring for what is checked)."""
    if len(data) > max_size:
        raise SipParseError(f"message of {len(data)} bytes exceeds the limit of {max_size}", status=513)
    offset = 0
    while data.startswith(b"\r\n", offset):
        offset += 2
    end = data.find(b"\r\n\r\n", offset)
    if offset == len(data):
        raise SipParseError("empty message")
    if end < 0:
        raise SipParseError("no empty line ends the header section")
    try:
        head = data[offset:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not UTF-8 (byte {offset + exc.start})") from None
    start, fields = _split_header_section(head)
    headers = Headers()
    for name, value in fields:
        key = header_key(name)
        if key in _SPLIT_KEYS:
            for part in split_commas(value, _CANONICAL[key]):
                headers.add(name, part)
        else:
            headers.add(name, value)

    message: SipMessage
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if parts[0] != "SIP/2.0":
            raise SipParseError(f"status line has version {parts[0][:20]!r}, not SIP/2.0")
        code = parts[1] if len(parts) > 1 else ""
        if len(code) != 3 or not code.isdigit() or not code.isascii() or not 100 <= int(code) <= 699:
            raise SipParseError(f"status code {code[:20]!r} is not three digits from 100 to 699")
        reason = parts[2] if len(parts) > 2 else ""
        message = SipResponse(int(code), reason, headers)
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not all(parts):
            if start != start.rstrip(" \t"):
                problem = "whitespace at the end of the request line"
            elif "  " in start or "\t" in start:
                problem = "more than one space between request-line elements"
            elif len(parts) > 3:
                problem = "whitespace inside the Request-URI"
            else:
                problem = "request line is not 'Method SP Request-URI SP SIP-Version'"
            raise SipParseError(f"{problem}: {start[:80]!r}")
        method, uri_text, version = parts
        if not _is_token(method):
            raise SipParseError(f"method {method[:40]!r} is not a token")
        if version != "SIP/2.0":
            if _VERSION_RE.match(version):
                raise SipParseError(f"SIP version {version} not supported", status=505)
            raise SipParseError(f"request line ends in {version[:20]!r}, not SIP/2.0")
        uri = parse_uri(uri_text, "Request-URI")
        if isinstance(uri, SipUri) and uri.headers:
            raise SipParseError("Request-URI must not contain headers (?...)")
        message = SipRequest(method, uri, headers)

    _validate(message)
    clen = headers.get("Content-Length")
    body_start = end + 4
    if clen is None:
        message.body = data[body_start:]
    else:
        n = _parse_uint(clen, "Content-Length", max_size)
        available = len(data) - body_start
        if n > available:
            raise SipParseError(f"Content-Length: {n} but only {available} bytes of body arrived",
                                header="Content-Length")
        message.body = data[body_start:body_start + n]
    if isinstance(message, SipRequest) and message.uri.scheme not in ("sip", "sips", "tel"):
        raise SipParseError(f"Request-URI scheme {message.uri.scheme!r} not supported", status=416)
    return message


def _validate(message: SipMessage) -> None:
    h = message.headers
    missing = [_CANONICAL[k] for k in _REQUIRED_KEYS if h.get(k) is None]
    if missing:
        raise SipParseError("missing " + ", ".join(missing), header=missing[0])
    for key in _SINGLE_KEYS:
        n = h.count(key)
        if n > 1:
            raise SipParseError(f"{_CANONICAL[key]} appears {n} times", header=_CANONICAL[key])
    message.vias
    message.from_
    message.to
    call_id = message.call_id
    if not call_id or any(c in " \t" for c in call_id):
        raise SipParseError(f"Call-ID: {call_id[:40]!r} is empty or contains whitespace", header="Call-ID")
    cseq = message.cseq
    if isinstance(message, SipRequest) and cseq.method != message.method:
        raise SipParseError(f"CSeq: method {cseq.method} does not match the request method "
                            f"{message.method}", header="CSeq")
    message.max_forwards
    message.expires
    contacts = h.get_all("Contact")
    if "*" in contacts and len(contacts) > 1:
        raise SipParseError("Contact: '*' must be the only Contact value", header="Contact")
    message.contacts
    message.routes
    message.record_routes


# --------------------------------------------------------------------------------------------
# Responses


def _default_tag(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()[:16]


def make_response(request: SipRequest, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (),
                  body: bytes = b"", content_type: str | None = None) -> SipResponse:
    """A response to `request` per RFC 3261 8.2.6: Via, From, To, Call-ID, CSeq copied.

    `to_tag` is added to To unless To already has a tag or the status is 100 (8.2.6.2).
    """
    h = Headers()
    for via in request.headers.get_all("Via"):
        h.add("Via", via)
    h.add("From", request._required("From"))
    to_value = request._required("To")
    if to_tag is not None and status != 100:
        to = parse_name_addr(to_value, "To")
        if to.tag is None:
            to_value = str(to.with_tag(to_tag))
    h.add("To", to_value)
    h.add("Call-ID", request.call_id)
    h.add("CSeq", request._required("CSeq"))
    if status == 100 and request.headers.get("Timestamp") is not None:
        h.add("Timestamp", request.headers.get("Timestamp") or "")
    for name, value in headers:
        h.add(name, value)
    if body:
        h.add("Content-Type", content_type or "application/sdp")
    return SipResponse(status, reason if reason is not None else REASON_PHRASES.get(status, ""), h, body)


def _safe_phrase(text: str, limit: int = 120) -> str:
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned[:limit]


def response_for_error(request: bytes | SipRequest, error: SipParseError) -> SipResponse | None:
    """The response a UAS sends for `error`, or None when none can or may be sent.

    `request` is the raw datagram (after `parse_message` failed) or a parsed request (after
    `check_request` failed). No response is made for responses, for ACK, or when Via or CSeq
    cannot be read. From, To and Call-ID are copied when readable (RFC 4475 3.3.1 lacks them and
    still deserves its 400). To gets a tag derived from Call-ID, branch and CSeq, so a
    retransmitted bad request gets the same response. A 400's reason phrase is the parse
    error's reason; a 420 lists the tags in Unsupported.
    """
    reason = _safe_phrase(error.reason) if error.status == 400 else REASON_PHRASES.get(error.status, "Error")
    extra: list[tuple[str, str]] = []
    if error.status == 420 and error.unsupported:
        extra.append(("Unsupported", ", ".join(error.unsupported)))
    if isinstance(request, SipRequest):
        if request.method == "ACK":
            return None
        tag = _default_tag(request.call_id, request.headers.get("Via") or "", request.headers.get("CSeq") or "")
        return make_response(request, error.status, reason, to_tag=tag, headers=extra)
    return _response_from_bytes(request, error.status, reason, extra)


def _response_from_bytes(data: bytes, status: int, reason: str,
                         extra: list[tuple[str, str]]) -> SipResponse | None:
    text = data[:DEFAULT_MAX_SIZE].decode("utf-8", "replace").lstrip("\r\n")
    end = text.find("\r\n\r\n")
    head = text if end < 0 else text[:end]
    lines = head.split("\r\n")
    start = lines[0]
    if start.startswith("SIP/") or start.split(" ", 1)[0] == "ACK":
        return None
    fields: list[list[str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += " " + line.strip(" \t")
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append([header_key(name.strip(" \t")), value.strip(" \t")])

    def clean(value: str) -> bool:
        return bool(value) and all(c.isprintable() or c == "\t" for c in value)

    found: dict[str, list[str]] = {}
    for key, value in fields:
        if key in ("via", "from", "to", "call-id", "cseq") and clean(value):
            found.setdefault(key, []).append(value)
    if "via" not in found or "cseq" not in found:
        return None
    cseq = found["cseq"][0].split()
    if len(cseq) != 2 or cseq[1] == "ACK":
        return None
    h = Headers()
    for value in found["via"]:
        h.add("Via", value)
    if "from" in found:
        h.add("From", found["from"][0])
    tag = _default_tag(found.get("call-id", [""])[0], found["via"][0], found["cseq"][0])
    if "to" in found:
        to_value = found["to"][0]
        if not re.search(r";\s*tag\s*=", to_value, re.IGNORECASE):
            to_value += f";tag={tag}"
        h.add("To", to_value)
    if "call-id" in found:
        h.add("Call-ID", found["call-id"][0])
    h.add("CSeq", found["cseq"][0])
    for name, value in extra:
        h.add(name, value)
    return SipResponse(status, reason, h)


def check_request(request: SipRequest, *, supported: Iterable[str] = (), proxy: bool = False) -> None:
    """UAS/proxy checks after parsing: 420 for unknown Require (RFC 3261 8.2.2.3; Proxy-Require
    too when `proxy`), 483 when a proxy sees Max-Forwards 0 (RFC 3261 16.3; RFC 4475 3.3.11: an
    endpoint processes such a request). ACK and CANCEL are never refused for Require."""
    known = {s.lower() for s in supported}
    if request.method not in ("ACK", "CANCEL"):
        names = ["Require"] + (["Proxy-Require"] if proxy else [])
        unknown = tuple(t for n in names for t in request.option_tags(n) if t.lower() not in known)
        if unknown:
            raise SipParseError(f"unsupported extension(s): {', '.join(unknown)}", status=420,
                                header="Require", unsupported=unknown)
    if proxy and request.max_forwards == 0:
        raise SipParseError("Max-Forwards is 0", status=483, header="Max-Forwards")


# --------------------------------------------------------------------------------------------
# Transport helpers (RFC 3261 18.2.1, 18.2.2; RFC 3581)


def stamp_via(request: SipRequest, source: tuple[str, int]) -> None:
    """Add `received` (when the sent-by host differs from the source address) and fill an empty
    `rport` (RFC 3581: then `received` is always added) on the top Via, in place."""
    via = request.top_via
    host, port = source[0], source[1]
    params = dict(via.params)
    changed = False
    if via.rport_requested and via.rport is None:
        params = {k: (str(port) if k.lower() == "rport" else v) for k, v in params.items()}
        changed = True
    if changed or via.host.strip("[]") != host:
        params = {k: v for k, v in params.items() if k.lower() != "received"}
        params["received"] = host
        changed = True
    if changed:
        request.headers.replace_first("Via", str(Via(via.transport, via.host, via.port, params, via.protocol)))


def response_address(via: Via, source: tuple[str, int] | None = None) -> tuple[str, int]:
    """Where a UDP response goes: received (or sent-by host) and rport (or sent-by port, or
    5060); with `rport` requested, the request's source port (RFC 3581 4)."""
    host = via.received or via.host.strip("[]")
    if via.rport is not None:
        return host, via.rport
    if via.rport_requested and source is not None:
        return source[0], source[1]
    return host, via.port or 5060
