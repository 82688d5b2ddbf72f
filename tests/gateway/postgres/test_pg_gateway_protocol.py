"""The PostgreSQL gateway's wire protocol end to end, with real clients: TLS, GSS encryption
refused, cancels (of a running statement and of a wait for approval), pipelines with a refusal
in the middle, portals read a few rows at a time, several statements in one Query, and the
transaction state the gateway reports after a refusal.

Sessions, COPY and what libpq will not send are in ``test_pg_gateway_session``."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bypass_corpus import SSN
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jwt_support import JwksServer
from pg_gateway_support import GatewayEnv, gateway_env
from pg_raw_client import RawClient
from psycopg.pq import TransactionStatus

from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.config import TlsConfig
from piigate.gateway.postgres.greeting import tls_or_local

pytestmark = pytest.mark.postgres

STEP_UP = f"SELECT id FROM customers WHERE ssn = '{SSN}'"  # filters on a masked column


async def connect(env: GatewayEnv, autocommit: bool = True, **dsn: str) -> Any:
    return await psycopg.AsyncConnection.connect(env.dsn(**dsn), autocommit=autocommit)


async def rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql)
        return list(await cur.fetchall())


def masked(value: str) -> bool:
    return value != SSN and value.endswith("9999")


# -- TLS and GSS encryption ----------------------------------------------------------------------
def self_signed(directory: Path) -> TlsConfig:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsConfig(str(cert_path), str(key_path))


async def test_tls_with_a_configured_certificate(
    tmp_path: Path, pg_admin_url: str, jwks_server: JwksServer, idp_key: Any
) -> None:
    tls = self_signed(tmp_path)
    async with gateway_env(tmp_path, pg_admin_url, jwks_server, idp_key, tls=tls) as env:
        async with await connect(env, sslmode="require") as conn:
            assert conn.pgconn.ssl_in_use
            ((ssn,),) = await rows(conn, "SELECT ssn FROM customers WHERE id = 2")
            assert masked(ssn)
        # a client that insists on a verified certificate refuses this self-signed one
        with pytest.raises(psycopg.OperationalError):
            await connect(env, sslmode="verify-full", sslrootcert=str(tmp_path / "none.crt"))
        async with await connect(env, sslmode="verify-ca", sslrootcert=tls.cert) as conn:
            assert conn.pgconn.ssl_in_use and await rows(conn, "SELECT 1") == [(1,)]


async def test_without_tls_require_fails_and_prefer_falls_back(env: GatewayEnv) -> None:
    with pytest.raises(psycopg.OperationalError) as refused:
        await connect(env, sslmode="require")
    assert "SSL" in str(refused.value)
    async with await connect(env, sslmode="prefer") as conn:
        assert not conn.pgconn.ssl_in_use
        assert await rows(conn, "SELECT 1") == [(1,)]


@pytest.mark.parametrize(
    ("ip", "tls", "allowed"),
    [
        ("127.0.0.1", False, True),
        ("127.0.0.2", False, True),  # all of 127/8 is this host
        ("::1", False, True),
        ("::ffff:127.0.0.1", False, True),  # a v4 loopback on a dual-stack socket
        ("10.0.0.7", False, False),
        ("::ffff:10.0.0.7", False, False),
        ("192.0.2.1", True, True),
        (None, False, True),  # a Unix socket: this host
        ("not an address", False, False),
    ],
)
def test_a_cleartext_password_only_over_tls_or_from_this_host(
    ip: str | None, tls: bool, allowed: bool
) -> None:
    assert tls_or_local(ip, tls=tls) is allowed


async def test_a_gss_encryption_request_is_answered_no(env: GatewayEnv) -> None:
    async with await connect(env, gssencmode="prefer") as conn:
        assert await rows(conn, "SELECT 1") == [(1,)]
    raw = await RawClient.connect(env.gateway.port)
    try:
        raw.send(fe.GSSENCRequest())
        assert await raw.answer_byte() == b"N"
        got = await raw.login(env.token, env.schema)
        assert any(isinstance(m, be.BackendKeyData) for m in got)
    finally:
        await raw.close()


# -- cancels -------------------------------------------------------------------------------------
async def test_a_cancel_stops_a_running_statement(env: GatewayEnv) -> None:
    async with await connect(env) as conn:
        running = asyncio.create_task(rows(conn, "SELECT pg_sleep(30)"))
        await asyncio.sleep(0.5)
        await conn.cancel_safe()
        with pytest.raises(psycopg.errors.QueryCanceled) as cancelled:
            await asyncio.wait_for(running, 20)
        assert cancelled.value.sqlstate == "57014"
        assert await rows(conn, "SELECT 1") == [(1,)]


async def test_a_cancel_ends_the_wait_for_approval(
    tmp_path: Path, pg_admin_url: str, jwks_server: JwksServer, idp_key: Any
) -> None:
    async with (
        gateway_env(tmp_path, pg_admin_url, jwks_server, idp_key, approval_wait="30s") as env,
        await connect(env) as conn,
    ):
        told = asyncio.Event()
        conn.add_notice_handler(lambda _: told.set())
        waiting = asyncio.create_task(rows(conn, STEP_UP))
        await asyncio.wait_for(told.wait(), 10)  # the step-up NOTICE: the wait has begun
        await conn.cancel_safe()
        with pytest.raises(psycopg.Error) as refused:
            await asyncio.wait_for(waiting, 10)  # far less than the 30s wait
        assert refused.value.sqlstate == "28SU1"
        # the cancel reached no statement of the server: the next one runs
        assert await rows(conn, "SELECT 1 FROM pg_sleep(0.2)") == [(1,)]


# -- pipelines and portals -----------------------------------------------------------------------
async def test_a_refusal_in_a_pipeline_skips_the_rest_of_its_batch(env: GatewayEnv) -> None:
    async with await connect(env) as conn:
        cursors = [conn.cursor() for _ in range(4)]
        with pytest.raises(psycopg.Error) as refused:
            async with conn.pipeline():
                await cursors[0].execute("SELECT 1")
                await cursors[1].execute("SELECT name FROM customers WHERE id = %s", (2,))
                await cursors[2].execute(STEP_UP.replace(f"'{SSN}'", "%s"), (SSN,))
                await cursors[3].execute("SELECT 4")
        assert refused.value.sqlstate == "28SU1"
        assert await cursors[0].fetchall() == [(1,)]
        assert await cursors[1].fetchall() == [("Bob",)]
        with pytest.raises(psycopg.Error):
            await cursors[3].fetchall()  # skipped, as PostgreSQL skips to the Sync
        assert conn.info.transaction_status is TransactionStatus.IDLE
        assert await rows(conn, "SELECT 5") == [(5,)]
        async with conn.pipeline():  # and a pipeline after it runs whole
            ok = [await conn.execute("SELECT %s::int", (i,)) for i in range(3)]
        assert [await c.fetchone() for c in ok] == [(0,), (1,), (2,)]


async def test_a_server_side_cursor_reads_masked_in_batches_then_clear_after_the_step_up(
    env: GatewayEnv,
) -> None:
    """psycopg's named cursors are DECLARE and FETCH: a FETCH from a cursor the session saw
    declared is ruled on and masked as the cursor's query."""
    sql = "SELECT id, ssn FROM customers ORDER BY id"
    async with await connect(env, autocommit=False) as conn:
        async with conn.cursor(name="few") as cur:
            cur.itersize = 1
            await cur.execute(sql)
            masked = [row async for row in cur]
        await conn.commit()
        assert [cid for cid, _ in masked] == [1, 2, 3]
        assert all(SSN not in ssn for _, ssn in masked)
        with pytest.raises(psycopg.Error) as refused:  # a filter on the SSN: the step-up
            await rows(conn, STEP_UP)
        assert refused.value.sqlstate == "28SU1"
        await conn.rollback()
        await conn.execute(f"SET piigate.otp = '{env.code()}'")
        async with conn.cursor(name="few") as cur:
            cur.itersize = 1
            await cur.execute(sql)
            got = [row async for row in cur]
        await conn.commit()
    assert [cid for cid, _ in got] == [1, 2, 3] and (2, SSN) in got


async def test_a_fetch_from_a_cursor_the_session_did_not_see_declared_fails_closed(
    env: GatewayEnv,
) -> None:
    async with await connect(env) as conn:
        with pytest.raises(psycopg.Error) as refused:
            await rows(conn, "FETCH ALL FROM nobody_declared_this")
        assert refused.value.sqlstate == "28SU1"


async def test_asyncpg_cursor_rows_read_a_few_at_a_time_are_masked(env: GatewayEnv) -> None:
    conn = await env.asyncpg()
    try:
        async with conn.transaction():
            got = [
                r["ssn"]
                async for r in conn.cursor("SELECT ssn FROM customers ORDER BY id", prefetch=1)
            ]
            cursor = await conn.cursor("SELECT ssn FROM customers ORDER BY id")
            first = await cursor.fetch(2)
            rest = await cursor.fetch(5)
    finally:
        await conn.close()
    assert len(got) == 3 and all(s != SSN and "*" in s for s in got)
    assert [r["ssn"] for r in [*first, *rest]] == got


async def test_a_portal_executed_with_a_row_limit_is_masked_in_every_part(
    env: GatewayEnv,
) -> None:
    raw = await RawClient.connect(env.gateway.port)
    try:
        await raw.login(env.token, env.schema)
        sql = "SELECT ssn FROM customers ORDER BY id"
        raw.send(fe.Query("BEGIN"))
        await raw.until_ready()
        raw.send(fe.Parse("st", sql), fe.Bind("po", "st"), fe.Describe("P", "po"))
        for _ in range(3):
            raw.send(fe.Execute("po", 1))
        raw.send(fe.Execute("po", 0), fe.Sync())
        got = await raw.until_ready()
        raw.send(fe.Query("COMMIT"))
        await raw.until_ready()
    finally:
        await raw.close()
    values = [m.values[0] for m in got if isinstance(m, be.DataRow)]
    suspended = [m for m in got if isinstance(m, be.PortalSuspended)]
    assert len(values) == 3 and len(suspended) == 3
    assert all(v is not None and SSN.encode() not in v and b"*" in v for v in values)


async def test_several_statements_in_one_query_mask_only_what_they_read(env: GatewayEnv) -> None:
    async with await connect(env) as conn:
        cur = conn.cursor()
        await cur.execute(
            "SELECT name FROM customers WHERE id = 2; "
            "SELECT ssn FROM customers WHERE id = 2; "
            "SELECT '219-09-9999' AS literal"
        )
        seen = [await cur.fetchall()]
        while cur.nextset():
            seen.append(await cur.fetchall())
    assert seen[0] == [("Bob",)]
    assert masked(seen[1][0][0])
    assert seen[2] == [(SSN,)]  # a literal the client wrote is not the catalogued column


# -- transactions --------------------------------------------------------------------------------
async def test_a_refusal_ends_the_transaction_as_any_error_does(env: GatewayEnv) -> None:
    # The server is made to fail in the refused statement's place: an explicit transaction is
    # aborted, and the client's ROLLBACK and the next transaction work as with PostgreSQL.
    table = f"{env.schema}.notes"
    async with await connect(env, autocommit=False) as conn:
        await conn.execute(f"INSERT INTO {table} (body) VALUES ('lost')")
        with pytest.raises(psycopg.Error) as refused:
            await rows(conn, STEP_UP)
        assert refused.value.sqlstate == "28SU1"
        assert conn.info.transaction_status is TransactionStatus.INERROR
        await conn.rollback()
        await conn.execute(f"INSERT INTO {table} (body) VALUES ('kept')")
        with pytest.raises(psycopg.Error) as again:  # the same through the extended protocol
            await conn.execute(STEP_UP.replace(f"'{SSN}'", "%s"), (SSN,))
        assert again.value.sqlstate == "28SU1"
        assert conn.info.transaction_status is TransactionStatus.INERROR
        await conn.rollback()
        await conn.execute(f"INSERT INTO {table} (body) VALUES ('also kept')")
        await conn.commit()
        got = await rows(conn, f"SELECT body FROM {table} ORDER BY id")
        await conn.commit()
    assert got == [("also kept",)]


async def test_an_otp_answer_reports_the_transaction_it_is_in(env: GatewayEnv) -> None:
    async with await connect(env, autocommit=False) as conn:
        with pytest.raises(psycopg.Error):
            await rows(conn, STEP_UP)
        await conn.rollback()
        await conn.execute("SELECT 1")
        await conn.execute(f"SET piigate.otp = '{env.code()}'")
        assert conn.info.transaction_status is TransactionStatus.INTRANS
        assert await rows(conn, STEP_UP) == [(2,)]
        await conn.rollback()
        assert conn.info.transaction_status is TransactionStatus.IDLE
