"""Real clients (asyncpg, psycopg, psql) through a relay that forwards only what the codec
parsed and re-encoded: the protocol layer is byte-exact on real traffic, and a real client
accepts the SCRAM server's answers."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator

import asyncpg
import psycopg
import pytest
from pg_relay_support import Relay, relay
from sqlalchemy import make_url

pytestmark = pytest.mark.postgres


@pytest.fixture
async def proxy(pg_admin_url: str) -> AsyncIterator[Relay]:
    url = make_url(pg_admin_url)
    async with relay(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


def _dsn(proxy: Relay, pg_admin_url: str, password: str | None = None) -> str:
    url = make_url(pg_admin_url).set(
        drivername="postgresql", host="127.0.0.1", port=proxy.port, password=password
    )
    return url.render_as_string(hide_password=False)


async def test_asyncpg_through_the_relay(proxy: Relay, pg_admin_url: str) -> None:
    conn = await asyncpg.connect(_dsn(proxy, pg_admin_url))
    try:
        assert await conn.fetchval("SELECT 1") == 1  # extended protocol, binary results
        rows = await conn.fetch("SELECT $1::int AS n, NULL::text AS t, $2::text AS s", 7, "é")
        assert [tuple(r) for r in rows] == [(7, None, "é")]
        statement = await conn.prepare("SELECT g, g::text FROM generate_series(1, $1) AS g")
        assert len(await statement.fetch(500)) == 500
        assert await statement.fetchval(3) == 1
        await conn.execute("CREATE TEMP TABLE t (id int, name text, note text)")  # simple
        await conn.copy_records_to_table("t", records=[(1, "a", None), (2, "b", "x")])
        assert await conn.fetchval("SELECT count(*) FROM t WHERE note IS NULL") == 1
        copied = bytearray()

        async def sink(chunk: bytes) -> None:
            copied.extend(chunk)

        await conn.copy_from_query("SELECT * FROM t ORDER BY id", output=sink)
        assert bytes(copied) == b"1\ta\t\\N\n2\tb\tx\n"
        async with conn.transaction():
            cursor = conn.cursor("SELECT g FROM generate_series(1, 10) AS g", prefetch=3)
            assert [r[0] async for r in cursor] == list(range(1, 11))
        with pytest.raises(asyncpg.UndefinedTableError):
            await conn.fetch("SELECT * FROM no_such_table_here")
        assert await conn.fetchval("SELECT 2") == 2  # usable after the error
        await _listen_notify(conn)
    finally:
        await conn.close()
    await asyncio.sleep(0.05)
    assert proxy.failures == []
    assert {"StartupMessage", "Parse", "Bind", "Describe", "Execute", "Sync", "Query"} <= set(
        proxy.frontend
    )
    assert {"CopyData", "CopyDone", "Terminate"} <= set(proxy.frontend)
    expected = {
        "AuthenticationOk", "ParameterStatus", "BackendKeyData", "ReadyForQuery",
        "RowDescription", "DataRow", "CommandComplete", "ErrorResponse", "ParseComplete",
        "BindComplete", "ParameterDescription", "NoData", "CopyInResponse", "CopyOutResponse",
        "CopyData", "CopyDone", "NotificationResponse", "PortalSuspended",
    }  # fmt: skip
    assert expected <= set(proxy.backend), expected - set(proxy.backend)
    assert "Unknown" not in proxy.frontend
    assert "Unknown" not in proxy.backend


async def _listen_notify(conn: asyncpg.Connection) -> None:
    channel = f"piigate_{secrets.token_hex(4)}"
    got: asyncio.Queue[str] = asyncio.Queue()

    def listener(*args: object) -> None:
        got.put_nowait(str(args[3]))

    await conn.add_listener(channel, listener)
    await conn.execute(f"NOTIFY {channel}, 'hello'")
    assert await asyncio.wait_for(got.get(), 5) == "hello"
    await conn.remove_listener(channel, listener)


async def test_psycopg_pipeline_and_copy_through_the_relay(proxy: Relay, pg_admin_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(_dsn(proxy, pg_admin_url)) as conn:
        async with conn.pipeline():
            first = await conn.execute("SELECT %s::int", (1,), prepare=True)
            second = await conn.execute("SELECT %s::text, NULL", ("two",), binary=True)
            third = await conn.execute("SELECT %s::int", (3,), prepare=True)
        assert await first.fetchone() == (1,)
        assert await second.fetchone() == ("two", None)
        assert await third.fetchone() == (3,)
        await conn.execute("CREATE TEMP TABLE c (id int, v text)")
        async with conn.cursor() as cur:
            async with cur.copy("COPY c FROM STDIN") as copy:
                await copy.write_row((1, "x"))
                await copy.write_row((2, None))
            lines = []
            async with cur.copy("COPY c TO STDOUT") as copy:
                async for data in copy:
                    lines.append(bytes(data))
        assert b"".join(lines) == b"1\tx\n2\t\\N\n"
        with pytest.raises(psycopg.errors.DivisionByZero):
            await conn.execute("SELECT 1/0")
        await conn.rollback()
        cur = await conn.execute("SELECT 'after'")
        assert await cur.fetchone() == ("after",)
        await conn.execute("")
    await asyncio.sleep(0.05)
    assert proxy.failures == []
    assert {"Parse", "Bind", "Execute", "Sync", "CopyData", "CopyDone"} <= set(proxy.frontend)
    assert {"CopyInResponse", "CopyOutResponse", "ErrorResponse", "EmptyQueryResponse"} <= set(
        proxy.backend
    )
    assert "Unknown" not in proxy.frontend
    assert "Unknown" not in proxy.backend


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
async def test_psql_through_the_relay(proxy: Relay, pg_admin_url: str) -> None:
    script = b"SELECT 'a' AS x, NULL AS y;\nSELECT 1/0;\nSELECT 'b';\n"
    process = await asyncio.create_subprocess_exec(
        "psql", _dsn(proxy, pg_admin_url), "-X", "-A", "-t", "-f", "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(script), 30)
    assert out == b"a|\nb\n"
    assert b"division by zero" in err
    assert proxy.failures == []
    assert "Query" in proxy.frontend


async def test_the_relays_scram_server_convinces_real_clients(pg_admin_url: str) -> None:
    url = make_url(pg_admin_url)
    token = "pg_" + secrets.token_urlsafe(24)
    async with relay(url.host or "127.0.0.1", url.port or 5432, password=token) as scram:
        conn = await asyncpg.connect(_dsn(scram, pg_admin_url, token))
        assert await conn.fetchval("SELECT 41 + 1") == 42
        await conn.close()
        async with await psycopg.AsyncConnection.connect(_dsn(scram, pg_admin_url, token)) as pc:
            cur = await pc.execute("SELECT current_user")
            assert await cur.fetchone() == (url.username,)
        assert scram.failures == []
        assert scram.frontend["SASLInitialResponse"] == 0  # the relay answered, not upstream
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(_dsn(scram, pg_admin_url, token + "x"))
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            await psycopg.AsyncConnection.connect(_dsn(scram, pg_admin_url, "wrong"))
        assert [f for f in scram.failures if f.startswith("scram: wrong proof")] == [
            "scram: wrong proof",
            "scram: wrong proof",
        ]


async def test_a_wrong_server_signature_is_refused_by_real_clients(pg_admin_url: str) -> None:
    """The SCRAM test above can fail: the clients do check the server-final message."""
    url = make_url(pg_admin_url)
    token = "pg_" + secrets.token_urlsafe(24)
    async with relay(url.host or "127.0.0.1", url.port or 5432, password=token, tamper=True) as bad:
        with pytest.raises(asyncpg.InterfaceError, match="could not verify server signature"):
            await asyncpg.connect(_dsn(bad, pg_admin_url, token))
        with pytest.raises(psycopg.OperationalError, match="incorrect server signature"):
            await psycopg.AsyncConnection.connect(_dsn(bad, pg_admin_url, token))
        assert bad.failures == []  # the proofs were right: only the answer was wrong


async def test_a_cancel_request_reaches_the_backend(proxy: Relay, pg_admin_url: str) -> None:
    conn = await asyncpg.connect(_dsn(proxy, pg_admin_url))
    try:
        with pytest.raises(TimeoutError):
            await conn.execute("SELECT pg_sleep(30)", timeout=0.5)  # asyncpg then cancels
        assert await conn.fetchval("SELECT 'still usable'") == "still usable"
    finally:
        await conn.close()
    assert proxy.frontend["CancelRequest"] == 1
