"""What a statement does to a catalogued column: the vocabulary of the SQL analysis."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from piigate.gateway.postgres.catalog import CatalogColumn

__all__ = ["Touch", "Use"]


class Use(StrEnum):
    """How a statement uses a column's values."""

    OUTPUT = "output"  # reaches a result column (maskable)
    FILTER = "filter"  # decides which rows, their order or grouping (not maskable)
    WRITE = "write"  # an INSERT/UPDATE/MERGE/COPY FROM target column
    DELETE = "delete"  # rows of its table are deleted (DELETE, TRUNCATE, DROP)
    EXPORT = "export"  # COPY … TO
    FLOW = "flow"  # copied where the catalog does not watch (a table, a setting, a message)


@dataclass(frozen=True, slots=True)
class Touch:
    column: CatalogColumn
    use: Use
