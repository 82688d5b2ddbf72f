"""A property through the gateway: however a generated query dresses up the SSN column, when it
returns the SSN run directly, it does not return it through the gateway without the step-up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from bypass_corpus import SSN
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pg_gateway_support import GatewayEnv, GatewayThread

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

_COLUMNS = st.sampled_from(["ssn", "c.ssn", "customers.ssn", '"ssn"', "(c).ssn", "c", "c.*"])
_WRAPS = st.sampled_from(
    [
        "{}",
        "upper({})",
        "({})::text",
        "{} || 'x'",
        "coalesce({}::text, '')",
        "string_agg({}::text, ',')",
        "row_to_json(ROW({}))::text",
        "jsonb_build_array({})::text",
        "(SELECT {})",
        "CASE WHEN true THEN {} END",
        "lower(trim({}::text))",
        "concat_ws('-', 1, {})",
        "array_agg({})::text",
        "format('%s', {})",
        "substr({}::text, 1)",
    ]
)
_SHAPES = st.sampled_from(
    [
        "SELECT {e} AS {a} FROM customers c",
        "SELECT x.{a} FROM (SELECT {e} AS {a} FROM customers c) x",
        "WITH w AS (SELECT {e} AS {a} FROM customers c) SELECT * FROM w",
        "SELECT NULL::text UNION ALL SELECT ({e})::text FROM customers c",
        "SELECT l.* FROM (VALUES (1)) t(n), LATERAL (SELECT {e} AS {a} FROM customers c) l",
        "SELECT (SELECT ({e})::text FROM customers c WHERE c.id = 2)",
        "SELECT * FROM customers c WHERE ({e})::text IS NOT NULL",
    ]
)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str, idp_key: Any
) -> Iterator[GatewayEnv]:
    with GatewayThread(tmp_path_factory.mktemp("pgprop"), pg_admin_url, idp_key, "0s") as env:
        yield env


def _seen(conn: psycopg.Connection[Any], sql: str) -> str:
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return "\n".join(str(row) for row in cur.fetchall())
    except psycopg.Error as error:
        diag = error.diag
        return " ".join(
            str(p) for p in (error, diag.message_detail, diag.message_hint, diag.context) if p
        )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(_COLUMNS, st.lists(_WRAPS, max_size=3), _SHAPES, st.sampled_from(["v", "ssn", '"X"']))
def test_a_generated_query_that_returns_the_ssn_directly_does_not_through_the_gateway(
    gateway: GatewayEnv, column: str, wraps: list[str], template: str, alias: str
) -> None:
    expr = column
    for wrap in wraps:
        expr = wrap.format(expr)
    sql = template.format(e=expr, a=alias)
    up = gateway.gateway.config.upstream
    direct_dsn = gateway.dsn(
        host=up.host, port=str(up.port), user=up.user, password=up.password or ""
    )
    with psycopg.connect(direct_dsn, autocommit=True) as direct:
        assume(SSN in _seen(direct, sql))  # the query really returns the SSN
    with psycopg.connect(gateway.dsn(), autocommit=True) as through:
        shown = _seen(through, sql)
    assert SSN not in shown, sql
