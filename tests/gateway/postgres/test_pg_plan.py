"""read_plan against the real server's EXPLAIN (VERBOSE, FORMAT JSON), and its fail-closed paths
on hand-written plans."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import make_url

from piigate.gateway.postgres.catalog import Catalog, CatalogColumn, TableName
from piigate.gateway.postgres.plan import BUILTINS_QUERY, PlanError, PlanFacts, read_plan

SCHEMA = f"pgplan_{secrets.token_hex(4)}"
CUSTOMERS = TableName(SCHEMA, "customers")
ACCOUNTS = TableName(SCHEMA, "accounts")


def _col(table: TableName, column: str, pii: str) -> CatalogColumn:
    return CatalogColumn(table, column, pii)


SSN = _col(CUSTOMERS, "ssn", "ssn")
PHONE = _col(CUSTOMERS, "phone", "phone")
IBAN = _col(ACCOUNTS, "iban", "bank_account")
CATALOG = Catalog(
    {CUSTOMERS: {"ssn": SSN, "phone": PHONE}, ACCOUNTS: {"iban": IBAN}},
)
SETUP = f"""
CREATE SCHEMA {SCHEMA};
SET search_path = {SCHEMA};
CREATE TABLE customers (id int PRIMARY KEY, name text, ssn text, phone text);
CREATE TABLE accounts (id int, customer_id int, iban text);
CREATE VIEW v AS SELECT id, ssn AS tax, name FROM customers;
CREATE VIEW vv AS SELECT tax AS t2, id FROM v;
CREATE VIEW sb WITH (security_barrier) AS SELECT id, ssn, phone FROM customers WHERE id > 0;
CREATE FUNCTION inlined(text) RETURNS text LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION leak(text) RETURNS text LANGUAGE sql VOLATILE SECURITY DEFINER AS 'SELECT $1';
CREATE FUNCTION leak2(text) RETURNS text LANGUAGE plpgsql AS 'BEGIN RETURN $1; END';
INSERT INTO customers SELECT g, 'n' || g, 's' || g, 'p' || g FROM generate_series(1, 1000) g;
INSERT INTO accounts SELECT g, g, 'i' || g FROM generate_series(1, 1000) g;
ANALYZE customers; ANALYZE accounts;
"""

Explain = Callable[[str], PlanFacts]


@pytest.fixture(scope="module")
def explain(pg_admin_url: str) -> Iterator[Explain]:
    dsn = make_url(pg_admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)
        builtins = frozenset(r[0] for r in conn.execute(BUILTINS_QUERY).fetchall())
        try:

            def run(sql: str) -> PlanFacts:
                if not sql.startswith(("SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "MERGE")):
                    conn.execute(sql)  # a set-up statement of a test
                    return read_plan([{"Plan": {"Node Type": "Result"}}], CATALOG)
                plan = conn.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}").fetchone()
                assert plan is not None
                return read_plan(plan[0], CATALOG, builtins)

            yield run
        finally:
            conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


pg = pytest.mark.postgres
S, P, B = frozenset({"ssn"}), frozenset({"phone"}), frozenset({"bank_account"})
E: frozenset[str] = frozenset()


@pg
@pytest.mark.parametrize(
    ("sql", "reads", "filters", "outputs"),
    [
        ("SELECT id, ssn FROM customers", {SSN}, set(), (E, S)),
        ("SELECT upper(ssn) || '-' || id FROM customers", {SSN}, set(), (S,)),
        ("SELECT id FROM customers WHERE ssn = 'x'", {SSN}, {SSN}, (E,)),
        ("SELECT id FROM customers ORDER BY ssn", {SSN}, {SSN}, (E, S)),
        (
            "SELECT c.ssn, a.id FROM customers c JOIN accounts a ON a.iban = c.phone",
            {SSN, PHONE, IBAN},
            {PHONE, IBAN},
            (S, E),
        ),
        (
            "SELECT id FROM accounts"
            " WHERE customer_id IN (SELECT id FROM customers WHERE ssn LIKE 'x%')",
            {SSN},
            {SSN},
            (E,),
        ),
        (
            "SELECT (SELECT ssn FROM customers WHERE id = 1), iban FROM accounts",
            {SSN, IBAN},
            set(),
            (S, B),
        ),
        (
            "SELECT c.id, (SELECT a.iban FROM accounts a WHERE a.customer_id = c.id LIMIT 1)"
            " FROM customers c",
            {IBAN},
            set(),
            (E, B),
        ),
        ("WITH x AS (SELECT ssn, id FROM customers) SELECT id FROM x", set(), set(), (E,)),
        (
            "WITH x AS MATERIALIZED (SELECT ssn AS a, id AS b FROM customers) SELECT b FROM x",
            {SSN},
            set(),
            (S,),
        ),
        (
            "SELECT ssn FROM customers UNION SELECT iban FROM accounts",
            {SSN, IBAN},
            {SSN, IBAN},
            (S | B,),
        ),
        ("SELECT 'x' UNION ALL SELECT phone FROM customers", {PHONE}, set(), (P,)),
        (
            "SELECT * FROM (SELECT 'x' AS a UNION SELECT ssn FROM customers) u ORDER BY 1",
            {SSN},
            {SSN},
            (S,),
        ),
        (
            "SELECT c.id, l.x FROM customers c, LATERAL (SELECT c.ssn AS x OFFSET 0) l",
            {SSN},
            set(),
            (E, S),
        ),
        (
            "SELECT c.id, v.x FROM customers c, LATERAL (VALUES (c.ssn), ('y')) v(x)",
            {SSN, PHONE},
            set(),
            (E, S | P),
        ),
        ("SELECT tax FROM v WHERE name = 'a'", {SSN}, set(), (S,)),
        ("SELECT t2 FROM vv", {SSN}, set(), (S,)),
        ("SELECT ssn FROM sb WHERE phone = 'x'", {SSN, PHONE}, {PHONE}, (S,)),
        (
            "SELECT string_agg(ssn, ','), count(*) FROM customers GROUP BY phone",
            {SSN, PHONE},
            {PHONE},
            (S, E),
        ),
        ("SELECT json_agg(c.iban) FROM accounts c", {IBAN}, set(), (B,)),
        (
            "SELECT row_number() OVER (PARTITION BY ssn ORDER BY id), id FROM customers",
            {SSN},
            {SSN},
            (E, E, S),
        ),
        ("SELECT inlined(ssn) FROM customers", {SSN}, set(), (S,)),
    ],
)
def test_reads_filters_and_outputs(
    explain: Explain, sql: str, reads: set[CatalogColumn], filters: set[CatalogColumn],
    outputs: tuple[frozenset[str], ...],
) -> None:  # fmt: skip
    facts = explain(sql)
    assert facts.reads == reads
    assert facts.filters == filters
    assert facts.outputs is not None
    assert facts.outputs[: len(outputs)] == outputs
    assert facts.functions == frozenset()
    assert facts.modified is None


@pg
@pytest.mark.parametrize(
    "sql", ["SELECT c FROM customers c", "SELECT row_to_json(c) FROM customers c",
            "SELECT (c.*)::text FROM customers c ORDER BY phone LIMIT 2"],
)  # fmt: skip
def test_whole_rows_count_every_column(explain: Explain, sql: str) -> None:
    facts = explain(sql)
    assert facts.whole_rows == {CUSTOMERS}
    assert facts.reads >= {SSN, PHONE}
    assert facts.outputs is not None
    assert facts.outputs[0] == S | P


@pg
def test_relations_are_the_base_tables(explain: Explain) -> None:
    assert explain("SELECT t2 FROM vv").relations == {CUSTOMERS}
    joined = explain("SELECT 1 FROM customers c JOIN accounts a ON a.customer_id = c.id")
    assert joined.relations == {CUSTOMERS, ACCOUNTS}


@pg
def test_user_functions_are_listed(explain: Explain) -> None:
    facts = explain("SELECT leak(ssn), leak2(phone), upper(ssn), count(*) OVER () FROM customers")
    assert facts.functions == {"leak", "leak2"}  # on the search_path: printed unqualified
    assert {SSN, PHONE} <= facts.reads
    qualified = explain(f"SELECT {SCHEMA}.leak2(iban) FROM accounts")
    assert qualified.functions == {"leak2"} and qualified.outputs == (B,)
    assert explain("SELECT * FROM generate_series(1, 3) g").functions == frozenset()


@pg
def test_system_views_that_call_untrusted_built_ins_are_listed(explain: Explain) -> None:
    """pg_stat_activity, read directly or through a view: its plan scans pg_stat_get_activity,
    which returns other sessions' statement texts."""
    explain("CREATE VIEW active AS SELECT pid, query FROM pg_catalog.pg_stat_activity")
    for sql in ("SELECT query FROM pg_stat_activity", "SELECT query FROM active"):
        assert "pg_stat_get_activity" in explain(sql).functions


@pg
@pytest.mark.parametrize(
    ("sql", "operation", "table", "reads"),
    [
        ("INSERT INTO accounts (iban) SELECT ssn FROM customers", "Insert", ACCOUNTS, {SSN}),
        (
            "UPDATE customers c SET phone = a.iban FROM accounts a WHERE a.customer_id = c.id",
            "Update",
            CUSTOMERS,
            {IBAN},
        ),
        ("DELETE FROM customers", "Delete", CUSTOMERS, set()),
        (
            "MERGE INTO accounts a USING customers c ON a.customer_id = c.id"
            " WHEN MATCHED THEN UPDATE SET iban = c.ssn",
            "Merge",
            ACCOUNTS,
            {SSN},
        ),
    ],
)
def test_modifications(
    explain: Explain, sql: str, operation: str, table: TableName, reads: set[CatalogColumn]
) -> None:
    facts = explain(sql)
    assert (facts.operation, facts.modified) == (operation, table)
    assert facts.reads == reads
    assert facts.rows is not None and facts.rows > 0


@pg
def test_delete_row_estimates(explain: Explain) -> None:
    assert explain("DELETE FROM customers").rows == 1000
    some = explain("DELETE FROM customers WHERE id < 10").rows
    assert some is not None and some < 50
    returning = explain("DELETE FROM customers WHERE id = 3 RETURNING ssn, id")
    assert returning.outputs == (S, E) and returning.reads == {SSN}


@pg
def test_temporary_table_shadows_the_catalogued_one(explain: Explain) -> None:
    assert explain("SELECT ssn FROM customers").reads == {SSN}
    explain("CREATE TEMP TABLE customers (id int, ssn text)")
    try:
        facts = explain("SELECT ssn FROM customers")  # pg_temp comes first on the search_path
        assert facts.reads == frozenset() and facts.outputs == (E,)
        assert [t.name for t in facts.relations] == ["customers"]
        assert CUSTOMERS not in facts.relations
        assert explain(f"SELECT ssn FROM {SCHEMA}.customers").reads == {SSN}
    finally:
        explain("DROP TABLE pg_temp.customers")


def _plan(node: dict[str, object]) -> list[dict[str, object]]:
    return [{"Plan": node}]


def _scan(alias: str, output: list[str], **more: object) -> dict[str, object]:
    table = {"Relation Name": "customers", "Schema": SCHEMA, "Alias": alias}
    return {"Node Type": "Seq Scan", **table, "Output": output, **more}


def test_an_unknown_node_type_is_still_read() -> None:
    node = {"Node Type": "Teleport Scan", "Output": ["c.id"], "Plans": [_scan("c", ["c.id"])],
            "Warp Cond": "(c.ssn = 'x'::text)"}  # fmt: skip
    facts = read_plan(_plan(node), CATALOG)
    assert facts.filters == {SSN} and facts.relations == {CUSTOMERS}


def test_an_unknown_alias_takes_every_column_of_that_name() -> None:
    facts = read_plan(_plan(_scan("c", ["zz.ssn", "c.id", "qq.*"])), CATALOG)
    assert facts.outputs == (S, E, S | P)
    assert facts.reads == {SSN, PHONE}


def test_an_unknown_scan_with_an_alias_counts_everything() -> None:
    node = {"Node Type": "Hash Join", "Output": ["c.id", "t.x"],
            "Plans": [_scan("c", ["c.id"]),
                      {"Node Type": "Named Tuplestore Scan", "Alias": "t"}]}  # fmt: skip
    assert read_plan(_plan(node), CATALOG).outputs == (E, S | P)


def test_an_untokenisable_expression_counts_everything() -> None:
    facts = read_plan(_plan(_scan("c", ["c.id", "'unterminated"])), CATALOG)
    assert facts.outputs == (E, S | P)


def test_an_unknown_parameter_or_subplan_counts_everything() -> None:
    facts = read_plan(_plan(_scan("c", ["$7", "(SubPlan 9)"])), CATALOG)
    assert facts.outputs == (S | P, S | P)


def test_no_output_list_means_outputs_unknown() -> None:
    node = {"Node Type": "Mystery", "Plans": []}
    assert read_plan(_plan(node), CATALOG).outputs is None


def test_strings_and_types_are_not_references() -> None:
    out = ["'c.ssn'::text", "(c.id)::public.ssn", "E'it\\'s c.ssn'::text", "'it''s c.ssn'"]
    assert read_plan(_plan(_scan("c", out)), CATALOG).outputs == (E, E, E, E)


def test_functions_qualified_or_not_builtin() -> None:
    out = ["public.leak(c.ssn)", "upper(c.ssn)", "mine(c.id)", "pg_catalog.lower(c.phone)",
           "(c.id OPERATOR(public.===) 1)"]  # fmt: skip
    facts = read_plan(_plan(_scan("c", out)), CATALOG, builtins={"upper"})
    assert facts.functions == {"public.leak", "mine", "public.==="}
    assert facts.outputs == (S, S, E, P, E)


def test_pg_catalog_functions_off_the_parsers_list_are_listed() -> None:
    """A plan is held to the parser's list of trusted built-ins: a view's call to a pg_catalog
    function that is not a value function (other sessions' statements, a file, a setting
    written) is listed like a user function; pg_catalog's operators stay trusted."""
    out = ["pg_stat_get_activity(NULL::integer)", "pg_catalog.pg_read_file('f'::text)",
           "set_config('a.b'::text, c.ssn, false)", "lower(c.phone)",
           "(c.id OPERATOR(pg_catalog.+) 1)"]  # fmt: skip
    builtins = {"pg_stat_get_activity", "set_config", "lower"}
    facts = read_plan(_plan(_scan("c", out)), CATALOG, builtins=builtins)
    assert facts.functions == {"pg_stat_get_activity", "pg_catalog.pg_read_file", "set_config"}
    scan = {"Node Type": "Function Scan", "Schema": "pg_catalog", "Alias": "s",
            "Function Name": "pg_stat_get_activity", "Output": ["s.query"],
            "Function Call": "pg_stat_get_activity(NULL::integer)"}  # fmt: skip
    assert "pg_catalog.pg_stat_get_activity" in read_plan(_plan(scan), CATALOG).functions


@pytest.mark.parametrize(
    "bad", [{}, [], [{"Plan": "x"}], [{"Plan": {"Node Type": "Result", "Plans": ["x"]}}]]
)
def test_what_is_not_a_plan_raises(bad: object) -> None:
    with pytest.raises(PlanError):
        read_plan(bad, CATALOG)


@pg
def test_cost_of_reading_a_typical_plan(explain: Explain) -> None:
    """Not asserted: printed for the report (pytest -s)."""
    sql = ("SELECT c.id, c.ssn, a.iban FROM customers c JOIN accounts a ON a.customer_id = c.id"
           " WHERE c.phone LIKE 'p1%' ORDER BY c.ssn LIMIT 10")  # fmt: skip
    explain(sql)
    started = time.perf_counter()
    for _ in range(200):
        explain(sql)
    print(f"explain round trip + read_plan: {(time.perf_counter() - started) / 200 * 1e6:.0f} us")
