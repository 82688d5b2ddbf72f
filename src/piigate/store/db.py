"""The database handle: SQLite (WAL) or PostgreSQL, its units of work, and its migrations.

The application's transactions are units of work: plain synchronous functions that
:meth:`Database.read` and :meth:`Database.write` run as one transaction each, in worker threads
through a synchronous driver (the stdlib's ``sqlite3``, or psycopg). The async engine serves
the migrations and :meth:`Database.connect`/:meth:`Database.begin` (ad-hoc connections: tests,
inspection).

Every failure to reach the database surfaces as :class:`StoreUnavailable` (HTTP 503), so the
edges fail closed instead of treating a dead store as "no such row".
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, overload

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, exc, text
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from piigate.errors import Conflict, ServiceUnavailable
from piigate.files import private_directory, private_file
from piigate.store.driver import DriverTransaction, HeldConnection, in_driver_transaction
from piigate.store.sqlite import DURABLE, IMMEDIATE, install_sqlite_hooks
from piigate.store.urls import blocking_url, normalize_url, sqlite_path
from piigate.store.workers import Workers

T = TypeVar("T")

__all__ = [
    "AlreadyExists",
    "Database",
    "StoreUnavailable",
]

MIGRATIONS = Path(__file__).parent / "migrations"

# Any constant works, as long as every piigate process uses the same one: the key of the
# PostgreSQL advisory lock that serialises migrations of one database ("piigate" in ASCII).
_MIGRATION_LOCK_KEY = 0x7069696761746500

# Threads per pool (reads, writes) for PostgreSQL's units of work: concurrent transactions,
# within the synchronous engine's connection pool (5 + 10 overflow).
_POSTGRES_THREADS = 4
# run_durable_blocking pings its held connection first after this long without a batch.
_HELD_IDLE_SECONDS = 1.0

# Errors that mean "the store cannot answer right now". IntegrityError is a DBAPIError too, but
# it is an answer (a constraint said no), so it is re-raised untouched.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    exc.DBAPIError,
    exc.TimeoutError,  # pool checkout timed out
    exc.ResourceClosedError,
    OSError,
    TimeoutError,
)


class StoreUnavailable(ServiceUnavailable):
    """The database cannot be reached or failed mid-operation; nothing was acknowledged."""

    code = "store_unavailable"
    title = "Store unavailable"


class AlreadyExists(Conflict):
    """A row with this key exists already (a taken username, a duplicate API key name)."""

    code = "already_exists"
    title = "Already exists"


class _SyncEngines(NamedTuple):
    """One synchronous engine and its option sets, built once rather than per transaction."""

    plain: Engine
    write: Engine  # BEGIN IMMEDIATE on SQLite (the begin hook)
    durable: Engine  # ... and synchronous=FULL
    snapshot: Engine  # PostgreSQL: REPEATABLE READ


class Database:
    """An opened store. Create with :meth:`open`; run :meth:`upgrade` once at start-up."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        # The store through a synchronous driver, and the threads that run units of work on it
        # (see read()/write()); created on first use, dropped by close().
        self._sync: _SyncEngines | None = None
        self._writer: Workers | None = None
        self._readers: Workers | None = None
        # While close() runs: a unit of work started then (a background task's) is refused,
        # rather than re-creating the engines and threads being dropped.
        self._closing = False
        # run_durable_blocking's connection, kept out of the pool.
        self._held: HeldConnection | None = None
        # The async pool, with the option the SQLite begin hook turns into BEGIN IMMEDIATE
        # (ignored on PostgreSQL).
        self._write_engine = engine.execution_options(**{IMMEDIATE: True})

    @classmethod
    def open(cls, url: str | URL, **engine_options: Any) -> Database:
        """Create the engine (no connection is made yet). ``engine_options`` go to SQLAlchemy's
        async engine (migrations, :meth:`connect`), not to the units of work's synchronous one.

        Bound parameters are hidden from SQLAlchemy's error messages and logs: they hold
        password hashes, token hashes and audit data, and errors end up in log lines.
        """
        target = normalize_url(url)
        if target.get_backend_name() == "sqlite":
            path = sqlite_path(target)
            if path is not None:
                # The database holds password hashes and the audit trail: owner only. SQLite
                # gives its -wal, -shm and -journal files the database file's mode.
                private_directory(path.parent)
                private_file(path)
            engine = create_async_engine(target, **{"hide_parameters": True, **engine_options})
            install_sqlite_hooks(engine.sync_engine)
        else:
            options: dict[str, Any] = {
                "hide_parameters": True,
                "pool_pre_ping": True,
                "connect_args": {"timeout": 5},
            }
            options.update(engine_options)
            engine = create_async_engine(target, **options)
        return cls(engine)

    @property
    def files(self) -> tuple[Path, ...]:
        """The files of a SQLite store, the database and its -wal, -shm and -journal files
        (whether they exist or not); none for PostgreSQL."""
        path = sqlite_path(self.engine.url)
        if path is None:
            return ()
        return (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal")))

    @property
    def url(self) -> str:
        """The URL to open this store again (another process); holds any password: never log."""
        return self.engine.url.render_as_string(hide_password=False)

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    async def close(self) -> None:
        """Let the queued units of work finish, then drop the threads and every pooled
        connection. A unit of work started while this runs raises ``StoreUnavailable``; one
        started after it opens the store again."""
        self._closing = True
        try:
            for pool in (self._writer, self._readers):
                if pool is not None:
                    pool.shutdown()  # units of work are short; let them finish
            self._writer = self._readers = None
            held, self._held = self._held, None
            if held is not None:
                held.close()
            if self._sync is not None:
                self._sync.plain.dispose()
                self._sync = None
            await self.engine.dispose()
        finally:
            self._closing = False

    async def ping(self) -> None:
        await self.read(lambda conn: conn.execute(text("SELECT 1")).scalar())

    # -- units of work -----------------------------------------------------------------------

    @overload
    async def read(self, work: Callable[[Connection], T], *, snapshot: bool = False) -> T: ...

    @overload
    async def read(self, work: Callable[[DriverTransaction], T], *, driver: Literal[True]) -> T: ...

    async def read(
        self, work: Callable[[Any], T], *, snapshot: bool = False, driver: bool = False
    ) -> T:
        """Run ``work`` (plain synchronous SQLAlchemy) in one read transaction, rolled back, in
        a reader thread through the synchronous driver.

        On SQLite its statements always share one snapshot. On PostgreSQL each sees what was
        committed when it started (READ COMMITTED), unless ``snapshot`` asks for one snapshot
        across them (REPEATABLE READ).

        ``driver``: ``work`` runs only ``store.driver.DriverStatement``\\ s, and gets a
        :class:`DriverTransaction` on a pooled DB-API connection instead of a SQLAlchemy
        ``Connection`` (a unit of work on a hot path: the same transaction without SQLAlchemy's
        per-transaction machinery).
        """
        if driver:
            return await self._in_thread(self._reader_pool, self._driver_blocking, work, False)
        return await self._in_thread(self._reader_pool, self._read_blocking, work, snapshot)

    @overload
    async def write(self, work: Callable[[Connection], T], *, durable: bool = False) -> T: ...

    @overload
    async def write(
        self,
        work: Callable[[DriverTransaction], T],
        *,
        durable: bool = False,
        driver: Literal[True],
    ) -> T: ...

    async def write(
        self, work: Callable[[Any], T], *, durable: bool = False, driver: bool = False
    ) -> T:
        """Run ``work`` (plain synchronous SQLAlchemy) in one write transaction, committed when
        it returns; an exception rolls it back.

        ``durable``: the COMMIT survives power loss, not only a crash. In WAL mode SQLite's
        ``synchronous=NORMAL`` may lose the last commits on power failure; the audit log
        acknowledges nothing that is not durable, so it commits with ``synchronous=FULL``.
        ``driver``: as for :meth:`read`.

        On SQLite the whole transaction runs in the process's one writer thread with the stdlib
        driver, under ``BEGIN IMMEDIATE``: a transaction costs one hand-off between threads
        however many statements it runs, and this process's writers queue for that thread
        rather than poll SQLite's busy handler for the write lock (only other processes -- the
        audit writer, other nodes -- meet it there). On PostgreSQL it
        runs in one of a few writer threads through psycopg, off the event loop.
        """
        if driver:
            run: Callable[..., T] = functools.partial(self._driver_blocking, write=True)
            return await self._in_thread(self._writer_pool, run, work, durable)
        return await self._in_thread(self._writer_pool, self._write_blocking, work, durable)

    async def _in_thread(self, pool: Callable[[], Workers], run: Callable[..., T], *args: Any) -> T:
        if self._closing:
            raise StoreUnavailable("the store is closing")
        self._blocking_engines()  # created on the event loop, never by two threads at once
        return await pool().run(run, *args)

    def _reader_pool(self) -> Workers:
        if self._readers is None:
            threads = 2 if self.dialect == "sqlite" else _POSTGRES_THREADS
            self._readers = Workers(threads, "piigate-store-read")
        return self._readers

    def _writer_pool(self) -> Workers:
        # SQLite has one writer at a time: this process's writes queue here, not in SQLite's
        # busy handler. PostgreSQL locks rows, so its writes may run side by side.
        if self._writer is None:
            threads = 1 if self.dialect == "sqlite" else _POSTGRES_THREADS
            self._writer = Workers(threads, "piigate-store-write")
        return self._writer

    def _blocking_engines(self) -> _SyncEngines:
        """The same store through a synchronous driver: the stdlib's ``sqlite3``, or psycopg."""
        if self._sync is None:
            url = blocking_url(self.engine.url)
            if self.dialect == "sqlite":
                engine = create_engine(url, hide_parameters=True)
                install_sqlite_hooks(engine)
            else:
                engine = create_engine(
                    url,
                    hide_parameters=True,
                    pool_pre_ping=True,
                    connect_args={"connect_timeout": 5},
                    # Positional (%s), as the audit group commit's driver-level INSERT
                    # (store/audit.py) needs.
                    paramstyle="format",
                )
            self._sync = _SyncEngines(
                plain=engine,
                write=engine.execution_options(**{IMMEDIATE: True}),
                durable=engine.execution_options(**{IMMEDIATE: True, DURABLE: True}),
                snapshot=engine.execution_options(isolation_level="REPEATABLE READ")
                if self.dialect == "postgresql"
                else engine,  # SQLite's reads always see one snapshot
            )
        return self._sync

    def _read_blocking(self, work: Callable[[Connection], T], snapshot: bool) -> T:
        engines = self._blocking_engines()
        with _translated(), (engines.snapshot if snapshot else engines.plain).connect() as conn:
            try:
                return work(conn)
            finally:
                conn.rollback()

    def _write_blocking(self, work: Callable[[Connection], T], durable: bool) -> T:
        engines = self._blocking_engines()
        with _translated(), (engines.durable if durable else engines.write).begin() as conn:
            return work(conn)

    def _driver_blocking(
        self, work: Callable[[DriverTransaction], T], durable: bool, *, write: bool = False
    ) -> T:
        with _translated():
            return in_driver_transaction(
                self._blocking_engines().plain, work, write=write, durable=durable
            )

    # -- connections -------------------------------------------------------------------------

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autobegins a transaction, rolled back on exit)."""
        async with _translating(), self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def begin(self, *, immediate: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed on success.

        ``immediate=True`` takes SQLite's write lock at BEGIN (``BEGIN IMMEDIATE``): use it when
        the transaction reads before it writes, or two writers could both read the old state.
        """
        engine = self._write_engine if immediate else self.engine
        async with _translating(), engine.begin() as conn:
            yield conn

    def run_durable_blocking(self, work: Callable[[DriverTransaction], T]) -> T:
        """``write(work, durable=True, driver=True)`` in the calling thread (the audit writer
        process); it blocks until the commit is durable. Its one caller, a process that writes
        alone, commits batch after batch on one connection held out of the pool
        (``driver.HeldConnection``), pinged after :data:`_HELD_IDLE_SECONDS` idle."""
        with _translated():
            if self._held is None:
                engine = self._blocking_engines().plain
                self._held = HeldConnection(engine, idle_seconds=_HELD_IDLE_SECONDS)
            return self._held.run(work, write=True, durable=True)

    # -- migrations --------------------------------------------------------------------------

    async def upgrade(self, revision: str = "head") -> None:
        """Migrate to ``revision``; idempotent, and safe when several processes start at once.

        The whole upgrade runs in one transaction (both backends have transactional DDL) that
        first takes a lock: a PostgreSQL advisory lock, or SQLite's write lock via BEGIN
        IMMEDIATE. The second process waits, then finds the schema current and does nothing.
        """
        async with self.begin(immediate=True) as conn:
            if self.dialect == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            await conn.run_sync(_run_upgrade, revision)

    async def current_revision(self) -> str | None:
        async with self.connect() as conn:
            return await conn.run_sync(_current_revision)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the packaged migrations; no ``alembic.ini`` needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _run_upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except exc.IntegrityError as error:
        clean = _without_detail(error)
        if clean is error:
            raise
        raise clean from None
    except _UNAVAILABLE as error:
        raise StoreUnavailable("the store is unavailable") from error


def _without_detail(error: exc.IntegrityError) -> exc.IntegrityError:
    """``error`` without PostgreSQL's ``DETAIL`` line, which psycopg puts in the message and
    which quotes the conflicting row's values (``Key (token_hash)=(...) already exists``):
    errors end up in logs. The primary message names the constraint, which is what callers
    and readers need."""
    diag = getattr(error.orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if not isinstance(primary, str) or error.orig is None:
        return error
    return exc.IntegrityError(
        error.statement, None, type(error.orig)(primary), hide_parameters=True
    )


@asynccontextmanager
async def _translating() -> AsyncIterator[None]:
    with _translated():
        yield
