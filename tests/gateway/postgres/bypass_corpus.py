"""The PostgreSQL gateway's bypass corpus: a schema, its catalog, the cases, and an observer.

Written once, run twice. ``test_pg_bypass_direct`` runs every case straight against PostgreSQL
and asserts that the SSN comes back, so the gateway suite, which runs the same cases through
the gateway and asserts that it does NOT come back before a step-up, can never pass because a
case was broken to begin with.

``observe`` is deliberately client-side and protocol-agnostic: it collects everything a psycopg
client can see (rows and column names, notices, error texts, notifications, COPY data, the
reported ``application_name``) as one text, and keeps going after an error, because the
gateway is expected to answer many of these statements with one.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any, Final

import psycopg
from bypass_cases import EXPRESSIONS, SSN, Bypass, Fetch, Protocol
from bypass_flows import FLOWS
from bypass_queries import QUERIES
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

__all__ = [
    "BYPASSES",
    "CATALOG",
    "SCHEMA_SQL",
    "SSN",
    "Bypass",
    "Fetch",
    "Protocol",
    "leaks",
    "loaded_corpus",
    "observe",
]

BYPASSES: Final[tuple[Bypass, ...]] = (*EXPRESSIONS, *QUERIES, *FLOWS)

_ROWS: Final = (
    (1, "Alice", "078-05-1120", "+1 202 555 0101", "1 Elm Street"),
    (2, "Bob", SSN, "+1 202 555 0102", "2 Oak Avenue"),
    (3, "Carol", "457-55-5462", "+1 202 555 0103", "3 Pine Road"),
)


def SCHEMA_SQL(schema: str) -> str:
    """The statements (one simple-protocol script) that create the corpus in ``schema``.

    ``schema`` must be a plain lower-case identifier; everything is qualified with it, so the
    script does not depend on the search_path. Functions qualify their bodies too: they run
    with whatever search_path the caller has.
    """
    if not (schema.isidentifier() and schema == schema.lower() and schema.isascii()):
        raise ValueError(f"not a plain schema name: {schema!r}")
    s = schema
    rows = ", ".join(
        "(" + ", ".join(str(v) if isinstance(v, int) else f"'{v}'" for v in row) + ")"
        for row in _ROWS
    )
    return f"""
CREATE SCHEMA {s};
CREATE TABLE {s}.customers (
    id int PRIMARY KEY, name text NOT NULL, ssn text, phone text, address text);
CREATE UNIQUE INDEX ON {s}.customers (ssn);
INSERT INTO {s}.customers VALUES {rows};
CREATE TABLE {s}.accounts (id int PRIMARY KEY, customer_id int NOT NULL, iban text);
INSERT INTO {s}.accounts VALUES
    (1, 1, 'DE89370400440532013000'), (2, 2, 'GB82WEST12345698765432');
CREATE TABLE {s}."People" ("Id" int PRIMARY KEY, "TaxId" text);
INSERT INTO {s}."People" VALUES (1, '{SSN}');
CREATE TABLE {s}.notes (id serial PRIMARY KEY, body text);
CREATE TABLE {s}.archive (id int NOT NULL, ssn text) PARTITION BY RANGE (id);
CREATE TABLE {s}.archive_low PARTITION OF {s}.archive FOR VALUES FROM (0) TO (1000);
INSERT INTO {s}.archive VALUES (2, '{SSN}');
CREATE TABLE {s}.legacy (id int, ssn text);
CREATE TABLE {s}.legacy_child () INHERITS ({s}.legacy);
INSERT INTO {s}.legacy_child VALUES (2, '{SSN}');
CREATE VIEW {s}.v_archive_low AS SELECT id, ssn FROM {s}.archive_low;
CREATE VIEW {s}.v_archive AS SELECT id, ssn FROM {s}.archive;
CREATE VIEW {s}.v_customers AS SELECT * FROM {s}.customers;
CREATE VIEW {s}.v_people AS SELECT id, ssn AS tax_id FROM {s}.customers;
CREATE VIEW {s}.v_nested AS SELECT tax_id AS t FROM {s}.v_people;
CREATE VIEW {s}.v_barrier WITH (security_barrier = true) AS
    SELECT id, ssn FROM {s}.customers WHERE id > 0;
CREATE MATERIALIZED VIEW {s}.mv_people AS SELECT id, ssn AS s FROM {s}.customers;
CREATE FUNCTION {s}.leak(int) RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT ssn FROM {s}.customers WHERE id = $1 $$;
CREATE FUNCTION {s}.leak_plpgsql(int) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE found text;
BEGIN
    SELECT ssn INTO found FROM {s}.customers WHERE id = $1;
    RETURN found;
END $$;
CREATE FUNCTION {s}.leak_all() RETURNS SETOF text LANGUAGE sql STABLE
    AS $$ SELECT ssn FROM {s}.customers $$;
"""


@contextlib.contextmanager
def loaded_corpus(dsn: str) -> Iterator[str]:
    """A fresh, uniquely named schema holding the corpus on the server at ``dsn`` (a libpq DSN
    with the right to create schemas); yields its name and drops it afterwards."""
    schema = f"piigate_bypass_{secrets.token_hex(5)}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(SCHEMA_SQL(schema))  # type: ignore[arg-type]
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]


def CATALOG(schema: str) -> dict[str, dict[str, str]]:
    """The gateway catalog (``gateway.postgres.catalog``) for the corpus in ``schema``.

    ``notes`` is deliberately absent: copying PII into it is a data flow the gateway must see.
    """
    return {
        f"{schema}.customers": {"ssn": "ssn", "phone": "phone", "address": "mailing_address"},
        f"{schema}.accounts": {"iban": "bank_account"},
        f'{schema}."People"': {'"TaxId"': "ssn"},
        f"{schema}.archive": {"ssn": "ssn"},
        f"{schema}.legacy": {"ssn": "ssn"},
    }


def leaks(text: str, case: Bypass) -> bool:
    """Whether what the client saw (``observe``'s text) contains the case's needle."""
    return case.needle in text


def observe(
    conn: psycopg.Connection[Any],
    case: Bypass,
    *,
    schema: str | None = None,
    notify_timeout: float = 1.0,
) -> str:
    """Run ``case`` on ``conn`` and return everything the client saw, one item a line.

    The connection is switched to autocommit when idle (cases manage their own transactions).
    Errors are recorded and do not stop the case: a failed transaction is rolled back and the
    next statement runs. A broken connection ends the case with what was seen so far.
    ``@schema@`` is ``schema`` (default: the connection's current schema), ``@database@`` the
    connection's database.
    """
    seen: list[str] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        seen.extend(_diagnostic(diag))

    def on_notify(notify: psycopg.Notify) -> None:
        seen.append(f"notify {notify.channel}: {notify.payload}")

    if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        conn.autocommit = True
    conn.add_notice_handler(on_notice)
    conn.add_notify_handler(on_notify)
    app_name = conn.info.parameter_status("application_name")
    try:
        fill = _filler(conn, case, schema)
        for statement in case.setup:
            _run(conn, fill(statement), seen)
        before = sum(line.startswith("notify ") for line in seen)
        _run(
            conn,
            fill(case.sql),
            seen,
            protocol=case.protocol,
            binary=case.binary,
            prepare=case.prepare,
            params=case.params,
            copy=case.fetch == "copy",
        )
        if case.fetch == "notify" and sum(s.startswith("notify ") for s in seen) == before:
            _wait_for_notify(conn, notify_timeout, on_notify, seen)
        for statement in case.then:
            _run(conn, fill(statement), seen)
    except _Broken:
        seen.append("connection broken")
    finally:
        if not conn.closed:
            conn.remove_notice_handler(on_notice)
            conn.remove_notify_handler(on_notify)
    if not conn.closed and conn.info.parameter_status("application_name") != app_name:
        seen.append(f"application_name={conn.info.parameter_status('application_name')}")
    return "\n".join(seen)


class _Broken(Exception):
    """The connection is gone: nothing more can be observed."""


def _wait_for_notify(
    conn: psycopg.Connection[Any],
    timeout: float,
    on_notify: Callable[[psycopg.Notify], None],
    seen: list[str],
) -> None:
    """A notification may arrive after the statement's answer (through a gateway, say).

    ``on_notify`` is off the connection's handlers meanwhile: psycopg delivers each
    notification either to its handlers or to ``notifies()`` (one that arrives in between
    waits in its backlog, which ``notifies()`` yields first), and warns when both are set."""
    conn.remove_notify_handler(on_notify)
    try:
        for notify in conn.notifies(timeout=timeout, stop_after=1):
            on_notify(notify)
    except psycopg.Error as error:
        seen.extend(_error(error))
        raise _Broken from error
    finally:
        if not conn.closed:
            conn.add_notify_handler(on_notify)


def _filler(
    conn: psycopg.Connection[Any], case: Bypass, schema: str | None
) -> Callable[[str], str]:
    """Replaces ``@schema@`` and ``@database@``, resolved before the case's own ``setup``
    (which may change the search_path)."""
    names: dict[str, str] = {"@database@": conn.info.dbname}
    if schema is None and any("@schema@" in s for s in (*case.setup, case.sql, *case.then)):
        found = _run(conn, "SELECT current_schema()", [])
        schema = str(found[0][0]) if found else "public"
    if schema is not None:
        names["@schema@"] = schema

    def fill(sql: str) -> str:
        for token, name in names.items():
            sql = sql.replace(token, name)
        return sql

    return fill


def _run(
    conn: psycopg.Connection[Any],
    sql: str,
    seen: list[str],
    *,
    protocol: Protocol = "simple",
    binary: bool = False,
    prepare: bool = True,
    params: tuple[object, ...] = (),
    copy: bool = False,
) -> list[tuple[Any, ...]]:
    """One statement; its rows (as returned) go to the caller, their text to ``seen``."""
    rows: list[tuple[Any, ...]] = []
    try:
        with conn.cursor() as cur:
            if copy:
                with cur.copy(sql) as data:
                    seen.extend(_text(block) for block in data)
                return rows
            if protocol == "extended":
                cur.execute(sql, params or None, prepare=prepare, binary=binary)  # type: ignore[arg-type]
            else:
                cur.execute(sql)  # type: ignore[arg-type]
            while True:
                if cur.description is not None:
                    seen.append("\t".join(column.name for column in cur.description))
                    for row in cur.fetchall():
                        rows.append(tuple(row))
                        seen.append("\t".join(_text(value) for value in row))
                if not cur.nextset():
                    break
    except psycopg.Error as error:
        seen.extend(_error(error))
        if conn.closed or conn.broken:
            raise _Broken from error
        if conn.info.transaction_status == TransactionStatus.INERROR:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error as again:
                seen.extend(_error(again))
                raise _Broken from again
    return rows


def _text(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _diagnostic(diag: pg_errors.Diagnostic) -> list[str]:
    parts = (diag.severity, diag.message_primary, diag.message_detail, diag.message_hint)
    return [p for p in (*parts, diag.context, diag.internal_query) if p]


def _error(error: psycopg.Error) -> list[str]:
    return [f"error {error.sqlstate or ''}: {error}".rstrip(), *_diagnostic(error.diag)]
