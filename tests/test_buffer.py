"""common.buffer: every width and signedness in both byte orders, short reads, positions, writes."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.buffer import Buffer, BufferReadError, BufferWriteError

# (name, struct code, size, minimum, maximum)
WIDTHS = [
    ("uint8", "B", 1, 0, 0xFF),
    ("uint16", "H", 2, 0, 0xFFFF),
    ("uint32", "I", 4, 0, 0xFFFFFFFF),
    ("uint64", "Q", 8, 0, 2**64 - 1),
    ("int8", "b", 1, -(2**7), 2**7 - 1),
    ("int16", "h", 2, -(2**15), 2**15 - 1),
    ("int32", "i", 4, -(2**31), 2**31 - 1),
    ("int64", "q", 8, -(2**63), 2**63 - 1),
]
ORDERS = [("big", ">"), ("little", "<")]


@pytest.mark.parametrize("order, prefix", ORDERS)
@pytest.mark.parametrize("name, code, size, lo, hi", WIDTHS)
def test_each_width_matches_struct(order, prefix, name, code, size, lo, hi):
    values = [lo, hi, 0, 1, hi // 3]
    buf = Buffer(byteorder=order)
    for v in values:
        getattr(buf, f"push_{name}")(v)
    expected = b"".join(struct.pack(prefix + code, v) for v in values)
    assert buf.data == expected and buf.tell() == size * len(values)
    reader = Buffer(expected, byteorder=order)
    assert [getattr(reader, f"pull_{name}")() for _ in values] == values
    assert reader.eof() and reader.remaining == 0


def test_byte_orders_differ():
    assert Buffer(b"\x01\x02\x03\x04").pull_uint32() == 0x01020304
    assert Buffer(b"\x01\x02\x03\x04", byteorder="little").pull_uint32() == 0x04030201
    assert Buffer(b"\xff\xff\xff\xfe").pull_int32() == -2
    assert Buffer(b"\xfe\xff\xff\xff", byteorder="little").pull_int32() == -2
    assert Buffer(b"\x80").pull_int8() == -128 and Buffer(b"\x80").pull_uint8() == 128


def test_bad_byteorder_and_arguments():
    with pytest.raises(ValueError, match="byteorder"):
        Buffer(b"", byteorder="native")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either data or capacity"):
        Buffer(b"ab", capacity=4)
    with pytest.raises(ValueError, match="negative"):
        Buffer(capacity=-1)


@pytest.mark.parametrize("order, _prefix", ORDERS)
@pytest.mark.parametrize("name, code, size, lo, hi", WIDTHS)
def test_read_past_end_at_each_width(order, _prefix, name, code, size, lo, hi):
    for have in range(size):
        buf = Buffer(b"\x00" * (3 + have), byteorder=order)
        buf.seek(3)
        with pytest.raises(BufferReadError) as info:
            getattr(buf, f"pull_{name}")()
        err = info.value
        assert str(err) == f"{name} needs {size} bytes at offset 3, {have} left"
        assert (err.what, err.offset, err.needed, err.available) == (name, 3, size, have)
        assert isinstance(err, ValueError)
        assert buf.tell() == 3  # a failed read does not move


def test_what_names_the_field():
    buf = Buffer(b"\x00\x05abc")
    with pytest.raises(BufferReadError, match=re.escape("realm needs 5 bytes at offset 2, 3 left")):
        buf.pull_opaque16("realm")
    with pytest.raises(BufferReadError, match="^ticket length needs 4 bytes at offset 0, 3 left$"):
        Buffer(b"\x00\x00\x00").pull_opaque32("ticket")
    buf = Buffer(b"xyz")
    buf.seek(1)
    with pytest.raises(BufferReadError, match="^key needs 7 bytes at offset 1, 2 left$"):
        buf.pull_bytes(7, "key")


def test_pull_bytes_and_negative_length():
    buf = Buffer(bytearray(b"hello"))
    assert buf.pull_bytes(0) == b"" and buf.pull_bytes(2) == b"he"
    assert type(buf.pull_bytes(3)) is bytes and buf.eof()
    with pytest.raises(BufferReadError, match="negative length -1 at offset 0"):
        Buffer(b"abc").pull_bytes(-1, "hole")


def test_seek_tell_eof_remaining():
    buf = Buffer(b"\x00\x01\x02\x03")
    assert (buf.tell(), buf.remaining, buf.eof()) == (0, 4, False)
    buf.seek(4)
    assert buf.eof() and buf.remaining == 0
    buf.seek(1)
    assert buf.pull_uint8() == 1 and buf.tell() == 2
    for bad in (-1, 5):
        with pytest.raises(BufferReadError, match=f"seek to offset {bad} outside 0 to 4"):
            buf.seek(bad)
    assert buf.tell() == 2
    assert Buffer(b"").eof()


def test_pull_buffer_is_bounded_and_keeps_absolute_offsets():
    buf = Buffer(b"\x00\x00\x01\x02\x03\x04\x05")
    buf.seek(2)
    sub = buf.pull_buffer(3, "record")
    assert buf.tell() == 5 and sub.tell() == 2 and sub.remaining == 3
    assert sub.pull_uint16() == 0x0102
    with pytest.raises(BufferReadError, match="^uint16 needs 2 bytes at offset 4, 1 left$"):
        sub.pull_uint16()
    assert sub.pull_uint8() == 3 and sub.eof()
    with pytest.raises(BufferReadError, match="record needs 9 bytes at offset 5, 2 left"):
        buf.pull_buffer(9, "record")
    little = Buffer(b"\x01\x00", byteorder="little").pull_buffer(2)
    assert little.byteorder == "little" and little.pull_uint16() == 1


def test_text_and_opaque():
    buf = Buffer()
    buf.push_text16("EXAMPLE.TEST")
    buf.push_text32("h\u00e9\udcff")  # a lone escaped byte round-trips
    buf.push_opaque16(b"\x00\x01")
    buf.push_opaque32(b"")
    data = buf.data
    assert data[:14] == b"\x00\x0cEXAMPLE.TEST" and data[14:18] == b"\x00\x00\x00\x04"
    reader = Buffer(data)
    assert reader.pull_text16() == "EXAMPLE.TEST"
    assert reader.pull_text32() == "h\u00e9\udcff"
    assert reader.pull_opaque16() == b"\x00\x01" and reader.pull_opaque32() == b""
    assert reader.eof()
    assert Buffer(b"\x00\x02\xff\xfe").pull_text16() == "\udcff\udcfe"  # never a decode error


@pytest.mark.parametrize("name, code, size, lo, hi", WIDTHS)
def test_push_out_of_range(name, code, size, lo, hi):
    kind = f"{size * 8} bits {'signed' if name.startswith('int') else 'unsigned'}"
    for bad in (lo - 1, hi + 1):
        buf = Buffer()
        with pytest.raises(BufferWriteError, match=re.escape(f"kvno {bad} does not fit in {kind}")):
            getattr(buf, f"push_{name}")(bad, "kvno")
        assert buf.tell() == 0 and buf.data == b""


def test_push_never_shows_non_integer_values():
    with pytest.raises(BufferWriteError, match="key of type bytes") as info:
        Buffer().push_uint32(b"\x01\x02secret", "key")  # type: ignore[arg-type]
    assert "secret" not in str(info.value)


def test_push_opaque16_too_long():
    with pytest.raises(BufferWriteError, match="key of 65536 bytes is longer than 65535"):
        Buffer().push_opaque16(bytes(65536), "key")


def test_capacity_and_growth():
    buf = Buffer(capacity=4)
    assert buf.remaining == 4 and buf.data == b""
    buf.push_uint32(1)
    buf.push_uint64(2)  # grows past the preallocation
    assert buf.data == b"\x00\x00\x00\x01" + b"\x00" * 7 + b"\x02"
    assert buf.eof()
    buf = Buffer()
    for i in range(1000):
        buf.push_uint16(i)
    assert buf.data == b"".join(struct.pack(">H", i) for i in range(1000))


def test_backpatch_a_length():
    buf = Buffer()
    buf.push_uint8(0xAA)
    start = buf.tell()
    buf.push_uint32(0)
    buf.push_bytes(b"body")
    end = buf.tell()
    buf.seek(start)
    buf.push_uint32(end - start - 4)
    buf.seek(end)
    assert buf.data == b"\xaa\x00\x00\x00\x04body"


def test_writing_a_read_buffer_copies_it():
    original = bytearray(b"\x00\x00\x00\x00rest")
    buf = Buffer(original)
    buf.push_uint32(7)
    buf.seek(buf.remaining + buf.tell())
    assert buf.data == b"\x00\x00\x00\x07rest"
    assert original == b"\x00\x00\x00\x00rest"
    buf.push_uint16(9)  # past the end of the data: grows
    assert buf.data.endswith(b"rest\x00\x09")
    sub = Buffer(b"abcdef").pull_buffer(2)  # a window: a push copies, the parent stays as it was
    sub.push_uint8(0x41)
    assert sub.data == b"A" and sub.remaining == 1


def test_repr_hides_contents():
    assert "secret" not in repr(Buffer(b"secret")) and "offset 0 of 6" in repr(Buffer(b"secret"))


PULLS = {name: (lo, hi) for name, _c, _s, lo, hi in WIDTHS}
fields = st.one_of(
    *[st.tuples(st.just(name), st.integers(lo, hi)) for name, (lo, hi) in PULLS.items()],
    st.tuples(st.just("bytes"), st.binary(max_size=20)),
    st.tuples(st.just("opaque16"), st.binary(max_size=20)),
    st.tuples(st.just("opaque32"), st.binary(max_size=20)),
    st.tuples(st.just("text16"), st.text(max_size=10)),
)


@given(st.lists(fields, max_size=20), st.sampled_from(["big", "little"]), st.integers(0, 64))
def test_round_trip_property(items, order, capacity):
    items = [(k, v) for k, v in items if not (k == "text16" and any("\ud800" <= ch <= "\udfff" for ch in v))]
    buf = Buffer(capacity=capacity, byteorder=order)
    for kind, value in items:
        getattr(buf, f"push_{kind}")(value)
    data = buf.data
    reader = Buffer(data, byteorder=order)
    for kind, value in items:
        got = reader.pull_bytes(len(value)) if kind == "bytes" else getattr(reader, f"pull_{kind}")()
        assert got == value
    assert reader.eof() and reader.tell() == len(data)


@given(st.binary(max_size=40), st.lists(st.sampled_from([*PULLS, "opaque16", "opaque32", "text16", "text32"]), max_size=12))
def test_fuzz_only_buffer_read_errors(data, pulls):
    buf = Buffer(data)
    try:
        for kind in pulls:
            getattr(buf, f"pull_{kind}")()
    except BufferReadError as err:
        assert f"at offset {err.offset}" in str(err)
    assert 0 <= buf.tell() <= len(data)
