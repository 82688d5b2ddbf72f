"""Shared fixtures: real SQLite always, real PostgreSQL and Redis when reachable.

``database_url`` runs a test on both backends: a fresh SQLite file, and a fresh uniquely named
PostgreSQL database (dropped afterwards). ``migrated_url`` (and ``db``, and the nodes of the API
tests) does the same with a database already at the current schema: a copy of one migrated once
per test session, since running the migrations for every test cost more than most tests. The
migrations themselves run from empty in their own tests (tests/store/test_db.py, the CLI's
``db upgrade``, and every test that starts ``piigate serve``). Unreachable services skip with the
reason shown, unless ``PIIGATE_REQUIRE_SERVICES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import make_url

from piigate.store.db import Database
from services_support import unavailable

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

# Tests assert behaviour, never timing: Hypothesis' per-example deadline (200 ms by default) is
# a timing assertion that a loaded machine fails at random, so no property test has one.
settings.register_profile("piigate", deadline=None)
settings.load_profile("piigate")
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


def _create_pg_database(admin_url: str, template: str | None = None) -> str:
    """A new uniquely named database (a copy of ``template`` if given); its URL."""
    import psycopg

    name = f"piigate_t_{secrets.token_hex(6)}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(_libpq_dsn(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(admin_url: str, url: str) -> None:
    import psycopg

    with psycopg.connect(_libpq_dsn(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@pytest.fixture
def postgres_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty, uniquely named database on the test server, dropped afterwards."""
    url = _create_pg_database(pg_admin_url)
    try:
        yield url
    finally:
        _drop_pg_database(pg_admin_url, url)


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend a test runs on (``database_url`` and ``migrated_url`` follow it)."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    """An empty database on each backend: ``sqlite:///...`` or ``postgresql://...``."""
    url: str = request.getfixturevalue(f"{backend}_url")
    return url


# -- databases at the current schema: copies of one migrated per session ------------------------


def _migrate(url: str) -> None:
    """Run the migrations on ``url`` as a node does (Database.upgrade), closing every connection
    afterwards: a SQLite file is then whole (WAL checkpointed) and a PostgreSQL database has no
    sessions left, as a template must. In a thread of its own, away from the tests' event loops.
    """

    async def upgrade() -> None:
        database = Database.open(url)
        try:
            await database.upgrade()
        finally:
            await database.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, upgrade()).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the current schema, once per session (copied, never opened)."""
    path = tmp_path_factory.mktemp("template") / "piigate.db"
    _migrate(f"sqlite:///{path}")
    assert not path.with_name(path.name + "-wal").exists(), "template not checkpointed"
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """The name of a PostgreSQL database migrated to the current schema, once per session
    (and per xdist worker: the name is random); dropped at the end. Only copied, never opened:
    CREATE DATABASE ... TEMPLATE needs it without sessions."""
    admin = _admin_pg_url()
    url = _create_pg_database(admin)
    try:
        _migrate(url)
        yield str(make_url(url).database)
    finally:
        _drop_pg_database(admin, url)


@pytest.fixture
def sqlite_migrated_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A private copy of the migrated SQLite file, where ``sqlite_url`` would be."""
    path = tmp_path / "piigate.db"
    # Mode 0600 from the start, as Database.open makes a new store file (its start-up warns
    # about a database file that others may read).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as out, sqlite_template.open("rb") as source:
        shutil.copyfileobj(source, out)
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_migrated_url(pg_admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh uniquely named copy of the migrated PostgreSQL database, dropped afterwards."""
    template: str = request.getfixturevalue("postgres_template")
    url = _create_pg_database(pg_admin_url, template)
    try:
        yield url
    finally:
        _drop_pg_database(pg_admin_url, url)


@pytest.fixture
def migrated_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A database at the current schema, as the migrations leave it, on each backend
    (``database_url``'s twin: a test takes one or the other)."""
    url: str = request.getfixturevalue(f"{backend}_migrated_url")
    return url


@contextlib.asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Database]:
    database = Database.open(url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    """An opened, migrated :class:`Database` on each backend; closed afterwards."""
    async with _opened(migrated_url) as database:
        yield database


@pytest.fixture
async def sqlite_db(sqlite_migrated_url: str) -> AsyncIterator[Database]:
    """The same on SQLite only (what only SQLite has: the audit writer process)."""
    async with _opened(sqlite_migrated_url) as database:
        yield database
