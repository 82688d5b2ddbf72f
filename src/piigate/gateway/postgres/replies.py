"""The server's replies, matched to what the client asked, masked and scrubbed on their way.

Every message the gateway sends upstream that the server answers is queued as a
:class:`Pending` (a Parse, a Bind, a Describe, an Execute, a Sync, a simple Query); each reply
is read against the head of the queue, so the gateway knows which statement a ``DataRow``
belongs to even when a client pipelines many of them or executes a prepared statement without
describing it again. What the gateway answers itself (a refusal, a ``SET piigate.otp``) is a
*synthetic* entry: it is sent when every reply queued before it has gone out, so the client
sees answers in the order it asked.

Pure: :meth:`Replies.relay` takes the server's bytes as they come (split anywhere) and returns
the bytes for the client. Where nothing is to be done, only the 5-byte header of a message is
read: the rows of a result in which nothing is masked, its completion, ``ReadyForQuery``, the
completions of Parse, Bind and Close go out as the server sent them, the queue kept in step by
their types (``_plain``: a shortcut past the general dispatch, ``_reply``). What may need
changing is decoded: every row of a masked result, every ``RowDescription`` a masker reads
(and a Describe's), every error and notice (scrubbed unless their statement may show
everything). A reply out of step with the queue ends the session
(:class:`Desync`), as does a message that breaks the protocol.
"""

from __future__ import annotations

import struct
from collections import deque

from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres.pending import (
    BINDING,
    CLOSING,
    PARSING,
    SYNCING,
    Expect,
    Pending,
    Result,
)
from piigate.gateway.postgres.protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    ProtocolViolation,
    backend_name,
    decode_backend,
    frame_end,
)
from piigate.gateway.postgres.rows import RowMask
from piigate.gateway.postgres.scrub import scrub

__all__ = [
    "BINDING",
    "CLOSING",
    "PARSING",
    "SYNCING",
    "Desync",
    "Expect",
    "Pending",
    "Replies",
    "Result",
]


Reply = be.BackendMessage
_LENGTH = struct.Struct("!i")
# Message types by their tag byte (as ``bytes[i]`` gives it).
_DATA_ROW, _ROW_DESCRIPTION, _READY, _ERROR, _NOTICE = b"D"[0], b"T"[0], b"Z"[0], b"E"[0], b"N"[0]
_COMMAND_COMPLETE, _EMPTY_QUERY, _SUSPENDED = b"C"[0], b"I"[0], b"s"[0]
_NO_DATA, _PARAMETERS, _COPY_IN, _COPY_DATA = b"n"[0], b"t"[0], b"G"[0], b"d"[0]
_ALWAYS = frozenset(b"SA")  # ParameterStatus, NotificationResponse: whatever is pending
# The completions by their tag byte, each with the entry it answers (looked up by the tag, an
# int: an Enum key would hash in Python).
_COMPLETES: dict[int, Expect] = {
    b"1"[0]: Expect.PARSE,
    b"2"[0]: Expect.BIND,
    b"3"[0]: Expect.CLOSE,
}
_RESULTS = (Expect.QUERY, Expect.EXECUTE)
_DESCRIPTIONS_KEPT = 64  # per session: a client describes the same few statements over again


class Desync(Exception):
    """The server's replies no longer match what the gateway asked: the session must end."""


class Replies:
    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.queue: deque[Pending] = deque()
        self.status = "I"  # the transaction state of the last ReadyForQuery
        # A COPY FROM STDIN started by an Execute: the server ignores every Sync until the
        # client's CopyDone or CopyFail, so the session queues none for them.
        self.copy_in = False
        self.max_message_size = max_message_size
        self._rest = b""  # the start of a message not yet received whole
        # RowDescriptions by their bytes: decoded once (they are frozen, so shared safely).
        self._descriptions: dict[bytes, be.RowDescription] = {}

    @property
    def idle(self) -> bool:
        return not self.queue

    @property
    def upstream_busy(self) -> bool:
        """Something was sent to the server that it has not answered yet."""
        return any(p.kind is not Expect.SYNTHETIC for p in self.queue)

    def push(self, pending: Pending) -> list[bytes]:
        """Queue ``pending``; a synthetic one with nothing before it is answered now."""
        self.queue.append(pending)
        return self._synthetics() if pending.kind is Expect.SYNTHETIC else []

    def feed(self, message: Reply) -> list[bytes]:
        """One server message, as :meth:`relay` takes it in bytes."""
        out = self.relay(message.encode())
        return [out] if out else []

    def relay(self, data: bytes) -> bytes:
        """What the client gets of the server's ``data``; the start of a message not yet
        received whole waits for the rest. Consecutive messages that go out as they came go
        out as one slice of ``data``."""
        buf = self._rest + data if self._rest else data
        out: list[bytes] = []
        pos = run = 0  # run: where the bytes not yet put in ``out`` start
        size, limit = len(buf), self.max_message_size
        rows: RowMask | bool | None = None  # known at the first row after a change of the head
        while size - pos >= 5:
            length: int = _LENGTH.unpack_from(buf, pos + 1)[0]
            if not 4 <= length <= limit:
                frame_end(buf, pos, limit)  # raises: the stream breaks the protocol
            end = pos + 1 + length
            if end > size:
                break
            tag = buf[pos]
            if tag == _DATA_ROW:
                if rows is None:
                    rows = self._rows()
                if rows is True:
                    pos = end
                    continue
                if isinstance(rows, RowMask):  # this row and the ones after it, in one go
                    masked, after = rows.mask_rows(buf, pos, limit)
                    if masked:
                        if run < pos:
                            out.append(buf[run:pos])
                        out.extend(masked)
                        pos = run = after
                        continue
            shown = None if self._plain(tag, buf, pos, end) else self._reply(tag, buf, pos, end)
            if shown is not None:  # changed or dropped: what came before it goes first
                if run < pos:
                    out.append(buf[run:pos])
                out.extend(shown)
                run = end
            if self.queue and self.queue[0].kind is Expect.SYNTHETIC:
                if run < end:
                    out.append(buf[run:end])
                run = end
                out.extend(self._synthetics())
            pos = end
            if tag != _DATA_ROW:  # a row changes nothing in the queue
                rows = None
        if run < pos:
            out.append(buf[run:pos])
        self._rest = buf[pos:]
        return b"".join(out)

    def _rows(self) -> RowMask | bool:
        """How the head's rows go out: True as they came (they are the client's, and none is
        masked), a mask when they are the client's and masked, False when ``_reply`` reads
        each (no head, or the gateway's own query)."""
        if not self.queue:
            return False
        head = self.queue[0]
        if head.hidden or head.kind not in _RESULTS:
            return False
        result = head.result
        return True if result is None or result.mask is None else result.mask

    def _plain(self, tag: int, buf: bytes, pos: int, end: int) -> bool:
        """The shortcut of ``_reply`` for what a result with nothing to mask ends with: True
        when the message at ``buf[pos:end]`` goes out as it came, the queue kept in step
        (the client's statement's RowDescription with no masker to read it, its
        CommandComplete, a ReadyForQuery, a ParseComplete, BindComplete or CloseComplete);
        False: ``_reply`` reads it (anything else, or a head of the gateway's own)."""
        queue = self.queue
        if not queue:
            return False
        head = queue[0]
        if head.hidden:
            return False
        if tag == _READY:
            self._ready(buf, pos, end)
            return True
        kind = head.kind
        if kind is Expect.QUERY or kind is Expect.EXECUTE:
            if tag == _ROW_DESCRIPTION:
                result = head.result
                return result is None or (result.masker is None and result.mask is None)
            if tag == _COMMAND_COMPLETE:
                if kind is Expect.EXECUTE:
                    queue.popleft()
                else:
                    head.index += 1
                return True
            return False
        if _COMPLETES.get(tag) is kind and end - pos == 5:
            queue.popleft()
            return True
        return False

    def _ready(self, buf: bytes, pos: int, end: int) -> None:
        """A ReadyForQuery: the transaction state, and the queue up to its Sync or Query."""
        self.status = _status(buf, pos, end)
        queue = self.queue
        while queue and queue[0].kind is not Expect.SYNC and queue[0].kind is not Expect.QUERY:
            queue.popleft()
        if queue:
            queue.popleft()

    def _reply(self, tag: int, buf: bytes, pos: int, end: int) -> list[bytes] | None:
        """The bytes to send in place of the message at ``buf[pos:end]`` (None: itself)."""
        head = self.queue[0] if self.queue else None
        if tag in _ALWAYS:
            return None
        if tag == _NOTICE:
            notice = _decoded(buf, pos, end)
            return None if head is not None and not head.scrubbing else [_scrub(notice)]
        if head is None:  # a reply to nothing: an error the server sends before closing
            return [_scrub(_decoded(buf, pos, end))] if tag == _ERROR else []
        if head.hidden and head.kind is Expect.QUERY:
            return self._hidden_query(head, tag, buf, pos, end)
        if tag == _ERROR:
            message = _decoded(buf, pos, end)
            assert isinstance(message, be.ErrorResponse)
            return [self._error(head, message).encode()]
        if tag == _READY:
            self._ready(buf, pos, end)
            return None
        kind = head.kind
        if kind is Expect.DESCRIBE:
            return self._describe(head, tag, buf, pos, end)
        if kind in _RESULTS:
            return self._result(head, tag, buf, pos, end)
        if _COMPLETES.get(tag) is kind:
            _check_empty(buf, pos, end)
            self.queue.popleft()
            return [] if head.hidden else None
        # Out of step with the server: its rows could be shown under another statement's
        # plan, unmasked. The session ends (fail closed).
        name = backend_name(bytes((tag,)))
        raise Desync(f"a {name} where a {kind.value} reply was expected")

    def _hidden_query(self, head: Pending, tag: int, buf: bytes, pos: int, end: int) -> list[bytes]:
        """The gateway's own simple query: its first row goes to ``on_row`` (None if it
        failed), and nothing of it to the client."""
        if tag == _DATA_ROW and head.on_row is not None:
            row = _decoded(buf, pos, end)
            assert isinstance(row, be.DataRow)
            head.on_row(row)
            head.on_row = None
        elif tag == _ERROR and head.on_row is not None:
            head.on_row(None)
            head.on_row = None
        elif tag == _READY:
            self.status = _status(buf, pos, end)
            self.queue.popleft()
            if head.on_row is not None:
                head.on_row(None)
        return []

    def _describe(
        self, head: Pending, tag: int, buf: bytes, pos: int, end: int
    ) -> list[bytes] | None:
        if tag not in (_ROW_DESCRIPTION, _NO_DATA, _PARAMETERS):
            raise Desync(f"a {backend_name(bytes((tag,)))} where a description was expected")
        if tag == _NO_DATA:
            _check_empty(buf, pos, end)
        if tag != _PARAMETERS:
            self.queue.popleft()
            if head.on_description is not None:
                found = self._description(buf, pos, end) if tag == _ROW_DESCRIPTION else None
                head.on_description(found)
        return [] if head.hidden else None

    def _description(self, buf: bytes, pos: int, end: int) -> be.RowDescription:
        raw = buf[pos:end]
        found = self._descriptions.get(raw)
        if found is None:
            decoded = decode_backend(raw[:1], raw[5:])
            assert isinstance(decoded, be.RowDescription)
            if len(self._descriptions) >= _DESCRIPTIONS_KEPT:
                self._descriptions.clear()
            self._descriptions[raw] = found = decoded
        return found

    def _result(
        self, head: Pending, tag: int, buf: bytes, pos: int, end: int
    ) -> list[bytes] | None:
        result = head.result
        if tag == _DATA_ROW:
            if result is not None and result.mask is not None:
                return [result.mask.apply_message(buf[pos + 5 : end])]
            return None
        if tag == _ROW_DESCRIPTION:
            if result is not None:
                result.mask = None
                if result.masker is not None:
                    result.described = self._description(buf, pos, end)
                    result.mask = result.masker(result.described)
            return None
        if tag == _COPY_IN and head.kind is Expect.EXECUTE:
            _decoded(buf, pos, end)
            # The Syncs the client sent after this Execute are ignored by the server.
            kept = [p for p in list(self.queue)[1:] if p.kind is not Expect.SYNC]
            self.queue = deque([head, *kept])
            self.copy_in = True
            return None
        if tag in (_COMMAND_COMPLETE, _EMPTY_QUERY, _SUSPENDED):
            if tag != _COMMAND_COMPLETE:
                _check_empty(buf, pos, end)
            if head.kind is Expect.EXECUTE:
                self.queue.popleft()
            else:
                head.index += 1
            return None
        # COPY replies, and what the gateway does not model, go as they came: a statement that
        # exports catalogued PII runs only when nothing of it is masked (``judge``). A message
        # it models must still read as one (``CopyData`` reads as any bytes).
        if tag != _COPY_DATA:
            _decoded(buf, pos, end)
        return None

    def _error(self, head: Pending, message: be.ErrorResponse) -> be.ErrorResponse:
        shown = scrub(message) if head.scrubbing else message
        if head.refusal is not None:
            shown = head.refusal
        if head.kind is not Expect.QUERY:
            # The extended protocol: the server skips everything until the next Sync, and so
            # does what the gateway would have answered itself in between.
            while self.queue and self.queue[0].kind is not Expect.SYNC:
                self.queue.popleft()
        return shown

    def _synthetics(self) -> list[bytes]:
        out: list[bytes] = []
        while self.queue and self.queue[0].kind is Expect.SYNTHETIC:
            pending = self.queue.popleft()
            out.extend(m.encode() for m in pending.synthetic)
            if pending.ready:
                out.append(be.ReadyForQuery(self.status).encode())
        return out


def _decoded(buf: bytes, pos: int, end: int) -> Reply:
    return decode_backend(buf[pos : pos + 1], buf[pos + 5 : end])


def _scrub(message: Reply) -> bytes:
    """An error or notice as a client may see it when its statement may not show everything."""
    if isinstance(message, be.ErrorResponse):
        return scrub(message).encode()
    if isinstance(message, be.NoticeResponse):
        return scrub(message).encode()
    return message.encode()


def _status(buf: bytes, pos: int, end: int) -> str:
    """A ReadyForQuery's transaction state (its one byte)."""
    if end - pos != 6:
        raise ProtocolViolation("malformed ReadyForQuery message: not one byte")
    return chr(buf[pos + 5])


def _check_empty(buf: bytes, pos: int, end: int) -> None:
    if end - pos != 5:
        raise ProtocolViolation(
            f"malformed {backend_name(buf[pos : pos + 1])} message: trailing bytes"
        )
