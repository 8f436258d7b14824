"""The CTA's SIP user agent towards its SC, inside the ESP channel, sans I/O.

    ua = CtaUserAgent(["+15551230001"], domain="sc1.example.test", local_host="127.0.0.1")
    ua.start(now)                       # REGISTER every line
    for data in ua.datagrams_to_send(): send over ESP (inner UDP 5060 -> 5060)
    ua.receive(data, now)               # decrypted SIP from the SC
    ua.next_event()                     # AllRegistered / RegisterFailed / PeerLost / ...
    ua.get_timer(), ua.handle_timer(now)

- REGISTER per line (To = From = sip:<number>@domain, Contact sip:<number>@local:port), one
  Call-ID per line kept across refreshes, CSeq raised each time (RFC 3261 10.2); refreshed at
  half the granted expiry. `AllRegistered` once every line has a final answer (refused lines
  listed separately: a 403 is not retried until the channel is re-established).
- OPTIONS keep-alive every `keepalive_interval` seconds; no final response within
  `keepalive_timeout` -> `PeerLost("keep-alive timeout")`. A REGISTER that times out (Timer F)
  also gives `PeerLost`. The owner then re-keys and starts a new agent.
- OPTIONS from the SC are answered 200; other requests 405; malformed ones get the SIP
  library's 4xx.
- Calls: with a `call_handler` attached (`ctad.calls.CallAgent` attaches itself), INVITE, BYE,
  CANCEL, INFO and ACK, and the responses and timeouts of transactions that are not the agent's
  own REGISTER/OPTIONS, go to it (`on_request`, `on_ack`, `on_response`, `on_timeout`).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Union

from common.sip.message import NameAddr, SipParseError, SipUri, make_response, response_for_error, check_request
from common.sip.transaction import (
    AckReceived,
    MalformedMessage,
    RequestReceived,
    ResponseReceived,
    Timeout,
    TimerConfig,
    TransactionLayer,
    TransportError,
)
from common.sip.ua import IdGenerator, build_options, build_register

__all__ = ["AllRegistered", "CtaUserAgent", "LineRegistered", "PeerLost", "RegisterFailed"]

Address = tuple[str, int]
CALL_METHODS = frozenset({"INVITE", "BYE", "CANCEL", "INFO"})


@dataclass(frozen=True)
class LineRegistered:
    number: str
    expires: int
    refreshed: bool


@dataclass(frozen=True)
class RegisterFailed:
    number: str
    status: int
    reason: str


@dataclass(frozen=True)
class AllRegistered:
    registered: tuple[str, ...]
    refused: tuple[str, ...]


@dataclass(frozen=True)
class PeerLost:
    reason: str


Event = Union[LineRegistered, RegisterFailed, AllRegistered, PeerLost]


@dataclass
class _Line:
    number: str
    call_id: str
    cseq: int
    key: object | None = None  # the pending REGISTER transaction
    state: str = "new"  # new | registering | registered | refused
    refresh_at: float | None = None


@dataclass
class CtaUserAgent:
    numbers: list[str]
    domain: str
    local_host: str = "127.0.0.1"
    local_port: int = 5060
    sc_port: int = 5060
    register_expires: int = 3600
    keepalive_interval: float = 30.0
    keepalive_timeout: float = 5.0
    t1: float = 0.5
    rng: Callable[[int], bytes] = field(default=os.urandom)

    def __post_init__(self) -> None:
        self.ids = IdGenerator(self.rng)
        self.layer = TransactionLayer(TimerConfig(t1=self.t1, t2=max(4.0, self.t1)))
        self.lines = {n: _Line(n, self.ids.call_id(self.local_host), self.ids.cseq()) for n in self.numbers}
        self._events: deque[Event] = deque()
        self._from_tag = self.ids.tag()
        self._ka_call_id = self.ids.call_id(self.local_host)
        self._ka_cseq = self.ids.cseq()
        self._ka_due: float | None = None
        self._ka_key: object | None = None
        self._ka_deadline: float | None = None
        self._announced = False
        self.lost = False
        self.peer: Address = (self.domain, self.sc_port)
        self.call_handler = None  # ctad.calls.CallAgent, see the module docstring

    # -- outputs --------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[bytes]:
        return [data for data, _ in self.layer.datagrams_to_send()]

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.layer.get_timer(), self._ka_due, self._ka_deadline) if t is not None]
        deadlines += [line.refresh_at for line in self.lines.values() if line.refresh_at is not None]
        return min(deadlines) if deadlines else None

    @property
    def registered(self) -> list[str]:
        return [n for n, line in self.lines.items() if line.state == "registered"]

    # -- inputs ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        for line in self.lines.values():
            self._register(line, now)
        if not self.lines:
            self._check_all()
        if self.keepalive_interval > 0:
            self._ka_due = now + self.keepalive_interval

    def unregister_all(self, now: float) -> None:
        for line in self.lines.values():
            if line.state == "registered":
                self._register(line, now, expires=0)

    def handle_timer(self, now: float) -> None:
        if self.lost:
            return
        if self._ka_deadline is not None and self._ka_deadline <= now:
            self._lose("keep-alive timeout")
            return
        if self._ka_due is not None and self._ka_due <= now:
            self._ka_due = now + self.keepalive_interval
            if self._ka_key is None:
                self._send_keepalive(now)
        for line in self.lines.values():
            if line.refresh_at is not None and line.refresh_at <= now:
                line.refresh_at = None
                self._register(line, now)
        self.layer.handle_timer(now)
        self._drain(now)

    def receive(self, data: bytes, now: float) -> None:
        if self.lost:
            return
        self.layer.receive_datagram(data, self.peer, now)
        self._drain(now)

    # -- internals ------------------------------------------------------------------------

    def _aor(self, number: str) -> NameAddr:
        return NameAddr(SipUri(host=self.domain, user=number))

    def _register(self, line: _Line, now: float, expires: int | None = None) -> None:
        line.cseq += 1
        contact = NameAddr(SipUri(host=self.local_host, port=self.local_port, user=line.number))
        request = build_register(
            registrar=SipUri(host=self.domain), aor=self._aor(line.number), contact=contact,
            expires=self.register_expires if expires is None else expires, call_id=line.call_id,
            cseq=line.cseq, from_tag=self._from_tag, local=(self.local_host, self.local_port),
            branch=self.ids.branch())
        line.key = self.layer.send_request(request, self.peer, now)
        if line.state != "registered":
            line.state = "registering"

    def _send_keepalive(self, now: float) -> None:
        self._ka_cseq += 1
        request = build_options(
            SipUri(host=self.domain), from_=NameAddr(SipUri(host=self.local_host)).with_tag(self._from_tag),
            call_id=self._ka_call_id, cseq=self._ka_cseq, local=(self.local_host, self.local_port),
            branch=self.ids.branch())
        self._ka_key = self.layer.send_request(request, self.peer, now)
        self._ka_deadline = now + self.keepalive_timeout

    def _lose(self, reason: str) -> None:
        if not self.lost:
            self.lost = True
            self._ka_due = self._ka_deadline = None
            for line in self.lines.values():
                line.refresh_at = None
            self._events.append(PeerLost(reason))

    def _check_all(self) -> None:
        if self._announced:
            return
        if all(line.state in ("registered", "refused") for line in self.lines.values()):
            self._announced = True
            self._events.append(AllRegistered(
                tuple(n for n, l in self.lines.items() if l.state == "registered"),
                tuple(n for n, l in self.lines.items() if l.state == "refused")))

    def _line_for(self, key) -> _Line | None:
        return next((line for line in self.lines.values() if line.key == key), None)

    def _drain(self, now: float) -> None:
        while (event := self.layer.next_event()) is not None:
            handler = self.call_handler
            if isinstance(event, ResponseReceived):
                status = event.response.status
                if event.key == self._ka_key:
                    if status >= 200:
                        self._ka_key = None
                        self._ka_deadline = None
                    continue
                line = self._line_for(event.key)
                if line is None:
                    if handler is not None:
                        handler.on_response(event, now)
                    continue
                if status < 200:
                    continue
                line.key = None
                if 200 <= status < 300:
                    expires = _granted_expires(event.response, self.register_expires)
                    if expires == 0:
                        line.state = "new"
                        continue
                    refreshed = line.state == "registered"
                    line.state = "registered"
                    line.refresh_at = now + max(1.0, expires / 2)
                    self._events.append(LineRegistered(line.number, expires, refreshed))
                else:
                    line.state = "refused"
                    self._events.append(RegisterFailed(line.number, status, event.response.reason))
                self._check_all()
            elif isinstance(event, (Timeout, TransportError)):
                if event.key == self._ka_key or self._line_for(event.key) is not None:
                    self._lose("no answer from the SC")
                elif handler is not None:
                    handler.on_timeout(event, now)
            elif isinstance(event, AckReceived):
                if handler is not None:
                    handler.on_ack(event, now)
            elif isinstance(event, RequestReceived):
                request = event.request
                if handler is not None and request.method in CALL_METHODS:
                    handler.on_request(event, now)
                    continue
                allow = "OPTIONS" if handler is None else "OPTIONS, INVITE, ACK, BYE, CANCEL, INFO"
                try:
                    check_request(request)
                    if request.method == "OPTIONS":
                        response = make_response(request, 200, to_tag=self.ids.tag(),
                                                 headers=[("Allow", allow)])
                    else:
                        response = make_response(request, 405, to_tag=self.ids.tag(),
                                                 headers=[("Allow", allow)])
                except SipParseError as exc:
                    response = response_for_error(request, exc)
                if response is not None:
                    self.layer.send_response(response, now)
            elif isinstance(event, MalformedMessage):
                pass  # answered (when possible) by the layer; counted there


def _granted_expires(response, default: int) -> int:
    for contact in response.contacts:
        if contact.expires is not None:
            return contact.expires
    value = response.expires
    return default if value is None else value
