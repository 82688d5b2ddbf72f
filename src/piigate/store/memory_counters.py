"""Fixed-window counters in this process's memory, for one node alone (the HTTP gateway's rate
limits without ``rate_limit.store``), and :func:`open_counters`, which picks them or Redis.

Same contract as :class:`~piigate.store.counters.SqlCounters` and
:class:`~piigate.store.redis_counters.RedisCounters`: windows follow the *injected* clock; a
window starts at a key's first hit and ends ``window_seconds`` later; each call is atomic (one
lock, no ``await`` inside), so concurrent hits never lose an update within the process.

Memory is bounded, since the keys come from the traffic (an attacker rotating addresses makes a
new key per request):

- ended windows are dropped, all at once, at most every ``sweep_seconds`` of the injected clock
  (an ended window reads as 0 even before it is dropped). The windows' ends are kept in a heap,
  so a sweep costs what it drops, not a pass over every key;
- at most ``max_keys`` keys are held: a new key beyond that evicts the key least recently hit.
  An evicted count starts again from zero, which lets that key through early; the keys a flood
  of new ones pushes out first are the ones no one is using, while a busy caller's key, hit on
  each of its requests, stays. ``evictions`` counts them (a cap too small for the traffic shows
  there).
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from piigate.ports import Hit
from piigate.store.redis_counters import RedisCounters

__all__ = ["DEFAULT_MAX_KEYS", "MemoryCounters", "open_counters"]

DEFAULT_MAX_KEYS = 100_000  # about 35 to 40 MB at most, with keys of 60 characters
DEFAULT_SWEEP_SECONDS = 10.0


@dataclass(slots=True)
class _Window:
    value: int
    end: datetime


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


class MemoryCounters:
    def __init__(
        self, *, max_keys: int = DEFAULT_MAX_KEYS, sweep_seconds: float = DEFAULT_SWEEP_SECONDS
    ) -> None:
        if max_keys < 1 or sweep_seconds < 0:
            raise ValueError("max_keys must be at least 1 and sweep_seconds not negative")
        self.max_keys = max_keys
        self.evictions = 0
        self._sweep_every = timedelta(seconds=sweep_seconds)
        self._next_sweep: datetime | None = None
        # Least recently hit first: the order evictions follow.
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        # (end, key) of every window started, soonest end first: what a sweep looks at. A
        # window restarted, evicted or reset leaves a stale entry, dropped when its end passes
        # (or when stale entries outnumber the windows, see _compact).
        self._ends: list[tuple[datetime, str]] = []
        # Atomic even when called from several threads (a sync caller, another event loop).
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many keys are held (ended windows not yet swept included)."""
        return len(self._windows)

    async def hit(self, key: str, *, window_seconds: float, now: datetime, amount: int = 1) -> int:
        """Add ``amount`` to ``key`` and return its count in the current window."""
        now = _utc(now)
        with self._lock:
            self._sweep(now)
            return self._hit(key, window_seconds, now, amount)

    async def batch(
        self, hits: Sequence[Hit], peeks: Sequence[str], *, now: datetime
    ) -> tuple[list[int], list[int]]:
        """Apply each :class:`~piigate.ports.Hit` and read each key of ``peeks``, atomically."""
        now = _utc(now)
        with self._lock:
            self._sweep(now)
            counted: list[int] = []
            for hit in hits:
                if hit.if_first is not None and counted[hit.if_first] != 1:
                    window = self._windows.get(hit.key)
                    counted.append(0 if window is None or window.end <= now else window.value)
                else:
                    counted.append(self._hit(hit.key, hit.window_seconds, now, hit.amount))
            windows = [self._windows.get(key) for key in peeks]
        return counted, [0 if w is None or w.end <= now else w.value for w in windows]

    def _hit(self, key: str, window_seconds: float, now: datetime, amount: int) -> int:
        window = self._windows.get(key)
        if window is None:
            self._make_room()
        if window is None or window.end <= now:
            window = _Window(amount, now + timedelta(seconds=window_seconds))
            self._windows[key] = window
            heapq.heappush(self._ends, (window.end, key))
            self._compact()
        else:
            window.value += amount
        self._windows.move_to_end(key)
        return window.value

    async def peek(self, key: str, now: datetime) -> int:
        """The count in the current window (0 when none or the window is over)."""
        window = self._current(key, _utc(now))
        return 0 if window is None else window.value

    async def active_until(self, key: str, now: datetime) -> datetime | None:
        """When the current window of ``key`` ends, if it has a count; None otherwise."""
        window = self._current(key, _utc(now))
        return None if window is None or window.value <= 0 else window.end

    async def reset(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    async def ping(self) -> None:
        """Always ready (readiness checks treat every counters store alike)."""

    async def aclose(self) -> None:
        with self._lock:
            self._windows.clear()
            self._ends.clear()

    def _current(self, key: str, now: datetime) -> _Window | None:
        with self._lock:
            window = self._windows.get(key)
        return window if window is not None and window.end > now else None

    def _sweep(self, now: datetime) -> None:
        if self._next_sweep is not None and now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_every
        ends, windows = self._ends, self._windows
        while ends and ends[0][0] <= now:
            _, key = heapq.heappop(ends)
            window = windows.get(key)
            if window is not None and window.end <= now:
                del windows[key]

    def _compact(self) -> None:
        """Rebuild the heap of ends from the windows held once stale entries (from evicted or
        reset keys whose window has not ended yet) make up most of it: bounded memory under a
        flood of new keys."""
        if len(self._ends) > 2 * len(self._windows) + 1024:
            self._ends = [(window.end, key) for key, window in self._windows.items()]
            heapq.heapify(self._ends)

    def _make_room(self) -> None:
        while len(self._windows) >= self.max_keys:
            self._windows.popitem(last=False)
            self.evictions += 1


def open_counters(
    store: str | None, *, max_keys: int = DEFAULT_MAX_KEYS
) -> MemoryCounters | RedisCounters:
    """The counters a ``rate_limit.store`` setting names: None (or ``memory``) keeps them in
    this process (one node); a ``redis://`` or ``rediss://`` URL shares them with every node
    using that Redis, so several nodes enforce one limit. The caller closes them (``aclose``).
    """
    if store is None or store == "memory":
        return MemoryCounters(max_keys=max_keys)
    if urlsplit(store).scheme not in ("redis", "rediss"):
        raise ValueError("a counters store is memory or a redis:// URL")
    return RedisCounters(store)
