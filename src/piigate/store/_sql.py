"""Small helpers shared by the repositories (dialect-specific INSERT, UTC normalisation)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, Row, Table
from sqlalchemy.dialects import postgresql, sqlite

from piigate.store.db import Database

__all__ = ["Repo", "insert_for", "utc"]


def insert_for(db: Database, table: Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the database's dialect.

    Both SQLite (3.24+) and PostgreSQL have ``ON CONFLICT`` and ``RETURNING``; SQLAlchemy
    exposes them through each dialect's own ``insert`` construct.
    """
    if db.dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def utc(at: datetime) -> datetime:
    """An aware UTC datetime (naive values are taken to be UTC already)."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


class Repo:
    """Base of the repositories: each holds the :class:`Database` it works on.

    The helpers run one statement as its own transaction (:meth:`Database.read`,
    :meth:`Database.write`); a repository method that needs several statements in one
    transaction passes its own function to ``self.db.read``/``self.db.write``.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _first(self, stmt: Executable) -> Row[Any] | None:
        return await self.db.read(lambda conn: conn.execute(stmt).first())

    async def _all(self, stmt: Executable) -> Sequence[Row[Any]]:
        return await self.db.read(lambda conn: conn.execute(stmt).all())

    async def _scalar(self, stmt: Executable) -> Any:
        """The one value ``stmt`` reads, or None when it finds no row."""
        return await self.db.read(lambda conn: conn.execute(stmt).scalar_one_or_none())

    async def _write(self, stmt: Executable) -> int:
        """Run a write statement; the number of rows it changed."""
        return await self.db.write(lambda conn: int(conn.execute(stmt).rowcount or 0))

    async def _changed(self, stmt: Executable) -> bool:
        """Run a compare-and-set statement: True when it changed its one row."""
        return await self._write(stmt) == 1

    async def _write_returning(self, stmt: Executable) -> Any:
        """Run a write statement with ``RETURNING`` one value; None when no row qualified."""
        return await self.db.write(lambda conn: conn.execute(stmt).scalar_one_or_none())
