"""Which database columns hold which PII class: the PostgreSQL gateway's catalog.

It comes from ``gateway.postgres.catalog`` or from a ``catalog_file`` (what ``piigate scan
postgres`` writes, after review). A table is ``schema.table`` (an unqualified name is in
``public``); names follow PostgreSQL's folding: unquoted parts are lower-cased, ``"Quoted"``
parts are kept as written. A column maps to a PII class of the policy, or to a mapping that also
carries what a scan found::

    public.customers:
      ssn: ssn
      passport_number: passport
      notes: {class: ssn, confidence: 0.4, suspected: true}

A ``suspected`` column is catalogued like any other (fail closed): the reviewer removes what is
not PII. ``confidence`` is only for the reader.

Problems are reported as ``FILE:LINE:COL: message`` through the policy's YAML reader; a catalog
with a problem is not used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

import yaml

from piigate.policy.model import Policy
from piigate.policy.yamlnodes import NodeReader

__all__ = [
    "Catalog",
    "CatalogColumn",
    "TableName",
    "parse_table_name",
    "quote_identifier",
    "read_catalog",
]

_COLUMN_KEYS: Final = frozenset({"class", "confidence", "suspected"})


@dataclass(frozen=True, slots=True, order=True)
class TableName:
    """A table or view as the server names it (folded, unquoted)."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{quote_identifier(self.schema)}.{quote_identifier(self.name)}"


@dataclass(frozen=True, slots=True)
class CatalogColumn:
    table: TableName
    column: str
    pii: str
    suspected: bool = False
    confidence: float | None = None


@dataclass(frozen=True)
class Catalog:
    """Catalogued columns by table. Lookups are by folded names (``TableName``)."""

    columns: Mapping[TableName, Mapping[str, CatalogColumn]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.columns)

    def table(self, table: TableName) -> Mapping[str, CatalogColumn]:
        """The catalogued columns of ``table`` by name (empty when it holds no PII)."""
        return self.columns.get(table, {})

    def pii_of(self, table: TableName, column: str) -> str | None:
        found = self.columns.get(table, {}).get(column)
        return None if found is None else found.pii

    def classes_of(self, table: TableName) -> frozenset[str]:
        return frozenset(c.pii for c in self.columns.get(table, {}).values())

    def classes(self) -> frozenset[str]:
        """Every class the catalog names."""
        return frozenset(c.pii for cols in self.columns.values() for c in cols.values())

    def every_column(self) -> frozenset[CatalogColumn]:
        """Every catalogued column: what a statement the gateway cannot read may reach."""
        return frozenset(c for cols in self.columns.values() for c in cols.values())

    def tables(self) -> Iterator[TableName]:
        return iter(self.columns)

    def by_table_name(self, name: str) -> list[TableName]:
        """The catalogued tables called ``name`` in any schema (a folded name)."""
        return [t for t in self.columns if t.name == name]


def quote_identifier(part: str) -> str:
    """``part`` as an identifier in SQL: bare when PostgreSQL would read it back unchanged."""
    if part and part.isidentifier() and part == part.lower() and part.isascii():
        return part
    return '"' + part.replace('"', '""') + '"'


def parse_table_name(text: str) -> TableName | None:
    """``schema.table`` or ``table`` (in ``public``) as PostgreSQL reads it; None if malformed."""
    parts = _identifiers(text.strip())
    if parts is None or not 1 <= len(parts) <= 2:
        return None
    if len(parts) == 1:
        return TableName("public", parts[0])
    return TableName(parts[0], parts[1])


def _identifiers(text: str) -> list[str] | None:
    """Dot-separated identifiers, unquoted ones folded to lower case; None if malformed."""
    parts: list[str] = []
    i = 0
    while True:
        if i < len(text) and text[i] == '"':
            j, buf = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    return None
                buf.append(text[j:k])
                if text[k + 1 : k + 2] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                break
            part, i = "".join(buf), k + 1
        else:
            j = i
            while j < len(text) and text[j] not in '."':
                j += 1
            part, i = text[i:j].lower(), j
            if not part or not (part[0].isalpha() or part[0] == "_"):
                return None
            if not all(ch.isalnum() or ch in "_$" for ch in part):
                return None
        if not part:
            return None
        parts.append(part)
        if i == len(text):
            return parts
        if text[i] != ".":
            return None
        i += 1


def read_catalog(read: NodeReader, node: yaml.Node, policy: Policy) -> Catalog:
    """The catalog in ``node`` (see the module's doc); problems go to ``read.errors``."""
    tables: dict[TableName, dict[str, CatalogColumn]] = {}
    for text, key_node, value in read.items(node, "catalog"):
        table = parse_table_name(text)
        if table is None:
            read.errors.at(key_node, f"{text!r} is not a table name (schema.table)")
            continue
        if table in tables:
            read.errors.at(key_node, f"table {table} is catalogued twice")
            continue
        columns: dict[str, CatalogColumn] = {}
        for name, col_node, spec in read.items(value, f"the columns of {table}"):
            parts = _identifiers(name.strip())
            if parts is None or len(parts) != 1:
                read.errors.at(col_node, f"{name!r} is not a column name")
                continue
            column = _column(read, spec, table, parts[0], policy)
            if column is None:
                continue
            if column.column in columns:
                read.errors.at(col_node, f"column {name!r} of {table} is catalogued twice")
                continue
            columns[column.column] = column
        tables[table] = columns
    return Catalog({t: cols for t, cols in tables.items() if cols})


def _column(
    read: NodeReader, node: yaml.Node, table: TableName, column: str, policy: Policy
) -> CatalogColumn | None:
    what = f"{table}.{quote_identifier(column)}"
    suspected, confidence = False, None
    class_node = node
    if isinstance(node, yaml.MappingNode):
        spec = read.mapping(node, what, _COLUMN_KEYS)
        if spec is None:
            return None
        if "class" not in spec:
            read.errors.at(node, f"{what} needs a class")
            return None
        class_node = spec["class"][1]
        if "suspected" in spec:
            suspected = bool(read.boolean(spec["suspected"][1], "suspected"))
        if "confidence" in spec:
            number = read.number(spec["confidence"][1], "confidence")
            confidence = None if number is None else float(number)
            if confidence is not None and not 0.0 <= confidence <= 1.0:
                read.errors.at(spec["confidence"][1], "confidence must be between 0 and 1")
    pii = read.string(class_node, f"the class of {what}")
    if pii is None:
        return None
    if pii not in policy.pii:
        known = ", ".join(sorted(policy.pii)) or "none defined"
        read.errors.at(class_node, f"unknown PII class {pii!r} for {what} (classes: {known})")
        return None
    return CatalogColumn(table, column, pii, suspected, confidence)
