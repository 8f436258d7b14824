"""The echo test service: a network server at a number that plays the caller's audio back.

The seed's network servers (FIG. 4, steps 430-442) get their keys from the signaling controller
the way a called CTA does: the SC generates a CTA-to-Server sub-key and SPI and delivers them to
the server first (430), the server acknowledges with a hash of sub-key and SPI (432), only then
does the SC deliver the same sub-key to the calling CTA (440), which acknowledges too (442). The
echo server is therefore a ctad in echo mode (`[echo] enabled = true`): it authenticates like a
CTA (PKINIT with an operator certificate whose phone ID is the echo number), keys its ESP channel
with its SC, REGISTERs the echo number(s), and receives each call's `Kerbtel-Call-Key` in the
INVITE through `ctad.calls.CallAgent`, which checks the key, derives the keys and sends the
acknowledgement in its 180 (seed 430/432, docs/protocol.md "Calls"). There is no line side:
every call to one of the numbers is answered at once with SDP naming a media socket of ours, and
each RTP packet from the caller is decrypted with the A-to-B media key and sent back encrypted
with the B-to-A key (`ctad.media.MediaRelay`: `from_network` decrypts, `from_line` encrypts).

Layers, as in the rest of ctad:

- `EchoCore` (sans I/O): `attach(agent, now)`, `on_call_event(event, now)` (the agent's
  `IncomingCall`, `CallKeysReady`, `CallEstablished`, `CallEnded`), `media_opened(call_id,
  address, now)` / `media_failed(...)` (the adapter's answer to `OpenMedia`),
  `from_network(call_id, data, source, now)` -> `(datagram, destination)` or None,
  `get_timer()` / `handle_timer(now)`, `next_event()` (`OpenMedia`, `CloseMedia`, `EchoKeyed`,
  `EchoAnswered`, `EchoRefused`, `EchoCallEnded`), `stats()`.
- `EchoServer`: the asyncio adapter ctad/service.py uses in echo mode: one non-blocking UDP
  socket per call on `[media] host` (and `port_min`-`port_max`), read with `loop.add_reader`, and
  the log lines.

Choices:

- Answer only when both the media socket and the call's keys are there (the keys arrive with the
  INVITE, so that is at once): a call is never answered that could not be encrypted.
- The answer lists the offer's codecs (the echo never decodes, so any codec comes back as sent),
  with rtcp-mux and RTP/SAVP like every CTA-to-CTA leg. Offers without a sendrecv audio stream
  are refused 488: an echo needs both directions.
- SSRC: each caller SSRC is re-stamped with a random SSRC of ours (never one of the caller's);
  an RTP endpoint receiving its own SSRC from another address takes it for a loop or a collision
  (RFC 3550 8.2). Sequence numbers, timestamps, marker, payload type and payload stay as sent.
  At most `max_streams` caller SSRCs per call.
- RTCP from the caller is authenticated and decrypted, then dropped (counted
  `rtcp_not_echoed`): its reports describe the caller's own streams.
- The call ends on the caller's BYE (the agent's `CallEnded`), after `max_duration` seconds from
  the answer (we send BYE), when the SC channel is re-established (a new agent), or when no ACK
  comes (the agent gives up).
- Drops are counted per reason, never logged per packet: the relay's reasons
  (`network_wrong_source`, `network_auth`, `network_replay`, `network_malformed`, `no_keys`, ...)
  plus ours (`DROP_REASONS`). No key material in any event, repr or log line.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol, Union

from common.logsetup import get_logger
from common.rtp import RtpError, rtp_header_length
from common.sip.sdp import SdpParseError, SessionDescription, negotiate
from common.sip.transaction import LocalProtocolError
from ctad.calls import CallEnded, CallEstablished, CallKeysReady, IncomingCall
from ctad.media import LINE_RTP, MAX_DATAGRAM, MediaRelay, bind_udp, bind_udp_in_range, media_peer

__all__ = [
    "CloseMedia",
    "DROP_REASONS",
    "EchoAnswered",
    "EchoCallEnded",
    "EchoConfig",
    "EchoCore",
    "EchoKeyed",
    "EchoRefused",
    "EchoServer",
    "OpenMedia",
]

Address = tuple[str, int]
# The relay's "line peer" in echo mode: the echo itself. Never a socket; only the name under which
# decrypted packets leave `from_network` and re-enter `from_line`.
REFLECTOR: Address = ("127.0.0.1", 9)
MEDIA_PROTO = "RTP/SAVP"  # what every CTA-to-CTA media stream says (keys from the SCs, not SDP)

DROP_REASONS = (
    "unknown_call",      # a datagram for a call that has ended (or never was)
    "rtcp_not_echoed",   # authenticated RTCP from the caller: not reflected
    "rtp_malformed",     # decrypted, but not an RTP header we can re-stamp
    "too_many_ssrc",     # more caller SSRCs in one call than `max_streams`
)


class CallAgentLike(Protocol):
    """What the core needs of `ctad.calls.CallAgent`."""

    def answer(self, call_id: str, sdp: bytes, now: float) -> None: ...

    def reject(self, call_id: str, now: float, status: int = 486) -> None: ...

    def hangup(self, call_id: str, now: float) -> None: ...


@dataclass(frozen=True)
class EchoConfig:
    numbers: tuple[str, ...]
    max_duration: float = 300.0  # seconds from the answer; then we hang up
    max_calls: int = 16  # more at once get 486
    max_streams: int = 4  # caller SSRCs per call
    backend: str | None = None  # SRTP transform (None: libsrtp when installed)
    legacy_mac: bool = True  # 3DES_CBC_SEED with its MAC, as the CTAs use it


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenMedia:
    """Bind a media socket for the call and answer with `media_opened` (or `media_failed`)."""

    call_id: str


@dataclass(frozen=True)
class CloseMedia:
    call_id: str


@dataclass(frozen=True)
class EchoKeyed:
    """The SC's sub-key arrived and checked; the agent acknowledged it (seed 430/432)."""

    call_id: str
    call_ref: str
    spi: int
    media_profile: str
    esp_suite: str


@dataclass(frozen=True)
class EchoAnswered:
    call_id: str
    call_ref: str | None
    caller: str
    line: str
    media: Address  # our media socket, as put into the answer
    caller_media: Address


@dataclass(frozen=True)
class EchoRefused:
    call_id: str
    caller: str
    line: str
    status: int
    reason: str


@dataclass(frozen=True)
class EchoCallEnded:
    call_id: str
    call_ref: str | None
    caller: str
    reason: str
    duration: float | None  # seconds since the answer; None: never answered
    echoed: int  # RTP packets played back
    decrypted: int
    encrypted: int
    drops: dict[str, int] = field(default_factory=dict)


Event = Union[OpenMedia, CloseMedia, EchoKeyed, EchoAnswered, EchoRefused, EchoCallEnded]


@dataclass
class _EchoCall:
    call_id: str
    caller: str
    line: str
    offer: SessionDescription
    caller_media: Address
    relay: MediaRelay
    call_ref: str | None = None
    local: Address | None = None  # our media socket
    answered_at: float | None = None
    deadline: float | None = None
    established: bool = False
    ssrc_map: dict[int, int] = field(default_factory=dict)  # caller SSRC -> ours
    echoed: int = 0
    drops: dict[str, int] = field(default_factory=dict)  # our reasons (the relay counts its own)


class _Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _check_offer(body: bytes) -> tuple[SessionDescription, Address]:
    """The caller's SDP offer and its media address, or a _Refusal saying why not."""
    try:
        offer = SessionDescription.parse(body)
    except SdpParseError as exc:
        raise _Refusal(488, f"Not Acceptable Here (unusable SDP offer: {exc})") from None
    audio = offer.audio()
    peer = media_peer(offer) if audio is not None else None
    if audio is None or peer is None:
        raise _Refusal(488, "Not Acceptable Here (no active audio stream)")
    if audio.direction != "sendrecv":
        raise _Refusal(488, f"Not Acceptable Here (the echo needs sendrecv audio, not {audio.direction})")
    if not any(c.name and c.name.lower() != "telephone-event" for c in audio.codecs):
        raise _Refusal(488, "Not Acceptable Here (no audio codec named in the offer)")
    return offer, peer.rtp


class EchoCore:
    """The echo service's calls and media, sans I/O (module docstring)."""

    def __init__(self, config: EchoConfig, *, rng: Callable[[int], bytes] = os.urandom) -> None:
        if not config.numbers:
            raise ValueError("an echo server needs at least one number")
        self.config = config
        self.numbers = frozenset(config.numbers)
        self.rng = rng
        self.agent: CallAgentLike | None = None
        self.calls: dict[str, _EchoCall] = {}
        self._events: deque[Event] = deque()
        self.counters = dict.fromkeys(("answered", "refused", "completed", "max_duration", "echoed"), 0)
        self.drops: dict[str, int] = {}  # ours, and the relays' of calls that ended

    # -- outputs --------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [c.deadline for c in self.calls.values() if c.deadline is not None]
        return min(deadlines) if deadlines else None

    def stats(self) -> dict:
        drops = dict(self.drops)
        for call in self.calls.values():
            for reason, n in {**call.relay.drops, **call.drops}.items():
                if n:
                    drops[reason] = drops.get(reason, 0) + n
        return {**self.counters, "active": len(self.calls), "drops": dict(sorted(drops.items()))}

    # -- inputs ---------------------------------------------------------------------------

    def attach(self, agent: CallAgentLike | None, now: float) -> None:
        """Take calls from `agent` from now on. Calls of a previous agent end here: a new agent
        means a new SA pair with the SC, which has forgotten them (no SIP can reach them)."""
        if agent is self.agent:
            return
        for call in list(self.calls.values()):
            self._finish(call, "the SC channel was re-established", now)
        self.agent = agent

    def on_call_event(self, event, now: float) -> None:
        """One `CallAgent` event (the adapter passes all of them here)."""
        if isinstance(event, IncomingCall):
            self._incoming(event, now)
            return
        call = self.calls.get(event.call_id)
        if call is None:
            return  # a call we refused or ended already
        if isinstance(event, CallKeysReady):
            self._keys(call, event, now)
        elif isinstance(event, CallEstablished):
            call.established = True
        elif isinstance(event, CallEnded):
            self._finish(call, event.reason, now)

    def media_opened(self, call_id: str, address: Address, now: float) -> None:
        call = self.calls.get(call_id)
        if call is None:
            self._events.append(CloseMedia(call_id))  # ended while the socket was bound
            return
        call.local = (address[0], int(address[1]))
        self._maybe_answer(call, now)

    def media_failed(self, call_id: str, reason: str, now: float) -> None:
        call = self.calls.pop(call_id, None)
        if call is not None:
            self._refuse(call.call_id, call.caller, call.line, 503, f"Service Unavailable (media: {reason})", now)

    def handle_timer(self, now: float) -> None:
        for call in list(self.calls.values()):
            if call.deadline is not None and call.deadline <= now:
                self.counters["max_duration"] += 1
                self._finish(call, f"maximum duration ({self.config.max_duration:g} s) reached", now)
                if self.agent is not None:
                    self.agent.hangup(call.call_id, now)

    def from_network(self, call_id: str, data: bytes, source: Address, now: float) -> tuple[bytes, Address] | None:
        """One datagram on the call's media socket -> what to send back (and where), or None
        (dropped and counted)."""
        call = self.calls.get(call_id)
        if call is None:
            self._count(self.drops, "unknown_call")
            return None
        relay = call.relay
        out = relay.from_network(data, source, now)  # checks source, authenticates, decrypts
        if out is None:
            return None
        port, plain, _ = out
        if port != LINE_RTP:
            self._count(call.drops, "rtcp_not_echoed")
            return None
        try:
            rtp_header_length(plain)
        except RtpError:
            self._count(call.drops, "rtp_malformed")
            return None
        ssrc = int.from_bytes(plain[8:12], "big")
        ours = call.ssrc_map.get(ssrc)
        if ours is None:
            if len(call.ssrc_map) >= self.config.max_streams:
                self._count(call.drops, "too_many_ssrc")
                return None
            ours = call.ssrc_map[ssrc] = self._new_ssrc(call, ssrc)
        back = relay.from_line(plain[:8] + ours.to_bytes(4, "big") + plain[12:], REFLECTOR, now)
        if back is None:
            return None  # counted by the relay (e.g. tx_exhausted)
        call.echoed += 1
        self.counters["echoed"] += 1
        return back[1], back[2]

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _count(drops: dict[str, int], reason: str) -> None:
        drops[reason] = drops.get(reason, 0) + 1

    def _new_ssrc(self, call: _EchoCall, caller_ssrc: int) -> int:
        taken = set(call.ssrc_map) | set(call.ssrc_map.values()) | {caller_ssrc}
        while True:
            ssrc = int.from_bytes(self.rng(4), "big")
            if ssrc not in taken:
                return ssrc

    def _incoming(self, event: IncomingCall, now: float) -> None:
        try:
            if event.line not in self.numbers:
                raise _Refusal(404, "Not Found (not an echo number)")
            if len(self.calls) >= self.config.max_calls:
                raise _Refusal(486, "Busy Here (echo calls at the limit)")
            offer, caller_media = _check_offer(event.sdp)
        except _Refusal as refusal:
            self._refuse(event.call_id, event.caller, event.line, refusal.status, refusal.reason, now)
            return
        relay = MediaRelay(event.call_id, "B", backend=self.config.backend,  # type: ignore[arg-type]
                           legacy_mac=self.config.legacy_mac, line_peer=REFLECTOR, network_peer=caller_media,
                           log=get_logger("ctad.echo.media", call_id=event.call_id))
        self.calls[event.call_id] = _EchoCall(event.call_id, event.caller, event.line, offer, caller_media, relay)
        self._events.append(OpenMedia(event.call_id))

    def _keys(self, call: _EchoCall, event: CallKeysReady, now: float) -> None:
        if call.relay.keyed:
            return
        try:
            call.relay.set_direction_keys(event.media_profile, event.media_tx, event.media_rx)
        except ValueError as exc:
            self.calls.pop(call.call_id, None)
            self._events.append(CloseMedia(call.call_id))
            self._refuse(call.call_id, call.caller, call.line, 488, f"Not Acceptable Here ({exc})", now)
            return
        call.call_ref = event.call_ref
        self._events.append(EchoKeyed(call.call_id, event.call_ref, event.spi, event.media_profile,
                                      event.esp_suite.name))
        self._maybe_answer(call, now)

    def _maybe_answer(self, call: _EchoCall, now: float) -> None:
        if call.answered_at is not None or call.local is None or not call.relay.keyed or self.agent is None:
            return
        try:
            self.agent.answer(call.call_id, self._answer_sdp(call), now)
        except (LocalProtocolError, KeyError):
            self._finish(call, "the call ended before the answer", now)  # e.g. CANCEL crossed it
            return
        call.answered_at = now
        call.deadline = now + self.config.max_duration
        self.counters["answered"] += 1
        self._events.append(EchoAnswered(call.call_id, call.call_ref, call.caller, call.line, call.local,
                                         call.caller_media))

    def _answer_sdp(self, call: _EchoCall) -> bytes:
        assert call.local is not None
        host, port = call.local
        session = int.from_bytes(self.rng(4), "big") >> 1
        kind = "IP6" if ":" in host else "IP4"
        audio = call.offer.audio()
        names = [c.name for c in audio.codecs if c.name] if audio is not None else []
        answer = negotiate(call.offer, names, host=host, port=port, origin=f"- {session} {session} IN {kind} {host}")
        media = answer.audio()
        if media is not None and media.port:
            media.proto = MEDIA_PROTO
            media.attributes.append("rtcp-mux")
        return bytes(answer)

    def _refuse(self, call_id: str, caller: str, line: str, status: int, reason: str, now: float) -> None:
        self.counters["refused"] += 1
        self._events.append(EchoRefused(call_id, caller, line, status, reason))
        if self.agent is None:
            return
        try:
            self.agent.reject(call_id, now, status)
        except (LocalProtocolError, KeyError):
            self.agent.hangup(call_id, now)

    def _finish(self, call: _EchoCall, reason: str, now: float) -> None:
        self.calls.pop(call.call_id, None)
        relay = call.relay
        relay.flush_log()
        drops = {k: v for k, v in {**relay.drops, **call.drops}.items() if v}
        for k, v in drops.items():
            self.drops[k] = self.drops.get(k, 0) + v
        if call.answered_at is not None:
            self.counters["completed"] += 1
        self._events.append(CloseMedia(call.call_id))
        self._events.append(EchoCallEnded(
            call.call_id, call.call_ref, call.caller, reason,
            None if call.answered_at is None else round(now - call.answered_at, 3),
            call.echoed, relay.decrypted_packets, relay.encrypted_packets, drops))


# --- the asyncio adapter --------------------------------------------------------------------


def _bind_media(host: str, port_range: tuple[int, int] | None) -> socket.socket:
    """One non-blocking UDP socket for a call's media, from `port_range` when given."""
    return bind_udp_in_range(host, port_range) if port_range else bind_udp(host, 0)


class EchoServer:
    """The core plus one non-blocking UDP socket per call (module docstring). ctad/service.py
    feeds it the CallAgent's events and its timer; it writes the log lines.

    Reads use `loop.add_reader` rather than a datagram transport so that a socket is bound and
    its address known synchronously, while the call's INVITE is being handled: the answer goes
    out in the same turn of the loop."""

    READS_PER_WAKEUP = 64  # bounded so that one flooded call cannot starve the others

    def __init__(self, config: EchoConfig, *, media_host: str = "127.0.0.1",
                 port_range: tuple[int, int] | None = None, loop: asyncio.AbstractEventLoop | None = None,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self.core = EchoCore(config, rng=rng)
        self.media_host = media_host
        self.port_range = port_range
        self.loop = loop or asyncio.get_running_loop()
        self.sockets: dict[str, socket.socket] = {}
        self.send_errors = 0
        self.log = get_logger("ctad.echo")

    # -- what ctad/service.py calls --------------------------------------------------------

    def attach(self, agent: CallAgentLike | None, now: float) -> None:
        self.core.attach(agent, now)
        self._drain(now)

    def on_call_event(self, event, now: float) -> None:
        self.core.on_call_event(event, now)
        self._drain(now)

    def get_timer(self) -> float | None:
        return self.core.get_timer()

    def handle_timer(self, now: float) -> None:
        self.core.handle_timer(now)
        self._drain(now)

    def close(self) -> None:
        for call_id in list(self.sockets):
            self._close(call_id)

    def stats(self) -> dict:
        return {**self.core.stats(), "send_errors": self.send_errors}

    def status(self) -> str:
        s = self.core.stats()
        return (f"echo {','.join(self.core.config.numbers)} answered={s['answered']} active={s['active']} "
                f"refused={s['refused']} echoed={s['echoed']} dropped={sum(s['drops'].values())}")

    # -- internals ------------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        log = self.log
        while (event := self.core.next_event()) is not None:
            if isinstance(event, OpenMedia):
                self._open(event.call_id, now)
            elif isinstance(event, CloseMedia):
                self._close(event.call_id)
            elif isinstance(event, EchoKeyed):
                log.info("echo call keyed", call_id=event.call_id, call_ref=event.call_ref, spi=event.spi,
                         media_profile=event.media_profile, esp_suite=event.esp_suite, acknowledged=True)
            elif isinstance(event, EchoAnswered):
                log.info("echo call answered", call_id=event.call_id, call_ref=event.call_ref, caller=event.caller,
                         line=event.line, media=f"{event.media[0]}:{event.media[1]}",
                         caller_media=f"{event.caller_media[0]}:{event.caller_media[1]}")
            elif isinstance(event, EchoRefused):
                log.info("echo call refused", call_id=event.call_id, caller=event.caller, line=event.line,
                         status=event.status, reason=event.reason)
            elif isinstance(event, EchoCallEnded):
                log.info("echo call ended", call_id=event.call_id, call_ref=event.call_ref, caller=event.caller,
                         reason=event.reason, duration=event.duration, echoed=event.echoed,
                         decrypted_packets=event.decrypted, encrypted_packets=event.encrypted, drops=event.drops)

    def _open(self, call_id: str, now: float) -> None:
        try:
            sock = _bind_media(self.media_host, self.port_range)
        except OSError as exc:
            self.log.warning("echo media failed", call_id=call_id, error=str(exc))
            self.core.media_failed(call_id, str(exc), now)
            return
        self.sockets[call_id] = sock
        self.loop.add_reader(sock.fileno(), self._readable, call_id, sock)
        self.core.media_opened(call_id, sock.getsockname()[:2], now)

    def _close(self, call_id: str) -> None:
        sock = self.sockets.pop(call_id, None)
        if sock is not None:
            self.loop.remove_reader(sock.fileno())
            sock.close()

    def _readable(self, call_id: str, sock: socket.socket) -> None:
        now = self.loop.time()
        v6 = sock.family == socket.AF_INET6
        for _ in range(self.READS_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP unreachable for an earlier send: the caller's socket is gone
                self.send_errors += 1
                continue
            out = self.core.from_network(call_id, data, addr[:2] if v6 else addr, now)
            if out is None:
                continue
            try:
                sock.sendto(out[0], out[1])
            except OSError:  # e.g. the send buffer is full: drop, as a lossy network would
                self.send_errors += 1
