"""Minimal SDP (RFC 4566, offer/answer RFC 3264) for audio: what a B2BUA/CTA needs.

`SessionDescription.parse(body)` keeps every line; it interprets the session and media `c=`,
`m=audio port RTP/AVP pts`, `a=rtpmap`, `a=ptime` and the direction attributes, and keeps
everything else (including `a=crypto`, `a=fmtp`) as opaque attribute strings, so `bytes()` of a
parsed description writes the same lines (CRLF-terminated). `negotiate(offer, supported)` builds
an answer for the codecs we pass through (PCMU, PCMA, telephone-event).
Malformed SDP raises `SdpParseError` (a ValueError); a SIP UAS answers it with 488 or 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["Codec", "MediaDescription", "SdpParseError", "SessionDescription", "negotiate", "STATIC_CODECS"]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
STATIC_CODECS = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000), 18: ("G729", 8000)}


class SdpParseError(ValueError):
    pass


@dataclass(frozen=True)
class Codec:
    pt: int
    name: str
    rate: int
    fmtp: str | None = None


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None          # c= address, media level
    attributes: list[str] = field(default_factory=list)  # "rtpmap:0 PCMU/8000", "sendrecv", ...
    other: list[str] = field(default_factory=list)       # other lines (b=, i=, k=) verbatim

    def attribute(self, name: str) -> list[str]:
        prefix = name + ":"
        return [a[len(prefix):] for a in self.attributes if a.startswith(prefix)]

    @property
    def payload_types(self) -> list[int]:
        return [int(f) for f in self.formats if f.isdigit()]

    @property
    def codecs(self) -> list[Codec]:
        rtpmap: dict[int, tuple[str, int]] = {}
        for value in self.attribute("rtpmap"):
            pt, _, enc = value.partition(" ")
            name, _, rest = enc.partition("/")
            rate = rest.split("/")[0]
            if pt.isdigit() and rate.isdigit():
                rtpmap[int(pt)] = (name, int(rate))
        fmtp = {}
        for value in self.attribute("fmtp"):
            pt, _, params = value.partition(" ")
            if pt.isdigit():
                fmtp[int(pt)] = params
        out = []
        for pt in self.payload_types:
            name, rate = rtpmap.get(pt) or STATIC_CODECS.get(pt, ("", 0))
            out.append(Codec(pt, name, rate, fmtp.get(pt)))
        return out

    @property
    def direction(self) -> str:
        for a in self.attributes:
            if a in DIRECTIONS:
                return a
        return "sendrecv"

    @property
    def ptime(self) -> int | None:
        values = self.attribute("ptime")
        return int(values[0]) if values and values[0].isdigit() else None

    @property
    def crypto(self) -> list[str]:
        """`a=crypto` lines (RFC 4568), kept opaque."""
        return self.attribute("crypto")

    def lines(self) -> list[str]:
        out = [f"m={self.media} {self.port} {self.proto} {' '.join(self.formats)}"]
        out += [line for line in self.other if line[:2] in ("i=", "b=")]
        if self.connection is not None:
            out.append(f"c=IN {_ip_kind(self.connection)} {self.connection}")
        out += [line for line in self.other if line[:2] not in ("i=", "b=")]
        out += [f"a={a}" for a in self.attributes]
        return out


def _ip_kind(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _parse_connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpParseError(f"c=: expected 'IN IP4|IP6 address', got {value[:60]!r}")
    return parts[2].split("/")[0]


@dataclass
class SessionDescription:
    origin: str = "- 0 0 IN IP4 0.0.0.0"
    name: str = "-"
    connection: str | None = None
    session_lines: list[str] = field(default_factory=list)   # other session-level lines verbatim
    media: list[MediaDescription] = field(default_factory=list)
    version: str = "0"

    @classmethod
    def parse(cls, body: bytes) -> SessionDescription:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpParseError("SDP is not UTF-8") from None
        lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
        if not lines or not lines[0].startswith("v="):
            raise SdpParseError("SDP must start with v=")
        sd = cls(version=lines[0][2:], origin="", name="")
        current: MediaDescription | None = None
        for line in lines[1:]:
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise SdpParseError(f"bad SDP line {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "m":
                parts = value.split()
                if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                    raise SdpParseError(f"m=: expected 'media port proto fmt...', got {value[:60]!r}")
                port = int(parts[1].split("/")[0])
                if port > 65535:
                    raise SdpParseError(f"m=: port {port} out of range")
                current = MediaDescription(parts[0], port, parts[2], parts[3:])
                sd.media.append(current)
            elif kind == "c":
                address = _parse_connection(value)
                if current is None:
                    sd.connection = address
                else:
                    current.connection = address
            elif current is not None:
                if kind == "a":
                    current.attributes.append(value)
                else:
                    current.other.append(line)
            elif kind == "o":
                sd.origin = value
            elif kind == "s":
                sd.name = value
            else:
                sd.session_lines.append(line)
        if not sd.origin:
            raise SdpParseError("SDP lacks o=")
        return sd

    def audio(self) -> MediaDescription | None:
        return next((m for m in self.media if m.media == "audio"), None)

    def media_address(self, media: MediaDescription) -> tuple[str, int] | None:
        address = media.connection or self.connection
        return None if address is None else (address, media.port)

    def set_media_address(self, media: MediaDescription, host: str, port: int) -> None:
        """Rewrite where the media goes (what a B2BUA/CTA does to every offer and answer)."""
        media.port = port
        if media.connection is not None or self.connection is None:
            media.connection = host
        if self.connection is not None:
            self.connection = host
        fields = self.origin.split()
        if len(fields) == 6:
            fields[4], fields[5] = _ip_kind(host), host
            self.origin = " ".join(fields)

    def __bytes__(self) -> bytes:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.name}"]
        before_t = [line for line in self.session_lines if line[:2] in ("i=", "u=", "e=", "p=")]
        after = [line for line in self.session_lines if line not in before_t]
        out += before_t
        if self.connection is not None:
            out.append(f"c=IN {_ip_kind(self.connection)} {self.connection}")
        if not any(line.startswith("t=") for line in after):
            out.append("t=0 0")
        out += after
        for m in self.media:
            out += m.lines()
        return ("\r\n".join(out) + "\r\n").encode("utf-8")


def negotiate(offer: SessionDescription, supported: Iterable[str], *, host: str, port: int,
              origin: str | None = None) -> SessionDescription:
    """An RFC 3264 answer: for the first audio stream, the offered codecs whose names are in
    `supported` (case-insensitive), in the offerer's order and with its payload types; port 0
    (rejected) when none is common. Direction is mirrored (sendonly <-> recvonly)."""
    wanted = {s.lower() for s in supported}
    answer = SessionDescription(origin=origin or f"- 0 0 IN {_ip_kind(host)} {host}", connection=host)
    for m in offer.media:
        if m.media != "audio" or m is not offer.audio():
            answer.media.append(MediaDescription(m.media, 0, m.proto, m.formats[:1]))
            continue
        codecs = [c for c in m.codecs if c.name.lower() in wanted]
        if not any(c.name.lower() != "telephone-event" for c in codecs):
            answer.media.append(MediaDescription(m.media, 0, m.proto, m.formats[:1]))
            continue
        attrs = [f"rtpmap:{c.pt} {c.name}/{c.rate}" for c in codecs]
        attrs += [f"fmtp:{c.pt} {c.fmtp}" for c in codecs if c.fmtp]
        if m.ptime:
            attrs.append(f"ptime:{m.ptime}")
        mirror = {"sendonly": "recvonly", "recvonly": "sendonly"}
        attrs.append(mirror.get(m.direction, m.direction))
        answer.media.append(MediaDescription("audio", port, m.proto, [str(c.pt) for c in codecs],
                                             attributes=attrs))
    return answer
