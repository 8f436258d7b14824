"""SRTP and SRTCP (RFC 3711, RFC 7714): per-direction protection contexts and the media keys.

- Profiles: `AES_CM_128_HMAC_SHA1_80` (the default), `AES_CM_128_HMAC_SHA1_32` (32-bit RTP tag,
  80-bit SRTCP tag as RFC 4568 6.2.2 / RFC 5764 4.1.2 say) and `AEAD_AES_128_GCM` (RFC 7714).
- `derive_session_keys()`: the RFC 3711 4.3 key derivation with key_derivation_rate 0 (AES-CM PRF,
  labels 0-5; a GCM 12-byte master salt is zero-padded on the right to 14 bytes, as libsrtp does).
- `SrtpTx` / `SrtpRx`: one direction each. `protect(rtp)` / `unprotect(srtp)` and
  `protect_rtcp(rtcp)` / `unprotect_rtcp(srtcp)`. State is kept per SSRC: the highest index
  (ROC || SEQ, RFC 3711 3.3.1 / Appendix A estimation) and a `ReplayWindow` of 1024 over the
  48-bit index (and another over the 31-bit SRTCP index), updated only after the tag verified.
  The sender refuses to use an index twice (keystream reuse), as libsrtp does.
- `backend="libsrtp"` (pylibsrtp Sessions behind the same API and the same errors) or
  `backend="python"` (ours); `None` picks libsrtp when pylibsrtp is installed. docs/protocol.md
  "Media" has the benchmark behind that default.
- `derive_media_keys()`: per-direction master key + salt from the CTA-to-CTA sub-key (HKDF-SHA-256
  bound to the direction, the profile and the call's CTA-to-CTA SPI), and the SDES / libsrtp
  forms of those keys for `kerbtel keys`.

Error model (everything malformed, forged or replayed input can cause from `unprotect*` is an
`SrtpError`, a `ValueError`): `SrtpFormatError` (structure), `SrtpAuthError` (tag), `SrtpReplayError`
(index seen or older than the window), `SrtpSsrcError` (a new SSRC beyond `max_streams`).
`protect*` raise `SrtpFormatError` for a malformed packet and `SrtpReuseError` for an index already
used; `SrtpExhausted` (a `RuntimeError`) when a stream's index space is used up: rekey.

Performance (per-packet path): cipher objects are built once per context. AES-CM runs as one
persistent ECB encryptor over the counter blocks (IV + j; the IV's low 16 bits are always zero,
so the blocks are the IV repeated OR-ed with a precomputed counter pattern), XOR-ed with the
payload as one big integer; HMAC starts from a pre-keyed `hmac` object copy. Contexts are not
thread-safe (one event loop owns each).
"""

from __future__ import annotations

import base64
import hmac
import struct
import time
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.replay import ReplayWindow
from common.rtp import RtpError, rtp_header_length

__all__ = [
    "SrtpError",
    "SrtpFormatError",
    "SrtpAuthError",
    "SrtpReplayError",
    "SrtpSsrcError",
    "SrtpReuseError",
    "SrtpExhausted",
    "SrtpProfile",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AEAD_AES_128_GCM",
    "PROFILES",
    "DEFAULT_PROFILE",
    "profile_for",
    "SessionKeys",
    "derive_session_keys",
    "estimate_index",
    "SrtpTx",
    "SrtpRx",
    "Backend",
    "BACKENDS",
    "DEFAULT_BACKEND",
    "libsrtp_available",
    "MediaKeys",
    "CallMediaKeys",
    "derive_media_keys",
    "sdes_crypto_attribute",
    "bench_media_transforms",
    "REPLAY_WINDOW",
]

Backend = Literal["python", "libsrtp"]
BACKENDS = ("python", "libsrtp")
# backend=None picks libsrtp when pylibsrtp is installed (2.3x faster for AES-CM, equal for GCM:
# docs/protocol.md, "Media"), else our transform, which produces the same bytes.
DEFAULT_BACKEND: Backend | None = None
REPLAY_WINDOW = 1024
MAX_INDEX = (1 << 48) - 1  # RFC 3711 3.3.1: ROC (32) || SEQ (16)
MAX_RTCP_INDEX = (1 << 31) - 1  # RFC 3711 3.4
LIBSRTP_MTU = 1500  # pylibsrtp's per-Session buffer

_U32 = struct.Struct(">I")
_M32 = 0xFFFFFFFF
_E_FLAG = 0x80000000


# --- errors ---------------------------------------------------------------------------------


class SrtpError(ValueError):
    """Malformed, forged or replayed SRTP/SRTCP input (the peer's problem)."""


class SrtpFormatError(SrtpError):
    """The packet's structure is wrong (too short, not RTP version 2, header overruns, ...)."""


class SrtpAuthError(SrtpError):
    """The authentication tag does not verify: wrong key, tampering, or a mis-estimated ROC."""


class SrtpReplayError(SrtpError):
    """The packet index was received already or is older than the replay window."""


class SrtpSsrcError(SrtpError):
    """A packet for a new SSRC when the context already tracks `max_streams` of them."""


class SrtpReuseError(SrtpError):
    """protect() was asked to use a packet index again (it would reuse keystream)."""


class SrtpExhausted(RuntimeError):
    """A stream used its whole index space (2^48 SRTP, 2^31 SRTCP packets): rekey (RFC 3711 9.2)."""


# --- profiles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SrtpProfile:
    """An SRTP crypto suite: key and salt sizes, tag sizes, the names peers know it by."""

    name: str  # RFC 4568 / RFC 7714 SDES crypto-suite name
    key_len: int
    salt_len: int
    tag_len: int  # SRTP tag
    rtcp_tag_len: int  # SRTCP tag
    aead: bool
    libsrtp_name: str  # pylibsrtp.Policy attribute
    dtls_id: int  # RFC 5764 / RFC 7714 14.2 protection profile id

    @property
    def master_len(self) -> int:
        """Bytes of master key || master salt (the SDES inline key, libsrtp's Policy key)."""
        return self.key_len + self.salt_len


AES_CM_128_HMAC_SHA1_80 = SrtpProfile("AES_CM_128_HMAC_SHA1_80", 16, 14, 10, 10, False, "SRTP_PROFILE_AES128_CM_SHA1_80", 0x0001)
AES_CM_128_HMAC_SHA1_32 = SrtpProfile("AES_CM_128_HMAC_SHA1_32", 16, 14, 4, 10, False, "SRTP_PROFILE_AES128_CM_SHA1_32", 0x0002)
AEAD_AES_128_GCM = SrtpProfile("AEAD_AES_128_GCM", 16, 12, 16, 16, True, "SRTP_PROFILE_AEAD_AES_128_GCM", 0x0007)
PROFILES: dict[str, SrtpProfile] = {p.name: p for p in (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM)}
DEFAULT_PROFILE = AES_CM_128_HMAC_SHA1_80


def profile_for(name: str | SrtpProfile) -> SrtpProfile:
    """The profile with this SDES name (a profile passes through); ValueError if kerbtel has none."""
    if isinstance(name, SrtpProfile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"no SRTP profile {name!r} (known: {', '.join(PROFILES)})") from None


# --- key derivation (RFC 3711 4.3, kdr = 0) -------------------------------------------------

LABEL_RTP_ENC, LABEL_RTP_AUTH, LABEL_RTP_SALT = 0, 1, 2
LABEL_RTCP_ENC, LABEL_RTCP_AUTH, LABEL_RTCP_SALT = 3, 4, 5
AUTH_KEY_LEN = 20  # HMAC-SHA1 session authentication key (RFC 3711 8.2)


def _prf(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """RFC 3711 4.3.1/4.3.3: AES-CM(master key, IV = (label || r XOR master salt) * 2^16), r = 0.

    key_id = label || r is 56 bits, right-aligned against the 112-bit salt, so the label XORs
    salt byte 7. A 96-bit (GCM) master salt is padded with two zero bytes on the right first.
    """
    x = int.from_bytes(master_salt.ljust(14, b"\x00"), "big") ^ (label << 48)
    ctr = Cipher(algorithms.AES(master_key), modes.CTR((x << 16).to_bytes(16, "big"))).encryptor()
    return ctr.update(bytes(length))


@dataclass(frozen=True, repr=False)
class SessionKeys:
    """The six session keys one master key yields (never printed: no repr of the bytes)."""

    rtp_key: bytes
    rtp_auth: bytes
    rtp_salt: bytes
    rtcp_key: bytes
    rtcp_auth: bytes
    rtcp_salt: bytes

    def __repr__(self) -> str:
        return "SessionKeys(...)"


def derive_session_keys(profile: SrtpProfile, master_key: bytes, master_salt: bytes) -> SessionKeys:
    """Session keys from a master key and salt (RFC 3711 4.3.1 with kdr 0; RFC 7714 11 for GCM)."""
    _check_master(profile, master_key, master_salt)
    auth = 0 if profile.aead else AUTH_KEY_LEN
    mk, ms = bytes(master_key), bytes(master_salt)
    return SessionKeys(
        _prf(mk, ms, LABEL_RTP_ENC, profile.key_len),
        _prf(mk, ms, LABEL_RTP_AUTH, auth),
        _prf(mk, ms, LABEL_RTP_SALT, profile.salt_len),
        _prf(mk, ms, LABEL_RTCP_ENC, profile.key_len),
        _prf(mk, ms, LABEL_RTCP_AUTH, auth),
        _prf(mk, ms, LABEL_RTCP_SALT, profile.salt_len),
    )


def _check_master(profile: SrtpProfile, master_key: bytes, master_salt: bytes) -> None:
    if len(master_key) != profile.key_len:
        raise ValueError(f"{profile.name} needs a {profile.key_len}-byte master key, not {len(master_key)}")
    if len(master_salt) != profile.salt_len:
        raise ValueError(f"{profile.name} needs a {profile.salt_len}-byte master salt, not {len(master_salt)}")


# --- index estimation (RFC 3711 3.3.1, Appendix A) ------------------------------------------


def estimate_index(top: int, seq: int) -> int:
    """The 48-bit index of a packet with sequence number `seq`, given the highest index so far.

    RFC 3711 Appendix A: with s_l = top's SEQ and ROC = top's ROC, the packet belongs to ROC - 1
    if it is more than half the space behind s_l across a wrap, to ROC + 1 if it is more than
    half the space ahead of s_l across a wrap, else to ROC. The result is negative when ROC is 0
    and the packet would belong before the stream's first index (too old for any window).
    """
    s_l = top & 0xFFFF
    roc = top >> 16
    if s_l < 0x8000:
        if seq - s_l > 0x8000:
            roc -= 1
    elif s_l - 0x8000 > seq:
        roc += 1
    return (roc << 16) | seq if roc >= 0 else -1


# --- transforms (one per key set, built once) -----------------------------------------------

_CTR_CACHED = 96  # patterns for packets up to 1536 bytes are precomputed, larger ones built per call
_ONE_BLOCK = bytes(15) + b"\x01"


def _ctr_pattern(blocks: int) -> tuple[int, int]:
    """(rep, ctr): iv * rep repeats a 128-bit IV `blocks` times; | ctr puts j into block j."""
    rep = int.from_bytes(_ONE_BLOCK * blocks, "big")
    ctr = int.from_bytes(b"".join(j.to_bytes(16, "big") for j in range(blocks)), "big")
    return rep, ctr


_CTR = [(0, 0)] + [_ctr_pattern(n) for n in range(1, _CTR_CACHED)]


class _Cm:
    """AES-CM (RFC 3711 4.1.1) + HMAC-SHA1 (4.2.1) under one session key set."""

    __slots__ = ("_ecb", "_salt", "_mac")

    def __init__(self, key: bytes, auth_key: bytes, salt: bytes) -> None:
        self._ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        self._salt = int.from_bytes(salt, "big") << 16
        self._mac = hmac.new(auth_key, digestmod="sha1")

    def xor(self, ssrc: int, index: int, data: bytes) -> bytes:
        """data XOR the keystream for (SSRC, index): IV = salt*2^16 ^ SSRC*2^64 ^ index*2^16."""
        n = len(data)
        if not n:
            return b""
        blocks = (n + 15) >> 4
        rep, ctr = _CTR[blocks] if blocks < _CTR_CACHED else _ctr_pattern(blocks)
        iv = self._salt ^ (ssrc << 64) ^ (index << 16)
        ks = self._ecb.update(((iv * rep) | ctr).to_bytes(blocks << 4, "big"))
        return (int.from_bytes(data, "big") ^ int.from_bytes(ks[:n], "big")).to_bytes(n, "big")

    def tag(self, data: bytes, trailer: bytes) -> bytes:
        h = self._mac.copy()
        h.update(data)
        h.update(trailer)
        return h.digest()


class _Gcm:
    """AEAD_AES_128_GCM (RFC 7714 8-10) under one session key and salt."""

    __slots__ = ("aead", "salt")

    def __init__(self, key: bytes, salt: bytes) -> None:
        self.aead = AESGCM(key)
        self.salt = int.from_bytes(salt, "big")

    def iv(self, ssrc: int, index: int) -> bytes:
        # RFC 7714 8.1 (SRTP): 00 00 | SSRC | ROC | SEQ;  9.1 (SRTCP): 00 00 | SSRC | 00 00 | 0 | index
        return (self.salt ^ (ssrc << 48) ^ index).to_bytes(12, "big")


class _Stream:
    """Per-SSRC state: the SRTP index window (its top is ROC || s_l) and the SRTCP side."""

    __slots__ = ("rtp", "rtcp", "rtcp_next")

    def __init__(self, window: int) -> None:
        self.rtp = ReplayWindow(window)
        self.rtcp = ReplayWindow(window)
        self.rtcp_next = 0


def _format(exc: RtpError) -> SrtpFormatError:
    return SrtpFormatError(str(exc))


def _check_rtcp_header(data: bytes, minimum: int, what: str) -> None:
    n = len(data)
    if n < minimum:
        raise SrtpFormatError(f"{what} packet of {n} bytes is shorter than the {minimum} it needs")
    if data[0] >> 6 != 2:
        raise SrtpFormatError(f"RTCP version {data[0] >> 6} is not 2")
    if not 192 <= data[1] <= 223:
        raise SrtpFormatError(f"RTCP packet type {data[1]} is outside 192-223")


# --- contexts -------------------------------------------------------------------------------


class _Context:
    __slots__ = (
        "profile", "backend", "max_streams", "_window", "_streams", "_rtp", "_rtcp", "_tag",
        "_rtcp_tag", "_initial_roc",
    )

    def __new__(cls, *args, backend: Backend | None = None, **kwargs):
        if backend is None:
            backend = "libsrtp" if libsrtp_available() else "python"
        if backend == "libsrtp" and cls in (SrtpTx, SrtpRx):
            cls = LibsrtpTx if cls is SrtpTx else LibsrtpRx
        elif backend not in (None, "python", "libsrtp"):
            raise ValueError(f"SRTP backend {backend!r} is not one of {', '.join(BACKENDS)}")
        return object.__new__(cls)

    def __init__(
        self,
        profile: SrtpProfile | str,
        master_key: bytes,
        master_salt: bytes,
        *,
        backend: Backend | None = None,
        replay_window: int = REPLAY_WINDOW,
        max_streams: int = 16,
        initial_roc: int = 0,
        session_keys: SessionKeys | None = None,
    ) -> None:
        profile = profile_for(profile)
        # session_keys: the RFC 7714 vectors (and debugging) give session keys, not master keys.
        keys = session_keys if session_keys is not None else derive_session_keys(profile, master_key, master_salt)
        if not 0 <= initial_roc <= _M32:
            raise ValueError(f"initial ROC {initial_roc} is outside 0..2^32-1")
        self.profile = profile
        self.backend = "python"
        self.max_streams = max_streams
        self._window = replay_window
        self._streams: dict[int, _Stream] = {}
        self._initial_roc = initial_roc
        if profile.aead:
            self._rtp = _Gcm(keys.rtp_key, keys.rtp_salt)
            self._rtcp = _Gcm(keys.rtcp_key, keys.rtcp_salt)
        else:
            self._rtp = _Cm(keys.rtp_key, keys.rtp_auth, keys.rtp_salt)
            self._rtcp = _Cm(keys.rtcp_key, keys.rtcp_auth, keys.rtcp_salt)
        self._tag = profile.tag_len
        self._rtcp_tag = profile.rtcp_tag_len

    def __repr__(self) -> str:  # never key material
        return f"{type(self).__name__}({self.profile.name}, backend={self.backend}, streams={len(self._streams)})"

    def roc(self, ssrc: int) -> int | None:
        """The rollover counter of the highest index seen/sent for `ssrc` (None: no packet yet)."""
        stream = self._streams.get(ssrc)
        if stream is None or stream.rtp.top is None:
            return None
        return stream.rtp.top >> 16

    def _stream(self, ssrc: int) -> _Stream:
        stream = self._streams.get(ssrc)
        if stream is None:
            if len(self._streams) >= self.max_streams:
                raise SrtpSsrcError(f"SSRC 0x{ssrc:08x} would be stream {len(self._streams) + 1}, above the limit {self.max_streams}")
            stream = _Stream(self._window)
        return stream


class SrtpTx(_Context):
    """The sending direction: `protect(rtp)` and `protect_rtcp(rtcp)`.

    The caller chooses SSRC, sequence numbers and timestamps; the context tracks ROC per SSRC by
    the same estimation the receiver uses (a jump of more than 2^15 backwards is taken as old)
    and refuses an index it already used. `encrypt_rtcp=False` sends SRTCP with E = 0.
    """

    __slots__ = ("encrypt_rtcp", "packets", "rtcp_packets")

    def __init__(self, profile, master_key, master_salt, *, encrypt_rtcp: bool = True, **kwargs) -> None:
        super().__init__(profile, master_key, master_salt, **kwargs)
        self.encrypt_rtcp = encrypt_rtcp
        self.packets = self.rtcp_packets = 0

    def protect(self, rtp: bytes) -> bytes:
        try:
            hlen = rtp_header_length(rtp)
        except RtpError as exc:
            raise _format(exc) from None
        seq = (rtp[2] << 8) | rtp[3]
        ssrc = _U32.unpack_from(rtp, 8)[0]
        stream = self._streams.get(ssrc) or self._stream(ssrc)
        window = stream.rtp
        top = window.top
        index = (self._initial_roc << 16) | seq if top is None else estimate_index(top, seq)
        if index > MAX_INDEX:
            raise SrtpExhausted(f"SSRC 0x{ssrc:08x} has used all 2^48 SRTP indices; rekey")
        if index < 0 or not window.check(index):
            raise SrtpReuseError(f"SRTP index {index} of SSRC 0x{ssrc:08x} was used already or is too old")
        header = rtp[:hlen]
        if self.profile.aead:
            t = self._rtp
            out = header + t.aead.encrypt(t.iv(ssrc, index), rtp[hlen:], header)
        else:
            body = header + self._rtp.xor(ssrc, index, rtp[hlen:])
            out = body + self._rtp.tag(body, _U32.pack(index >> 16))[: self._tag]
        window.update(index)
        self._streams[ssrc] = stream
        self.packets += 1
        return out

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        _check_rtcp_header(rtcp, 8, "RTCP")
        ssrc = _U32.unpack_from(rtcp, 4)[0]
        stream = self._streams.get(ssrc) or self._stream(ssrc)
        index = stream.rtcp_next
        if index > MAX_RTCP_INDEX:
            raise SrtpExhausted(f"SSRC 0x{ssrc:08x} has used all 2^31 SRTCP indices; rekey")
        e_index = _U32.pack(index | _E_FLAG if self.encrypt_rtcp else index)
        if self.profile.aead:
            t = self._rtcp
            iv = t.iv(ssrc, index)
            if self.encrypt_rtcp:
                out = rtcp[:8] + t.aead.encrypt(iv, rtcp[8:], rtcp[:8] + e_index) + e_index
            else:
                out = rtcp + t.aead.encrypt(iv, b"", rtcp + e_index) + e_index
        else:
            body = rtcp[:8] + self._rtcp.xor(ssrc, index, rtcp[8:]) if self.encrypt_rtcp else rtcp
            body += e_index
            out = body + self._rtcp.tag(body, b"")[: self._rtcp_tag]
        stream.rtcp_next = index + 1
        self._streams[ssrc] = stream
        self.rtcp_packets += 1
        return out


class SrtpRx(_Context):
    """The receiving direction: `unprotect(srtp)` and `unprotect_rtcp(srtcp)`.

    Streams (per SSRC) are created by their first packet that authenticates; until then nothing
    is stored. Failures are counted (`auth_failures`, `replay_failures`, `format_failures`,
    `ssrc_failures`) and raised; the owner logs them at debug with the counters.
    """

    __slots__ = ("packets", "rtcp_packets", "auth_failures", "replay_failures", "format_failures", "ssrc_failures")

    def __init__(self, profile, master_key, master_salt, **kwargs) -> None:
        super().__init__(profile, master_key, master_salt, **kwargs)
        self.packets = self.rtcp_packets = 0
        self.auth_failures = self.replay_failures = self.format_failures = self.ssrc_failures = 0

    def _count(self, exc: SrtpError) -> SrtpError:
        if isinstance(exc, SrtpAuthError):
            self.auth_failures += 1
        elif isinstance(exc, SrtpReplayError):
            self.replay_failures += 1
        elif isinstance(exc, SrtpSsrcError):
            self.ssrc_failures += 1
        else:
            self.format_failures += 1
        return exc

    def unprotect(self, srtp: bytes) -> bytes:
        try:
            return self._unprotect(srtp)
        except SrtpError as exc:
            raise self._count(exc) from None

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        try:
            return self._unprotect_rtcp(srtcp)
        except SrtpError as exc:
            raise self._count(exc) from None

    def _unprotect(self, srtp: bytes) -> bytes:
        tag_len = self._tag
        n = len(srtp) - tag_len
        try:
            hlen = rtp_header_length(srtp)
        except RtpError as exc:
            raise _format(exc) from None
        if hlen > n:
            raise SrtpFormatError(f"SRTP packet of {len(srtp)} bytes has no room for its {tag_len}-byte tag after the {hlen}-byte header")
        seq = (srtp[2] << 8) | srtp[3]
        ssrc = _U32.unpack_from(srtp, 8)[0]
        stream = self._streams.get(ssrc) or self._stream(ssrc)
        window = stream.rtp
        top = window.top
        index = (self._initial_roc << 16) | seq if top is None else estimate_index(top, seq)
        if index < 0 or not window.check(index):
            raise SrtpReplayError(f"SRTP index {index} of SSRC 0x{ssrc:08x} is a replay or older than the window")
        header = srtp[:hlen]
        if self.profile.aead:
            t = self._rtp
            try:
                payload = t.aead.decrypt(t.iv(ssrc, index), srtp[hlen:], header)
            except InvalidTag:
                raise SrtpAuthError(f"SRTP tag of SSRC 0x{ssrc:08x} index {index} does not verify") from None
        else:
            body = srtp[:n]
            if not hmac.compare_digest(self._rtp.tag(body, _U32.pack(index >> 16))[:tag_len], srtp[n:]):
                raise SrtpAuthError(f"SRTP tag of SSRC 0x{ssrc:08x} index {index} does not verify")
            payload = self._rtp.xor(ssrc, index, srtp[hlen:n])
        window.update(index)
        self._streams[ssrc] = stream
        self.packets += 1
        return header + payload

    def _unprotect_rtcp(self, srtcp: bytes) -> bytes:
        tag_len = self._rtcp_tag
        _check_rtcp_header(srtcp, 8 + 4 + tag_len, "SRTCP")
        ssrc = _U32.unpack_from(srtcp, 4)[0]
        n = len(srtcp)
        aead = self.profile.aead
        pos = n - 4 if aead else n - tag_len - 4  # E || index
        e_index = srtcp[pos : pos + 4]
        value = _U32.unpack(e_index)[0]
        index = value & MAX_RTCP_INDEX
        encrypted = bool(value & _E_FLAG)
        stream = self._streams.get(ssrc) or self._stream(ssrc)
        if not stream.rtcp.check(index):
            raise SrtpReplayError(f"SRTCP index {index} of SSRC 0x{ssrc:08x} is a replay or older than the window")
        if aead:
            t = self._rtcp
            try:
                if encrypted:
                    out = srtcp[:8] + t.aead.decrypt(t.iv(ssrc, index), srtcp[8:pos], srtcp[:8] + e_index)
                else:
                    out = srtcp[: pos - tag_len]
                    t.aead.decrypt(t.iv(ssrc, index), srtcp[pos - tag_len : pos], out + e_index)
            except InvalidTag:
                raise SrtpAuthError(f"SRTCP tag of SSRC 0x{ssrc:08x} index {index} does not verify") from None
        else:
            body = srtcp[: n - tag_len]
            if not hmac.compare_digest(self._rtcp.tag(body, b"")[:tag_len], srtcp[n - tag_len :]):
                raise SrtpAuthError(f"SRTCP tag of SSRC 0x{ssrc:08x} index {index} does not verify")
            out = srtcp[:8] + self._rtcp.xor(ssrc, index, srtcp[8:pos]) if encrypted else srtcp[:pos]
        stream.rtcp.update(index)
        self._streams[ssrc] = stream
        self.rtcp_packets += 1
        return out


# --- the libsrtp backend --------------------------------------------------------------------


_LIBSRTP: list[bool] = []


def libsrtp_available() -> bool:
    """Is pylibsrtp importable (checked once)?"""
    if not _LIBSRTP:
        try:
            import pylibsrtp  # noqa: F401
        except ImportError:
            _LIBSRTP.append(False)
        else:
            _LIBSRTP.append(True)
    return _LIBSRTP[0]


def _libsrtp_session(profile: SrtpProfile, master_key: bytes, master_salt: bytes, outbound: bool, window: int):
    import pylibsrtp

    _check_master(profile, master_key, master_salt)
    policy = pylibsrtp.Policy(
        key=bytes(master_key) + bytes(master_salt),
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=getattr(pylibsrtp.Policy, profile.libsrtp_name),
    )
    policy.window_size = window
    return pylibsrtp.Session(policy), pylibsrtp.Error


def _libsrtp_error(exc: Exception, what: str) -> SrtpError:
    text = str(exc)
    if text == "authentication failure":
        return SrtpAuthError(f"{what} tag does not verify (libsrtp: {text})")
    if text.startswith("replay check failed"):
        return SrtpReplayError(f"{what} index is a replay or older than the window (libsrtp: {text})")
    return SrtpFormatError(f"{what} refused by libsrtp: {text}")


def _through_libsrtp(context, operation, data: bytes, what: str) -> bytes:
    """One pylibsrtp call with its exceptions turned into ours."""
    try:
        return operation(bytes(data))
    except context._lib_error as exc:
        raise _libsrtp_error(exc, what) from None


class LibsrtpTx(SrtpTx):
    """`SrtpTx(..., backend="libsrtp")`: a pylibsrtp Session (SSRC_ANY_OUTBOUND) behind our API."""

    __slots__ = ("_session", "_lib_error")

    def __init__(self, profile, master_key, master_salt, *, encrypt_rtcp: bool = True, backend=None,
                 replay_window: int = REPLAY_WINDOW, max_streams: int = 16, initial_roc: int = 0) -> None:
        if not encrypt_rtcp or initial_roc:
            raise ValueError("the libsrtp backend always encrypts SRTCP and starts at ROC 0")
        super().__init__(profile, master_key, master_salt, encrypt_rtcp=True, replay_window=replay_window, max_streams=max_streams)
        self.backend = "libsrtp"
        self._session, self._lib_error = _libsrtp_session(self.profile, master_key, master_salt, True, replay_window)

    def protect(self, rtp: bytes) -> bytes:
        try:
            rtp_header_length(rtp)
        except RtpError as exc:
            raise _format(exc) from None
        if len(rtp) > LIBSRTP_MTU - 16:
            raise SrtpFormatError(f"RTP packet of {len(rtp)} bytes is too large for the libsrtp backend")
        try:
            out = _through_libsrtp(self, self._session.protect, rtp, "SRTP")
        except SrtpReplayError as exc:  # libsrtp's "replay" on protect: we would reuse keystream
            raise SrtpReuseError(str(exc)) from None
        self.packets += 1
        return out

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        _check_rtcp_header(rtcp, 8, "RTCP")
        if len(rtcp) > LIBSRTP_MTU - 20:
            raise SrtpFormatError(f"RTCP packet of {len(rtcp)} bytes is too large for the libsrtp backend")
        out = _through_libsrtp(self, self._session.protect_rtcp, rtcp, "SRTCP")
        self.rtcp_packets += 1
        return out

    def roc(self, ssrc: int) -> int | None:
        raise NotImplementedError("pylibsrtp does not expose the ROC")


class LibsrtpRx(SrtpRx):
    """`SrtpRx(..., backend="libsrtp")`: a pylibsrtp Session (SSRC_ANY_INBOUND) behind our API."""

    __slots__ = ("_session", "_lib_error")

    def __init__(self, profile, master_key, master_salt, *, backend=None, replay_window: int = REPLAY_WINDOW,
                 max_streams: int = 16, initial_roc: int = 0) -> None:
        if initial_roc:
            raise ValueError("the libsrtp backend starts at ROC 0")
        super().__init__(profile, master_key, master_salt, replay_window=replay_window, max_streams=max_streams)
        self.backend = "libsrtp"
        self._session, self._lib_error = _libsrtp_session(self.profile, master_key, master_salt, False, replay_window)

    def _unprotect(self, srtp: bytes) -> bytes:
        try:
            hlen = rtp_header_length(srtp)
        except RtpError as exc:
            raise _format(exc) from None
        if hlen > len(srtp) - self._tag:
            raise SrtpFormatError(f"SRTP packet of {len(srtp)} bytes has no room for its {self._tag}-byte tag after the {hlen}-byte header")
        if len(srtp) > LIBSRTP_MTU:
            raise SrtpFormatError(f"SRTP packet of {len(srtp)} bytes is too large for the libsrtp backend")
        out = _through_libsrtp(self, self._session.unprotect, srtp, "SRTP")
        self.packets += 1
        return out

    def _unprotect_rtcp(self, srtcp: bytes) -> bytes:
        _check_rtcp_header(srtcp, 8 + 4 + self._rtcp_tag, "SRTCP")
        if len(srtcp) > LIBSRTP_MTU:
            raise SrtpFormatError(f"SRTCP packet of {len(srtcp)} bytes is too large for the libsrtp backend")
        out = _through_libsrtp(self, self._session.unprotect_rtcp, srtcp, "SRTCP")
        self.rtcp_packets += 1
        return out

    def roc(self, ssrc: int) -> int | None:
        raise NotImplementedError("pylibsrtp does not expose the ROC")


# --- media keys from the CTA-to-CTA sub-key -------------------------------------------------

_MEDIA_LABEL = b"kerbtel SRTP v1"
DIRECTION_A_TO_B = b"A to B"  # A: the calling (source) CTA, whose SC generated the sub-key
DIRECTION_B_TO_A = b"B to A"


@dataclass(frozen=True, repr=False)
class MediaKeys:
    """One direction's SRTP master key and salt (or the legacy mode's keys, see rtp_3des)."""

    profile: str
    master_key: bytes
    master_salt: bytes

    def __repr__(self) -> str:  # never key material
        return f"MediaKeys({self.profile})"

    def libsrtp_key(self) -> bytes:
        """master key || master salt: pylibsrtp `Policy(key=...)`, libsrtp's `srtp_policy_t.key`."""
        return self.master_key + self.master_salt

    def sdes_inline(self) -> str:
        """The RFC 4568 key-params "inline:<base64(key || salt)>" (what `kerbtel keys` prints)."""
        return "inline:" + base64.b64encode(self.libsrtp_key()).decode("ascii")

    def hex(self) -> str:
        """key || salt in hex (libsrtp's `rtpw -k`, Wireshark-style tools)."""
        return self.libsrtp_key().hex()


@dataclass(frozen=True, repr=False)
class CallMediaKeys:
    """Both directions' media keys for one call. A is the caller's CTA, B the callee's."""

    profile: str
    a_to_b: MediaKeys
    b_to_a: MediaKeys

    def __repr__(self) -> str:
        return f"CallMediaKeys({self.profile})"

    def for_cta(self, role: Literal["A", "B"]) -> tuple[MediaKeys, MediaKeys]:
        """(tx, rx) for one end: A sends with a_to_b and receives with b_to_a; B the reverse."""
        if role == "A":
            return self.a_to_b, self.b_to_a
        if role == "B":
            return self.b_to_a, self.a_to_b
        raise ValueError(f"CTA role {role!r} is not 'A' or 'B'")

    def contexts(self, role: Literal["A", "B"], *, backend: Backend | None = None, **kwargs) -> tuple[SrtpTx, SrtpRx]:
        """Ready (SrtpTx, SrtpRx) for one end (SRTP profiles only)."""
        tx, rx = self.for_cta(role)
        profile = profile_for(self.profile)
        return (
            SrtpTx(profile, tx.master_key, tx.master_salt, backend=backend, **kwargs),
            SrtpRx(profile, rx.master_key, rx.master_salt, backend=backend, **kwargs),
        )


_MEDIA_SIZES = {name: (p.key_len, p.salt_len) for name, p in PROFILES.items()}
LEGACY_3DES = "3DES_CBC_SEED"  # common/rtp_3des.py: "key" = 24-byte 3DES key, "salt" = 20-byte MAC key
_MEDIA_SIZES[LEGACY_3DES] = (24, 20)


def derive_media_keys(subkey: bytes, profile: SrtpProfile | str, spi: int) -> CallMediaKeys:
    """Both directions' media master keys from the CTA-to-CTA sub-key (docs/protocol.md, "Media").

    `spi` is the call's CTA-to-CTA ESP SPI (the A -> B one, delivered with the sub-key; B -> A
    uses spi + 1): both CTAs know it, and it differs per call. Per direction:
    OKM = HKDF-SHA-256(IKM = sub-key, salt = none,
                       info = "kerbtel SRTP v1" 0x00 direction 0x00 profile-name 0x00 spi(4)),
    sliced as master key || master salt. `profile` may be an SRTP profile or "3DES_CBC_SEED".
    """
    name = profile.name if isinstance(profile, SrtpProfile) else profile
    if name not in _MEDIA_SIZES:
        raise ValueError(f"no media profile {name!r} (known: {', '.join(_MEDIA_SIZES)})")
    if len(subkey) < 16:
        raise ValueError(f"sub-key of {len(subkey)} bytes is too short to key media (need >= 16)")
    if not 0 <= spi <= _M32:
        raise ValueError(f"SPI {spi} is outside 0..2^32-1")
    key_len, salt_len = _MEDIA_SIZES[name]

    def one(direction: bytes) -> MediaKeys:
        info = _MEDIA_LABEL + b"\x00" + direction + b"\x00" + name.encode("ascii") + b"\x00" + _U32.pack(spi)
        okm = HKDF(algorithm=hashes.SHA256(), length=key_len + salt_len, salt=None, info=info).derive(bytes(subkey))
        return MediaKeys(name, okm[:key_len], okm[key_len:])

    return CallMediaKeys(name, one(DIRECTION_A_TO_B), one(DIRECTION_B_TO_A))


def sdes_crypto_attribute(tag: int, keys: MediaKeys) -> str:
    """An RFC 4568 SDP attribute value carrying one direction's key, e.g. for a line-side phone."""
    profile_for(keys.profile)
    return f"{tag} {keys.profile} {keys.sdes_inline()}"


# --- micro-benchmark ------------------------------------------------------------------------


def bench_media_transforms(packets: int = 20000, payload_len: int = 160, repeat: int = 3) -> list[dict]:
    """protect + unprotect cost per profile and backend on PCMU-sized RTP packets.

    Returns one dict per (profile, backend): `us` (protect + unprotect, best of `repeat` runs),
    `protect_us`, `unprotect_us` and `pps` (packets per second through both, one core).
    ctad/bench_media.py adds the legacy 3DES mode and prints a table.
    """
    payload = bytes(range(256)) * (payload_len // 256 + 1)
    payload = payload[:payload_len]
    results = []
    backends = ["python"] + (["libsrtp"] if libsrtp_available() else [])
    for profile in PROFILES.values():
        key, salt = bytes(range(profile.key_len)), bytes(range(100, 100 + profile.salt_len))
        for backend in backends:
            best_p = best_u = float("inf")
            for _ in range(repeat):
                tx = SrtpTx(profile, key, salt, backend=backend)
                rx = SrtpRx(profile, key, salt, backend=backend)
                plain = [
                    bytes([0x80, 0, (i >> 8) & 0xFF, i & 0xFF]) + _U32.pack(160 * i) + b"\x12\x34\x56\x78" + payload
                    for i in range(packets)
                ]
                t0 = time.perf_counter()
                wire = [tx.protect(p) for p in plain]
                t1 = time.perf_counter()
                for w in wire:
                    rx.unprotect(w)
                t2 = time.perf_counter()
                best_p = min(best_p, (t1 - t0) / packets * 1e6)
                best_u = min(best_u, (t2 - t1) / packets * 1e6)
            us = best_p + best_u
            results.append({
                "profile": profile.name, "backend": backend, "payload": payload_len,
                "protect_us": round(best_p, 2), "unprotect_us": round(best_u, 2), "us": round(us, 2),
                "pps": int(1e6 / us),
            })
    return results
