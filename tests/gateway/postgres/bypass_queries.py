"""The bypass corpus, part two: SSNs read through query shapes and protocol features.

Views (plain, renaming, nested, security_barrier, materialized), user and temporary functions,
CTEs, set operations, subqueries, windows and grouping, spellings of names (comments, quoting,
Unicode escapes, qualification, search_path), the extended protocol (parameters, server-side
prepared statements, binary results) and cursors.
"""

from __future__ import annotations

from typing import Final

from bypass_cases import Bypass, case

__all__ = ["QUERIES"]

_TX: Final = ("BEGIN",)
_ROLLBACK: Final = ("ROLLBACK",)

_VIEWS = (
    case("view", "plain", "SELECT * FROM v_customers"),
    case("view", "renaming", "SELECT tax_id FROM v_people"),
    case("view", "nested", "SELECT t FROM v_nested"),
    case("view", "security-barrier", "SELECT ssn FROM v_barrier"),
    case("view", "materialized", "SELECT s FROM mv_people"),
)

# ``archive`` is catalogued, its partition ``archive_low`` is not; ``legacy_child`` inherits
# the catalogued ``legacy``: a partition named directly, or scanned under a view, holds the
# catalogued table's rows.
_INHERITED = (
    case("inherit", "partition", "SELECT ssn FROM archive_low"),
    case("inherit", "partition-star", "SELECT * FROM archive_low"),
    case("inherit", "partition-whole-row", "SELECT a::text FROM archive_low a"),
    case("inherit", "partition-view", "SELECT ssn FROM v_archive_low"),
    case("inherit", "parent-view", "SELECT ssn FROM v_archive"),
    case("inherit", "partition-copy", "COPY archive_low TO STDOUT", fetch="copy"),
    case("inherit", "child-table", "SELECT ssn FROM legacy_child"),
)

_FUNCTIONS = (
    case("function", "sql", "SELECT leak(2)"),
    case("function", "plpgsql", "SELECT leak_plpgsql(2)"),
    case("function", "set-returning", "SELECT * FROM leak_all()"),
    case(
        "function",
        "temp-sql",
        "SELECT pg_temp.f(2)",
        setup=(
            "CREATE FUNCTION pg_temp.f(int) RETURNS text LANGUAGE sql "
            "AS $$ SELECT ssn FROM customers WHERE id = $1 $$",
        ),
    ),
    case(
        "function",
        "temp-dynamic",
        "SELECT * FROM pg_temp.g()",
        setup=(
            "CREATE FUNCTION pg_temp.g() RETURNS SETOF text LANGUAGE plpgsql AS $$ BEGIN "
            "RETURN QUERY EXECUTE 'SELECT ss' || 'n FROM cust' || 'omers'; END $$",
        ),
    ),
    case(
        "function",
        "procedure-inout",
        "CALL pg_temp.p(NULL)",
        setup=(
            "CREATE PROCEDURE pg_temp.p(INOUT s text) LANGUAGE plpgsql AS $$ BEGIN "
            "SELECT ssn INTO s FROM customers WHERE id = 2; END $$",
        ),
    ),
    case(
        "function",
        "refcursor",
        "SELECT pg_temp.rc()",
        setup=(
            *_TX,
            "CREATE FUNCTION pg_temp.rc() RETURNS refcursor LANGUAGE plpgsql AS $$ "
            "DECLARE c refcursor := 'rc'; BEGIN OPEN c FOR SELECT ssn FROM customers; "
            "RETURN c; END $$",
        ),
        then=("FETCH ALL FROM rc", *_ROLLBACK),
        fetch="then",
    ),
)

_CTES = (
    case("cte", "plain", "WITH s AS (SELECT ssn FROM customers) SELECT * FROM s"),
    case(
        "cte",
        "materialized",
        "WITH s AS MATERIALIZED (SELECT ssn AS x FROM customers) SELECT x FROM s",
    ),
    case(
        "cte",
        "recursive",
        "WITH RECURSIVE r(n, s) AS (SELECT 1, ssn FROM customers WHERE id = 2 "
        "UNION ALL SELECT n + 1, s FROM r WHERE n < 2) SELECT s FROM r",
    ),
    case(
        "cte",
        "column-names",
        "WITH s(a, b) AS (SELECT name, ssn FROM customers) SELECT b FROM s",
    ),
)

_SET_OPERATIONS = (
    case("setop", "union", "SELECT ssn FROM customers UNION SELECT 'x'"),
    case(
        "setop",
        "union-all-renamed",
        "SELECT name FROM customers UNION ALL SELECT ssn FROM customers",
    ),
    case(
        "setop",
        "intersect",
        "SELECT ssn FROM customers INTERSECT SELECT ssn FROM customers WHERE id = 2",
    ),
    case(
        "setop",
        "except",
        "SELECT ssn FROM customers EXCEPT SELECT ssn FROM customers WHERE id <> 2",
    ),
)

_SUBQUERIES = (
    case("subquery", "scalar", "SELECT (SELECT ssn FROM customers WHERE id = 2)"),
    case("subquery", "derived-alias", "SELECT x FROM (SELECT ssn FROM customers) AS sub(x)"),
    case(
        "subquery",
        "in",
        "SELECT s FROM (SELECT id, ssn AS s FROM customers) q "
        "WHERE q.id IN (SELECT customer_id FROM accounts)",
    ),
    case(
        "subquery",
        "exists-correlated",
        "SELECT (SELECT c2.ssn FROM customers c2 WHERE c2.id = a.customer_id) FROM accounts a "
        "WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = a.customer_id) ORDER BY 1",
    ),
    case(
        "subquery",
        "lateral",
        "SELECT a.iban, l.s FROM accounts a, "
        "LATERAL (SELECT ssn AS s FROM customers c WHERE c.id = a.customer_id) l",
    ),
    case(
        "subquery",
        "join",
        "SELECT c.ssn FROM accounts a JOIN customers c ON c.id = a.customer_id",
    ),
    case(
        "subquery", "values", "SELECT * FROM (VALUES ((SELECT ssn FROM customers WHERE id = 2))) v"
    ),
    case(
        "subquery",
        "generate-series-lateral",
        "SELECT s FROM generate_series(1, 3) g, "
        "LATERAL (SELECT ssn AS s FROM customers WHERE id = g) l",
    ),
    case("subquery", "tablesample", "SELECT ssn FROM customers TABLESAMPLE SYSTEM (100)"),
    case("subquery", "only", "SELECT ssn FROM ONLY customers"),
)

_AGGREGATES = (
    case(
        "window",
        "nth-value",
        "SELECT nth_value(ssn, 2) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING "
        "AND UNBOUNDED FOLLOWING) FROM customers",
    ),
    case("window", "lag", "SELECT lag(ssn) OVER (ORDER BY id) FROM customers"),
    case("group", "group-by-count", "SELECT ssn, count(*) FROM customers GROUP BY ssn"),
    case("group", "distinct", "SELECT DISTINCT ssn FROM customers"),
    case("group", "grouping-sets", "SELECT ssn FROM customers GROUP BY GROUPING SETS ((ssn), ())"),
    case("group", "max-filter", "SELECT max(ssn) FILTER (WHERE id = 2) FROM customers"),
)

_SPELLINGS = (
    case("spelling", "block-comments", "SELECT/**/ssn/**/FROM/**/customers"),
    case("spelling", "line-comment", "SELECT -- the column follows\nssn FROM customers"),
    case("spelling", "nested-comment", "SELECT /* a /* nested */ comment */ ssn FROM customers"),
    case("spelling", "quoted", 'SELECT "ssn" FROM "customers"'),
    case("spelling", "odd-whitespace", "SELECT\tssn\fFROM\rcustomers"),
    case("spelling", "upper-case", "SELECT SSN FROM CUSTOMERS"),
    case("spelling", "unicode-escape", 'SELECT U&"\\0073sn" FROM customers'),
    case("spelling", "mixed-case-column", 'SELECT "TaxId" FROM "People"'),
    case("spelling", "mixed-case-row", 'SELECT p FROM "People" p'),
    case(
        "spelling",
        "schema-qualified",
        "SELECT ssn FROM @schema@.customers",
        setup=("SET search_path = public",),
    ),
    case("spelling", "database-qualified", "SELECT ssn FROM @database@.@schema@.customers"),
    case(
        "spelling",
        "search-path-multi",
        "SET search_path = @schema@; SELECT ssn FROM customers",
        setup=("SET search_path = public",),
    ),
    case("spelling", "multi-statement", "SELECT 1; SELECT ssn FROM customers"),
    case(
        "spelling",
        "temp-shadow",
        "SELECT body FROM notes",
        setup=("CREATE TEMP VIEW notes AS SELECT ssn AS body FROM customers",),
    ),
)

_EXTENDED = (
    case(
        "extended",
        "param",
        "SELECT ssn FROM customers WHERE id = %s",
        protocol="extended",
        params=(2,),
    ),
    case(
        "extended",
        "unnamed-param",
        "SELECT name, ssn FROM customers WHERE id > %s",
        protocol="extended",
        prepare=False,
        params=(0,),
    ),
    case("extended", "prepared-star", "SELECT * FROM customers", protocol="extended"),
    case("extended", "binary", "SELECT ssn FROM customers", protocol="extended", binary=True),
    case(
        "extended",
        "binary-bytea",
        "SELECT ssn::bytea FROM customers",
        protocol="extended",
        binary=True,
    ),
    case("extended", "binary-row", "SELECT c FROM customers c", protocol="extended", binary=True),
    case(
        "extended",
        "binary-jsonb",
        "SELECT to_jsonb(c) FROM customers c",
        protocol="extended",
        binary=True,
    ),
    case(
        "extended",
        "param-chooses-column",
        "SELECT CASE %s WHEN 1 THEN ssn ELSE name END FROM customers",
        protocol="extended",
        params=(1,),
    ),
    case(
        "extended",
        "execute-prepared",
        "EXECUTE p(2)",
        setup=("PREPARE p(int) AS SELECT ssn FROM customers WHERE id = $1",),
        protocol="extended",
    ),
    case(
        "prepare",
        "execute",
        "EXECUTE p(2)",
        setup=("PREPARE p(int) AS SELECT ssn FROM customers WHERE id = $1",),
    ),
)

_CURSORS = (
    case(
        "cursor",
        "fetch-all",
        "FETCH ALL FROM cur",
        setup=(*_TX, "DECLARE cur CURSOR FOR SELECT ssn FROM customers"),
        then=_ROLLBACK,
    ),
    case(
        "cursor",
        "with-hold",
        "FETCH ALL FROM held",
        setup=("DECLARE held CURSOR WITH HOLD FOR SELECT name, ssn FROM customers",),
        then=("CLOSE held",),
    ),
    case(
        "cursor",
        "scroll-move",
        "FETCH NEXT FROM sc",
        setup=(
            *_TX,
            "DECLARE sc SCROLL CURSOR FOR SELECT * FROM customers ORDER BY id",
            "MOVE 1 IN sc",
        ),
        then=_ROLLBACK,
    ),
    case(
        "cursor",
        "binary",
        "FETCH ALL FROM bc",
        setup=(*_TX, "DECLARE bc BINARY CURSOR FOR SELECT ssn FROM customers"),
        then=_ROLLBACK,
    ),
    case(
        "cursor",
        "over-view",
        "FETCH ALL IN vc",
        setup=(*_TX, "DECLARE vc CURSOR FOR TABLE v_people"),
        then=_ROLLBACK,
    ),
)

QUERIES: Final[tuple[Bypass, ...]] = (
    *_VIEWS,
    *_INHERITED,
    *_FUNCTIONS,
    *_CTES,
    *_SET_OPERATIONS,
    *_SUBQUERIES,
    *_AGGREGATES,
    *_SPELLINGS,
    *_EXTENDED,
    *_CURSORS,
)
