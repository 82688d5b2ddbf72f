"""``MemoryHistory``: the :class:`~piigate.risk.observation.HistoryStore` in memory.

Used by ``piigate risk eval`` and tests, and bounded exactly as the store's: per subject and
feature, the newest :data:`HISTORY_VALUES` values (by their last sighting) seen within
:data:`HISTORY_DAYS` days of ``now``. The population is counted as activity is remembered
(every verified observation, once per feature), never recomputed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from piigate.risk.observation import (
    HISTORY_DAYS,
    HISTORY_VALUES,
    Feature,
    LastPlace,
    Observation,
    Population,
    Seen,
    SubjectHistory,
    features,
)

__all__ = ["MemoryHistory"]

_KEEP = timedelta(days=HISTORY_DAYS)


@dataclass
class _Subject:
    values: dict[Feature, dict[str, Seen]] = field(default_factory=dict)
    # When each verified activity happened, within the kept period (for ``verified``).
    activity: deque[datetime] = field(default_factory=deque)
    last_place: LastPlace | None = None
    # No kept value was last seen before this (a lower bound): spares scans that find nothing.
    oldest: datetime | None = None
    # The history as last handed out, until something changes it.
    snapshot: SubjectHistory | None = None


class MemoryHistory:
    """Verified histories and the population's counts, in this process's memory."""

    def __init__(self) -> None:
        self._subjects: dict[str, _Subject] = {}
        self._population: dict[Feature, dict[str, int]] = {}
        self._verified = 0
        self._view: Population | None = None

    async def history(self, subject_id: str, *, now: datetime) -> SubjectHistory:
        return self.history_now(subject_id, now=now)

    async def population(self, *, now: datetime) -> Population:
        return self.population_now()

    async def remember(self, subject_id: str, observation: Observation) -> None:
        self.remember_now(subject_id, observation)

    def history_now(self, subject_id: str, *, now: datetime) -> SubjectHistory:
        """:meth:`history` without the event loop (``risk eval`` replays millions of rows).

        The same object is handed out again until the subject's history changes (a new
        sighting, or values falling out of the kept period): it is never changed itself.
        """
        subject = self._subjects.get(subject_id)
        if subject is None:
            return _EMPTY
        if _forget_before(subject, now - _KEEP) or subject.snapshot is None:
            subject.snapshot = SubjectHistory(
                verified=len(subject.activity),
                values={kind: dict(seen) for kind, seen in subject.values.items() if seen},
                last_place=subject.last_place,
            )
        return subject.snapshot

    def population_now(self) -> Population:
        """The population's counts: a live view, current until the next :meth:`remember`
        (the same object until then)."""
        if self._view is None:
            self._view = Population(verified=self._verified, values=self._population)
        return self._view

    def remember_now(self, subject_id: str, observation: Observation) -> None:
        subject = self._subjects.get(subject_id)
        if subject is None:
            subject = self._subjects[subject_id] = _Subject()
        at = observation.at
        _forget_before(subject, at - _KEEP)
        subject.snapshot = None
        self._view = None
        subject.activity.append(at)
        self._verified += 1
        population, values = self._population, subject.values
        for kind, value in features(observation).items():
            counts = population.get(kind)
            if counts is None:
                counts = population[kind] = {}
            counts[value] = counts.get(value, 0) + 1
            seen = values.get(kind)
            if seen is None:
                seen = values[kind] = {}
            _see(seen, value, at)
        if subject.oldest is None or at < subject.oldest:
            subject.oldest = at
        place = observation.place
        last = subject.last_place
        if place.located and not place.private and (last is None or at >= last.at):
            assert place.latitude is not None and place.longitude is not None
            subject.last_place = LastPlace(
                at, place.latitude, place.longitude, place.radius_km, place.country
            )


_EMPTY = SubjectHistory()


def _see(seen: dict[str, Seen], value: str, at: datetime) -> None:
    entry = seen.get(value)
    if entry is not None:
        seen[value] = Seen(entry.count + 1, max(entry.last_at, at))
        return
    if len(seen) >= HISTORY_VALUES:
        oldest = min(seen, key=lambda v: seen[v].last_at)
        del seen[oldest]
    seen[value] = Seen(1, at)


def _forget_before(subject: _Subject, cutoff: datetime) -> bool:
    """Drop what was last seen before ``cutoff``; whether anything was dropped."""
    changed = False
    while subject.activity and subject.activity[0] < cutoff:
        subject.activity.popleft()
        changed = True
    if subject.oldest is None or subject.oldest >= cutoff:
        return changed
    oldest: datetime | None = None
    for seen in subject.values.values():
        stale = [v for v, entry in seen.items() if entry.last_at < cutoff]
        for value in stale:
            del seen[value]
        for entry in seen.values():
            if oldest is None or entry.last_at < oldest:
                oldest = entry.last_at
    subject.oldest = oldest
    last = subject.last_place
    if last is not None and last.at < cutoff:
        subject.last_place = None
    return True
