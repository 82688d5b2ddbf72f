"""Fixed-window counters: the same contract on SQL (SQLite, PostgreSQL), Redis and memory."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from piigate.ports import Hit
from piigate.store import Database, SqlCounters, StoreUnavailable
from piigate.store.counters import Counters
from piigate.store.memory_counters import MemoryCounters, open_counters
from piigate.store.redis_counters import RedisCounters
from piigate.store.turn_batches import Asked

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WORKER = Path(__file__).with_name("_counter_worker.py")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
        "memory",
    ]
)
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    """SQL counters on each database backend, Redis counters under a fresh key prefix, and
    one process's memory."""
    if request.param == "memory":
        yield MemoryCounters()
        return
    async with _shared(request) as shared:
        yield shared


@contextlib.asynccontextmanager
async def _shared(request: pytest.FixtureRequest) -> AsyncIterator[SqlCounters | RedisCounters]:
    """The counters nodes share, as ``request.param`` names them: SQL on that database (its
    schema upgraded), or Redis under a fresh key prefix."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        redis = RedisCounters(url, prefix=f"piigate-test:{secrets.token_hex(6)}:")
        try:
            yield redis
        finally:
            await redis.aclose()
        return
    db = Database.open(request.getfixturevalue(f"{request.param}_url"))
    try:
        await db.upgrade()
        yield SqlCounters(db)
    finally:
        await db.close()


async def test_fixed_window(counters: Counters) -> None:
    assert await counters.peek("k", T0) == 0
    assert await counters.hit("k", window_seconds=60, now=T0) == 1
    assert await counters.hit("k", window_seconds=60, now=T0.replace(second=30), amount=3) == 4
    assert await counters.peek("k", T0.replace(second=59)) == 4
    assert await counters.active_until("k", T0.replace(second=59)) == T0.replace(minute=1)
    assert await counters.active_until("k", T0.replace(minute=1)) is None
    assert await counters.active_until("never", T0) is None
    # The window ends 60 s after its first hit; the next hit starts a new one.
    assert await counters.peek("k", T0.replace(minute=1)) == 0
    assert await counters.hit("k", window_seconds=60, now=T0.replace(minute=1)) == 1
    assert await counters.hit("other", window_seconds=60, now=T0) == 1
    await counters.reset("k")
    assert await counters.peek("k", T0.replace(minute=1)) == 0
    assert await counters.peek("other", T0) == 1


async def test_sql_counters_purge_ended_windows(db: Database) -> None:
    counters = SqlCounters(db)
    await counters.hit("a", window_seconds=60, now=T0)
    await counters.hit("b", window_seconds=600, now=T0)
    assert await counters.purge_counters(T0.replace(minute=5)) == 1
    assert await counters.peek("b", T0.replace(minute=5)) == 1


async def test_memory_counters_drop_ended_windows() -> None:
    counters = MemoryCounters(sweep_seconds=30)
    await counters.hit("short", window_seconds=10, now=T0)
    await counters.hit("long", window_seconds=600, now=T0)
    await counters.hit("other", window_seconds=10, now=T0 + timedelta(seconds=20))
    assert len(counters) == 3  # the next sweep is due 30 s after the first
    await counters.hit("other", window_seconds=10, now=T0 + timedelta(seconds=30))
    assert len(counters) == 2  # "short" (ended at 10 s) and "other"'s first window are gone
    assert await counters.peek("long", T0 + timedelta(seconds=30)) == 1
    assert await counters.peek("other", T0 + timedelta(seconds=30)) == 1


async def test_memory_counters_sweep_ended_windows_only() -> None:
    counters = MemoryCounters(sweep_seconds=30)
    for key in ("restarted", "reset", "ended"):
        await counters.hit(key, window_seconds=10, now=T0)
    await counters.reset("reset")
    later = T0 + timedelta(seconds=20)
    for key in ("restarted", "reset"):  # new windows of these keys, ending after the sweep
        await counters.hit(key, window_seconds=100, now=later)
    await counters.hit("other", window_seconds=100, now=T0 + timedelta(seconds=30))  # sweeps
    assert len(counters) == 3  # only "ended" is gone
    for key in ("restarted", "reset", "other"):
        assert await counters.peek(key, T0 + timedelta(seconds=30)) == 1


async def test_memory_counters_stay_bounded_under_a_flood_of_long_windows() -> None:
    counters = MemoryCounters(max_keys=3)
    for n in range(5_000):  # evicted keys whose windows have not ended
        await counters.hit(f"flood-{n}", window_seconds=3_600, now=T0)
    assert len(counters) == 3
    assert len(counters._ends) <= 2 * 3 + 1024  # nor do their ends pile up


async def test_memory_counters_cap_evicts_the_least_recently_hit() -> None:
    counters = MemoryCounters(max_keys=3)
    for key in ("a", "b", "c", "a"):
        await counters.hit(key, window_seconds=60, now=T0)
    for n in range(50):  # a flood of new keys (rotated addresses)
        await counters.hit(f"flood-{n}", window_seconds=60, now=T0)
        await counters.hit("a", window_seconds=60, now=T0)  # a busy caller, hit each time
    assert len(counters) == 3
    assert counters.evictions == 50
    assert await counters.peek("a", T0) == 52  # kept, with its count
    assert await counters.peek("b", T0) == 0
    assert await counters.peek("flood-0", T0) == 0


def test_memory_counters_are_bounded() -> None:
    with pytest.raises(ValueError):
        MemoryCounters(max_keys=0)


async def test_open_counters_by_setting() -> None:
    assert isinstance(open_counters(None), MemoryCounters)
    assert isinstance(open_counters("memory"), MemoryCounters)
    redis = open_counters("redis://127.0.0.1:6379/15")  # nothing connects until used
    try:
        assert isinstance(redis, RedisCounters)
    finally:
        await redis.aclose()
    with pytest.raises(ValueError):
        open_counters("postgresql://db/x")


async def test_hundred_concurrent_hits_lose_nothing(counters: Counters) -> None:
    results = await asyncio.gather(
        *(counters.hit("burst", window_seconds=60, now=T0) for _ in range(100))
    )
    assert sorted(results) == list(range(1, 101))
    assert await counters.peek("burst", T0) == 100


async def test_unreachable_redis_fails_closed() -> None:
    counters = RedisCounters("redis://127.0.0.1:1/0", timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await counters.hit("k", window_seconds=60, now=T0)
        with pytest.raises(StoreUnavailable):
            await counters.peek("k", T0)
    finally:
        await counters.aclose()


async def _run_workers(url: str, prefix: str) -> list[int]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            url,
            "150",
            prefix,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for proc in procs:  # both connected before either starts: real overlap
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    outputs = [await asyncio.wait_for(proc.communicate(), 30) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    return sorted(int(v) for out, _ in outputs for v in out.split())


async def test_two_processes_share_one_count(database_url: str) -> None:
    db = Database.open(database_url)
    try:
        await db.upgrade()
    finally:
        await db.close()
    seen = await _run_workers(database_url, "")
    assert seen == list(range(1, 301))  # every hit got its own count: none lost or doubled
    db = Database.open(database_url)
    try:
        assert await SqlCounters(db).peek("shared", T0) == 300
    finally:
        await db.close()


@pytest.mark.redis
async def test_two_processes_share_one_redis_count(redis_url: str) -> None:
    prefix = f"piigate-test:{secrets.token_hex(6)}:"
    assert await _run_workers(redis_url, prefix) == list(range(1, 301))
    counters = RedisCounters(redis_url, prefix=prefix)
    try:
        assert await counters.peek("shared", T0) == 300
    finally:
        await counters.aclose()


async def test_a_batch_hits_and_reads_as_single_calls_do(counters: Counters) -> None:
    from piigate.ports import Hit, batch_of

    batch = batch_of(counters)
    await counters.hit("seen", window_seconds=60, now=T0, amount=4)
    counted, read = await batch(
        [Hit("a", 60), Hit("b", 10), Hit("a", 60)], ["seen", "never", "a"], now=T0
    )
    assert counted == [1, 1, 2] and read == [4, 0, 2]
    later = T0 + timedelta(seconds=30)
    counted, read = await batch([Hit("b", 10)], ["a", "b", "seen"], now=later)
    assert counted == [1] and read == [2, 1, 4]  # b's window had ended: a new one
    assert await batch([], [], now=later) == ([], [])
    assert await counters.peek("a", T0 + timedelta(seconds=61)) == 0
    counted, _ = await batch([Hit("rows", 60, amount=25), Hit("rows", 60, amount=5)], [], now=T0)
    assert counted == [25, 30]  # a statement's rows counted at once


async def test_a_hit_may_count_only_after_a_first_sighting(counters: Counters) -> None:
    """Distinct records per window in one batch: the record's key, then the tally if first."""
    from piigate.ports import Hit, batch_of

    batch = batch_of(counters)

    async def read(record: str, at: datetime) -> int:
        counted, _ = await batch([Hit(f"seen:{record}", 60), Hit("distinct", 60, 0)], [], now=at)
        return counted[1]

    assert [await read(r, T0) for r in ("r1", "r2", "r1", "r3", "r2")] == [1, 2, 2, 3, 3]
    assert await read("r4", T0 + timedelta(seconds=61)) == 1  # both windows over: anew


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def grouped(request: pytest.FixtureRequest) -> AsyncIterator[SqlCounters | RedisCounters]:
    """The counters shared by nodes, which send what one loop turn asks for as one group."""
    async with _shared(request) as shared:
        yield shared


def _count_groups(counters: SqlCounters | RedisCounters) -> list[int]:
    """Wrap the adapter's ``send`` so that each group records how many keys it carried."""
    sizes: list[int] = []
    turns = counters._turns
    send = turns.send

    async def counted(group: list[Asked]) -> list[list[int]]:
        sizes.append(sum(len(asked.hits) + len(asked.peeks) for asked in group))
        return await send(group)

    turns.send = counted
    return sizes


async def test_batches_of_one_loop_turn_go_as_one_group(
    grouped: SqlCounters | RedisCounters,
) -> None:
    """Concurrent batches share a call to the store and get what they would have got one by
    one: each its own window (``now``), its ``if_first`` gate on its own hits, in order."""
    sizes = _count_groups(grouped)
    later = T0 + timedelta(seconds=61)

    async def read(record: str, at: datetime) -> tuple[list[int], list[int]]:
        return await grouped.batch(
            [Hit(f"seen:{record}", 60), Hit("distinct", 60, 0)], ["distinct"], now=at
        )

    answers = await asyncio.gather(
        read("r1", T0),
        read("r2", T0),
        read("r1", T0),
        grouped.hit("other", window_seconds=60, now=T0, amount=5),
        read("r3", later),  # both windows of T0 ended: this one starts anew
        read("r1", later),
    )
    assert sizes == [16]  # one group: 5 batches of 3 keys and a hit
    assert answers == [
        ([1, 1], [1]),
        ([1, 2], [2]),
        ([2, 2], [2]),  # r1 again: not a new record
        5,
        ([1, 1], [1]),
        ([1, 2], [2]),
    ]
    assert await grouped.peek("distinct", later) == 2
    assert sizes == [16]  # a read alone is not a group


async def test_a_burst_of_batches_goes_as_several_groups(
    grouped: SqlCounters | RedisCounters,
) -> None:
    grouped._turns.max_keys = 10
    sizes = _count_groups(grouped)
    answers = await asyncio.gather(
        *(grouped.batch([Hit("n", 60)] * 3, [], now=T0) for _ in range(7)),
        grouped.batch([Hit("big", 60)] * 12, [], now=T0),  # more than a group holds
    )
    assert sizes == [9, 9, 3, 12]
    batches = sorted(counted for counted, _ in answers[:7])  # Redis's calls run side by side
    assert batches == [[3 * i + 1, 3 * i + 2, 3 * i + 3] for i in range(7)]  # each one whole
    assert answers[7] == (list(range(1, 13)), [])


async def test_a_caller_that_gives_up_leaves_the_others_their_counts(
    grouped: SqlCounters | RedisCounters,
) -> None:
    first = asyncio.ensure_future(grouped.batch([Hit("k", 60)], [], now=T0))
    second = asyncio.ensure_future(grouped.batch([Hit("k", 60)], ["k"], now=T0))
    await asyncio.sleep(0)  # both queued for the same group
    first.cancel()
    assert await second == ([2], [2])  # the first's hit was sent: it counts
    assert first.cancelled()


@pytest.mark.parametrize("url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_sql_batches_asked_during_a_transaction_go_as_the_next(
    url: str, request: pytest.FixtureRequest
) -> None:
    """One transaction at a time: what is asked meanwhile, over several loop turns, waits and
    goes as one group (a group commit), so a row many requests count on is locked once."""
    db = Database.open(request.getfixturevalue(f"{url}_url"))
    try:
        await db.upgrade()
        counters = SqlCounters(db)
        sizes = _count_groups(counters)
        send, running, release = counters._turns.send, asyncio.Event(), asyncio.Event()

        async def held(group: list[Asked]) -> list[list[int]]:
            running.set()
            await release.wait()
            return await send(group)

        counters._turns.send = held
        first = asyncio.ensure_future(counters.hit("ip", window_seconds=60, now=T0))
        await running.wait()
        later = []
        for _ in range(5):  # five loop turns while the first transaction runs
            later.append(asyncio.ensure_future(counters.hit("ip", window_seconds=60, now=T0)))
            await asyncio.sleep(0)
        release.set()
        assert await first == 1
        assert sorted(await asyncio.gather(*later)) == [2, 3, 4, 5, 6]
        assert sizes == [1, 5]
    finally:
        await db.close()


@pytest.mark.parametrize("url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_sql_groups_count_as_their_batches_one_by_one(
    url: str, request: pytest.FixtureRequest
) -> None:
    """A group runs its keys in another order than asked (by key, gated keys last, so nodes
    never deadlock); the counts must still be those of the batches run one after another,
    here those of the in-memory counters given the same batches in turn."""
    rnd = random.Random(7)
    db = Database.open(request.getfixturevalue(f"{url}_url"))
    try:
        await db.upgrade()
        counters, reference = SqlCounters(db), MemoryCounters()
        for round_ in range(12):
            at = T0 + timedelta(seconds=25 * round_)  # windows of 10 and 60 s end between rounds
            asked = []
            for _ in range(rnd.randint(1, 8)):
                hits = [
                    Hit(rnd.choice("abcd"), rnd.choice((10, 60)), amount=rnd.randint(1, 3))
                    for _ in range(rnd.randint(0, 3))
                ]
                record = rnd.choice(("r1", "r2", "r3"))
                hits += [Hit(f"seen:{record}", 60), Hit("distinct", 60, len(hits))]
                asked.append((hits, [*rnd.sample("abcdx", rnd.randint(0, 3)), "distinct"]))
            got = await asyncio.gather(*(counters.batch(h, p, now=at) for h, p in asked))
            expected = [await reference.batch(h, p, now=at) for h, p in asked]
            assert got == expected, round_
    finally:
        await db.close()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("redis://127.0.0.1:1/0", id="redis"),
        pytest.param("postgresql://postgres@127.0.0.1:1/none", id="postgres"),
    ],
)
async def test_an_unreachable_store_fails_every_waiting_batch(url: str) -> None:
    db: Database | None = None
    if url.startswith("redis"):
        counters: SqlCounters | RedisCounters = RedisCounters(url, timeout=0.5)
    else:
        db = Database.open(url)
        counters = SqlCounters(db)
    try:
        answers = await asyncio.gather(
            *(counters.batch([Hit(f"k{i}", 60)], [], now=T0) for i in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(answer, StoreUnavailable) for answer in answers)
        with pytest.raises(StoreUnavailable):  # and the next one too: nothing is stuck
            await counters.batch([Hit("k", 60)], [], now=T0)
    finally:
        if isinstance(counters, RedisCounters):
            await counters.aclose()
        if db is not None:
            await db.close()


def test_sql_groups_lock_their_rows_in_one_order() -> None:
    """Two groups asking for the same keys in crossing orders run them in the same order (by
    key, the gated ones last), so two nodes' transactions never wait on each other in a cycle;
    each key's own hits keep the order asked."""
    from piigate.store.counters import _ops, _ordered

    def order(*batches: list[Hit]) -> list[tuple[str, int]]:
        ops = _ops([Asked(hits, [], T0) for hits in batches])
        return [(ops[i].key, ops[i].amount) for i in _ordered(ops)]

    one = order([Hit("ip", 60), Hit("s1", 60)], [Hit("s2", 60), Hit("ip", 60, amount=2)])
    other = order([Hit("s2", 60)], [Hit("ip", 60), Hit("s1", 60)])
    assert [key for key, _ in one] == ["ip", "ip", "s1", "s2"]
    assert [key for key, _ in other] == ["ip", "s1", "s2"]
    assert one[:2] == [("ip", 1), ("ip", 2)]  # in the order asked
    gated = order([Hit("seen:r9", 60), Hit("distinct", 60, 0)], [Hit("a", 60)])
    assert [key for key, _ in gated] == ["a", "seen:r9", "distinct"]  # the gate before its hit


@pytest.mark.postgres
async def test_two_nodes_counting_crossing_keys_never_deadlock(postgres_url: str) -> None:
    """Two nodes (each its own pool) count the same keys, asked in opposite orders, at once:
    each node's groups take their row locks in one order, so neither waits on the other in a
    cycle (PostgreSQL would abort one with a deadlock after a second), and nothing is lost."""
    nodes = [Database.open(postgres_url), Database.open(postgres_url)]
    try:
        await nodes[0].upgrade()
        keys = [f"k{i}" for i in range(12)]
        counters = [SqlCounters(db) for db in nodes]

        async def node(counting: SqlCounters, order: list[str]) -> None:
            for _ in range(30):
                await asyncio.gather(
                    *(counting.batch([Hit(key, 60)], [], now=T0) for key in order[:6]),
                    counting.batch([Hit(key, 60) for key in order[6:]], [], now=T0),
                )

        await asyncio.wait_for(
            asyncio.gather(node(counters[0], keys), node(counters[1], keys[::-1])), 60
        )
        assert [await counters[0].peek(key, T0) for key in keys] == [60] * 12
    finally:
        for db in nodes:
            await db.close()
