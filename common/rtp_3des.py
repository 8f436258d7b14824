"""The seed's legacy media mode ("3DES_CBC_SEED"): whole RTP packets in 3-key 3DES-CBC, IV 0.

The seed (bearer channel paragraphs): "encryption of the RTP packets, including the header", one
168-bit 3-key 3DES key per direction, "the IV ... set to 0, as defined in the RTP specification"
(RFC 1889/3550 9.1's DES-CBC with a zero IV), and optionally "a MAC to each packet, before it is
encrypted". kerbtel defines the unspecified parts (docs/protocol.md, "Media"):

- Padding: RFC 3550 P-bit padding inside the RTP packet, so that RTP packet || MAC is a whole
  number of 8-byte blocks. RFC 3550 5.1 names exactly this use ("needed by some encryption
  algorithms with fixed block sizes"). The sender sets P only when padding is needed (or the
  packet had padding already, which is then extended); the receiver removes the padding and
  clears P, so what comes out is the packet's header and payload.
- MAC (optional, both ends must agree): HMAC-SHA-1-80 (10 bytes, as SRTP's default tag) over
  the padded plaintext RTP packet, appended after it, and the two encrypted together
  (MAC-then-encrypt, as the seed says). The receiver verifies it in constant time before looking
  at anything in the packet.
- Replay: the receiver keeps the same 1024-index window as SRTP over ROC || SEQ per SSRC, updated
  only after the MAC verified (without a MAC: after the header looked like RTP version 2).

Why legacy only: with IV 0 the encryption is deterministic. Two packets whose first k blocks are
equal have equal first k ciphertext blocks, and the same packet always encrypts the same way, so
an observer learns equalities of headers and payload prefixes; the seed's argument that SEQ and the
timestamp make block 1 unique holds only within one SSRC and one ROC cycle. Without the MAC there
is no integrity at all: CBC is malleable (flipping ciphertext bits of block i garbles block i and
flips the same bits of plaintext block i+1), and a forged or replayed packet is undetectable beyond
the version check. 3DES has a 64-bit block (birthday bound, Sweet32) and is withdrawn by NIST
(SP 800-131A rev. 2: no encryption after 2023). No RTP peer implements the mode, and it costs more
than SRTP: use SRTP (AES_CM_128_HMAC_SHA1_80 or AEAD_AES_128_GCM) everywhere else.
"""

from __future__ import annotations

import hmac
import struct

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from common.replay import ReplayWindow
from common.rtp import RtpError, rtp_header_length
from common.srtp import (
    REPLAY_WINDOW,
    SrtpAuthError,
    SrtpError,
    SrtpFormatError,
    SrtpReplayError,
    SrtpSsrcError,
    estimate_index,
)

__all__ = ["Legacy3desTx", "Legacy3desRx", "pad_rtp", "PROFILE_NAME", "KEY_LEN", "MAC_KEY_LEN", "MAC_LEN", "BLOCK"]

PROFILE_NAME = "3DES_CBC_SEED"
KEY_LEN = 24  # 3-key 3DES (168 effective key bits + parity)
MAC_KEY_LEN = 20  # HMAC-SHA-1
MAC_LEN = 10  # HMAC-SHA-1-80
BLOCK = 8
_U32 = struct.Struct(">I")
_ZERO_IV = bytes(BLOCK)


def _check_keys(key: bytes, mac_key: bytes | None) -> None:
    if len(key) != KEY_LEN:
        raise ValueError(f"3DES_CBC_SEED needs a {KEY_LEN}-byte 3DES key, not {len(key)}")
    if key[:8] == key[8:16] or key[8:16] == key[16:]:
        raise ValueError("3DES_CBC_SEED needs three different 8-byte keys (3-key 3DES)")
    if mac_key is not None and len(mac_key) != MAC_KEY_LEN:
        raise ValueError(f"3DES_CBC_SEED needs a {MAC_KEY_LEN}-byte MAC key, not {len(mac_key)}")


def pad_rtp(rtp: bytes, trailer: int = 0) -> bytes:
    """`rtp` with RFC 3550 padding so that len(result) + trailer is a multiple of 8.

    Existing padding is kept and extended; a packet that is already aligned and unpadded is
    returned unchanged (P stays clear).
    """
    try:
        hlen = rtp_header_length(rtp)
    except RtpError as exc:
        raise SrtpFormatError(str(exc)) from None
    old = 0
    if rtp[0] & 0x20:
        old = rtp[-1] if len(rtp) > hlen else 0
        if not 0 < old <= len(rtp) - hlen:
            raise SrtpFormatError(f"RTP padding count {old} is invalid for the {len(rtp) - hlen} bytes after the header")
    base = len(rtp) - old
    extra = -(base + old + trailer) % BLOCK
    if not old and not extra:
        return rtp
    pad = old + extra
    if pad > 255:
        pad -= BLOCK
    return bytes([rtp[0] | 0x20]) + rtp[1:base] + bytes(pad - 1) + bytes([pad])


class Legacy3desTx:
    """Sending direction: `protect(rtp)` -> 3DES-CBC(IV 0) of (padded RTP packet || MAC?)."""

    __slots__ = ("_enc", "_chain", "_mac", "packets")

    def __init__(self, key: bytes, mac_key: bytes | None = None) -> None:
        _check_keys(key, mac_key)
        # One CBC encryptor for the context's lifetime: it chains from its last ciphertext block,
        # so XOR-ing that block into the first plaintext block restarts the chain at IV 0.
        self._enc = Cipher(TripleDES(bytes(key)), modes.CBC(_ZERO_IV)).encryptor()
        self._chain = 0
        self._mac = hmac.new(bytes(mac_key), digestmod="sha1") if mac_key is not None else None
        self.packets = 0

    def __repr__(self) -> str:
        return f"Legacy3desTx(mac={self._mac is not None})"

    def protect(self, rtp: bytes) -> bytes:
        plaintext = pad_rtp(rtp, MAC_LEN if self._mac is not None else 0)
        if self._mac is not None:
            h = self._mac.copy()
            h.update(plaintext)
            plaintext += h.digest()[:MAC_LEN]
        first = int.from_bytes(plaintext[:BLOCK], "big") ^ self._chain
        ct = self._enc.update(first.to_bytes(BLOCK, "big") + plaintext[BLOCK:])
        self._chain = int.from_bytes(ct[-BLOCK:], "big")
        self.packets += 1
        return ct


class Legacy3desRx:
    """Receiving direction: `unprotect(data)` -> the RTP packet with kerbtel's padding removed.

    Errors are the SRTP ones (`SrtpFormatError`, `SrtpAuthError`, `SrtpReplayError`), counted
    like `SrtpRx`'s, so the media path handles one error family.
    """

    __slots__ = ("_dec", "_mac", "_windows", "max_streams", "packets", "auth_failures", "replay_failures", "format_failures", "ssrc_failures", "_window")

    def __init__(self, key: bytes, mac_key: bytes | None = None, *, replay_window: int = REPLAY_WINDOW, max_streams: int = 16) -> None:
        _check_keys(key, mac_key)
        self._dec = Cipher(TripleDES(bytes(key)), modes.ECB()).decryptor()
        self._mac = hmac.new(bytes(mac_key), digestmod="sha1") if mac_key is not None else None
        self._windows: dict[int, ReplayWindow] = {}
        self._window = replay_window
        self.max_streams = max_streams
        self.packets = self.auth_failures = self.replay_failures = self.format_failures = self.ssrc_failures = 0

    def __repr__(self) -> str:
        return f"Legacy3desRx(mac={self._mac is not None}, streams={len(self._windows)})"

    def unprotect(self, data: bytes) -> bytes:
        try:
            return self._unprotect(data)
        except SrtpError as exc:
            if isinstance(exc, SrtpAuthError):
                self.auth_failures += 1
            elif isinstance(exc, SrtpReplayError):
                self.replay_failures += 1
            elif isinstance(exc, SrtpSsrcError):
                self.ssrc_failures += 1
            else:
                self.format_failures += 1
            raise

    def _unprotect(self, data: bytes) -> bytes:
        n = len(data)
        mac_len = MAC_LEN if self._mac is not None else 0
        minimum = -(-(12 + mac_len) // BLOCK) * BLOCK
        if n < minimum:
            raise SrtpFormatError(f"3DES_CBC_SEED packet of {n} bytes is shorter than the {minimum} it needs")
        if n % BLOCK:
            raise SrtpFormatError(f"3DES_CBC_SEED packet of {n} bytes is not a multiple of {BLOCK}")
        d = self._dec.update(data)
        # CBC decryption with IV 0: P_i = D(C_i) XOR C_{i-1}, C_{-1} = 0.
        plain = (int.from_bytes(d, "big") ^ int.from_bytes(data[: n - BLOCK], "big")).to_bytes(n, "big")
        if mac_len:
            rtp = plain[:-mac_len]
            h = self._mac.copy()
            h.update(rtp)
            if not hmac.compare_digest(h.digest()[:mac_len], plain[-mac_len:]):
                raise SrtpAuthError("3DES_CBC_SEED MAC does not verify")
        else:
            rtp = plain
        try:
            hlen = rtp_header_length(rtp)
        except RtpError as exc:
            raise SrtpFormatError(f"3DES_CBC_SEED plaintext is not RTP: {exc}") from None
        end = len(rtp)
        if rtp[0] & 0x20:
            count = rtp[-1]
            if not 0 < count <= end - hlen:
                raise SrtpFormatError(f"RTP padding count {count} is invalid for the {end - hlen} bytes after the header")
            end -= count
        seq = (rtp[2] << 8) | rtp[3]
        ssrc = _U32.unpack_from(rtp, 8)[0]
        window = self._windows.get(ssrc)
        if window is None:
            if len(self._windows) >= self.max_streams:
                raise SrtpSsrcError(f"SSRC 0x{ssrc:08x} would be stream {len(self._windows) + 1}, above the limit {self.max_streams}")
            window = ReplayWindow(self._window)
        top = window.top
        index = seq if top is None else estimate_index(top, seq)
        if index < 0 or not window.check(index):
            raise SrtpReplayError(f"3DES_CBC_SEED index {index} of SSRC 0x{ssrc:08x} is a replay or older than the window")
        window.update(index)
        self._windows[ssrc] = window
        self.packets += 1
        return bytes([rtp[0] & ~0x20]) + rtp[1:end]
