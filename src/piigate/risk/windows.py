"""Sliding windows over the nodes' fixed-window counters (``ports.RateCounters``).

A window slides: two fixed windows (aligned on multiples of the window since the epoch, so every
node agrees), the previous one weighted by how much of it still lies within the window -- the
estimate Cloudflare and nginx use. A fixed window's counter lasts to the end of the next one,
while it is that one's "previous". Once a window has closed its count is final: it is kept in
this process (:data:`CLOSED_CACHE` of them), so a request reads one counter per window, not two.
Likewise, once this process has asked :meth:`Windows.once` for a name in a window, the answer for
the rest of the window is known (no): it is not asked of the counters again.

Everything one request counts goes to the counters as one batch (``ports.batch_of``: one Redis
round trip, one lock in memory). A counter's name and window are a :class:`Track`, whose key stem
is built once (``risk.behaviour`` keeps a subject's tracks from request to request); a request
adds the number of the fixed window it falls in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from piigate.memo import Bounded
from piigate.ports import Hit, RateCounters, batch_of

__all__ = ["ASKED_CACHE", "CLOSED_CACHE", "Estimate", "Sliding", "Track", "Windows"]

CLOSED_CACHE: Final = 100_000
ASKED_CACHE: Final = 10_000
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


@dataclass(slots=True, eq=False)
class Track:
    """A sliding counter (:meth:`Windows.track`): its window, and the stem of its keys,
    ``<prefix><name>:<window>:``, to which a fixed window's number is added.

    It remembers the keys of the fixed window it was last counted in, and of the one before
    (whose count the closed windows' cache may hold): the next request in that window, as most
    are, builds no key. Only :meth:`Windows.count` moves it to another window, before its
    first await, so requests counted concurrently each read the keys of their own window.
    """

    window: int
    stem: str
    bucket: int | None = None
    key: str = ""
    previous_key: str = ""

    def enter(self, bucket: int) -> None:
        """Make ``bucket`` the fixed window :attr:`key` and :attr:`previous_key` are built for."""
        self.bucket = bucket
        self.key = self.stem + str(bucket)
        self.previous_key = self.stem + str(bucket - 1)


@dataclass(slots=True)
class Sliding:
    """One sliding counter a request reads, and counts itself in when ``hit``."""

    track: Track
    hit: bool
    # Hit only if the ``plain`` hit at this index counted 1 (``ports.Hit.if_first``).
    if_first: int | None = None
    amount: int = 1  # what a hit adds (rows a statement changed, records it read)
    # What :meth:`Windows.count` fills in: the fixed window and how far into it, the counts of
    # this one and the previous one, and the sliding count (``value``): this window's count
    # plus the share of the previous one that still lies within the window.
    bucket: int = 0
    elapsed: float = 0.0
    current: int = 0
    previous: int = 0
    value: float = 0.0

    @property
    def window(self) -> int:
        return self.track.window

    def estimate(self) -> Estimate:
        """The count with what a warning or a signal's detail shows of it."""
        return Estimate(self.current, self.previous, self.value, self.track.window, self.bucket)


class Windows:
    def __init__(self, counters: RateCounters, *, prefix: str) -> None:
        self.counters = counters
        self._batch = batch_of(counters)
        self._prefix = prefix
        self._closed = Bounded[str, int](CLOSED_CACHE)
        self._asked = Bounded[str, bool](ASKED_CACHE)  # keys :meth:`once` has asked, this window

    def track(self, name: str, window: int) -> Track:
        """The sliding counter ``name`` over ``window`` seconds."""
        return Track(window, f"{self._prefix}{name}:{window}:")

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
            track = counter.track
            window = track.window
            bucket = int(stamp // window)
            if bucket != track.bucket:
                track.enter(bucket)
            counter.bucket, counter.elapsed = bucket, stamp - bucket * window
            if counter.hit:
                hits.append(
                    Hit(track.key, 2 * window - counter.elapsed, counter.if_first, counter.amount)
                )
            else:
                peeks.append(track.key)
            value = closed.get(track.previous_key)
            if value is None:
                unknown.append((counter, track.previous_key))
            else:
                counter.previous = value
        read = len(peeks)
        peeks.extend(key for _, key in unknown)
        counted, peeked = await self._batch(hits, peeks, now=now)
        for (counter, key), value in zip(unknown, peeked[read:], strict=True):
            counter.previous = value
            if counter.elapsed >= _SETTLE_SECONDS:
                self._closed.put(key, value)
        hit_values, peek_values = iter(counted[len(plain) :]), iter(peeked[:read])
        for counter in asked:
            counter.current = next(hit_values) if counter.hit else next(peek_values)
            share = max(0.0, 1.0 - counter.elapsed / counter.track.window)
            counter.value = counter.current + counter.previous * share
        return counted[: len(plain)]

    async def once(self, name: str, window: int, *, now: datetime) -> bool:
        """True the first time ``name`` is asked in the current fixed window (on any node).

        A count within a window only grows, so once this process has asked in a window, every
        later ask in it is False: answered here, without a trip to the counters."""
        stamp = now.timestamp()
        key = self._key(name, window, stamp)
        if key in self._asked:
            return False
        first = await self.counters.hit(key, window_seconds=_keep(window, stamp), now=now) == 1
        self._asked.put(key, True)
        return first

    def _key(self, name: str, window: int, stamp: float) -> str:
        return f"{self._prefix}{name}:{window}:{int(stamp // window)}"


def _keep(window: int, stamp: float) -> float:
    """How long a counter of the current fixed window must last: to the end of the next one."""
    return 2 * window - (stamp - (stamp // window) * window)
