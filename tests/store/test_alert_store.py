"""The alert desk's tables (``store/alerts.py``) on each backend: one alert per source event,
the newest first, acknowledged once; the watermark, moved forward only; the reads of a
catch-up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from piigate.audit import AuditLog
from piigate.audit.alerts import AlertDraft, AlertKind, Severity
from piigate.clock import FixedClock
from piigate.store.alerts import AlertStore
from piigate.store.db import Database

AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def draft(
    seq: int, kind: AlertKind = AlertKind.PUSH_DENIED, subject: str | None = "alice"
) -> AlertDraft:
    return AlertDraft(kind, Severity.HIGH, subject, AT + timedelta(seconds=seq), seq, f"s{seq}")


async def test_an_event_raises_one_alert_whoever_tries(db: Database) -> None:
    rows = AlertStore(db)
    results = await asyncio.gather(*(rows.raise_alert(f"alt_{i}", draft(5)) for i in range(6)))
    stored = [r for r in results if r is not None]
    assert len(stored) == 1
    assert await rows.list_alerts() == stored
    assert stored[0].open and stored[0].at == AT + timedelta(seconds=5)


async def test_of_drafts_raised_at_once_within_each_others_window_one_is_stored(
    db: Database,
) -> None:
    """One persisting signal raised by several nodes at once (the check and the insert are one
    transaction under a lock): one alert; another subject's is its own."""
    rows = AlertStore(db)
    bulk = AlertKind.BULK_DESTRUCTIVE
    window = timedelta(minutes=10)
    drafts = [draft(seq, bulk) for seq in range(1, 9)] + [draft(9, bulk, subject="bob")]
    results = await asyncio.gather(
        *(rows.raise_alert(f"alt_{d.event_seq}", d, unless_within=window) for d in drafts)
    )
    stored = [r for r in results if r is not None]
    assert sorted(a.subject_id or "" for a in stored) == ["alice", "bob"]
    assert len(await rows.list_alerts()) == 2
    # Outside the window, or without the check, each event has its own.
    assert await rows.raise_alert("alt_far", draft(1200, bulk), unless_within=window)
    assert await rows.raise_alert("alt_own", draft(10, bulk))


async def test_listing_filters_and_orders_newest_first(db: Database) -> None:
    rows = AlertStore(db)
    await rows.raise_alert("alt_a", draft(1))
    await rows.raise_alert("alt_b", draft(2, AlertKind.APPROACHING_LIMIT))
    await rows.raise_alert("alt_c", draft(3, subject="bob"))
    assert [a.id for a in await rows.list_alerts()] == ["alt_c", "alt_b", "alt_a"]
    assert [a.id for a in await rows.list_alerts(subject_id="bob")] == ["alt_c"]
    kinds = ("approaching_limit",)
    assert [a.id for a in await rows.list_alerts(kinds=kinds)] == ["alt_b"]
    assert [a.id for a in await rows.list_alerts(limit=1)] == ["alt_c"]
    assert await rows.acknowledge_alert("alt_a", by="sec", at=AT)
    assert [a.id for a in await rows.list_alerts(open_only=True)] == ["alt_c", "alt_b"]
    assert [a.id for a in await rows.list_alerts(acknowledged_only=True)] == ["alt_a"]


async def test_an_alert_is_acknowledged_once(db: Database) -> None:
    rows = AlertStore(db)
    await rows.raise_alert("alt_a", draft(1))
    firsts = await asyncio.gather(
        *(rows.acknowledge_alert("alt_a", by=f"sec{i}", at=AT) for i in range(4))
    )
    assert sorted(firsts) == [False, False, False, True]
    found = await rows.get_alert("alt_a")
    assert found is not None and not found.open
    assert found.acknowledged_by == f"sec{firsts.index(True)}" and found.acknowledged_at == AT
    assert not await rows.acknowledge_alert("alt_missing", by="sec", at=AT)
    assert await rows.get_alert("alt_missing") is None


async def test_the_watermark_starts_unset_and_only_moves_forward(db: Database) -> None:
    rows = AlertStore(db)
    assert await rows.watermark() is None
    assert await rows.advance_watermark(5, at=AT) == 5
    assert await rows.advance_watermark(3, at=AT) == 5  # a catch-up that ended earlier
    assert await rows.watermark() == 5
    # Catch-ups on several nodes, ending in any order: the furthest holds.
    ends = [9, 40, 7, 40, 23, 12]
    moved = await asyncio.gather(*(rows.advance_watermark(n, at=AT) for n in ends))
    assert all(m >= n for m, n in zip(moved, ends, strict=True))
    assert await rows.watermark() == 40


async def test_event_seqs_lists_the_source_events_of_a_range(db: Database) -> None:
    log = AuditLog(db, FixedClock(AT))
    types = ["decision", "login", "alert", "decision", "login", "approaching_limit", "alert"]
    try:
        for type in types:
            await log.record(type)
    finally:
        await log.stop()
    rows = AlertStore(db)
    sources = ("alert", "approaching_limit", "decision")
    assert await rows.event_seqs(after=0, through=7, types=sources, limit=100) == [1, 3, 4, 6, 7]
    assert await rows.event_seqs(after=1, through=6, types=sources, limit=100) == [3, 4, 6]
    assert await rows.event_seqs(after=1, through=7, types=sources, limit=2) == [3, 4]
    assert await rows.event_seqs(after=7, through=99, types=sources, limit=100) == []


async def test_an_alert_around_an_event_is_judged_at_the_events_time(db: Database) -> None:
    """The same answer whenever it is asked: an alert of the kind and subject dated within the
    window either side of the event, and not acknowledged by the event's time."""
    rows = AlertStore(db)
    bulk = AlertKind.BULK_DESTRUCTIVE
    await rows.raise_alert("alt_a", draft(600, bulk))  # at AT + 10 min
    await rows.raise_alert("alt_n", draft(601, bulk, subject=None))
    window = timedelta(minutes=10)

    async def around(minutes: float, subject: str | None = "alice", kind: str = bulk) -> str | None:
        at = AT + timedelta(minutes=minutes)
        found = await rows.alert_around(kind, subject, at=at, within=window)
        return None if found is None else found.id

    assert [await around(m) for m in (0, 10, 20)] == ["alt_a"] * 3  # before, at, after it
    assert [await around(m) for m in (-0.5, 20.5)] == [None, None]  # more than 10 min away
    assert await around(12, subject="bob") is None
    assert await around(12, kind="impossible_travel") is None
    assert await around(12, subject=None) == "alt_n"  # an alert without a subject
    # Acknowledged at AT + 15 min: events until then were within an open alert's reach.
    assert await rows.acknowledge_alert("alt_a", by="sec", at=AT + timedelta(minutes=15))
    assert [await around(m) for m in (5, 14.5)] == ["alt_a", "alt_a"]
    assert [await around(m) for m in (15, 16)] == [None, None]
