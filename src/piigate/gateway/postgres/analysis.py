"""Which catalogued PII columns each statement of a query string reads, writes, deletes or exports.

The first of the gateway's two sources (the other asks the server with EXPLAIN): sqlglot's
PostgreSQL parser over statements cut as the server cuts them (``sqltext``). It fails closed:
what it cannot follow (a user function, a DO block, a cursor, EXECUTE) is taken as touching every
catalogued column, and a statement it cannot parse is refused when it may name a catalogued
table. Pure and socket-free; ``shape`` is the key the session caches analyses under.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from piigate.gateway.postgres.builtins import SESSION_SETTINGS
from piigate.gateway.postgres.catalog import Catalog, TableName
from piigate.gateway.postgres.sqldml import DmlWalker
from piigate.gateway.postgres.sqlquery import QUERIES
from piigate.gateway.postgres.sqlscope import Output
from piigate.gateway.postgres.sqltext import Chunk, Token, plain_identifiers, shape, split
from piigate.gateway.postgres.touch import Statement, Touch, Use

__all__ = ["Statement", "Touch", "Use", "analyse", "shape"]

_SQLGLOT: Final = frozenset({"select", "with", "values", "table", "insert", "update", "delete"})
_SQLGLOT_MORE: Final = frozenset({"merge", "(", "copy", "truncate"})
_TRANSACTION: Final = frozenset(
    {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}
)
# Ending a transaction may undo a SET or a CREATE in it, or end a SET LOCAL.
_ENDS: Final = frozenset({"commit", "end", "rollback", "abort"})
_FAIL: Final = {
    "do": "a DO block",
    "call": "a procedure call",
    "execute": "EXECUTE of a prepared statement",
    "fetch": "a cursor's rows",
}
_CODE: Final = frozenset(
    {
        "function",
        "procedure",
        "rule",
        "trigger",
        "aggregate",
        "operator",
        "cast",
        "language",
        "transform",
        "event",
        "extension",
        "conversion",
        "type",
        "domain",
        "policy",
        "publication",
        "subscription",
        "server",
        "foreign",
        "access",
        "statistics",
    }
)
_DDL: Final = frozenset(
    {
        "create",
        "alter",
        "drop",
        "comment",
        "grant",
        "revoke",
        "security",
        "refresh",
        "import",
        "reassign",
    }
)
_MAINTENANCE: Final = frozenset(
    {
        "vacuum",
        "analyze",
        "analyse",
        "cluster",
        "reindex",
        "checkpoint",
        "lock",
        "load",
        "close",
        "deallocate",
        "discard",
    }
)
_WORD: Final = re.compile(r"[a-z_\x80-\uffff][a-z0-9_$\x80-\uffff]*")


@dataclass(frozen=True, slots=True)
class _Context:
    catalog: Catalog
    search_path: tuple[str, ...]
    user_functions: frozenset[str]

    def walker(self, text: str) -> DmlWalker:
        return DmlWalker(self.catalog, self.search_path, text, self.user_functions)


def analyse(
    sql: str,
    catalog: Catalog,
    *,
    search_path: tuple[str, ...] = ("public",),
    user_functions: frozenset[str] = frozenset(),
) -> list[Statement]:
    """The statements of ``sql`` in order, each with what it does to catalogued columns.

    ``search_path`` resolves unqualified names (pg_temp, searched first, may still shadow them:
    such names are also ``unresolved``). ``user_functions``: names of functions outside
    pg_catalog that the server has, which a call without a schema may reach instead of a
    built-in of the same name.
    """
    ctx = _Context(catalog, tuple(s for s in search_path if s != "pg_temp"), user_functions)
    chunks = split(sql)
    if not chunks:
        return [Statement(sql.strip(), "empty")]
    return [_statement(chunk, ctx) for chunk in chunks]


def _statement(chunk: Chunk, ctx: _Context) -> Statement:
    chunk = plain_identifiers(chunk)
    toks = chunk.tokens
    if any(t.kind in ("broken", "uident") for t in toks):
        # An unterminated quote, or a U&"…" identifier sqlglot reads as an operator.
        return _unparsable(chunk, ctx)
    first = toks[0].value
    second = toks[1].value if len(toks) > 1 else ""
    if first in _SQLGLOT or first in _SQLGLOT_MORE:
        return _parsed(chunk, ctx)
    if first in _TRANSACTION or (first == "prepare" and second == "transaction"):
        return Statement(chunk.text, "transaction", changes_session=first in _ENDS)
    if first in ("set", "reset"):
        return _setting(chunk)
    if first == "show":
        return Statement(chunk.text, "show")
    if first == "listen":
        # A notification's payload is whatever its sender put there, from any session (a
        # trigger's row_to_json(NEW), the app's own NOTIFY): what LISTEN lets in is unknown.
        why = "listens for notifications, which may carry any value"
        return Statement(chunk.text, "listen", fail_closed=why)
    if first == "unlisten":
        return Statement(chunk.text, "listen")
    if first == "notify":  # the payload can only be a literal
        return Statement(chunk.text, "notify")
    if first in ("explain", "prepare", "declare"):
        return _wrapper(chunk, ctx, first)
    if first in _FAIL:
        kind = {"do": "do", "call": "call", "execute": "execute", "fetch": "fetch"}[first]
        return _failed(chunk, ctx, kind, _FAIL[first])
    if first == "move":
        return Statement(chunk.text, "fetch")
    if first == "create" and any(t.value in _CODE for t in toks[1:5] if t.kind == "word"):
        return _failed(chunk, ctx, "ddl", f"creates code the server runs later ({_created(toks)})")
    if first == "create" and any(t.value == "as" for t in toks):
        return _parsed(chunk, ctx)
    if first in _DDL:
        return _ddl(chunk, ctx, drop=first == "drop")
    if first in _MAINTENANCE:
        return Statement(chunk.text, "other", changes_session=first == "discard")
    return _parsed(chunk, ctx)


def _created(toks: tuple[Token, ...]) -> str:
    return next(t.value for t in toks[1:5] if t.kind == "word" and t.value in _CODE)


def _sub(chunk: Chunk, start: int) -> Chunk:
    """The statement that begins at token ``start`` of ``chunk``."""
    if start >= len(chunk.tokens):
        return Chunk("", ())
    base = chunk.tokens[start].start
    return Chunk(
        chunk.text[base:],
        tuple(Token(t.kind, t.start - base, t.end - base, t.value) for t in chunk.tokens[start:]),
    )


def _wrapper(chunk: Chunk, ctx: _Context, kind: str) -> Statement:
    """EXPLAIN, PREPARE and DECLARE: the statement inside counts as run (EXPLAIN ANALYZE runs
    it, a prepared statement or a cursor runs it later, out of the analysis's sight)."""
    toks = chunk.tokens
    i = 1
    if kind == "explain":
        if i < len(toks) and toks[i].value == "(":
            depth = 0
            for i in range(1, len(toks)):
                depth += {"(": 1, ")": -1}.get(toks[i].value, 0) if toks[i].kind == "punct" else 0
                if depth == 0:
                    break
            i += 1
        while i < len(toks) and toks[i].value in ("analyze", "analyse", "verbose"):
            i += 1
    else:
        marker = "as" if kind == "prepare" else "for"
        i = next((j + 1 for j, t in enumerate(toks) if t.kind == "word" and t.value == marker), 0)
    inner = _sub(chunk, i) if i else Chunk("", ())
    if not inner.tokens:
        return _unparsable(chunk, ctx)
    body = _statement(inner, ctx)
    return Statement(
        chunk.text,
        kind,
        touches=body.touches,
        outputs=(),
        tables=body.tables,
        unresolved=body.unresolved,
        fail_closed=body.fail_closed,
        refuse=body.refuse,
        changes_session=body.changes_session,
        body=body,
    )


def _all_touched(catalog: Catalog) -> frozenset[Touch]:
    cols = catalog.every_column()
    return frozenset(Touch(c, u) for c in cols for u in (Use.OUTPUT, Use.FLOW))


def _failed(chunk: Chunk, ctx: _Context, kind: str, why: str) -> Statement:
    return Statement(
        chunk.text,
        kind,
        touches=_all_touched(ctx.catalog),
        outputs=None,
        fail_closed=why,
        changes_session=kind == "ddl",
    )


def _setting(chunk: Chunk) -> Statement:
    """SET/RESET: a value there is a literal or a name, never an expression reading a table."""
    names = [t.value for t in chunk.tokens[1:4] if t.kind in ("word", "ident")]
    names = [n for n in names if n not in ("session", "local")] or names
    name = names[0] if names else ""
    refuse = None
    strings = name in ("standard_conforming_strings", "backslash_quote", "all")
    if strings and chunk.tokens[0].value == "set":
        # Backslash escapes in plain strings would make the gateway's reading differ.
        refuse = "changes how string literals are read"
    session = name in SESSION_SETTINGS or (name == "session" and len(names) > 0)
    return Statement(chunk.text, "set", changes_session=session, refuse=refuse)


def _named_tables(chunk: Chunk, catalog: Catalog) -> list[TableName]:
    """Catalogued tables whose name occurs in ``chunk`` as an identifier (any case)."""
    found: list[TableName] = []
    for tok in chunk.tokens:
        if tok.kind in ("word", "ident"):
            for table in catalog.tables():
                if table.name.lower() == tok.value.lower() and table not in found:
                    found.append(table)
    return found


def _ddl(chunk: Chunk, ctx: _Context, *, drop: bool) -> Statement:
    """Other DDL: a catalogued table it names may be changed under the catalog (fail closed)."""
    tables = _named_tables(chunk, ctx.catalog)
    use = Use.DELETE if drop else Use.WRITE
    touches = frozenset(Touch(c, use) for t in tables for c in ctx.catalog.table(t).values())
    return Statement(
        chunk.text, "ddl", touches=touches, tables=frozenset(tables), changes_session=True
    )


def _unparsable(chunk: Chunk, ctx: _Context) -> Statement:
    low = chunk.text.lower()
    words = set(_WORD.findall(low))
    named = any(
        (t.name.lower() in words) if _WORD.fullmatch(t.name.lower()) else (t.name.lower() in low)
        for t in ctx.catalog.tables()
    )
    # A U&"…" identifier may spell a catalogued name: taken as touching everything (below),
    # so that it runs after the step-up like any other statement the gateway cannot read.
    refuse = "cannot be parsed and names a catalogued table" if named else None
    # Even without a catalogued name it may reach PII through a view or a function: it is
    # taken as touching every catalogued column (a COPY as exporting them).
    kind = "other"
    if low.lstrip().startswith("copy"):
        kind = "copy_from" if re.search(r"\bfrom\s+stdin\b", low) else "copy_to"
    why = "cannot be parsed: taken as touching every catalogued column"
    return Statement(chunk.text, kind, outputs=None, refuse=refuse, fail_closed=why)


def _classes(out: Output) -> tuple[frozenset[str], ...] | None:
    if out.columns is None:
        return None
    return tuple(frozenset(c.pii for c in lin) for _, lin in out.columns)


def _query(node: exp.Expression, walker: DmlWalker) -> tuple[str, bool, Output]:
    """A query's kind, whether it changes the session (``SELECT … INTO`` makes a table) and
    its output, its reads touched."""
    into = node.args.get("into")
    if into is None:
        out = walker.query(node, None)
        walker.touch(out.whole, Use.OUTPUT)
        return "select", False, out
    walker.stored_query(node)
    if isinstance(into.this, exp.Table):
        walker.table(into.this)
    return "ddl", True, Output((), frozenset())


def _truncate(node: exp.TruncateTable, chunk: Chunk, ctx: _Context, walker: DmlWalker) -> None:
    cascade = any(t.kind == "word" and t.value == "cascade" for t in chunk.tokens)
    for table in node.expressions:
        if isinstance(table, exp.Table):
            walker.touch(walker.catalog.table(walker.table(table)).values(), Use.DELETE)
    if cascade:  # the tables that reference these are emptied too
        walker.touch(ctx.catalog.every_column(), Use.DELETE)


def _parsed(chunk: Chunk, ctx: _Context) -> Statement:
    try:
        nodes = sqlglot.parse(chunk.text, read="postgres", error_level=sqlglot.ErrorLevel.RAISE)
    except (SqlglotError, ValueError, RecursionError):
        return _unparsable(chunk, ctx)
    if len(nodes) != 1 or nodes[0] is None or isinstance(nodes[0], exp.Command):
        return _unparsable(chunk, ctx)
    node = nodes[0]
    walker = ctx.walker(chunk.text)
    kind, where, session = "other", None, False
    out = Output((), frozenset())
    if isinstance(node, QUERIES):
        kind, session, out = _query(node, walker)
    elif isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Merge)):
        kind = type(node).__name__.lower()
        out = walker.dml(node, None)
        walker.touch(out.whole, Use.OUTPUT)
        if isinstance(node, (exp.Update, exp.Delete)):
            where = node.args.get("where") is not None
    elif isinstance(node, exp.Copy):
        kind = "copy_from" if node.args.get("kind") else "copy_to"
        out = walker.copy(node)
        if kind == "copy_from":
            out = Output((), frozenset())
    elif isinstance(node, exp.TruncateTable):
        kind = "truncate"
        _truncate(node, chunk, ctx, walker)
    elif isinstance(node, exp.Create) and isinstance(node.expression, QUERIES):
        kind, session = "ddl", True
        walker.stored_query(node.expression)
        walker.table(node.this if isinstance(node.this, exp.Table) else node.this.this)
    elif isinstance(node, (exp.Create, exp.Alter, exp.Drop)):
        return _ddl(chunk, ctx, drop=isinstance(node, exp.Drop))
    else:
        return _unparsable(chunk, ctx)
    touches = set(walker.touches)
    fail = "; ".join(walker.failures) or None
    if fail:
        touches |= _all_touched(ctx.catalog)
    return Statement(
        chunk.text,
        kind,
        touches=frozenset(touches),
        outputs=None if fail else _classes(out),
        tables=frozenset(walker.tables),
        unresolved=frozenset(walker.unresolved),
        where=where,
        explainable=kind in ("select", "insert", "update", "delete", "merge"),
        fail_closed=fail,
        changes_session=session or walker.changes_session,
    )
