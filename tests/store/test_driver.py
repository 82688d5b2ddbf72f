"""Statements run at the driver level (``store/driver.py``): same values in and out as
SQLAlchemy's own execution, on SQLite and PostgreSQL, and the same errors -- in a SQLAlchemy
connection's transaction and in a unit of work at the driver level (``driver=True``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from sqlalchemy import (
    Column,
    MetaData,
    String,
    Table,
    bindparam,
    exc,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import sqlite

from piigate.store import Database
from piigate.store.db import StoreUnavailable
from piigate.store.driver import DriverStatement
from piigate.store.tables import TS, challenges

_INSERT = DriverStatement(
    insert(challenges).values(
        {
            name: bindparam(name)
            for name in (
                "id",
                "subject_id",
                "state",
                "created_at",
                "expires_at",
                "attempts",
                "max_attempts",
                "body",
            )
        }
    )
)
T = TypeVar("T")
_BY_ID = DriverStatement(select(challenges).where(challenges.c.id == bindparam("id")))
_BUMP = DriverStatement(
    update(challenges)
    .where(challenges.c.id == bindparam("id"), challenges.c.state == "pending")
    .values(attempts=challenges.c.attempts + 1, last_attempt_at=bindparam("at", type_=TS))
    .returning(challenges.c.attempts)
)
_CLOSE = DriverStatement(
    update(challenges).where(challenges.c.id == bindparam("id")).values(state="expired")
)


class Units:
    """``Database.read``/``write``, with SQLAlchemy's connection or at the driver level."""

    def __init__(self, db: Database, driver: bool) -> None:
        self.db = db
        self.driver = driver

    async def read(self, work: Callable[[Any], T]) -> T:
        if self.driver:
            return await self.db.read(work, driver=True)
        return await self.db.read(work)

    async def write(self, work: Callable[[Any], T]) -> T:
        if self.driver:
            return await self.db.write(work, driver=True)
        return await self.db.write(work)


@pytest.fixture(params=[False, True], ids=["sqlalchemy", "driver"])
def units(request: pytest.FixtureRequest, db: Database) -> Units:
    return Units(db, request.param)


def _row(id: str, created: datetime) -> dict[str, object]:
    return {
        "id": id,
        "subject_id": "alice",
        "state": "pending",
        "created_at": created,
        "expires_at": created + timedelta(minutes=5),
        "attempts": 0,
        "max_attempts": 5,
        "body": {"action": "read", "pii": ["ssn"], "nested": {"n": 1}},
    }


async def test_values_round_trip_through_the_column_types(units: Units) -> None:
    # An aware time in another zone is stored as UTC and read back aware (the column's type).
    created = datetime(2026, 12, 3, 15, 0, tzinfo=timezone(timedelta(hours=2)))
    await units.write(lambda conn: _INSERT.execute_many(conn, [_row("c1", created)]))

    found = await units.read(lambda conn: _BY_ID.execute(conn, {"id": "c1"}).rows)

    assert len(found) == 1
    assert found[0]["created_at"] == created
    assert found[0]["created_at"].tzinfo is UTC
    assert found[0]["body"] == {"action": "read", "pii": ["ssn"], "nested": {"n": 1}}
    assert found[0]["last_attempt_at"] is None
    # SQLAlchemy's own execution reads the same values.
    same = await units.db.read(lambda conn: conn.execute(select(challenges)).mappings().one())
    assert dict(same) == found[0]


async def test_returning_and_rowcount_and_literals_in_the_statement(units: Units) -> None:
    now = datetime.now(UTC)
    await units.write(lambda conn: _INSERT.execute_many(conn, [_row("c1", now)]))

    def bump(conn: Any) -> object:
        return _BUMP.execute(conn, {"id": "c1", "at": now}).scalar()

    assert await units.write(bump) == 1
    assert await units.write(bump) == 2
    closed = await units.write(lambda conn: _CLOSE.execute(conn, {"id": "c1"}).rowcount)
    assert closed == 1
    # The literal ``state == 'pending'`` in the statement is bound too: no row qualifies now.
    assert await units.write(bump) is None
    missing = await units.write(lambda conn: _CLOSE.execute(conn, {"id": "nope"}).rowcount)
    assert missing == 0


async def test_statements_share_the_unit_of_works_transaction(units: Units) -> None:
    now = datetime.now(UTC)

    def insert_then_fail(conn: Any) -> None:
        _INSERT.execute_many(conn, [_row("c1", now)])
        raise RuntimeError("the unit of work fails after its statement")

    with pytest.raises(RuntimeError):
        await units.write(insert_then_fail)
    assert await units.read(lambda conn: _BY_ID.execute(conn, {"id": "c1"}).rows) == []


async def test_a_constraint_violation_is_sqlalchemys_integrity_error(units: Units) -> None:
    now = datetime.now(UTC)
    await units.write(lambda conn: _INSERT.execute_many(conn, [_row("c1", now)]))

    with pytest.raises(exc.IntegrityError) as raised:
        await units.write(lambda conn: _INSERT.execute_many(conn, [_row("c1", now)]))
    assert "alice" not in str(raised.value)  # no row values in the message


async def test_a_driver_failure_is_store_unavailable(units: Units) -> None:
    # A table the schema does not have: the driver fails inside the unit of work.
    elsewhere = Table("no_such_table", MetaData(), Column("id", String, primary_key=True))
    broken = DriverStatement(select(elsewhere).where(elsewhere.c.id == bindparam("id")))

    with pytest.raises(StoreUnavailable):
        await units.read(lambda conn: broken.execute(conn, {"id": "x"}))


def test_expanding_parameters_are_refused() -> None:
    ids = bindparam("ids", expanding=True)
    stmt = DriverStatement(select(challenges).where(challenges.c.id.in_(ids)))

    with pytest.raises(TypeError, match="expanding"):
        stmt.execute_many(_OfflineConnection(), [])


class _OfflineConnection:
    """Just enough of a connection to compile for SQLite's dialect."""

    dialect = sqlite.dialect(paramstyle="qmark")
