"""Shared fixtures: real SQLite always, real PostgreSQL and Redis when reachable.

``database_url`` runs a test on both backends: a fresh SQLite file, and a fresh uniquely named
PostgreSQL database (dropped afterwards). Unreachable services skip with the reason shown, unless
``PIIGATE_REQUIRE_SERVICES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import make_url

from piigate.store.db import Database
from services_support import unavailable

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def _admin_pg_url() -> str:
    return os.environ.get("PIIGATE_TEST_DATABASE_URL", DEFAULT_PG_URL)


def _libpq_dsn(url: str) -> str:
    """A plain ``postgresql://`` DSN for psycopg, whatever driver the URL names."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@cache
def _pg_problem(url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(_libpq_dsn(url), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        return (
            f"PostgreSQL not reachable at {_shown(url)}: set PIIGATE_TEST_DATABASE_URL "
            f"({first_line})"
        )
    return None


@cache
def _redis_problem(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError) as error:
        return f"Redis not reachable at {_shown(url)}: set PIIGATE_TEST_REDIS_URL ({error})"
    return None


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """A URL of the PostgreSQL server with rights to create databases (skips if unreachable);
    session-scoped, so module fixtures may use it."""
    url = _admin_pg_url()
    problem = _pg_problem(url)
    if problem:
        unavailable(problem)
    return url


@pytest.fixture
def redis_url() -> str:
    """A Redis URL (database 15 by default) for tests; skips if unreachable."""
    url = os.environ.get("PIIGATE_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    problem = _redis_problem(url)
    if problem:
        unavailable(problem)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'piigate.db'}"


@pytest.fixture
def postgres_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty, uniquely named database on the test server, dropped afterwards."""
    import psycopg

    name = f"piigate_t_{secrets.token_hex(6)}"
    admin = _libpq_dsn(pg_admin_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend: ``sqlite:///...`` or ``postgresql://...``."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@contextlib.asynccontextmanager
async def _migrated(url: str) -> AsyncIterator[Database]:
    database = Database.open(url)
    try:
        await database.upgrade()
        yield database
    finally:
        await database.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """An opened, migrated :class:`Database` on each backend; closed afterwards."""
    async with _migrated(database_url) as database:
        yield database


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[Database]:
    """The same on SQLite only (what only SQLite has: the audit writer process)."""
    async with _migrated(sqlite_url) as database:
        yield database
