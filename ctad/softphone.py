"""A built-in softphone for a CTA's line side: tone player and recorder (demo and tests).

What a real softphone (baresip) does on the line side, small enough to read in one sitting:
register with the line side (optional), dial `sip:NUMBER@HOST:PORT`, answer incoming INVITEs
automatically, send a sine tone as PCMU/PCMA RTP in 20 ms packets, record what arrives
(PCMU/PCMA, telephone-event skipped) for `common.audio.ToneCheck`, hang up (BYE, or CANCEL before
the answer) and handle the peer's BYE. SDP offer/answer with PCMU 0, PCMA 8, telephone-event 101.
One call at a time; a second INVITE gets 486 Busy Here.

Layers, aioquic style:
- `RtpStream` (sans-I/O media): `next_packet()` gives the next 20 ms of tone as RTP (sequence
  and timestamp continuous from random starts), `receive(data)` decodes into `received`.
- `PhoneAgent` (sans-I/O SIP UA on `common.sip`): inputs `receive_datagram(data, source, now)`,
  `handle_timer(now)`, `register/dial/answer/hangup(now)`; outputs `datagrams_to_send()`,
  `next_event()` (`Registered`, `RegisterFailed`, `IncomingCall`, `Ringing`, `CallEstablished`,
  `CallClosed`), `get_timer()`.
- `Softphone`: the asyncio adapter (two UDP sockets, one timer, a 20 ms media task).

    async with Softphone(SoftphoneConfig(number="1001", line=("127.0.0.1", 5062), tone_hz=1000)) as p:
        await p.dial("1002")                  # sip:1002@127.0.0.1:5062, sent to the line side
        await asyncio.sleep(3); await p.hangup()
        p.save_recording("a.wav")

CLI: `python -m ctad.softphone --line HOST:PORT --number N [--dial M] [--tone HZ] [--record FILE]
[--duration S] [--register] [--check HZ]` (see `main`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Union

from common.audio import ToneCheck, ToneGenerator, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode, write_wav
from common.sip.dialog import Dialog, DialogEvent, DialogState
from common.sip.message import (
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Uri,
    make_response,
    parse_uri,
)
from common.sip.sdp import MediaDescription, SdpParseError, SessionDescription, negotiate
from common.sip.transaction import (
    AckReceived,
    LocalProtocolError,
    MalformedMessage,
    RequestReceived,
    ResponseReceived,
    Timeout,
    TimerConfig,
    TransactionKey,
    TransactionLayer,
    TransportError,
)
from common.sip.ua import IdGenerator, build_cancel, build_register, build_request

__all__ = [
    "CallClosed",
    "CallEstablished",
    "CallFailed",
    "IncomingCall",
    "InfoReceived",
    "PhoneAgent",
    "RegisterFailed",
    "Registered",
    "Ringing",
    "RtpStream",
    "Softphone",
    "SoftphoneConfig",
    "main",
]

Address = tuple[str, int]

AUDIO_PT = {"PCMU": 0, "PCMA": 8}
TELEPHONE_EVENT_PT = 101
SAMPLE_RATE = 8000
USER_AGENT = "kerbtel-softphone/0.1"
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"


# --------------------------------------------------------------------------------------------
# Media, sans I/O

_RTP_HEADER = struct.Struct("!BBHII")


def _seq_newer(a: int, b: int) -> bool:
    """RFC 1982 serial comparison on 16 bits: a is after b."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


class RtpStream:
    """One call's audio: a tone out (or silence with `tone=None`), received audio in.

    `send_pt`/`send_codec` are the negotiated payload type and codec name ("PCMU"/"PCMA");
    `receive_map` maps the payload types we accept to codec names ("telephone-event" is counted,
    not recorded). Lost packets (a sequence gap up to one second) are recorded as silence so that
    the recording keeps its timing; late or duplicate packets are dropped."""

    def __init__(self, *, ssrc: int, seq: int, timestamp: int, send_pt: int, send_codec: str,
                 receive_map: dict[int, str], tone: ToneGenerator | None, ptime_ms: int = 20) -> None:
        if send_codec not in AUDIO_PT:
            raise ValueError(f"cannot send {send_codec}")
        self.ssrc = ssrc & 0xFFFFFFFF
        self.seq = seq & 0xFFFF
        self.timestamp = timestamp & 0xFFFFFFFF
        self.send_pt = send_pt
        self.send_codec = send_codec
        self.receive_map = dict(receive_map)
        self.tone = tone
        self.samples_per_packet = SAMPLE_RATE * ptime_ms // 1000
        self._encode = ulaw_encode if send_codec == "PCMU" else alaw_encode
        self._first = True
        self.received = array("h")
        self.packets_sent = 0
        self.packets_received = 0
        self.events_received = 0     # telephone-event packets
        self.dropped = 0             # malformed, unknown payload type, late or duplicate
        self.lost = 0
        self.remote_ssrc: int | None = None
        self._last_seq: int | None = None
        self._last_len = self.samples_per_packet

    def next_packet(self) -> bytes:
        n = self.samples_per_packet
        samples = self.tone.read(n) if self.tone is not None else array("h", bytes(2 * n))
        marker = 0x80 if self._first else 0
        self._first = False
        header = _RTP_HEADER.pack(0x80, marker | self.send_pt, self.seq, self.timestamp, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + n) & 0xFFFFFFFF
        self.packets_sent += 1
        return header + self._encode(samples)

    def receive(self, data: bytes) -> bool:
        """Record one RTP packet's audio; False (and counted in `dropped`) if not recorded."""
        if len(data) < 12 or data[0] >> 6 != 2:
            self.dropped += 1
            return False
        first, second, seq, _ts, ssrc = _RTP_HEADER.unpack_from(data)
        pt = second & 0x7F
        if 72 <= pt <= 76:            # RTCP on the RTP port (rtcp-mux): not audio
            return False
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:              # header extension
            if len(data) < offset + 4:
                self.dropped += 1
                return False
            offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
        end = len(data)
        if first & 0x20:              # padding
            end -= data[-1]
        if offset > end:
            self.dropped += 1
            return False
        codec = self.receive_map.get(pt)
        if codec is None:
            self.dropped += 1
            return False
        if ssrc != self.remote_ssrc:
            self.remote_ssrc, self._last_seq = ssrc, None
        if self._last_seq is not None:
            if not _seq_newer(seq, self._last_seq):
                self.dropped += 1
                return False
            gap = ((seq - self._last_seq) & 0xFFFF) - 1
            if gap:
                self.lost += gap
                if gap * self._last_len <= SAMPLE_RATE:
                    self.received.extend(array("h", bytes(2 * gap * self._last_len)))
        self._last_seq = seq
        self.packets_received += 1
        if codec.lower() == "telephone-event":
            self.events_received += 1
            return True
        payload = data[offset:end]
        samples = ulaw_decode(payload) if codec == "PCMU" else alaw_decode(payload)
        self._last_len = len(samples) or self._last_len
        self.received.extend(samples)
        return True


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True)
class Registered:
    expires: int


@dataclass(frozen=True)
class RegisterFailed:
    status: int | None
    reason: str


@dataclass(frozen=True)
class IncomingCall:
    call_id: str
    caller: str


@dataclass(frozen=True)
class Ringing:
    call_id: str
    status: int


@dataclass(frozen=True)
class CallEstablished:
    call_id: str
    remote_media: Address
    send_pt: int
    send_codec: str
    receive_map: dict[int, str] = field(hash=False, compare=False)
    outgoing: bool = True


@dataclass(frozen=True)
class CallClosed:
    call_id: str
    reason: str
    by_remote: bool
    established: bool


@dataclass(frozen=True)
class InfoReceived:
    """An INFO in the call (e.g. application/dtmf-relay); answered 200."""

    call_id: str
    content_type: str | None
    body: bytes


Event = Union[Registered, RegisterFailed, IncomingCall, Ringing, CallEstablished, CallClosed, InfoReceived]


class CallFailed(Exception):
    pass


# --------------------------------------------------------------------------------------------
# SIP, sans I/O


@dataclass
class _Call:
    call_id: str
    outgoing: bool
    invite: SipRequest
    invite_key: TransactionKey | None = None     # client tx (outgoing) or server tx (incoming)
    dialog: Dialog | None = None
    state: str = "calling"                       # calling, early, established, closing, closed
    local_tag: str = ""
    remote_sdp: SessionDescription | None = None
    ok: SipResponse | None = None                # our 2xx, retransmitted until the ACK
    ok_next: float | None = None
    ok_interval: float = 0.5
    ok_deadline: float = 0.0
    cancel_sent: bool = False
    bye_key: TransactionKey | None = None
    ringing_reported: bool = False


def _address_of(uri: Uri) -> Address:
    if not isinstance(uri, SipUri):
        raise LocalProtocolError(f"cannot send to {uri}")
    return uri.host.strip("[]"), uri.port or 5060


class PhoneAgent:
    """The softphone's SIP user agent, sans I/O. `host`/`sip_port`/`rtp_port` are where this
    phone's sockets are bound (they go into Via, Contact and SDP). `line` is the line side: the
    registrar, and where every out-of-dialog request goes (an outbound proxy); without it a
    request goes to its Request-URI's host and port."""

    def __init__(self, number: str, *, host: str, sip_port: int, rtp_port: int,
                 line: Address | None = None, codecs: tuple[str, ...] = ("PCMU", "PCMA"),
                 auto_answer: bool = True, register_expires: int = 3600,
                 timers: TimerConfig | None = None, rng: Callable[[int], bytes] = os.urandom) -> None:
        unknown = [c for c in codecs if c.upper() not in AUDIO_PT]
        if unknown or not codecs:
            raise ValueError(f"codecs must be a non-empty subset of PCMU, PCMA (got {codecs})")
        self.number = number
        self.host = host
        self.sip_port = sip_port
        self.rtp_port = rtp_port
        self.line = line
        self.codecs = tuple(c.upper() for c in codecs)
        self.auto_answer = auto_answer
        self.register_expires = register_expires
        self.ids = IdGenerator(rng)
        self.layer = TransactionLayer(timers)
        self.timers = self.layer.config
        self.call: _Call | None = None
        self._events: deque[Event] = deque()
        self._sdp_session = int.from_bytes(rng(4), "big")
        self._sdp_version = 0
        self._reg_call_id = self.ids.call_id(host)
        self._reg_tag = self.ids.tag()
        self._reg_cseq = self.ids.cseq()
        self._reg_key: TransactionKey | None = None
        self._reg_expires = register_expires
        self._reg_refresh: float | None = None
        self.registered = False

    # -- outputs --------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        return self.layer.datagrams_to_send()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.layer.get_timer(), self._reg_refresh,
                                 self.call.ok_next if self.call else None) if t is not None]
        return min(deadlines) if deadlines else None

    # -- identities -----------------------------------------------------------------------

    @property
    def local(self) -> Address:
        return self.host, self.sip_port

    def contact(self) -> NameAddr:
        return NameAddr(SipUri(host=self.host, user=self.number, port=self.sip_port))

    def aor(self) -> NameAddr:
        host, port = self.line if self.line else self.local
        return NameAddr(SipUri(host=host, user=self.number, port=port))

    def target_uri(self, target: str) -> SipUri:
        """`sip:...` as given, or a number dialed on the line side (or at its own host:port)."""
        if ":" in target and target.split(":", 1)[0].lower() in ("sip", "sips"):
            uri = parse_uri(target)
            if not isinstance(uri, SipUri):
                raise ValueError(f"not a SIP URI: {target}")
            return uri
        host, port = self.line if self.line else self.local
        return SipUri(host=host, user=target, port=port)

    def _destination(self, uri: Uri) -> Address:
        return self.line if self.line else _address_of(uri)

    # -- SDP ------------------------------------------------------------------------------

    def _media_attributes(self) -> list[str]:
        attrs = [f"rtpmap:{AUDIO_PT[c]} {c}/8000" for c in self.codecs]
        attrs += [f"rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000", f"fmtp:{TELEPHONE_EVENT_PT} 0-15",
                  "ptime:20", "sendrecv"]
        return attrs

    def _origin(self) -> str:
        self._sdp_version += 1
        return f"{self.number or '-'} {self._sdp_session} {self._sdp_version} IN IP4 {self.host}"

    def offer(self) -> SessionDescription:
        formats = [str(AUDIO_PT[c]) for c in self.codecs] + [str(TELEPHONE_EVENT_PT)]
        media = MediaDescription("audio", self.rtp_port, "RTP/AVP", formats, attributes=self._media_attributes())
        return SessionDescription(origin=self._origin(), name="kerbtel", connection=self.host, media=[media])

    def _answer(self, offer: SessionDescription) -> SessionDescription:
        answer = negotiate(offer, [*self.codecs, "telephone-event"], host=self.host, port=self.rtp_port,
                           origin=self._origin())
        answer.name = "kerbtel"
        return answer

    @staticmethod
    def _media_of(sdp: SessionDescription, *, prefer: tuple[str, ...]) -> tuple[Address, int, str, dict[int, str]]:
        """(remote address, send pt, send codec, receive map) from the negotiated description."""
        audio = sdp.audio()
        if audio is None or audio.port == 0:
            raise SdpParseError("no accepted audio stream")
        address = sdp.media_address(audio)
        if address is None:
            raise SdpParseError("no c= address for the audio stream")
        receive_map: dict[int, str] = {}
        send: tuple[int, str] | None = None
        for codec in audio.codecs:
            name = codec.name.upper()
            if name in AUDIO_PT and name in prefer and codec.rate == SAMPLE_RATE:
                receive_map[codec.pt] = name
                if send is None:
                    send = (codec.pt, name)
            elif name == "TELEPHONE-EVENT":
                receive_map[codec.pt] = "telephone-event"
        if send is None:
            raise SdpParseError("no common audio codec (PCMU/PCMA)")
        # A peer may switch among the static codecs we offered: accept them all.
        for name in prefer:
            receive_map.setdefault(AUDIO_PT[name], name)
        return address, send[0], send[1], receive_map

    # -- API calls ------------------------------------------------------------------------

    def register(self, now: float, expires: int | None = None) -> None:
        if self.line is None:
            raise LocalProtocolError("register needs the line side address")
        self._reg_expires = self.register_expires if expires is None else expires
        self._reg_cseq += 1
        request = build_register(
            registrar=SipUri(host=self.line[0], port=self.line[1]), aor=self.aor(), contact=self.contact(),
            expires=self._reg_expires, call_id=self._reg_call_id, cseq=self._reg_cseq,
            from_tag=self._reg_tag, local=self.local, branch=self.ids.branch(),
            headers=[("User-Agent", USER_AGENT)])
        self._reg_refresh = None
        self._reg_key = self.layer.send_request(request, self.line, now)

    def dial(self, target: str, now: float) -> str:
        """INVITE `target` (a number or a SIP URI); returns the Call-ID."""
        if self.call is not None:
            raise LocalProtocolError(f"a call is in progress ({self.call.state})")
        uri = self.target_uri(target)
        call_id = self.ids.call_id(self.host)
        tag = self.ids.tag()
        invite = build_request(
            "INVITE", uri, from_=self.aor().with_tag(tag), to=NameAddr(uri), call_id=call_id,
            cseq=self.ids.cseq(), local=self.local, branch=self.ids.branch(), contact=self.contact(),
            headers=[("Allow", ALLOW), ("User-Agent", USER_AGENT)], body=bytes(self.offer()),
            content_type="application/sdp")
        self.call = _Call(call_id=call_id, outgoing=True, invite=invite, local_tag=tag)
        self.call.invite_key = self.layer.send_request(invite, self._destination(uri), now)
        return call_id

    def answer(self, now: float) -> None:
        call = self.call
        if call is None or call.outgoing or call.state != "early":
            raise LocalProtocolError("no incoming call to answer")
        self._answer_incoming(call, now)

    def hangup(self, now: float) -> None:
        """BYE an established call, CANCEL (ours) or 486 (theirs) one not answered yet."""
        call = self.call
        if call is None or call.state in ("closing", "closed"):
            return
        if call.state == "established" and call.dialog is not None:
            self._send_bye(call, now)
        elif call.outgoing:
            if not call.cancel_sent:
                call.cancel_sent = True
                self.layer.send_request(build_cancel(call.invite), self._destination(call.invite.uri), now)
            # Wait for the 487 (or a 2xx racing the CANCEL, which gets ACK + BYE).
        else:
            self.layer.send_response(make_response(call.invite, 486, to_tag=call.local_tag), now)
            self._close(call, "declined", by_remote=False)

    def send_info(self, body: bytes, content_type: str, now: float) -> bool:
        """INFO in the established call (SIP INFO DTMF: application/dtmf-relay); False without one."""
        call = self.call
        if call is None or call.state != "established" or call.dialog is None:
            return False
        info = call.dialog.create_request("INFO", local=self.local, branch=self.ids.branch(),
                                          headers=[("User-Agent", USER_AGENT)], body=body, content_type=content_type)
        self.layer.send_request(info, self._in_dialog_destination(call.dialog), now)
        return True

    # -- inputs ---------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.layer.receive_datagram(data, source, now)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        self.layer.handle_timer(now)
        call = self.call
        if call is not None and call.ok is not None and call.ok_next is not None and now >= call.ok_next:
            if now >= call.ok_deadline:
                call.ok_next = None
                self._send_bye(call, now, reason="no ACK for our 200")
            else:
                self.layer.send_response(call.ok, now)
                call.ok_interval = min(call.ok_interval * 2, self.timers.t2)
                call.ok_next = now + call.ok_interval
        if self._reg_refresh is not None and now >= self._reg_refresh:
            self.register(now)
        self._drain(now)

    def _drain(self, now: float) -> None:
        while (event := self.layer.next_event()) is not None:
            try:
                if isinstance(event, RequestReceived):
                    self._on_request(event, now)
                elif isinstance(event, AckReceived):
                    self._on_ack(event)
                elif isinstance(event, ResponseReceived):
                    self._on_response(event, now)
                elif isinstance(event, (Timeout, TransportError)):
                    self._on_failure(event.key, "timeout" if isinstance(event, Timeout) else "transport error", now)
                elif isinstance(event, MalformedMessage):
                    pass  # answered by the transaction layer where possible
            except (SipParseError, SdpParseError, LocalProtocolError):
                # A peer's message we cannot use is dropped; the transaction times out.
                continue

    # -- requests -------------------------------------------------------------------------

    def _on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        method = request.method
        call = self.call
        in_call = call is not None and call.call_id == request.call_id
        if method == "INVITE" and not request.to.tag:
            self._on_invite(request, now)
        elif method == "INVITE":             # re-INVITE: same media, new answer
            if not in_call or call.dialog is None:
                self.layer.send_response(make_response(request, 481), now)
                return
            call.dialog.receive_request(request)
            try:
                answer = self._answer(SessionDescription.parse(request.body)) if request.body else self.offer()
            except SdpParseError:
                self.layer.send_response(make_response(request, 488), now)
                return
            self.layer.send_response(make_response(
                request, 200, headers=[("Contact", str(self.contact())), ("Allow", ALLOW)],
                body=bytes(answer), content_type="application/sdp"), now)
        elif method == "BYE":
            if not in_call or call.dialog is None or request.from_.tag != call.dialog.remote_tag:
                self.layer.send_response(make_response(request, 481), now)
                return
            try:
                call.dialog.receive_request(request)
            except LocalProtocolError:
                pass  # BYEs crossed: ours is out already; answer theirs all the same
            self.layer.send_response(make_response(request, 200), now)
            self._close(call, "remote BYE", by_remote=True)
        elif method == "CANCEL":
            self.layer.send_response(make_response(request, 200), now)
            if in_call and not call.outgoing and call.state == "early":
                self.layer.send_response(make_response(call.invite, 487, to_tag=call.local_tag), now)
                self._close(call, "remote CANCEL", by_remote=True)
        elif method == "INFO" and in_call and call.dialog is not None and request.from_.tag == call.dialog.remote_tag:
            self.layer.send_response(make_response(request, 200, headers=[("Allow", ALLOW)]), now)
            if request.body:
                self._events.append(InfoReceived(call.call_id, request.content_type, request.body))
        elif method in ("OPTIONS", "INFO"):
            self.layer.send_response(make_response(request, 200, headers=[("Allow", ALLOW)]), now)
        else:
            self.layer.send_response(make_response(request, 405, headers=[("Allow", ALLOW)]), now)

    def _on_invite(self, invite: SipRequest, now: float) -> None:
        tag = self.ids.tag()
        if self.call is not None:
            self.layer.send_response(make_response(invite, 486, to_tag=tag), now)
            return
        try:
            offer = SessionDescription.parse(invite.body)
            self._media_of(self._answer(offer), prefer=self.codecs)
        except SdpParseError as exc:
            self.layer.send_response(make_response(invite, 488, to_tag=tag, headers=[("Warning", f'304 - "{exc}"')]), now)
            return
        try:
            dialog = Dialog.from_uas(invite, tag)
        except SipParseError as exc:
            self.layer.send_response(make_response(invite, exc.status, to_tag=tag), now)
            return
        call = _Call(call_id=invite.call_id, outgoing=False, invite=invite, dialog=dialog, state="early",
                     local_tag=tag, remote_sdp=offer)
        self.call = call
        self.layer.send_response(make_response(invite, 180, to_tag=tag,
                                               headers=[("Contact", str(self.contact()))]), now)
        self._events.append(IncomingCall(call.call_id, str(invite.from_.uri)))
        if self.auto_answer:
            self._answer_incoming(call, now)

    def _answer_incoming(self, call: _Call, now: float) -> None:
        assert call.remote_sdp is not None and call.dialog is not None
        answer = self._answer(call.remote_sdp)
        address, pt, codec, receive_map = self._media_of(answer, prefer=self.codecs)
        remote_address = call.remote_sdp.media_address(call.remote_sdp.audio())  # type: ignore[arg-type]
        call.ok = make_response(call.invite, 200, to_tag=call.local_tag,
                                headers=[("Contact", str(self.contact())), ("Allow", ALLOW),
                                         ("User-Agent", USER_AGENT)],
                                body=bytes(answer), content_type="application/sdp")
        self.layer.send_response(call.ok, now)
        call.ok_interval = self.timers.t1
        call.ok_next = now + call.ok_interval
        call.ok_deadline = now + 64 * self.timers.t1
        call.dialog.handle(DialogEvent.SUCCESS)
        call.state = "established"
        self._events.append(CallEstablished(call.call_id, remote_address or address, pt, codec, receive_map,
                                            outgoing=False))

    def _on_ack(self, event: AckReceived) -> None:
        call = self.call
        if call is not None and call.call_id == event.request.call_id:
            call.ok_next = None

    # -- responses ------------------------------------------------------------------------

    def _on_response(self, event: ResponseReceived, now: float) -> None:
        response = event.response
        if event.key == self._reg_key:
            self._on_register_response(response, now)
            return
        call = self.call
        if call is None or response.call_id != call.call_id:
            return
        method = response.cseq.method
        if method == "INVITE" and event.key == call.invite_key:
            self._on_invite_response(call, response, now)
        elif method == "BYE" and event.key == call.bye_key and response.status >= 200:
            self._close(call, "local BYE", by_remote=False)

    def _on_invite_response(self, call: _Call, response: SipResponse, now: float) -> None:
        status = response.status
        if status < 200:
            if status > 100 and not call.ringing_reported:
                call.ringing_reported = True
                if call.state == "calling":
                    call.state = "early"
                self._events.append(Ringing(call.call_id, status))
            return
        if status >= 300:
            if call.state not in ("closed",):
                self._close(call, f"{status} {response.reason}", by_remote=True)
            return
        # 2xx: (re-)ACK every one (RFC 6026); the first establishes the call.
        if call.dialog is None:
            call.dialog = Dialog.from_uac(call.invite, response)
        else:
            call.dialog.update_from_response(response)
        ack = call.dialog.create_ack(call.invite.cseq.seq, local=self.local, branch=self.ids.branch())
        self.layer.send_request(ack, self._in_dialog_destination(call.dialog), now)
        if call.state in ("established", "closing", "closed"):
            return
        if call.cancel_sent:
            self._send_bye(call, now, reason="cancelled")
            return
        try:
            answer = SessionDescription.parse(response.body)
            address, pt, codec, receive_map = self._media_of(answer, prefer=self.codecs)
        except SdpParseError as exc:
            self._send_bye(call, now, reason=f"bad SDP answer: {exc}")
            return
        call.remote_sdp = answer
        call.state = "established"
        self._events.append(CallEstablished(call.call_id, address, pt, codec, receive_map, outgoing=True))

    def _on_register_response(self, response: SipResponse, now: float) -> None:
        if response.status < 200:
            return
        self._reg_key = None
        if 200 <= response.status < 300:
            granted = None
            for contact in response.contacts:
                if isinstance(contact.uri, SipUri) and contact.uri.user == self.number and contact.expires is not None:
                    granted = contact.expires
            if granted is None:
                granted = response.expires if response.expires is not None else self._reg_expires
            self.registered = granted > 0
            if granted > 0:
                self._reg_refresh = now + max(1.0, granted / 2)
            self._events.append(Registered(granted))
        else:
            self.registered = False
            self._events.append(RegisterFailed(response.status, f"{response.status} {response.reason}"))

    def _on_failure(self, key: TransactionKey, what: str, now: float) -> None:
        if key == self._reg_key:
            self._reg_key = None
            self._events.append(RegisterFailed(None, what))
            return
        call = self.call
        if call is None:
            return
        if key == call.invite_key and call.state in ("calling", "early"):
            self._close(call, f"INVITE {what}", by_remote=False)
        elif key == call.bye_key:
            self._close(call, f"local BYE ({what})", by_remote=False)

    # -- helpers --------------------------------------------------------------------------

    def _in_dialog_destination(self, dialog: Dialog) -> Address:
        if dialog.route_set:
            return _address_of(dialog.route_set[0].uri)
        return _address_of(dialog.remote_target)

    def _send_bye(self, call: _Call, now: float, reason: str = "local BYE") -> None:
        assert call.dialog is not None
        call.ok_next = None
        bye = call.dialog.create_request("BYE", local=self.local, branch=self.ids.branch(),
                                         headers=[("User-Agent", USER_AGENT)])
        call.dialog.handle(DialogEvent.BYE)
        call.bye_key = self.layer.send_request(bye, self._in_dialog_destination(call.dialog), now)
        call.state = "closing"

    def _close(self, call: _Call, reason: str, *, by_remote: bool) -> None:
        established = call.dialog is not None and call.state in ("established", "closing")
        call.state = "closed"
        call.ok_next = None
        if call.dialog is not None and call.dialog.state is not DialogState.TERMINATED:
            call.dialog.state = DialogState.TERMINATED
        if self.call is call:
            self.call = None
        self._events.append(CallClosed(call.call_id, reason, by_remote, established))


# --------------------------------------------------------------------------------------------
# asyncio adapter


@dataclass(frozen=True)
class SoftphoneConfig:
    number: str
    line: Address | None = None          # the line side ("HOST", PORT); None: dial SIP URIs directly
    host: str = "127.0.0.1"
    sip_port: int = 0
    rtp_port: int = 0
    tone_hz: float | None = 1000.0       # None: send silence
    amplitude: float = 0.5
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    register: bool = False               # REGISTER with the line side at start
    register_expires: int = 3600
    auto_answer: bool = True
    ptime_ms: int = 20
    timers: TimerConfig = field(default_factory=TimerConfig)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if hasattr(transport, "max_size"):
            transport.max_size = 65536  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: ignore
        pass


class Softphone:
    """The asyncio softphone. Events are also kept in `events` (in order) for tests."""

    def __init__(self, config: SoftphoneConfig, *, rng: Callable[[int], bytes] = os.urandom) -> None:
        self.config = config
        self.rng = rng
        self.agent: PhoneAgent | None = None
        self.events: list[Event] = []
        self.media: RtpStream | None = None
        self.received = array("h")             # audio of every call so far
        self.last_closed: CallClosed | None = None
        self.established_at: float | None = None
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._media_task: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self._remote_media: Address | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> Softphone:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        c = self.config
        self._loop = asyncio.get_running_loop()
        sip_proto = _Udp(self._on_sip)
        self._sip, _ = await self._loop.create_datagram_endpoint(lambda: sip_proto, local_addr=(c.host, c.sip_port))
        rtp_proto = _Udp(self._on_rtp)
        try:
            self._rtp, _ = await self._loop.create_datagram_endpoint(lambda: rtp_proto, local_addr=(c.host, c.rtp_port))
        except OSError:
            self._sip.close()
            raise
        self.agent = PhoneAgent(c.number, host=c.host, sip_port=self.sip_address[1], rtp_port=self.rtp_address[1],
                                line=c.line, codecs=c.codecs, auto_answer=c.auto_answer,
                                register_expires=c.register_expires, timers=c.timers, rng=self.rng)
        if c.register:
            await self.register()

    async def close(self, timeout: float = 2.0) -> None:
        """Hang up a live call (waiting briefly for the BYE's answer), then close the sockets."""
        try:
            if self.agent is not None and self.agent.call is not None:
                try:
                    await self.hangup(timeout=timeout)
                except (CallFailed, asyncio.TimeoutError):
                    pass
        finally:
            self._stop_media()
            if self._timer is not None:
                self._timer.cancel()
            for transport in (self._sip, self._rtp):
                if transport is not None:
                    transport.close()
            self._sip = self._rtp = None

    @property
    def sip_address(self) -> Address:
        assert self._sip is not None, "not started"
        return self._sip.get_extra_info("sockname")[:2]

    @property
    def rtp_address(self) -> Address:
        assert self._rtp is not None, "not started"
        return self._rtp.get_extra_info("sockname")[:2]

    @property
    def uri(self) -> str:
        """Where another phone dials this one directly."""
        host, port = self.sip_address
        return f"sip:{self.config.number}@{host}:{port}"

    @property
    def in_call(self) -> bool:
        return self.agent is not None and self.agent.call is not None

    # -- API ------------------------------------------------------------------------------

    async def register(self, timeout: float = 5.0) -> Registered:
        assert self.agent is not None, "not started"
        start = len(self.events)
        self.agent.register(self._now())
        self._flush()
        event = await self.wait_for((Registered, RegisterFailed), timeout, after=start)
        if isinstance(event, RegisterFailed):
            raise CallFailed(f"REGISTER failed: {event.reason}")
        return event

    async def dial(self, target: str, timeout: float = 10.0) -> CallEstablished:
        """Call a number on the line side (or a `sip:` URI) and wait until it is answered."""
        assert self.agent is not None, "not started"
        start = len(self.events)
        self.agent.dial(target, self._now())
        self._flush()
        event = await self.wait_for((CallEstablished, CallClosed), timeout, after=start)
        if isinstance(event, CallClosed):
            raise CallFailed(f"call to {target} failed: {event.reason}")
        return event

    async def answer(self, timeout: float = 5.0) -> CallEstablished:
        assert self.agent is not None, "not started"
        start = len(self.events)
        self.agent.answer(self._now())
        self._flush()
        return await self.wait_for(CallEstablished, timeout, after=start)  # type: ignore[return-value]

    async def hangup(self, timeout: float = 5.0) -> CallClosed:
        assert self.agent is not None, "not started"
        if self.agent.call is None:
            if self.last_closed is None:
                raise CallFailed("no call to hang up")
            return self.last_closed
        start = len(self.events)
        self.agent.hangup(self._now())
        self._flush()
        return await self.wait_for(CallClosed, timeout, after=start)  # type: ignore[return-value]

    async def wait_established(self, timeout: float = 10.0, after: int = 0) -> CallEstablished:
        return await self.wait_for(CallEstablished, timeout, after=after)  # type: ignore[return-value]

    async def wait_closed(self, timeout: float = 10.0, after: int = 0) -> CallClosed:
        return await self.wait_for(CallClosed, timeout, after=after)  # type: ignore[return-value]

    async def wait_for(self, kinds: type | tuple[type, ...], timeout: float = 10.0, *, after: int = 0) -> Event:
        """The first event of one of `kinds` at index >= `after` in `events` (waiting for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[after:]:
                if isinstance(event, kinds):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = kinds.__name__ if isinstance(kinds, type) else "/".join(k.__name__ for k in kinds)
                raise asyncio.TimeoutError(f"{self.config.number}: no {names} within {timeout} s; "
                                           f"events so far: {[type(e).__name__ for e in self.events]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def save_recording(self, path: str | os.PathLike) -> None:
        write_wav(path, self.received)

    # -- plumbing -------------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_sip(self, data: bytes, source: Address) -> None:
        if self.agent is None:
            return
        self.agent.receive_datagram(data, source, self._now())
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        if self.agent is not None:
            self.agent.handle_timer(self._now())
            self._flush()

    def _on_rtp(self, data: bytes, source: Address) -> None:
        if self.media is not None:
            self.media.receive(data)

    def _flush(self) -> None:
        agent = self.agent
        assert agent is not None
        if self._sip is not None:
            for data, address in agent.datagrams_to_send():
                self._sip.sendto(data, address)
        while (event := agent.next_event()) is not None:
            self._on_event(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = agent.get_timer()
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, CallEstablished):
            self._start_media(event)
            self.established_at = self._now()
        elif isinstance(event, CallClosed):
            self._stop_media()
            self.last_closed = event
        self.events.append(event)
        self._changed.set()

    def _start_media(self, event: CallEstablished) -> None:
        self._stop_media()
        c = self.config
        r = self.rng(10)
        tone = ToneGenerator(c.tone_hz, c.amplitude) if c.tone_hz else None
        self.media = RtpStream(ssrc=int.from_bytes(r[:4], "big"), seq=int.from_bytes(r[4:6], "big"),
                               timestamp=int.from_bytes(r[6:10], "big"), send_pt=event.send_pt,
                               send_codec=event.send_codec, receive_map=event.receive_map, tone=tone,
                               ptime_ms=c.ptime_ms)
        self.media.received = self.received   # one recording across calls
        self._remote_media = event.remote_media
        self._media_task = asyncio.get_running_loop().create_task(self._send_media(self.media, event.remote_media))

    async def _send_media(self, media: RtpStream, destination: Address) -> None:
        interval = self.config.ptime_ms / 1000
        start = self._now()
        n = 0
        while self._rtp is not None:
            # Absolute deadlines: no drift, and a late wake-up catches up (at most 5 packets).
            due = int((self._now() - start) / interval) + 1
            for _ in range(min(5, max(0, due - n))):
                self._rtp.sendto(media.next_packet(), destination)
                n += 1
            if due - n > 5:
                n = due
            await asyncio.sleep(max(0.0, start + n * interval - self._now()))

    def _stop_media(self) -> None:
        if self._media_task is not None:
            self._media_task.cancel()
            self._media_task = None


# --------------------------------------------------------------------------------------------
# CLI


def _address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def _run(args: argparse.Namespace) -> int:
    listen = args.listen or ("127.0.0.1", 0)
    config = SoftphoneConfig(number=args.number, line=args.line, host=listen[0], sip_port=listen[1],
                             tone_hz=args.tone or None, amplitude=args.amplitude,
                             codecs=tuple(args.codecs.split(",")), register=args.register)
    report: dict = {"number": args.number}
    async with Softphone(config) as phone:
        report["sip"] = phone.uri
        print(json.dumps({"event": "ready", "uri": phone.uri, "rtp": "%s:%d" % phone.rtp_address}), flush=True)
        t0 = time.monotonic()
        if args.dial:
            try:
                established = await phone.dial(args.dial, timeout=args.timeout)
            except (CallFailed, asyncio.TimeoutError) as exc:
                report["error"] = str(exc)
                print(json.dumps(report), flush=True)
                return 1
        else:
            try:
                established = await phone.wait_established(timeout=args.timeout)
            except asyncio.TimeoutError as exc:
                report["error"] = str(exc)
                print(json.dumps(report), flush=True)
                return 1
        report["setup_ms"] = round((time.monotonic() - t0) * 1000, 1)
        report["codec"] = established.send_codec
        try:
            closed = await phone.wait_closed(timeout=args.duration)
        except asyncio.TimeoutError:
            closed = await phone.hangup()
        report["closed"] = closed.reason
        media = phone.media
        if media is not None:
            report.update(packets_sent=media.packets_sent, packets_received=media.packets_received,
                          lost=media.lost)
        report["seconds_received"] = round(len(phone.received) / SAMPLE_RATE, 2)
        if args.record:
            phone.save_recording(args.record)
            report["recording"] = args.record
    ok = True
    if args.check:
        verdict = ToneCheck(args.check).check(phone.received)
        report["check"] = str(verdict)
        ok = verdict.ok
    print(json.dumps(report), flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ctad.softphone",
                                description="kerbtel's built-in softphone: a tone player and recorder for a CTA's line side")
    p.add_argument("--line", type=_address, help="the line side HOST:PORT (registrar; requests go there)")
    p.add_argument("--number", required=True, help="this phone's number (SIP user part)")
    p.add_argument("--dial", metavar="M", help="dial number M on the line side (or a sip: URI) instead of waiting for a call")
    p.add_argument("--tone", type=float, default=1000.0, metavar="HZ", help="tone to send (0: silence; default 1000)")
    p.add_argument("--amplitude", type=float, default=0.5, help="tone peak as a fraction of full scale (default 0.5)")
    p.add_argument("--record", metavar="FILE", help="write the received audio to this WAV file")
    p.add_argument("--duration", type=float, default=5.0, metavar="S", help="hang up after S seconds of call (default 5)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the call to be set up (default 30)")
    p.add_argument("--listen", type=_address, help="bind SIP here (default 127.0.0.1:0)")
    p.add_argument("--codecs", default="PCMU,PCMA", help="offered/accepted codecs in order (default PCMU,PCMA)")
    p.add_argument("--register", action="store_true", help="REGISTER with the line side first")
    p.add_argument("--check", type=float, metavar="HZ", help="exit 1 unless the received audio is a HZ tone")
    args = p.parse_args(argv)
    if args.line is None and (args.register or (args.dial and not args.dial.startswith("sip"))):
        p.error("--line is needed to register or to dial a number")
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
