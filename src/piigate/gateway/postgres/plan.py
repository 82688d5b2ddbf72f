"""What the server's plan says a statement touches: a reader of EXPLAIN (VERBOSE, FORMAT JSON).

A parser that reads a statement differently from the server is a bypass, so the gateway also
asks the server. Its plan has views expanded, ``search_path`` and temporary objects resolved, and
every expression deparsed with the range-table alias of each column (``alias.column``; bare
``column`` in the target lists of a plan over a single relation). This module reads that JSON,
without I/O, into the catalogued columns read, filtered on and carried to each output column.

It fails closed. A key it does not know is read as an expression. A reference it cannot follow
counts every catalogued column it could name: an unknown alias or a bare name, every catalogued
column of that name in every scanned relation; a subquery or CTE column (the plan does not name
its columns), every column of that subquery's output; an expression it cannot tokenise, a
parameter or subplan it cannot find, every catalogued column of every scanned relation. A plan
whose shape it cannot read at all raises ``PlanError`` (the caller then treats the statement as
unanalysable).

Upper nodes deparse a reference to a child's column as the child's expression, and for
``Append``-like nodes (UNION, partitions) as the *first* member's expression only: an output
position is therefore also matched by text against each child's outputs, and an ``Append``
position carries what any member carries there.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from piigate.gateway.postgres.builtins import ALLOWED
from piigate.gateway.postgres.catalog import Catalog, CatalogColumn, TableName
from piigate.gateway.postgres.plan_text import (
    PLAIN_REFERENCE,
    contains_expression,
    strip_parens,
    tokens,
)

__all__ = ["BUILTINS_QUERY", "Modification", "PlanError", "PlanFacts", "read_plan"]

Cols = frozenset[CatalogColumn]
_NONE: Final[Cols] = frozenset()

# Function names that only pg_catalog defines (pass them as ``builtins``): any other name printed
# unqualified may be a user function on the search_path.
BUILTINS_QUERY: Final = (
    "SELECT proname FROM pg_catalog.pg_proc GROUP BY proname "
    "HAVING bool_and(pronamespace = 'pg_catalog'::regnamespace)"
)

# Keys whose values are names or settings, not expressions. Every other string is read.
_NOT_EXPRESSIONS: Final = frozenset(
    {
        "Node Type", "Parent Relationship", "Subplan Name", "Strategy", "Partial Mode",
        "Join Type", "Relation Name", "Schema", "Alias", "Index Name", "Scan Direction",
        "CTE Name", "Function Name", "Operation", "Command", "Sort Method", "Sort Space Type",
        "Conflict Resolution", "Conflict Arbiter Indexes", "Target Tables", "Cache Mode",
        "Relations",
    }
)  # fmt: skip
_CARRIED: Final = frozenset({"Output", "Function Call", "Table Function Call"})
_POSITIONAL_NOT: Final = frozenset({"InitPlan", "SubPlan"})
_RETURNS: Final = re.compile(r"\$\d+")


class PlanError(ValueError):
    """The JSON is not an EXPLAIN (FORMAT JSON) answer this reader can follow."""


@dataclass(frozen=True, slots=True)
class Modification:
    operation: str
    table: TableName
    rows: float | None  # Plan Rows of the ModifyTable's input


@dataclass(frozen=True, slots=True)
class PlanFacts:
    relations: frozenset[TableName]
    reads: Cols
    filters: Cols
    # Per entry of the top node's Output: the PII classes it may carry. Trailing entries may be
    # sort/group keys the client never sees (the caller keeps the first RowDescription columns).
    outputs: tuple[frozenset[str], ...] | None
    functions: frozenset[str]
    whole_rows: frozenset[TableName]
    modified: TableName | None
    operation: str | None
    rows: float | None
    modifications: tuple[Modification, ...] = ()  # every ModifyTable (data-modifying CTEs too)


def _plans(node: Mapping[str, object]) -> list[Mapping[str, object]]:
    kids = node.get("Plans", [])
    if not isinstance(kids, list) or not all(isinstance(k, dict) for k in kids):
        raise PlanError("a plan node's children are not a list of nodes")
    return kids


def _walk(node: Mapping[str, object]) -> Iterator[Mapping[str, object]]:
    yield node
    for kid in _plans(node):
        yield from _walk(kid)


def _expressions(node: Mapping[str, object]) -> Iterator[tuple[str, str]]:
    for key, value in node.items():
        if key in _NOT_EXPRESSIONS or key == "Plans":
            continue
        if isinstance(value, str):
            yield key, value
        elif isinstance(value, list):
            yield from ((key, v) for v in value if isinstance(v, str))


class _Reader:
    def __init__(
        self, roots: list[Mapping[str, object]], catalog: Catalog, builtins: Collection[str]
    ):
        self.catalog, self.builtins = catalog, builtins
        self.sources: dict[str, tuple[str, Mapping[str, object]]] = {}
        self.ctes: dict[str, list[Mapping[str, object]]] = {}
        self.subplans: dict[str, list[Mapping[str, object]]] = {}
        self.params: dict[str, list[tuple[Mapping[str, object], int]]] = {}
        self.relations: set[TableName] = set()
        self.under: dict[int, frozenset[TableName]] = {}
        self.whole_rows: set[TableName] = set()
        self.functions: set[str] = set()
        self.memo: dict[int, list[Cols] | None] = {}
        self.modifications: list[Modification] = []
        # Nodes whose outputs leave the plan: to the client, or into a modified table.
        self.inputs: dict[int, Mapping[str, object]] = {id(root): root for root in roots}
        for root in roots:
            self._index(root, lateral=False)
        self.everything: Cols = self._all(self.relations)

    def _index(self, node: Mapping[str, object], lateral: bool) -> frozenset[TableName]:
        """First pass: aliases, relations, subplans, parameters and modifications."""
        kind, alias = str(node.get("Node Type", "")), node.get("Alias")
        relation = node.get("Relation Name")
        found: set[TableName] = set()
        if kind == "ModifyTable":
            self._modification(node)
        elif isinstance(relation, str):
            found.update(self._tables(relation, node.get("Schema")))
        name = node.get("Subplan Name")
        if isinstance(name, str):
            if name.startswith("CTE "):
                self.ctes.setdefault(name[4:], []).append(node)
            elif name.startswith("InitPlan"):
                returns = name.partition("returns")[2]
                for index, param in enumerate(_RETURNS.findall(returns)):
                    self.params.setdefault(param, []).append((node, index))
            self.subplans.setdefault(name.partition(" (")[0], []).append(node)
        if isinstance(alias, str) and kind != "ModifyTable":
            source = "relation" if isinstance(relation, str) else {
                "Subquery Scan": "plan", "CTE Scan": "cte", "WorkTable Scan": "worktable",
                "Function Scan": "function", "Table Function Scan": "function",
                "Values Scan": "lateral" if lateral else "values",
            }.get(kind, "unknown")  # fmt: skip
            self.sources[alias] = (source, node)
        for kid in _plans(node):
            rel = kid.get("Parent Relationship")
            inner = kind == "Nested Loop" and rel == "Inner"
            found |= self._index(kid, lateral or inner or rel in _POSITIONAL_NOT)
        self.under[id(node)] = frozenset(found)
        self.relations |= found
        return frozenset(found)

    def _tables(self, relation: str, schema: object) -> list[TableName]:
        if isinstance(schema, str):
            return [TableName(schema, relation)]
        return self.catalog.by_table_name(relation) or [TableName("", relation)]

    def _modification(self, node: Mapping[str, object]) -> None:
        targets: list[Mapping[str, object]] = [node]
        listed = node.get("Target Tables")
        if "Relation Name" not in node and isinstance(listed, list):
            targets = [t for t in listed if isinstance(t, dict)]
        kids = [k for k in _plans(node) if k.get("Parent Relationship") not in _POSITIONAL_NOT]
        self.inputs.update((id(k), k) for k in kids[:1])
        rows = kids[0].get("Plan Rows") if kids else None
        estimate = float(rows) if isinstance(rows, (int, float)) else None
        for target in targets:
            relation = target.get("Relation Name")
            for table in self._tables(str(relation), target.get("Schema")):
                self.relations.add(table)
                self.modifications.append(Modification(str(node.get("Operation")), table, estimate))

    def _all(self, tables: Collection[TableName]) -> Cols:
        return frozenset(c for t in tables for c in self.catalog.table(t).values())

    def _named(self, column: str) -> Cols:
        if column == "*":
            return self.everything
        return frozenset(c for c in self.everything if c.column == column)

    def _source(self, alias: str, column: str) -> Cols:
        source, node = self.sources[alias]
        if source == "relation":
            tables = self._tables(str(node.get("Relation Name")), node.get("Schema"))
            if column == "*":
                self.whole_rows.update(tables)
                return self._all(tables)
            return frozenset(c for t in tables if (c := self.catalog.table(t).get(column)))
        if source == "plan":
            kids = _plans(node)
            sub = [k for k in kids if k.get("Parent Relationship") == "Subquery"] or kids
            return self._union(sub)
        if source == "cte":
            return self._union(self.ctes.get(str(node.get("CTE Name")), []))
        if source == "worktable":
            ctes = self.ctes.get(str(node.get("CTE Name")), [])
            return self._all([t for c in ctes for t in self.under[id(c)]]) | self._union(ctes)
        if source == "function":
            call = node.get("Function Call", node.get("Table Function Call"))
            schema, name = node.get("Schema"), node.get("Function Name")
            if isinstance(schema, str) and isinstance(name, str) and not _trusted(schema, name):
                self.functions.add(f"{schema}.{name}")
            return self.cols(call, node) if isinstance(call, str) else self.everything
        if source == "values":
            return _NONE
        return self.everything  # lateral VALUES (not printed) or an unknown scan

    def _union(self, nodes: Sequence[Mapping[str, object]]) -> Cols:
        if not nodes:
            return self.everything
        out: set[CatalogColumn] = set()
        for node in nodes:
            found = self.positions(node)
            out.update(self._all(self.under[id(node)]) if found is None else _flat(found))
        return frozenset(out)

    def cols(self, expr: str, node: Mapping[str, object]) -> Cols:
        """The catalogued columns ``expr`` (an expression of ``node``) may read."""
        refs = tokens(expr)
        if refs is None:
            return self.everything
        out: set[CatalogColumn] = set()
        for ref in refs:
            if ref.kind == "ref" and ref.alias is not None:
                out |= (
                    self._source(ref.alias, ref.name)
                    if ref.alias in self.sources
                    else self._named(ref.name)
                )
            elif ref.kind == "ref":
                out |= self._named(ref.name)
                for alias, (source, _) in self.sources.items():
                    if source in ("function", "lateral", "unknown"):
                        out |= self._source(alias, ref.name)
            elif ref.kind in ("func", "op"):
                qualified = ref.alias is not None or "." in ref.name
                schema = ref.alias or ref.name.partition(".")[0]
                name = ref.name.rpartition(".")[2]
                trusted = schema == "pg_catalog" if ref.kind == "op" else _trusted(schema, name)
                if qualified and not trusted:
                    self.functions.add(f"{ref.alias}.{ref.name}" if ref.alias else ref.name)
                elif (
                    not qualified
                    and ref.kind == "func"
                    and not (ref.name in self.builtins and _trusted("pg_catalog", ref.name))
                ):
                    self.functions.add(ref.name)
            elif ref.kind == "param":
                found = self.params.get(ref.name)
                for plan, index in found or []:
                    positions = self.positions(plan)
                    ok = positions is not None and index < len(positions)
                    out |= positions[index] if ok and positions else self._all(self.under[id(plan)])
                if not found:
                    out |= self.everything
            else:
                out |= self._union(self.subplans.get(ref.name, []))
        for kid in _plans(node):
            if kid.get("Parent Relationship") in _POSITIONAL_NOT:
                continue
            texts, positions = self._texts(kid), self.positions(kid)
            for k, text in enumerate(texts):
                if contains_expression(expr, strip_parens(text)):
                    inside = positions[k] if positions and k < len(positions) else None
                    out |= self._all(self.under[id(kid)]) if inside is None else inside
        return frozenset(out)

    def _texts(self, node: Mapping[str, object]) -> list[str]:
        output = node.get("Output")
        if isinstance(output, list):
            return [str(e) for e in output]
        kids = [k for k in _plans(node) if k.get("Parent Relationship") not in _POSITIONAL_NOT]
        return self._texts(kids[0]) if kids else []

    def positions(self, node: Mapping[str, object]) -> list[Cols] | None:
        """Per output position of ``node``, what it may carry; None if it has no known output."""
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = None  # a cycle reads as unknown
        output = node.get("Output")
        result: list[Cols] | None
        if isinstance(output, list):
            result = [self.cols(str(e), node) for e in output]
        else:
            kids = [k for k in _plans(node) if k.get("Parent Relationship") not in _POSITIONAL_NOT]
            lists = [self.positions(k) for k in kids]
            if not kids or any(p is None for p in lists):
                result = None
            else:
                width = max(len(p or ()) for p in lists)
                result = [
                    frozenset().union(
                        *(p[k] if k < len(p) else _flat(p) for p in lists if p is not None)
                    )
                    for k in range(width)
                ]
        self.memo[key] = result
        return result


def _trusted(schema: str, name: str) -> bool:
    """Whether a call to ``schema.name`` is one the parser trusts too: a value function of
    pg_catalog's (``builtins.ALLOWED``). Others (a view's ``pg_stat_get_activity``, which
    returns other sessions' statement texts; a setting written, a file read) are in
    ``functions``."""
    return schema == "pg_catalog" and name in ALLOWED


def _flat(positions: Sequence[Cols]) -> Cols:
    return frozenset().union(*positions)


def read_plan(explain: object, catalog: Catalog, builtins: Collection[str] = ()) -> PlanFacts:
    """The facts of ``explain`` (the parsed JSON of ``EXPLAIN (VERBOSE, FORMAT JSON)``).

    ``builtins``: function names only pg_catalog defines (``BUILTINS_QUERY``); every other
    unqualified function name is listed in ``functions``, since a function on the search_path
    is printed without its schema. Raises ``PlanError`` when ``explain`` is not a plan.
    """
    if not isinstance(explain, list) or not explain:
        raise PlanError("an EXPLAIN answer is a non-empty list")
    roots = [entry.get("Plan") if isinstance(entry, dict) else None for entry in explain]
    if not all(isinstance(root, dict) and "Node Type" in root for root in roots):
        raise PlanError("each EXPLAIN entry needs a Plan node")
    plans: list[Mapping[str, object]] = [r for r in roots if isinstance(r, dict)]
    reader = _Reader(plans, catalog, builtins)
    reads: set[CatalogColumn] = set()
    filters: set[CatalogColumn] = set()
    for root in plans:
        for node in _walk(root):
            carried_only = id(node) not in reader.inputs
            for key, expr in _expressions(node):
                if (
                    key == "Output"
                    and carried_only
                    and PLAIN_REFERENCE.fullmatch(strip_parens(expr))
                ):
                    continue  # a column passed up: it counts where a parent uses it
                found = reader.cols(expr, node)
                reads |= found
                if key not in _CARRIED:
                    filters |= found
    for node in reader.inputs.values():
        carried = reader.positions(node)
        reads |= reader._all(reader.under[id(node)]) if carried is None else _flat(carried)
    outputs: tuple[frozenset[str], ...] | None = None
    top = reader.positions(plans[0]) if len(plans) == 1 else None
    if top is not None:
        outputs = tuple(frozenset(c.pii for c in cols) for cols in top)
    first = reader.modifications[0] if reader.modifications else None
    return PlanFacts(
        relations=frozenset(reader.relations),
        reads=frozenset(reads),
        filters=frozenset(filters),
        outputs=outputs,
        functions=frozenset(reader.functions),
        whole_rows=frozenset(reader.whole_rows),
        modified=first.table if first else None,
        operation=first.operation if first else None,
        rows=first.rows if first else None,
        modifications=tuple(reader.modifications),
    )
