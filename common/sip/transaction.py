"""SIP transactions (RFC 3261 section 17, with RFC 6026's Accepted states) over UDP, sans I/O.

Each of the four transaction kinds is a transition table: `TABLES[kind][(state, input)]` is either
a `Transition(target, actions)` or a `Refuse(reason)`. Every (state, input) pair of a kind is in
its table (tests/test_sip_transaction.py checks it), so nothing happens by omission. A `Refuse`
means our own code (the TU, or a timer that is not armed) asked for something the state machine
does not allow; it raises `LocalProtocolError`. Peer misbehaviour (a response in the wrong state)
is always a Transition, usually one that absorbs the message.

Inputs are responses and requests from the wire (`PROVISIONAL`, `SUCCESS`, `FAILURE`,
`REQUEST`, `ACK`), the TU's responses (`TU_PROVISIONAL`, `TU_SUCCESS`, `TU_FAILURE`), timers and
`TRANSPORT_ERROR`. Nothing reads a clock: every call takes `now` (seconds, monotonic) and
`get_timer()` gives the next deadline to arm, aioquic-style.

Choices:
- 100 Trying (RFC 3261 17.2.1): a server INVITE transaction sends it `trying_delay` (200 ms) after
  the INVITE unless the TU sent a response first; a retransmitted INVITE before that makes it
  send the 100 at once. A TU answering fast (the CTA's line side) costs no extra datagram.
- 2xx to INVITE (RFC 6026): the client INVITE transaction moves to Accepted and passes every 2xx
  (retransmissions and forks) to the TU for 64*T1 (Timer M) so the TU can re-ACK; the server
  INVITE transaction moves to Accepted for 64*T1 (Timer L), absorbs retransmitted INVITEs and
  lets the TU retransmit its 2xx through `send_response` (RFC 3261 13.3.1.4: the TU does that,
  until the ACK, which is reported as `AckReceived`).
- ACK for a 2xx has its own branch and matches no transaction: it becomes `AckReceived` with
  `key=None`, for the dialog layer. A response that matches no transaction is dropped
  (RFC 3261 18.1.2) and counted.
- Timer D is `timer_d` (32 s, RFC 3261 17.1.1.2 for UDP), K and I are T4, B/F/H/J/L/M 64*T1.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Union

from common.sip.message import (
    MAGIC_COOKIE,
    DEFAULT_MAX_SIZE,
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
    response_address,
    response_for_error,
    stamp_via,
)

__all__ = [
    "AckReceived",
    "Input",
    "Kind",
    "LocalProtocolError",
    "MalformedMessage",
    "Refuse",
    "RemoteProtocolError",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "TABLES",
    "Timeout",
    "TimerConfig",
    "Transaction",
    "TransactionKey",
    "TransactionLayer",
    "TransactionTerminated",
    "Transition",
    "TransportError",
    "make_ack_for_failure",
]

Address = tuple[str, int]

#: A malformed message from the peer (their bug): the parser's exception.
RemoteProtocolError = SipParseError


class LocalProtocolError(Exception):
    """Our own code misused a transaction (a response in the wrong state, a timer not armed...)."""


@dataclass(frozen=True)
class TimerConfig:
    """RFC 3261 timer values in seconds (17.1.1.1 and Table 4)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0
    trying_delay: float = 0.2


class Kind(enum.Enum):
    CLIENT_INVITE = "client INVITE"
    CLIENT_NON_INVITE = "client non-INVITE"
    SERVER_INVITE = "server INVITE"
    SERVER_NON_INVITE = "server non-INVITE"


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    PROVISIONAL = "1xx from the wire"
    SUCCESS = "2xx from the wire"
    FAILURE = "300-699 from the wire"
    REQUEST = "request retransmission from the wire"
    ACK = "ACK from the wire"
    TU_PROVISIONAL = "1xx from the TU"
    TU_SUCCESS = "2xx from the TU"
    TU_FAILURE = "300-699 from the TU"
    TIMER_TRYING = "Timer 100 Trying"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TRANSPORT_ERROR = "transport error"


@dataclass(frozen=True)
class Transition:
    target: State
    actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refuse:
    reason: str


Entry = Union[Transition, Refuse]

S, I = State, Input
_TERMINATED_REFUSE = "the transaction has terminated"


def _refuse_rest(table: dict, states: tuple[State, ...], inputs: tuple[Input, ...]) -> dict:
    """Fill every pair not listed with an explicit Refuse naming the state."""
    for state in states:
        for inp in inputs:
            if (state, inp) not in table:
                reason = _TERMINATED_REFUSE if state is S.TERMINATED else f"{inp.value} is not allowed in {state.value}"
                table[(state, inp)] = Refuse(reason)
    return table


STATES = {
    Kind.CLIENT_INVITE: (S.CALLING, S.PROCEEDING, S.ACCEPTED, S.COMPLETED, S.TERMINATED),
    Kind.CLIENT_NON_INVITE: (S.TRYING, S.PROCEEDING, S.COMPLETED, S.TERMINATED),
    Kind.SERVER_INVITE: (S.PROCEEDING, S.ACCEPTED, S.COMPLETED, S.CONFIRMED, S.TERMINATED),
    Kind.SERVER_NON_INVITE: (S.TRYING, S.PROCEEDING, S.COMPLETED, S.TERMINATED),
}
INPUTS = {
    Kind.CLIENT_INVITE: (I.PROVISIONAL, I.SUCCESS, I.FAILURE, I.TIMER_A, I.TIMER_B, I.TIMER_D,
                         I.TIMER_M, I.TRANSPORT_ERROR),
    Kind.CLIENT_NON_INVITE: (I.PROVISIONAL, I.SUCCESS, I.FAILURE, I.TIMER_E, I.TIMER_F, I.TIMER_K,
                             I.TRANSPORT_ERROR),
    Kind.SERVER_INVITE: (I.REQUEST, I.ACK, I.TU_PROVISIONAL, I.TU_SUCCESS, I.TU_FAILURE,
                         I.TIMER_TRYING, I.TIMER_G, I.TIMER_H, I.TIMER_I, I.TIMER_L,
                         I.TRANSPORT_ERROR),
    Kind.SERVER_NON_INVITE: (I.REQUEST, I.TU_PROVISIONAL, I.TU_SUCCESS, I.TU_FAILURE, I.TIMER_J,
                             I.TRANSPORT_ERROR),
}

# Actions: "report" (ResponseReceived), "ack" (send ACK for a non-2xx), "retransmit" (the
# request), "send" (the TU's response), "resend" (last response sent), "trying" (100, or the last
# provisional again), "report_ack", "timeout", "transport_error", "arm X" (first interval),
# "backoff X" (double, capped at T2 for E and G), "hold X" (E at T2 once a 1xx came), "cancel X".
_CLIENT_INVITE = _refuse_rest({
    (S.CALLING, I.PROVISIONAL): Transition(S.PROCEEDING, ("report", "cancel A", "cancel B")),
    (S.CALLING, I.SUCCESS): Transition(S.ACCEPTED, ("report", "cancel A", "cancel B", "arm M")),
    (S.CALLING, I.FAILURE): Transition(S.COMPLETED, ("report", "ack", "cancel A", "cancel B", "arm D")),
    (S.CALLING, I.TIMER_A): Transition(S.CALLING, ("retransmit", "backoff A")),
    (S.CALLING, I.TIMER_B): Transition(S.TERMINATED, ("timeout",)),
    (S.CALLING, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
    (S.PROCEEDING, I.PROVISIONAL): Transition(S.PROCEEDING, ("report",)),
    (S.PROCEEDING, I.SUCCESS): Transition(S.ACCEPTED, ("report", "arm M")),
    (S.PROCEEDING, I.FAILURE): Transition(S.COMPLETED, ("report", "ack", "arm D")),
    (S.PROCEEDING, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
    (S.ACCEPTED, I.PROVISIONAL): Transition(S.ACCEPTED),
    (S.ACCEPTED, I.SUCCESS): Transition(S.ACCEPTED, ("report",)),
    (S.ACCEPTED, I.FAILURE): Transition(S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_M): Transition(S.TERMINATED),
    (S.ACCEPTED, I.TRANSPORT_ERROR): Transition(S.ACCEPTED),
    (S.COMPLETED, I.PROVISIONAL): Transition(S.COMPLETED),
    (S.COMPLETED, I.SUCCESS): Transition(S.COMPLETED),
    (S.COMPLETED, I.FAILURE): Transition(S.COMPLETED, ("ack",)),
    (S.COMPLETED, I.TIMER_D): Transition(S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
}, STATES[Kind.CLIENT_INVITE], INPUTS[Kind.CLIENT_INVITE])

_CLIENT_NON_INVITE = _refuse_rest({
    (S.TRYING, I.PROVISIONAL): Transition(S.PROCEEDING, ("report",)),
    (S.TRYING, I.SUCCESS): Transition(S.COMPLETED, ("report", "cancel E", "cancel F", "arm K")),
    (S.TRYING, I.FAILURE): Transition(S.COMPLETED, ("report", "cancel E", "cancel F", "arm K")),
    (S.TRYING, I.TIMER_E): Transition(S.TRYING, ("retransmit", "backoff E")),
    (S.TRYING, I.TIMER_F): Transition(S.TERMINATED, ("timeout",)),
    (S.TRYING, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
    (S.PROCEEDING, I.PROVISIONAL): Transition(S.PROCEEDING, ("report",)),
    (S.PROCEEDING, I.SUCCESS): Transition(S.COMPLETED, ("report", "cancel E", "cancel F", "arm K")),
    (S.PROCEEDING, I.FAILURE): Transition(S.COMPLETED, ("report", "cancel E", "cancel F", "arm K")),
    (S.PROCEEDING, I.TIMER_E): Transition(S.PROCEEDING, ("retransmit", "hold E")),
    (S.PROCEEDING, I.TIMER_F): Transition(S.TERMINATED, ("timeout",)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
    (S.COMPLETED, I.PROVISIONAL): Transition(S.COMPLETED),
    (S.COMPLETED, I.SUCCESS): Transition(S.COMPLETED),
    (S.COMPLETED, I.FAILURE): Transition(S.COMPLETED),
    (S.COMPLETED, I.TIMER_K): Transition(S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): Transition(S.COMPLETED),
}, STATES[Kind.CLIENT_NON_INVITE], INPUTS[Kind.CLIENT_NON_INVITE])

_SERVER_INVITE = _refuse_rest({
    (S.PROCEEDING, I.REQUEST): Transition(S.PROCEEDING, ("trying", "cancel TRYING")),
    (S.PROCEEDING, I.ACK): Transition(S.PROCEEDING),
    (S.PROCEEDING, I.TU_PROVISIONAL): Transition(S.PROCEEDING, ("send", "cancel TRYING")),
    (S.PROCEEDING, I.TU_SUCCESS): Transition(S.ACCEPTED, ("send", "cancel TRYING", "arm L")),
    (S.PROCEEDING, I.TU_FAILURE): Transition(S.COMPLETED, ("send", "cancel TRYING", "arm G", "arm H")),
    (S.PROCEEDING, I.TIMER_TRYING): Transition(S.PROCEEDING, ("trying",)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
    (S.ACCEPTED, I.REQUEST): Transition(S.ACCEPTED),
    (S.ACCEPTED, I.ACK): Transition(S.ACCEPTED, ("report_ack",)),
    (S.ACCEPTED, I.TU_PROVISIONAL): Refuse("a 2xx was sent; no provisional response may follow"),
    (S.ACCEPTED, I.TU_SUCCESS): Transition(S.ACCEPTED, ("send",)),
    (S.ACCEPTED, I.TU_FAILURE): Refuse("a 2xx was sent; no failure response may follow"),
    (S.ACCEPTED, I.TIMER_L): Transition(S.TERMINATED),
    (S.ACCEPTED, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
    (S.COMPLETED, I.REQUEST): Transition(S.COMPLETED, ("resend",)),
    (S.COMPLETED, I.ACK): Transition(S.CONFIRMED, ("cancel G", "cancel H", "arm I")),
    (S.COMPLETED, I.TU_PROVISIONAL): Refuse("a final response was sent"),
    (S.COMPLETED, I.TU_SUCCESS): Refuse("a final response was sent"),
    (S.COMPLETED, I.TU_FAILURE): Refuse("a final response was sent"),
    (S.COMPLETED, I.TIMER_G): Transition(S.COMPLETED, ("resend", "backoff G")),
    (S.COMPLETED, I.TIMER_H): Transition(S.TERMINATED, ("timeout",)),
    (S.COMPLETED, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
    (S.CONFIRMED, I.REQUEST): Transition(S.CONFIRMED),
    (S.CONFIRMED, I.ACK): Transition(S.CONFIRMED),
    (S.CONFIRMED, I.TU_PROVISIONAL): Refuse("a final response was sent"),
    (S.CONFIRMED, I.TU_SUCCESS): Refuse("a final response was sent"),
    (S.CONFIRMED, I.TU_FAILURE): Refuse("a final response was sent"),
    (S.CONFIRMED, I.TIMER_I): Transition(S.TERMINATED),
    (S.CONFIRMED, I.TRANSPORT_ERROR): Transition(S.CONFIRMED),
}, STATES[Kind.SERVER_INVITE], INPUTS[Kind.SERVER_INVITE])

_SERVER_NON_INVITE = _refuse_rest({
    (S.TRYING, I.REQUEST): Transition(S.TRYING),
    (S.TRYING, I.TU_PROVISIONAL): Transition(S.PROCEEDING, ("send",)),
    (S.TRYING, I.TU_SUCCESS): Transition(S.COMPLETED, ("send", "arm J")),
    (S.TRYING, I.TU_FAILURE): Transition(S.COMPLETED, ("send", "arm J")),
    (S.TRYING, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
    (S.PROCEEDING, I.REQUEST): Transition(S.PROCEEDING, ("resend",)),
    (S.PROCEEDING, I.TU_PROVISIONAL): Transition(S.PROCEEDING, ("send",)),
    (S.PROCEEDING, I.TU_SUCCESS): Transition(S.COMPLETED, ("send", "arm J")),
    (S.PROCEEDING, I.TU_FAILURE): Transition(S.COMPLETED, ("send", "arm J")),
    (S.PROCEEDING, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
    (S.COMPLETED, I.REQUEST): Transition(S.COMPLETED, ("resend",)),
    (S.COMPLETED, I.TU_PROVISIONAL): Refuse("a final response was sent"),
    (S.COMPLETED, I.TU_SUCCESS): Refuse("a final response was sent"),
    (S.COMPLETED, I.TU_FAILURE): Refuse("a final response was sent"),
    (S.COMPLETED, I.TIMER_J): Transition(S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): Transition(S.TERMINATED, ("transport_error",)),
}, STATES[Kind.SERVER_NON_INVITE], INPUTS[Kind.SERVER_NON_INVITE])

TABLES: dict[Kind, dict[tuple[State, Input], Entry]] = {
    Kind.CLIENT_INVITE: _CLIENT_INVITE,
    Kind.CLIENT_NON_INVITE: _CLIENT_NON_INVITE,
    Kind.SERVER_INVITE: _SERVER_INVITE,
    Kind.SERVER_NON_INVITE: _SERVER_NON_INVITE,
}

_TIMER_INPUTS = {name: Input[f"TIMER_{name}"] for name in ("TRYING", "A", "B", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M")}


# --------------------------------------------------------------------------------------------
# Events for the TU


@dataclass(frozen=True)
class TransactionKey:
    """Matches messages to transactions (RFC 3261 17.1.3 client side, 17.2.3 server side).

    `branch` is the Via branch (or, for RFC 2543 peers without the magic cookie, a string made
    of Call-ID, From tag, CSeq number and the top Via); `method` is the CSeq method with ACK
    counted as INVITE; `sent_by` is empty on the client side.
    """

    branch: str
    method: str
    sent_by: str = ""
    server: bool = False


@dataclass(frozen=True)
class RequestReceived:
    """A new request (not a retransmission) for the TU; answer with `send_response`.
    For a CANCEL, `cancels` is the key of the INVITE server transaction it matches, if any."""

    key: TransactionKey
    request: SipRequest
    source: Address
    cancels: TransactionKey | None = None


@dataclass(frozen=True)
class AckReceived:
    """An ACK for a 2xx (key None: it matched no transaction) or one absorbed in Accepted."""

    request: SipRequest
    source: Address
    key: TransactionKey | None = None


@dataclass(frozen=True)
class ResponseReceived:
    key: TransactionKey
    response: SipResponse
    source: Address


@dataclass(frozen=True)
class Timeout:
    """Timer B/F (no final response) or H (no ACK for our failure response)."""

    key: TransactionKey
    timer: str


@dataclass(frozen=True)
class TransportError:
    key: TransactionKey


@dataclass(frozen=True)
class TransactionTerminated:
    key: TransactionKey


@dataclass(frozen=True)
class MalformedMessage:
    """A datagram that did not parse; `responded` says whether an error response went back."""

    source: Address
    error: SipParseError
    responded: bool


Event = Union[RequestReceived, AckReceived, ResponseReceived, Timeout, TransportError,
              TransactionTerminated, MalformedMessage]


def make_ack_for_failure(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a 300-699 (RFC 3261 17.1.1.3): same
    Request-URI, Call-ID, From, CSeq number and top Via as the INVITE, To from the response,
    the INVITE's Route headers."""
    h = Headers()
    h.add("Via", request.headers.get("Via") or "")
    h.add("Max-Forwards", "70")
    for route in request.headers.get_all("Route"):
        h.add("Route", route)
    h.add("From", request.headers.get("From") or "")
    h.add("To", response.headers.get("To") or "")
    h.add("Call-ID", request.call_id)
    h.add("CSeq", f"{request.cseq.seq} ACK")
    return SipRequest("ACK", request.uri, h)


class Transaction:
    """One transaction; driven by `TransactionLayer`, which owns the outbox and event queue."""

    def __init__(self, kind: Kind, key: TransactionKey, request: SipRequest, peer: Address,
                 now: float, config: TimerConfig, outbox: list, events: deque) -> None:
        self.kind = kind
        self.key = key
        self.request = request
        self.peer = peer  # where requests (client) or responses (server) go
        self.config = config
        self.state = STATES[kind][0]
        self.timers: dict[str, float] = {}
        self._intervals: dict[str, float] = {}
        self._outbox = outbox
        self._events = events
        self._request_bytes = bytes(request)
        self._last_response: bytes | None = None
        self._last_provisional: bytes | None = None
        self._message: SipRequest | SipResponse | None = None
        self._source: Address = peer
        if kind is Kind.CLIENT_INVITE:
            self._outbox.append((self._request_bytes, peer))
            self._arm("A", now)
            self._arm("B", now)
        elif kind is Kind.CLIENT_NON_INVITE:
            self._outbox.append((self._request_bytes, peer))
            self._arm("E", now)
            self._arm("F", now)
        elif kind is Kind.SERVER_INVITE:
            self._arm("TRYING", now)

    # -- driving -------------------------------------------------------------------------

    def fire(self, inp: Input, now: float, message: SipRequest | SipResponse | None = None,
             source: Address | None = None) -> None:
        entry = TABLES[self.kind].get((self.state, inp))
        if not isinstance(entry, Transition):
            reason = entry.reason if isinstance(entry, Refuse) else "not in the table"
            raise LocalProtocolError(f"{self.kind.value} transaction in {self.state.value}: "
                                     f"{inp.value}: {reason}")
        self._message = message
        if source is not None:
            self._source = source
        for action in entry.actions:
            op, _, arg = action.partition(" ")
            getattr(self, "_do_" + op)(now, arg)
        self.state = entry.target
        if self.state is State.TERMINATED:
            self.timers.clear()

    def get_timer(self) -> float | None:
        return min(self.timers.values()) if self.timers else None

    def handle_timer(self, now: float) -> None:
        while self.timers and self.state is not State.TERMINATED:
            name = min(self.timers, key=self.timers.__getitem__)
            if self.timers[name] > now:
                return
            del self.timers[name]
            self.fire(_TIMER_INPUTS[name], now)

    # -- timers --------------------------------------------------------------------------

    def _first_interval(self, name: str) -> float:
        c = self.config
        if name in ("A", "E", "G"):
            return c.t1
        if name in ("B", "F", "H", "J", "L", "M"):
            return 64 * c.t1
        if name == "D":
            return c.timer_d
        if name in ("I", "K"):
            return c.t4
        return c.trying_delay

    def _arm(self, name: str, now: float) -> None:
        interval = self._first_interval(name)
        self._intervals[name] = interval
        self.timers[name] = now + interval

    def _do_arm(self, now: float, name: str) -> None:
        self._arm(name, now)

    def _do_cancel(self, now: float, name: str) -> None:
        self.timers.pop(name, None)

    def _do_backoff(self, now: float, name: str) -> None:
        interval = 2 * self._intervals[name]
        if name != "A":  # Timer A doubles without a cap (RFC 3261 17.1.1.2)
            interval = min(interval, self.config.t2)
        self._intervals[name] = interval
        self.timers[name] = now + interval

    def _do_hold(self, now: float, name: str) -> None:
        self._intervals[name] = self.config.t2
        self.timers[name] = now + self.config.t2

    # -- actions -------------------------------------------------------------------------

    def _do_retransmit(self, now: float, arg: str) -> None:
        self._outbox.append((self._request_bytes, self.peer))

    def _do_report(self, now: float, arg: str) -> None:
        assert isinstance(self._message, SipResponse)
        self._events.append(ResponseReceived(self.key, self._message, self._source))

    def _do_ack(self, now: float, arg: str) -> None:
        assert isinstance(self._message, SipResponse)
        self._outbox.append((bytes(make_ack_for_failure(self.request, self._message)), self.peer))

    def _do_send(self, now: float, arg: str) -> None:
        assert isinstance(self._message, SipResponse)
        data = bytes(self._message)
        self._last_response = data
        if self._message.status < 200:
            self._last_provisional = data
        self._outbox.append((data, self.peer))

    def _do_resend(self, now: float, arg: str) -> None:
        if self._last_response is not None:
            self._outbox.append((self._last_response, self.peer))

    def _do_trying(self, now: float, arg: str) -> None:
        if self._last_provisional is None:
            self._last_provisional = bytes(make_response(self.request, 100))
            self._last_response = self._last_provisional
        self._outbox.append((self._last_provisional, self.peer))

    def _do_report_ack(self, now: float, arg: str) -> None:
        assert isinstance(self._message, SipRequest)
        self._events.append(AckReceived(self._message, self._source, self.key))

    def _do_timeout(self, now: float, arg: str) -> None:
        timer = {Kind.CLIENT_INVITE: "B", Kind.CLIENT_NON_INVITE: "F"}.get(self.kind, "H")
        self._events.append(Timeout(self.key, timer))

    def _do_transport_error(self, now: float, arg: str) -> None:
        self._events.append(TransportError(self.key))


# --------------------------------------------------------------------------------------------
# The layer


def _server_key(request: SipRequest) -> TransactionKey:
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    if via.rfc3261_branch:
        return TransactionKey(via.branch or "", method, via.sent_by.lower(), server=True)
    # RFC 2543 peer (RFC 3261 17.2.3, simplified: the To tag is left out so the ACK for a
    # non-2xx, whose To carries our tag, still matches).
    legacy = "|".join((request.call_id, request.from_.tag or "", str(request.cseq.seq),
                       str(via), str(request.uri)))
    return TransactionKey("2543:" + legacy, method, via.sent_by.lower(), server=True)


def _client_key(branch: str, method: str) -> TransactionKey:
    return TransactionKey(branch, "INVITE" if method == "ACK" else method)


class TransactionLayer:
    """All transactions of one SIP endpoint on UDP.

    Inputs: `receive_datagram(data, source, now)`, `send_request`, `send_response`,
    `transport_error`, `handle_timer(now)`. Outputs: `datagrams_to_send()` (list of
    (bytes, address)), `next_event()`, `get_timer()`. Malformed requests are answered here with
    `response_for_error` and reported as `MalformedMessage`; CRLF keep-alives are ignored.
    """

    def __init__(self, config: TimerConfig | None = None, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.config = config or TimerConfig()
        self.max_size = max_size
        self._clients: dict[TransactionKey, Transaction] = {}
        self._servers: dict[TransactionKey, Transaction] = {}
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        self.stray_responses = 0
        self.malformed = 0

    # -- outputs --------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out = list(self._outbox)
        self._outbox.clear()  # transactions append to this same list
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [t for tx in (*self._clients.values(), *self._servers.values())
                     if (t := tx.get_timer()) is not None]
        return min(deadlines) if deadlines else None

    def transaction(self, key: TransactionKey) -> Transaction | None:
        return (self._servers if key.server else self._clients).get(key)

    # -- inputs ---------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        for table in (self._clients, self._servers):
            for tx in list(table.values()):
                tx.handle_timer(now)
                self._reap(tx)

    def transport_error(self, key: TransactionKey, now: float) -> None:
        tx = self.transaction(key)
        if tx is not None:
            tx.fire(Input.TRANSPORT_ERROR, now)
            self._reap(tx)

    def send_request(self, request: SipRequest, destination: Address, now: float) -> TransactionKey | None:
        """Start a client transaction for `request` (its top Via must carry an RFC 3261 branch).
        An ACK (for a 2xx) is sent without a transaction and returns None."""
        if request.method == "ACK":
            self._outbox.append((bytes(request), destination))
            return None
        via = request.top_via
        if not via.rfc3261_branch:
            raise LocalProtocolError(f"request branch {via.branch!r} lacks the {MAGIC_COOKIE} cookie")
        key = _client_key(via.branch or "", request.method)
        if key in self._clients:
            raise LocalProtocolError(f"a client transaction {key.branch} {key.method} exists already")
        kind = Kind.CLIENT_INVITE if request.method == "INVITE" else Kind.CLIENT_NON_INVITE
        self._clients[key] = Transaction(kind, key, request, destination, now, self.config,
                                         self._outbox, self._events)
        return key

    def send_response(self, response: SipResponse, now: float) -> None:
        """Send the TU's response through the server transaction it answers."""
        via = response.top_via
        if via.rfc3261_branch:
            key = TransactionKey(via.branch or "", response.cseq.method, via.sent_by.lower(), server=True)
            tx = self._servers.get(key)
        else:
            tx = next((t for t in self._servers.values()
                       if t.request.headers.get("Via") == response.headers.get("Via")
                       and t.request.call_id == response.call_id
                       and t.request.cseq == response.cseq), None)
        if tx is None:
            raise LocalProtocolError(f"no server transaction for the response {response.status} "
                                     f"{response.cseq}")
        if response.status < 200:
            inp = Input.TU_PROVISIONAL
        elif response.status < 300:
            inp = Input.TU_SUCCESS
        else:
            inp = Input.TU_FAILURE
        tx.fire(inp, now, response)
        self._reap(tx)

    def send_stateless(self, message: SipRequest | SipResponse, destination: Address) -> None:
        self._outbox.append((bytes(message), destination))

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        if not data.strip(b"\r\n"):
            return  # RFC 5626 CRLF keep-alive
        try:
            message = parse_message(data, max_size=self.max_size)
        except SipParseError as exc:
            self.malformed += 1
            response = response_for_error(data, exc)
            if response is not None:
                try:
                    dest = response_address(response.top_via, source)
                except SipParseError:
                    dest = source
                self._outbox.append((bytes(response), dest))
            self._events.append(MalformedMessage(source, exc, response is not None))
            return
        if isinstance(message, SipResponse):
            self._receive_response(message, source, now)
        else:
            self._receive_request(message, source, now)

    def _receive_response(self, response: SipResponse, source: Address, now: float) -> None:
        via = response.top_via
        tx = self._clients.get(_client_key(via.branch or "", response.cseq.method))
        if tx is None:
            self.stray_responses += 1
            return
        if response.status < 200:
            inp = Input.PROVISIONAL
        elif response.status < 300:
            inp = Input.SUCCESS
        else:
            inp = Input.FAILURE
        tx.fire(inp, now, response, source)
        self._reap(tx)

    def _receive_request(self, request: SipRequest, source: Address, now: float) -> None:
        stamp_via(request, source)
        key = _server_key(request)
        tx = self._servers.get(key)
        if request.method == "ACK":
            if tx is None or tx.kind is not Kind.SERVER_INVITE:
                self._events.append(AckReceived(request, source))
                return
            tx.fire(Input.ACK, now, request, source)
            self._reap(tx)
            return
        if tx is not None:
            tx.fire(Input.REQUEST, now, request, source)
            self._reap(tx)
            return
        kind = Kind.SERVER_INVITE if request.method == "INVITE" else Kind.SERVER_NON_INVITE
        peer = response_address(request.top_via, source)
        self._servers[key] = Transaction(kind, key, request, peer, now, self.config,
                                         self._outbox, self._events)
        cancels = None
        if request.method == "CANCEL":
            invite_key = TransactionKey(key.branch, "INVITE", key.sent_by, server=True)
            if invite_key in self._servers:
                cancels = invite_key
        self._events.append(RequestReceived(key, request, source, cancels))

    def _reap(self, tx: Transaction) -> None:
        if tx.state is State.TERMINATED:
            table = self._servers if tx.key.server else self._clients
            if table.get(tx.key) is tx:
                del table[tx.key]
                self._events.append(TransactionTerminated(tx.key))
