"""The audit trail's reads behind the security team's pages, on both backends: the newest events
first (filtered by type, subject and a decision's outcome), each subject's latest decision ranked
by its risk score, and events counted per time bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from piigate.audit import AuditLog, EventBus
from piigate.clock import FixedClock
from piigate.model import AuditEvent
from piigate.store import Database

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
async def audit(db: Database) -> AsyncIterator[AuditLog]:
    log = AuditLog(db, FixedClock(T0), EventBus())
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


async def decided(
    log: AuditLog, subject: str, score: int, *, at: datetime = T0, outcome: str = "allow"
) -> AuditEvent:
    data: dict[str, Any] = {
        "outcome": outcome,
        "action": "read",
        "risk": {"score": score, "signals": [{"name": "new_device", "weight": score}]},
    }
    return await log.append(AuditEvent("decision", at, subject, data))


async def test_latest_events_come_newest_first_and_page_backwards(audit: AuditLog) -> None:
    for n in range(5):
        await decided(audit, "ann", n, outcome="deny" if n % 2 else "allow")
        await audit.record("login_succeeded", subject_id="bob")
    newest = await audit.latest_events(limit=3)
    assert [e.seq for e in newest] == [10, 9, 8]
    older = await audit.latest_events(before=8, limit=3)
    assert [e.seq for e in older] == [7, 6, 5]
    anns = await audit.latest_events(subject_id="ann", limit=10)
    assert [e.seq for e in anns] == [9, 7, 5, 3, 1]
    denied = await audit.latest_events(outcome="deny", limit=10)
    assert [e.seq for e in denied] == [7, 3]
    assert [e.seq for e in await audit.list_events(outcome="deny")] == [3, 7]
    logins = await audit.latest_events(types=["login_succeeded"], before=6, limit=10)
    assert [e.seq for e in logins] == [4, 2]


async def test_subjects_rank_by_their_latest_score_then_by_recency(audit: AuditLog) -> None:
    await decided(audit, "ann", 90, at=T0 - timedelta(hours=2))
    await decided(audit, "ann", 10, at=T0 - timedelta(hours=1))  # her current risk
    await decided(audit, "bob", 40, at=T0 - timedelta(hours=3))
    await decided(audit, "cid", 40, at=T0 - timedelta(minutes=5))  # as risky, more recent
    await decided(audit, "dan", 99, at=T0 - timedelta(hours=30))  # outside the window
    await audit.record("login_failed", subject_id="eve")  # not a decision
    await audit.append(AuditEvent("decision", T0, None, {"risk": {"score": 80}}))  # no subject

    ranked, scanned = await audit.ranked_decisions(
        since=T0 - timedelta(hours=24), scan=100, limit=10
    )
    assert [(r.event.subject_id, r.event.data["risk"]["score"]) for r in ranked] == [
        ("cid", 40),
        ("bob", 40),
        ("ann", 10),
    ]
    assert [r.decisions for r in ranked] == [1, 1, 2]
    assert scanned == 4

    top, _ = await audit.ranked_decisions(since=T0 - timedelta(hours=24), scan=100, limit=1)
    assert [r.event.subject_id for r in top] == ["cid"]
    # Only the newest decisions of the window are read when there are more than ``scan``.
    capped, scanned = await audit.ranked_decisions(since=T0 - timedelta(hours=24), scan=2, limit=10)
    assert {r.event.subject_id for r in capped} == {"cid", "ann"} and scanned == 2
    assert await audit.ranked_decisions(since=T0 + timedelta(hours=1), scan=10, limit=10) == (
        [],
        0,
    )


async def test_tally_counts_per_bucket_and_series(audit: AuditLog) -> None:
    since = T0 - timedelta(hours=3)
    await decided(audit, "ann", 0, at=since)  # the first second of bucket 0
    await decided(audit, "ann", 0, at=since + timedelta(minutes=59, seconds=59))
    await decided(audit, "bob", 0, at=since + timedelta(hours=1), outcome="step_up")
    await decided(audit, "bob", 0, at=since + timedelta(hours=2, minutes=30), outcome="deny")
    await decided(audit, "bob", 0, at=since - timedelta(seconds=1))  # before the window
    await decided(audit, "bob", 0, at=T0)  # at its end: not in [since, until)
    for minutes in (10, 20):
        await audit.append(AuditEvent("challenge_verified", since + timedelta(minutes=minutes)))
    await audit.append(AuditEvent("verification_failed", since + timedelta(hours=2)))
    await audit.append(AuditEvent("login_failed", since))  # a type not asked for

    rows = await audit.tally(
        types=["decision", "challenge_verified", "verification_failed"],
        since=since,
        until=T0,
        width=3600,
    )
    assert sorted(rows) == [
        (0, "allow", 2),
        (0, "challenge_verified", 2),
        (1, "step_up", 1),
        (2, "deny", 1),
        (2, "verification_failed", 1),
    ]
    with pytest.raises(ValueError):
        await audit.tally(types=["decision"], since=since, until=T0, width=1)
