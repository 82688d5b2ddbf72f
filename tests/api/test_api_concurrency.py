"""Many decisions at once: every one answered, audited once, in one unbroken chain."""

from __future__ import annotations

import asyncio
from collections import Counter

from api_support import Node, decision_body

N = 200
MIX = [("read", ["phone"]), ("read", ["ssn"]), ("update", ["ssn"]), ("delete", ["passport"])]


async def test_parallel_decisions_are_all_audited(node: Node, api_key: str) -> None:
    head = (await node.services.audit.head()).seq
    before = await node.services.audit.list_events(limit=1000)
    assert {e.type for e in before} == {"keyring_created", "service_started"}

    async def one(i: int) -> tuple[int, str, str]:
        action, pii = MIX[i % len(MIX)]
        response = await node.decide(api_key, decision_body(action, pii, subject=f"user-{i}"))
        body = response.json()
        return response.status_code, body.get("decision_id", ""), body.get("outcome", "")

    results = await asyncio.gather(*(one(i) for i in range(N)))
    assert [status for status, _, _ in results] == [200] * N
    ids = {decision_id for _, decision_id, _ in results}
    assert len(ids) == N
    outcomes = Counter(outcome for _, _, outcome in results)
    assert outcomes == {"allow": N // 2, "step_up": N // 2}

    report = await node.services.audit.verify()
    assert report.ok, report
    events = await node.services.audit.list_events(limit=1000)
    assert len(events) == head + N
    assert [e.seq for e in events] == list(range(1, head + N + 1))
    decisions = [e for e in events if e.type == "decision"]
    assert len(decisions) == N
    assert {e.data["decision_id"] for e in decisions} == ids
    assert {e.subject_id for e in decisions} == {f"user-{i}" for i in range(N)}
    # Group commit shared transactions between concurrent requests.
    stats = node.services.audit.stats
    assert stats.events >= N and stats.batches < stats.events
