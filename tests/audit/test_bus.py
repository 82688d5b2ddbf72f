from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from piigate.audit import EventBus, SubscriberLagged
from piigate.model import AuditEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(seq: int, type: str = "decision") -> AuditEvent:
    return AuditEvent(type=type, at=T0, seq=seq)


async def test_fan_out_to_every_subscriber() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe(types=["login"])
    for seq, type in enumerate(["decision", "login", "decision"], start=1):
        bus.publish(ev(seq, type))
    assert [(await a.get()).seq for _ in range(3)] == [1, 2, 3]
    assert (await b.get()).seq == 2
    a.close()
    b.close()
    assert bus.subscriber_count == 0


async def test_slow_subscriber_is_dropped_and_told_where_it_stopped() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=2)
    fast = bus.subscribe(maxsize=10)
    for seq in range(1, 6):
        bus.publish(ev(seq))
    assert bus.subscriber_count == 1 and bus.dropped_subscribers == 1
    assert [(await slow.get()).seq for _ in range(2)] == [1, 2]  # what was queued still comes
    with pytest.raises(SubscriberLagged) as lagged:
        await slow.get()
    assert lagged.value.last_seq == 2  # catch up with list_events(after=2)
    assert [(await fast.get()).seq for _ in range(5)] == [1, 2, 3, 4, 5]


async def test_closing_wakes_a_waiting_reader_and_ends_iteration() -> None:
    bus = EventBus()
    received: list[int | None] = []

    async def read() -> None:
        async with bus.subscribe() as sub:
            async for event in sub:
                received.append(event.seq)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    bus.publish(ev(1))
    await asyncio.sleep(0)
    bus.close()
    await asyncio.wait_for(reader, 1)
    assert received == [1]


async def test_a_subscriber_takes_only_what_its_filter_accepts() -> None:
    bus = EventBus()
    asked: list[int | None] = []

    def odd(event: AuditEvent) -> bool:
        asked.append(event.seq)
        return (event.seq or 0) % 2 == 1

    def broken(event: AuditEvent) -> bool:
        raise RuntimeError("a bug in the filter")

    picky = bus.subscribe(types=["decision"], where=odd)
    lenient = bus.subscribe(where=broken)
    for seq, type in enumerate(["decision", "decision", "login", "decision"], start=1):
        bus.publish(ev(seq, type))
    assert asked == [1, 2, 4]  # asked as published, of its types only
    assert [e.seq for e in picky.drain()] == [1]
    assert [e.seq for e in lenient.drain()] == [1, 2, 3, 4]  # a failing filter drops nothing


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventBus().subscribe(maxsize=-1)
