"""RFC 8070 freshness tokens: opaque to the client, verifiable by any kdcd worker of the realm.

Format (docs/protocol.md, "Freshness tokens"):

    token = "KTF1" || kvno (4 bytes, big-endian) || ciphertext
    ciphertext = RFC 3961 encrypt(token key, usage 1030, issue-time (8 bytes, seconds since
                 the epoch, big-endian) || random (8 bytes))
    token key  = KRB-FX-CF2(K, K, "kerbtel-freshness", "token"), K = krbtgt/REALM key of `kvno`

The RFC 3961 encryption is authenticated (HMAC), so a token cannot be forged or altered. Every
worker derives the same token key from the krbtgt key in the shared database, so a token issued
by one worker is accepted by another; rotating the krbtgt key keeps old tokens valid while the
old kvno is in its grace period.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from common.crypto import CryptoError, Key, cf2, decrypt, encrypt

__all__ = ["FRESHNESS_KEY_USAGE", "FreshnessError", "FreshnessTokens"]

MAGIC = b"KTF1"
FRESHNESS_KEY_USAGE = 1030  # kerbtel-private key usage (RFC 4120 7.5.1: 1024-2047 for local use)


class FreshnessError(ValueError):
    """The token is not one of ours or fails integrity (`expired` False), or is too old (True)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class FreshnessTokens:
    """Issues and checks tokens. `krbtgt_key(kvno)` returns (kvno, Key) for a kvno (None = current)."""

    def __init__(self, krbtgt_key: Callable[[int | None], tuple[int, Key]], lifetime: int, rng: Callable[[int], bytes]):
        self._krbtgt_key = krbtgt_key
        self._lifetime = lifetime
        self._rng = rng
        self._derived: dict[tuple[int, int, bytes], Key] = {}

    def _token_key(self, kvno: int | None) -> tuple[int, Key]:
        kvno, key = self._krbtgt_key(kvno)
        cache_key = (kvno, key.enctype, key.contents)
        derived = self._derived.get(cache_key)
        if derived is None:
            derived = cf2(key, key, b"kerbtel-freshness", b"token")
            if len(self._derived) > 16:
                self._derived.clear()
            self._derived[cache_key] = derived
        return kvno, derived

    def issue(self, now_seconds: int) -> bytes:
        kvno, key = self._token_key(None)
        plain = struct.pack(">Q", now_seconds) + self._rng(8)
        return MAGIC + struct.pack(">I", kvno) + encrypt(key, FRESHNESS_KEY_USAGE, plain)

    def check(self, token: bytes, now_seconds: int, skew: int) -> int:
        """The token's issue time; FreshnessError unless ours, intact and not older than the lifetime."""
        if len(token) < 8 or token[:4] != MAGIC:
            raise FreshnessError("freshness token is not one this KDC issued")
        (kvno,) = struct.unpack(">I", token[4:8])
        try:
            _, key = self._token_key(kvno)
            plain = decrypt(key, FRESHNESS_KEY_USAGE, token[8:])
        except (CryptoError, LookupError, ValueError):
            raise FreshnessError("freshness token does not verify") from None
        if len(plain) < 16:
            raise FreshnessError("freshness token is truncated")
        (issued,) = struct.unpack(">Q", plain[:8])
        if issued > now_seconds + skew:
            raise FreshnessError("freshness token is from the future")
        if now_seconds - issued > self._lifetime:
            raise FreshnessError(f"freshness token is {now_seconds - issued} s old (limit {self._lifetime} s)", expired=True)
        return issued
