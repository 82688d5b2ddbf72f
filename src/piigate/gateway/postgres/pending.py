"""What the reply queue (``replies``) holds: one :class:`Pending` entry per message sent to
the server that it answers, with a :class:`Result` per statement whose rows it returns (how
they are masked, whether its errors are scrubbed)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres.rows import RowMask

__all__ = ["BINDING", "CLOSING", "PARSING", "SYNCING", "Expect", "Pending", "Result"]


class Expect(enum.Enum):
    PARSE = "parse"
    BIND = "bind"
    CLOSE = "close"
    DESCRIBE = "describe"
    EXECUTE = "execute"
    SYNC = "sync"
    QUERY = "query"
    SYNTHETIC = "synthetic"


@dataclass(slots=True)
class Result:
    """How to treat one statement's rows: ``masker`` makes the row mask from the columns the
    server describes (None: nothing to mask); ``scrub``: its errors and notices are scrubbed."""

    masker: Callable[[be.RowDescription], RowMask | None] | None = None
    scrub: bool = False
    mask: RowMask | None = None
    described: be.RowDescription | None = None  # the RowDescription the masker read


@dataclass(slots=True)
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


# The entries of a Parse, a Bind, a Close and a Sync: nothing in them changes as their replies
# come (only a QUERY's and a hidden QUERY's do), so one of each serves every session.
PARSING, BINDING, CLOSING, SYNCING = (
    Pending(kind) for kind in (Expect.PARSE, Expect.BIND, Expect.CLOSE, Expect.SYNC)
)
