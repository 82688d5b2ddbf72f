"""Statements run at the driver level: compiled once per dialect, executed on the DB-API cursor.

A unit of work on the hot path (a verification's, the audit's group commit) spends most of its
CPU in SQLAlchemy's per-execution machinery -- execution context, parameter construction,
result set-up -- rather than in the database. :class:`DriverStatement` keeps SQLAlchemy for what
it is good at (the statement, written once in Core, compiled for each dialect, each value bound
and read back through its column type's own processors) and hands the compiled SQL and the
processed values straight to the driver's cursor, inside the unit of work's transaction.

Both synchronous drivers take positional parameters (``sqlite3``'s ``?``, psycopg's ``%s`` as
the store configures it). A driver error is raised as SQLAlchemy's ``DBAPIError`` for it, so the
store's error translation (``StoreUnavailable``, constraint violations) stays one code path.

A statement runs in a SQLAlchemy ``Connection``'s transaction, or in a
:class:`DriverTransaction`: a unit of work that runs at the driver level from its ``BEGIN`` to
its ``COMMIT`` (``Database.read``/``write`` with ``driver=True``), without SQLAlchemy's
connection, transaction and event machinery around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Engine, Float, exc
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select
from sqlalchemy.types import TypeEngine

from piigate.store.sqlite import begin

__all__ = [
    "DriverResult",
    "DriverStatement",
    "DriverTransaction",
    "HeldConnection",
    "driver_error",
    "in_driver_transaction",
]

T = TypeVar("T")

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class DriverResult:
    """What a statement returned: its rows (as mappings of column name to value) and how many
    rows it changed (for ``UPDATE``/``DELETE``; -1 when the driver does not say)."""

    rows: list[dict[str, Any]]
    rowcount: int

    def scalar(self) -> Any:
        """The first column of the first row, or None when there is no row."""
        if not self.rows:
            return None
        return next(iter(self.rows[0].values()))


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    order: tuple[str, ...]  # bound parameter names, in placeholder order
    defaults: Mapping[str, Any]  # values written into the statement (literals in WHERE, ...)
    binders: tuple[_Processor, ...]
    names: tuple[str, ...]  # result columns
    readers: tuple[_Processor, ...]


class DriverTransaction:
    """A transaction begun on a pooled DB-API connection: a unit of work at the driver level
    runs its statements in it, and ``Database`` begins it and commits or rolls it back."""

    __slots__ = ("dbapi_connection", "dialect")

    def __init__(self, dialect: Dialect, dbapi_connection: Any) -> None:
        self.dialect = dialect
        self.dbapi_connection = dbapi_connection


# Where a statement runs: a SQLAlchemy connection's transaction, or a driver-level one.
Transaction = Connection | DriverTransaction


class DriverStatement:
    """A Core statement (``select``, ``insert``/``update`` with or without ``RETURNING``) with
    named ``bindparam``s, run at the driver level. Expanding (``IN``) parameters are not
    supported: their SQL depends on the values."""

    def __init__(self, statement: Select[Any] | UpdateBase) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def execute(self, conn: Transaction, params: Mapping[str, Any]) -> DriverResult:
        """Run once with ``params`` in ``conn``'s transaction (begun here if needed)."""
        compiled = self._for(conn.dialect)
        values = _bound(compiled, params)
        cursor = _cursor(conn)
        try:
            cursor.execute(compiled.sql, values)
            rows = cursor.fetchall() if cursor.description is not None else []
            rowcount = int(cursor.rowcount)
        except conn.dialect.loaded_dbapi.Error as error:
            raise driver_error(conn.dialect, compiled.sql, error) from error
        finally:
            cursor.close()
        return DriverResult(_read(compiled, rows), rowcount)

    def execute_many(self, conn: Transaction, params: Iterable[Mapping[str, Any]]) -> None:
        """Run once per mapping in ``params`` (``executemany``): bulk inserts."""
        compiled = self._for(conn.dialect)
        rows = [_bound(compiled, p) for p in params]
        cursor = _cursor(conn)
        try:
            cursor.executemany(compiled.sql, rows)
        except conn.dialect.loaded_dbapi.Error as error:
            raise driver_error(conn.dialect, compiled.sql, error) from error
        finally:
            cursor.close()

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self.statement, dialect)
        return found


def in_driver_transaction(
    engine: Engine, work: Callable[[DriverTransaction], T], *, write: bool, durable: bool
) -> T:
    """``work`` in one transaction on a DB-API connection from ``engine``'s pool: committed
    when ``write`` (on SQLite under ``BEGIN IMMEDIATE``, with ``synchronous=FULL`` when
    ``durable``: ``sqlite.begin``, as the SQLAlchemy path's hook), rolled back otherwise or on
    an exception. Driver errors are raised as SQLAlchemy's; a connection found lost is
    invalidated rather than pooled again."""
    pooled = _checked_out(engine)
    try:
        return _on_connection(pooled, engine.dialect, work, write=write, durable=durable)
    finally:
        pooled.close()


class HeldConnection:
    """One DB-API connection of ``engine`` kept out of its pool between transactions, for a
    process that writes alone, batch after batch (the audit writer): no checkout, no rollback on
    return and no pre-ping per transaction. One that sat idle for :attr:`idle_seconds` is
    pinged first, as the pool's pre-ping would (a restarted PostgreSQL); one found lost is
    replaced. For one thread."""

    def __init__(self, engine: Engine, *, idle_seconds: float) -> None:
        self.engine = engine
        self.idle_seconds = idle_seconds
        self.connection: PoolProxiedConnection | None = None
        self._used = 0.0

    def run(self, work: Callable[[DriverTransaction], T], *, write: bool, durable: bool) -> T:
        """:func:`in_driver_transaction` on the held connection."""
        pooled = self._ready()
        try:
            return _on_connection(pooled, self.engine.dialect, work, write=write, durable=durable)
        finally:
            self._used = time.monotonic()
            if not pooled.is_valid:
                self.connection = None

    def close(self) -> None:
        """Give the connection back to the pool."""
        pooled, self.connection = self.connection, None
        if pooled is not None:
            pooled.close()

    def _ready(self) -> PoolProxiedConnection:
        pooled = self.connection
        if pooled is not None and time.monotonic() - self._used >= self.idle_seconds:
            dialect, dbapi = self.engine.dialect, pooled.dbapi_connection
            try:
                alive = dbapi is not None and dialect.do_ping(dbapi)
            except dialect.loaded_dbapi.Error:
                alive = False
            if not alive:
                pooled.invalidate()
        if pooled is None or not pooled.is_valid:
            pooled = self.connection = _checked_out(self.engine)
        return pooled


def _checked_out(engine: Engine) -> PoolProxiedConnection:
    """A DB-API connection out of ``engine``'s pool (its error raised as SQLAlchemy's)."""
    dialect = engine.dialect
    try:
        return engine.raw_connection()
    except dialect.loaded_dbapi.Error as error:  # what Engine.connect would wrap
        raise driver_error(dialect, "connect", error) from error


def _on_connection(
    pooled: PoolProxiedConnection,
    dialect: Dialect,
    work: Callable[[DriverTransaction], T],
    *,
    write: bool,
    durable: bool,
) -> T:
    """:func:`in_driver_transaction` on ``pooled``, a connection the caller checked out and
    gives back (``is_valid`` False afterwards: it was found lost, and invalidated)."""
    dbapi = pooled.dbapi_connection
    assert dbapi is not None, "a connection checked out of the pool"
    try:
        if dialect.name == "sqlite":
            begin(dbapi, pooled.info, immediate=write, durable=durable)
        result = work(DriverTransaction(dialect, dbapi))
        if write:
            dbapi.commit()
        else:
            dbapi.rollback()
    except BaseException as error:
        _abandon(pooled, dialect, error)
        if isinstance(error, dialect.loaded_dbapi.Error):
            raise driver_error(dialect, "BEGIN/COMMIT", error) from error
        raise
    return result


def _abandon(pooled: PoolProxiedConnection, dialect: Dialect, error: BaseException) -> None:
    """Roll back what ``pooled`` did before ``error``; invalidate it (closed, not pooled again)
    when the error says the connection is lost, or the rollback fails."""
    dbapi = pooled.dbapi_connection
    cause = error.orig if isinstance(error, exc.DBAPIError) else error
    lost = isinstance(cause, dialect.loaded_dbapi.Error) and dialect.is_disconnect(
        cause, dbapi, None
    )
    if not lost:
        try:
            dbapi.rollback()  # type: ignore[union-attr]
        except Exception:
            lost = True
    if lost:
        pooled.invalidate()


def _compile(statement: Select[Any] | UpdateBase, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    order = compiled.positiontup
    if not compiled.positional or order is None:
        raise TypeError(f"{dialect.name}: a positional paramstyle is needed")
    binds = compiled.binds
    if any(binds[name].expanding for name in order):
        raise TypeError("expanding parameters are not supported at the driver level")
    binders = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order
    )
    columns = list(statement.exported_columns)
    return _Compiled(
        sql=str(compiled),
        order=tuple(order),
        defaults={name: binds[name].effective_value for name in order if not binds[name].required},
        binders=binders,
        names=tuple(column.key for column in columns if column.key is not None),
        readers=tuple(_reader(column.type, dialect) for column in columns),
    )


def _reader(column_type: TypeEngine[Any], dialect: Dialect) -> _Processor:
    """The result processor of a column of ``column_type``, chosen before any result exists."""
    try:
        return column_type.dialect_impl(dialect).result_processor(dialect, None)
    except (TypeError, exc.InvalidRequestError):
        # psycopg's numeric processors choose by the result column's type OID, known only once
        # a statement ran; a Float column is double precision, which the driver gives as float.
        if isinstance(column_type, Float) and not column_type.asdecimal:
            return None
        raise


def _bound(compiled: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...]:
    defaults = compiled.defaults
    values = []
    for name, binder in zip(compiled.order, compiled.binders, strict=True):
        value = params[name] if name in params else defaults[name]
        values.append(value if binder is None else binder(value))
    return tuple(values)


def _read(compiled: _Compiled, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    pairs = tuple(zip(compiled.names, compiled.readers, strict=True))
    return [
        {
            name: value if reader is None else reader(value)
            for (name, reader), value in zip(pairs, row, strict=True)
        }
        for row in rows
    ]


def _cursor(conn: Transaction) -> Any:
    """The driver's cursor for ``conn``, in a transaction: SQLAlchemy begins one on a
    statement it runs itself, so one begun here runs the same ``begin`` hooks."""
    if isinstance(conn, DriverTransaction):
        return conn.dbapi_connection.cursor()
    if not conn.in_transaction():
        conn.begin()
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None, "an open connection"
    return dbapi.cursor()


def driver_error(dialect: Dialect, sql: str, error: Exception) -> exc.StatementError:
    """SQLAlchemy's exception for a driver error, as ``Connection.execute`` would raise it."""
    return exc.DBAPIError.instance(
        sql,
        None,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        dialect=dialect,
    )
