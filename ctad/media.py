"""The per-call media relay of a CTA: line leg (plain RTP) <-> network leg (SRTP or 3DES_CBC_SEED).

A CTA sits between its local softphone and the remote CTA. For every call it owns two legs:

    softphone  --RTP/RTCP-->  [line leg | MediaRelay | network leg]  --SRTP/SRTCP-->  remote CTA
               <--RTP/RTCP--                                           <--SRTP/SRTCP--

Layers, aioquic style:

- `MediaRelay` (sans I/O): `from_line(data, source, now)`, `from_line_rtcp(...)` and
  `from_network(...)` each take one datagram and return what to send, `(port, datagram,
  destination)` with `port` one of `LINE_RTP`, `LINE_RTCP`, `NETWORK`, or None when the datagram
  was dropped (and counted). It never reads a clock or touches a socket; `now` (monotonic
  seconds) only paces the debug lines about drops.
- `MediaSession`: the asyncio adapter. Three UDP sockets per call (line RTP, line RTCP = RTP + 1,
  network), small reads (`transport.max_size` = 2048 on the default loop, see peers.md), works
  the same on uvloop. `start()` / `stop()` / `stats()`, and the two SDP rewrites below.

Ports. Line leg: RTP on an even port P and RTCP on P + 1 (RFC 3550 11), what softphones do by
default (baresip with `rtcp_mux no`), also announced as `a=rtcp:P+1` (RFC 3605); RTCP muxed onto
the RTP port by the phone is accepted too (RFC 5761 4 demultiplexing) but never offered. Network
leg: one port with rtcp-mux (RFC 5761): both ends are kerbtel CTAs, so there is no legacy peer to
please, and one port per call halves the sockets, firewall pinholes and NAT bindings. SRTCP is
told from SRTP by the packet type in byte 1, which SRTP leaves in clear. The legacy 3DES mode
encrypts whole packets (byte 1 included) and the seed defines it for RTP only: in that mode RTCP
is not carried (counted as `rtcp_not_carried`).

Sources ("latching"). Nothing is learned from traffic: the line leg accepts RTP only from the
address and port in the softphone's SDP (RTCP from its `a=rtcp` port or RTP + 1, or muxed from
the RTP address), and the network leg only from the address and port in the remote CTA's SDP.
Everything else is dropped and counted (`line_wrong_source`, `network_wrong_source`), as is
traffic that arrives before the SDP named a peer (`no_line_peer`, `no_network_peer`). Addresses
are compared as IP literals (normalised with `ipaddress`); the call engine resolves names.

Payload. Passed through untouched: no transcoding, no payload-type filtering (PCMU, PCMA,
telephone-event, anything the phones negotiated end to end). SRTP encrypts the payload and keeps
the RTP header (sequence number, timestamp, SSRC, marker, payload type) as the phone sent it; the
far relay returns the identical RTP packet. The 3DES mode may add RFC 3550 padding on the wire and
removes it again.

Failures. Authentication, replay and malformed packets are counted per reason (`drops`) and
logged at debug level, aggregated: the first drop of a reason is logged at once, then at most one
line per reason every `log_interval` seconds carrying the count since the previous line; a flood
of forged packets costs counters, not log lines. No key material is ever logged or repr-ed.

What the call engine hands over per call (see `MediaRelay.for_call`): the call id, the CTA's role
("A" calls, "B" is called), the profile name, either the `CallMediaKeys` from
`common.srtp.derive_media_keys` or the CTA-to-CTA sub-key and SPI, and the two SDP bodies as they
arrive (the phone's and the remote CTA's), which also set the peers. The keys may come later than
the SDP (`set_keys` / `set_subkey`): the calling CTA must put its network address into the INVITE
before its SC delivers the sub-key; until then every packet is dropped as `no_keys`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import random
import socket
from dataclasses import dataclass
from typing import Literal

from common.logsetup import get_logger
from common.rtp_3des import Legacy3desRx, Legacy3desTx
from common.sip.sdp import SessionDescription
from common.srtp import (
    DEFAULT_PROFILE,
    LEGACY_3DES,
    REPLAY_WINDOW,
    Backend,
    CallMediaKeys,
    MediaKeys,
    SrtpAuthError,
    SrtpError,
    SrtpExhausted,
    SrtpReplayError,
    SrtpReuseError,
    SrtpSsrcError,
    SrtpRx,
    SrtpTx,
    derive_media_keys,
    profile_for,
)
from ctad.sdes import LineSdes, LineSrtpMode

__all__ = [
    "LINE_RTP",
    "LINE_RTCP",
    "NETWORK",
    "MAX_DATAGRAM",
    "PLAINTEXT_BASELINE",
    "MediaPeer",
    "MediaRelay",
    "MediaSession",
    "media_peer",
    "rewrite_sdp",
    "sdp_for_line",
    "sdp_for_network",
]

Address = tuple[str, int]
Role = Literal["A", "B"]
Output = tuple[int, bytes, Address]

LINE_RTP, LINE_RTCP, NETWORK = 0, 1, 2  # where an output datagram leaves (index into the adapter's transports)
PORT_NAMES = ("line_rtp", "line_rtcp", "network")
MAX_DATAGRAM = 2048  # read size: a PCMU packet is 172 bytes, an Ethernet MTU 1500 (peers.md: 256 KiB reads cost 3x)
LOG_INTERVAL = 10.0  # seconds between two aggregated debug lines of one drop reason
PLAINTEXT_BASELINE = "PLAINTEXT_BASELINE"  # benchmark mode only (MediaRelay.plaintext_baseline)
PENDING = "pending"  # the profile shown before the keys arrived
NETWORK_PROTO = "RTP/SAVP"  # what the CTA-to-CTA SDP says (keys come from the SCs, not from SDP)
LINE_PROTO = "RTP/AVP"  # plain RTP towards the softphone

# Drop reasons (counter names). Line leg, then network leg.
DROP_REASONS = (
    "no_keys",                # the sub-key has not been delivered yet (either direction)
    "line_wrong_source",      # not from the softphone's SDP address
    "no_network_peer",        # the remote CTA's SDP has not arrived yet
    "line_malformed",         # not RTP/RTCP version 2, or a header that does not fit
    "line_duplicate",         # an RTP index we protected already (SRTP would reuse keystream)
    "line_too_many_ssrc",     # more SSRCs than the context tracks
    "rtcp_not_carried",       # RTCP in the legacy 3DES mode, which carries RTP only
    "tx_exhausted",           # a stream used its whole index space (rekey)
    "network_wrong_source",   # not from the remote CTA's SDP address
    "no_line_peer",           # the softphone's SDP has not arrived yet
    "network_auth",           # tag / MAC does not verify
    "network_replay",         # replayed, or older than the replay window
    "network_malformed",      # structurally not SRTP/SRTCP/3DES_CBC_SEED
    "network_too_many_ssrc",  # more SSRCs than the context tracks
    "line_auth",              # SDES-SRTP line leg: the phone's packet does not verify
    "line_replay",            # SDES-SRTP line leg: replayed by the phone side
)


def _norm_host(host: str) -> str:
    """IP literals in one textual form ("::0001" -> "::1"); other names are left alone."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).compressed
    except ValueError:
        return host


def _norm(address: Address | None) -> Address | None:
    return None if address is None else (_norm_host(address[0]), int(address[1]))


def _text(address: Address | None) -> str:
    if address is None:
        return "-"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------------------------
# SDP on the two legs


@dataclass(frozen=True)
class MediaPeer:
    """Where one leg's peer sends from and receives: RTP address and RTCP address."""

    rtp: Address
    rtcp: Address
    rtcp_mux: bool = False


_UNSPECIFIED = ("0.0.0.0", "::")
# Attributes that describe the other leg's transport or keys; never carried across the relay.
_LEG_ATTRIBUTES = ("rtcp", "rtcp-mux", "crypto", "candidate", "ice-ufrag", "ice-pwd", "ice-options",
                   "end-of-candidates", "remote-candidates", "fingerprint", "setup")


def media_peer(sdp: SessionDescription | bytes) -> MediaPeer | None:
    """The audio stream's RTP/RTCP addresses from an offer or answer (None: rejected, on hold with
    c=0.0.0.0, or no audio). RTCP: `a=rtcp:PORT [IN IP4 ADDR]` (RFC 3605), else the RTP address
    itself under `a=rtcp-mux`, else RTP port + 1."""
    if isinstance(sdp, (bytes, bytearray)):
        sdp = SessionDescription.parse(bytes(sdp))
    audio = sdp.audio()
    if audio is None or audio.port == 0:
        return None
    address = sdp.media_address(audio)
    if address is None or _norm_host(address[0]) in _UNSPECIFIED:
        return None
    rtp = _norm(address)
    assert rtp is not None
    mux = "rtcp-mux" in audio.attributes
    rtcp = (rtp[0], rtp[1]) if mux else (rtp[0], rtp[1] + 1)
    values = audio.attribute("rtcp")
    if values:
        parts = values[0].split()
        if parts and parts[0].isdigit() and 0 < int(parts[0]) <= 65535:
            host = parts[3] if len(parts) >= 4 and parts[1] == "IN" else rtp[0]
            rtcp = (_norm_host(host), int(parts[0]))
    return MediaPeer(rtp, rtcp, mux)


def rewrite_sdp(sdp: SessionDescription | bytes, host: str, port: int, *, rtcp_port: int | None = None,
                rtcp_mux: bool = False, proto: str | None = None) -> SessionDescription:
    """A copy of `sdp` whose audio stream points at (host, port) of the relay.

    Per-leg transport attributes (a=rtcp, a=rtcp-mux, a=crypto, ICE, DTLS) are removed and our own
    added (`a=rtcp:N` or `a=rtcp-mux`); codecs, payload types, rtpmap/fmtp, ptime and direction are
    kept as they are (the relay does not transcode, so codec negotiation stays end to end). A
    rejected stream (port 0) stays rejected; a stream on hold with c=0.0.0.0 keeps that address.
    """
    copy = SessionDescription.parse(bytes(sdp))
    audio = copy.audio()
    if audio is None or audio.port == 0:
        return copy
    address = copy.media_address(audio)
    on_hold = address is not None and _norm_host(address[0]) in _UNSPECIFIED
    copy.set_media_address(audio, address[0] if on_hold and address else host, port)
    audio.attributes = [a for a in audio.attributes if a.split(":", 1)[0] not in _LEG_ATTRIBUTES]
    if proto is not None:
        audio.proto = proto
    if rtcp_mux:
        audio.attributes.append("rtcp-mux")
    elif rtcp_port is not None:
        audio.attributes.append(f"rtcp:{rtcp_port}")
    return copy


def sdp_for_network(phone_sdp: SessionDescription | bytes, network: Address) -> SessionDescription:
    """The softphone's offer/answer as the remote CTA sees it: our network address, rtcp-mux."""
    return rewrite_sdp(phone_sdp, network[0], network[1], rtcp_mux=True, proto=NETWORK_PROTO)


def sdp_for_line(cta_sdp: SessionDescription | bytes, line: Address, line_rtcp_port: int) -> SessionDescription:
    """The remote CTA's offer/answer as our softphone sees it: our line address, RTCP on P + 1."""
    return rewrite_sdp(cta_sdp, line[0], line[1], rtcp_port=line_rtcp_port, proto=LINE_PROTO)


# --------------------------------------------------------------------------------------------
# The relay, sans I/O


class _Plain:
    """The baseline 'transform' (benchmark only): the datagram as it is."""

    backend = "none"
    packets = rtcp_packets = 0

    def protect(self, data: bytes) -> bytes:
        return data

    unprotect = protect_rtcp = unprotect_rtcp = protect


class _NoKeysError(SrtpError):
    """The relay has no keys yet."""


class _NoKeys:
    """The transform of a relay whose keys have not arrived: refuses everything."""

    backend = "-"

    def protect(self, data: bytes) -> bytes:
        raise _NoKeysError("no media keys yet")

    unprotect = protect_rtcp = unprotect_rtcp = protect


_NO_KEYS = _NoKeys()
_RX_REASONS = ((_NoKeysError, "no_keys"), (SrtpAuthError, "network_auth"), (SrtpReplayError, "network_replay"),
               (SrtpSsrcError, "network_too_many_ssrc"))
_TX_REASONS = ((_NoKeysError, "no_keys"), (SrtpReuseError, "line_duplicate"), (SrtpSsrcError, "line_too_many_ssrc"))


class MediaRelay:
    """One call's media path between the line leg and the network leg (sans I/O; module doc).

    `keys` are both directions' media keys for the call (`derive_media_keys(subkey, profile,
    spi)`); `role` picks ours: A sends with A-to-B and receives with B-to-A, B the reverse.
    `backend` chooses the SRTP transform (None: libsrtp when installed, see common/srtp.py);
    `legacy_mac` turns the 3DES_CBC_SEED MAC on (both CTAs must agree; on by default).
    Peers are set by `set_line_peer`/`set_network_peer` or from SDP with `accept_line_sdp` /
    `accept_network_sdp`.

    Counters: `encrypted_packets`/`encrypted_bytes` (line -> network, bytes as sent on the wire),
    `decrypted_packets`/`decrypted_bytes` (network -> line, bytes as delivered to the phone), the
    same for RTCP (`*_rtcp_*`), and `drops` by reason (`DROP_REASONS`). `stats()` has them all.
    """

    __slots__ = (
        "call_id", "role", "profile", "backend", "log", "log_interval", "_tx", "_rx", "_mode", "_options",
        "_line_rtp", "_line_rtcp", "_network", "_line_in", "_line_out", "line_srtp",
        "encrypted_packets", "encrypted_bytes", "encrypted_rtcp_packets", "encrypted_rtcp_bytes",
        "decrypted_packets", "decrypted_bytes", "decrypted_rtcp_packets", "decrypted_rtcp_bytes",
        "drops", "_logged", "_log_due", "_last_error",
    )

    def __init__(self, call_id: str, role: Role, keys: CallMediaKeys | None = None, *, backend: Backend | None = None,
                 legacy_mac: bool = True, replay_window: int = REPLAY_WINDOW, max_streams: int = 16,
                 line_peer: MediaPeer | Address | None = None, network_peer: Address | None = None,
                 log_interval: float = LOG_INTERVAL, log=None) -> None:
        if role not in ("A", "B"):
            raise ValueError(f"CTA role {role!r} is not 'A' or 'B'")
        self.call_id = call_id
        self.role = role
        self._options = (backend, legacy_mac, replay_window, max_streams)
        self.profile = PENDING
        self.backend = "-"
        self._mode = "pending"
        self._tx = self._rx = _NO_KEYS
        self.log_interval = log_interval
        self.log = log if log is not None else get_logger("ctad.media", call_id=call_id, role=role)
        self._line_rtp = self._line_rtcp = self._network = None
        self._line_in = self._line_out = None  # SDES-SRTP on the line leg (ctad/sdes.py), else plain
        self.line_srtp: str | None = None
        self.encrypted_packets = self.encrypted_bytes = self.encrypted_rtcp_packets = self.encrypted_rtcp_bytes = 0
        self.decrypted_packets = self.decrypted_bytes = self.decrypted_rtcp_packets = self.decrypted_rtcp_bytes = 0
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self._logged: dict[str, int] = {}
        self._log_due: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        if line_peer is not None:
            self.set_line_peer(line_peer)
        if network_peer is not None:
            self.set_network_peer(network_peer)
        if keys is not None:
            self.set_keys(keys)

    def set_keys(self, keys: CallMediaKeys) -> None:
        """Key the relay (once): until then every packet is dropped as `no_keys`.

        The calling CTA needs this split: its network address goes into the INVITE's SDP before
        the sub-key arrives (the SC delivers it to A only after B acknowledged it)."""
        tx_keys, rx_keys = keys.for_cta(self.role)
        self.set_direction_keys(keys.profile, tx_keys, rx_keys)

    def set_direction_keys(self, profile_name: str, tx_keys: MediaKeys, rx_keys: MediaKeys) -> None:
        """`set_keys` with this CTA's two directions already picked (ctad.calls' `CallKeysReady`
        carries `media_profile`, `media_tx`, `media_rx`)."""
        if self._mode != "pending":
            raise ValueError(f"media relay of call {self.call_id!r} is keyed already (a rekey is a new relay)")
        if tx_keys.profile != profile_name or rx_keys.profile != profile_name:
            raise ValueError(f"media keys are for {tx_keys.profile}/{rx_keys.profile}, the call negotiated {profile_name}")
        backend, legacy_mac, replay_window, max_streams = self._options
        if profile_name == LEGACY_3DES:
            tx = Legacy3desTx(tx_keys.master_key, tx_keys.master_salt if legacy_mac else None)
            rx = Legacy3desRx(rx_keys.master_key, rx_keys.master_salt if legacy_mac else None,
                              replay_window=replay_window, max_streams=max_streams)
            mode, name = "3des", "python"
        else:
            profile = profile_for(profile_name)
            tx = SrtpTx(profile, tx_keys.master_key, tx_keys.master_salt, backend=backend,
                        replay_window=replay_window, max_streams=max_streams)
            rx = SrtpRx(profile, rx_keys.master_key, rx_keys.master_salt, backend=backend,
                        replay_window=replay_window, max_streams=max_streams)
            mode, name = "srtp", tx.backend
        self._tx, self._rx, self._mode, self.profile, self.backend = tx, rx, mode, profile_name, name

    def set_line_srtp(self, phone_keys: MediaKeys, our_keys: MediaKeys) -> None:
        """SDES-SRTP on the line leg: what the phone sends is decrypted with its key, what we send
        it encrypted with ours (both from the SDP offer/answer with the phone)."""
        backend, _legacy_mac, replay_window, max_streams = self._options
        profile = profile_for(phone_keys.profile)
        self._line_in = SrtpRx(profile, phone_keys.master_key, phone_keys.master_salt, backend=backend,
                               replay_window=replay_window, max_streams=max_streams)
        self._line_out = SrtpTx(profile, our_keys.master_key, our_keys.master_salt, backend=backend,
                                replay_window=replay_window, max_streams=max_streams)
        self.line_srtp = profile.name

    def set_subkey(self, subkey: bytes, spi: int, profile: str | None = None) -> None:
        """`set_keys(derive_media_keys(subkey, profile, spi))`, profile defaulting to the default."""
        self.set_keys(derive_media_keys(subkey, profile or DEFAULT_PROFILE.name, spi))

    @property
    def keyed(self) -> bool:
        return self._mode != "pending"

    @classmethod
    def for_call(cls, call_id: str, role: Role, *, profile: str | None = None,
                 keys: CallMediaKeys | None = None, subkey: bytes | None = None, spi: int | None = None,
                 **kwargs) -> MediaRelay:
        """What the call engine calls: `keys`, or (`subkey`, `spi`) from the SC's delivery, or
        neither (keys later with `set_keys`/`set_subkey`). `profile` is the call's media profile
        (default AES_CM_128_HMAC_SHA1_80; with `keys` it defaults to theirs and must match)."""
        if (subkey is None) != (spi is None):
            raise ValueError("MediaRelay.for_call needs both the sub-key and the SPI")
        if keys is None and subkey is not None:
            keys = derive_media_keys(subkey, profile or DEFAULT_PROFILE.name, spi)  # type: ignore[arg-type]
        elif keys is not None and profile is not None and keys.profile != profile:
            raise ValueError(f"media keys are for {keys.profile}, the call negotiated {profile}")
        return cls(call_id, role, keys, **kwargs)

    @classmethod
    def plaintext_baseline(cls, call_id: str = "baseline", role: Role = "A", **kwargs) -> MediaRelay:
        """The same relay forwarding without any crypto: the benchmark's baseline, never a call mode."""
        self = cls(call_id, role, None, **kwargs)
        self._tx = self._rx = _Plain()
        self._mode, self.profile, self.backend = "plain", PLAINTEXT_BASELINE, "none"
        return self

    def __repr__(self) -> str:  # never key material
        return (f"MediaRelay({self.call_id!r}, role={self.role}, {self.profile}, backend={self.backend}, "
                f"line={_text(self._line_rtp)}, network={_text(self._network)})")

    # -- peers --------------------------------------------------------------------------------

    @property
    def line_peer(self) -> MediaPeer | None:
        if self._line_rtp is None:
            return None
        return MediaPeer(self._line_rtp, self._line_rtcp, self._line_rtcp == self._line_rtp)

    @property
    def network_peer(self) -> Address | None:
        return self._network

    def set_line_peer(self, peer: MediaPeer | Address) -> None:
        """The softphone's RTP (and RTCP) address, as its SDP named it."""
        if not isinstance(peer, MediaPeer):
            rtp = _norm(peer)
            assert rtp is not None
            peer = MediaPeer(rtp, (rtp[0], rtp[1] + 1))
        self._line_rtp, self._line_rtcp = _norm(peer.rtp), _norm(peer.rtcp)

    def set_network_peer(self, address: Address) -> None:
        """The remote CTA's media address, as its SDP named it (RTP and SRTCP, rtcp-mux)."""
        self._network = _norm(address)

    def accept_line_sdp(self, phone_sdp: SessionDescription | bytes) -> MediaPeer | None:
        """Take the softphone's offer or answer: its audio address becomes the line peer (None:
        rejected or on hold; the old peer is kept)."""
        peer = media_peer(phone_sdp)
        if peer is not None:
            self.set_line_peer(peer)
        return peer

    def accept_network_sdp(self, cta_sdp: SessionDescription | bytes) -> Address | None:
        """Take the remote CTA's offer or answer: its audio address becomes the network peer."""
        peer = media_peer(cta_sdp)
        if peer is not None:
            self.set_network_peer(peer.rtp)
        return None if peer is None else peer.rtp

    # -- datagrams ----------------------------------------------------------------------------

    def from_line(self, data: bytes, source: Address, now: float) -> Output | None:
        """A datagram on the line RTP port: RTP (or RTCP muxed by the phone) -> the network leg."""
        if source != self._line_rtp:
            return self._drop("line_wrong_source", now, source)
        if len(data) > 1 and 192 <= data[1] <= 223:  # RFC 5761 4: RTCP muxed on the RTP port
            return self._line_rtcp_packet(data, now)
        destination = self._network
        if destination is None:
            return self._drop("no_network_peer", now, source)
        if self._line_in is not None:
            try:
                data = self._line_in.unprotect(data)
            except SrtpError as exc:
                return self._line_error(exc, now, source)
        try:
            out = self._tx.protect(data)
        except SrtpError as exc:
            return self._tx_error(exc, now, source)
        except SrtpExhausted as exc:
            return self._drop("tx_exhausted", now, source, exc)
        self.encrypted_packets += 1
        self.encrypted_bytes += len(out)
        return NETWORK, out, destination

    def from_line_rtcp(self, data: bytes, source: Address, now: float) -> Output | None:
        """A datagram on the line RTCP port (RTP + 1) -> SRTCP on the network leg."""
        if source != self._line_rtcp and source != self._line_rtp:
            return self._drop("line_wrong_source", now, source)
        return self._line_rtcp_packet(data, now)

    def _line_rtcp_packet(self, data: bytes, now: float) -> Output | None:
        if self._mode == "3des":
            return self._drop("rtcp_not_carried", now, self._line_rtp)
        destination = self._network
        if destination is None:
            return self._drop("no_network_peer", now, self._line_rtp)
        if self._line_in is not None:
            try:
                data = self._line_in.unprotect_rtcp(data)
            except SrtpError as exc:
                return self._line_error(exc, now, self._line_rtcp)
        try:
            out = self._tx.protect_rtcp(data)
        except SrtpError as exc:
            return self._tx_error(exc, now, self._line_rtcp)
        except SrtpExhausted as exc:
            return self._drop("tx_exhausted", now, self._line_rtcp, exc)
        self.encrypted_rtcp_packets += 1
        self.encrypted_rtcp_bytes += len(out)
        return NETWORK, out, destination

    def from_network(self, data: bytes, source: Address, now: float) -> Output | None:
        """A datagram on the network port: SRTP/SRTCP (rtcp-mux) or 3DES_CBC_SEED -> the phone."""
        if source != self._network:
            return self._drop("network_wrong_source", now, source)
        destination = self._line_rtp
        if destination is None:
            return self._drop("no_line_peer", now, source)
        if self._mode != "3des" and len(data) > 1 and 192 <= data[1] <= 223:
            try:
                out = self._rx.unprotect_rtcp(data)
            except SrtpError as exc:
                return self._rx_error(exc, now, source)
            self.decrypted_rtcp_packets += 1
            self.decrypted_rtcp_bytes += len(out)
            if self._line_out is not None:
                out = self._line_out.protect_rtcp(out)
            return LINE_RTCP, out, self._line_rtcp
        try:
            out = self._rx.unprotect(data)
        except SrtpError as exc:
            return self._rx_error(exc, now, source)
        self.decrypted_packets += 1
        self.decrypted_bytes += len(out)
        if self._line_out is not None:
            try:
                out = self._line_out.protect(out)
            except (SrtpError, SrtpExhausted) as exc:  # a duplicate from the network leg passed its replay check
                return self._drop("line_duplicate", now, source, exc)
        return LINE_RTP, out, destination

    # -- drops and their (aggregated) log lines -------------------------------------------------

    def _tx_error(self, exc: SrtpError, now: float, source) -> None:
        for kind, reason in _TX_REASONS:
            if isinstance(exc, kind):
                return self._drop(reason, now, source, exc)
        return self._drop("line_malformed", now, source, exc)

    def _line_error(self, exc: SrtpError, now: float, source) -> None:
        reason = "line_replay" if isinstance(exc, SrtpReplayError) else \
            "line_auth" if isinstance(exc, SrtpAuthError) else "line_malformed"
        return self._drop(reason, now, source, exc)

    def _rx_error(self, exc: SrtpError, now: float, source) -> None:
        for kind, reason in _RX_REASONS:
            if isinstance(exc, kind):
                return self._drop(reason, now, source, exc)
        return self._drop("network_malformed", now, source, exc)

    def _drop(self, reason: str, now: float, source, exc: BaseException | None = None) -> None:
        total = self.drops[reason] = self.drops.get(reason, 0) + 1
        if exc is not None:
            self._last_error[reason] = str(exc)
        due = self._log_due.get(reason)
        if due is None or now >= due:
            self._log_due[reason] = now + self.log_interval
            self._emit(reason, total, source)
        return None

    def _emit(self, reason: str, total: int, source) -> None:
        since = total - self._logged.get(reason, 0)
        self._logged[reason] = total
        fields = {"reason": reason, "total": total, "since_last": since, "source": _text(source)}
        if reason in self._last_error:
            fields["error"] = self._last_error[reason]
        self.log.debug("media dropped", **fields)

    def flush_log(self) -> None:
        """Log the drops counted since each reason's last line (at stop, so none go unreported)."""
        for reason, total in self.drops.items():
            if total > self._logged.get(reason, 0):
                self._emit(reason, total, None)

    # -- statistics ---------------------------------------------------------------------------

    def stats(self) -> dict:
        rx = self._rx
        return {
            "call_id": self.call_id,
            "role": self.role,
            "profile": self.profile,
            "backend": self.backend,
            "line_srtp": self.line_srtp,
            "line_peer": _text(self._line_rtp),
            "network_peer": _text(self._network),
            "encrypted_packets": self.encrypted_packets,
            "encrypted_bytes": self.encrypted_bytes,
            "encrypted_rtcp_packets": self.encrypted_rtcp_packets,
            "encrypted_rtcp_bytes": self.encrypted_rtcp_bytes,
            "decrypted_packets": self.decrypted_packets,
            "decrypted_bytes": self.decrypted_bytes,
            "decrypted_rtcp_packets": self.decrypted_rtcp_packets,
            "decrypted_rtcp_bytes": self.decrypted_rtcp_bytes,
            "auth_failures": getattr(rx, "auth_failures", 0),
            "replay_failures": getattr(rx, "replay_failures", 0),
            "drops": {k: v for k, v in self.drops.items() if v},
        }


# --------------------------------------------------------------------------------------------
# The asyncio adapter


class _Leg(asyncio.DatagramProtocol):
    """One socket of a session: feeds its datagrams to one relay input, sends what comes out."""

    def __init__(self, session: MediaSession, handler, v6: bool) -> None:
        self.session = session
        self.handler = handler
        self.v6 = v6
        self.transport: asyncio.DatagramTransport | None = None
        self.send_errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if hasattr(transport, "max_size"):  # the default loop reads 256 KiB per datagram otherwise
            transport.max_size = MAX_DATAGRAM  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr) -> None:
        session = self.session
        out = self.handler(data, addr[:2] if self.v6 else addr, session.time())
        if out is not None:
            transport = session.transports[out[0]]
            if transport is not None:
                transport.sendto(out[1], out[2])

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable from a peer not listening (yet)
        self.send_errors += 1


def bind_udp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_udp_in_range(host: str, port_range: tuple[int, int]) -> socket.socket:
    """One socket on a free port of `port_range` (inclusive), probing from a random start."""
    low, high = port_range
    start = random.randint(low, high)
    for port in itertools.chain(range(start, high + 1), range(low, start)):
        try:
            return bind_udp(host, port)
        except OSError:
            continue
    raise OSError(f"no free UDP port on {host} in {low}-{high}")


def _bind_pair_in_range(host: str, port_range: tuple[int, int]) -> tuple[socket.socket, socket.socket]:
    """An even/odd RTP/RTCP pair inside `port_range`, probing from a random even start."""
    low, high = port_range
    first = low + (low % 2)
    start = random.randrange(first, high, 2) if high > first else first
    for port in itertools.chain(range(start, high, 2), range(first, start, 2)):
        try:
            return _bind_pair(host, port)
        except OSError:
            continue
    raise OSError(f"no free even/odd UDP port pair on {host} in {low}-{high}")


def _bind_pair(host: str, port: int, attempts: int = 64) -> tuple[socket.socket, socket.socket]:
    """RTP on an even port P and RTCP on P + 1 (RFC 3550 11); `port` 0 probes for a free pair."""
    if port:
        rtp = bind_udp(host, port)
        try:
            return rtp, bind_udp(host, port + 1)
        except OSError:
            rtp.close()
            raise
    for _ in range(attempts):
        rtp = bind_udp(host, 0)
        p = rtp.getsockname()[1]
        if p % 2 == 0 and p < 65535:
            try:
                return rtp, bind_udp(host, p + 1)
            except OSError:
                pass
        rtp.close()
    raise OSError(f"no free even/odd UDP port pair on {host} after {attempts} attempts")


class MediaSession:
    """The asyncio adapter of one `MediaRelay`: line RTP + RTCP sockets and the network socket.

        relay = MediaRelay.for_call(call_id, "A")              # caller: keys come later
        session = MediaSession(relay, line_host="127.0.0.1", network_host=cta_media_address)
        await session.start()
        body_to_sc = session.line_to_network_sdp(phone_offer)      # INVITE towards the remote CTA
        relay.set_subkey(subkey, spi, profile)                     # when the SC delivers it
        body_to_phone = session.network_to_line_sdp(remote_answer)  # 200 OK towards the phone
        ...
        await session.stop()      # logs one summary line with the counters

    `line_port` (even, RTCP on +1) and `network_port` default to 0: a free port, from `port_range`
    when given (the operator's firewall range). Works on the
    default loop and on uvloop; one loop owns a session (the relay is not thread-safe).
    """

    def __init__(self, relay: MediaRelay, *, line_host: str = "127.0.0.1", network_host: str = "127.0.0.1",
                 line_port: int = 0, network_port: int = 0, port_range: tuple[int, int] | None = None,
                 line_srtp: LineSrtpMode = "optional") -> None:
        self.relay = relay
        self.line_srtp = line_srtp  # SDES with the phone: off | optional (answer it) | sdes (offer it too)
        self.line_sdes: LineSdes | None = None
        self._first_sdp: str | None = None  # "phone" (it offered) or "network" (we offer to it)
        self.port_range = port_range  # ports 0 take free ones from here ([media] port_min/port_max)
        self.line_host = line_host
        self.network_host = network_host
        self.line_port = line_port
        self.network_port = network_port
        self.transports: list[asyncio.DatagramTransport | None] = [None, None, None]
        self._legs: list[_Leg] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.time = None  # the loop's clock, bound at start()

    async def __aenter__(self) -> MediaSession:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("media session already started")
        loop = self._loop = asyncio.get_running_loop()
        self.time = loop.time
        ranged = self.port_range is not None
        if ranged and not self.line_port:
            rtp, rtcp = _bind_pair_in_range(self.line_host, self.port_range)
        else:
            rtp, rtcp = _bind_pair(self.line_host, self.line_port)
        try:
            if ranged and not self.network_port:
                net = bind_udp_in_range(self.network_host, self.port_range)
            else:
                net = bind_udp(self.network_host, self.network_port)
        except OSError:
            rtp.close()
            rtcp.close()
            raise
        relay = self.relay
        plan = ((LINE_RTP, rtp, relay.from_line), (LINE_RTCP, rtcp, relay.from_line_rtcp), (NETWORK, net, relay.from_network))
        try:
            for index, sock, handler in plan:
                leg = _Leg(self, handler, sock.family == socket.AF_INET6)
                transport, _ = await loop.create_datagram_endpoint(lambda leg=leg: leg, sock=sock)
                self.transports[index] = transport
                self._legs.append(leg)
        except BaseException:
            for _, sock, _ in plan:
                sock.close()
            self._close_transports()
            raise
        relay.log.debug("media started", line=_text(self.line_address), network=_text(self.network_address),
                        profile=relay.profile, backend=relay.backend)

    def _close_transports(self) -> None:
        for transport in self.transports:
            if transport is not None:
                transport.close()

    async def stop(self) -> None:
        """Close the sockets; log the drops not yet reported and one summary line of the call."""
        if self._loop is None or self.transports[NETWORK] is None and self.transports[LINE_RTP] is None:
            return
        self._close_transports()
        self.transports = [None, None, None]
        await asyncio.sleep(0)  # let the transports finish closing
        self.relay.flush_log()
        s = self.relay.stats()
        self.relay.log.info("media stopped", profile=s["profile"], backend=s["backend"], line_srtp=s["line_srtp"],
                            encrypted_packets=s["encrypted_packets"], decrypted_packets=s["decrypted_packets"],
                            dropped=sum(s["drops"].values()), drops=s["drops"])

    def _sockname(self, index: int) -> Address:
        transport = self.transports[index]
        if transport is None:
            raise RuntimeError("media session not started")
        return tuple(transport.get_extra_info("sockname")[:2])  # type: ignore[return-value]

    @property
    def line_address(self) -> Address:
        """Where the softphone sends RTP (RTCP: `line_rtcp_address`, port + 1)."""
        return self._sockname(LINE_RTP)

    @property
    def line_rtcp_address(self) -> Address:
        return self._sockname(LINE_RTCP)

    @property
    def network_address(self) -> Address:
        """Where the remote CTA sends SRTP and SRTCP (rtcp-mux)."""
        return self._sockname(NETWORK)

    # -- SDP ------------------------------------------------------------------------------------

    def line_to_network_sdp(self, phone_sdp: SessionDescription | bytes) -> bytes:
        """The softphone's offer/answer -> the body for the remote CTA; the phone becomes the line
        peer. Its a=crypto (SDES) keys the line leg (ctad/sdes.py); SdesError (a ValueError) when
        an RTP/SAVP offer or an answer to our SDES offer has no key we can use."""
        if self._first_sdp is None:
            self._first_sdp = "phone"
            self.line_sdes = LineSdes.from_phone_offer(phone_sdp, self.line_srtp)
        elif self.line_sdes is not None and self.line_sdes.phone_keys is None:
            self.line_sdes.accept_answer(phone_sdp)
            self.relay.set_line_srtp(self.line_sdes.phone_keys, self.line_sdes.our_keys)
        self.relay.accept_line_sdp(phone_sdp)
        return bytes(sdp_for_network(phone_sdp, self.network_address))

    def network_to_line_sdp(self, cta_sdp: SessionDescription | bytes) -> bytes:
        """The remote CTA's offer/answer -> the body for the softphone; the CTA becomes the network
        peer. With SDES on the line leg our a=crypto goes in (answering the phone's, or offering)."""
        if self._first_sdp is None:
            self._first_sdp = "network"
            if self.line_srtp == "sdes":
                self.line_sdes = LineSdes.our_offer()
        self.relay.accept_network_sdp(cta_sdp)
        sdp = sdp_for_line(cta_sdp, self.line_address, self.line_rtcp_address[1])
        sdes = self.line_sdes
        audio = sdp.audio()
        if sdes is not None and audio is not None and audio.port != 0:
            audio.proto = sdes.proto
            audio.attributes.append(f"crypto:{sdes.attribute()}")
            if sdes.phone_keys is not None:  # answering the phone's offer: both keys known now
                self.relay.set_line_srtp(sdes.phone_keys, sdes.our_keys)
        return bytes(sdp)

    # -- statistics ---------------------------------------------------------------------------

    def stats(self) -> dict:
        s = self.relay.stats()
        running = self.transports[NETWORK] is not None
        s["running"] = running
        if running:
            s["line_address"] = _text(self.line_address)
            s["network_address"] = _text(self.network_address)
        s["send_errors"] = sum(leg.send_errors for leg in self._legs)
        return s
