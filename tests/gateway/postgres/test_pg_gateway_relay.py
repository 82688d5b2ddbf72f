"""The gateway's relay end to end: what it forwarded goes out when the session waits (a pipeline
whose second statement is read only once the first one's change of the search path is known),
and results that need nothing reach the client as the server sent them."""

from __future__ import annotations

import psycopg
import pytest
from bypass_corpus import SSN
from pg_gateway_support import GatewayEnv
from pg_raw_client import RawClient, errors

from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe

pytestmark = pytest.mark.postgres


async def test_a_pipeline_that_changes_the_search_path_runs_in_one_write(env: GatewayEnv) -> None:
    raw = await RawClient.connect(env.gateway.port)
    try:
        await raw.login(env.token, "public")
        pipeline = [
            fe.Parse("", f"SET search_path TO {env.schema}"),
            fe.Bind("", ""),
            fe.Execute(""),
            fe.Sync(),
            # Read once the gateway has the new search path from the server: the SET and the
            # gateway's own SHOW must have gone out while it waits.
            fe.Parse("", "SELECT id, ssn FROM customers WHERE id = 2"),
            fe.Bind("", ""),
            fe.Describe("P", ""),
            fe.Execute(""),
            fe.Sync(),
        ]
        raw.send(b"".join(m.encode() for m in pipeline))
        first, second = await raw.until_ready(), await raw.until_ready()
        assert errors(first) == [] and be.CommandComplete("SET") in first
        assert errors(second) == []
        (row,) = [m for m in second if isinstance(m, be.DataRow)]
        assert row.values[0] == b"2" and row.values[1] is not None
        assert SSN.encode() not in row.values[1] and row.values[1].endswith(b"9999")
    finally:
        await raw.close()


async def test_a_result_with_nothing_to_mask_is_the_servers_own(
    env: GatewayEnv, pg_admin_url: str
) -> None:
    query = "SELECT g, repeat('x', g % 300), NULL::text FROM generate_series(1, 20000) AS g"
    async with await psycopg.AsyncConnection.connect(env.dsn(), autocommit=True) as conn:
        through = await (await conn.execute(query)).fetchall()
    async with await psycopg.AsyncConnection.connect(pg_admin_url, autocommit=True) as conn:
        direct = await (await conn.execute(query)).fetchall()
    assert through == direct and len(through) == 20000
