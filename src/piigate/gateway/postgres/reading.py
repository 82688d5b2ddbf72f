"""What statements touch: the parser's reading, checked with the server's plan where needed.

:class:`Reader` turns SQL text into one :class:`~piigate.gateway.postgres.judge.Touches` per
statement. The parser (``analysis``) reads every statement; when it names a relation that is
not a catalogued table (a view, a table the catalog does not list, a set-returning function),
the server is asked with ``EXPLAIN (VERBOSE, FORMAT JSON)`` on a connection of the gateway's
own, which expands views and names every base column, filter and function the statement will
really use (``plan``). Answers are cached per statement shape and search path for
``ttl`` seconds, so repeated and prepared statements pay once. A plan names the partitions it
scans, not their parent: a scanned table the catalog does not list is looked up among the
descendants of catalogued tables (``ancestors``), and catalogued like them when it is one.

The plan connection is not the client's: a statement over the client's temporary objects
cannot be planned there, and is taken as touching every catalogued class (fail closed), as is
any statement whose plan cannot be had or read.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Final

import structlog

from piigate.gateway.postgres.analysis import Statement, analyse, shape
from piigate.gateway.postgres.catalog import Catalog, CatalogColumn, TableName
from piigate.gateway.postgres.judge import Touches, every_class, merge
from piigate.gateway.postgres.plan import PlanFacts, read_plan
from piigate.gateway.postgres.sqltext import lex, literal_key

__all__ = ["Ancestors", "Explain", "Reader", "Triggered"]

log = structlog.get_logger("piigate.gateway.postgres")

# Runs EXPLAIN (VERBOSE, FORMAT JSON) of a statement with a search path: the JSON text.
Explain = Callable[[str, str | None], Awaitable[str]]
# (schema, table, ancestor's schema, ancestor) for every table the given (schema, table)s are
# partitions of or inherit from (``store.pg_planning.PlanConnections.ancestors``).
Ancestors = Callable[[list[tuple[str, str]]], Awaitable[list[tuple[str, str, str, str]]]]
# Whether changing rows of the given (schema, table)s runs a user's code that no plan shows: a
# trigger, a generated column's or CHECK's function (``PlanConnections.triggered``).
Triggered = Callable[[list[tuple[str, str]]], Awaitable[bool]]
# Words that start a statement, or a data-modifying WITH query, that changes rows.
_CHANGES: Final = frozenset({"insert", "update", "delete", "merge", "truncate", "copy_from"})
_CACHE_SIZE: Final = 4096
_COPIES: Final = frozenset({"copy_to", "copy_from"})


class _Lru:
    def __init__(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl
        self.items: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()

    def get(self, key: Hashable) -> object | None:
        found = self.items.get(key)
        if found is None:
            return None
        if time.monotonic() - found[0] > self.ttl:
            del self.items[key]
            return None
        self.items.move_to_end(key)
        return found[1]

    def put(self, key: Hashable, value: object) -> None:
        self.items[key] = (time.monotonic(), value)
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


class Reader:
    def __init__(
        self,
        catalog: Catalog,
        explain: Explain | None,
        *,
        builtins: frozenset[str] = frozenset(),
        ancestors: Ancestors | None = None,
        triggered: Triggered | None = None,
        ttl: float = 60.0,
    ) -> None:
        # Grows when a plan scans a partition or an inheriting table of a catalogued one
        # (``_learn``), and never shrinks: a table detached later stays catalogued.
        self.catalog = catalog
        self.explain = explain
        self.ancestors = ancestors
        self.triggered = triggered
        # Function names only pg_catalog has (``plan.BUILTINS_QUERY``): the plan prints a
        # function on the search path without its schema, so only these are known built-ins.
        self.builtins = builtins
        self._texts = _Lru(_CACHE_SIZE, ttl)
        self._shapes = _Lru(_CACHE_SIZE, ttl)
        self._plans = _Lru(_CACHE_SIZE, ttl)
        self._triggers = _Lru(_CACHE_SIZE, ttl)  # by the set of changed tables
        self._shape_of: dict[str, str] = {}  # by ``literal_key``: a pure function, never stale

    async def read(self, sql: str, search_path: str | None) -> list[Touches]:
        """Cached twice: by the exact text (a repeated or prepared statement costs a lookup),
        then by its shape (``analysis.shape``: the analysis reads no constant it normalises), so
        a statement sent again with other constants, as a simple query carries them, is not
        parsed again. A statement the server could not plan, or that touches a catalogued
        class, is cached by its text only: its constants may be why it could not be planned,
        and its row estimate depends on them."""
        key = (sql, search_path)
        cached = self._texts.get(key)
        if isinstance(cached, list):
            return cached
        shaped = (self._shape(sql), search_path)
        cached = self._shapes.get(shaped)
        if isinstance(cached, list):
            return cached
        path = _search_path(search_path)
        try:
            statements = analyse(sql, self.catalog, search_path=path)
        except Exception as exc:  # the parser's own fault: fail closed
            log.error("pg_analysis_failed", error=type(exc).__name__)
            return [every_class("other", self.catalog, "the statement could not be analysed")]
        read = [await self._touches(s, search_path) for s in statements]
        touches = _after_changes([t for t, _ in read], self.catalog)
        self._texts.put(key, touches)
        # A statement with PII is not cached by its shape (it is read anew: its row estimate
        # depends on its constants).
        if all(planned for _, planned in read) and not any(t.any for t in touches):
            self._shapes.put(shaped, touches)
        return touches

    def cached(self, sql: str, search_path: str | None) -> list[Touches] | None:
        """What ``read`` answers from its caches alone, without waiting (None: not cached)."""
        cached = self._texts.get((sql, search_path))
        if isinstance(cached, list):
            return cached
        cached = self._shapes.get((self._shape(sql), search_path))
        return cached if isinstance(cached, list) else None

    def _shape(self, sql: str) -> str:
        """``shape(sql)``, found by ``sqltext.literal_key`` when the text is plainly written:
        texts with the same key have the same shape, and the key costs a few passes of
        regular expressions where the shape lexes the text."""
        key = literal_key(sql)
        if key is None:
            return shape(sql)
        found = self._shape_of.get(key)
        if found is None:
            if len(self._shape_of) >= _CACHE_SIZE:
                self._shape_of.clear()
            self._shape_of[key] = found = shape(sql)
        return found

    async def _touches(self, statement: Statement, search_path: str | None) -> tuple[Touches, bool]:
        """What ``statement`` touches; False when it needed a plan the server did not give."""
        facts: PlanFacts | None = None
        rows: int | None = None
        needs_plan = (
            statement.unresolved and statement.refuse is None and statement.fail_closed is None
        )
        if needs_plan and statement.kind == "declare" and statement.body is not None:
            # A cursor's query, read as a statement of its own (what its FETCHes return).
            body, body_planned = await self._touches(statement.body, search_path)
            return dataclasses.replace(body, kind="declare", outputs=()), body_planned
        if needs_plan and statement.kind in _COPIES and self.explain is not None:
            copied = await self._copy(statement, search_path)
            if copied is not None:
                if statement.kind == "copy_from" and await self._triggered(copied.tables):
                    return every_class(statement.kind, self.catalog, "fires triggers"), True
                return copied, True
        if needs_plan:
            if not statement.explainable or self.explain is None:
                why = "names relations the gateway cannot check"
                return every_class(statement.kind, self.catalog, why), True
            planned = await self._plan(statement, search_path)
            if planned is None:
                why = "the server could not plan the statement"
                return every_class(statement.kind, self.catalog, why), False
            facts, rows = planned
        touches = merge(statement, facts, self.catalog)
        if await self._fires_triggers(statement, facts):
            # What a trigger's function reads, or copies where the statement can read it back
            # (RETURNING, a notice), is not in the statement: every class, as for a function.
            every = self.catalog.classes()
            touches = dataclasses.replace(
                touches,
                reads=every,
                unmaskable=every,
                outputs=None,
                fail_closed="fires triggers",
                changes_session=True,
            )
        if touches.any and statement.explainable and self.explain is not None:
            if rows is None:  # the plan came from another text of the same shape
                rows = await self._rows(statement, search_path)
            bounded = statement.where is not False
            touches = dataclasses.replace(touches, rows=rows, bounded=bounded)
        return touches, True

    async def _plan(
        self, statement: Statement, search_path: str | None
    ) -> tuple[PlanFacts, int | None] | None:
        """The plan's facts (cached per shape), and the row estimate when planned just now
        (constants change it: it is only for this very text)."""
        assert self.explain is not None
        key = (shape(statement.text), search_path)
        cached = self._plans.get(key)
        if isinstance(cached, PlanFacts):
            return cached, None
        try:
            plan = json.loads(await self.explain(statement.text, search_path))
            facts = read_plan(plan, self.catalog, self.builtins)
            if await self._learn(facts.relations):
                facts = read_plan(plan, self.catalog, self.builtins)
        except Exception as exc:  # an error of the statement, or of the plan connection
            log.info("pg_plan_unavailable", error=type(exc).__name__)
            return None
        self._plans.put(key, facts)
        return facts, estimate(plan)

    async def _fires_triggers(self, statement: Statement, facts: PlanFacts | None) -> bool:
        """Whether ``statement`` changes rows of a table where a user's code runs (``triggered``).
        The changed tables are the plan's, or (the parser resolved every name: catalogued
        tables only) every table a statement that may change rows names."""
        if self.triggered is None or statement.fail_closed is not None:
            return False
        if facts is not None:
            changed = {m.table for m in facts.modifications}
        elif statement.kind in _CHANGES or _names_a_change(statement.text):
            changed = set(statement.tables)
        else:
            return False
        return await self._triggered(changed)

    async def _triggered(self, tables: Iterable[TableName]) -> bool:
        """``triggered`` for ``tables``, cached for ``ttl`` seconds (as the plans are)."""
        key = frozenset(tables)
        if not key or self.triggered is None:
            return False
        cached = self._triggers.get(key)
        if isinstance(cached, bool):
            return cached
        fires = await self.triggered([(t.schema, t.name) for t in key])
        self._triggers.put(key, fires)
        return fires

    async def _learn(self, relations: Iterable[TableName]) -> bool:
        """Catalog the ``relations`` that are partitions of, or inherit from, catalogued tables
        (with their catalogued columns: the rows are the catalogued table's, or its child's
        under the same column); True if any was new. A plan names the partitions it scans, not
        their parent, and a client may name a partition itself."""
        unknown = [t for t in relations if not self.catalog.table(t)]
        if not unknown or self.ancestors is None:
            return False
        found: dict[TableName, dict[str, CatalogColumn]] = {}
        for schema, name, up_schema, up_name in await self.ancestors(
            [(t.schema, t.name) for t in unknown]
        ):
            table = TableName(schema, name)
            for column, catalogued in self.catalog.table(TableName(up_schema, up_name)).items():
                found.setdefault(table, {})[column] = dataclasses.replace(catalogued, table=table)
        if not found:
            return False
        log.info("pg_catalog_inherited", tables=sorted(str(t) for t in found))
        self.catalog = Catalog({**self.catalog.columns, **found})
        return True

    async def _copy(self, statement: Statement, search_path: str | None) -> Touches | None:
        """A COPY cannot be planned, but what it copies can: its query (``COPY (query) TO``),
        or its table read whole (``SELECT * FROM table``), whose plan names the relations the
        server resolves the name to (a view's base tables too). Everything a ``COPY TO``
        reads is exported; a ``COPY FROM`` writes every catalogued column of those relations.
        None when there is no such probe: the caller fails closed."""
        probe = copy_probe(statement)
        if probe is None:
            return None
        planned = await self._plan(dataclasses.replace(statement, text=probe), search_path)
        if planned is None:
            return None
        facts = planned[0]
        if facts.functions:
            return every_class(statement.kind, self.catalog, "calls " + ", ".join(facts.functions))
        tables = tuple(sorted(facts.relations))
        if statement.kind == "copy_from":
            written = frozenset(c for t in facts.relations for c in self.catalog.classes_of(t))
            return Touches(statement.kind, writes=written, tables=tables)
        read = frozenset(c.pii for c in facts.reads) | frozenset(
            c for t in facts.whole_rows for c in self.catalog.classes_of(t)
        )
        return Touches(statement.kind, reads=read, unmaskable=read, exports=read, tables=tables)

    async def _rows(self, statement: Statement, search_path: str | None) -> int | None:
        assert self.explain is not None
        try:
            return estimate(json.loads(await self.explain(statement.text, search_path)))
        except Exception as exc:  # no estimate: the risk counts it as one row
            log.info("pg_plan_unavailable", error=type(exc).__name__)
            return None


def _names_a_change(sql: str) -> bool:
    """Whether ``sql`` holds a word that starts a change of rows (a data-modifying WITH query);
    lexed only when the text holds such a word at all, which most reads do not."""
    low = sql.lower()
    if not any(word in low for word in _CHANGES):
        return False
    return any(t.kind == "word" and t.value in _CHANGES for t in lex(sql))


# Statements that read no relation, whatever the search path: nothing to read anew.
_PATHLESS: Final = frozenset({"transaction", "empty", "set", "show"})


def _after_changes(touches: list[Touches], catalog: Catalog) -> list[Touches]:
    """``touches``, those that follow one that may change the session in the same query text
    taken as touching every class: they were read with the search path in force before the
    text, and the server runs each with the one the statements before it left."""
    out: list[Touches] = []
    changed = False
    for touched in touches:
        if changed and touched.kind not in _PATHLESS and touched.fail_closed is None:
            why = "follows a statement that may change how it reads (the search path)"
            touched = every_class(touched.kind, catalog, why)
        out.append(touched)
        changed = changed or touched.changes_session
    return out


def copy_probe(statement: Statement) -> str | None:
    """What to plan for a COPY: its query, or ``SELECT * FROM`` its one table."""
    tokens = lex(statement.text)
    if len(tokens) < 2 or tokens[0].value != "copy":
        return None
    if tokens[1].value == "(":
        depth = 0
        for token in tokens[1:]:
            if token.kind == "punct" and token.value == "(":
                depth += 1
            elif token.kind == "punct" and token.value == ")":
                depth -= 1
                if depth == 0:
                    return statement.text[tokens[1].end : token.start]
        return None
    if len(statement.tables) != 1:
        return None
    (table,) = statement.tables
    name = _quote(table.name)
    if table.schema:
        name = f"{_quote(table.schema)}.{name}"
    return f"SELECT * FROM {name}"  # noqa: S608 (a quoted identifier, planned, never run)


def _quote(part: str) -> str:
    return '"' + part.replace('"', '""') + '"'


def estimate(plan: object) -> int | None:
    """The rows a statement reads (its top node's estimate) or changes (the input of its
    ModifyTable node), from ``EXPLAIN (FORMAT JSON)``."""
    try:
        node = plan[0]["Plan"]  # type: ignore[index]
        if node.get("Node Type") == "ModifyTable" and node.get("Plans"):
            node = node["Plans"][0]
        return max(0, int(node["Plan Rows"]))
    except (LookupError, TypeError, ValueError, AttributeError):
        return None


def _search_path(text: str | None) -> tuple[str, ...]:
    if not text:
        return ("public",)
    parts = [p.strip().strip('"') for p in text.split(",")]
    return tuple(p for p in parts if p and p != "$user") or ("public",)
