"""The alert desk on a running node (``audit/desk.py``): alerts raised from this node's
committed events, once each, announced, counted, sent to the sinks, acknowledged once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from api_support import Node, StartNode
from monitoring_support import alerts_of, eventually, record_alert_event

from piigate.audit.alerts import AlertKind
from piigate.audit.sink_settings import AlertSettings, JsonLinesSettings
from piigate.errors import Conflict, NotFound
from piigate.model import AuditEvent


async def raised(node: Node, event: AuditEvent) -> list[object]:
    return await eventually(lambda: alerts_of(node, event.seq), what="the alert")


async def test_a_committed_alert_event_raises_one_alert_announced_and_counted(
    node: Node,
) -> None:
    event = await record_alert_event(node)
    (alert,) = await raised(node, event)
    assert alert.kind is AlertKind.PUSH_DENIED and alert.subject_id == "alice"
    assert alert.summary == "push cer_x denied on device fac_x (challenge chl_x)"
    announced = await eventually(
        lambda: node.services.audit.list_events(types=["alert_raised"]), what="alert_raised"
    )
    assert [e.data for e in announced] == [
        {"alert_id": alert.id, "kind": "push_denied", "severity": "high", "event_seq": event.seq}
    ]
    assert announced[0].subject_id == "alice"
    # The same event again (the watcher catching up after a lag, another node): nothing new.
    assert await node.services.monitoring.desk.raise_from(event) is None
    assert len(await alerts_of(node, event.seq)) == 1
    scrape = (await node.client.get("/metrics")).text
    assert 'piigate_alerts_total{kind="push_denied"} 1.0' in scrape


async def test_events_from_other_nodes_are_not_raised_here(node: Node) -> None:
    desk = node.services.monitoring.desk
    # An event another node committed, put on this node's bus as the fan-out does.
    remote = AuditEvent(
        "alert", node.clock.now(), "bob", {"kind": "push_denied"}, seq=10**9, hash="x"
    )
    node.services.bus.publish_remote(remote)
    local = await record_alert_event(node)
    await raised(node, local)  # the watcher takes events in order: the remote one came first
    assert await alerts_of(node, remote.seq) == []
    assert [a.subject_id for a in await desk.recent()] == ["alice"]


async def test_decisions_with_impossible_travel_raise_an_alert(node: Node) -> None:
    data = {
        "decision_id": "dec_9",
        "outcome": "deny",
        "action": "read",
        "resource": {"type": "customer", "id": "42"},
        "risk": {"score": 90, "signals": [{"name": "impossible_travel", "weight": 60}]},
    }
    event = await node.services.audit.record("decision", subject_id="carol", data=data)
    (alert,) = await raised(node, event)
    assert alert.kind is AlertKind.IMPOSSIBLE_TRAVEL and alert.subject_id == "carol"


async def test_a_signal_that_persists_is_one_open_alert(node: Node) -> None:
    def bulk(n: int) -> dict[str, object]:
        signals = [{"name": "bulk_destructive", "weight": 60}]
        return {"decision_id": f"dec_{n}", "outcome": "step_up", "action": "delete",
                "risk": {"score": 60, "signals": signals}}  # fmt: skip

    audit, desk = node.services.audit, node.services.monitoring.desk
    first = await audit.record("decision", subject_id="dave", data=bulk(1))
    (alert,) = await raised(node, first)
    repeats = [await audit.record("decision", subject_id="dave", data=bulk(n)) for n in (2, 3)]
    other = await audit.record("decision", subject_id="erin", data=bulk(4))
    await raised(node, other)  # taken in order: the repeats before it raised nothing
    assert [await alerts_of(node, e.seq) for e in repeats] == [[], []]
    await desk.acknowledge(alert.id, "sec")
    again = await audit.record("decision", subject_id="dave", data=bulk(5))
    await raised(node, again)  # once acknowledged, the signal raises a new alert
    node.clock.advance(11 * 60)
    later = await audit.record("decision", subject_id="erin", data=bulk(6))
    await raised(node, later)  # and after ten minutes


async def test_acknowledging_is_audited_and_happens_once(node: Node) -> None:
    desk = node.services.monitoring.desk
    (alert,) = await raised(node, await record_alert_event(node))
    done = await desk.acknowledge(alert.id, "sec-ann")
    assert not done.open and done.acknowledged_by == "sec-ann"
    assert done.acknowledged_at == node.clock.now()
    with pytest.raises(Conflict):
        await desk.acknowledge(alert.id, "sec-bob")
    with pytest.raises(NotFound):
        await desk.acknowledge("alt_unknown", "sec-ann")
    events = await node.services.audit.list_events(types=["alert_acknowledged"])
    assert [(e.subject_id, e.data) for e in events] == [
        ("alice", {"alert_id": alert.id, "kind": "push_denied", "by": "sec-ann"})
    ]
    assert await desk.recent(open_only=True) == []
    assert [a.id for a in await desk.recent(acknowledged_only=True)] == [alert.id]


async def test_filters_by_kind_and_subject(node: Node) -> None:
    desk = node.services.monitoring.desk
    await raised(node, await record_alert_event(node, "alice"))
    data = {"signal": "velocity", "per": "subject", "count": 80, "limit": 100, "window": 60}
    await raised(
        node, await node.services.audit.record("approaching_limit", subject_id="bob", data=data)
    )
    assert [a.subject_id for a in await desk.recent(kinds=["approaching_limit"])] == ["bob"]
    assert [a.kind for a in await desk.recent(subject_id="alice")] == [AlertKind.PUSH_DENIED]
    assert await desk.recent(kinds=["no_such_kind"]) == []


async def test_raised_alerts_go_to_the_configured_sinks(
    start_node: StartNode, tmp_path: Path
) -> None:
    out = tmp_path / "alerts.jsonl"
    node = await start_node(alerts=AlertSettings(jsonl=JsonLinesSettings(str(out))))
    (alert,) = await raised(node, await record_alert_event(node))
    (sink,) = node.services.monitoring.desk.sinks
    await sink.drained()
    (line,) = out.read_text().splitlines()
    assert json.loads(line) == {
        "id": alert.id,
        "kind": "push_denied",
        "severity": "high",
        "subject": "alice",
        "at": alert.at.isoformat(),
        "event_seq": alert.event_seq,
        "summary": alert.summary,
        "acknowledged_by": None,
        "acknowledged_at": None,
    }
    assert out.stat().st_mode & 0o777 == 0o600
    scrape = (await node.client.get("/metrics")).text
    assert 'piigate_alert_deliveries_total{result="delivered",sink="jsonl"} 1.0' in scrape
