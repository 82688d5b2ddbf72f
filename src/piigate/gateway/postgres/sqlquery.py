"""Queries: WITH, FROM, the select list, set operations, VALUES, and the clauses that pick rows.

A query's result columns are not touched here: it returns their lineage (``Output``) to its
consumer, which knows whether they reach the client, decide rows, or are stored. Clauses that
decide rows (WHERE, JOIN ON, GROUP BY, HAVING, ORDER BY, DISTINCT ON, LIMIT, windows) are
touched as FILTER on the spot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from sqlglot import exp

from piigate.gateway.postgres.sqlscope import Lineage, Output, Rel, Scope, Walker, fold
from piigate.gateway.postgres.touch import Use

__all__ = ["QUERIES", "QueryWalker"]

QUERIES: Final = (exp.Select, exp.SetOperation, exp.Values, exp.Subquery)
_NONE: Final[Lineage] = frozenset()


class QueryWalker(Walker):
    """A ``Walker`` that walks queries."""

    def with_(self, node: exp.Expr, scope: Scope | None) -> Scope:
        """A scope holding ``node``'s CTEs (a WITH on any statement)."""
        ctes = dict(scope.ctes) if scope else {}
        inner = Scope({}, scope, ctes)
        with_ = node.args.get("with_")
        if with_ is None:
            return inner
        for cte in with_.expressions:
            alias = cte.args["alias"]
            name = fold(alias.this)
            aliases = [fold(c) for c in alias.columns]
            body = cte.this
            if with_.args.get("recursive"):
                # The recursive part reads the CTE itself: widen until the lineage stops growing.
                ctes[name] = Rel({}, _NONE, None, True)
                for _ in range(4):
                    before = ctes[name]
                    ctes[name] = Rel.of(self.statement_output(body, inner), aliases)
                    if ctes[name].whole == before.whole and not before.fuzzy:
                        break
                ctes[name] = Rel(ctes[name].named, ctes[name].whole, None, True)
            else:
                ctes[name] = Rel.of(self.statement_output(body, inner), aliases)
        return inner

    def statement_output(self, node: exp.Expr, scope: Scope) -> Output:
        """A CTE body: a query, or a data-changing statement (its RETURNING)."""
        if isinstance(node, QUERIES):
            return self.query(node, scope)
        self.fail(f"an unknown statement inside a query ({type(node).__name__})")
        return Output(None, self.everything())

    def query(self, node: exp.Expr, outer: Scope | None) -> Output:
        if isinstance(node, exp.Subquery):
            return self.query(node.this, outer)
        scope = self.with_(node, outer)
        if isinstance(node, exp.SetOperation):
            left = self.query(node.this, scope)
            right = self.query(node.expression, scope)
            if isinstance(node, (exp.Except, exp.Intersect)):
                self.touch(right.whole, Use.FILTER)  # the right side decides which rows
            out = _merge(left, right)
            self.modifiers(node, Scope({}, scope, scope.ctes), out)
            return out
        if isinstance(node, exp.Values):
            rows = [tuple(self.expr(v, scope) for v in row.expressions) for row in node.expressions]
            width = max((len(r) for r in rows), default=0)
            cols = tuple(
                (f"column{i + 1}", frozenset().union(*(r[i] for r in rows if i < len(r))))
                for i in range(width)
            )
            return Output(cols, frozenset().union(*(lin for _, lin in cols)))
        if not isinstance(node, exp.Select):
            self.fail(f"an unknown query form ({type(node).__name__})")
            return Output(None, _NONE)
        self.from_(node, scope)
        return self.select(node, scope)

    def from_(self, node: exp.Expr, scope: Scope) -> None:
        """The relations of FROM, JOIN (and UPDATE's FROM, DELETE's USING) into ``scope``."""
        sources: list[exp.Expr] = []
        from_ = node.args.get("from_")
        if from_ is not None:
            sources.append(from_.this)
            sources.extend(from_.expressions)
        joins = list(node.args.get("joins") or ())
        sources.extend(j.this for j in joins)
        sources.extend(node.args.get("laterals") or ())
        for source in sources:
            self.source(source, scope)
        for join in joins:
            self.filter(join.args.get("on"), scope)
            for name in join.args.get("using") or ():
                self.touch(self.lookup(fold(name), scope), Use.FILTER)

    def source(self, node: exp.Expr, scope: Scope) -> None:
        alias_node = node.args.get("alias")
        alias = fold(alias_node.this) if isinstance(alias_node, exp.TableAlias) else ""
        aliases = (
            [fold(c) for c in alias_node.columns] if isinstance(alias_node, exp.TableAlias) else []
        )
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            name = fold(node.this)
            if not node.args.get("db") and name in scope.ctes:
                rel = scope.ctes[name]
            else:
                rel = self.base_rel(self.table(node))
            if aliases:
                rel = Rel.of(Output(rel.columns, rel.whole), aliases)
            scope.rels[alias or name] = rel
            self.filter(node.args.get("sample"), scope)
            return
        if isinstance(node, exp.Table):  # a function in FROM: its rows come from its arguments
            func, db = node.this, node.args.get("db")
            if isinstance(func, exp.Func) and db is not None:
                lin = self.call(func, fold(db), scope)
            else:
                lin = self.expr(func, scope)
            scope.rels[alias or fold(getattr(node.this, "name", ""))] = Rel(
                {a: lin for a in aliases}, lin, None, True
            )
            return
        if isinstance(node, exp.Lateral):
            inner = node.this
            if isinstance(inner, QUERIES):
                rel = Rel.of(self.query(inner, scope), aliases)
                scope.rels[alias or f"?{len(scope.rels)}"] = rel
            else:  # LATERAL f(…): rows from its arguments
                lin = self.expr(inner, scope)
                scope.rels[alias or f"?{len(scope.rels)}"] = Rel(
                    {a: lin for a in aliases}, lin, None, True
                )
            return
        if isinstance(node, exp.Unnest):
            lin = frozenset().union(*(self.expr(e, scope) for e in node.expressions))
            scope.rels[alias or "unnest"] = Rel({a: lin for a in aliases}, lin, None, True)
            return
        if isinstance(node, QUERIES):
            rel = Rel.of(self.query(node, scope), aliases)
            scope.rels[alias or f"?{len(scope.rels)}"] = rel
            return
        self.fail(f"an unknown relation form ({type(node).__name__})")
        scope.rels[f"?{len(scope.rels)}"] = Rel({}, self.everything(), None, True)

    def select(self, node: exp.Select, scope: Scope) -> Output:
        # USING and NATURAL merge columns, so a star's positions are not the relations' own.
        joins = node.args.get("joins") or ()
        merged = any(j.args.get("using") or j.args.get("method") for j in joins)
        out = self.project(node.expressions, scope, merged=merged)
        self.filter(node.args.get("where"), scope)
        self.filter(node.args.get("having"), scope)
        self.filter(node.args.get("qualify"), scope)
        for window in node.args.get("windows") or ():
            self.filter(window, scope)
        distinct = node.args.get("distinct")
        if isinstance(distinct, exp.Distinct):
            self.filter(distinct.args.get("on"), scope)
        self.modifiers(node, scope, out)
        return out

    def project(self, items: Iterable[exp.Expr], scope: Scope, *, merged: bool = False) -> Output:
        """A select list or RETURNING: each item's name and lineage (stars expanded)."""
        cols: list[tuple[str | None, Lineage]] | None = []
        every: list[Lineage] = []
        for item in items:
            if isinstance(item, exp.Star) or (
                isinstance(item, exp.Column) and isinstance(item.this, exp.Star)
            ):
                if isinstance(item, exp.Star):
                    rels = list(scope.rels.values())
                else:
                    found = self.find_rel(fold(item.args["table"]), scope)
                    rels = [found] if found else []
                for rel in rels:
                    every.append(rel.whole)
                    if cols is not None and rel.columns is not None and not merged:
                        cols.extend(rel.columns)
                    else:
                        cols = None
                continue
            lin = self.expr(item.unalias() if isinstance(item, exp.Alias) else item, scope)
            every.append(lin)
            if cols is not None:
                name = fold(item.args["alias"]) if isinstance(item, exp.Alias) else _name_of(item)
                cols.append((name, lin))
        return Output(tuple(cols) if cols is not None else None, frozenset().union(*every))

    def modifiers(self, node: exp.Expr, scope: Scope, out: Output) -> None:
        """GROUP BY, ORDER BY, LIMIT, OFFSET: they decide rows; a bare name or number may be an
        output column (by alias or position) as well as an input one."""
        by: list[exp.Expr] = []
        for key in ("group", "order"):
            clause = node.args.get(key)
            if clause is not None:
                by.extend(clause.expressions)
        for item in by:
            item = item.this if isinstance(item, exp.Ordered) else item
            self.filter(item, scope)
            if isinstance(item, exp.Literal) and not item.is_string:
                pos = int(item.name) if item.name.isdigit() else 0
                if out.columns is None or not 0 < pos <= len(out.columns):
                    self.touch(out.whole, Use.FILTER)
                else:
                    self.touch(out.columns[pos - 1][1], Use.FILTER)
            elif isinstance(item, exp.Column) and not item.args.get("table"):
                name = fold(item.this)
                for col_name, lin in out.columns or ():
                    if col_name == name:
                        self.touch(lin, Use.FILTER)
                if out.columns is None:
                    self.touch(out.whole, Use.FILTER)
        for key in ("limit", "offset"):
            clause = node.args.get(key)
            if clause is not None:
                self.filter(clause.args.get("expression") or clause.this, scope)


def _merge(left: Output, right: Output) -> Output:
    """UNION/INTERSECT/EXCEPT: position i carries what position i of either side carries."""
    whole = left.whole | right.whole
    if left.columns is None or right.columns is None or len(left.columns) != len(right.columns):
        return Output(None, whole)
    cols = tuple((n, lin | r) for (n, lin), (_, r) in zip(left.columns, right.columns, strict=True))
    return Output(cols, whole)


def _name_of(item: exp.Expr) -> str | None:
    if isinstance(item, exp.Column):
        return fold(item.this)
    if isinstance(item, exp.Dot):
        return fold(item.expression) if isinstance(item.expression, exp.Identifier) else None
    return None
