"""Server-side cursors: a FETCH returns what its DECLARE's query reads.

A ``FETCH`` names a cursor, not what it reads, so on its own it is taken as touching every
catalogued class. The session remembers, for each cursor it saw declared (``DECLARE name …
FOR query``), what the query touches (read as any statement is), and a ``FETCH`` from that
cursor is then ruled on, and its rows masked, as that query. A cursor the session did not see
declared (one opened by a function, or declared before a ``CLOSE`` or the end of its
transaction the session saw) stays unknown: its ``FETCH`` fails closed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from piigate.gateway.postgres.judge import Touches
from piigate.gateway.postgres.sqltext import Token, lex

__all__ = ["Cursor", "Cursors", "cursor_statement"]

_NAME_KINDS: Final = frozenset({"word", "ident"})
_ENDS: Final = frozenset({"commit", "rollback", "end", "abort", "discard"})
# The analysis's kinds of DECLARE, FETCH/MOVE, CLOSE/DISCARD and COMMIT/ROLLBACK/END/ABORT.
_CURSOR_KINDS: Final = frozenset({"declare", "fetch", "other", "transaction"})


@dataclass(frozen=True, slots=True)
class Cursor:
    verb: str  # declare, fetch, move, close, or an end of transaction
    name: str | None  # None: every cursor (CLOSE ALL, COMMIT...)
    query: str | None = None  # DECLARE: the query after FOR


def cursor_statement(sql: str) -> Cursor | None:
    """What ``sql`` (one statement) does with cursors, if anything."""
    tokens = lex(sql)
    if not tokens:
        return None
    verb = tokens[0].value
    if verb in _ENDS:
        return Cursor(verb, None)
    if verb == "declare" and len(tokens) > 1 and tokens[1].kind in _NAME_KINDS:
        query = _after_for(sql, tokens)
        return Cursor(verb, tokens[1].value, query)
    if verb in ("fetch", "move") and tokens[-1].kind in _NAME_KINDS and len(tokens) > 1:
        return Cursor(verb, tokens[-1].value)
    if verb == "close" and len(tokens) == 2:
        name = tokens[1]
        if name.kind == "word" and name.value == "all":
            return Cursor(verb, None)
        if name.kind in _NAME_KINDS:
            return Cursor(verb, name.value)
    return None


def _after_for(sql: str, tokens: list[Token]) -> str | None:
    for token in tokens[2:]:
        if token.kind == "word" and token.value == "for":
            return sql[token.end :].strip() or None
    return None


class Cursors:
    def __init__(self) -> None:
        self.known: dict[str, Touches] = {}

    def passes(self, touches: list[Touches]) -> bool:
        """``resolve`` would give ``touches`` back and remember or forget nothing."""
        if len(touches) != 1:
            return not any(t.kind in ("transaction", "other") for t in touches)
        return touches[0].kind not in _CURSOR_KINDS

    async def resolve(
        self, sql: str, touches: list[Touches], read: Callable[[str], Awaitable[list[Touches]]]
    ) -> list[Touches]:
        """``touches`` with a FETCH from a known cursor read as its query; the cursors a
        statement declares or ends remembered or forgotten."""
        if len(touches) != 1:
            if any(t.kind in ("transaction", "other") for t in touches):
                self.known.clear()  # a multi-statement string may end a transaction
            return touches
        if touches[0].kind not in _CURSOR_KINDS:  # most statements: no lexing again
            return touches
        found = cursor_statement(sql)
        if found is None:
            return touches
        if found.verb == "declare" and found.name is not None:
            self.known.pop(found.name, None)
            body = await read(found.query) if found.query else []
            if len(body) == 1 and body[0].refuse is None:
                self.known[found.name] = body[0]
            return touches
        if found.verb == "fetch" and found.name is not None:
            body_touches = self.known.get(found.name)
            if body_touches is not None:
                return [dataclasses.replace(body_touches, kind="fetch")]
            return touches
        if found.verb == "close" and found.name is not None:
            self.known.pop(found.name, None)
        elif found.verb != "move":
            self.known.clear()
        return touches
