"""The bypass corpus, part two: the SSN carried out through a DATA FLOW rather than a result.

A gateway that only masks result columns misses these: the value is copied into something the
catalog does not watch (a temporary table or view, an uncatalogued column, a session setting, a
large object, a comment), or it reaches the client as a notice, an error text, a notification
payload, a reported parameter or COPY data. Statements that change catalogued or shared tables
run inside a transaction that ``then`` rolls back, so every case leaves the schema as it was.
"""

from __future__ import annotations

from typing import Final

from bypass_cases import Bypass, case

__all__ = ["FLOWS"]

_TX: Final = ("BEGIN",)
_ROLLBACK: Final = ("ROLLBACK",)
_ONE: Final = "(SELECT ssn FROM customers WHERE id = 2)"


def _do(body: str) -> str:
    return f"DO $$ BEGIN {body} END $$"


_NOTICES = (
    case("notice", "do-raise-notice", _do(f"RAISE NOTICE '%', {_ONE};"), fetch="notice"),
    case("notice", "do-raise-warning", _do(f"RAISE WARNING 'w %', {_ONE};"), fetch="notice"),
    case("notice", "do-raise-info", _do(f"RAISE INFO 'i %', {_ONE};"), fetch="notice"),
    case("notice", "do-detail", _do(f"RAISE NOTICE 'n' USING DETAIL = {_ONE};"), fetch="notice"),
    case("notice", "do-hint", _do(f"RAISE NOTICE 'n' USING HINT = {_ONE};"), fetch="notice"),
    case(
        "notice",
        "function-in-select",
        "SELECT count(pg_temp.say(ssn)) FROM customers",
        setup=(
            "CREATE FUNCTION pg_temp.say(text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE NOTICE '%', $1; RETURN 1; END $$",
        ),
        fetch="notice",
    ),
    case(
        "notice",
        "trigger",
        "UPDATE customers SET name = name WHERE id = 2",
        setup=(
            *_TX,
            "CREATE FUNCTION pg_temp.trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE NOTICE '%', NEW.ssn; RETURN NEW; END $$",
            "CREATE TRIGGER bypass_trg BEFORE UPDATE ON customers "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.trg()",
        ),
        then=_ROLLBACK,
        fetch="notice",
    ),
)

_ERRORS = (
    case("error", "do-raise-exception", _do(f"RAISE EXCEPTION '%', {_ONE};"), fetch="error"),
    case(
        "error",
        "do-exception-detail",
        _do(f"RAISE EXCEPTION 'e' USING DETAIL = {_ONE};"),
        fetch="error",
    ),
    case("error", "do-assert", _do(f"ASSERT false, {_ONE};"), fetch="error"),
    case("error", "cast-int", "SELECT ssn::int FROM customers WHERE id = 2", fetch="error"),
    case("error", "cast-numeric", "SELECT ssn::numeric FROM customers WHERE id = 2", fetch="error"),
    case("error", "cast-uuid", "SELECT ssn::uuid FROM customers WHERE id = 2", fetch="error"),
    case(
        "error", "cast-regclass", "SELECT ssn::regclass FROM customers WHERE id = 2", fetch="error"
    ),
    case(
        "error",
        "cast-int-extended",
        "SELECT ssn::int FROM customers WHERE id = %s",
        protocol="extended",
        binary=True,
        params=(2,),
        fetch="error",
    ),
    case(
        "error",
        "unique-violation",
        "INSERT INTO customers (id, name, ssn) SELECT 99, 'dup', ssn FROM customers WHERE id = 2",
        setup=_TX,
        then=_ROLLBACK,
        fetch="error",
    ),
    case(
        "error",
        "not-null-failing-row",
        "UPDATE customers SET name = NULL WHERE id = 2",
        setup=_TX,
        then=_ROLLBACK,
        fetch="error",
    ),
    case(
        "error",
        "check-failing-row",
        "INSERT INTO pg_temp.ck SELECT ssn FROM customers WHERE id = 2",
        setup=("CREATE TEMP TABLE ck (v text CHECK (v = ''))",),
        fetch="error",
    ),
)

_SETTINGS = (
    case(
        "setting",
        "set-config",
        "SELECT length(set_config('bypass.x', ssn, false)) FROM customers WHERE id = 2",
        then=("SELECT current_setting('bypass.x')",),
        fetch="then",
    ),
    case(
        "setting",
        "set-config-local",
        "SELECT length(set_config('bypass.y', ssn, true)) FROM customers WHERE id = 2",
        setup=_TX,
        then=("SHOW bypass.y", *_ROLLBACK),
        fetch="then",
    ),
    case(
        "setting",
        "do-execute-set",
        _do(f"EXECUTE format('SET bypass.z = %L', {_ONE});"),
        then=("SHOW bypass.z",),
        fetch="then",
    ),
    case(
        "setting",
        "application-name",
        "SELECT length(set_config('application_name', ssn, false)) FROM customers WHERE id = 2",
        fetch="setting",
    ),
)

_NOTIFICATIONS = (
    case(
        "notify",
        "pg-notify",
        "SELECT pg_notify('bypass', ssn) FROM customers WHERE id = 2",
        setup=("LISTEN bypass",),
        fetch="notify",
    ),
    case(
        "notify",
        "pg-notify-hidden",
        "SELECT count(*) FROM (SELECT pg_notify('bypass', ssn) FROM customers) s",
        setup=("LISTEN bypass",),
        fetch="notify",
    ),
    case(
        "notify",
        "do-execute-notify",
        _do(f"EXECUTE format('NOTIFY bypass, %L', {_ONE});"),
        setup=("LISTEN bypass",),
        fetch="notify",
    ),
)

_COPIES = (
    case("copy", "query", "COPY (SELECT ssn FROM customers) TO STDOUT", fetch="copy"),
    case("copy", "table", "COPY customers TO STDOUT", fetch="copy"),
    case("copy", "column-csv", "COPY customers (ssn) TO STDOUT WITH (FORMAT csv)", fetch="copy"),
    case(
        "copy",
        "view-binary",
        "COPY (SELECT * FROM v_people) TO STDOUT (FORMAT binary)",
        fetch="copy",
    ),
    case("copy", "mixed-case", 'COPY "People" TO STDOUT', fetch="copy"),
)

_TEMPORARY = (
    case(
        "flow",
        "create-temp-table-as",
        "CREATE TEMP TABLE t1 AS SELECT ssn AS v FROM customers",
        then=("SELECT v FROM t1",),
        fetch="then",
    ),
    case(
        "flow",
        "select-into",
        "SELECT ssn AS v INTO TEMP t2 FROM customers",
        then=("SELECT v FROM t2",),
        fetch="then",
    ),
    case(
        "flow",
        "create-temp-view",
        "CREATE TEMP VIEW tv AS SELECT ssn AS v FROM customers",
        then=("SELECT v FROM tv",),
        fetch="then",
    ),
    case(
        "flow",
        "insert-select-notes",
        "INSERT INTO notes (body) SELECT ssn FROM customers",
        setup=_TX,
        then=("SELECT body FROM notes", *_ROLLBACK),
        fetch="then",
    ),
    case(
        "flow",
        "update-into-name",
        "UPDATE customers SET name = ssn WHERE id = 2",
        setup=_TX,
        then=("SELECT name FROM customers WHERE id = 2", *_ROLLBACK),
        fetch="then",
    ),
    case(
        "flow",
        "merge-into-notes",
        "MERGE INTO notes n USING customers c ON false "
        "WHEN NOT MATCHED THEN INSERT (body) VALUES (c.ssn)",
        setup=_TX,
        then=("SELECT body FROM notes", *_ROLLBACK),
        fetch="then",
    ),
    case(
        "flow",
        "rule-instead-select",
        "INSERT INTO pg_temp.tr VALUES (1)",
        setup=(
            "CREATE TEMP TABLE tr (x int)",
            "CREATE RULE r AS ON INSERT TO pg_temp.tr DO INSTEAD SELECT ssn FROM customers",
        ),
    ),
    case(
        "flow",
        "default-function",
        "INSERT INTO pg_temp.td (x) VALUES (1) RETURNING s",
        setup=(
            "CREATE FUNCTION pg_temp.d() RETURNS text LANGUAGE sql "
            "AS $$ SELECT ssn FROM customers WHERE id = 2 $$",
            "CREATE TEMP TABLE td (x int, s text DEFAULT pg_temp.d())",
        ),
    ),
    case(
        "flow",
        "large-object",
        "SELECT lo_from_bytea(4242424, ssn::bytea) FROM customers WHERE id = 2",
        setup=_TX,
        then=("SELECT lo_get(4242424)", *_ROLLBACK),
        fetch="then",
    ),
    case(
        "flow",
        "comment",
        _do(f"EXECUTE format('COMMENT ON TABLE notes IS %L', {_ONE});"),
        setup=_TX,
        then=("SELECT obj_description('notes'::regclass, 'pg_class')", *_ROLLBACK),
        fetch="then",
    ),
    case(
        "flow",
        "statistics",
        "ANALYZE customers",
        then=(
            "SELECT histogram_bounds::text FROM pg_stats "
            "WHERE tablename = 'customers' AND attname = 'ssn'",
        ),
        fetch="then",
    ),
)

_RETURNING = (
    case(
        "returning",
        "update",
        "UPDATE customers SET name = name RETURNING ssn",
        setup=_TX,
        then=_ROLLBACK,
    ),
    case(
        "returning",
        "delete",
        "DELETE FROM customers WHERE id = 2 RETURNING *",
        setup=_TX,
        then=_ROLLBACK,
    ),
    case(
        "returning",
        "insert-select",
        "INSERT INTO notes (body) SELECT ssn FROM customers RETURNING body",
        setup=_TX,
        then=_ROLLBACK,
    ),
    case(
        "returning",
        "on-conflict",
        "INSERT INTO customers (id, name) VALUES (2, 'x') "
        "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING ssn",
        setup=_TX,
        then=_ROLLBACK,
    ),
    case(
        "returning",
        "modifying-cte",
        "WITH u AS (UPDATE customers SET name = name RETURNING ssn) SELECT * FROM u",
        setup=_TX,
        then=_ROLLBACK,
    ),
)

FLOWS: Final[tuple[Bypass, ...]] = (
    *_NOTICES,
    *_ERRORS,
    *_SETTINGS,
    *_NOTIFICATIONS,
    *_COPIES,
    *_TEMPORARY,
    *_RETURNING,
)
