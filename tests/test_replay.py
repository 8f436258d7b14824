"""common.replay: the one anti-replay bitmap (ESP, ESP with ESN, SRTP)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.replay import SEQ_MAX, ReplayWindow


def test_sizes_below_64_are_refused() -> None:
    with pytest.raises(ValueError, match="size must be an integer >= 64"):
        ReplayWindow(63)
    with pytest.raises(ValueError, match="outside the 64-bit"):
        ReplayWindow(64, top=1 << 64)
    assert ReplayWindow(1024).size == 1024


def test_esp_start_refuses_zero() -> None:
    w = ReplayWindow(64, top=0)
    assert not w.check(0)
    assert w.check(1)


def test_empty_window_accepts_any_first_number() -> None:
    w = ReplayWindow(1024)
    assert w.top is None
    assert w.check(0) and w.check(SEQ_MAX)
    w.update(40_000)
    assert w.top == 40_000
    assert not w.check(40_000)
    assert w.check(40_000 - 1023) and not w.check(40_000 - 1024)


def test_window_edges() -> None:
    w = ReplayWindow(64, top=0)
    w.update(100)
    assert w.check(37)  # 100 - 63: the oldest position inside the window
    assert not w.check(36)  # 100 - 64: just outside
    w.update(37)
    assert not w.check(37)
    w.update(101)  # slides by one: 37 is now outside, 38 is the oldest
    assert not w.check(37) and w.check(38)
    w.update(36)  # an update below the window changes nothing
    assert w.top == 101


def test_check_does_not_change_state() -> None:
    w = ReplayWindow(64, top=0)
    assert w.check(5) and w.check(5)
    assert w.top == 0


def test_out_of_order_within_window() -> None:
    w = ReplayWindow(64, top=0)
    for seq in (5, 3, 4, 1, 2):
        assert w.accept(seq)
    for seq in range(1, 6):
        assert not w.check(seq)
    assert w.check(6)


def test_huge_jump_clears_the_bitmap() -> None:
    w = ReplayWindow(64, top=0)
    for seq in range(1, 65):
        w.update(seq)
    w.update(1 << 40)
    assert w.top == 1 << 40
    assert w.check((1 << 40) - 1) and w.check((1 << 40) - 63)
    assert not w.check((1 << 40) - 64)
    assert not w.check(64)


def test_across_the_2_32_boundary() -> None:
    # ESN: the window is over the 64-bit number, so the 32-bit wrap is just another step.
    w = ReplayWindow(64, top=(1 << 32) - 3)
    assert w.accept((1 << 32) - 1)
    assert w.accept(1 << 32)
    assert w.accept((1 << 32) + 5)
    assert w.accept((1 << 32) - 2)
    assert not w.check((1 << 32) - 1)
    assert not w.check(1 << 32)
    assert w.check((1 << 32) + 1)
    assert not w.check((1 << 32) - 3)  # the starting top counts as seen


def test_top_of_the_sequence_space() -> None:
    w = ReplayWindow(64, top=SEQ_MAX - 1)
    assert w.accept(SEQ_MAX)
    assert not w.check(SEQ_MAX)
    assert not w.check(SEQ_MAX + 1)
    with pytest.raises(ValueError):
        w.update(SEQ_MAX + 1)


def test_srtp_48_bit_index_with_1024_window() -> None:
    w = ReplayWindow(1024)
    start = (1 << 48) - 700
    for i in range(0, 1400, 3):
        assert w.accept(start + i)
    assert not w.check(start + 1398 - 1024)
    assert w.check(start + 1398 - 1022)  # inside, never received (not a multiple of 3 from start)


class _Reference:
    """A set-based model of RFC 4303 3.4.3: accepted numbers, the largest one, the window size."""

    def __init__(self, size: int, top: int | None) -> None:
        self.size = size
        self.seen: set[int] = set() if top is None else {top}
        self.top = top

    def check(self, seq: int) -> bool:
        if self.top is None or seq > self.top:
            return True
        return self.top - seq < self.size and seq not in self.seen

    def update(self, seq: int) -> None:
        self.seen.add(seq)
        self.top = seq if self.top is None else max(self.top, seq)


@settings(max_examples=300, deadline=None)
@given(
    size=st.sampled_from([64, 65, 100, 128, 1024]),
    start=st.one_of(st.none(), st.integers(0, 1 << 33), st.just((1 << 32) - 10)),
    steps=st.lists(
        st.tuples(st.integers(-1100, 1100), st.booleans()), min_size=1, max_size=200
    ),
)
def test_model(size: int, start: int | None, steps: list[tuple[int, bool]]) -> None:
    w = ReplayWindow(size, top=start)
    ref = _Reference(size, start)
    base = start or 0
    for delta, authentic in steps:
        seq = max(0, (ref.top if ref.top is not None else base) + delta)
        assert w.check(seq) == ref.check(seq), (seq, w, ref.top)
        if ref.check(seq) and authentic:  # update only after the (simulated) ICV verifies
            w.update(seq)
            ref.update(seq)
        assert w.top == ref.top
