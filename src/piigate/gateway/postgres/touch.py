"""The vocabulary of the SQL analysis: what a statement does to a catalogued column (``Touch``,
``Use``) and what the analysis says of one statement (``Statement``); ``analysis`` reads them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from piigate.gateway.postgres.catalog import CatalogColumn, TableName

__all__ = ["Statement", "Touch", "Use"]


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


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement's analysis: its text and kind (``select``, ``insert``, ``set``, ``ddl``…),
    what it does to catalogued columns, the PII classes each result column may carry
    (``outputs``; None: unknown), the tables it names and the names that may not resolve to them
    (``unresolved``: the server's plan settles those), whether an UPDATE or DELETE has a WHERE,
    whether ``EXPLAIN`` can plan it, why it is taken as touching everything (``fail_closed``) or
    refused (``refuse``), whether it may change how later statements read (the search path…),
    and the statement a PREPARE, EXPLAIN or DECLARE holds (``body``)."""

    text: str
    kind: str
    touches: frozenset[Touch] = frozenset()
    outputs: tuple[frozenset[str], ...] | None = ()
    tables: frozenset[TableName] = frozenset()
    unresolved: frozenset[TableName] = frozenset()
    where: bool | None = None
    explainable: bool = False
    fail_closed: str | None = None
    refuse: str | None = None
    changes_session: bool = False
    body: Statement | None = None  # PREPARE, EXPLAIN, DECLARE: the statement inside

    def _classes(self, uses: frozenset[Use]) -> frozenset[str]:
        return frozenset(t.column.pii for t in self.touches if t.use in uses)

    @property
    def reads(self) -> frozenset[str]:
        return self._classes(frozenset({Use.OUTPUT, Use.FILTER, Use.FLOW}))

    @property
    def unmaskable(self) -> frozenset[str]:
        """Classes read in ways masking the result cannot hide."""
        return self._classes(frozenset({Use.FILTER, Use.FLOW, Use.EXPORT}))

    @property
    def writes(self) -> frozenset[str]:
        return self._classes(frozenset({Use.WRITE}))

    @property
    def deletes(self) -> frozenset[str]:
        return self._classes(frozenset({Use.DELETE}))

    @property
    def exports(self) -> frozenset[str]:
        return self._classes(frozenset({Use.EXPORT}))
