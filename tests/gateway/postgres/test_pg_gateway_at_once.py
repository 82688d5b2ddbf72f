"""Statements handled at once, in the event loop's callback (``handling.handle_now``): a
statement whose reading is cached and that asks nothing of the engine, in order with what the
session's task must await (a reading, a ruling) in the same write; a prepared statement read
under another search path is read again; a statement with PII is ruled on by the policy in
force after a reload (only readings are cached, never rulings)."""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from bypass_corpus import SSN
from pg_gateway_support import POLICY, GatewayEnv
from pg_raw_client import RawClient, errors

from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.statements import STEP_UP_SQLSTATE

pytestmark = pytest.mark.postgres

MASKED_READ = "SELECT id, ssn FROM customers WHERE id = 2"


@pytest.fixture
def awaited(env: GatewayEnv, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many statements of each kind the sessions' tasks awaited (not handled at once)."""
    assert env.gateway.links is not None
    gate = env.gateway.links.gatekeeper
    counts = {"query": 0, "parse": 0, "execute": 0}

    def counted(name: str, step: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def step_counted(*args: Any) -> None:
            counts[name] += 1
            await step(*args)

        return step_counted

    for name in counts:
        monkeypatch.setattr(gate, name, counted(name, getattr(gate, name)))
    return counts


async def _client(env: GatewayEnv) -> RawClient:
    raw = await RawClient.connect(env.gateway.port)
    await raw.login(env.token, env.schema)
    return raw


def _rows(messages: list[be.BackendMessage]) -> list[tuple[bytes | None, ...]]:
    return [m.values for m in messages if isinstance(m, be.DataRow)]


def _masked(value: bytes | None) -> bool:
    return value is not None and SSN.encode() not in value and value.endswith(b"9999")


async def test_a_cached_statement_with_nothing_to_ask_is_handled_at_once_in_order(
    env: GatewayEnv, awaited: dict[str, int]
) -> None:
    raw = await _client(env)
    try:
        raw.send(fe.Query("SELECT id FROM notes WHERE id = 1"))  # read: awaited
        assert errors(await raw.until_ready()) == []
        assert awaited["query"] == 1
        # One write: the cached shape at once, the masked read awaited (its ruling), then
        # the cached shape again: the answers come in the order asked.
        raw.send(
            fe.Query("SELECT id FROM notes WHERE id = 2"),
            fe.Query(MASKED_READ),
            fe.Query("SELECT 7 AS n, id FROM notes WHERE id = 3"),
            fe.Query("SELECT id FROM notes WHERE id = 4"),
        )
        first, second, third, fourth = [await raw.until_ready() for _ in range(4)]
        assert [errors(m) for m in (first, second, third, fourth)] == [[], [], [], []]
        (row,) = _rows(second)
        assert row[0] == b"2" and _masked(row[1])
        assert be.RowDescription in {type(m) for m in third}  # its own result, in its place
        assert awaited["query"] == 3  # the masked read and the new shape; not the others
    finally:
        await raw.close()


async def test_an_execute_of_a_statement_with_nothing_to_ask_is_handled_at_once(
    env: GatewayEnv, awaited: dict[str, int]
) -> None:
    raw = await _client(env)
    try:
        raw.send(
            fe.Parse("plain", "SELECT id FROM notes WHERE id = $1"),
            fe.Parse("pii", "SELECT id, ssn FROM customers WHERE id = $1"),
            fe.Sync(),
        )
        assert errors(await raw.until_ready()) == []
        for n in (b"2", b"3"):
            raw.send(
                fe.Bind("", "plain", (), (n,)),
                fe.Execute(""),
                fe.Bind("", "pii", (), (b"2",)),
                fe.Describe("P", ""),
                fe.Execute(""),
                fe.Sync(),
            )
            got = await raw.until_ready()
            assert errors(got) == []
            (row,) = _rows(got)
            assert row[0] == b"2" and _masked(row[1])
        # Both Parses were read (awaited); only the Executes that rule on PII are awaited.
        assert awaited == {"query": 0, "parse": 2, "execute": 2}
    finally:
        await raw.close()


async def test_a_statement_prepared_under_another_search_path_is_read_again(
    env: GatewayEnv, awaited: dict[str, int]
) -> None:
    raw = await _client(env)
    try:
        raw.send(fe.Parse("s", "SELECT id FROM notes WHERE id = $1"), fe.Sync())
        assert errors(await raw.until_ready()) == []
        raw.send(fe.Query(f"SET search_path TO public, {env.schema}"))
        assert errors(await raw.until_ready()) == []
        raw.send(fe.Bind("", "s", (), (b"1",)), fe.Execute(""), fe.Sync())
        assert errors(await raw.until_ready()) == []
        assert awaited["execute"] == 1  # read again with the search path now in force
    finally:
        await raw.close()


async def test_a_policy_reload_rules_on_a_cached_statement_anew(
    env: GatewayEnv, tmp_path: Path
) -> None:
    raw = await _client(env)
    try:
        raw.send(fe.Query(MASKED_READ))
        (row,) = _rows(await raw.until_ready())
        assert _masked(row[1])
        # Reading the ssn now demands the step-up: no more masking instead.
        strict = tmp_path / "strict.yaml"
        strict.write_text(textwrap.dedent(POLICY).replace("otherwise: mask", "otherwise: deny"))
        holder = env.node.services.policy
        holder.path = str(strict)
        holder.reload()
        raw.send(fe.Query(MASKED_READ))
        got = await raw.until_ready()
        assert [e.get("C") for e in errors(got)] == [STEP_UP_SQLSTATE]
        assert _rows(got) == []
    finally:
        await raw.close()
