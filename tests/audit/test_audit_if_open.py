"""An event appended on the condition that a challenge can still be answered when it commits
(``AuditLog.append_if_open``, what a decision naming an earlier unlock challenge uses), on both
backends, with the writer in a thread and in its own process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from piigate.audit import AuditLog
from piigate.clock import FixedClock
from piigate.model import AuditEvent, ChallengeState
from piigate.store import Database, Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(minutes=5)


@pytest.fixture(params=["thread", "process"])
async def audit(request: pytest.FixtureRequest, db: Database) -> AsyncIterator[AuditLog]:
    log = AuditLog(db, FixedClock(T0), writer_process=request.param == "process")
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


def challenge_row(cid: str, *, max_attempts: int = 3) -> dict[str, Any]:
    return {
        "id": cid,
        "subject_id": "alice",
        "state": ChallengeState.PENDING.value,
        "created_at": T0,
        "expires_at": T0 + TTL,
        "attempts": 0,
        "max_attempts": max_attempts,
        "body": {"action": "read", "pii": ["ssn"]},
    }


def event(n: int, challenge_id: str | None = None) -> AuditEvent:
    data: dict[str, object] = {"n": n, "outcome": "allow"}
    if challenge_id is not None:
        data["challenge_id"] = challenge_id
    return AuditEvent("decision", T0 + timedelta(seconds=n), "alice", data)


async def stored(log: AuditLog) -> list[object]:
    """The ``n`` of every event in the chain, in order; the chain verified."""
    report = await log.verify()
    assert report.ok, report
    return [e.data["n"] for e in await log.list_events(limit=1000)]


async def test_an_open_challenge_lets_the_event_in(audit: AuditLog, db: Database) -> None:
    await Store(db).insert_challenge(challenge_row("chl_open"))
    appended = await audit.append_if_open(
        event(1, "chl_open"), challenge_id="chl_open", at=T0 + timedelta(seconds=1)
    )
    assert appended is not None and appended.seq == 1
    assert appended.data["challenge_id"] == "chl_open"
    assert await stored(audit) == [1]


@pytest.mark.parametrize("state", [ChallengeState.APPROVED, ChallengeState.DENIED])
async def test_an_answered_challenge_keeps_the_event_out(
    audit: AuditLog, db: Database, state: ChallengeState
) -> None:
    store = Store(db)
    await store.insert_challenge(challenge_row("chl_done"))
    assert await store.set_challenge_state("chl_done", expected="pending", new=state.value)
    assert await audit.append_if_open(event(1), challenge_id="chl_done", at=T0) is None
    assert await audit.append(event(2)) is not None
    assert await stored(audit) == [2]


async def test_a_challenge_with_its_attempts_spent_keeps_the_event_out(
    audit: AuditLog, db: Database
) -> None:
    store = Store(db)
    await store.insert_challenge(challenge_row("chl_tried", max_attempts=2))
    await store.record_attempt("chl_tried", now=T0)
    assert await audit.append_if_open(event(1), challenge_id="chl_tried", at=T0) is not None
    await store.record_attempt("chl_tried", now=T0)
    assert await audit.append_if_open(event(2), challenge_id="chl_tried", at=T0) is None
    assert await stored(audit) == [1]


async def test_an_expired_or_unknown_challenge_keeps_the_event_out(
    audit: AuditLog, db: Database
) -> None:
    await Store(db).insert_challenge(challenge_row("chl_old"))
    assert await audit.append_if_open(event(1), challenge_id="chl_old", at=T0 + TTL) is None
    assert await audit.append_if_open(event(2), challenge_id="chl_none", at=T0) is None
    assert await stored(audit) == []


async def test_an_unmet_condition_leaves_the_rest_of_its_batch_alone(
    audit: AuditLog, db: Database
) -> None:
    store = Store(db)
    await store.insert_challenge(challenge_row("chl_done"))
    assert await store.set_challenge_state("chl_done", expected="pending", new="approved")
    # The challenge opened in a batch counts for the conditions in it. (With the writer in a
    # process, the first append, queued while nothing was in flight, leaves at once on its own;
    # the four behind it share the next batch.)
    outcomes = await asyncio.gather(
        audit.append(event(1)),
        audit.write_rows("challenges", challenge_row("chl_new")),
        audit.append_if_open(event(2), challenge_id="chl_done", at=T0),
        audit.append_if_open(event(3, "chl_new"), challenge_id="chl_new", at=T0),
        audit.append(event(4)),
    )
    assert [None if e is None else e.seq for e in outcomes] == [1, None, None, 2, 3]
    assert audit.stats.batches <= 2
    assert await stored(audit) == [1, 3, 4]
