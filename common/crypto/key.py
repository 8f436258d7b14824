"""The symmetric key value passed between the codec, the crypto layer, keytabs and caches."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Key:
    """A Kerberos key: enctype number plus raw key bytes.

    The repr shows only the enctype and the length: key bytes must never reach a log line,
    an exception message or a test failure diff.
    """

    enctype: int
    contents: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Key(enctype={self.enctype}, length={len(self.contents)})"

    __str__ = __repr__
