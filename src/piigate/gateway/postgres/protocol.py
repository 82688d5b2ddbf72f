"""Incremental parsers for the two directions of a PostgreSQL connection, without sockets.

Feed them bytes as they arrive, split anywhere; each ``feed`` returns the messages completed so
far. What a peer sends that breaks the protocol (a bad length, a message over the size limit, a
message that does not read to its last byte) raises ``ProtocolViolation``, whose text never
quotes the peer's bytes; the parser is then unusable, as the connection should be closed.

A message type the gateway does not model comes out as ``Unknown`` and encodes back to the same
bytes, so that a relay may pass it on unchanged.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Final, TypeVar

from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.auth import AUTH_DECODERS
from piigate.gateway.postgres.messages import CopyData, CopyDone, Unknown
from piigate.gateway.postgres.wire import ProtocolViolation, Reader

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_STARTUP_PACKET",
    "AuthKind",
    "BackendParser",
    "FrontendParser",
    "ProtocolViolation",
    "backend_name",
    "decode_backend",
    "frame_end",
]

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
# As the server: a startup packet longer than this is refused before it is read.
MAX_STARTUP_PACKET = 10_000
_LENGTH = struct.Struct("!i")
M = TypeVar("M")
_Decoder = tuple[str, Callable[[Reader], M]]
# Messages a client sends over and over as they were (the same statement parsed, the same
# portal described and executed, Sync): decoded once per connection, kept by their bytes (the
# messages are frozen). Not a Bind or a Query, whose values change from one to the next.
_REPEATED: Final = frozenset({b"P", b"D", b"E", b"C", b"S", b"H"})
_SEEN_KEPT: Final = 64
# Startup packets the client sends nothing after until it has an answer.
_ANSWERED = (fe.SSLRequest, fe.GSSENCRequest, fe.CancelRequest)


class AuthKind(enum.Enum):
    """What a client's ``p`` message is, by the server's last authentication request."""

    PASSWORD = "password"  # noqa: S105 (a message kind)
    SASL_INITIAL = "sasl_initial"
    SASL = "sasl"


_FRONTEND: dict[bytes, _Decoder[fe.FrontendMessage]] = {
    b"Q": ("Query", fe.Query.decode),
    b"P": ("Parse", fe.Parse.decode),
    b"B": ("Bind", fe.Bind.decode),
    b"D": ("Describe", fe.Describe.decode),
    b"E": ("Execute", fe.Execute.decode),
    b"C": ("Close", fe.Close.decode),
    b"S": ("Sync", lambda r: _empty(r, fe.Sync())),
    b"H": ("Flush", lambda r: _empty(r, fe.Flush())),
    b"X": ("Terminate", lambda r: _empty(r, fe.Terminate())),
    b"d": ("CopyData", CopyData.decode),
    b"c": ("CopyDone", CopyDone.decode),
    b"f": ("CopyFail", fe.CopyFail.decode),
}
_PASSWORD: dict[AuthKind, _Decoder[fe.FrontendMessage]] = {
    AuthKind.PASSWORD: ("PasswordMessage", fe.PasswordMessage.decode),
    AuthKind.SASL_INITIAL: ("SASLInitialResponse", fe.SASLInitialResponse.decode),
    AuthKind.SASL: ("SASLResponse", fe.SASLResponse.decode),
}
_BACKEND: dict[bytes, _Decoder[be.BackendMessage]] = {
    b"S": ("ParameterStatus", be.ParameterStatus.decode),
    b"K": ("BackendKeyData", be.BackendKeyData.decode),
    b"Z": ("ReadyForQuery", be.ReadyForQuery.decode),
    b"T": ("RowDescription", be.RowDescription.decode),
    b"D": ("DataRow", be.DataRow.decode),
    b"C": ("CommandComplete", be.CommandComplete.decode),
    b"E": ("ErrorResponse", be.ErrorResponse.decode),
    b"N": ("NoticeResponse", be.NoticeResponse.decode),
    b"t": ("ParameterDescription", be.ParameterDescription.decode),
    b"G": ("CopyInResponse", be.CopyInResponse.decode),
    b"H": ("CopyOutResponse", be.CopyOutResponse.decode),
    b"W": ("CopyBothResponse", be.CopyBothResponse.decode),
    b"A": ("NotificationResponse", be.NotificationResponse.decode),
    b"d": ("CopyData", CopyData.decode),
    b"c": ("CopyDone", CopyDone.decode),
    b"I": ("EmptyQueryResponse", lambda r: _empty(r, be.EmptyQueryResponse())),
    b"1": ("ParseComplete", lambda r: _empty(r, be.ParseComplete())),
    b"2": ("BindComplete", lambda r: _empty(r, be.BindComplete())),
    b"3": ("CloseComplete", lambda r: _empty(r, be.CloseComplete())),
    b"n": ("NoData", lambda r: _empty(r, be.NoData())),
    b"s": ("PortalSuspended", lambda r: _empty(r, be.PortalSuspended())),
}


def _empty(r: Reader, message: M) -> M:
    r.end()
    return message


def frame_end(buffer: bytes | bytearray, pos: int, max_message_size: int) -> int:
    """Where the tagged message that starts at ``pos`` ends (its type byte, its int32 length,
    its body), or -1 when ``buffer`` does not hold all of it yet."""
    if len(buffer) - pos < 5:
        return -1
    length: int = _LENGTH.unpack_from(buffer, pos + 1)[0]
    if length < 4:
        raise ProtocolViolation(f"message length {length} is below the minimum of 4")
    if length > max_message_size:
        raise ProtocolViolation(
            f"message of {length} bytes exceeds the limit of {max_message_size}"
        )
    end = pos + 1 + length
    return end if end <= len(buffer) else -1


def backend_name(tag: bytes) -> str:
    """The name of the server's message of type ``tag`` (``Unknown`` for a type not modelled)."""
    if tag == b"R":
        return "Authentication"
    return _BACKEND[tag][0] if tag in _BACKEND else "Unknown"


def decode_backend(tag: bytes, payload: bytes) -> be.BackendMessage:
    """One server message of type ``tag``, decoded strictly (``ProtocolViolation`` if it does
    not read to its last byte)."""
    if tag == b"R":
        if len(payload) < 4:
            raise ProtocolViolation("malformed Authentication message: truncated")
        auth = AUTH_DECODERS.get(_LENGTH.unpack_from(payload)[0])
        if auth is None:
            return Unknown(b"R", payload)
        return auth(Reader(payload[4:], "Authentication"))
    decoder = _BACKEND.get(tag)
    if decoder is None:
        return Unknown(tag, payload)
    name, decode = decoder
    return decode(Reader(payload, name))


class _Framer:
    """Cuts a byte stream into tagged messages: a type byte, an int32 length, the body."""

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._pos = 0
        self._broken = False

    def _check(self) -> None:
        if self._broken:
            raise ProtocolViolation("the stream already broke the protocol")

    def _fail(self, problem: str) -> ProtocolViolation:
        self._broken = True
        return ProtocolViolation(problem)

    def _available(self) -> int:
        return len(self._buffer) - self._pos

    def _compact(self) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0

    def _frame_end(self) -> int:
        """Where the message at the buffer's position ends (-1: not all of it is here yet). A
        stream that breaks the protocol raises, and the parser refuses everything after."""
        try:
            return frame_end(self._buffer, self._pos, self.max_message_size)
        except ProtocolViolation:
            self._broken = True
            raise

    def _next_frame(self) -> tuple[bytes, bytes] | None:
        start = self._pos
        end = self._frame_end()
        if end < 0:
            return None
        tag = bytes(self._buffer[start : start + 1])
        payload = bytes(self._buffer[start + 5 : end])
        self._pos = end
        return tag, payload

    def _decode(self, decoder: _Decoder[M], payload: bytes) -> M:
        name, decode = decoder
        try:
            return decode(Reader(payload, name))
        except ProtocolViolation:
            self._broken = True
            raise


class FrontendParser(_Framer):
    """Parses what a client sends: the untagged startup packets, then tagged messages.

    After an ``SSLRequest`` or ``GSSENCRequest``, feed nothing more until the answer is sent:
    bytes already received then are refused (see ``feed``), and what comes after ``S`` is TLS.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        super().__init__(max_message_size)
        self.started = False
        self._auth = AuthKind.PASSWORD
        # Messages a client sends over again as they were (see ``_REPEATED``), by their bytes.
        self._seen: dict[bytes, fe.FrontendMessage] = {}

    def expect_auth(self, kind: AuthKind) -> None:
        """Read the next ``p`` messages as ``kind`` (after the server's request for it)."""
        self._auth = kind

    def feed(self, data: bytes) -> list[fe.FrontendMessage]:
        return [message for message, _ in self.feed_framed(data)]

    def feed_framed(self, data: bytes) -> list[tuple[fe.FrontendMessage, bytes]]:
        """As ``feed``, each message with the bytes it came in (a relay forwards those)."""
        self._check()
        if self.started:
            return self._feed_tagged(data)
        self._buffer += data
        messages: list[tuple[fe.FrontendMessage, bytes]] = []
        while True:
            start = self._pos
            message = self._next_message()
            if message is None:
                break
            messages.append((message, bytes(self._buffer[start : self._pos])))
            if isinstance(message, _ANSWERED) and self._available():
                # The client waits for the answer (or the connection ends): bytes sent before
                # it may be plaintext injected ahead of a TLS handshake (CVE-2021-23214).
                name = type(message).__name__
                raise self._fail(f"data followed a {name} before its answer")
        self._compact()
        return messages

    def _feed_tagged(self, data: bytes) -> list[tuple[fe.FrontendMessage, bytes]]:
        """``feed_framed`` once started: every message is tagged. The messages are cut from
        ``data`` itself (with what was left over before it, if anything), not copied through
        the buffer."""
        if self._buffer:
            data = bytes(self._buffer) + data
            self._buffer.clear()
        messages: list[tuple[fe.FrontendMessage, bytes]] = []
        pos, size, limit = 0, len(data), self.max_message_size
        while size - pos >= 5:
            length: int = _LENGTH.unpack_from(data, pos + 1)[0]
            if not 4 <= length <= limit:
                self._broken = True
                frame_end(data, pos, limit)  # raises: the stream breaks the protocol
            end = pos + 1 + length
            if end > size:
                break
            raw = data[pos:end]
            messages.append((self._tagged(raw), raw))
            pos = end
        if pos < size:
            self._buffer += data[pos:]
        return messages

    def _tagged(self, raw: bytes) -> fe.FrontendMessage:
        """The tagged message whose bytes (type, length, body) are ``raw``."""
        tag = raw[:1]
        repeated = tag in _REPEATED
        if repeated:
            seen = self._seen.get(raw)
            if seen is not None:
                return seen
        decoder = _PASSWORD[self._auth] if tag == b"p" else _FRONTEND.get(tag)
        if decoder is None:
            return Unknown(tag, raw[5:])
        message = self._decode(decoder, raw[5:])
        if repeated:
            if len(self._seen) >= _SEEN_KEPT:
                self._seen.clear()
            self._seen[raw] = message
        return message

    def _next_message(self) -> fe.FrontendMessage | None:
        if not self.started:
            return self._next_startup()
        start = self._pos
        end = self._frame_end()
        if end < 0:
            return None
        self._pos = end
        return self._tagged(bytes(self._buffer[start:end]))

    def _next_startup(self) -> fe.FrontendMessage | None:
        if self._available() < 4:
            return None
        length: int = _LENGTH.unpack_from(self._buffer, self._pos)[0]
        if length < 8 or length > MAX_STARTUP_PACKET:
            raise self._fail(f"startup packet length {length} is out of range")
        if self._available() < length:
            return None
        body = bytes(self._buffer[self._pos + 4 : self._pos + length])
        self._pos += length
        return self._startup(Reader(body[4:], "startup"), _LENGTH.unpack_from(body)[0])

    def _startup(self, r: Reader, code: int) -> fe.FrontendMessage:
        try:
            if code in (fe.SSL_CODE, fe.GSSENC_CODE):
                r.end()
                return fe.SSLRequest() if code == fe.SSL_CODE else fe.GSSENCRequest()
            if code == fe.CANCEL_CODE:
                process_id, key = r.int32(), r.rest()
                if not 4 <= len(key) <= 256:
                    raise r.fail("bad cancel key length")
                self._broken = True  # the connection has no other use
                return fe.CancelRequest(process_id, key)
            if code >> 16 != 3:
                raise ProtocolViolation(
                    f"unsupported protocol version {code >> 16}.{code & 0xFFFF}"
                )
            message = fe.StartupMessage.decode(r, code)
        except ProtocolViolation:
            self._broken = True
            raise
        self.started = True
        return message


class BackendParser(_Framer):
    """Parses what a server sends, including the one-byte answer to SSL/GSSENC requests."""

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        super().__init__(max_message_size)
        self._answer_pending = False

    def expect_ssl_answer(self) -> None:
        """The client asked for TLS or GSS encryption: the next byte answers (``S``/``N``)."""
        self._answer_pending = True

    def feed(self, data: bytes) -> list[be.BackendMessage]:
        self._check()
        self._buffer += data
        messages: list[be.BackendMessage] = []
        while True:
            message = self._next_message()
            if message is None:
                break
            messages.append(message)
        self._compact()
        return messages

    def pending(self) -> bytes:
        """What was received after the last whole message (for whoever reads on)."""
        return bytes(self._buffer[self._pos :])

    def _next_message(self) -> be.BackendMessage | None:
        if self._answer_pending and self._available():
            self._answer_pending = False
            first = self._buffer[self._pos]
            if first in b"SN":
                self._pos += 1
                if self._available():
                    # Nothing may come before the client speaks again: bytes here may be
                    # plaintext injected ahead of a TLS handshake (CVE-2021-23222).
                    raise self._fail("data followed the answer to an encryption request")
                return be.SSLAnswer(first == ord("S"))
        found = self._next_frame()
        if found is None:
            return None
        try:
            return decode_backend(*found)
        except ProtocolViolation:
            self._broken = True
            raise
