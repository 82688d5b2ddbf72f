"""Sliding windows over the nodes' fixed-window counters (``ports.RateCounters``).

A window slides: two fixed windows (aligned on multiples of the window since the epoch, so every
node agrees), the previous one weighted by how much of it still lies within the window -- the
estimate Cloudflare and nginx use. A fixed window's counter lasts to the end of the next one,
while it is that one's "previous". Once a window has closed its count is final: it is kept in
this process (:data:`CLOSED_CACHE` of them), so a request reads one counter per window, not two.

Everything one request counts goes to the counters as one batch (``ports.batch_of``: one Redis
round trip, one lock in memory).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from piigate.ports import Hit, RateCounters, batch_of

__all__ = ["CLOSED_CACHE", "Estimate", "Sliding", "Windows"]

CLOSED_CACHE: Final = 100_000
# A window is taken as closed this long after its end (nodes' clocks differ a little).
_SETTLE_SECONDS: Final = 2.0


@dataclass(frozen=True, slots=True)
class Estimate:
    """A sliding-window count: this fixed window's, plus the previous one's share."""

    current: int
    previous: int
    value: float
    window: int
    bucket: int

    @property
    def shown(self) -> int:
        """The count as people read it (a share of a request is a request)."""
        return math.ceil(self.value - 1e-9)

    @property
    def trend(self) -> str:
        """This window so far against the whole previous one."""
        if self.current == self.previous:
            return "steady"
        return "rising" if self.current > self.previous else "falling"


@dataclass(slots=True)
class Sliding:
    """One sliding counter a request reads, and counts itself in when ``hit``."""

    name: str
    window: int
    hit: bool
    # Hit only if the ``plain`` hit at this index counted 1 (``ports.Hit.if_first``).
    if_first: int | None = None
    amount: int = 1  # what a hit adds (rows a statement changed, records it read)
    key: str = ""
    bucket: int = 0
    elapsed: float = 0.0
    current: int = 0
    previous: int = 0

    def estimate(self) -> Estimate:
        share = max(0.0, 1.0 - self.elapsed / self.window)
        value = self.current + self.previous * share
        return Estimate(self.current, self.previous, value, self.window, self.bucket)


class Windows:
    def __init__(self, counters: RateCounters, *, prefix: str) -> None:
        self.counters = counters
        self._batch = batch_of(counters)
        self._prefix = prefix
        self._closed: OrderedDict[str, int] = OrderedDict()

    async def count(
        self,
        counters: Iterable[Sliding],
        *,
        now: datetime,
        plain: Sequence[tuple[str, int]] = (),
    ) -> list[int]:
        """Fill in each sliding counter (hitting those that ``hit``), and hit the ``plain``
        counters ``(name, window)`` of the current fixed window: their counts are returned."""
        stamp = now.timestamp()
        hits = [Hit(self._key(name, window, stamp), _keep(window, stamp)) for name, window in plain]
        asked = list(counters)
        peeks: list[str] = []
        unknown: list[tuple[Sliding, str]] = []  # counters whose previous window is not cached
        closed = self._closed
        for counter in asked:
            window = counter.window
            bucket = int(stamp // window)
            counter.bucket, counter.elapsed = bucket, stamp - bucket * window
            base = f"{self._prefix}{counter.name}:{window}:"
            counter.key = base + str(bucket)
            if counter.hit:
                hits.append(
                    Hit(counter.key, 2 * window - counter.elapsed, counter.if_first, counter.amount)
                )
            else:
                peeks.append(counter.key)
            previous = base + str(bucket - 1)
            value = closed.get(previous)
            if value is None:
                unknown.append((counter, previous))
            else:
                counter.previous = value
        read = len(peeks)
        peeks.extend(key for _, key in unknown)
        counted, peeked = await self._batch(hits, peeks, now=now)
        hit_values, peek_values = iter(counted[len(plain) :]), iter(peeked[:read])
        for counter in asked:
            counter.current = next(hit_values) if counter.hit else next(peek_values)
        for (counter, key), value in zip(unknown, peeked[read:], strict=True):
            counter.previous = value
            if counter.elapsed >= _SETTLE_SECONDS:
                self._remember(key, value)
        return counted[: len(plain)]

    async def once(self, name: str, window: int, *, now: datetime) -> bool:
        """True the first time ``name`` is asked in the current fixed window (on any node)."""
        stamp = now.timestamp()
        key = self._key(name, window, stamp)
        return await self.counters.hit(key, window_seconds=_keep(window, stamp), now=now) == 1

    def _key(self, name: str, window: int, stamp: float) -> str:
        return f"{self._prefix}{name}:{window}:{int(stamp // window)}"

    def _remember(self, key: str, value: int) -> None:
        self._closed[key] = value
        if len(self._closed) > CLOSED_CACHE:
            self._closed.popitem(last=False)


def _keep(window: int, stamp: float) -> float:
    """How long a counter of the current fixed window must last: to the end of the next one."""
    return 2 * window - (stamp - (stamp // window) * window)
