"""The demo's PostgreSQL database (``piigate demo``): not piigate's store, but the application
database the demo's PostgreSQL gateway stands in front of.

It lives in store/ because only store/ speaks SQL (tests/test_layering.py). It creates the
database when it is missing, the ``customers`` table of examples/customers.sql in it, and the
demo's synthetic customers (rows already there are left as they are; ``reset`` drops the table
first). Failures are one :class:`DemoDatabaseUnavailable` whose reason never repeats a password.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Final, Protocol

import asyncpg

__all__ = ["CustomerRow", "DemoDatabaseUnavailable", "Server", "prepare_demo_database"]

# id, name, ssn, phone, address: the columns of examples/customers.sql.
CustomerRow = tuple[int, str, str, str, str]

_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TABLE: Final = """
CREATE TABLE IF NOT EXISTS customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    ssn text UNIQUE,
    phone text,
    address text
)
"""
_INSERT: Final = "INSERT INTO customers VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"


class Server(Protocol):
    """Where the server is, and the role and database to connect as first
    (``gateway.postgres.config.UpstreamDsn``)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def password(self) -> str | None: ...
    @property
    def database(self) -> str: ...


class DemoDatabaseUnavailable(Exception):
    """The server cannot be reached, or refused the demo's statements; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def prepare_demo_database(
    server: Server,
    database: str,
    rows: Sequence[CustomerRow],
    *,
    reset: bool = False,
    connect_timeout: float = 3.0,
) -> None:
    """``database`` on ``server`` (whose role may create databases), with the customers table
    holding ``rows``."""
    if not _IDENTIFIER.fullmatch(database):
        raise ValueError("the demo database name must be a lower-case SQL identifier")
    connect = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "timeout": connect_timeout,
    }
    try:
        admin = await asyncpg.connect(database=server.database, **connect)
        try:
            found = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not found:
                # Another demo may make it meanwhile.
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await admin.execute(f'CREATE DATABASE "{database}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(database=database, **connect)
        try:
            async with conn.transaction():
                if reset:
                    await conn.execute("DROP TABLE IF EXISTS customers")
                await conn.execute(_TABLE)
                await conn.executemany(_INSERT, rows)
        finally:
            await conn.close()
    except (OSError, TimeoutError) as exc:
        raise DemoDatabaseUnavailable(_os_reason(exc)) from None
    except asyncpg.PostgresError as exc:
        raise DemoDatabaseUnavailable(
            f"{exc.sqlstate}: {exc.args[0] if exc.args else ''}"
        ) from None
    except asyncpg.InterfaceError as exc:
        raise DemoDatabaseUnavailable(type(exc).__name__) from None


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer"
    return getattr(exc, "strerror", None) or type(exc).__name__
