"""Bounded in-memory caches of the KDC engine: the PKINIT replay cache and the verified-certificate
cache. Both are per process (each kdcd worker has its own) and take time as an argument.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime

from common.pki import VerifiedCertificate

__all__ = ["CachedCertificate", "CertificateCache", "ReplayCache", "principal_text"]

# str(Principal) quotes every character (~10 us); the KDC formats the same few names for every
# request (log fields, replay-cache keys). Principals are immutable, so the text can be kept.
principal_text = functools.lru_cache(maxsize=4096)(str)


class ReplayCache:
    """Authenticators seen within the skew window, keyed by any hashable (the PKINIT engine uses
    (cname, ctime, cusec, paChecksum)).

    `seen_or_add(key, now)` answers True for a replay and otherwise records the key until
    `now + lifetime`. Expired entries are dropped as time passes; when `max_entries` is reached
    the oldest entry goes first, so the cache never grows without bound (an authenticator older
    than the skew window is refused by the time check anyway, so evicting in arrival order only
    weakens protection under a flood larger than the cache).
    """

    def __init__(self, max_entries: int, lifetime: float) -> None:
        self.max_entries = max_entries
        self.lifetime = lifetime
        self._entries: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, expiry = next(iter(entries.items()))
            if expiry > now:
                break
            entries.popitem(last=False)

    def seen_or_add(self, key: Hashable, now: float) -> bool:
        if self.max_entries <= 0:
            return False
        self._expire(now)
        if key in self._entries:
            return True
        while len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
        self._entries[key] = now + self.lifetime
        return False


@dataclass(frozen=True)
class CachedCertificate:
    """A certificate that verified, and the customer records (id, generation) it was honoured for
    (empty for manufacturer certificates)."""

    verified: VerifiedCertificate
    customers: tuple[tuple[int, int], ...] = ()


class CertificateCache:
    """LRU of certificate thumbprint -> CachedCertificate, at most `max_entries`.

    `get(thumbprint, wallclock)` returns None (and drops the entry) once the wall clock is past
    the chain's validity; `invalidate` drops an entry whose customer generation changed.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, CachedCertificate] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, thumbprint: bytes, wallclock: datetime) -> CachedCertificate | None:
        entry = self._entries.get(thumbprint)
        if entry is None:
            self.misses += 1
            return None
        verified = entry.verified
        if not verified.valid_from <= wallclock <= verified.valid_until:
            del self._entries[thumbprint]
            self.misses += 1
            return None
        self._entries.move_to_end(thumbprint)
        self.hits += 1
        return entry

    def put(self, entry: CachedCertificate) -> None:
        if self.max_entries <= 0:
            return
        thumb = entry.verified.thumbprint
        self._entries[thumb] = entry
        self._entries.move_to_end(thumb)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, thumbprint: bytes) -> None:
        self._entries.pop(thumbprint, None)
