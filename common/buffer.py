"""The one binary reader/writer for kerbtel's wire formats (keytabs, ccaches, ESP, RTP/SRTP, ...).

A `Buffer` is a position over bytes. `pull_*` read at the position and advance it; `push_*` write
at the position and advance it. Integers use precompiled `struct` formats in the byte order chosen
when the Buffer is made ("big" for network formats; MIT keytab/ccache v1/v2 use the host's order).

Reading past the end raises `BufferReadError` (a `ValueError`), the only error malformed input can
cause here. Its message says what was being read, where, and how many bytes were needed and left:

    realm needs 32 bytes at offset 10, 2 left

`what=` names the field in that message; pass a constant string on per-packet paths (it costs
nothing until an error). Format modules translate the error into their own exception at their
boundary (`KeytabFormatError`, `CcacheFormatError`, ...), keeping or prefixing this message.

Writing a value that does not fit its field raises `BufferWriteError` (a `ValueError`): that is the
caller's mistake, never the peer's, so it is a separate class. A writing Buffer grows as needed;
`capacity=` preallocates so that pushes on a hot path never reallocate. A Buffer made from `data`
can be written too: the first push copies the data (the caller's object is never modified).

Offsets are absolute: `pull_buffer(n)` returns a Buffer limited to the next n bytes that shares the
data and reports offsets within the whole message, so nested records give file offsets in errors.
"""

from __future__ import annotations

import struct
from typing import Literal

__all__ = ["Buffer", "BufferReadError", "BufferWriteError"]

ByteOrder = Literal["big", "little"]


class BufferReadError(ValueError):
    """A read went past the end of the Buffer (or asked for a negative length).

    `what`, `offset`, `needed` and `available` are kept for callers that build their own message.
    """

    def __init__(self, what: str, offset: int, needed: int, available: int, message: str | None = None) -> None:
        self.what = what
        self.offset = offset
        self.needed = needed
        self.available = available
        if message is None and needed < 0:
            message = f"{what} has the negative length {needed} at offset {offset}"
        elif message is None:
            message = f"{what} needs {needed} bytes at offset {offset}, {available} left"
        super().__init__(message)


class BufferWriteError(ValueError):
    """A value does not fit the field it is written to (a local bug, not malformed input)."""


# Precompiled formats per byte order: (u16, u32, u64, i16, i32, i64). 8-bit values need no order.
_FORMATS = {
    order: tuple(struct.Struct(prefix + code) for code in "HIQhiq")
    for order, prefix in (("big", ">"), ("little", "<"))
}
_U8 = struct.Struct("B")
_I8 = struct.Struct("b")


class Buffer:
    """Bytes with a position: `pull_*` reads, `push_*` writes, both at `tell()`.

    `Buffer(data)` reads `data` (bytes-like; a bytearray or memoryview is copied once).
    `Buffer(capacity=n)` writes into n preallocated bytes, growing past them when needed.
    """

    __slots__ = ("_data", "_pos", "_end", "_wend", "_order", "_u16", "_u32", "_u64", "_i16", "_i32", "_i64")

    def __init__(self, data: bytes | bytearray | memoryview | None = None, *, capacity: int = 0, byteorder: ByteOrder = "big") -> None:
        try:
            self._u16, self._u32, self._u64, self._i16, self._i32, self._i64 = _FORMATS[byteorder]
        except KeyError:
            raise ValueError(f"byteorder must be 'big' or 'little', not {byteorder!r}") from None
        self._order = byteorder
        self._pos = 0
        if data is not None:
            if capacity:
                raise ValueError("give either data or capacity, not both")
            self._data: bytes | bytearray = data if type(data) is bytes else bytes(data)
            self._end = len(self._data)
            self._wend = -1  # read-only storage: the first push copies it
        else:
            if capacity < 0:
                raise ValueError(f"capacity {capacity} is negative")
            self._data = bytearray(capacity)
            self._end = self._wend = capacity

    def __repr__(self) -> str:
        # Never the contents: buffers carry keys and plaintext.
        return f"<Buffer {self._order}-endian, offset {self._pos} of {self._end}>"

    # -- position ---------------------------------------------------------------------------

    @property
    def byteorder(self) -> ByteOrder:
        return self._order  # type: ignore[return-value]

    @property
    def data(self) -> bytes:
        """The bytes before the current position (for a writing Buffer: what was written)."""
        return bytes(self._data[: self._pos])

    @property
    def remaining(self) -> int:
        """Bytes left to read."""
        return self._end - self._pos

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int) -> None:
        """Move to `pos`, which must lie within the Buffer (0 to its end, inclusive)."""
        if not 0 <= pos <= self._end:
            raise BufferReadError(
                "seek", self._pos, pos - self._pos, self._end - self._pos, f"seek to offset {pos} outside 0 to {self._end}"
            )
        self._pos = pos

    def eof(self) -> bool:
        return self._pos >= self._end

    # -- reading ----------------------------------------------------------------------------

    def _short(self, n: int, what: str) -> BufferReadError:
        return BufferReadError(what, self._pos, n, self._end - self._pos)

    def pull_bytes(self, n: int, what: str = "bytes") -> bytes:
        pos = self._pos
        end = pos + n
        if end > self._end or n < 0:
            raise self._short(n, what)
        self._pos = end
        return bytes(self._data[pos:end])

    def pull_buffer(self, n: int, what: str = "buffer") -> Buffer:
        """The next n bytes as a Buffer of the same byte order that reports whole-message offsets."""
        pos = self._pos
        end = pos + n
        if end > self._end or n < 0:
            raise self._short(n, what)
        self._pos = end
        sub = Buffer.__new__(Buffer)
        sub._u16, sub._u32, sub._u64 = self._u16, self._u32, self._u64
        sub._i16, sub._i32, sub._i64 = self._i16, self._i32, self._i64
        sub._order, sub._data, sub._pos, sub._end, sub._wend = self._order, self._data, pos, end, -1
        return sub

    def pull_uint8(self, what: str = "uint8") -> int:
        pos = self._pos
        if pos >= self._end:
            raise self._short(1, what)
        self._pos = pos + 1
        return self._data[pos]

    def pull_uint16(self, what: str = "uint16") -> int:
        pos = self._pos
        if pos + 2 > self._end:
            raise self._short(2, what)
        self._pos = pos + 2
        return self._u16.unpack_from(self._data, pos)[0]

    def pull_uint32(self, what: str = "uint32") -> int:
        pos = self._pos
        if pos + 4 > self._end:
            raise self._short(4, what)
        self._pos = pos + 4
        return self._u32.unpack_from(self._data, pos)[0]

    def pull_uint64(self, what: str = "uint64") -> int:
        pos = self._pos
        if pos + 8 > self._end:
            raise self._short(8, what)
        self._pos = pos + 8
        return self._u64.unpack_from(self._data, pos)[0]

    def pull_int8(self, what: str = "int8") -> int:
        pos = self._pos
        if pos >= self._end:
            raise self._short(1, what)
        self._pos = pos + 1
        return _I8.unpack_from(self._data, pos)[0]

    def pull_int16(self, what: str = "int16") -> int:
        pos = self._pos
        if pos + 2 > self._end:
            raise self._short(2, what)
        self._pos = pos + 2
        return self._i16.unpack_from(self._data, pos)[0]

    def pull_int32(self, what: str = "int32") -> int:
        pos = self._pos
        if pos + 4 > self._end:
            raise self._short(4, what)
        self._pos = pos + 4
        return self._i32.unpack_from(self._data, pos)[0]

    def pull_int64(self, what: str = "int64") -> int:
        pos = self._pos
        if pos + 8 > self._end:
            raise self._short(8, what)
        self._pos = pos + 8
        return self._i64.unpack_from(self._data, pos)[0]

    # Counted values: a length (uint16 or uint32) then that many bytes. Text is UTF-8; other
    # bytes decode with surrogateescape, so decoding never fails and every name round-trips.

    def pull_opaque16(self, what: str = "opaque16") -> bytes:
        return self.pull_bytes(self.pull_uint16(what + " length"), what)

    def pull_opaque32(self, what: str = "opaque32") -> bytes:
        return self.pull_bytes(self.pull_uint32(what + " length"), what)

    def pull_text16(self, what: str = "text16") -> str:
        return self.pull_opaque16(what).decode("utf-8", "surrogateescape")

    def pull_text32(self, what: str = "text32") -> str:
        return self.pull_opaque32(what).decode("utf-8", "surrogateescape")

    # -- writing ----------------------------------------------------------------------------

    def _reserve(self, end: int) -> None:
        """Make bytes up to `end` writable: copy read-only data once, then grow."""
        data = self._data
        if type(data) is not bytearray or self._wend < 0:
            data = bytearray(data[: self._end])
        if end > len(data):
            data.extend(bytes(end - len(data)))  # bytearray over-allocates: amortised O(1)
        self._data = data
        self._end = self._wend = len(data)

    @staticmethod
    def _unfit(value: object, what: str, kind: str) -> BufferWriteError:
        # Never the repr of a non-integer: it could be key bytes passed by mistake.
        shown = int(value) if isinstance(value, int) else f"of type {type(value).__name__}"
        return BufferWriteError(f"{what} {shown} does not fit in {kind}")

    def push_bytes(self, value: bytes | bytearray | memoryview) -> None:
        pos = self._pos
        end = pos + len(value)
        if end > self._wend:
            self._reserve(end)
        self._data[pos:end] = value
        self._pos = end

    def push_uint8(self, value: int, what: str = "uint8") -> None:
        pos = self._pos
        if pos + 1 > self._wend:
            self._reserve(pos + 1)
        try:
            _U8.pack_into(self._data, pos, value)
        except struct.error:
            raise self._unfit(value, what, "8 bits unsigned") from None
        self._pos = pos + 1

    def push_uint16(self, value: int, what: str = "uint16") -> None:
        pos = self._pos
        if pos + 2 > self._wend:
            self._reserve(pos + 2)
        try:
            self._u16.pack_into(self._data, pos, value)
        except struct.error:
            raise self._unfit(value, what, "16 bits unsigned") from None
        self._pos = pos + 2

    def push_uint32(self, value: int, what: str = "uint32") -> None:
        pos = self._pos
        if pos + 4 > self._wend:
            self._reserve(pos + 4)
        try:
            self._u32.pack_into(self._data, pos, value)
        except struct.error:
            raise self._unfit(value, what, "32 bits unsigned") from None
        self._pos = pos + 4

    def push_uint64(self, value: int, what: str = "uint64") -> None:
        pos = self._pos
        if pos + 8 > self._wend:
            self._reserve(pos + 8)
        try:
            self._u64.pack_into(self._data, pos, value)
        except struct.error:
            raise self._unfit(value, what, "64 bits unsigned") from None
        self._pos = pos + 8

    def push_int8(self, value: int, what: str = "int8") -> None:
        pos = self._pos
        if pos + 1 > self._wend:
            self._reserve(pos + 1)
        try:
            _I8.pack_into(self._data, pos, value)
        except struct.error:
            raise self._unfit(value, what, "8 bits signed") from None
        self._pos = pos + 1

    def push_int16(self, value: int, what: str = "int16") -> None:
        pos = self._pos
        if pos + 2 > self._wend:
            self._reserve(pos + 2)
        try:
            self._i16.pack_into(self._data, pos, value)
        except struct.error:
            raise self._unfit(value, what, "16 bits signed") from None
        self._pos = pos + 2

    def push_int32(self, value: int, what: str = "int32") -> None:
        pos = self._pos
        if pos + 4 > self._wend:
            self._reserve(pos + 4)
        try:
            self._i32.pack_into(self._data, pos, value)
        except struct.error:
            raise self._unfit(value, what, "32 bits signed") from None
        self._pos = pos + 4

    def push_int64(self, value: int, what: str = "int64") -> None:
        pos = self._pos
        if pos + 8 > self._wend:
            self._reserve(pos + 8)
        try:
            self._i64.pack_into(self._data, pos, value)
        except struct.error:
            raise self._unfit(value, what, "64 bits signed") from None
        self._pos = pos + 8

    def push_opaque16(self, value: bytes | bytearray | memoryview, what: str = "opaque16") -> None:
        if len(value) > 0xFFFF:
            raise BufferWriteError(f"{what} of {len(value)} bytes is longer than 65535")
        self.push_uint16(len(value))
        self.push_bytes(value)

    def push_opaque32(self, value: bytes | bytearray | memoryview, what: str = "opaque32") -> None:
        if len(value) > 0xFFFFFFFF:  # pragma: no cover - 4 GiB values
            raise BufferWriteError(f"{what} of {len(value)} bytes is longer than 4294967295")
        self.push_uint32(len(value))
        self.push_bytes(value)

    def push_text16(self, value: str, what: str = "text16") -> None:
        self.push_opaque16(value.encode("utf-8", "surrogateescape"), what)

    def push_text32(self, value: str, what: str = "text32") -> None:
        self.push_opaque32(value.encode("utf-8", "surrogateescape"), what)
