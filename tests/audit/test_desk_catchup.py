"""The alert desk's catch-up (``audit/desk.py``, ``audit/catchup.py``) on each backend: what no
watcher examined -- committed while no desk ran, on a node whose desk stopped, or while the
store failed -- raises its alert at the next start or catch-up, and nothing is raised twice,
however many desks share the store and however often they restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from monitoring_support import eventually
from sqlalchemy import delete

from piigate.audit import AuditLog, EventBus
from piigate.audit.alerts import Alert, AlertDraft
from piigate.audit.desk import AlertDesk
from piigate.clock import FixedClock
from piigate.model import AuditEvent
from piigate.store import Database, StoreUnavailable
from piigate.store.alerts import AlertStore
from piigate.store.tables import alert_watermark

AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


class Rows(AlertStore):
    """The alerts table, failing to store an alert while ``failing`` (the store down)."""

    failing = False
    failures = 0
    # Set: each stored alert sets the first event, then waits for the second.
    after_storing: tuple[asyncio.Event, asyncio.Event] | None = None

    async def raise_alert(
        self, alert_id: str, draft: AlertDraft, *, unless_within: timedelta | None = None
    ) -> Alert | None:
        if self.failing:
            self.failures += 1
            raise StoreUnavailable("the store is down")
        stored = await super().raise_alert(alert_id, draft, unless_within=unless_within)
        if self.after_storing is not None:
            self.after_storing[0].set()
            await self.after_storing[1].wait()
        return stored


class Reads(AuditLog):
    """An audit log that keeps the seqs a catch-up read events for."""

    read: list[int]

    async def events_at(self, seqs: Sequence[int]) -> list[AuditEvent]:
        self.read.extend(seqs)
        return await super().events_at(seqs)


@dataclass
class Node:
    """One node's audit log and bus over a shared store, and its desk: a new one each time it
    starts watching (a node's start), with nothing in memory from the last."""

    db: Database
    audit: Reads
    bus: EventBus
    rows: Rows
    options: dict[str, Any]
    clock: FixedClock
    desk: AlertDesk = field(init=False)
    task: asyncio.Task[None] | None = field(default=None)

    def __post_init__(self) -> None:
        self.desk = self.new_desk()

    def new_desk(self) -> AlertDesk:
        options = {"sweep_every": 0.05, **self.options}
        return AlertDesk(
            rows=self.rows, audit=self.audit, bus=self.bus, clock=self.clock, **options
        )

    def watch(self) -> None:
        self.desk = self.new_desk()
        self.task = asyncio.create_task(self.desk.run())

    async def halt(self) -> None:
        """The desk stops (the node stopping, or crashing, as far as alerts go)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def record(self, type: str, subject: str, **data: Any) -> AuditEvent:
        return await self.audit.record(type, subject_id=subject, data=data)

    async def push_denied(self, subject: str = "alice") -> AuditEvent:
        return await self.record("alert", subject, kind="push_denied", push_id="cer_1")

    async def bulk(self, subject: str) -> AuditEvent:
        signals = [{"name": "bulk_destructive", "weight": 60}]
        risk = {"score": 60, "signals": signals}
        return await self.record("decision", subject, action="delete", risk=risk)


@contextlib.asynccontextmanager
async def open_node(url: str, clock: FixedClock, **options: Any) -> AsyncIterator[Node]:
    db = Database.open(url)
    bus = EventBus()
    audit = Reads(db, clock, bus)
    audit.read = []
    node = Node(db, audit, bus, Rows(db), options, clock)
    try:
        yield node
    finally:
        await node.halt()
        await audit.stop()
        bus.close()
        await db.close()


async def alerts(node: Node) -> dict[int, Alert]:
    """Every alert, by its source event's seq."""
    return {a.event_seq: a for a in await node.rows.list_alerts(limit=500)}


async def announced(node: Node) -> list[int]:
    """The source seqs of the ``alert_raised`` events, in order."""
    events = await node.audit.list_events(types=["alert_raised"], limit=1000)
    return [int(e.data["event_seq"]) for e in events]


async def watermark_reaches(node: Node, seq: int) -> None:
    async def reached() -> bool:
        return (await node.rows.watermark() or 0) >= seq

    await eventually(reached, what=f"the watermark at {seq}")


async def test_an_event_committed_while_no_desk_runs_raises_its_alert_at_the_next_start(
    migrated_url: str,
) -> None:
    async with open_node(migrated_url, FixedClock(AT)) as node:
        await node.record("login", "alice", method="password")
        denied = await node.push_denied()
        quiet = await node.record("decision", "bob", action="read")
        bulk = await node.bulk("carol")
        with structlog.testing.capture_logs() as logs:
            node.watch()
            await watermark_reaches(node, bulk.seq or 0)
        found = await alerts(node)
        assert sorted(found) == [denied.seq, bulk.seq]
        assert sorted(await announced(node)) == [denied.seq, bulk.seq]
        assert quiet.seq not in found
        caught = [e for e in logs if e["event"] == "alerts_caught_up"]
        assert caught[0] == {
            "event": "alerts_caught_up",
            "log_level": "info",
            "after": 0,
            "through": bulk.seq,
            "examined": 3,  # the source events: an alert and two decisions
            "raised": 2,
            "skipped": 0,
            "failed": None,
        }


async def test_a_restart_raises_nothing_twice(migrated_url: str) -> None:
    clock = FixedClock(AT)
    async with open_node(migrated_url, clock) as node:
        node.watch()
        denied = await node.push_denied()
        first, *repeats = [await node.bulk("dave") for _ in range(3)]
        await watermark_reaches(node, repeats[-1].seq or 0)
        before = await alerts(node)
        assert sorted(before) == [denied.seq, first.seq]  # the repeats raised nothing
        # The alert is acknowledged after the repeats: they happened while it was open.
        clock.advance(60)
        await node.desk.acknowledge(before[first.seq or 0].id, "sec")
        await node.halt()
        node.watch()  # a restart: the watermark is where the last catch-up left it
        await watermark_reaches(node, (await node.audit.head()).seq)
        await node.halt()
        # A restart with no watermark: every event examined again, nothing raised again.
        await node.db.write(lambda conn: conn.execute(delete(alert_watermark)))
        with structlog.testing.capture_logs() as logs:
            node.watch()
            await watermark_reaches(node, (await node.audit.head()).seq)
        assert sorted(await alerts(node)) == sorted(before)
        assert sorted(await announced(node)) == [denied.seq, first.seq]
        caught = [e for e in logs if e["event"] == "alerts_caught_up"]
        assert (caught[0]["after"], caught[0]["examined"], caught[0]["raised"]) == (0, 4, 0)


async def test_a_repeat_is_judged_by_its_time_whatever_the_order_it_is_examined_in(
    migrated_url: str,
) -> None:
    """Two decisions of one bulk delete examined latest first (another node's watcher, then a
    catch-up): the later one raises, the earlier one within the window of it does not."""
    clock = FixedClock(AT)
    async with open_node(migrated_url, clock) as node:
        earlier = await node.bulk("erin")
        clock.advance(120)
        later = await node.bulk("erin")
        assert await node.desk.raise_from(later) is not None
        assert await node.desk.raise_from(earlier) is None
        assert sorted(await alerts(node)) == [later.seq]


async def test_a_store_failure_while_raising_is_retried_from_the_watermark(
    migrated_url: str,
) -> None:
    async with open_node(migrated_url, FixedClock(AT)) as node:
        node.watch()
        await watermark_reaches(node, 0)
        node.rows.failing = True
        denied = await node.push_denied()
        seq = denied.seq or 0

        async def failed_thrice() -> bool:
            return node.rows.failures >= 3

        await eventually(failed_thrice, what="the watcher's three attempts")
        with structlog.testing.capture_logs() as logs:

            async def caught_up_failing() -> bool:
                return any(e.get("failed") == seq for e in logs)

            await eventually(caught_up_failing, what="a catch-up failing on the event")
        assert (await node.rows.watermark() or 0) < seq  # never past what was not examined
        assert await alerts(node) == {}
        node.rows.failing = False  # the store is back: the next catch-up raises it
        await watermark_reaches(node, seq)
        assert sorted(await alerts(node)) == [seq]
        assert await announced(node) == [seq]


async def test_two_desks_on_one_store_raise_each_alert_once(migrated_url: str) -> None:
    clock = FixedClock(AT)
    async with (
        open_node(migrated_url, clock) as one,
        open_node(migrated_url, clock) as two,
    ):
        one.watch()
        two.watch()
        raised = [await one.push_denied("alice"), await two.push_denied("bob")]
        # A bulk delete spread over both nodes: one alert.
        burst = [await node.bulk("dave") for node in (one, two, one, two)]
        # Node two's desk stops (its node crashed); its audit log still commits.
        await two.halt()
        orphans = [await two.push_denied("carol"), await two.push_denied("erin")]
        # Node one commits after them: its catch-ups must not pass two's events unexamined.
        own = await one.push_denied("frank")
        await watermark_reaches(one, orphans[-1].seq or 0)
        found = await alerts(one)
        assert {e.seq for e in orphans} <= set(found)  # raised by node one's catch-up
        two.watch()  # node two back: it raises nothing again
        last = await one.push_denied("grace")
        await watermark_reaches(two, last.seq or 0)
        found = await alerts(one)
        # The burst's one alert is on whichever of its events a desk examined first.
        (bulk,) = [seq for seq in found if seq in {e.seq for e in burst}]
        expected = sorted([*(e.seq or 0 for e in [*raised, *orphans, own, last]), bulk])
        assert sorted(found) == expected
        assert sorted(await announced(one)) == expected  # each announced once


async def test_a_desk_stopped_while_raising_still_announces_the_alert_it_stored(
    migrated_url: str,
) -> None:
    async with open_node(migrated_url, FixedClock(AT)) as node:
        stored, go_on = asyncio.Event(), asyncio.Event()
        node.rows.after_storing = (stored, go_on)
        event = await node.push_denied("alice")
        raising = asyncio.create_task(node.desk.raise_from(event))
        await stored.wait()
        raising.cancel()  # the node stopping between storing the alert and announcing it
        await asyncio.sleep(0.05)
        assert not raising.done()  # the stop waits for the raising to end
        go_on.set()
        with pytest.raises(asyncio.CancelledError):
            await raising
        assert list(await alerts(node)) == [event.seq]
        assert await announced(node) == [event.seq]  # a later try would find it stored


async def test_a_catch_up_reads_only_the_events_its_node_did_not_examine(
    migrated_url: str,
) -> None:
    # Catch-ups every 0.5 s, each through the head read at the one before: the watcher has
    # long examined what this node committed by then.
    async with open_node(migrated_url, FixedClock(AT), sweep_every=0.5) as node:
        node.watch()
        # The start's catch-up goes through the head it reads, so it may read what is committed
        # while it runs: it is over once the watermark passes an event committed after it began.
        first = await node.record("decision", "bob", action="read")
        await watermark_reaches(node, first.seq or 0)
        node.audit.read.clear()
        events = [await node.push_denied(), await node.bulk("dave"), await node.bulk("erin")]
        for _ in range(2):
            await node.record("decision", "bob", action="read")
        await watermark_reaches(node, (await node.audit.head()).seq)
        assert len(await alerts(node)) == 3, events
        assert node.audit.read == []  # its watcher examined them all: seqs read, no events


async def test_a_catch_up_examines_at_most_its_bound(migrated_url: str) -> None:
    async with open_node(migrated_url, FixedClock(AT), bound=3) as node:
        old = [await node.push_denied(s) for s in ("a1", "a2", "a3")]
        await node.record("login", "bob", method="password")
        new = [await node.push_denied(s) for s in ("b1", "b2")]
        with structlog.testing.capture_logs() as logs:
            node.watch()
            await watermark_reaches(node, new[-1].seq or 0)
        assert sorted(await alerts(node)) == [e.seq for e in new]
        (caught, *_) = [e for e in logs if e["event"] == "alerts_caught_up"]
        assert (caught["after"], caught["skipped"], caught["examined"]) == (0, 3, 2), old


async def test_the_desk_examines_an_event_after_what_its_commit_released(
    migrated_url: str,
) -> None:
    """An edge awaits a task that appends the decision's event (``Engine.decide_early``): that
    edge goes on before the desk examines the event, not after."""
    async with open_node(migrated_url, FixedClock(AT)) as node:
        order: list[str] = []
        node.watch()
        examine = node.desk._examine

        async def examined(event: AuditEvent) -> bool | None:
            order.append(f"desk {event.seq}")
            return await examine(event)

        node.desk._examine = examined  # type: ignore[method-assign]
        first = await node.bulk("ann")  # events that raise an alert: the watcher examines them
        await eventually(lambda: _async_true(order == [f"desk {first.seq}"]), what="the first")
        appended = asyncio.ensure_future(node.bulk("ann"))
        second = await appended
        order.append("edge")
        await eventually(lambda: _async_true(len(order) == 3), what="the second examined")
        assert order == [f"desk {first.seq}", "edge", f"desk {second.seq}"]


async def test_an_event_that_raises_nothing_never_wakes_the_watcher(migrated_url: str) -> None:
    """Most decisions raise no alert: the bus's triage notes them as examined as they are
    published, so the watcher is not woken and no catch-up reads them again."""
    async with open_node(migrated_url, FixedClock(AT), sweep_every=0.2) as node:
        woken: list[int | None] = []
        node.watch()
        first = await node.record("decision", "bob", action="read")
        await watermark_reaches(node, first.seq or 0)  # the start's catch-up is over
        node.audit.read.clear()
        examine = node.desk._examine

        async def examined(event: AuditEvent) -> bool | None:
            woken.append(event.seq)
            return await examine(event)

        node.desk._examine = examined  # type: ignore[method-assign]
        quiet = await node.record("decision", "bob", action="read", outcome="allow")
        assert quiet.seq is not None and node.desk.catch_up.examined(quiet.seq)
        loud = await node.bulk("dave")
        await watermark_reaches(node, (await node.audit.head()).seq)
        assert woken == [loud.seq]  # the watcher examined the one that raises an alert
        assert list(await alerts(node)) == [loud.seq]
        assert node.audit.read == []  # and no catch-up read either from the store


async def _async_true(value: bool) -> bool:
    return value
