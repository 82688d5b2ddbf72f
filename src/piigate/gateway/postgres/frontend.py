"""The messages a client sends (protocol 3.0): the untagged startup packets and the tagged rest.

``p`` carries four kinds of message (password, SASL initial response, SASL response, GSS): which
one follows from the server's last authentication request, so the parser is told
(``FrontendParser.expect_auth``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from piigate.gateway.postgres.messages import CopyData, CopyDone, Empty, Unknown
from piigate.gateway.postgres.wire import Reader, cstring, frame, int16, int32, uint32, values

__all__ = [
    "PROTOCOL_3",
    "Bind",
    "CancelRequest",
    "Close",
    "CopyFail",
    "Describe",
    "Execute",
    "Flush",
    "FrontendMessage",
    "GSSENCRequest",
    "Parse",
    "PasswordMessage",
    "Query",
    "SASLInitialResponse",
    "SASLResponse",
    "SSLRequest",
    "StartupMessage",
    "Sync",
    "Terminate",
]

PROTOCOL_3 = 3 << 16
SSL_CODE = 80877103
GSSENC_CODE = 80877104
CANCEL_CODE = 80877102


def _untagged(body: bytes) -> bytes:
    return int32(len(body) + 4) + body


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """The first message: the protocol version and the parameters (``user``, ``database``…)."""

    parameters: tuple[tuple[str, str], ...]
    version: int = PROTOCOL_3

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.parameters if key == name), None)

    def encode(self) -> bytes:
        pairs = b"".join(cstring(k) + cstring(v) for k, v in self.parameters)
        return _untagged(int32(self.version) + pairs + b"\x00")

    @classmethod
    def decode(cls, r: Reader, version: int) -> StartupMessage:
        parameters: list[tuple[str, str]] = []
        while True:
            name = r.cstring()
            if not name:
                break
            parameters.append((name, r.cstring()))
        r.end()
        return cls(tuple(parameters), version)


@dataclass(frozen=True, slots=True)
class SSLRequest:
    def encode(self) -> bytes:
        return _untagged(int32(SSL_CODE))


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    def encode(self) -> bytes:
        return _untagged(int32(GSSENC_CODE))


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Cancel the query of backend ``process_id``; the key is 4 bytes (up to 256 in 3.2)."""

    process_id: int
    secret_key: bytes

    def encode(self) -> bytes:
        return _untagged(int32(CANCEL_CODE) + int32(self.process_id) + self.secret_key)


@dataclass(frozen=True, slots=True)
class Query:
    TAG: ClassVar[bytes] = b"Q"
    sql: str

    def encode(self) -> bytes:
        return frame(self.TAG, cstring(self.sql))

    @classmethod
    def decode(cls, r: Reader) -> Query:
        sql = r.cstring()
        r.end()
        return cls(sql)


@dataclass(frozen=True, slots=True)
class Parse:
    TAG: ClassVar[bytes] = b"P"
    statement: str
    sql: str
    parameter_types: tuple[int, ...] = ()

    def encode(self) -> bytes:
        types = b"".join(uint32(oid) for oid in self.parameter_types)
        body = cstring(self.statement) + cstring(self.sql) + int16(len(self.parameter_types))
        return frame(self.TAG, body + types)

    @classmethod
    def decode(cls, r: Reader) -> Parse:
        statement, sql = r.cstring(), r.cstring()
        types = tuple(r.uint32() for _ in range(r.count()))
        r.end()
        return cls(statement, sql, types)


def _encode_formats(formats: tuple[int, ...]) -> bytes:
    return int16(len(formats)) + b"".join(int16(code) for code in formats)


@dataclass(frozen=True, slots=True)
class Bind:
    """Bind a statement's parameters (``None`` is NULL) into a portal."""

    TAG: ClassVar[bytes] = b"B"
    portal: str
    statement: str
    parameter_formats: tuple[int, ...] = ()
    parameters: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return frame(
            self.TAG,
            cstring(self.portal)
            + cstring(self.statement)
            + _encode_formats(self.parameter_formats)
            + int16(len(self.parameters))
            + values(self.parameters)
            + _encode_formats(self.result_formats),
        )

    @classmethod
    def decode(cls, r: Reader) -> Bind:
        portal, statement = r.cstring(), r.cstring()
        parameter_formats = r.codes()
        parameters = r.values(r.count())
        result_formats = r.codes()
        r.end()
        return cls(portal, statement, parameter_formats, parameters, result_formats)


@dataclass(frozen=True, slots=True)
class _Target:
    """Describe and Close: ``kind`` is ``S`` (a prepared statement) or ``P`` (a portal)."""

    TAG: ClassVar[bytes]

    kind: str
    name: str

    def encode(self) -> bytes:
        tag = self.TAG
        return frame(tag, self.kind.encode("latin-1") + cstring(self.name))

    @classmethod
    def _read(cls, r: Reader) -> tuple[str, str]:
        kind = r.byte()
        if kind not in ("S", "P"):
            raise r.fail("unknown target kind")
        name = r.cstring()
        r.end()
        return kind, name


@dataclass(frozen=True, slots=True)
class Describe(_Target):
    TAG: ClassVar[bytes] = b"D"

    @classmethod
    def decode(cls, r: Reader) -> Describe:
        return cls(*cls._read(r))


@dataclass(frozen=True, slots=True)
class Close(_Target):
    TAG: ClassVar[bytes] = b"C"

    @classmethod
    def decode(cls, r: Reader) -> Close:
        return cls(*cls._read(r))


@dataclass(frozen=True, slots=True)
class Execute:
    TAG: ClassVar[bytes] = b"E"
    portal: str
    max_rows: int = 0

    def encode(self) -> bytes:
        return frame(self.TAG, cstring(self.portal) + int32(self.max_rows))

    @classmethod
    def decode(cls, r: Reader) -> Execute:
        portal, max_rows = r.cstring(), r.int32()
        r.end()
        return cls(portal, max_rows)


@dataclass(frozen=True, slots=True)
class Sync(Empty):
    TAG: ClassVar[bytes] = b"S"


@dataclass(frozen=True, slots=True)
class Flush(Empty):
    TAG: ClassVar[bytes] = b"H"


@dataclass(frozen=True, slots=True)
class Terminate(Empty):
    TAG: ClassVar[bytes] = b"X"


@dataclass(frozen=True, slots=True)
class CopyFail:
    TAG: ClassVar[bytes] = b"f"
    reason: str

    def encode(self) -> bytes:
        return frame(self.TAG, cstring(self.reason))

    @classmethod
    def decode(cls, r: Reader) -> CopyFail:
        reason = r.cstring()
        r.end()
        return cls(reason)


@dataclass(frozen=True, slots=True)
class PasswordMessage:
    """A cleartext (or MD5-hashed) password."""

    TAG: ClassVar[bytes] = b"p"
    password: str

    def encode(self) -> bytes:
        return frame(self.TAG, cstring(self.password))

    @classmethod
    def decode(cls, r: Reader) -> PasswordMessage:
        password = r.cstring()
        r.end()
        return cls(password)


@dataclass(frozen=True, slots=True)
class SASLInitialResponse:
    TAG: ClassVar[bytes] = b"p"
    mechanism: str
    data: bytes | None

    def encode(self) -> bytes:
        data = int32(-1) if self.data is None else int32(len(self.data)) + self.data
        return frame(self.TAG, cstring(self.mechanism) + data)

    @classmethod
    def decode(cls, r: Reader) -> SASLInitialResponse:
        mechanism, data = r.cstring(), r.value()
        r.end()
        return cls(mechanism, data)


@dataclass(frozen=True, slots=True)
class SASLResponse:
    TAG: ClassVar[bytes] = b"p"
    data: bytes

    def encode(self) -> bytes:
        return frame(self.TAG, self.data)

    @classmethod
    def decode(cls, r: Reader) -> SASLResponse:
        return cls(r.rest())


FrontendMessage = (
    StartupMessage
    | SSLRequest
    | GSSENCRequest
    | CancelRequest
    | Query
    | Parse
    | Bind
    | Describe
    | Execute
    | Sync
    | Flush
    | Close
    | Terminate
    | CopyData
    | CopyDone
    | CopyFail
    | PasswordMessage
    | SASLInitialResponse
    | SASLResponse
    | Unknown
)
