"""The data-changing statements: INSERT, UPDATE, DELETE, MERGE, COPY and CREATE … AS.

A value read from a catalogued column and stored anywhere but that same column is a *flow*: the
catalog does not watch where it lands, so it counts as a read the client cannot have masked.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlglot import exp

from piigate.gateway.postgres.catalog import CatalogColumn, TableName
from piigate.gateway.postgres.sqlquery import QUERIES, QueryWalker
from piigate.gateway.postgres.sqlscope import Lineage, Output, Rel, Scope, fold
from piigate.gateway.postgres.touch import Use

__all__ = ["DmlWalker"]

_NONE: Lineage = frozenset()


class DmlWalker(QueryWalker):
    """A ``QueryWalker`` that also walks statements that change data."""

    def statement_output(self, node: exp.Expr, scope: Scope) -> Output:
        if isinstance(node, QUERIES):
            return self.query(node, scope)
        return self.dml(node, scope)

    def dml(self, node: exp.Expr, outer: Scope | None) -> Output:
        """Walk ``node``; its RETURNING list (what it gives a CTE or the client)."""
        scope = self.with_(node, outer)
        if isinstance(node, exp.Insert):
            return self.insert(node, scope)
        if isinstance(node, exp.Update):
            return self.update(node, scope)
        if isinstance(node, exp.Delete):
            return self.delete(node, scope)
        if isinstance(node, exp.Merge):
            return self.merge(node, scope)
        self.fail(f"an unknown statement form ({type(node).__name__})")
        return Output(None, self.everything())

    def target(self, node: exp.Expr, scope: Scope) -> tuple[TableName, list[str] | None]:
        """The written table (into ``scope`` under its alias) and its column list, if any."""
        names = None
        if isinstance(node, exp.Schema):
            names = [fold(i) for i in node.expressions]
            node = node.this
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            self.fail("writes to a relation the analysis cannot name")
            return TableName("", "?"), names
        table = self.table(node)
        alias = node.args.get("alias")
        scope.rels[fold(alias.this) if alias else table.name] = self.base_rel(table)
        return table, names

    def write(self, table: TableName, names: Iterable[str] | None) -> list[CatalogColumn | None]:
        """WRITE the catalogued ones of ``names`` (every one when None); per name, its entry."""
        columns = self.catalog.table(table)
        if names is None:
            self.touch(columns.values(), Use.WRITE)
            return []
        found = [columns.get(name) for name in names]
        self.touch((c for c in found if c is not None), Use.WRITE)
        return found

    def flow(self, lineage: Lineage, into: CatalogColumn | None) -> None:
        """A value stored into a column: a flow unless it stays in its own column."""
        self.touch(lineage - {into} if into is not None else lineage, Use.FLOW)

    def stored(self, values: Output, targets: list[CatalogColumn | None]) -> None:
        cols = values.columns
        if not targets or cols is None or len(cols) != len(targets):
            self.flow(values.whole, None)
            return
        for (_, lin), into in zip(cols, targets, strict=True):
            self.flow(lin, into)

    def returning(self, node: exp.Expr, scope: Scope) -> Output:
        ret = node.args.get("returning")
        if ret is None:
            return Output((), _NONE)
        out = self.project(ret.expressions, scope)
        if ret.args.get("into"):
            self.flow(out.whole, None)
        return out

    def insert(self, node: exp.Insert, scope: Scope) -> Output:
        # The source cannot see the target table, only the CTEs.
        source = node.expression
        values = (
            self.query(source, Scope({}, scope, scope.ctes))
            if source is not None
            else Output((), _NONE)
        )
        table, names = self.target(node.this, scope)
        targets = self.write(table, names)
        self.stored(values, targets)
        conflict = node.args.get("conflict")
        if isinstance(conflict, exp.OnConflict):
            scope.rels["excluded"] = Rel({}, values.whole, None, True)
            self.assignments(conflict.expressions, table, scope)
            self.filter(conflict.args.get("where"), scope)
        return self.returning(node, scope)

    def assignments(self, items: Iterable[exp.Expr], table: TableName, scope: Scope) -> None:
        """UPDATE's SET list (and ON CONFLICT's, MERGE's): WRITE the targets, FLOW the values."""
        columns = self.catalog.table(table)
        for item in items:
            left, right = item.this, item.expression
            if isinstance(left, exp.Column):
                into = columns.get(fold(left.this))
                self.write(table, [fold(left.this)])
                self.flow(self.expr(right, scope), into)
                continue
            names = None
            if isinstance(left, exp.Tuple):
                names = [fold(c.this) for c in left.expressions]
            if names is None:
                self.fail("assigns to something other than columns")
            targets = self.write(table, names)
            if isinstance(right, exp.Tuple) and names and len(right.expressions) == len(names):
                for value, into in zip(right.expressions, targets, strict=True):
                    self.flow(self.expr(value, scope), into)
            else:
                self.flow(self.expr(right, scope), None)

    def update(self, node: exp.Update, scope: Scope) -> Output:
        table, _ = self.target(node.this, scope)
        self.from_(node, scope)
        self.assignments(node.expressions, table, scope)
        self.filter(node.args.get("where"), scope)
        return self.returning(node, scope)

    def delete(self, node: exp.Delete, scope: Scope) -> Output:
        table, _ = self.target(node.this, scope)
        self.touch(self.catalog.table(table).values(), Use.DELETE)
        for source in node.args.get("using") or ():
            self.source(source, scope)
        self.filter(node.args.get("where"), scope)
        return self.returning(node, scope)

    def merge(self, node: exp.Merge, scope: Scope) -> Output:
        table, _ = self.target(node.this, scope)
        self.source(node.args["using"], scope)
        self.filter(node.args.get("on"), scope)
        whens = node.args.get("whens")
        for when in whens.expressions if whens else ():
            self.filter(when.args.get("condition"), scope)
            then = when.args.get("then")
            if isinstance(then, exp.Update):
                self.assignments(then.expressions, table, scope)
            elif isinstance(then, exp.Insert):
                cols = then.this
                names = None
                if isinstance(cols, exp.Tuple):
                    names = [_column_name(c) for c in cols.expressions]
                targets = self.write(table, names)
                values = then.expression
                items = values.expressions if isinstance(values, exp.Tuple) else [values]
                lins = [self.expr(v, scope) for v in items]
                self.stored(Output(tuple((None, x) for x in lins), _NONE.union(*lins)), targets)
            elif isinstance(then, exp.Var) and then.name.upper() == "DELETE":
                self.touch(self.catalog.table(table).values(), Use.DELETE)
            elif not (isinstance(then, exp.Var) and "NOTHING" in then.name.upper()):
                self.fail("a MERGE action the analysis does not know")
        return self.returning(node, scope)

    def copy(self, node: exp.Copy) -> Output:
        """COPY: TO exports (the rows leave as a file), FROM writes."""
        scope = self.with_(node, None)
        this = node.this
        if isinstance(this, QUERIES):
            out = self.query(this, scope)
            self.touch(out.whole, Use.EXPORT)
            return out
        table, names = self.target(this, scope)
        columns = self.catalog.table(table)
        if names is None:
            chosen = list(columns.values())
        else:
            chosen = [columns[n] for n in names if n in columns]
        if node.args.get("kind"):
            self.touch(chosen, Use.WRITE)
            return Output((), _NONE)
        self.touch(chosen, Use.EXPORT)
        if names is None:
            return Output(None, frozenset(chosen))
        cols = tuple((n, frozenset({columns[n]}) if n in columns else _NONE) for n in names)
        return Output(cols, frozenset(chosen))

    def stored_query(self, query: exp.Expr) -> Output:
        """CREATE TABLE/VIEW … AS, SELECT INTO: every value the query returns is stored."""
        out = self.query(query, None)
        self.flow(out.whole, None)
        return out


def _column_name(node: exp.Expr) -> str:
    return fold(node.this if isinstance(node, exp.Column) else node)
