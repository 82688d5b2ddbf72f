"""Reports by a person that one of their events was not them: the evidence every node reads
(a ``reported_activity`` ceremony), the ``alert`` event of the security team, once per event."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from piigate.errors import Conflict, NotFound
from piigate.model import AuditEvent
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.risk.reports import ActivityReports, is_reportable
from piigate.store import Database, Store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Recorded:
    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, dict[str, object]]] = []

    async def record(
        self,
        type: str,
        *,
        subject_id: str | None = None,
        data: Mapping[str, object] | None = None,
    ) -> object:
        self.events.append((type, subject_id, dict(data or {})))
        return None


def policy(risk: str = "") -> PolicyHolder:
    text = f"version: 1\nlevels: {{aal1: {{acr: a1}}}}\nrules: []\n{risk}"
    return PolicyHolder(compile_policy(load_policy_text(text)))


def event(seq: int, subject: str = "alice", type: str = "decision", **data: object) -> AuditEvent:
    return AuditEvent(type, T0, subject, dict(data), seq=seq)


async def test_a_report_keeps_its_evidence_and_alerts_once(db: Database) -> None:
    store, audit = Store(db), Recorded()
    reports = ActivityReports(store=store, audit=audit, policy=policy())
    assert await reports.report(event(7), subject_id="alice", now=T0) is True
    assert audit.events == [
        (
            "alert",
            "alice",
            {"kind": "reported_by_subject", "event_seq": 7, "event_type": "decision"},
        )
    ]
    [row] = await store.list_ceremonies(purposes=["reported_activity"])
    assert row.subject_id == "alice" and row.created_at == T0
    assert row.expires_at == T0 + timedelta(days=1)
    assert row.data["event_seq"] == 7 and row.data["event_type"] == "decision"
    # The same event again: nothing more.
    assert await reports.report(event(7), subject_id="alice", now=T0) is False
    assert len(audit.events) == 1
    assert len(await store.list_ceremonies(purposes=["reported_activity"])) == 1


async def test_the_evidence_is_kept_for_the_policys_window(db: Database) -> None:
    store = Store(db)
    reports = ActivityReports(
        store=store, audit=Recorded(), policy=policy("risk: {reported_activity: {window: 3h}}")
    )
    await reports.report(event(8), subject_id="alice", now=T0)
    [row] = await store.list_ceremonies(purposes=["reported_activity"])
    assert row.expires_at == T0 + timedelta(hours=3)


async def test_only_the_subjects_own_events_and_never_a_report(db: Database) -> None:
    audit = Recorded()
    reports = ActivityReports(store=Store(db), audit=audit, policy=policy())
    with pytest.raises(NotFound):
        await reports.report(event(9, subject="bob"), subject_id="alice", now=T0)
    with pytest.raises(NotFound):
        await reports.report(AuditEvent("decision", T0, "alice", {}), subject_id="alice", now=T0)
    own_report = event(10, type="alert", kind="reported_by_subject", event_seq=9)
    assert not is_reportable(own_report)
    with pytest.raises(Conflict):
        await reports.report(own_report, subject_id="alice", now=T0)
    assert is_reportable(event(11, type="alert", kind="push_denied"))
    assert audit.events == []
