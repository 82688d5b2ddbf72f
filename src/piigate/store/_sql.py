"""Small helpers shared by the repositories (dialect-specific INSERT, UTC normalisation)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
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
    """Base of the repositories: each holds the :class:`Database` it works on."""

    def __init__(self, db: Database) -> None:
        self.db = db
