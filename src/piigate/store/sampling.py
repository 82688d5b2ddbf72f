"""A few rows of each table of an application's PostgreSQL database, for ``piigate scan``.

It lives in store/ because only store/ speaks SQL (tests/test_layering.py); it is not piigate's
own store. The scan is read-only in every way the server can enforce: each table is read in its
own ``READ ONLY`` transaction (so a table that cannot be read is skipped and the rest go on), under
a ``statement_timeout`` and a ``lock_timeout``, and the session defaults to read-only too.

Nothing here shows a value: errors are reported by what failed (the SQLSTATE's meaning), never by
the server's message, which may quote a row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict

__all__ = ["SampledColumn", "SampledTable", "ScanUnavailable", "display_dsn", "sample_tables"]

# Values are read as text, cut to this many characters: enough for any identifier or address.
VALUE_CHARS: Final = 512
# pg_type.typcategory of the columns whose values are read: strings, numbers, dates and times,
# arrays. Others (booleans, geometry, network addresses, bytea, ...) are judged by name alone.
_SAMPLED_CATEGORIES: Final = ("S", "N", "D", "A")
_SAMPLED_TYPES: Final = ("json", "jsonb", "xml")
# Above this many rows (the planner's estimate), TABLESAMPLE SYSTEM reads a few pages rather
# than BERNOULLI reading every page.
_SYSTEM_SAMPLE_ROWS: Final = 100_000

_TABLES: Final = sql.SQL("""
SELECT n.nspname, c.relname, c.reltuples, a.attname,
       (t.typcategory = ANY(%(categories)s) OR t.typname = ANY(%(types)s)) AS readable_type,
       has_column_privilege(c.oid, a.attnum, 'SELECT') AS may_select
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
 WHERE c.relkind IN ('r', 'p', 'm')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
   AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[]))
 ORDER BY n.nspname, c.relname, a.attnum
""")

# SQLSTATEs (PostgreSQL appendix A) in words; the server's own message is never shown.
_REASONS: Final = {
    "42501": "permission denied",
    "57014": "statement_timeout reached",
    "55P03": "locked by another session, lock_timeout reached",
    "3D000": "the database does not exist",
    "28000": "the server refused the user",
    "28P01": "the server refused the user or password",
    "57P03": "the server is starting up or shutting down",
    "53300": "the server has too many connections",
}


class ScanUnavailable(Exception):
    """The database could not be scanned at all; ``str()`` is one line without secrets."""


@dataclass(frozen=True, slots=True)
class SampledColumn:
    name: str
    values: Sequence[str] | None  # non-empty text values; None when not read


@dataclass(frozen=True, slots=True)
class SampledTable:
    schema: str
    name: str
    columns: Sequence[SampledColumn]
    rows: int | None  # rows read; None when no value was read
    problem: str | None = None  # why values were not read, for a warning


@dataclass
class _Table:
    schema: str
    name: str
    estimate: float
    columns: list[tuple[str, bool, bool]]  # name, of a type whose values are read, may SELECT


def dsn_parts(dsn: str) -> dict[str, str]:
    """The connection parameters of a ``postgresql://`` URL or a ``key=value`` string."""
    # SQLAlchemy-style URLs (postgresql+psycopg://) name a driver libpq does not know.
    text = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", dsn.strip())
    try:
        parts = conninfo_to_dict(text)
    except psycopg.ProgrammingError:
        # libpq's message quotes the DSN, which may hold a password.
        raise ScanUnavailable("invalid DSN: not a PostgreSQL URL or key=value string") from None
    return {k: str(v) for k, v in parts.items() if v is not None} | {"_text": text}


def display_dsn(dsn: str) -> str:
    """Where ``dsn`` points, without its password: ``postgresql://user@host:port/db``."""
    parts = dsn_parts(dsn)
    user = f"{parts['user']}@" if "user" in parts else ""
    host = parts.get("host", "localhost").replace("\n", " ")
    port = f":{parts['port']}" if "port" in parts else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


def sample_tables(
    dsn: str,
    *,
    rows: int,
    schemas: Sequence[str] = (),
    statement_timeout_ms: int = 30_000,
    connect_timeout: int = 10,
) -> Iterator[SampledTable]:
    """Up to ``rows`` rows of each table (and materialized view) in the user schemas, or in
    ``schemas`` only, one table at a time."""
    parts = dsn_parts(dsn)
    where = display_dsn(dsn)
    # After the DSN's own options: a later -c wins, so these cannot be turned off there. The
    # lock wait gives up first, so that a locked table is reported as locked.
    options = parts.get("options", "") + (
        f" -c statement_timeout={statement_timeout_ms} "
        f"-c lock_timeout={min(statement_timeout_ms // 2 or 1, 5000)} "
        "-c default_transaction_read_only=on -c DateStyle=ISO"
    )
    try:
        conn = psycopg.connect(
            parts["_text"], autocommit=True, connect_timeout=connect_timeout, options=options
        )
    except psycopg.Error as exc:
        raise ScanUnavailable(f"cannot connect to {where}: {_connect_reason(exc)}") from None
    with conn:
        try:
            tables = _tables(conn, schemas)
        except psycopg.Error as exc:
            raise ScanUnavailable(f"cannot list the tables of {where}: {_reason(exc)}") from None
        for table in tables:
            yield _sample(conn, table, rows)


def _tables(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[_Table]:
    found: dict[tuple[str, str], _Table] = {}
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        params = {
            "categories": list(_SAMPLED_CATEGORIES),
            "types": list(_SAMPLED_TYPES),
            "schemas": list(schemas) or None,
        }
        for schema, name, estimate, column, typed, may in conn.execute(_TABLES, params):
            table = found.setdefault((schema, name), _Table(schema, name, estimate, []))
            table.columns.append((column, bool(typed), bool(may)))
    return list(found.values())


def _sample(conn: psycopg.Connection[Any], table: _Table, rows: int) -> SampledTable:
    readable = [name for name, typed, may in table.columns if typed and may]
    denied = sum(not may for _, _, may in table.columns)
    problem = None
    if denied == len(table.columns):
        problem = "permission denied"
    elif denied:
        problem = f"permission denied on {denied} of {len(table.columns)} columns"
    if not readable or rows <= 0:
        return _unread(table, problem)
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            got = _rows(conn, table, readable, rows)
    except psycopg.Error as exc:
        return _unread(table, _reason(exc))
    values = {
        name: [v for row in got if (v := row[i]) is not None] for i, name in enumerate(readable)
    }
    columns = [SampledColumn(name, values.get(name)) for name, _, _ in table.columns]
    return SampledTable(table.schema, table.name, columns, len(got), problem)


def _rows(
    conn: psycopg.Connection[Any], table: _Table, columns: list[str], rows: int
) -> list[tuple[Any, ...]]:
    select = sql.SQL(", ").join(
        sql.SQL("left({}::text, {})").format(sql.Identifier(c), sql.Literal(VALUE_CHARS))
        for c in columns
    )
    source = sql.Identifier(table.schema, table.name)
    plain = sql.SQL("SELECT {} FROM {} LIMIT {}").format(select, source, sql.Literal(rows))
    if table.estimate > rows * 10:
        # A sample of the whole table, not its first pages; thrice the share needed, so that
        # LIMIT rather than chance decides how many rows come back.
        method = "SYSTEM" if table.estimate > _SYSTEM_SAMPLE_ROWS else "BERNOULLI"
        percent = min(100.0, 300.0 * rows / table.estimate)
        sampled = sql.SQL("SELECT {} FROM {} TABLESAMPLE {} ({}) LIMIT {}").format(
            select, source, sql.SQL(method), sql.Literal(percent), sql.Literal(rows)
        )
        got = conn.execute(sampled).fetchall()
        if len(got) >= rows:
            return got
    return conn.execute(plain).fetchall()


def _unread(table: _Table, problem: str | None) -> SampledTable:
    columns = [SampledColumn(name, None) for name, _, _ in table.columns]
    return SampledTable(table.schema, table.name, columns, None, problem)


def _reason(exc: psycopg.Error) -> str:
    state = exc.sqlstate or ""
    if isinstance(exc, errors.InsufficientPrivilege):
        return "permission denied"
    return _REASONS.get(state) or (f"SQLSTATE {state}" if state else type(exc).__name__)


def _connect_reason(exc: psycopg.Error) -> str:
    if exc.sqlstate:
        return _reason(exc)
    # libpq's connection errors carry no SQLSTATE: name the common ones by their text.
    text = str(exc).lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("timeout expired", "timed out"),
        ("could not translate host name", "unknown host"),
        ("no such file or directory", "no server on that socket"),
        ("password authentication failed", "the server refused the user or password"),
        ("does not exist", "the database or user does not exist"),
        ("no password supplied", "the server asks for a password"),
    ):
        if needle in text:
            return reason
    return "the connection failed"
