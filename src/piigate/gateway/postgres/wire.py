"""The primitives of PostgreSQL's wire format: big-endian integers, NUL-terminated strings.

Text is decoded as UTF-8 with ``surrogateescape``, so that any bytes a peer sends decode and
encode back to the very same bytes. A ``Reader`` is strict: a message must be read to its last
byte, so that whatever it accepts re-encodes identically. Its errors name the message, never the
bytes in it (they may hold PII).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

__all__ = [
    "ProtocolViolation",
    "Reader",
    "cstring",
    "frame",
    "int16",
    "int32",
    "uint32",
    "values",
]

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_NULL = _I32.pack(-1)
# The usual counts of format codes, unpacked by one Struct each.
_CODES: Final = {n: struct.Struct(f"!{n}h") for n in range(17)}


class ProtocolViolation(ValueError):
    """The peer broke the protocol. The message says how; it never quotes the peer's bytes."""


def int16(value: int) -> bytes:
    return _I16.pack(value)


def int32(value: int) -> bytes:
    return _I32.pack(value)


def uint32(value: int) -> bytes:
    return _U32.pack(value)


def cstring(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")
    if b"\x00" in raw:
        raise ValueError("a protocol string cannot contain NUL")
    return raw + b"\x00"


def values(items: Sequence[bytes | None]) -> bytes:
    """Length-prefixed values, NULL as length -1 (DataRow, Bind)."""
    pack, parts = _I32.pack, []
    for item in items:
        if item is None:
            parts.append(_NULL)
        else:
            parts.append(pack(len(item)))
            parts.append(item)
    return b"".join(parts)


def frame(tag: bytes, body: bytes) -> bytes:
    """A tagged message: its type byte, its length (itself included) and its body."""
    return tag + _I32.pack(len(body) + 4) + body


class Reader:
    """Reads one message's payload, front to back, refusing to run past its end."""

    __slots__ = ("_data", "_name", "_pos")

    def __init__(self, data: bytes, name: str) -> None:
        self._data = data
        self._name = name
        self._pos = 0

    def fail(self, problem: str) -> ProtocolViolation:
        return ProtocolViolation(f"malformed {self._name} message: {problem}")

    def _take(self, size: int) -> bytes:
        end = self._pos + size
        if size < 0 or end > len(self._data):
            raise self.fail("truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def int16(self) -> int:
        pos = self._pos
        if pos + 2 > len(self._data):
            raise self.fail("truncated")
        self._pos = pos + 2
        value: int = _I16.unpack_from(self._data, pos)[0]
        return value

    def count(self) -> int:
        value = self.int16()
        if value < 0:
            raise self.fail("negative count")
        return value

    def codes(self) -> tuple[int, ...]:
        """A count and that many int16 format codes (Bind), in one unpacking."""
        count = self.count()
        pos = self._pos
        end = pos + 2 * count
        if end > len(self._data):
            raise self.fail("truncated")
        self._pos = end
        shape = _CODES.get(count) or struct.Struct(f"!{count}h")
        found: tuple[int, ...] = shape.unpack_from(self._data, pos)
        return found

    def int32(self) -> int:
        pos = self._pos
        if pos + 4 > len(self._data):
            raise self.fail("truncated")
        self._pos = pos + 4
        value: int = _I32.unpack_from(self._data, pos)[0]
        return value

    def uint32(self) -> int:
        pos = self._pos
        if pos + 4 > len(self._data):
            raise self.fail("truncated")
        self._pos = pos + 4
        value: int = _U32.unpack_from(self._data, pos)[0]
        return value

    def byte(self) -> str:
        return self._take(1).decode("latin-1")

    def raw(self, size: int) -> bytes:
        return self._take(size)

    def rest(self) -> bytes:
        return self._take(len(self._data) - self._pos)

    def value(self) -> bytes | None:
        """A length-prefixed value: -1 is NULL, any other negative length is an error."""
        size = self.int32()
        if size == -1:
            return None
        if size < 0:
            raise self.fail("negative value length")
        return self._take(size)

    def values(self, count: int) -> tuple[bytes | None, ...]:
        """``count`` length-prefixed values (DataRow, Bind): the hot path, read in one loop."""
        data, pos, end = self._data, self._pos, len(self._data)
        unpack = _I32.unpack_from
        out: list[bytes | None] = []
        append = out.append
        for _ in range(count):
            if pos + 4 > end:
                raise self.fail("truncated")
            size: int = unpack(data, pos)[0]
            pos += 4
            if size < 0:
                if size != -1:
                    raise self.fail("negative value length")
                append(None)
                continue
            if pos + size > end:
                raise self.fail("truncated")
            append(data[pos : pos + size])
            pos += size
        self._pos = pos
        return tuple(out)

    def cstring(self) -> str:
        end = self._data.find(b"\x00", self._pos)
        if end < 0:
            raise self.fail("unterminated string")
        text = self._data[self._pos : end].decode("utf-8", "surrogateescape")
        self._pos = end + 1
        return text

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def end(self) -> None:
        if self._pos != len(self._data):
            raise self.fail("trailing bytes")
