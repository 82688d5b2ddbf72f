"""Sliding windows over fixed-window counters: a counter's keys follow the fixed window of
each request, and the once-per-window guard asks the counters once per window and node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from piigate.risk.windows import Sliding, Windows
from piigate.store.memory_counters import MemoryCounters

# The start of a minute: fixed windows of 60 s begin here.
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BUCKET = int(T0.timestamp()) // 60


class CountedHits(MemoryCounters):
    """Memory counters that count the single hits asked of them."""

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    async def hit(self, key: str, *, window_seconds: float, now: datetime, amount: int = 1) -> int:
        self.hits += 1
        return await super().hit(key, window_seconds=window_seconds, now=now, amount=amount)


async def test_a_track_counts_in_the_fixed_window_of_each_request() -> None:
    counters = MemoryCounters()
    windows = Windows(counters, prefix="t:")
    track = windows.track("n", 60)

    async def count(seconds: float) -> Sliding:
        counter = Sliding(track, hit=True)
        await windows.count([counter], now=T0 + timedelta(seconds=seconds))
        return counter

    first = await count(10)
    assert (first.bucket, first.current, first.previous) == (BUCKET, 1, 0)
    rolled = await count(70)  # the next window: its own count, the first one's as previous
    assert (rolled.bucket, rolled.current, rolled.previous) == (BUCKET + 1, 1, 1)
    assert rolled.value == 1 + 1 * (1 - 10 / 60)
    late = await count(20)  # a late request of the first window counts in the first window
    assert (late.bucket, late.current, late.previous) == (BUCKET, 2, 0)
    assert sorted(counters._windows) == [f"t:n:60:{BUCKET}", f"t:n:60:{BUCKET + 1}"]
    assert (await count(130)).bucket == BUCKET + 2


async def test_once_asks_the_counters_once_per_window_and_node() -> None:
    shared = CountedHits()
    node_a, node_b = Windows(shared, prefix="t:"), Windows(shared, prefix="t:")
    assert await node_a.once("warn", 60, now=T0)
    assert not await node_b.once("warn", 60, now=T0 + timedelta(seconds=1))
    assert shared.hits == 2
    for n in range(3):  # both nodes know the answer for this window: no more trips
        assert not await node_a.once("warn", 60, now=T0 + timedelta(seconds=2 + n))
        assert not await node_b.once("warn", 60, now=T0 + timedelta(seconds=2 + n))
    assert shared.hits == 2
    assert await node_b.once("warn", 60, now=T0 + timedelta(seconds=60))  # the next window
    assert not await node_a.once("warn", 60, now=T0 + timedelta(seconds=61))
    assert shared.hits == 4
    assert await node_a.once("other", 60, now=T0 + timedelta(seconds=62))  # another name
