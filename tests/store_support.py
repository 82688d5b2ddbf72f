"""Store operations only tests need (imported by name: ``tests/`` is on ``sys.path``).

The product never lists users or keys, rewrites a password hash, disables a user, revokes a key
or sets a factor's state directly; tests do, to arrange a state or inspect one. Plain SQL over
the public schema, each in one unit of work of :class:`~piigate.store.Database`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Executable, Row, select, update

from piigate.store import Database, UserRow
from piigate.store.ceremonies import CeremonyRow
from piigate.store.factors import FACTOR_STATES
from piigate.store.tables import api_keys, factors, users

__all__ = [
    "is_open",
    "list_api_keys",
    "list_users",
    "revoke_api_key",
    "set_factor_state",
    "set_password_hash",
    "set_user_disabled",
]


async def _changed(db: Database, stmt: Executable) -> bool:
    """Run a compare-and-set statement: True when it changed its one row."""
    return await db.write(lambda conn: conn.execute(stmt).rowcount == 1)


async def list_users(db: Database) -> list[UserRow]:
    """Every user, by name."""

    def read(conn: Connection) -> list[UserRow]:
        rows = conn.execute(select(users).order_by(users.c.username)).all()
        return [
            UserRow(r.username, r.password_hash, tuple(r.roles), r.created_at, bool(r.disabled))
            for r in rows
        ]

    return await db.read(read)


async def set_password_hash(db: Database, username: str, password_hash: str) -> bool:
    """Replace the password hash; False when there is no such user."""
    stmt = update(users).where(users.c.username == username).values(password_hash=password_hash)
    return await _changed(db, stmt)


async def set_user_disabled(db: Database, username: str, disabled: bool) -> bool:
    stmt = update(users).where(users.c.username == username).values(disabled=disabled)
    return await _changed(db, stmt)


async def list_api_keys(db: Database) -> Sequence[Row[Any]]:
    """Every API key row (revoked ones included), by name."""
    return await db.read(
        lambda conn: conn.execute(select(api_keys).order_by(api_keys.c.name)).all()
    )


async def revoke_api_key(db: Database, name: str, *, now: datetime | None = None) -> bool:
    """Revoke the named key; False when there is no such active key."""
    stmt = (
        update(api_keys)
        .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now or datetime.now(UTC))
    )
    return await _changed(db, stmt)


async def set_factor_state(db: Database, factor_id: str, *, expected: str, new: str) -> bool:
    """Compare-and-set a factor's state (e.g. ``active`` → ``disabled``)."""
    for state in (expected, new):
        if state not in FACTOR_STATES:
            raise ValueError(f"unknown factor state {state!r}")
    stmt = (
        update(factors)
        .where(factors.c.id == factor_id, factors.c.state == expected)
        .values(state=new)
    )
    return await _changed(db, stmt)


def is_open(row: CeremonyRow, now: datetime) -> bool:
    """The ceremony can still be answered at ``now``: open and not yet expired."""
    return row.state == "open" and row.expires_at > now
