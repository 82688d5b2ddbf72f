"""The PostgreSQL gateway end to end: real clients (psycopg text, binary and prepared; asyncpg;
psql) through the gateway to the local server, with the engine and alice's TOTP in process."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bypass_corpus import SSN
from jwt_support import JwksServer
from pg_gateway_support import GatewayEnv, gateway_env

pytestmark = pytest.mark.postgres

MASKED_SSN = "*******9999"  # keep_last 4 of 219-09-9999


@pytest.fixture
async def env(
    tmp_path: Path, pg_admin_url: str, jwks_server: JwksServer, idp_key: Any
) -> AsyncIterator[GatewayEnv]:
    async with gateway_env(tmp_path, pg_admin_url, jwks_server, idp_key) as found:
        yield found


async def connect(env: GatewayEnv, **kw: Any) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(env.dsn(), autocommit=True, **kw)
    return conn


async def rows(conn: psycopg.AsyncConnection[Any], sql: str, **kw: Any) -> list[tuple[Any, ...]]:
    async with conn.cursor(**kw) as cur:
        await cur.execute(sql)
        return await cur.fetchall()


async def test_a_read_without_step_up_shows_the_ssn_masked(env: GatewayEnv) -> None:
    async with await connect(env) as conn:
        got = await rows(conn, "SELECT id, name, ssn, phone FROM customers WHERE id = 2")
    ((cid, name, ssn, _phone),) = got
    assert cid == 2 and name and ssn != SSN
    assert ssn.endswith("9999") and SSN not in ssn


@pytest.mark.parametrize("binary", [False, True])
async def test_prepared_and_binary_results_are_masked(env: GatewayEnv, binary: bool) -> None:
    async with await connect(env, prepare_threshold=0) as conn:
        for _ in range(3):  # prepared on the second run: Execute without a new Describe
            async with conn.cursor(binary=binary) as cur:
                await cur.execute("SELECT ssn, id FROM customers WHERE id = %s", (2,))
                ((ssn, cid),) = await cur.fetchall()
            assert cid == 2 and ssn.endswith("9999") and ssn != SSN


async def test_asyncpg_prepared_statements_are_masked(env: GatewayEnv) -> None:
    conn = await env.asyncpg()
    try:
        statement = await conn.prepare("SELECT name, upper(ssn) AS s FROM customers ORDER BY id")
        for _ in range(2):
            got = await statement.fetch()
            assert [r["name"] for r in got]
            assert all(r["s"] is None or SSN not in r["s"] for r in got)
    finally:
        await conn.close()


async def test_filtering_on_a_masked_column_needs_the_step_up(env: GatewayEnv) -> None:
    notices: list[str] = []
    async with await connect(env) as conn:
        conn.add_notice_handler(lambda d: notices.append(f"{d.message_primary} {d.message_detail}"))
        with pytest.raises(psycopg.Error) as refused:
            await rows(conn, f"SELECT id FROM customers WHERE ssn = '{SSN}'")
        assert refused.value.sqlstate == "28SU1"
        assert "SET piigate.otp" in (refused.value.diag.message_detail or "")
        assert notices and "step-up required: aal2" in notices[0]
        # the connection stays usable
        assert await rows(conn, "SELECT 1") == [(1,)]


async def test_set_piigate_otp_releases_the_ssn(env: GatewayEnv) -> None:
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error):
            await rows(conn, f"SELECT id FROM customers WHERE ssn = '{SSN}'")
        await conn.execute(f"SET piigate.otp = '{env.code()}'")
        assert await rows(conn, f"SELECT id FROM customers WHERE ssn = '{SSN}'") == [(2,)]
        assert await rows(conn, "SELECT ssn FROM customers WHERE id = 2") == [(SSN,)]


async def test_a_wrong_code_is_refused_and_releases_nothing(env: GatewayEnv) -> None:
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error):
            await rows(conn, "SELECT ssn || '' FROM customers WHERE ssn LIKE '2%'")
        wrong = f"{(int(env.code()) + 1) % 1_000_000:06d}"
        with pytest.raises(psycopg.Error) as refused:
            await conn.execute(f"SET piigate.otp = '{wrong}'")
        assert wrong not in str(refused.value)
        got = await rows(conn, "SELECT ssn FROM customers WHERE id = 2")
        assert got[0][0] != SSN


async def test_delete_needs_a_step_up_bound_to_the_statement(env: GatewayEnv) -> None:
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error) as refused:
            await conn.execute("DELETE FROM customers WHERE id = 3")
        assert refused.value.sqlstate == "28SU1"
        assert await rows(conn, "SELECT count(*) FROM customers") == [(3,)]


async def test_a_cast_that_may_quote_the_value_in_an_error_needs_the_step_up(
    env: GatewayEnv,
) -> None:
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error) as failed:
            await rows(conn, "SELECT ssn::int FROM customers WHERE id = 2")
        seen = f"{failed.value} {failed.value.diag.message_detail}"
        assert failed.value.sqlstate == "28SU1"
        assert SSN not in seen and "9999" not in seen
        await conn.execute(f"SET piigate.otp = '{env.code()}'")
        with pytest.raises(psycopg.Error) as after:  # the server's own error, with the value
            await rows(conn, "SELECT ssn::int FROM customers WHERE id = 2")
        assert after.value.sqlstate == "22P02" and SSN in str(after.value)


async def test_a_user_function_needs_the_step_up(env: GatewayEnv) -> None:
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error) as refused:
            await rows(conn, f"SELECT {env.schema}.leak(2)")
        assert refused.value.sqlstate == "28SU1"


async def test_a_bad_password_is_refused(env: GatewayEnv) -> None:
    with pytest.raises(psycopg.OperationalError) as refused:
        await psycopg.AsyncConnection.connect(env.dsn(password="not-a-token"))
    assert "password authentication failed" in str(refused.value)


async def test_psql_through_the_gateway(env: GatewayEnv) -> None:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed")
    environ = {
        **os.environ,
        "PGPASSWORD": env.token,
        "PGOPTIONS": f"-c search_path={env.schema}",
    }
    args = [psql, "-h", "127.0.0.1", "-p", str(env.gateway.port), "-U", "alice", "-d", "test"]
    args += ["-X", "-A", "-t", "-c", "SELECT name, ssn FROM customers WHERE id = 2"]
    done = await asyncio.to_thread(
        subprocess.run, args, env=environ, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert SSN not in done.stdout and "9999" in done.stdout


async def test_a_delete_without_where_meets_the_bulk_guardrail(env: GatewayEnv) -> None:
    # bulk-pii-change demands aal3 for a statement without WHERE; alice has no aal3 factor.
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error) as refused:
            await conn.execute("DELETE FROM customers")
        assert refused.value.sqlstate == "42501"
        with pytest.raises(psycopg.Error) as many:
            await conn.execute("UPDATE customers SET ssn = ssn WHERE id > 0")
        assert many.value.sqlstate == "42501"  # three rows estimated: above the limit of 1
        assert await rows(conn, "SELECT count(*) FROM customers") == [(3,)]


async def test_a_push_approval_while_the_statement_waits(
    tmp_path: Path, pg_admin_url: str, jwks_server: JwksServer, idp_key: Any
) -> None:
    async with gateway_env(
        tmp_path, pg_admin_url, jwks_server, idp_key, approval_wait="20s"
    ) as env:
        notices: list[str] = []
        async with await connect(env) as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_detail or ""))
            waiting = asyncio.create_task(
                rows(conn, f"SELECT name FROM customers WHERE ssn = '{SSN}'")
            )
            pushed = []
            for _ in range(100):  # the push reaches the device while the statement waits
                pushed = await env.device.pending()
                if pushed and notices:
                    break
                await asyncio.sleep(0.05)
            assert pushed and not waiting.done()
            number = int(re.search(r"approve number (\d+)", notices[0]).group(1))  # type: ignore[union-attr]
            answered = await env.device.answer(pushed[0]["id"], "approve", number)
            assert answered.status_code == 200, answered.text
            assert await asyncio.wait_for(waiting, 10) == [("Bob",)]


async def test_a_database_credential_signs_in_with_scram(env: GatewayEnv) -> None:
    issued = await env.console.post("/v1/db-credentials")
    assert issued.status_code == 201, issued.text
    user, password = issued.json()["user"], issued.json()["password"]
    assert user.startswith("dbc_") and password.startswith("pgd_")
    # require_auth: libpq refuses any other exchange (the password never crosses).
    dsn = env.dsn(user=user, password=password, require_auth="scram-sha-256")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        ((ssn,),) = await rows(conn, "SELECT ssn FROM customers WHERE id = 2")
        assert ssn != SSN and ssn.endswith("9999")
    for wrong in (
        env.dsn(user=user, password=password[:-1] + "x", require_auth="scram-sha-256"),
        env.dsn(user="dbc_0123456789abcdef", password=password, require_auth="scram-sha-256"),
    ):
        with pytest.raises(psycopg.OperationalError) as refused:
            await psycopg.AsyncConnection.connect(wrong)
        assert "password authentication failed" in str(refused.value)
        assert password not in str(refused.value)


async def test_each_ruling_is_timed_in_the_node_metrics(env: GatewayEnv) -> None:
    from prometheus_client import generate_latest

    async with await connect(env) as conn:
        await rows(conn, "SELECT id, ssn FROM customers WHERE id = 2")  # masked
        await rows(conn, "SELECT id FROM customers WHERE id = 2")  # no PII: allowed
        with pytest.raises(psycopg.Error):
            await rows(conn, f"SELECT id FROM customers WHERE ssn = '{SSN}'")  # step-up
    async with await connect(env, prepare_threshold=0) as conn, conn.cursor() as cur:
        await cur.execute("SELECT ssn FROM customers WHERE id = %s", (2,))
    scrape = generate_latest(env.node.services.metrics.registry).decode()
    counts = {
        (m.group(1), m.group(2)): float(m.group(3))
        for m in re.finditer(
            r'piigate_gateway_statement_seconds_count\{ruling="(\w+)",step="(\w+)"\} (\S+)', scrape
        )
    }
    assert counts[("mask", "query")] >= 1
    assert counts[("allow", "query")] >= 1
    assert counts[("step_up", "query")] >= 1
    assert counts[("mask", "execute")] >= 1
    from test_dashboard import POSTGRES_GATEWAY, expressions, metric_names

    used = set().union(*(metric_names(e) for e in expressions())) & POSTGRES_GATEWAY
    assert used == POSTGRES_GATEWAY  # the dashboard's panels of this gateway
    assert all(f"{name}{{" in scrape for name in used)
