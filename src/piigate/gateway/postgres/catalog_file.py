"""The catalog as a file a person reviews: what ``piigate scan postgres`` writes.

The text is the format :func:`piigate.gateway.postgres.catalog.read_catalog` reads (a
``catalog_file``), with a comment above each column saying why it was labelled, and a comment for
each table where nothing was found or values could not be read, so the reviewer sees what was
looked at. Every column carries its ``confidence``; ``suspected: true`` marks the ones only one
source (the name or the values) points at. Reasons count values and never quote one.

Names are written as the catalog reads them: a name PostgreSQL would fold (``Customers``) or one
that YAML would read as something else (``on``, ``null``) is quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from piigate.gateway.postgres.catalog import TableName, quote_identifier
from piigate.gateway.postgres.detect import ColumnLabel

__all__ = ["ScannedTable", "render_catalog"]

_PLAIN: Final = re.compile(r"[a-z_][a-z0-9_$]*(?:\.[a-z_][a-z0-9_$]*)?")
# Scalars YAML 1.1 resolves to booleans or null when plain: quoted so they stay names.
_RESERVED: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


@dataclass(frozen=True, slots=True)
class ScannedTable:
    """What a scan found in one table: its labelled columns and, when values could not be read
    or nothing was found, a note for the reviewer."""

    table: TableName
    labels: Sequence[ColumnLabel]
    columns: int
    rows: int | None  # rows sampled; None when no value was read
    note: str | None = None


def render_catalog(tables: Iterable[ScannedTable], *, header: Sequence[str] = ()) -> str:
    """The catalog file for ``tables``, in their order, after ``header`` comment lines."""
    lines = [_comment(line) for line in header]
    labelled = 0
    for scanned in tables:
        key = _key(str(scanned.table))
        if scanned.note is not None:
            lines.append(_comment(f"{key}: {scanned.note}"))
        if not scanned.labels:
            sampled = "no values read" if scanned.rows is None else f"{scanned.rows} rows sampled"
            lines.append(_comment(f"{key}: no PII found ({scanned.columns} columns, {sampled})"))
            continue
        labelled += 1
        lines.append(f"{key}:")
        for label in scanned.labels:
            lines.append("  " + _comment(label.reason))
            lines.append(f"  {_key(quote_identifier(label.column))}: {_value(label)}")
    if not labelled:
        lines.append("{}")  # a file of comments alone is not a mapping
    return "\n".join(lines) + "\n"


def _value(label: ColumnLabel) -> str:
    parts = [f"class: {_key(label.pii)}", f"confidence: {label.confidence:.2f}"]
    if label.suspected:
        parts.append("suspected: true")
    return "{" + ", ".join(parts) + "}"


def _key(text: str) -> str:
    if _PLAIN.fullmatch(text) and text not in _RESERVED:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _comment(text: str) -> str:
    # One line each: a line break in a name must not end the comment and start YAML.
    return "# " + " ".join(text.splitlines()) if text else "#"
