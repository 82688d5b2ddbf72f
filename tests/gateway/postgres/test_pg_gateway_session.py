"""The PostgreSQL gateway's sessions end to end: COPY out and in (simple and extended
protocol), what libpq will not send (a FunctionCall, an unknown message), the end of a session
(Terminate, a client gone in the middle of a statement or of a wait for approval), a database
that went away, and logs that never hold a credential or a code."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import select
import socket
from pathlib import Path
from typing import Any

import psycopg
import pytest
import structlog
from bypass_corpus import SSN
from jwt_support import JwksServer
from pg_gateway_support import GatewayEnv, gateway_env
from pg_raw_client import RawClient, errors
from psycopg import pq

from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.messages import Unknown

pytestmark = pytest.mark.postgres

STEP_UP = f"SELECT id FROM customers WHERE ssn = '{SSN}'"


async def connect(env: GatewayEnv, **dsn: str) -> Any:
    return await psycopg.AsyncConnection.connect(env.dsn(**dsn), autocommit=True)


async def rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql)
        return list(await cur.fetchall())


async def copy_out(conn: Any, sql: str) -> bytes:
    async with conn.cursor() as cur, cur.copy(sql) as copy:
        return b"".join([bytes(chunk) async for chunk in copy])


async def copy_in(conn: Any, sql: str, lines: list[tuple[Any, ...]]) -> None:
    async with conn.cursor() as cur, cur.copy(sql) as copy:
        for line in lines:
            await copy.write_row(line)


async def sessions_end(env: GatewayEnv) -> None:
    """Wait (bounded) until the gateway runs no session task."""
    for _ in range(200):
        if not env.gateway._tasks:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(env.gateway._tasks)} session task(s) still running")


# -- COPY ----------------------------------------------------------------------------------------
async def test_copy_of_the_ssn_out_needs_the_step_up(env: GatewayEnv) -> None:
    sql = f"COPY (SELECT id, ssn FROM {env.schema}.customers ORDER BY id) TO STDOUT"
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error) as refused:
            await copy_out(conn, sql)
        assert refused.value.sqlstate == "28SU1"
        assert "export" in str(refused.value)
        assert await rows(conn, "SELECT 1") == [(1,)]
        await conn.execute(f"SET piigate.otp = '{env.code()}'")
        assert f"2\t{SSN}".encode() in await copy_out(conn, sql)


async def test_copy_into_the_ssn_column_needs_the_step_up(env: GatewayEnv) -> None:
    sql = f"COPY {env.schema}.customers (id, name, ssn) FROM STDIN"
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error) as refused:
            await copy_in(conn, sql, [(7, "Dan", "123-45-6789")])
        assert refused.value.sqlstate == "28SU1"
        assert await rows(conn, "SELECT count(*) FROM customers") == [(3,)]
        await conn.execute(f"SET piigate.otp = '{env.code()}'")
        await copy_in(conn, sql, [(7, "Dan", "123-45-6789")])
        assert await rows(conn, "SELECT count(*) FROM customers") == [(4,)]


async def test_copy_into_a_table_with_no_pii_runs_without_a_step_up(env: GatewayEnv) -> None:
    # A COPY cannot be planned, but its table read whole can: the server resolves the name.
    async with await connect(env) as conn:
        await conn.execute(f"CREATE TABLE {env.schema}.customers_copy (id int, note text)")
        await copy_in(conn, "COPY customers_copy FROM STDIN", [(1, "one"), (2, "two")])
        assert await rows(conn, "SELECT count(*) FROM customers_copy") == [(2,)]


async def test_copy_out_of_a_view_over_pii_is_an_export(env: GatewayEnv) -> None:
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error) as refused:
            async with conn.cursor() as cur, cur.copy("COPY (SELECT * FROM v_people) TO STDOUT"):
                pass
        assert refused.value.sqlstate == "28SU1" and "export" in str(refused.value)


def _results(pg: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """The results of what was sent, waited for in Python (a blocking libpq call would hold
    the interpreter, and the gateway's event loop with it)."""
    while pg.flush() != 0:
        select.select([], [pg.socket], [], 0.1)
    got: list[pq.abc.PGresult] = []
    while True:
        pg.consume_input()
        if pg.is_busy():
            select.select([pg.socket], [], [], 0.1)
            continue
        result = pg.get_result()
        if result is None:
            return got
        got.append(result)
        if result.status == pq.ExecStatus.COPY_IN:
            return got


def _extended_copy_then_read(dsn: str, table: str) -> list[bytes | None]:
    """COPY FROM STDIN in the extended protocol (libpq sends Parse ... Execute, Sync, the
    data, CopyDone and another Sync: the server ignores the first), then a simple query."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pg = conn.pgconn
        copy = f"COPY {table} FROM STDIN".encode()
        pg.send_query_params(copy, None)
        (started,) = _results(pg)
        assert started.status == pq.ExecStatus.COPY_IN
        assert pg.put_copy_data(b"3\tthree\n") == 1 and pg.put_copy_end() == 1
        (done,) = _results(pg)
        assert done.status == pq.ExecStatus.COMMAND_OK, done.error_message
        pg.send_query(b"SELECT ssn FROM customers WHERE id = 2")
        (after,) = _results(pg)
        assert after.status == pq.ExecStatus.TUPLES_OK, after.error_message
        return [after.get_value(i, 0) for i in range(after.ntuples)]


async def test_copy_in_through_the_extended_protocol_keeps_replies_in_step(
    env: GatewayEnv,
) -> None:
    table = f"{env.schema}.customers_copy"
    async with await connect(env) as conn:
        await conn.execute(f"CREATE TABLE {table} (id int, note text)")
    dsn = env.dsn(connect_timeout="10")
    values = await asyncio.wait_for(asyncio.to_thread(_extended_copy_then_read, dsn, table), 30)
    assert len(values) == 1 and values[0] is not None and SSN.encode() not in values[0]
    async with await connect(env) as conn:
        assert await rows(conn, f"SELECT note FROM {table}") == [("three",)]


# -- what libpq will not send --------------------------------------------------------------------
async def test_a_function_call_is_refused_and_the_session_goes_on(env: GatewayEnv) -> None:
    raw = await RawClient.connect(env.gateway.port)
    try:
        await raw.login(env.token, env.schema)
        # FunctionCall of oid 1 with no arguments, a text result: refused, not forwarded
        raw.send(Unknown(b"F", b"\x00\x00\x00\x01" + b"\x00\x00" + b"\x00\x00" + b"\x00\x00"))
        got = await raw.until_ready()
        (refused,) = errors(got)
        assert refused.get("C") == "0A000" and isinstance(got[-1], be.ReadyForQuery)
        raw.send(fe.Query("SELECT 1"))
        got = await raw.until_ready()
        assert [m.values for m in got if isinstance(m, be.DataRow)] == [(b"1",)]
    finally:
        await raw.close()


async def test_an_unknown_message_ends_the_session(env: GatewayEnv) -> None:
    raw = await RawClient.connect(env.gateway.port)
    try:
        await raw.login(env.token, env.schema)
        raw.send(Unknown(b"y", b"whatever"))
        got = await raw.until_ready()
        (fatal,) = errors(got)
        assert fatal.get("C") == "08P01" and fatal.get("S") == "FATAL"
        assert not any(isinstance(m, be.ReadyForQuery) for m in got)  # then closed
    finally:
        await raw.close()
    await sessions_end(env)


# -- the end of a session ------------------------------------------------------------------------
async def test_terminate_closes_the_session(env: GatewayEnv) -> None:
    raw = await RawClient.connect(env.gateway.port)
    await raw.login(env.token, env.schema)
    raw.send(fe.Terminate())
    assert await raw.next() is None
    await raw.close()
    async with await connect(env) as conn:
        assert await rows(conn, "SELECT 1") == [(1,)]
    await sessions_end(env)


async def test_a_client_gone_in_the_middle_of_a_statement(env: GatewayEnv) -> None:
    raw = await RawClient.connect(env.gateway.port)
    await raw.login(env.token, env.schema)
    raw.send(fe.Query("SELECT pg_sleep(30)"))
    await raw.writer.drain()
    await asyncio.sleep(0.3)
    await raw.close()
    await sessions_end(env)


async def test_a_client_gone_while_its_statement_waits_for_approval(
    tmp_path: Path, pg_admin_url: str, jwks_server: JwksServer, idp_key: Any
) -> None:
    wait = "60s"
    async with gateway_env(tmp_path, pg_admin_url, jwks_server, idp_key, approval_wait=wait) as env:
        raw = await RawClient.connect(env.gateway.port)
        await raw.login(env.token, env.schema)
        raw.send(fe.Query(STEP_UP))
        notice = await raw.next()
        assert isinstance(notice, be.NoticeResponse) and "step-up" in (notice.get("M") or "")
        await raw.close()
        await sessions_end(env)  # long before the 60s wait is over


# -- a database that went away -------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_an_unreachable_database_is_a_fatal_error_that_names_no_secret(
    env: GatewayEnv, caplog: pytest.LogCaptureFixture
) -> None:
    links = env.gateway.links
    assert links is not None
    secret = "upstream-pw-3f9c2a"
    gone = dataclasses.replace(links.config.upstream, port=_closed_port(), password=secret)
    links.config = dataclasses.replace(links.config, upstream=gone)
    token = env.token
    with (
        structlog.testing.capture_logs() as logs,
        caplog.at_level(logging.DEBUG),
        pytest.raises(psycopg.OperationalError) as failed,
    ):
        await connect(env, password=token)
    text = str(failed.value)
    assert "unavailable" in text and failed.value.sqlstate in (None, "08006")
    for seen in (text, repr(logs), caplog.text):
        assert secret not in seen and token not in seen


# -- logs ----------------------------------------------------------------------------------------
async def test_no_credential_or_code_in_the_logs(
    env: GatewayEnv, caplog: pytest.LogCaptureFixture
) -> None:
    good = env.token
    head, body, signature = good.split(".")
    forged = f"{head}.{body}.{signature[::-1]}"
    with structlog.testing.capture_logs() as logs, caplog.at_level(logging.DEBUG):
        for wrong in (forged, "not-a-token-7d1e"):
            with pytest.raises(psycopg.OperationalError):
                await connect(env, password=wrong)
        async with await connect(env, password=good) as conn:
            with pytest.raises(psycopg.Error):
                await rows(conn, STEP_UP)
            code = env.code()
            wrong_code = f"{(int(code) + 1) % 1_000_000:06d}"
            with pytest.raises(psycopg.Error) as refused:
                await conn.execute(f"SET piigate.otp = '{wrong_code}'")
            assert wrong_code not in str(refused.value)
    seen = repr(logs) + caplog.text
    assert logs  # the refusals were logged ...
    for secret in (good, forged, signature, "not-a-token-7d1e", wrong_code, SSN):
        assert secret not in seen  # ... without what was refused
