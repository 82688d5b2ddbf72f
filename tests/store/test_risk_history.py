"""The risk history in the store (SQLite and PostgreSQL): what a verified activity leaves, the
bounds ``risk eval``'s in-memory history keeps too, and the caches that spare decisions a query."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observation import (
    HISTORY_DAYS,
    HISTORY_VALUES,
    Client,
    Feature,
    LastPlace,
    Observation,
    Place,
    Population,
)
from piigate.store import Database, Store
from piigate.store.db import StoreUnavailable
from piigate.store.risk_history import POPULATION_FEATURES, RiskHistoryRows, SqlHistoryStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LONDON = Place(country="GB", region="England", city="London", latitude=51.5, longitude=-0.1)
PARIS = Place(country="FR", region="IDF", city="Paris", latitude=48.9, longitude=2.35, asn=3215)
CHROME = Client("Chrome", "131", "Windows", "10", "desktop")


def seen(at: datetime, place: Place = LONDON, device: str = "dev-a", **more: str) -> Observation:
    return Observation(at=at, place=place, client=CHROME, device_key=device, **more)


async def test_a_verified_activity_is_remembered(db: Database) -> None:
    history = SqlHistoryStore(db)
    await history.remember("alice", seen(T0, ip_key="ip-1", network_key="net-1"))
    await history.remember("alice", seen(T0 + timedelta(hours=1), PARIS, "dev-b"))
    alice = await history.history("alice", now=T0 + timedelta(hours=2))
    assert alice.verified == 2
    assert alice.seen(Feature.COUNTRY, "GB") == alice.seen(Feature.COUNTRY, "FR") == 1
    assert alice.seen(Feature.BROWSER, "Chrome") == 2
    assert alice.seen(Feature.CLIENT, "Chrome/Windows/desktop") == 2
    assert alice.seen(Feature.IP, "ip-1") == 1 and alice.seen(Feature.ASN, "AS3215") == 1
    assert alice.values[Feature.DEVICE]["dev-b"].last_at == T0 + timedelta(hours=1)
    assert alice.last_place == LastPlace(T0 + timedelta(hours=1), 48.9, 2.35, None, "FR")
    assert (await history.history("bob", now=T0)).verified == 0
    population = await history.population(now=T0)
    assert population.verified == 2
    assert population.count(Feature.BROWSER_VERSION, "Chrome 131") == 2
    assert population.count(Feature.COUNTRY, "FR") == 1
    # Keyed hashes of addresses and devices (one per person) are not counted over everyone.
    assert population.count(Feature.DEVICE, "dev-a") == 0
    assert population.count(Feature.IP, "ip-1") == 0


async def test_only_a_newer_located_routable_place_is_the_last_place(db: Database) -> None:
    rows = RiskHistoryRows(db)
    await rows.remember_risk("alice", seen(T0 + timedelta(hours=5), PARIS))
    await rows.remember_risk("alice", seen(T0, LONDON))  # remembered late: older
    await rows.remember_risk("alice", seen(T0 + timedelta(hours=6), Place(private=True)))
    await rows.remember_risk("alice", seen(T0 + timedelta(hours=7), Place(country="DE")))
    last = (await rows.read_risk_history("alice", now=T0 + timedelta(hours=8))).last_place
    assert last is not None and (last.country, last.at) == ("FR", T0 + timedelta(hours=5))


async def test_newest_values_per_feature_are_kept(db: Database) -> None:
    rows = RiskHistoryRows(db)
    for n in range(HISTORY_VALUES + 5):
        await rows.remember_risk("alice", seen(T0 + timedelta(minutes=n), device=f"d{n:03}"))
    alice = await rows.read_risk_history("alice", now=T0 + timedelta(days=1))
    devices = alice.values[Feature.DEVICE]
    assert len(devices) == HISTORY_VALUES
    assert (
        "d000" not in devices and "d004" not in devices and f"d{HISTORY_VALUES + 4:03}" in devices
    )
    assert alice.verified == HISTORY_VALUES + 5 and alice.seen(Feature.COUNTRY, "GB") == 105


async def test_what_is_older_than_the_kept_days_is_forgotten(db: Database) -> None:
    store = Store(db)
    old = T0 - timedelta(days=HISTORY_DAYS + 1)
    await store.remember_risk("alice", seen(old, PARIS, "dev-old"))
    await store.remember_risk("alice", seen(T0, LONDON, "dev-new"))
    alice = await store.read_risk_history("alice", now=T0)
    assert alice.verified == 1 and alice.seen(Feature.DEVICE, "dev-old") == 0
    assert alice.last_place is not None and alice.last_place.country == "GB"
    later = await store.read_risk_history("alice", now=T0 + timedelta(days=HISTORY_DAYS + 1))
    assert later.verified == 0 and not later.values and later.last_place is None
    assert await store.purge_risk_history(T0 + timedelta(days=HISTORY_DAYS + 1)) > 0
    population = await store.read_risk_population()
    assert population.verified == 2  # the population only ever counts up


async def test_the_store_keeps_what_the_in_memory_history_keeps(db: Database) -> None:
    """``risk eval`` (MemoryHistory) and the live engine (the store) must score alike."""
    sql, memory = RiskHistoryRows(db), MemoryHistory()
    rng = random.Random(7)
    at = T0
    for _ in range(160):
        at += timedelta(days=rng.choice([0, 1, 2, 3]), minutes=rng.randrange(1, 600))
        place = rng.choice([LONDON, PARIS, Place(private=True), Place()])
        client = Client(rng.choice(["Chrome", "Firefox"]), str(rng.randrange(120, 124)), "Linux")
        observation = Observation(
            at=at, place=place, client=client, device_key=f"d{rng.randrange(140)}"
        )
        subject = rng.choice(["alice", "bob"])
        await sql.remember_risk(subject, observation)
        await memory.remember(subject, observation)
    for subject in ("alice", "bob"):
        for now in (at, at + timedelta(days=60)):
            ours = await sql.read_risk_history(subject, now=now)
            theirs = await memory.history(subject, now=now)
            assert ours.verified == theirs.verified
            assert ours.last_place == theirs.last_place
            assert {k: dict(v) for k, v in ours.values.items()} == {
                k: dict(v) for k, v in theirs.values.items()
            }
    ours_pop = await sql.read_risk_population()
    theirs_pop = await memory.population(now=at)
    assert ours_pop.verified == theirs_pop.verified
    assert ours_pop.values == {
        k: dict(v) for k, v in theirs_pop.values.items() if k in POPULATION_FEATURES
    }


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingRows(RiskHistoryRows):
    reads = 0
    population_reads = 0

    async def read_risk_history(self, subject_id: str, *, now: datetime):  # type: ignore[no-untyped-def]
        self.reads += 1
        return await super().read_risk_history(subject_id, now=now)

    async def read_risk_population(self) -> Population:
        self.population_reads += 1
        return await super().read_risk_population()


async def test_decisions_do_not_pay_a_query_each(db: Database) -> None:
    rows, ticks = CountingRows(db), Ticks()
    history = SqlHistoryStore(rows, subject_ttl=2.0, population_refresh=5.0, monotonic=ticks)
    other_node = SqlHistoryStore(RiskHistoryRows(db))
    await history.history("alice", now=T0)
    await history.history("alice", now=T0)
    assert rows.reads == 1
    # Another node's activity shows once the cached history is older than its TTL.
    await other_node.remember("alice", seen(T0))
    assert (await history.history("alice", now=T0)).verified == 0
    ticks.now += 2.5
    assert (await history.history("alice", now=T0)).verified == 1 and rows.reads == 2
    # This node's own activity shows at once.
    await history.remember("alice", seen(T0 + timedelta(minutes=1)))
    assert (await history.history("alice", now=T0)).verified == 2 and rows.reads == 3
    for _ in range(3):
        await history.population(now=T0)
    assert rows.population_reads == 1
    ticks.now += 5.0
    assert (await history.population(now=T0)).verified == 2 and rows.population_reads == 2


async def test_the_subject_cache_is_bounded(db: Database) -> None:
    history = SqlHistoryStore(db, max_subjects=3)
    for n in range(10):
        await history.history(f"user-{n}", now=T0)
    assert len(history._subjects) == 3


class GatedRows(CountingRows):
    """Reads held under way until the test's go: their answer is what the store held when
    they began."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.go = asyncio.Event()
        self.fail = False

    async def read_risk_history(self, subject_id: str, *, now: datetime):  # type: ignore[no-untyped-def]
        self.reads += 1
        found = await RiskHistoryRows.read_risk_history(self, subject_id, now=now)
        await self.go.wait()
        if self.fail:
            raise StoreUnavailable("the store is down")
        return found


async def test_requests_that_miss_together_share_one_read(db: Database) -> None:
    rows = GatedRows(db)
    history = SqlHistoryStore(rows)
    waiting = [asyncio.ensure_future(history.history("alice", now=T0)) for _ in range(5)]
    bob = asyncio.ensure_future(history.history("bob", now=T0))
    await asyncio.sleep(0)
    waiting[0].cancel()  # one request goes away: the others' read goes on
    rows.go.set()
    found = await asyncio.gather(*waiting[1:])
    assert all(h is found[0] for h in found) and rows.reads == 2  # alice once, bob once
    assert (await bob).verified == 0
    await history.history("alice", now=T0)
    assert rows.reads == 2  # cached


async def test_a_failed_shared_read_fails_every_request_and_is_not_kept(db: Database) -> None:
    rows = GatedRows(db)
    rows.fail = True
    history = SqlHistoryStore(rows)
    waiting = [asyncio.ensure_future(history.history("alice", now=T0)) for _ in range(3)]
    await asyncio.sleep(0)
    rows.go.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results) and rows.reads == 1
    rows.fail = False
    assert (await history.history("alice", now=T0)).verified == 0 and rows.reads == 2


async def test_an_activity_remembered_during_a_read_is_seen_by_later_requests(
    db: Database,
) -> None:
    rows = GatedRows(db)
    history = SqlHistoryStore(rows)
    early = asyncio.ensure_future(history.history("alice", now=T0))
    await asyncio.sleep(0)
    await history.remember("alice", seen(T0))  # while the early read is under way
    later = asyncio.ensure_future(history.history("alice", now=T0))
    await asyncio.sleep(0)
    rows.go.set()
    await early
    assert (await later).verified == 1 and rows.reads == 2  # not the early read's answer
    # The later read is the one kept; the early one, whatever it saw, was not.
    assert (await history.history("alice", now=T0)).verified == 1 and rows.reads == 2
