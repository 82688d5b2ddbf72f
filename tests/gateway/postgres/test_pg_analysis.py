"""The SQL analysis: which catalogued columns each statement reads, writes, deletes or exports."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piigate.gateway.postgres import analysis
from piigate.gateway.postgres.analysis import Statement, analyse, shape
from piigate.gateway.postgres.catalog import Catalog, CatalogColumn, TableName

CUSTOMERS = TableName("public", "customers")
ACCOUNTS = TableName("billing", "Accounts")
CATALOG = Catalog(
    {
        CUSTOMERS: {
            "ssn": CatalogColumn(CUSTOMERS, "ssn", "ssn"),
            "phone": CatalogColumn(CUSTOMERS, "phone", "phone"),
        },
        ACCOUNTS: {"iban": CatalogColumn(ACCOUNTS, "iban", "bank_account")},
    }
)
ALL = {"ssn:output", "ssn:flow", "phone:output", "phone:flow", "iban:output", "iban:flow"}


def one(sql: str) -> Statement:
    found = analyse(sql, CATALOG)
    assert len(found) == 1, found
    return found[0]


def touched(sql: str) -> set[str]:
    return {f"{t.column.column}:{t.use}" for t in one(sql).touches}


READS = [
    ("SELECT ssn FROM customers", {"ssn:output"}),
    ("SELECT/**/ssn FROM customers", {"ssn:output"}),
    ("SELECT -- ssn\n id FROM customers", set()),
    ('SELECT "SSN" FROM customers', set()),  # another column for the server
    ('SELECT "ssn" FROM "customers"', {"ssn:output"}),
    ("select SSN from CUSTOMERS", {"ssn:output"}),
    ("SELECT ssn FROM public.customers", {"ssn:output"}),
    ("SELECT ssn FROM other.customers", set()),
    ("SELECT c.ssn AS x FROM customers AS c", {"ssn:output"}),
    ("SELECT (c).ssn FROM customers c", {"ssn:output"}),
    ("SELECT customers.* FROM customers", {"ssn:output", "phone:output"}),
    ("SELECT * FROM customers", {"ssn:output", "phone:output"}),
    ("TABLE customers", {"ssn:output", "phone:output"}),
    ("SELECT c FROM customers c", {"ssn:output", "phone:output"}),
    ("SELECT row_to_json(c) FROM customers c", {"ssn:output", "phone:output"}),
    ("SELECT to_jsonb(c.*) FROM customers c", {"ssn:output", "phone:output"}),
    ("SELECT c::text FROM customers c", {"ssn:output", "phone:output"}),
    ("SELECT upper(ssn) || '-' FROM customers", {"ssn:output"}),
    ("SELECT string_agg(ssn, ',') FROM customers", {"ssn:output"}),
    ("SELECT jsonb_build_object('k', ssn) FROM customers", {"ssn:output"}),
    ("SELECT xmlelement(name x, phone) FROM customers", {"phone:output"}),
    ("SELECT ARRAY(SELECT ssn FROM customers)", {"ssn:output"}),
    ("SELECT (SELECT max(ssn) FROM customers)", {"ssn:output"}),
    ("SELECT (SELECT ssn) FROM customers", {"ssn:output"}),
    ("WITH x AS (SELECT ssn FROM customers) SELECT * FROM x", {"ssn:output"}),
    ("WITH x AS (SELECT ssn FROM customers) SELECT count(*) FROM x", set()),
    ("WITH x(a) AS (SELECT ssn FROM customers) SELECT a FROM x", {"ssn:output"}),
    ("SELECT s.v FROM (SELECT * FROM customers) s(v)", {"ssn:output", "phone:output"}),
    ("SELECT id FROM (SELECT id, ssn FROM customers) s", set()),
    ("SELECT x FROM customers c, LATERAL (SELECT c.ssn) l(x)", {"ssn:output"}),
    ("SELECT id FROM customers UNION SELECT ssn FROM customers", {"ssn:output"}),
    ("SELECT id FROM customers EXCEPT SELECT ssn FROM customers", {"ssn:filter", "ssn:output"}),
    ("SELECT id FROM customers WHERE ssn LIKE '1%'", {"ssn:filter"}),
    ("SELECT id FROM customers c JOIN t ON t.x = c.phone", {"phone:filter"}),
    ("SELECT id FROM customers ORDER BY ssn", {"ssn:filter"}),
    ("SELECT id, ssn FROM customers ORDER BY 2", {"ssn:filter", "ssn:output"}),
    (
        "SELECT count(*) FROM customers GROUP BY phone HAVING min(ssn) > ''",
        {"phone:filter", "ssn:filter"},
    ),
    ("SELECT DISTINCT ON (ssn) id FROM customers", {"ssn:filter"}),
    (
        "SELECT rank() OVER (PARTITION BY phone ORDER BY ssn) FROM customers",
        {"phone:filter", "ssn:filter"},
    ),
    ("SELECT count(*) FILTER (WHERE ssn = '1') FROM customers", {"ssn:filter"}),
    ("SELECT CASE WHEN ssn > '5' THEN 1 END FROM customers", {"ssn:filter"}),
    ("SELECT id FROM customers WHERE id IN (SELECT ssn FROM customers)", {"ssn:filter"}),
    ("SELECT 1 FROM customers LIMIT (SELECT length(ssn) FROM customers)", {"ssn:filter"}),
    ("SELECT (SELECT ssn FROM orders) FROM customers", {"ssn:output"}),  # may be correlated
    ('SELECT iban FROM billing."Accounts"', {"iban:output"}),
    ("SELECT iban FROM billing.accounts", set()),  # folded: another table
    ("SELECT ssn::int FROM customers", {"ssn:output", "ssn:flow"}),  # error text quotes it
    ("SELECT set_config('x', ssn, false) FROM customers", {"ssn:output", "ssn:flow"}),
    ("SELECT pg_notify('ch', phone) FROM customers", {"phone:output", "phone:flow"}),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 123", set()),
]


@pytest.mark.parametrize(("sql", "expected"), READS)
def test_reads(sql: str, expected: set[str]) -> None:
    assert touched(sql) == expected


CHANGES = [
    ("INSERT INTO customers (id, ssn) VALUES (1, $1)", {"ssn:write"}),
    ("INSERT INTO customers VALUES (1, $1)", {"ssn:write", "phone:write"}),
    ("INSERT INTO notes SELECT ssn FROM customers", {"ssn:flow"}),
    (
        "INSERT INTO notes (body) SELECT ssn FROM customers WHERE phone = ''",
        {"ssn:flow", "phone:filter"},
    ),
    ("INSERT INTO customers (ssn) VALUES ('x') RETURNING phone", {"ssn:write", "phone:output"}),
    ("INSERT INTO customers (ssn) SELECT ssn FROM customers", {"ssn:write"}),
    (
        "INSERT INTO customers (ssn) VALUES ('1') ON CONFLICT (id) "
        "DO UPDATE SET phone = EXCLUDED.ssn",
        {"ssn:write", "phone:write"},
    ),
    ("UPDATE customers SET ssn = $1 WHERE id = 1", {"ssn:write"}),
    ("UPDATE customers SET phone = ssn", {"phone:write", "ssn:flow"}),
    ("UPDATE notes n SET body = c.ssn FROM customers c WHERE c.id = n.id", {"ssn:flow"}),
    (
        "UPDATE customers SET ssn = upper(ssn) RETURNING *",
        {"ssn:write", "ssn:output", "phone:output"},
    ),
    ("DELETE FROM customers WHERE phone = 'x'", {"ssn:delete", "phone:delete", "phone:filter"}),
    ("DELETE FROM customers RETURNING ssn", {"ssn:delete", "phone:delete", "ssn:output"}),
    ("TRUNCATE customers", {"ssn:delete", "phone:delete"}),
    ("TRUNCATE other CASCADE", {"ssn:delete", "phone:delete", "iban:delete"}),
    (
        "MERGE INTO notes n USING customers c ON n.id = c.id "
        "WHEN MATCHED THEN UPDATE SET body = c.ssn",
        {"ssn:flow"},
    ),
    (
        "MERGE INTO customers c USING t ON t.id = c.id WHEN MATCHED AND c.phone = '' THEN DELETE",
        {"ssn:delete", "phone:delete", "phone:filter"},
    ),
    (
        "MERGE INTO customers c USING t ON t.id = c.id "
        "WHEN NOT MATCHED THEN INSERT (ssn) VALUES (t.x)",
        {"ssn:write"},
    ),
    ("COPY customers TO STDOUT", {"ssn:export", "phone:export"}),
    ("COPY customers (phone) TO STDOUT WITH (FORMAT csv)", {"phone:export"}),
    ("COPY (SELECT ssn FROM customers) TO STDOUT", {"ssn:export"}),
    ("COPY customers (ssn) FROM STDIN", {"ssn:write"}),
    ("CREATE TEMP TABLE t AS SELECT ssn FROM customers", {"ssn:flow"}),
    ("CREATE VIEW v AS SELECT phone FROM customers", {"phone:flow"}),
    ("CREATE MATERIALIZED VIEW v AS SELECT phone FROM customers", {"phone:flow"}),
    ("SELECT ssn INTO TEMP t FROM customers", {"ssn:flow"}),
    (
        "WITH d AS (DELETE FROM customers RETURNING ssn) SELECT * FROM d",
        {"ssn:delete", "phone:delete", "ssn:output"},
    ),
    ("ALTER TABLE customers RENAME COLUMN ssn TO x", {"ssn:write", "phone:write"}),
    ("DROP TABLE customers", {"ssn:delete", "phone:delete"}),
]


@pytest.mark.parametrize(("sql", "expected"), CHANGES)
def test_changes(sql: str, expected: set[str]) -> None:
    assert touched(sql) == expected


FAILS = [
    ("SELECT public.leak()", "public.leak"),
    ("SELECT leak(ssn) FROM customers", "leak"),
    ('SELECT "upper"(ssn) FROM customers', None),
    ("SELECT pg_temp.f()", "pg_temp.f"),
    ("SELECT * FROM public.rows_of(1)", "public.rows_of"),
    ("SELECT ssn::public.mytype FROM customers", "type"),
    ("SELECT query_to_xml('select ssn from customers', true, true, '')", "runs SQL"),
    ("DO $$ BEGIN RAISE NOTICE '%', (SELECT ssn FROM customers); END $$", "DO block"),
    ("EXECUTE p(1)", "EXECUTE"),
    ("FETCH 10 FROM c", "cursor"),
    ("CALL proc()", "procedure"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", "code"),
    ("CREATE OR REPLACE RULE r AS ON SELECT TO t DO INSTEAD SELECT 1", "code"),
    ("CREATE TRIGGER t AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION f()", "code"),
]


@pytest.mark.parametrize(("sql", "why"), FAILS)
def test_what_cannot_be_followed_fails_closed(sql: str, why: str | None) -> None:
    found = one(sql)
    if why is None:  # a quoted built-in is still the built-in
        assert found.fail_closed is None
        return
    assert found.fail_closed is not None and why in found.fail_closed
    assert touched(sql) >= ALL
    assert found.outputs is None
    assert "ssn" in found.reads and "ssn" in found.unmaskable


def test_a_user_function_shadowing_a_built_in_fails_closed() -> None:
    [found] = analyse(
        "SELECT upper(ssn) FROM customers", CATALOG, user_functions=frozenset({"upper"})
    )
    assert found.fail_closed is not None
    [found] = analyse("SELECT upper(x) FROM t", CATALOG, search_path=("public", "pg_catalog"))
    assert found.fail_closed is not None


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC ssn FROM customers",
        "SELECT ssn FROM CUSTOMERS WHERE x = 'unterminated",
        'SELECT ssn FROM "customers" /* unclosed',
        "SELECT U&\"!0073sn\" UESCAPE '!' FROM customers",
        'FROBNICATE billing."Accounts"',
    ],
)
def test_unparsable_text_naming_a_catalogued_table_is_refused(sql: str) -> None:
    found = one(sql)
    assert found.refuse is not None and found.kind == "other"


def test_unparsable_text_naming_nothing_catalogued_is_let_through() -> None:
    found = one("FROBNICATE widgets")
    assert found.refuse is None and found.kind == "other" and not found.touches


def test_kinds_and_fields() -> None:
    found = analyse(
        "BEGIN; SELECT 1; SET search_path = x; SHOW work_mem; LISTEN ch; NOTIFY ch, 'x'; "
        "EXPLAIN SELECT ssn FROM customers; PREPARE p AS SELECT phone FROM customers; "
        "DECLARE c CURSOR FOR SELECT ssn FROM customers; COMMIT; DISCARD ALL; VACUUM; ;",
        CATALOG,
    )
    kinds = [s.kind for s in found]
    assert kinds == [
        "transaction",
        "select",
        "set",
        "show",
        "listen",
        "notify",
        "explain",
        "prepare",
        "declare",
        "transaction",
        "other",
        "other",
    ]
    assert found[2].changes_session and found[9].changes_session and found[10].changes_session
    assert found[4].fail_closed == "listens for notifications, which may carry any value"
    # set_config may set the search path, whatever its first argument looks like here.
    assert analyse("SELECT set_config('search_path', 'x', false)", CATALOG)[0].changes_session
    assert analyse("SELECT set_config(k, v, true) FROM t", CATALOG)[0].changes_session
    assert not analyse("SELECT upper('x')", CATALOG)[0].changes_session
    assert analyse("UNLISTEN ch", CATALOG)[0].fail_closed is None
    assert not found[1].changes_session and found[1].explainable and not found[6].explainable
    assert found[6].body is not None and found[6].body.kind == "select"
    assert {t.column.column for t in found[6].touches} == {"ssn"}
    assert {t.column.column for t in found[7].touches} == {"phone"}
    assert {t.column.column for t in found[8].touches} == {"ssn"}
    assert analyse("", CATALOG)[0].kind == "empty"
    assert analyse(" ; -- nothing", CATALOG)[0].kind == "empty"
    assert one("SET standard_conforming_strings = off").refuse is not None


def test_outputs_tables_and_where() -> None:
    found = one("SELECT id, upper(ssn), c.phone || ssn FROM customers c WHERE ssn LIKE '1%'")
    assert found.outputs == (frozenset(), frozenset({"ssn"}), frozenset({"phone", "ssn"}))
    assert one("SELECT id FROM customers WHERE ssn LIKE '1%'").outputs == (frozenset(),)
    assert one("SELECT * FROM customers").outputs is None
    assert one("SELECT * FROM (SELECT id, ssn FROM customers) s").outputs == (
        frozenset(),
        frozenset({"ssn"}),
    )
    found = one("SELECT ssn FROM customers JOIN orders USING (id)")
    assert found.tables == {CUSTOMERS, TableName("", "orders")}
    # Unqualified names may be shadowed by a temporary table: the session asks the server.
    assert found.unresolved == {TableName("", "customers"), TableName("", "orders")}
    assert one("SELECT ssn FROM public.customers").unresolved == frozenset()
    assert one("WITH x AS (SELECT 1) SELECT * FROM x").tables == frozenset()
    assert one("DELETE FROM customers").where is False
    assert one("UPDATE customers SET ssn = '' WHERE id = 1").where is True
    assert one("SELECT 1").where is None
    found = one("DELETE FROM customers WHERE id = 1")
    assert found.deletes == {"ssn", "phone"} and found.reads == frozenset()
    assert one("COPY customers TO STDOUT").exports == {"ssn", "phone"}
    assert one("UPDATE customers SET ssn = ''").writes == {"ssn"}
    assert one("SELECT ssn FROM customers").unmaskable == frozenset()


def test_search_path_resolves_unqualified_names() -> None:
    [found] = analyse('SELECT iban FROM "Accounts"', CATALOG, search_path=("billing", "public"))
    assert {t.column.column for t in found.touches} == {"iban"}
    [found] = analyse("SELECT ssn FROM customers", CATALOG, search_path=("billing",))
    assert found.touches == frozenset()


def test_several_statements_in_order() -> None:
    found = analyse("SELECT 1; SELECT ssn FROM customers; SELECT 'a;b'", CATALOG)
    assert [s.text for s in found] == ["SELECT 1", "SELECT ssn FROM customers", "SELECT 'a;b'"]
    assert [bool(s.touches) for s in found] == [False, True, False]


def test_shape_normalises_constants_only() -> None:
    assert shape("SELECT a FROM t WHERE id = 1") == shape("select a  from t where id = 22")
    assert shape("SELECT a FROM t WHERE n = 'x'") == shape("SELECT a FROM t WHERE n = $$y$$")
    assert shape("SELECT a FROM t WHERE id = 1") != shape("SELECT b FROM t WHERE id = 1")
    assert shape("SELECT a, b FROM t ORDER BY 1") != shape("SELECT a, b FROM t ORDER BY 2")
    assert shape("SELECT set_config('a', 'v', false)") != shape(
        "SELECT set_config('search_path', 'v', false)"
    )
    assert shape('SELECT "A" FROM t') != shape("SELECT a FROM t")


def test_cost_of_a_pgbench_statement(capsys: pytest.CaptureFixture[str]) -> None:
    """Reported, not asserted: what analyse costs on pgbench -S's statement."""
    sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 123"
    analyse(sql, CATALOG)
    rounds = 200
    start = time.perf_counter()
    for _ in range(rounds):
        analyse(sql, CATALOG)
    each = (time.perf_counter() - start) / rounds
    start = time.perf_counter()
    for _ in range(rounds):
        shape(sql)
    shaped = (time.perf_counter() - start) / rounds
    with capsys.disabled():
        print(f"\nanalyse: {each * 1e6:.0f} µs, shape: {shaped * 1e6:.1f} µs per statement")


def test_public_api() -> None:
    assert set(analysis.__all__) == {"Statement", "Touch", "Use", "analyse", "shape"}


# Generated queries: however a catalogued column is dressed up, it is reported as touched.
_COLUMNS = st.sampled_from(["ssn", "c.ssn", "customers.ssn", '"ssn"', "(c).ssn", "c", "c.*"])
_WRAPS = st.sampled_from(
    [
        "{}",
        "upper({})",
        "({})::text",
        "{} || 'x'",
        "coalesce({}, '')",
        "string_agg({}::text, ',')",
        "row_to_json(ROW({}))",
        "jsonb_build_array({})",
        "(SELECT {})",
        "CASE WHEN true THEN {} END",
        "lower(trim({}))",
        "concat_ws('-', 1, {})",
        "array_agg({})",
    ]
)
_SHAPES = st.sampled_from(
    [
        "SELECT {e} AS {a} FROM customers c",
        "SELECT id FROM customers c WHERE {e} IS NOT NULL",
        "SELECT id FROM customers c ORDER BY {e}",
        "SELECT x.{a} FROM (SELECT {e} AS {a} FROM customers c) x",
        "WITH w AS (SELECT {e} AS {a} FROM customers c) SELECT * FROM w",
        "SELECT 1 UNION ALL SELECT {e} FROM customers c",
        "SELECT * FROM t, LATERAL (SELECT {e} AS {a} FROM customers c) l",
        "SELECT (SELECT {e} FROM customers c LIMIT 1)",
        "INSERT INTO notes (body) SELECT {e} FROM customers c",
    ]
)


@settings(max_examples=150, deadline=None)
@given(_COLUMNS, st.lists(_WRAPS, max_size=3), _SHAPES, st.sampled_from(["v", "ssn", '"X"']))
def test_generated_queries_always_report_the_column(
    column: str, wraps: list[str], template: str, alias: str
) -> None:
    expr = column
    for wrap in wraps:
        expr = wrap.format(expr)
    sql = template.format(e=expr, a=alias)
    [found] = analyse(sql, CATALOG)
    assert found.refuse is None, sql
    assert "ssn" in {t.column.column for t in found.touches}, sql


@pytest.mark.parametrize(
    "sql", ['SELECT U&"\\0073sn" FROM customers', 'SELECT U&"\\+000073sn" FROM customers']
)
def test_unicode_escaped_identifiers_are_read_as_the_server_reads_them(sql: str) -> None:
    (statement,) = analyse(sql, CATALOG)
    assert statement.refuse is None and statement.fail_closed is None
    assert "ssn" in statement.reads
