from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    bindparam,
    func,
    inspect,
    literal_column,
    make_url,
    select,
    text,
    update,
)

from piigate.errors import ServiceUnavailable
from piigate.store import Database, StoreUnavailable, default_url
from piigate.store.db import alembic_config as _alembic_config
from piigate.store.driver import DriverStatement, DriverTransaction
from piigate.store.tables import counters, metadata
from piigate.store.urls import blocking_url, normalize_url

HEAD = ScriptDirectory.from_config(_alembic_config()).get_current_head()
LATER = datetime(2100, 1, 1, tzinfo=UTC)
_ONE = DriverStatement(select(literal_column("1")))
_VALUE = DriverStatement(
    select(counters.c.value).where(counters.c.key == bindparam("key")).with_for_update()
)
_SET = DriverStatement(
    update(counters).where(counters.c.key == bindparam("key")).values(value=bindparam("value"))
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """An opened :class:`Database` that the migrations took from empty to the current schema
    here: what these tests are about (the shared ``db`` is a copy of a migrated one)."""
    database = Database.open(database_url)
    try:
        await database.upgrade()
        yield database
    finally:
        await database.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
        ("sqlite+pysqlite:///x.db", "sqlite+aiosqlite"),
        ("postgresql://u@h/d", "postgresql+asyncpg"),
        ("postgresql+psycopg://u@h/d", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg"),
    ],
)
def test_urls_are_normalised_to_async_drivers(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/d"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        normalize_url(url)


@pytest.mark.parametrize(
    ("given", "blocking"),
    [
        ("sqlite+aiosqlite:///x.db", "sqlite+pysqlite:///x.db"),
        ("postgresql+asyncpg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+asyncpg://u@h/d?ssl=require", "postgresql+psycopg://u@h/d?sslmode=require"),
        (
            "postgresql+asyncpg://u@h/d?sslmode=verify-full",
            "postgresql+psycopg://u@h/d?sslmode=verify-full",
        ),
    ],
)
def test_the_synchronous_driver_gets_the_same_store(given: str, blocking: str) -> None:
    assert blocking_url(make_url(given)).render_as_string() == blocking


def test_default_url(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path}/piigate.db"


async def test_sqlite_creates_the_directory_and_sets_pragmas(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path}/a/b/piigate.db")
    try:
        assert db.dialect == "sqlite"
        async with db.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        # synchronous: 1 = NORMAL
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 1,
            "busy_timeout": 5000,
            "foreign_keys": 1,
        }
        assert (tmp_path / "a" / "b" / "piigate.db").exists()
    finally:
        await db.close()


@pytest.fixture
def shared_umask() -> Iterator[None]:
    """The common umask (022), under which files are made readable by everyone by default."""
    saved = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.usefixtures("shared_umask")
async def test_a_new_sqlite_store_is_private_to_its_owner(tmp_path: Path) -> None:
    data = tmp_path / "state" / "data"
    db = Database.open(default_url(data))
    try:
        await db.upgrade()
        await db.write(lambda conn: conn.execute(text("SELECT 1")).scalar())
        assert (_mode(data.parent), _mode(data)) == (0o700, 0o700)
        present = [path for path in db.files if path.exists()]
        assert {path.name for path in present} >= {"piigate.db", "piigate.db-wal", "piigate.db-shm"}
        assert {path.name: _mode(path) for path in present} == {
            path.name: 0o600 for path in present
        }
    finally:
        await db.close()


async def test_upgrade_is_idempotent_and_matches_the_metadata(db: Database) -> None:
    await db.upgrade()
    assert await db.current_revision() == HEAD

    def diff(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with db.connect() as conn:
        assert await conn.run_sync(diff) == []
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert set(metadata.tables) <= names


async def test_concurrent_upgrades_do_not_collide(database_url: str) -> None:
    # Separate engines = separate connections, as from separate processes: each upgrade takes
    # the migration lock, and the later ones find the schema current.
    dbs = [Database.open(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(d.upgrade() for d in dbs))
        assert {await d.current_revision() for d in dbs} == {HEAD}
        async with dbs[0].connect() as conn:
            heads = (await conn.execute(text("SELECT count(*) FROM audit_head"))).scalar()
        assert heads == 1
    finally:
        for d in dbs:
            await d.close()


async def test_begin_immediate_serialises_sqlite_writers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/lock.db"
    first, second = Database.open(url), Database.open(url)
    try:
        await first.upgrade()
        entered = asyncio.Event()
        release = asyncio.Event()
        second_done = asyncio.Event()

        async def hold() -> None:
            async with first.begin(immediate=True) as conn:
                await conn.execute(text("SELECT 1"))
                entered.set()
                await release.wait()

        async def wait_for_lock() -> None:
            await entered.wait()
            async with second.begin(immediate=True) as conn:
                await conn.execute(text("SELECT 1"))
            second_done.set()

        holder = asyncio.create_task(hold())
        waiter = asyncio.create_task(wait_for_lock())
        await entered.wait()
        await asyncio.sleep(0.3)
        assert not second_done.is_set()  # blocked at BEGIN IMMEDIATE by the other writer
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, waiter), 5)
        assert second_done.is_set()
    finally:
        await first.close()
        await second.close()


async def test_write_commits_what_its_work_did_and_read_sees_it(db: Database) -> None:
    def add(conn: Connection) -> int:
        conn.execute(counters.insert().values(key="k", value=1, window_end=LATER))
        return 7

    assert await db.write(add) == 7
    assert await db.read(lambda conn: conn.execute(select(counters.c.value)).scalar()) == 1


async def test_a_failing_unit_of_work_rolls_back_and_raises_its_own_error(db: Database) -> None:
    def half_done(conn: Connection) -> None:
        conn.execute(counters.insert().values(key="k", value=1, window_end=LATER))
        raise ValueError("the work's own error")

    with pytest.raises(ValueError, match="the work's own error"):
        await db.write(half_done)
    assert (
        await db.read(
            lambda conn: conn.execute(select(func.count()).select_from(counters)).scalar()
        )
        == 0
    )


async def test_concurrent_read_modify_write_units_lose_no_update(db: Database) -> None:
    """Each unit reads the value and writes it back plus one: the transactions must not
    interleave (SQLite: one writer thread and BEGIN IMMEDIATE; PostgreSQL: the row lock)."""
    await db.write(
        lambda conn: conn.execute(counters.insert().values(key="k", value=0, window_end=LATER))
    )

    def increment(conn: Connection) -> None:
        read = select(counters.c.value).where(counters.c.key == "k").with_for_update()
        value = conn.execute(read).scalar_one()
        conn.execute(update(counters).where(counters.c.key == "k").values(value=value + 1))

    await asyncio.gather(*(db.write(increment) for _ in range(50)))
    assert await db.read(lambda conn: conn.execute(select(counters.c.value)).scalar()) == 50


async def test_sqlite_write_waits_for_another_process_lock(tmp_path: Path) -> None:
    """Another connection (the audit writer process, another node) holding the write lock
    makes a write wait in SQLite's busy handler, not fail."""
    url = f"sqlite:///{tmp_path}/wait.db"
    other, db = Database.open(url), Database.open(url)
    try:
        await other.upgrade()
        entered, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with other.begin(immediate=True) as conn:
                await conn.execute(text("SELECT 1"))
                entered.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await entered.wait()
        writing = asyncio.create_task(
            db.write(
                lambda conn: conn.execute(
                    counters.insert().values(key="k", value=1, window_end=LATER)
                )
            )
        )
        await asyncio.sleep(0.3)
        assert not writing.done()
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, writing), 5)
        assert await db.read(lambda conn: conn.execute(select(counters.c.key)).scalar()) == "k"
    finally:
        await other.close()
        await db.close()


async def test_sqlite_units_of_work_commit_with_the_asked_durability(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path}/durable.db")

    def synchronous(conn: Connection) -> int:
        return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())

    def at_the_driver(conn: DriverTransaction) -> int:
        return int(conn.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0])

    try:
        assert await db.write(synchronous, durable=True) == 2  # FULL
        assert await db.write(synchronous) == 1  # NORMAL
        assert await db.read(synchronous) == 1
        assert await db.write(at_the_driver, durable=True, driver=True) == 2
        assert await db.write(at_the_driver, driver=True) == 1
        assert await db.read(at_the_driver, driver=True) == 1
        assert await db.write(synchronous) == 1  # the pooled connection's setting is known
    finally:
        await db.close()


async def test_driver_level_units_commit_roll_back_and_lose_no_update(db: Database) -> None:
    """The same transactions at the driver level: what a unit wrote is committed, a failing
    unit leaves nothing, and concurrent read-modify-write units do not interleave (SQLite:
    the one writer thread and BEGIN IMMEDIATE; PostgreSQL: the row lock)."""
    await db.write(
        lambda conn: conn.execute(counters.insert().values(key="k", value=0, window_end=LATER))
    )

    def increment(conn: DriverTransaction) -> None:
        value = _VALUE.execute(conn, {"key": "k"}).scalar()
        _SET.execute(conn, {"key": "k", "value": value + 1})

    def increment_then_fail(conn: DriverTransaction) -> None:
        increment(conn)
        raise ValueError("the work's own error")

    with pytest.raises(ValueError, match="the work's own error"):
        await db.write(increment_then_fail, driver=True)
    assert await db.read(lambda conn: _VALUE.execute(conn, {"key": "k"}).scalar(), driver=True) == 0

    await asyncio.gather(*(db.write(increment, driver=True) for _ in range(50)))
    assert await db.read(lambda conn: conn.execute(select(counters.c.value)).scalar()) == 50


async def test_postgres_on_a_closed_port_is_unavailable() -> None:
    db = Database.open(f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing")
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await db.ping()
        assert isinstance(raised.value, ServiceUnavailable)
        assert raised.value.status == 503
        with pytest.raises(StoreUnavailable):
            await db.upgrade()
    finally:
        await db.close()


async def test_unusable_sqlite_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    db = Database.open(f"sqlite:///{tmp_path}/dir.db")
    try:
        with pytest.raises(StoreUnavailable):
            await db.ping()
        with pytest.raises(StoreUnavailable):
            await db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
        with pytest.raises(StoreUnavailable):
            await db.write(lambda conn: conn.execute(text("SELECT 1")).scalar())
        with pytest.raises(StoreUnavailable):
            await db.read(lambda conn: _ONE.execute(conn, {}).scalar(), driver=True)
        with pytest.raises(StoreUnavailable):
            await db.write(lambda conn: _ONE.execute(conn, {}).scalar(), driver=True)
        with pytest.raises(StoreUnavailable):
            async with db.connect() as conn:
                await conn.execute(text("SELECT 1"))
        # aiosqlite (0.22) stops the worker thread of a failed connect without awaiting it;
        # let it finish while the event loop is still open.
        await asyncio.sleep(0.1)
    finally:
        await db.close()


async def test_ping(db: Database) -> None:
    await db.ping()
    assert "piigate" in repr(db) or db.dialect in repr(db)


async def test_downgrade_to_base_and_back(db: Database) -> None:
    from alembic import command

    from piigate.store.db import alembic_config

    async with db.begin(immediate=True) as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
    async with db.connect() as conn:
        left = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert left <= {"alembic_version"}
    await db.upgrade()
    assert await db.current_revision() == HEAD


def test_alembic_command_without_a_connection_opens_its_own(tmp_path: Path) -> None:
    # The path the ``alembic`` CLI takes: env.py builds the engine from sqlalchemy.url.
    from alembic import command

    from piigate.store.db import alembic_config

    config = alembic_config()
    config.set_main_option("sqlalchemy.url", f"sqlite:///{tmp_path}/cli.db")
    command.upgrade(config, "head")

    async def revision() -> str | None:
        db = Database.open(f"sqlite:///{tmp_path}/cli.db")
        try:
            return await db.current_revision()
        finally:
            await db.close()

    assert asyncio.run(revision()) == HEAD


async def test_a_unit_of_work_started_while_closing_is_refused_not_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background task's read that starts while close() awaits would re-create the engines
    and threads being dropped (and keep a connection to a store meant to be closed): it is
    refused instead. After close() the store opens again on first use."""
    from sqlalchemy.ext.asyncio import AsyncEngine

    db = Database.open(f"sqlite:///{tmp_path}/closing.db")
    await db.upgrade()
    assert await db.read(lambda conn: conn.execute(text("SELECT 1")).scalar()) == 1
    disposing, release = asyncio.Event(), asyncio.Event()
    real_dispose = AsyncEngine.dispose

    async def slow_dispose(self: AsyncEngine, close: bool = True) -> None:
        disposing.set()
        await release.wait()
        await real_dispose(self, close)

    monkeypatch.setattr(AsyncEngine, "dispose", slow_dispose)
    closing = asyncio.ensure_future(db.close())
    await asyncio.wait_for(disposing.wait(), 5)
    with pytest.raises(StoreUnavailable, match="closing"):
        await db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
    with pytest.raises(StoreUnavailable, match="closing"):
        await db.write(lambda conn: conn.execute(text("SELECT 1")).scalar())
    assert db._sync is None and db._readers is None and db._writer is None
    release.set()
    await closing
    assert await db.read(lambda conn: conn.execute(text("SELECT 1")).scalar()) == 1
    await db.close()


def _backend_pid(conn: DriverTransaction) -> int:
    return int(conn.dbapi_connection.execute("SELECT pg_backend_pid()").fetchone()[0])


async def test_durable_blocking_units_keep_one_connection_and_replace_a_lost_one(
    db: Database,
) -> None:
    """The audit writer's commits (``run_durable_blocking``) share one connection held out of
    the pool. On PostgreSQL, one the server dropped while it sat idle is found by a ping and
    replaced before the next unit; one dropped under a unit fails that unit only."""

    def touch(conn: DriverTransaction) -> int:
        return int(conn.dbapi_connection.execute("SELECT 1").fetchone()[0])

    assert await asyncio.to_thread(db.run_durable_blocking, touch) == 1
    assert db._held is not None
    held = db._held.connection
    assert held is not None and held.is_valid
    assert await asyncio.to_thread(db.run_durable_blocking, touch) == 1
    assert db._held.connection is held  # no checkout, no return to the pool between units
    if db.dialect != "postgresql":
        await db.close()
        assert db._held is None
        return
    import psycopg

    def terminate(pid: int) -> None:
        url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    first = await asyncio.to_thread(db.run_durable_blocking, _backend_pid)
    db._held.idle_seconds = 0.0  # idle "long enough": pinged
    await asyncio.to_thread(terminate, first)
    second = await asyncio.to_thread(db.run_durable_blocking, _backend_pid)
    assert second != first
    db._held.idle_seconds = 3600.0  # not pinged
    await asyncio.to_thread(terminate, second)
    with pytest.raises(StoreUnavailable):
        await asyncio.to_thread(db.run_durable_blocking, _backend_pid)
    third = await asyncio.to_thread(db.run_durable_blocking, _backend_pid)
    assert third not in (first, second)
