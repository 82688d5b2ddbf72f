"""The messages a server sends (protocol 3.0).

The authentication requests are in ``auth``. ``SSLAnswer`` is the single byte that answers an
``SSLRequest`` or a ``GSSENCRequest``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from piigate.gateway.postgres.auth import Auth
from piigate.gateway.postgres.messages import CopyData, CopyDone, Empty, Unknown
from piigate.gateway.postgres.wire import Reader, cstring, frame, int16, int32, uint32, values

__all__ = [
    "BackendKeyData",
    "BackendMessage",
    "BindComplete",
    "CloseComplete",
    "CommandComplete",
    "CopyBothResponse",
    "CopyInResponse",
    "CopyOutResponse",
    "DataRow",
    "EmptyQueryResponse",
    "ErrorResponse",
    "FieldDescription",
    "NoData",
    "NoticeResponse",
    "NotificationResponse",
    "ParameterDescription",
    "ParameterStatus",
    "ParseComplete",
    "PortalSuspended",
    "ReadyForQuery",
    "RowDescription",
    "SSLAnswer",
]


@dataclass(frozen=True, slots=True)
class SSLAnswer:
    """``S`` (go ahead with TLS / GSS) or ``N`` (no): one untagged byte."""

    accepted: bool

    def encode(self) -> bytes:
        return b"S" if self.accepted else b"N"


@dataclass(frozen=True, slots=True)
class ParameterStatus:
    TAG: ClassVar[bytes] = b"S"
    name: str
    value: str

    def encode(self) -> bytes:
        return frame(self.TAG, cstring(self.name) + cstring(self.value))

    @classmethod
    def decode(cls, r: Reader) -> ParameterStatus:
        name, value = r.cstring(), r.cstring()
        r.end()
        return cls(name, value)


@dataclass(frozen=True, slots=True)
class BackendKeyData:
    """The key a CancelRequest must quote: 4 bytes (up to 256 in protocol 3.2)."""

    TAG: ClassVar[bytes] = b"K"
    process_id: int
    secret_key: bytes

    def encode(self) -> bytes:
        return frame(self.TAG, int32(self.process_id) + self.secret_key)

    @classmethod
    def decode(cls, r: Reader) -> BackendKeyData:
        return cls(r.int32(), r.rest())


@dataclass(frozen=True, slots=True)
class ReadyForQuery:
    """``I`` idle, ``T`` in a transaction, ``E`` in a failed transaction."""

    TAG: ClassVar[bytes] = b"Z"
    status: str

    def encode(self) -> bytes:
        return frame(self.TAG, self.status.encode("latin-1"))

    @classmethod
    def decode(cls, r: Reader) -> ReadyForQuery:
        status = r.byte()
        r.end()
        return cls(status)


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """A result column; ``table_oid``/``column`` are 0 when it is not a plain table column."""

    name: str
    table_oid: int = 0
    column: int = 0
    type_oid: int = 25
    type_size: int = -1
    type_modifier: int = -1
    format: int = 0

    def encode(self) -> bytes:
        return (
            cstring(self.name)
            + uint32(self.table_oid)
            + int16(self.column)
            + uint32(self.type_oid)
            + int16(self.type_size)
            + int32(self.type_modifier)
            + int16(self.format)
        )

    @classmethod
    def decode(cls, r: Reader) -> FieldDescription:
        name, table_oid, column = r.cstring(), r.uint32(), r.int16()
        type_oid, type_size, type_modifier = r.uint32(), r.int16(), r.int32()
        return cls(name, table_oid, column, type_oid, type_size, type_modifier, r.int16())


@dataclass(frozen=True, slots=True)
class RowDescription:
    TAG: ClassVar[bytes] = b"T"
    fields: tuple[FieldDescription, ...]

    def encode(self) -> bytes:
        body = b"".join(f.encode() for f in self.fields)
        return frame(self.TAG, int16(len(self.fields)) + body)

    @classmethod
    def decode(cls, r: Reader) -> RowDescription:
        fields = tuple(FieldDescription.decode(r) for _ in range(r.count()))
        r.end()
        return cls(fields)


@dataclass(frozen=True, slots=True)
class DataRow:
    """One result row; ``None`` is SQL NULL (length -1 on the wire)."""

    TAG: ClassVar[bytes] = b"D"
    values: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        return frame(self.TAG, int16(len(self.values)) + values(self.values))

    @classmethod
    def decode(cls, r: Reader) -> DataRow:
        row = r.values(r.count())
        r.end()
        return cls(row)


@dataclass(frozen=True, slots=True)
class CommandComplete:
    TAG: ClassVar[bytes] = b"C"
    tag: str

    def encode(self) -> bytes:
        return frame(self.TAG, cstring(self.tag))

    @classmethod
    def decode(cls, r: Reader) -> CommandComplete:
        tag = r.cstring()
        r.end()
        return cls(tag)


@dataclass(frozen=True, slots=True)
class _Fields:
    """ErrorResponse and NoticeResponse: (code, value) pairs in the order they came."""

    TAG: ClassVar[bytes]

    fields: tuple[tuple[str, str], ...]

    def get(self, code: str) -> str | None:
        """The value of a field by its one-letter code (``S``, ``C`` for SQLSTATE, ``M``…)."""
        return next((value for key, value in self.fields if key == code), None)

    def encode(self) -> bytes:
        tag = self.TAG
        body = b"".join(code.encode("latin-1") + cstring(value) for code, value in self.fields)
        return frame(tag, body + b"\x00")

    @classmethod
    def _read(cls, r: Reader) -> tuple[tuple[str, str], ...]:
        fields: list[tuple[str, str]] = []
        while (code := r.byte()) != "\x00":
            fields.append((code, r.cstring()))
        r.end()
        return tuple(fields)


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Fields):
    TAG: ClassVar[bytes] = b"E"

    @classmethod
    def decode(cls, r: Reader) -> ErrorResponse:
        return cls(cls._read(r))


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Fields):
    TAG: ClassVar[bytes] = b"N"

    @classmethod
    def decode(cls, r: Reader) -> NoticeResponse:
        return cls(cls._read(r))


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse(Empty):
    TAG: ClassVar[bytes] = b"I"


@dataclass(frozen=True, slots=True)
class ParseComplete(Empty):
    TAG: ClassVar[bytes] = b"1"


@dataclass(frozen=True, slots=True)
class BindComplete(Empty):
    TAG: ClassVar[bytes] = b"2"


@dataclass(frozen=True, slots=True)
class CloseComplete(Empty):
    TAG: ClassVar[bytes] = b"3"


@dataclass(frozen=True, slots=True)
class NoData(Empty):
    TAG: ClassVar[bytes] = b"n"


@dataclass(frozen=True, slots=True)
class PortalSuspended(Empty):
    TAG: ClassVar[bytes] = b"s"


@dataclass(frozen=True, slots=True)
class ParameterDescription:
    TAG: ClassVar[bytes] = b"t"
    type_oids: tuple[int, ...]

    def encode(self) -> bytes:
        oids = b"".join(uint32(oid) for oid in self.type_oids)
        return frame(self.TAG, int16(len(self.type_oids)) + oids)

    @classmethod
    def decode(cls, r: Reader) -> ParameterDescription:
        oids = tuple(r.uint32() for _ in range(r.count()))
        r.end()
        return cls(oids)


@dataclass(frozen=True, slots=True)
class _CopyResponse:
    """CopyIn/Out/BothResponse: the overall format (0 text, 1 binary) and each column's."""

    TAG: ClassVar[bytes]

    format: int
    column_formats: tuple[int, ...] = field(default=())

    def encode(self) -> bytes:
        tag = self.TAG
        formats = b"".join(int16(code) for code in self.column_formats)
        body = bytes([self.format]) + int16(len(self.column_formats)) + formats
        return frame(tag, body)

    @classmethod
    def _read(cls, r: Reader) -> tuple[int, tuple[int, ...]]:
        overall = r.raw(1)[0]
        formats = tuple(r.int16() for _ in range(r.count()))
        r.end()
        return overall, formats


@dataclass(frozen=True, slots=True)
class CopyInResponse(_CopyResponse):
    TAG: ClassVar[bytes] = b"G"

    @classmethod
    def decode(cls, r: Reader) -> CopyInResponse:
        return cls(*cls._read(r))


@dataclass(frozen=True, slots=True)
class CopyOutResponse(_CopyResponse):
    TAG: ClassVar[bytes] = b"H"

    @classmethod
    def decode(cls, r: Reader) -> CopyOutResponse:
        return cls(*cls._read(r))


@dataclass(frozen=True, slots=True)
class CopyBothResponse(_CopyResponse):
    TAG: ClassVar[bytes] = b"W"

    @classmethod
    def decode(cls, r: Reader) -> CopyBothResponse:
        return cls(*cls._read(r))


@dataclass(frozen=True, slots=True)
class NotificationResponse:
    TAG: ClassVar[bytes] = b"A"
    process_id: int
    channel: str
    payload: str

    def encode(self) -> bytes:
        return frame(
            self.TAG, int32(self.process_id) + cstring(self.channel) + cstring(self.payload)
        )

    @classmethod
    def decode(cls, r: Reader) -> NotificationResponse:
        process_id, channel, payload = r.int32(), r.cstring(), r.cstring()
        r.end()
        return cls(process_id, channel, payload)


BackendMessage = (
    SSLAnswer
    | Auth
    | ParameterStatus
    | BackendKeyData
    | ReadyForQuery
    | RowDescription
    | DataRow
    | CommandComplete
    | EmptyQueryResponse
    | ErrorResponse
    | NoticeResponse
    | ParseComplete
    | BindComplete
    | CloseComplete
    | NoData
    | PortalSuspended
    | ParameterDescription
    | CopyInResponse
    | CopyOutResponse
    | CopyBothResponse
    | NotificationResponse
    | CopyData
    | CopyDone
    | Unknown
)
