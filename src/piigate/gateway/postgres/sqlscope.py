"""Where each catalogued column goes in one parsed query: the scopes and lineage walk.

Every expression is reduced to its *lineage*: the catalogued columns its value may carry. A
relation in FROM (table, CTE, subquery, function) is a ``Rel`` that answers a column name or a
whole-row reference with a lineage. The walk records only the uses it decides on the spot
(filters, flows, failures); a query hands its result columns' lineage to its consumer, which
touches them as it uses them: the statement's result (OUTPUT), a WHERE (FILTER), an INSERT
(FLOW), or nothing yet (a CTE or derived table, touched when referenced).

Names are resolved as PostgreSQL does, but where it cannot be sure (an unqualified name that a
table of unknown columns may hold, a name that is both a column and a relation) every candidate
is taken.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from sqlglot import exp

from piigate.gateway.postgres.builtins import (
    ALLOWED,
    BLIND,
    ERROR_QUOTING,
    FLOWS,
    TEXT_TYPES,
)
from piigate.gateway.postgres.catalog import Catalog, CatalogColumn, TableName
from piigate.gateway.postgres.touch import Touch, Use

__all__ = ["Lineage", "Output", "Rel", "Scope", "Walker", "fold"]

Lineage = frozenset[CatalogColumn]
_NONE: Final[Lineage] = frozenset()
_QUERIES: Final = (exp.Select, exp.SetOperation, exp.Values, exp.Subquery)


def fold(ident: exp.Expr | str | None) -> str:
    """An identifier as the server names it: unquoted lower-cased, quoted kept."""
    if ident is None:
        return ""
    if isinstance(ident, str):
        return ident.lower()
    if isinstance(ident, exp.Identifier):
        return str(ident.this) if ident.quoted else str(ident.this).lower()
    return ident.name.lower()


@dataclass(frozen=True, slots=True)
class Output:
    """A query's result columns: positional (name, lineage) when known, and all of it."""

    columns: tuple[tuple[str | None, Lineage], ...] | None
    whole: Lineage


@dataclass(frozen=True, slots=True)
class Rel:
    """What a relation in FROM gives to names: per column, and as a whole row."""

    named: Mapping[str, Lineage]
    whole: Lineage
    columns: tuple[tuple[str | None, Lineage], ...] | None = None
    fuzzy: bool = False  # any name may be any of its columns (alias lists over unknown shapes)

    def lookup(self, name: str) -> Lineage:
        return self.whole if self.fuzzy else self.named.get(name, _NONE)

    def surely_has(self, name: str) -> bool:
        return name in self.named and not self.fuzzy

    @staticmethod
    def of(output: Output, aliases: list[str] | None = None) -> Rel:
        cols = output.columns
        if aliases:
            if cols is None:
                return Rel({a: output.whole for a in aliases}, output.whole, None, True)
            cols = tuple(
                (aliases[i] if i < len(aliases) else n, lin) for i, (n, lin) in enumerate(cols)
            )
        if cols is None:
            return Rel({}, output.whole, None, True)
        named: dict[str, Lineage] = {}
        for name, lin in cols:
            if name is not None:
                named[name] = named.get(name, _NONE) | lin
        return Rel(named, output.whole, cols)


@dataclass
class Scope:
    rels: dict[str, Rel]
    parent: Scope | None
    ctes: dict[str, Rel]


@dataclass
class Walker(ABC):
    """One statement's walk; ``touches``/``failures`` collect what it decided. Queries nested
    in expressions are walked by the subclass (``sqlquery.QueryWalker``)."""

    catalog: Catalog
    search_path: tuple[str, ...]
    text: str
    user_functions: frozenset[str] = frozenset()
    touches: set[Touch] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    tables: set[TableName] = field(default_factory=set)
    unresolved: set[TableName] = field(default_factory=set)
    # It calls set_config, which may change the search path (the server's, which the gateway
    # must then read again) whatever the setting's name looks like here.
    changes_session: bool = False

    def touch(self, lineage: Iterable[CatalogColumn], use: Use) -> None:
        self.touches.update(Touch(c, use) for c in lineage)

    def fail(self, why: str) -> None:
        if why not in self.failures:
            self.failures.append(why)

    # Tables ----------------------------------------------------------------------------------

    def table(self, node: exp.Table) -> TableName:
        """The catalogued table ``node`` names, or its name (schema "" when unqualified)."""
        name, schema = fold(node.args.get("this")), fold(node.args.get("db"))
        if node.args.get("catalog") is not None:
            self.fail("a relation named across databases")
        if schema:
            found = TableName(schema, name)
            self.tables.add(found)
            if not self.catalog.table(found):
                self.unresolved.add(found)
            return found
        # A temporary table (pg_temp, searched first) or one in an earlier schema may shadow the
        # catalogued one: the session asks the server which it is.
        self.unresolved.add(TableName("", name))
        for schema in self.search_path:
            found = TableName(schema, name)
            if self.catalog.table(found):
                self.tables.add(found)
                return found
        self.tables.add(TableName("", name))
        return TableName("", name)

    def base_rel(self, table: TableName) -> Rel:
        columns = self.catalog.table(table)
        named = {name: frozenset({col}) for name, col in columns.items()}
        return Rel(named, frozenset(columns.values()))

    # Functions -------------------------------------------------------------------------------

    def function(self, node: exp.Func, schema: str | None) -> str:
        """The called function's folded name; a call outside the trusted built-ins fails closed."""
        if isinstance(node, exp.Anonymous):
            this = node.this
            name = fold(this) if isinstance(this, exp.Identifier) else str(this).lower()
        else:
            start, end = node.meta.get("start"), node.meta.get("end")
            if start is None or end is None:
                return ""  # SQL syntax (CAST, EXTRACT, TRIM…), which the grammar itself maps
            raw = self.text[start : end + 1]
            name = raw[1:-1].replace('""', '"') if raw.startswith('"') else raw.lower()
        shadowable = self.search_path[:1] != ("pg_catalog",) and "pg_catalog" in self.search_path
        trusted = name in ALLOWED or name in FLOWS or name in BLIND
        if schema not in (None, "pg_catalog") or not trusted:
            qualified = f"{schema}.{name}" if schema else name
            self.fail(f"calls a function outside pg_catalog: {qualified}")
        elif schema is None and (name in self.user_functions or shadowable):
            self.fail(f"calls a function a user function may shadow: {name}")
        if name in BLIND:
            self.fail(f"{name} runs SQL given as text")
        if name == "set_config":
            self.changes_session = True
        return name

    # Expressions ------------------------------------------------------------------------------

    def expr(self, node: exp.Expr | None, scope: Scope) -> Lineage:
        """The lineage of ``node``'s value; records the uses decided inside it."""
        if node is None:
            return _NONE
        if isinstance(node, exp.Column):
            return self.column(node, scope)
        if isinstance(node, _QUERIES):
            return self.query(node, scope).whole
        if isinstance(node, exp.Dot):
            return self.dot(node, scope)
        if isinstance(node, exp.Window):
            for part in ("partition_by", "order", "spec"):
                self.filter(node.args.get(part), scope)
            return self.expr(node.this, scope)
        if isinstance(node, exp.Case):
            for branch in node.args.get("ifs") or ():
                self.filter(branch.this, scope)
            lin = self.expr(node.this, scope) | self.expr(node.args.get("default"), scope)
            for branch in node.args.get("ifs") or ():
                lin |= self.expr(branch.args.get("true"), scope)
            return lin
        if isinstance(node, exp.Filter):
            self.filter(node.expression, scope)
            return self.expr(node.this, scope)
        lin = _NONE
        for child in node.iter_expressions():
            lin |= self.expr(child, scope)
        if isinstance(node, exp.Cast):
            self.cast(node, lin)
        elif isinstance(node, exp.Func):
            name = self.function(node, None)
            if name in FLOWS or name in ERROR_QUOTING:
                self.touch(lin, Use.FLOW)
        return lin

    def filter(self, node: exp.Expr | list[exp.Expr] | None, scope: Scope) -> None:
        for item in node if isinstance(node, list) else [node]:
            self.touch(self.expr(item, scope), Use.FILTER)

    def cast(self, node: exp.Cast, lin: Lineage) -> None:
        to = node.args.get("to")
        if isinstance(to, exp.DataType) and to.this == exp.DataType.Type.ARRAY:
            inner = to.expressions
            to = inner[0] if inner else to
        kind = to.this if isinstance(to, exp.DataType) else None
        if kind == exp.DataType.Type.USERDEFINED:
            # A type outside the built-ins may come with its own input function or cast.
            self.fail("casts to a type outside pg_catalog")
        elif not isinstance(kind, exp.DataType.Type) or kind.name not in TEXT_TYPES:
            # A value that does not fit the type is quoted in the error message.
            self.touch(lin, Use.FLOW)

    def dot(self, node: exp.Dot, scope: Scope) -> Lineage:
        target, field_ = node.this, node.expression
        if isinstance(field_, exp.Func):
            schema = fold(target) if isinstance(target, exp.Identifier) else "?"
            return self.call(field_, schema, scope)
        # (c).ssn: only that field of the row, when c is a relation.
        inner = target.this if isinstance(target, exp.Paren) else target
        if isinstance(inner, exp.Column) and not inner.table and isinstance(field_, exp.Identifier):
            rel = self.find_rel(fold(inner.this), scope)
            if rel is not None:
                return rel.lookup(fold(field_)) | self.lookup(fold(inner.this), scope, rows=False)
        return self.expr(target, scope)

    def call(self, node: exp.Func, schema: str | None, scope: Scope) -> Lineage:
        """A call with an explicit schema (``public.f(…)``, ``FROM public.f(…)``)."""
        lin = _NONE
        for child in node.iter_expressions():
            lin |= self.expr(child, scope)
        name = self.function(node, schema)
        if name in FLOWS or name in ERROR_QUOTING:
            self.touch(lin, Use.FLOW)
        return lin

    def find_rel(self, alias: str, scope: Scope | None) -> Rel | None:
        while scope is not None:
            if alias in scope.rels:
                return scope.rels[alias]
            scope = scope.parent
        return None

    def column(self, node: exp.Column, scope: Scope) -> Lineage:
        table = fold(node.args.get("table")) if node.args.get("table") else ""
        this = node.this
        if table:
            rel = self.find_rel(table, scope)
            if rel is None and node.args.get("db") is not None:
                named = exp.Table(this=node.args["table"], db=node.args["db"])
                rel = self.base_rel(self.table(named))
            if rel is None:  # the server rejects it; fail closed all the same
                rel = self._by_name(table)
            return rel.whole if isinstance(this, exp.Star) else rel.lookup(fold(this))
        if isinstance(this, exp.Star):
            return self.star(scope)
        return self.lookup(fold(this), scope)

    def _by_name(self, table: str) -> Rel:
        rels = [self.base_rel(t) for t in self.catalog.by_table_name(table)]
        named: dict[str, Lineage] = {}
        for rel in rels:
            for key, lin in rel.named.items():
                named[key] = named.get(key, _NONE) | lin
        return Rel(named, _NONE.union(*(r.whole for r in rels)))

    def lookup(self, name: str, scope: Scope | None, *, rows: bool = True) -> Lineage:
        """An unqualified name: a column of some relation in reach, or (``rows``) a whole row."""
        lin = _NONE
        while scope is not None:
            sure = False
            for alias, rel in scope.rels.items():
                lin |= rel.lookup(name)
                sure = sure or rel.surely_has(name)
                if rows and alias == name:
                    lin |= rel.whole  # SELECT c FROM customers c: the whole row
            if sure:
                break
            scope = scope.parent
        return lin

    def star(self, scope: Scope) -> Lineage:
        lin = _NONE
        for rel in scope.rels.values():
            lin |= rel.whole
        return lin

    # Queries (sqlquery.QueryWalker) ----------------------------------------------------------

    @abstractmethod
    def query(self, node: exp.Expr, outer: Scope | None) -> Output:
        """The result columns of a query nested in an expression."""

    def everything(self) -> Lineage:
        """Every catalogued column: what an unknown construct may reach."""
        return self.catalog.every_column()
