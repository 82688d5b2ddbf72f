"""Unlock challenges named again across nodes sharing one store (SQLite and PostgreSQL): a node
never names a challenge that another node's verification closed, even while it races with it;
every decision is audited, naming a challenge that exists and could be answered."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from piigate.audit import AuditLog
from piigate.callers import Caller
from piigate.clock import FixedClock
from piigate.crypto.keyring import Keyring
from piigate.model import (
    AccessRequest,
    Action,
    ChallengeState,
    Context,
    Outcome,
    Resource,
    SessionAuth,
    Subject,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.risk import CarriedRisk
from piigate.stepup.engine import Engine
from piigate.store import Database, Store
from piigate.store.ports import SqlChallenges, SqlGrantLedger

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
GATEWAY = Caller.app("key_gateway")
POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:piigate:aal1"}
      aal2: {acr: "urn:piigate:aal2"}
    pii:
      ssn: {}
    factors:
      totp: {level: aal2}
    rules:
      - name: read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2, max_age: 5m}
        otherwise: mask
    stepup: {challenge_ttl: 5m, max_attempts: 3}
    """
)
REQUEST = AccessRequest(
    subject=Subject("ann"),
    action=Action.READ,
    pii=frozenset({"ssn"}),
    resource=Resource("customer", "7"),
    session=SessionAuth(id="s-1", acr="urn:piigate:aal1", auth_time=T0),
    context=Context(ip="203.0.113.7", device_id="d-9"),
)


@dataclass
class Node:
    """One node's engine on its own handle of the shared store."""

    db: Database
    store: Store
    audit: AuditLog
    engine: Engine

    async def read(self) -> str:
        decision = await self.engine.decide(REQUEST, caller=GATEWAY)
        assert decision.outcome is Outcome.ALLOW and decision.challenge is not None
        return decision.challenge.id


@pytest.fixture
async def nodes(migrated_url: str) -> AsyncIterator[tuple[Node, Node]]:
    started: list[Node] = []
    holder = PolicyHolder(compile_policy(load_policy_text(POLICY)))
    clock = FixedClock(T0)
    try:
        for _ in range(2):
            db = Database.open(migrated_url)
            store = Store(db)
            audit = AuditLog(db, clock)
            await audit.start()
            engine = Engine(
                policy=holder,
                risk=CarriedRisk(),
                grants=None,
                ledger=SqlGrantLedger(store),
                challenges=SqlChallenges(store, Keyring.ephemeral(clock=clock), audit),
                audit=audit,
                clock=clock,
            )
            started.append(Node(db, store, audit, engine))
        yield started[0], started[1]
    finally:
        for node in started:
            await node.audit.stop()
            await node.db.close()


async def named_in_chain(node: Node) -> list[tuple[str, object]]:
    """Every event of the shared chain, verified: its type and the challenge it names."""
    report = await node.audit.verify()
    assert report.ok, report
    events = await node.audit.list_events(limit=1000)
    return [(e.type, e.data.get("challenge_id")) for e in events]


async def test_a_challenge_approved_on_another_node_is_not_named_again(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    first = await a.read()
    assert await a.read() == first
    # Node B's verification approves it (the compare-and-set its verifier runs).
    assert await b.store.set_challenge_state(first, expected="pending", new="approved")
    second = await a.read()
    assert second != first
    found = await a.store.get_challenge(second)
    assert found is not None and found.state == ChallengeState.PENDING.value
    assert [c for _, c in await named_in_chain(a)] == [first, first, second]


async def test_no_decision_names_a_challenge_after_another_node_closed_it(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    first = await a.read()
    reading = asyncio.Event()

    async def reads(n: int) -> list[str]:
        named = []
        for _ in range(n):
            named.append(await a.read())
            reading.set()
        return named

    async def approve() -> None:
        await reading.wait()
        assert await b.store.set_challenge_state(first, expected="pending", new="approved")
        await b.audit.record("challenge_verified", subject_id="ann", data={"challenge_id": first})

    *named, _ = await asyncio.gather(reads(15), reads(15), reads(15), approve())
    chain = await named_in_chain(a)
    approved_at = chain.index(("challenge_verified", first))
    # Those that name the approved one were all committed before its approval was.
    assert ("decision", first) not in chain[approved_at:]
    decisions = [c for t, c in chain if t == "decision"]
    assert len(decisions) == 46 and set(decisions) == {first} | {c for n in named for c in n}
    for cid in set(decisions) - {first}:
        found = await a.store.get_challenge(str(cid))
        assert found is not None and found.state == ChallengeState.PENDING.value


async def test_concurrent_reads_on_two_nodes_open_one_challenge_each(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    named = await asyncio.gather(*(node.read() for node in (a, b) for _ in range(20)))
    on_a, on_b = set(named[:20]), set(named[20:])
    assert len(on_a) == len(on_b) == 1 and on_a != on_b
    chain = await named_in_chain(a)
    assert sorted(str(c) for _, c in chain) == sorted(named)
    for cid in on_a | on_b:
        found = await a.store.get_challenge(cid)
        assert found is not None and found.state == ChallengeState.PENDING.value
