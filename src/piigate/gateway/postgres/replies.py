"""The server's replies, matched to what the client asked, masked and scrubbed on their way.

Every message the gateway sends upstream that the server answers is queued as a
:class:`Pending` (a Parse, a Bind, a Describe, an Execute, a Sync, a simple Query); each reply
is read against the head of the queue, so the gateway knows which statement a ``DataRow``
belongs to even when a client pipelines many of them or executes a prepared statement without
describing it again. What the gateway answers itself (a refusal, a ``SET piigate.otp``) is a
*synthetic* entry: it is sent when every reply queued before it has gone out, so the client
sees answers in the order it asked.

Pure: :meth:`Replies.feed` takes one server message and returns the bytes for the client.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres.rows import RowMask
from piigate.gateway.postgres.scrub import scrub

__all__ = ["Desync", "Expect", "Pending", "Replies", "Result"]


class Expect(enum.Enum):
    PARSE = "parse"
    BIND = "bind"
    CLOSE = "close"
    DESCRIBE = "describe"
    EXECUTE = "execute"
    SYNC = "sync"
    QUERY = "query"
    SYNTHETIC = "synthetic"


@dataclass
class Result:
    """How to treat one statement's rows: ``masker`` makes the row mask from the columns the
    server describes (None: nothing to mask); ``scrub``: its errors and notices are scrubbed."""

    masker: Callable[[be.RowDescription], RowMask | None] | None = None
    scrub: bool = False
    mask: RowMask | None = None
    described: be.RowDescription | None = None


@dataclass
class Pending:
    kind: Expect
    results: list[Result] = field(default_factory=list)  # QUERY: one per statement; EXECUTE: one
    hidden: bool = False  # asked by the gateway itself: its replies are not the client's
    on_description: Callable[[be.RowDescription | None], None] | None = None
    on_row: Callable[[be.DataRow | None], None] | None = None  # a hidden QUERY's answer
    synthetic: tuple[be.BackendMessage, ...] = ()
    ready: bool = False  # SYNTHETIC: end with ReadyForQuery (the transaction state at that time)
    index: int = 0  # QUERY: the statement whose replies come now
    # QUERY: for a statement the server read that the analysis did not (never expected).
    overflow: Result | None = None
    # A refusal the server is made to fail (so that it ends the transaction as any error does):
    # the client sees this instead of the server's error.
    refusal: be.ErrorResponse | None = None

    @property
    def result(self) -> Result | None:
        return self.results[self.index] if self.index < len(self.results) else self.overflow

    @property
    def scrubbing(self) -> bool:
        result = self.result
        return True if result is None else result.scrub


Reply = be.BackendMessage
_COMPLETES: dict[Expect, type[be.BackendMessage]] = {
    Expect.PARSE: be.ParseComplete,
    Expect.BIND: be.BindComplete,
    Expect.CLOSE: be.CloseComplete,
}


class Desync(Exception):
    """The server's replies no longer match what the gateway asked: the session must end."""


class Replies:
    def __init__(self) -> None:
        self.queue: deque[Pending] = deque()
        self.status = "I"  # the transaction state of the last ReadyForQuery
        # A COPY FROM STDIN started by an Execute: the server ignores every Sync until the
        # client's CopyDone or CopyFail, so the session queues none for them.
        self.copy_in = False

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
        return self._synthetics()

    def feed(self, message: Reply) -> list[bytes]:
        head = self.queue[0] if self.queue else None
        if isinstance(message, be.NoticeResponse):
            return [self._scrubbed(message, head).encode()]
        if isinstance(message, be.ParameterStatus | be.NotificationResponse):
            return [message.encode()]
        if head is None:  # a reply to nothing: an error the server sends before closing
            return [self._scrubbed(message, None).encode()] if _is_error(message) else []
        out = self._answer(head, message)
        return out + self._synthetics()

    def _answer(self, head: Pending, message: Reply) -> list[bytes]:
        if head.hidden and head.kind is Expect.QUERY:
            return self._hidden_query(head, message)
        if isinstance(message, be.ErrorResponse):
            return [self._error(head, message).encode()]
        if isinstance(message, be.ReadyForQuery):
            self.status = message.status
            while self.queue and self.queue[0].kind not in (Expect.SYNC, Expect.QUERY):
                self.queue.popleft()
            if self.queue:
                self.queue.popleft()
            return [message.encode()]
        kind = head.kind
        if kind is Expect.DESCRIBE:
            return self._describe(head, message)
        if kind in (Expect.QUERY, Expect.EXECUTE):
            return self._result(head, message)
        if isinstance(message, _COMPLETES.get(kind, ())):
            self.queue.popleft()
            return [] if head.hidden else [message.encode()]
        # Out of step with the server: its rows could be shown under another statement's
        # plan, unmasked. The session ends (fail closed).
        raise Desync(f"a {type(message).__name__} where a {kind.value} reply was expected")

    def _hidden_query(self, head: Pending, message: Reply) -> list[bytes]:
        """The gateway's own simple query: its first row goes to ``on_row`` (None if it
        failed), and nothing of it to the client."""
        if isinstance(message, be.DataRow) and head.on_row is not None:
            head.on_row(message)
            head.on_row = None
        elif isinstance(message, be.ErrorResponse) and head.on_row is not None:
            head.on_row(None)
            head.on_row = None
        elif isinstance(message, be.ReadyForQuery):
            self.status = message.status
            self.queue.popleft()
            if head.on_row is not None:
                head.on_row(None)
        return []

    def _describe(self, head: Pending, message: Reply) -> list[bytes]:
        if not isinstance(message, be.RowDescription | be.NoData | be.ParameterDescription):
            raise Desync(f"a {type(message).__name__} where a description was expected")
        if isinstance(message, be.RowDescription | be.NoData):
            self.queue.popleft()
            if head.on_description is not None:
                head.on_description(message if isinstance(message, be.RowDescription) else None)
        return [] if head.hidden else [message.encode()]

    def _result(self, head: Pending, message: Reply) -> list[bytes]:
        result = head.result
        if isinstance(message, be.DataRow):
            if result is not None and result.mask is not None:
                return [result.mask.apply(message).encode()]
            return [message.encode()]
        if isinstance(message, be.RowDescription):
            if result is not None:
                result.described = message
                result.mask = result.masker(message) if result.masker is not None else None
            return [message.encode()]
        if isinstance(message, be.CopyInResponse) and head.kind is Expect.EXECUTE:
            # The Syncs the client sent after this Execute are ignored by the server.
            kept = [p for p in list(self.queue)[1:] if p.kind is not Expect.SYNC]
            self.queue = deque([head, *kept])
            self.copy_in = True
            return [message.encode()]
        if isinstance(message, be.CommandComplete | be.EmptyQueryResponse | be.PortalSuspended):
            if head.kind is Expect.EXECUTE:
                self.queue.popleft()
            else:
                head.index += 1
            return [message.encode()]
        # COPY replies, and what the gateway does not model, go as they came: a statement that
        # exports catalogued PII runs only when nothing of it is masked (``judge``).
        return [message.encode()]

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

    @staticmethod
    def _scrubbed(message: Reply, head: Pending | None) -> Reply:
        """A notice or error as the client may see it (scrubbed unless its statement may show
        everything; scrubbed when it belongs to no statement)."""
        if head is not None and not head.scrubbing:
            return message
        if isinstance(message, be.ErrorResponse):
            return scrub(message)
        if isinstance(message, be.NoticeResponse):
            return scrub(message)
        return message

    def _synthetics(self) -> list[bytes]:
        out: list[bytes] = []
        while self.queue and self.queue[0].kind is Expect.SYNTHETIC:
            pending = self.queue.popleft()
            out.extend(m.encode() for m in pending.synthetic)
            if pending.ready:
                out.append(be.ReadyForQuery(self.status).encode())
        return out


def _is_error(message: Reply) -> bool:
    return isinstance(message, be.ErrorResponse)
