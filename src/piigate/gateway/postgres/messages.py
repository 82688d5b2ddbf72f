"""The messages both sides send (COPY data), and the opaque message of a type not modelled.

Every message is a frozen dataclass with ``encode()``; decoding is strict (``wire.Reader``), so
``encode`` gives back exactly the bytes a message was parsed from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from piigate.gateway.postgres.wire import Reader, frame

__all__ = ["CopyData", "CopyDone", "Empty", "Unknown"]


@dataclass(frozen=True, slots=True)
class Empty:
    """A message that is its tag alone (Sync, ParseComplete, ...): both sides have some."""

    TAG: ClassVar[bytes]

    def encode(self) -> bytes:
        return frame(self.TAG, b"")


@dataclass(frozen=True, slots=True)
class Unknown:
    """A tagged message of a type the gateway does not model, kept as it came."""

    type: bytes
    payload: bytes

    def encode(self) -> bytes:
        return frame(self.type, self.payload)


@dataclass(frozen=True, slots=True)
class CopyData:
    TAG: ClassVar[bytes] = b"d"
    data: bytes

    def encode(self) -> bytes:
        return frame(self.TAG, self.data)

    @classmethod
    def decode(cls, r: Reader) -> CopyData:
        return cls(r.rest())


@dataclass(frozen=True, slots=True)
class CopyDone(Empty):
    TAG: ClassVar[bytes] = b"c"

    @classmethod
    def decode(cls, r: Reader) -> CopyDone:
        r.end()
        return cls()
