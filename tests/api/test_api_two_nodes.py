"""Two piigate nodes sharing one store (SQLite file or PostgreSQL database), one keyring and one
Redis: the protections of CONTRACT §5 hold across nodes, not just within one.

- 50 parallel wrong guesses spread over both nodes leave a psd2 factor with exactly 5 counted
  failures (the count lives in the factor's row; one conditional UPDATE per guess);
- one TOTP code sent to both nodes at once is accepted by exactly one;
- a login lock started on one node holds on the other (the throttle counters live in Redis).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from api_support import Node, StartNode, same_origin
from factor_support import (
    PASSWORD,
    Users,
    challenge,
    enroll_totp,
    factor_policy,
    totp_code,
    users,
    wrong,
)
from factor_support import verify as verify_on

from piigate.identity.throttle import throttle_keys
from piigate.store.redis_counters import RedisCounters

__all__ = ["users"]  # the fixture, re-exported for pytest

pytestmark = pytest.mark.redis


@dataclass
class Pair:
    a: Node
    b: Node


@pytest.fixture
async def pair(start_node: StartNode, redis_url: str) -> AsyncIterator[Pair]:
    policy = factor_policy("psd2", max_attempts=100)
    a = await start_node(policy=policy, redis_url=redis_url)
    b = await start_node(policy=policy, redis_url=redis_url, clock=a.clock)
    # Each node keeps its own Redis client, but both under one key prefix of this test's, so
    # runs sharing the Redis server (the network key of 127.0.0.1) never see each other's counts.
    prefix = f"piigate-test:{secrets.token_hex(6)}:"
    own = [RedisCounters(redis_url, prefix=prefix) for _ in range(2)]
    for node, counters in zip((a, b), own, strict=True):
        node.services.counters = node.services.logins.counters = counters
    try:
        yield Pair(a, b)
    finally:
        for counters in own:
            await counters.aclose()


def on(node: Node, session: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client of ``node`` carrying ``session``'s login cookie (sessions live in the store)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app),
        base_url="http://t",
        cookies=session.cookies,
        headers=same_origin(node.settings),
    )


async def test_psd2_guesses_over_two_nodes_count_exactly_five(pair: Pair, users: Users) -> None:
    for node in (pair.a, pair.b):
        node.services.verifier.refusals.base_delay = 0  # isolate the cap from the back-off
    _, key = await pair.a.api_key("app")
    alice_a = await users(pair.a, "alice")
    factor_id, secret = await enroll_totp(pair.a, alice_a)
    challenges = [await challenge(pair.a, key) for _ in range(5)]
    guess = wrong(totp_code(pair.a, secret))
    async with on(pair.b, alice_a) as alice_b:
        clients = (alice_a, alice_b)
        responses = await asyncio.gather(
            *(verify_on(clients[i % 2], challenges[i % 5], guess) for i in range(50))
        )
        assert {r.status_code for r in responses} == {401}
        row = await pair.b.services.store.get_factor(factor_id)
        assert row is not None and row.failures == 5
        # Locked on both nodes: the right code no longer helps on either.
        for client in clients:
            fresh = await challenge(pair.a, key)
            assert (await verify_on(client, fresh, totp_code(pair.a, secret))).status_code == 401


async def test_one_totp_code_is_accepted_by_one_node_only(pair: Pair, users: Users) -> None:
    # Without the back-off, the loser always reaches the code check (with it, it may instead
    # see the winner's charge, counted before its check, and be told to wait: 429).
    for node in (pair.a, pair.b):
        node.services.verifier.refusals.base_delay = 0
    _, key = await pair.a.api_key("app")
    alice_a = await users(pair.a, "alice")
    _, secret = await enroll_totp(pair.a, alice_a)
    code = totp_code(pair.a, secret)
    first, second = await challenge(pair.a, key), await challenge(pair.a, key)
    async with on(pair.b, alice_a) as alice_b:
        answers = await asyncio.gather(
            verify_on(alice_a, first, code), verify_on(alice_b, second, code)
        )
    assert sorted(r.status_code for r in answers) == [200, 401]
    reasons = [
        e.data["reason"]
        for e in await pair.a.services.audit.list_events(types=["verification_failed"])
    ]
    assert reasons == ["replayed"]


async def test_a_login_lock_from_one_node_holds_on_the_other(pair: Pair) -> None:
    name = f"bob-{secrets.token_hex(4)}"  # throttle keys in the shared Redis stay this test's
    await pair.a.user(name, PASSWORD)
    statuses = []
    for _ in range(7):  # past the free failures: the back-off starts
        response = await pair.a.client.post(
            "/v1/login", json={"username": name, "password": "wrong password"}
        )
        statuses.append(response.status_code)
    assert statuses[:6] == [401] * 6 and statuses[6] == 429, statuses
    locked = await pair.b.client.post("/v1/login", json={"username": name, "password": PASSWORD})
    assert locked.status_code == 429, locked.text
    assert int(locked.headers["retry-after"]) >= 1
    # The counters are in Redis, not in the shared database.
    user_key, _ = throttle_keys(name, None)
    assert await pair.a.services.store.peek(user_key, pair.a.clock.now()) == 0
    assert await pair.b.services.counters.peek(user_key, pair.a.clock.now()) == 6
