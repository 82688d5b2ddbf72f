"""The bypass corpus through the gateway: no statement returns the SSN without the step-up,
every one returns it after (``test_pg_bypass_direct`` shows each leaks when run directly, so
this cannot pass vacuously)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from bypass_corpus import BYPASSES, SSN, Bypass, leaks, observe
from pg_gateway_support import GatewayEnv, GatewayThread
from sqlalchemy import make_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

_ROUNDS = 6


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str, idp_key: Any
) -> Iterator[GatewayEnv]:
    # approval_wait 0: a statement that needs the step-up is refused at once.
    with GatewayThread(tmp_path_factory.mktemp("pg"), pg_admin_url, idp_key, "0s") as env:
        yield env


def connect(env: GatewayEnv) -> psycopg.Connection[Any]:
    return psycopg.connect(env.dsn(), autocommit=True)


def connect_at(env: GatewayEnv, search_path: str) -> psycopg.Connection[Any]:
    """Through the gateway, starting with another search path than the corpus's schema."""
    return psycopg.connect(env.dsn(options=f"-c search_path={search_path}"), autocommit=True)


def straight(env: GatewayEnv, pg_admin_url: str) -> psycopg.Connection[Any]:
    """A connection straight to the server, as the gateway's upstream role, in the corpus's
    schema: another client's session, the application's, or the database owner's."""
    dsn = make_url(pg_admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(dsn, options=f"-c search_path={env.schema}", autocommit=True)


@pytest.mark.parametrize("case", BYPASSES, ids=lambda c: c.id)
def test_no_bypass_without_the_step_up(gateway: GatewayEnv, case: Bypass) -> None:
    with connect(gateway) as conn:
        seen = observe(conn, case, schema=gateway.schema)
    assert not leaks(seen, case), f"{case.id} returned the SSN without a step-up"


@pytest.mark.parametrize("case", BYPASSES, ids=lambda c: c.id)
def test_every_case_returns_the_ssn_after_the_step_up(gateway: GatewayEnv, case: Bypass) -> None:
    with connect(gateway) as conn:
        for _ in range(_ROUNDS):
            seen = observe(conn, case, schema=gateway.schema)
            if leaks(seen, case):
                return
            if "28SU1" not in seen:  # masked, not refused: ask for the step-up that unmasks
                assert "piigate.unmask" in seen, f"{case.id}: neither masked nor refused"
                conn.execute("SET piigate.unmask = on")
                continue
            gateway.node.clock.advance(30)  # a fresh TOTP time step
            conn.execute(f"SET piigate.otp = '{gateway.code()}'")
            conn.execute("DISCARD ALL")
            conn.execute(f"SET search_path = {gateway.schema}")
    pytest.fail(f"{case.id}: the SSN never came back after {_ROUNDS} step-ups")


_STATEMENT_TEXTS = (
    "SELECT query FROM pg_stat_activity",
    "SELECT a FROM pg_catalog.pg_stat_activity a",
    "SELECT x FROM (SELECT query AS x FROM pg_stat_activity) s",
    "SELECT pg_stat_get_activity(NULL)::text",
    "SELECT query FROM active_statements",  # a view over it, made by the database's owner
)


def test_other_sessions_statement_texts_need_the_step_up(
    gateway: GatewayEnv, pg_admin_url: str
) -> None:
    """A session of the gateway's upstream role (another client's, stepped up) whose statement
    quotes an SSN: its text, in pg_stat_activity, is read like the SSN itself."""
    with straight(gateway, pg_admin_url) as other:
        other.execute(
            "CREATE OR REPLACE VIEW active_statements AS SELECT query FROM pg_stat_activity"
        )
        other.execute(f"SELECT id FROM customers WHERE ssn = '{SSN}'").fetchall()
        with straight(gateway, pg_admin_url) as direct:
            for sql in _STATEMENT_TEXTS:  # not vacuous: each shows the SSN when run directly
                assert SSN in repr(direct.execute(sql).fetchall()), sql
        with connect(gateway) as conn:
            for sql in _STATEMENT_TEXTS:
                with pytest.raises(psycopg.Error) as refused:
                    conn.execute(sql).fetchall()
                assert refused.value.sqlstate == "28SU1", sql


def test_a_partition_added_after_the_start_is_catalogued(
    gateway: GatewayEnv, pg_admin_url: str
) -> None:
    """The gateway learns partitions and inheriting tables as plans name them, so one that a
    migration adds while it runs holds the catalogued table's PII from its first read."""
    with straight(gateway, pg_admin_url) as db:
        db.execute(
            "CREATE TABLE archive_high PARTITION OF archive FOR VALUES FROM (1000) TO (3000)"
        )
        db.execute(f"INSERT INTO archive_high VALUES (2000, '{SSN}')")
        try:
            assert db.execute("SELECT ssn FROM archive_high").fetchall() == [(SSN,)]
            with connect(gateway) as conn:
                for sql in ("SELECT ssn FROM archive_high", "SELECT * FROM archive_high"):
                    assert SSN not in repr(conn.execute(sql).fetchall()), sql
        finally:
            db.execute("DROP TABLE archive_high")


_TRIGGERS = (
    "CREATE TABLE jot (id int, body text)",
    "CREATE FUNCTION jot_fill() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "NEW.body := (SELECT ssn FROM customers WHERE id = 2); RAISE NOTICE '%', NEW.body; "
    "RETURN NEW; END $$",
    "CREATE TRIGGER jot_fill BEFORE INSERT OR UPDATE ON jot "
    "FOR EACH ROW EXECUTE FUNCTION jot_fill()",
    "CREATE TABLE jot_owner (id int PRIMARY KEY)",
    "CREATE TABLE jot_owned (owner int REFERENCES jot_owner ON DELETE CASCADE, body text)",
    "CREATE FUNCTION jot_say() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "RAISE NOTICE '%', (SELECT ssn FROM customers WHERE id = 2); RETURN OLD; END $$",
    "CREATE TRIGGER jot_say BEFORE DELETE ON jot_owned FOR EACH ROW EXECUTE FUNCTION jot_say()",
    # A function that claims to be immutable, which a generated column or a CHECK may call.
    "CREATE FUNCTION jot_ssn(int) RETURNS text LANGUAGE sql IMMUTABLE "
    "AS $$ SELECT ssn FROM customers WHERE id = $1 $$",
    "CREATE TABLE jot_generated (id int, body text GENERATED ALWAYS AS (jot_ssn(id)) STORED)",
    "CREATE FUNCTION jot_check(int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
    "RAISE NOTICE '%', (SELECT ssn FROM customers WHERE id = $1); RETURN true; END $$",
    "CREATE TABLE jot_checked (id int CHECK (jot_check(id)))",
)
_FIRING = (
    "INSERT INTO jot VALUES (1, 'x') RETURNING body",
    "WITH changed AS (UPDATE jot SET body = 'y' RETURNING body) SELECT body FROM changed",
    "DELETE FROM jot_owner WHERE id = 1",  # the cascade fires jot_owned's trigger
    "INSERT INTO jot_generated (id) VALUES (2) RETURNING body",
    "INSERT INTO jot_checked VALUES (2)",
)


def test_statements_that_fire_triggers_need_the_step_up(
    gateway: GatewayEnv, pg_admin_url: str
) -> None:
    """Triggers, generated columns and CHECK constraints with functions, made before by the
    database's owners: what their functions read, or copy where the statement reads it back
    (RETURNING, a notice), is not in the statement, nor in its plan."""
    with straight(gateway, pg_admin_url) as db:
        for sql in _TRIGGERS:
            db.execute(sql)
        try:
            seen: list[str] = []
            db.add_notice_handler(lambda notice: seen.append(str(notice.message_primary)))
            for sql in _FIRING:  # not vacuous: each shows the SSN when run directly
                db.execute("INSERT INTO jot_owner VALUES (1) ON CONFLICT DO NOTHING")
                db.execute("INSERT INTO jot_owned VALUES (1, 'x')")
                cursor = db.execute(sql)
                rows = cursor.fetchall() if cursor.description else []
                assert SSN in repr(rows) + repr(seen), sql
                seen.clear()
            db.execute("INSERT INTO jot_owner VALUES (1) ON CONFLICT DO NOTHING")
            db.execute("INSERT INTO jot_owned VALUES (1, 'x')")
            with connect(gateway) as conn:
                for sql in _FIRING:
                    with pytest.raises(psycopg.Error) as refused:
                        conn.execute(sql)
                    assert refused.value.sqlstate == "28SU1", sql
                with (
                    pytest.raises(psycopg.Error) as refused,
                    conn.cursor().copy("COPY jot FROM STDIN") as copy,
                ):
                    copy.write_row((2, "z"))
                assert refused.value.sqlstate == "28SU1"
        finally:
            db.execute("DROP TABLE jot, jot_owned, jot_owner, jot_generated, jot_checked")
            db.execute("DROP FUNCTION jot_fill(), jot_say(), jot_ssn(int), jot_check(int)")


@pytest.mark.parametrize(
    "expression",
    [
        "reverse(ssn)",  # its last digits are the SSN's first
        "substr(ssn, 1, 6)",
        "left(ssn, 8)",
        "translate(ssn, '-', '')",
        "md5(ssn)",  # 16 bits of a hash each: two such columns single out one SSN
        "md5(ssn || 'x')",
        "ssn || ''",
        "lower(ssn)",
    ],
)
def test_a_value_computed_from_a_masked_column_shows_none_of_it(
    gateway: GatewayEnv, expression: str
) -> None:
    """The class's rule keeps the last digits of the catalogued column itself only; masked
    pieces of computed values would add up to the whole SSN."""
    with connect(gateway) as conn:
        sql = f"SELECT {expression}, ssn FROM customers WHERE id = 2"
        assert conn.execute(sql).fetchall() == [("***", "***-**-9999")]


def test_listening_needs_the_step_up(gateway: GatewayEnv, pg_admin_url: str) -> None:
    """A notification carries whatever its sender put in it, from any session: the app's own
    change feed (a trigger's ``pg_notify(..., row_to_json(NEW)::text)``) reached a client that
    only had to LISTEN."""
    feed = (
        "SELECT pg_notify('changes', (SELECT row_to_json(c)::text FROM customers c WHERE id = 2))"
    )
    with straight(gateway, pg_admin_url) as app:
        with straight(gateway, pg_admin_url) as direct:
            direct.execute("LISTEN changes")
            app.execute(feed)  # not vacuous: a plain listener gets the SSN
            assert any(SSN in n.payload for n in direct.notifies(timeout=5, stop_after=1))
        with connect(gateway) as conn:
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("LISTEN changes")
            assert refused.value.sqlstate == "28SU1"
            gateway.node.clock.advance(30)
            conn.execute(f"SET piigate.otp = '{gateway.code()}'")
            conn.execute("LISTEN changes")  # stepped up: it listens
            app.execute(feed)
            assert any(SSN in n.payload for n in conn.notifies(timeout=5, stop_after=1))


_PATH_SWITCHES = (
    ("SELECT set_config('search_path', '{s}', false)",),
    ("BEGIN", "SELECT set_config('search_path', '{s}', true)"),
    ("WITH x AS (SELECT set_config('search_path', '{s}', false)) SELECT * FROM x",),
)
_READ = "SELECT ssn FROM customers WHERE id = 2"


@pytest.fixture
def decoy(gateway: GatewayEnv, pg_admin_url: str) -> Iterator[str]:
    """A schema with an uncatalogued ``customers`` of its own, dropped afterwards."""
    schema = f"decoy_{secrets.token_hex(4)}"
    with straight(gateway, pg_admin_url) as db:
        db.execute(f"CREATE SCHEMA {schema}")
        db.execute(f"CREATE TABLE {schema}.customers (id int, ssn text)")
        try:
            yield schema
        finally:
            db.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("switch", _PATH_SWITCHES, ids=["set-config", "local", "in-a-cte"])
def test_a_search_path_set_by_a_function_is_read_again(
    gateway: GatewayEnv, pg_admin_url: str, decoy: str, switch: tuple[str, ...]
) -> None:
    """``set_config('search_path', ...)`` changes how the server resolves names: read with the
    old path, ``customers`` was the other schema's uncatalogued table to the gateway."""
    with straight(gateway, pg_admin_url) as direct:  # not vacuous: the server follows it
        direct.execute(f"SET search_path = {decoy}")
        for sql in switch:
            direct.execute(sql.format(s=gateway.schema))
        assert direct.execute(_READ).fetchall() == [(SSN,)]
    with connect_at(gateway, decoy) as conn:
        for sql in switch:
            conn.execute(sql.format(s=gateway.schema))
        assert conn.execute(_READ).fetchall() == [("***-**-9999",)]


def test_statements_after_a_session_change_in_one_query_need_the_step_up(
    gateway: GatewayEnv, decoy: str
) -> None:
    """One simple query is read whole before it runs, with the search path in force then; the
    server runs what follows a SET with the path it sets."""
    sql = f"SET search_path = {gateway.schema}; {_READ}"
    with connect_at(gateway, decoy) as conn:
        result = conn.pgconn.exec_(sql.encode())  # both statements in one Query message
        assert result.status == psycopg.pq.ExecStatus.FATAL_ERROR and result.ntuples == 0
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"28SU1"
