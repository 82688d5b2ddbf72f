"""The alerts table (``store/alerts.py``) on each backend: one alert per source event, the
newest first, acknowledged once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from piigate.audit.alerts import AlertDraft, AlertKind, Severity
from piigate.store.alerts import AlertStore
from piigate.store.db import Database

AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def draft(seq: int, kind: AlertKind = AlertKind.PUSH_DENIED, subject: str = "alice") -> AlertDraft:
    return AlertDraft(kind, Severity.HIGH, subject, AT + timedelta(seconds=seq), seq, f"s{seq}")


async def test_an_event_raises_one_alert_whoever_tries(db: Database) -> None:
    rows = AlertStore(db)
    results = await asyncio.gather(*(rows.raise_alert(f"alt_{i}", draft(5)) for i in range(6)))
    stored = [r for r in results if r is not None]
    assert len(stored) == 1
    assert await rows.list_alerts() == stored
    assert stored[0].open and stored[0].at == AT + timedelta(seconds=5)


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
