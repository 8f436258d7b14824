"""One anti-replay window for every protocol that needs one (ESP, ESP with ESN, SRTP).

A sliding bitmap over a 64-bit sequence space (RFC 4303 3.4.3, RFC 6479's model; RFC 3711 3.3.2
for SRTP's 48-bit index): `top` is the highest sequence number accepted so far, and bit i of the
bitmap says whether `top - i` has been accepted. The window covers `top - size + 1 .. top`;
anything older is rejected, anything newer slides the window.

The caller splits the check from the update, because a packet may only move the window once its
ICV or authentication tag has verified (otherwise a forged packet with a huge sequence number
would push the window past every genuine packet):

    if not window.check(seq):
        -> replay (or too old): drop, count
    verify the ICV
    window.update(seq)

`ReplayWindow(size)` starts empty and accepts any first number (SRTP learns its starting index
from the first packet). `ReplayWindow(size, top=n)` starts as if `n` had been received, so `n`
and everything below it are refused: ESP uses `top=0`, since sequence number 0 is never sent.

The bitmap is one Python int: shifting and masking it costs well under a microsecond even for
SRTP's 1024-bit default, and there is no block bookkeeping to get wrong.
"""

from __future__ import annotations

__all__ = ["ReplayWindow", "MIN_WINDOW", "SEQ_MAX"]

MIN_WINDOW = 64  # RFC 4303 3.4.3 default (and SRTP's RFC 3711 minimum)
SEQ_MAX = (1 << 64) - 1


class ReplayWindow:
    """Anti-replay bitmap of `size` sequence numbers (>= 64) below and including `top`."""

    __slots__ = ("size", "_top", "_bits", "_mask")

    def __init__(self, size: int = MIN_WINDOW, *, top: int | None = None) -> None:
        if not isinstance(size, int) or size < MIN_WINDOW:
            raise ValueError(f"replay window size must be an integer >= {MIN_WINDOW}, not {size!r}")
        if top is not None and not 0 <= top <= SEQ_MAX:
            raise ValueError(f"replay window top {top} is outside the 64-bit sequence space")
        self.size = size
        self._mask = (1 << size) - 1
        self._top = top
        self._bits = 0 if top is None else 1

    @property
    def top(self) -> int | None:
        """The highest sequence number accepted so far (None before the first one)."""
        return self._top

    def check(self, seq: int) -> bool:
        """Would `seq` be accepted: not seen yet and not older than the window? No state change."""
        top = self._top
        if top is None or seq > top:
            return 0 <= seq <= SEQ_MAX
        diff = top - seq
        if diff >= self.size:
            return False
        return not (self._bits >> diff) & 1

    def update(self, seq: int) -> None:
        """Mark `seq` received; call only after `check(seq)` passed AND the packet authenticated.

        An update for a number that is already marked or below the window changes nothing.
        """
        if not 0 <= seq <= SEQ_MAX:
            raise ValueError(f"sequence number {seq} is outside the 64-bit sequence space")
        top = self._top
        if top is None:
            self._top = seq
            self._bits = 1
        elif seq > top:
            shift = seq - top
            self._bits = ((self._bits << shift) | 1) & self._mask if shift < self.size else 1
            self._top = seq
        else:
            diff = top - seq
            if diff < self.size:
                self._bits |= 1 << diff

    def accept(self, seq: int) -> bool:
        """check() and update() in one call, for callers with nothing to verify in between."""
        if not self.check(seq):
            return False
        self.update(seq)
        return True

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, top={self._top})"
