"""Two nodes on one PostgreSQL database: each node's events reach the other's bus (so its live
feeds), over PostgreSQL LISTEN/NOTIFY or, when the nodes share one, Redis pub/sub; a node
ignores its own echoes, and an alert is raised once, by the node that committed its event."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from api_support import Node, StartNode
from monitoring_support import alerts_of, eventually, record_alert_event

from piigate.audit.bus import Subscription
from piigate.model import AuditEvent

ON_POSTGRES = [pytest.param("postgres", marks=pytest.mark.postgres)]
TRANSPORTS = ["postgres", pytest.param("redis", marks=pytest.mark.redis)]


async def two_nodes(
    start_node: StartNode, transport: str, request: pytest.FixtureRequest
) -> tuple[Node, Node]:
    settings: dict[str, Any] = {}
    if transport == "redis":
        settings["redis_url"] = request.getfixturevalue("redis_url")
    a = await start_node(**settings)
    b = await start_node(clock=a.clock, **settings)
    for node in (a, b):
        fanout = node.services.monitoring.fanout
        assert fanout is not None and fanout.relay.name == transport
        # Both transports deliver to those listening when a message is sent.
        await asyncio.wait_for(fanout.listening.wait(), 15)
    return a, b


async def next_event(subscription: Subscription) -> AuditEvent:
    return await asyncio.wait_for(subscription.get(), 15)


@pytest.mark.parametrize("backend", ON_POSTGRES, indirect=True)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_each_node_sees_the_others_events_and_not_its_own_twice(
    start_node: StartNode, transport: str, request: pytest.FixtureRequest
) -> None:
    a, b = await two_nodes(start_node, transport, request)
    on_a = a.services.bus.subscribe(types=["alert"])
    on_b = b.services.bus.subscribe(types=["alert"])
    from_a = await record_alert_event(a, "alice")
    seen_on_b = await next_event(on_b)
    assert (seen_on_b.seq, seen_on_b.hash, dict(seen_on_b.data)) == (
        from_a.seq,
        from_a.hash,
        dict(from_a.data),
    )
    from_b = await record_alert_event(b, "bob")
    assert (await next_event(on_b)).seq == from_b.seq
    # A has its own event once (its echo was ignored), then B's: relays keep their order.
    assert [(await next_event(on_a)).seq for _ in range(2)] == [from_a.seq, from_b.seq]
    assert on_a.drain() == [] and on_b.drain() == []
    # B's desk raises the alert of B's event and announces it (``alert_raised``), which A
    # receives too; A counts those two events of B's and none of its own echoes.
    await eventually(lambda: alerts_of(b, from_b.seq), what="B's alert")
    fanout = a.services.monitoring.fanout
    assert fanout is not None

    async def both_received() -> bool:
        return fanout.counts.received >= 2

    await eventually(both_received, what="B's announcement on A")
    assert fanout.counts.received == 2


@pytest.mark.parametrize("backend", ON_POSTGRES, indirect=True)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_alert_is_raised_once_by_the_node_that_committed_its_event(
    start_node: StartNode, transport: str, request: pytest.FixtureRequest
) -> None:
    a, b = await two_nodes(start_node, transport, request)
    on_b = b.services.bus.subscribe(types=["alert_raised"])
    from_a = await record_alert_event(a, "alice")
    (alert,) = await eventually(lambda: alerts_of(b, from_a.seq), what="the alert")
    announced = await next_event(on_b)  # A's announcement, fanned in: B's feeds show it
    assert announced.data["alert_id"] == alert.id
    from_b = await record_alert_event(b, "bob")
    await eventually(lambda: alerts_of(a, from_b.seq), what="B's alert")
    # Each node counted only the alert of its own event.
    assert a.services.metrics.events.alerts == {"push_denied": 1}
    assert b.services.metrics.events.alerts == {"push_denied": 1}
    assert len(await alerts_of(a, from_a.seq)) == 1
