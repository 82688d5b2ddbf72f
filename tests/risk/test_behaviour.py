"""Behaviour signals over the shared counters: velocity (per subject and per address), PII
enumeration, bulk destructive changes against the subject's habit, failed step-ups, and the
early warning once per window before anything fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from piigate.crypto.secret import Secret
from piigate.model import Action, Resource, Signal
from piigate.policy import load_policy_text
from piigate.policy.model import RiskSettings
from piigate.ports import RateCounters
from piigate.risk.behaviour import APPROACHING_LIMIT, Behaviour
from piigate.store.db import StoreUnavailable
from piigate.store.memory_counters import MemoryCounters
from stepup_support import RecordingAudit

# The start of a minute, of ten minutes and of fifteen: windows begin here.
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = Secret(b"r" * 32)
RISK = """
  velocity: {weight: 30, window: 1m, limit: 10, ip_limit: 20}
  pii_enumeration: {weight: 50, window: 10m, distinct_records: 5}
  bulk_destructive: {weight: 60, window: 10m, limit: 4, baseline_window: 1h, baseline_factor: 2}
  failed_stepups: {weight: 40, window: 15m, limit: 3}
"""


def settings(risk: str = RISK) -> RiskSettings:
    text = f"version: 1\nlevels: {{aal1: {{acr: a1}}}}\nrules: []\nrisk:\n{risk}"
    return load_policy_text(text).risk


class World:
    def __init__(self, counters: RateCounters | None = None) -> None:
        self.counters = counters if counters is not None else MemoryCounters()
        self.audit = RecordingAudit()
        self.behaviour = Behaviour(self.counters, self.audit, key=KEY)
        self.settings = settings()

    async def request(
        self,
        subject: str = "alice",
        *,
        at: datetime = T0,
        ip: str | None = "ip-key-1",
        action: Action = Action.READ,
        pii: bool = False,
        record: str | None = None,
        rows: int | None = None,
    ) -> tuple[Signal, ...]:
        return await self.behaviour.signals(
            subject,
            ip_key=ip,
            action=action,
            pii=pii,
            resource=Resource("customer" if rows is None else "table", record),
            settings=self.settings,
            now=at,
            rows=rows,
        )

    def warnings(self) -> list[dict[str, object]]:
        return self.audit.of(APPROACHING_LIMIT)


def names(signals: tuple[Signal, ...]) -> list[str]:
    return [s.name for s in signals]


async def test_velocity_per_subject_fires_above_the_limit() -> None:
    world = World()
    for n in range(10):
        assert await world.request(at=T0 + timedelta(seconds=n)) == ()
    [fired] = await world.request(at=T0 + timedelta(seconds=11))
    assert (fired.name, fired.weight) == ("velocity", 30)
    assert fired.detail == "11 requests in 1 min (limit 10)"
    assert await world.request("bob", at=T0 + timedelta(seconds=12), ip="ip-key-2") == ()


async def test_the_window_slides() -> None:
    world = World()
    for n in range(10):
        await world.request(at=T0 + timedelta(seconds=50 + n / 10))
    # 15 s into the next minute, 3/4 of the previous one still counts: 7.5 + 3 > 10.
    for n in range(2):
        assert await world.request(at=T0 + timedelta(seconds=75 + n)) == ()
    assert names(await world.request(at=T0 + timedelta(seconds=77))) == ["velocity"]
    # 50 s in, a sixth of it: 1.7 + 4 requests.
    assert await world.request(at=T0 + timedelta(seconds=110)) == ()


async def test_velocity_per_address_counts_every_subject() -> None:
    world = World()
    for n in range(20):
        assert await world.request(f"user-{n}", at=T0 + timedelta(seconds=n)) == ()
    [fired] = await world.request("user-x", at=T0 + timedelta(seconds=30))
    assert fired.detail == "21 requests from this address in 1 min (limit 20)"
    assert await world.request("user-x", at=T0 + timedelta(seconds=31), ip=None) == ()


async def test_pii_enumeration_counts_distinct_records() -> None:
    world = World()
    for n in range(12):  # the same record over and over is no enumeration
        await world.request(at=T0 + timedelta(seconds=n * 20), pii=True, record="42")
    for n in range(4):
        await world.request(at=T0 + timedelta(seconds=300 + n), pii=True, record=f"r{n}")
    again = await world.request(at=T0 + timedelta(seconds=305), pii=True, record="r0")
    assert "pii_enumeration" not in names(again)  # five distinct records: at the limit
    fired = await world.request(at=T0 + timedelta(seconds=400), pii=True, record="r9")
    [signal] = [s for s in fired if s.name == "pii_enumeration"]
    assert signal.weight == 50 and "6 distinct records" in signal.detail
    # Reads without PII, and PII without a record id, are not counted.
    world2 = World()
    for n in range(8):
        await world2.request(at=T0, pii=False, record=f"r{n}")
        await world2.request(at=T0, pii=True, record=None)
    assert "pii_enumeration" not in names(await world2.request(at=T0, pii=True, record="z"))


async def test_bulk_destructive_against_the_limit_and_the_subjects_habit() -> None:
    world = World()
    deletes = [
        world.request(at=T0 + timedelta(seconds=n), action=Action.DELETE, pii=True)
        for n in range(4)
    ]
    for pending in deletes:
        assert "bulk_destructive" not in names(await pending)
    fired = await world.request(at=T0 + timedelta(seconds=5), action=Action.DELETE, pii=True)
    [signal] = [s for s in fired if s.name == "bulk_destructive"]
    assert signal.weight == 60 and "5 PII updates or deletes in 10 min" in signal.detail
    # A subject whose work is bulk updates: judged against twice their own rate.
    busy = World()
    at = T0
    for _ in range(5):  # five windows of 8 updates each within the hour
        for n in range(8):
            await busy.request("ops", at=at + timedelta(seconds=n), action=Action.UPDATE, pii=True)
        at += timedelta(minutes=10)
    same = await busy.request("ops", at=at, action=Action.UPDATE, pii=True)
    assert "bulk_destructive" not in names(same)
    for n in range(60):
        last = await busy.request(
            "ops", at=at + timedelta(seconds=n), action=Action.DELETE, pii=True
        )
    assert "bulk_destructive" in names(last)


async def test_failed_stepups_fire_at_the_limit() -> None:
    world = World()
    for n in range(2):
        await world.behaviour.failed_stepup(
            "alice", settings=world.settings, now=T0 + timedelta(seconds=n)
        )
    assert await world.request(at=T0 + timedelta(seconds=5)) == ()
    await world.behaviour.failed_stepup(
        "alice", settings=world.settings, now=T0 + timedelta(seconds=6)
    )
    [fired] = await world.request(at=T0 + timedelta(seconds=7))
    assert (fired.name, fired.weight, fired.detail) == (
        "failed_stepups",
        40,
        "3 failed step-ups in 15 min (limit 3)",
    )
    assert await world.request("bob", at=T0 + timedelta(seconds=7), ip="other") == ()
    assert await world.request(at=T0 + timedelta(minutes=31)) == ()  # two windows later


async def test_early_warning_once_per_window_before_the_signal_fires() -> None:
    world = World()
    for n in range(7):
        await world.request(at=T0 + timedelta(seconds=n))
    assert world.warnings() == []
    await world.request(at=T0 + timedelta(seconds=8))  # 8 of 10: 80 %
    [warning] = world.warnings()
    assert warning == {
        "signal": "velocity",
        "per": "subject",
        "count": 8,
        "limit": 10,
        "window": 60,
        "previous": 0,
        "trend": "rising",
    }
    for n in range(5):  # past the limit: it fires, and no second warning in this window
        await world.request(at=T0 + timedelta(seconds=10 + n))
    assert len(world.warnings()) == 1
    later = T0 + timedelta(minutes=5)
    for n in range(9):
        await world.request(at=later + timedelta(seconds=n))
    assert len(world.warnings()) == 2 and world.audit.events[-1][1] == "alice"
    text = world.audit.text()
    assert "ip-key-1" not in text and "alice" not in text.replace('"alice"', "")


async def test_counter_keys_hold_no_subject_address_or_record() -> None:
    world = World()
    await world.request("alice@example.com", ip="ip-key-1", pii=True, record="cust-42")
    await world.request("alice@example.com", action=Action.DELETE, pii=True)
    await world.behaviour.failed_stepup("alice@example.com", settings=world.settings, now=T0)
    assert isinstance(world.counters, MemoryCounters)
    keys = " ".join(world.counters._windows)
    assert keys and "alice" not in keys and "cust-42" not in keys


class BrokenCounters:
    """Counters whose every call fails, as Redis down does (no batch: one call at a time)."""

    async def hit(self, key: str, *, window_seconds: float, now: datetime, amount: int = 1) -> int:
        raise StoreUnavailable("counters unavailable: ConnectionError")

    async def peek(self, key: str, now: datetime) -> int:
        raise StoreUnavailable("counters unavailable: ConnectionError")

    async def active_until(self, key: str, now: datetime) -> datetime | None:
        raise StoreUnavailable("counters unavailable: ConnectionError")

    async def reset(self, key: str) -> None:
        raise StoreUnavailable("counters unavailable: ConnectionError")


async def test_counters_that_fail_raise() -> None:
    world = World(BrokenCounters())
    with pytest.raises(StoreUnavailable):
        await world.request()


async def test_a_signal_weighted_zero_counts_nothing() -> None:
    world = World()
    world.settings = settings("  velocity: 0\n  failed_stepups: 0\n")
    for _ in range(100):
        assert await world.request() == ()
    await world.behaviour.failed_stepup("alice", settings=world.settings, now=T0)
    assert isinstance(world.counters, MemoryCounters) and len(world.counters) == 0


async def test_a_statement_counts_each_of_its_rows() -> None:
    # One DELETE of many rows is a bulk deletion; one SELECT of many rows an enumeration.
    world = World()
    few = await world.request(action=Action.DELETE, pii=True, rows=2)
    assert "bulk_destructive" not in names(few)
    many = await world.request(at=T0 + timedelta(seconds=1), action=Action.DELETE, pii=True, rows=9)
    assert "bulk_destructive" in names(many)
    reads = World()
    small = await reads.request(action=Action.READ, pii=True, rows=3)
    assert "pii_enumeration" not in names(small)
    wide = await reads.request(at=T0 + timedelta(seconds=1), action=Action.READ, pii=True, rows=40)
    assert "pii_enumeration" in names(wide)
