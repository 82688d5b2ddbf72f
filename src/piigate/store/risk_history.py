"""The risk engine's history in the store: :class:`SqlHistoryStore` implements
``risk.observation.HistoryStore`` over the ``risk_history``, ``risk_places`` and
``risk_population`` tables, with the bounds ``piigate risk eval``'s in-memory history keeps
(``risk.memory_history``), so the live engine and the evaluation score alike:

- per subject and feature, the newest :data:`HISTORY_VALUES` values (by their last sighting)
  seen within :data:`HISTORY_DAYS` days; ``verified`` counts the activities within those days
  (kept per day, under the feature ``activity``);
- the last located place, if within those days and no older than the one stored;
- the population, counted up as activity is remembered, never recomputed. Only the features
  with few distinct values (client families and versions, device types, countries, ASNs) are
  counted: they are what Freeman's ``p(x)`` is read for, while addresses, networks and devices
  (keyed hashes, one per person) would grow the table with every visitor.

Decisions must not pay a query each: a subject's history is kept :data:`SUBJECT_TTL` seconds
(this node's own ``remember`` drops it at once; another node's activity shows within the TTL),
and the population is re-read at most every :data:`POPULATION_REFRESH` seconds. Requests of one
subject that miss the cache together share one read (a burst, or many clients of one subject,
would otherwise each pay the same query when the TTL runs out), and the read runs at the driver
level (``store/driver.py``). A store that fails raises ``StoreUnavailable``: the engine then
scores the request as highest risk.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, and_, bindparam, case, delete, func, select

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
from piigate.store._sql import Repo, insert_for, utc
from piigate.store.db import Database
from piigate.store.driver import DriverStatement, DriverTransaction
from piigate.store.tables import risk_history, risk_places, risk_population

__all__ = [
    "ACTIVITY",
    "POPULATION_FEATURES",
    "POPULATION_REFRESH",
    "SUBJECT_TTL",
    "RiskHistoryRows",
    "SqlHistoryStore",
]

ACTIVITY: Final = "activity"
POPULATION_FEATURES: Final = frozenset(
    {
        Feature.COUNTRY,
        Feature.ASN,
        Feature.BROWSER,
        Feature.BROWSER_VERSION,
        Feature.OS,
        Feature.OS_VERSION,
        Feature.DEVICE_TYPE,
        Feature.CLIENT,
    }
)
SUBJECT_TTL: Final = 2.0
POPULATION_REFRESH: Final = 5.0
SUBJECT_CACHE: Final = 10_000
_KEEP: Final = timedelta(days=HISTORY_DAYS)
_FEATURES: Final = frozenset(str(kind) for kind in Feature)
_MAX_VALUE: Final = 255  # the column's width: a longer value is not remembered (stays "new")

# A subject's history, compiled once: two reads of one snapshot.
_VALUES: Final = DriverStatement(
    select(
        risk_history.c.feature,
        risk_history.c.value,
        risk_history.c.count,
        risk_history.c.last_seen,
    ).where(
        risk_history.c.subject_id == bindparam("subject_id"),
        risk_history.c.last_seen >= bindparam("since"),
    )
)
_PLACE: Final = DriverStatement(
    select(
        risk_places.c.at,
        risk_places.c.latitude,
        risk_places.c.longitude,
        risk_places.c.radius_km,
        risk_places.c.country,
    ).where(
        risk_places.c.subject_id == bindparam("subject_id"),
        risk_places.c.at >= bindparam("since"),
    )
)


class RiskHistoryRows(Repo):
    """The SQL of the history: one read per subject, one write per verified activity."""

    async def read_risk_history(self, subject_id: str, *, now: datetime) -> SubjectHistory:
        params = {"subject_id": subject_id, "since": utc(now) - _KEEP}

        def read(conn: DriverTransaction) -> SubjectHistory:
            rows = _VALUES.execute(conn, params).rows
            places = _PLACE.execute(conn, params).rows
            return _history(rows, places[0] if places else None)

        return await self.db.read(read, driver=True)

    async def read_risk_population(self) -> Population:
        stmt = select(risk_population.c.feature, risk_population.c.value, risk_population.c.count)
        rows = await self.db.read(lambda conn: conn.execute(stmt).all())
        values: dict[Feature, dict[str, int]] = {}
        verified = 0
        for feature, value, count in rows:
            if feature == ACTIVITY:
                verified += count
            elif feature in _FEATURES:
                values.setdefault(Feature(feature), {})[value] = count
        return Population(verified=verified, values=values)

    async def remember_risk(self, subject_id: str, observation: Observation) -> None:
        """Count one verified activity: its values, its day, its place, the population."""
        at = utc(observation.at)
        found = {k: v for k, v in features(observation).items() if len(v) <= _MAX_VALUE}
        rows = [(str(kind), value) for kind, value in found.items()]
        rows.append((ACTIVITY, at.date().isoformat()))
        history_stmt = self._history_upsert(subject_id, rows, at)
        population = sorted(
            [(str(k), v) for k, v in found.items() if k in POPULATION_FEATURES] + [(ACTIVITY, "")]
        )
        population_stmt = self._population_upsert(population)
        place_stmt = self._place_upsert(subject_id, observation)
        kinds = [str(kind) for kind in found]

        def write(conn: Connection) -> None:
            conn.execute(history_stmt)
            conn.execute(population_stmt)
            if place_stmt is not None:
                conn.execute(place_stmt)
            _prune(conn, subject_id, kinds, at)

        await self.db.write(write)

    async def purge_risk_history(self, now: datetime) -> int:
        """Drop what no history read keeps any more (older than :data:`HISTORY_DAYS`)."""
        since = utc(now) - _KEEP

        def purge(conn: Connection) -> int:
            gone = conn.execute(delete(risk_history).where(risk_history.c.last_seen < since))
            places = conn.execute(delete(risk_places).where(risk_places.c.at < since))
            return int(gone.rowcount or 0) + int(places.rowcount or 0)

        return await self.db.write(purge)

    def _history_upsert(self, subject_id: str, rows: list[tuple[str, str]], at: datetime) -> Any:
        insert = insert_for(self.db, risk_history).values(
            [
                {
                    "subject_id": subject_id,
                    "feature": feature,
                    "value": value,
                    "count": 1,
                    "first_seen": at,
                    "last_seen": at,
                }
                for feature, value in sorted(rows)
            ]
        )
        new = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=[
                risk_history.c.subject_id,
                risk_history.c.feature,
                risk_history.c.value,
            ],
            set_={
                "count": risk_history.c.count + 1,
                "first_seen": case(
                    (new.first_seen < risk_history.c.first_seen, new.first_seen),
                    else_=risk_history.c.first_seen,
                ),
                "last_seen": case(
                    (new.last_seen > risk_history.c.last_seen, new.last_seen),
                    else_=risk_history.c.last_seen,
                ),
            },
        )

    def _population_upsert(self, rows: Iterable[tuple[str, str]]) -> Any:
        # Sorted rows: concurrent writers lock the shared rows in one order (no deadlock).
        insert = insert_for(self.db, risk_population).values(
            [{"feature": feature, "value": value, "count": 1} for feature, value in rows]
        )
        return insert.on_conflict_do_update(
            index_elements=[risk_population.c.feature, risk_population.c.value],
            set_={"count": risk_population.c.count + 1},
        )

    def _place_upsert(self, subject_id: str, observation: Observation) -> Any | None:
        place = observation.place
        if not place.located or place.private:
            return None
        insert = insert_for(self.db, risk_places).values(
            subject_id=subject_id,
            at=utc(observation.at),
            latitude=place.latitude,
            longitude=place.longitude,
            radius_km=place.radius_km,
            country=place.country,
        )
        new = insert.excluded
        # Only a newer place replaces the stored one (activity may be remembered out of order).
        return insert.on_conflict_do_update(
            index_elements=[risk_places.c.subject_id],
            set_={
                "at": new.at,
                "latitude": new.latitude,
                "longitude": new.longitude,
                "radius_km": new.radius_km,
                "country": new.country,
            },
            where=new.at >= risk_places.c.at,
        )


def _prune(conn: Connection, subject_id: str, kinds: list[str], at: datetime) -> None:
    """Forget the subject's values older than the kept days, and all but the newest
    :data:`HISTORY_VALUES` of each feature just seen."""
    mine = risk_history.c.subject_id == subject_id
    conn.execute(delete(risk_history).where(mine, risk_history.c.last_seen < at - _KEEP))
    if not kinds:
        return
    sizes = conn.execute(
        select(risk_history.c.feature, func.count())
        .where(mine, risk_history.c.feature.in_(kinds))
        .group_by(risk_history.c.feature)
    ).all()
    for feature, size in sizes:
        if size <= HISTORY_VALUES:
            continue
        same = and_(mine, risk_history.c.feature == feature)
        newest = (
            select(risk_history.c.value)
            .where(same)
            .order_by(risk_history.c.last_seen.desc(), risk_history.c.value)
            .limit(HISTORY_VALUES)
        )
        conn.execute(delete(risk_history).where(same, risk_history.c.value.not_in(newest)))


def _history(rows: Iterable[dict[str, Any]], place: dict[str, Any] | None) -> SubjectHistory:
    values: dict[Feature, dict[str, Seen]] = {}
    verified = 0
    for row in rows:
        feature, count = row["feature"], int(row["count"])
        if feature == ACTIVITY:
            verified += count
        elif feature in _FEATURES:
            values.setdefault(Feature(feature), {})[row["value"]] = Seen(
                count, utc(row["last_seen"])
            )
    last_place = None
    if place is not None:
        last_place = LastPlace(
            utc(place["at"]),
            place["latitude"],
            place["longitude"],
            place["radius_km"],
            place["country"],
        )
    return SubjectHistory(verified=verified, values=values, last_place=last_place)


class SqlHistoryStore:
    """``HistoryStore`` over :class:`RiskHistoryRows`, with this node's short-lived caches."""

    def __init__(
        self,
        rows: RiskHistoryRows | Database,
        *,
        subject_ttl: float = SUBJECT_TTL,
        population_refresh: float = POPULATION_REFRESH,
        max_subjects: int = SUBJECT_CACHE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rows = rows if isinstance(rows, RiskHistoryRows) else RiskHistoryRows(rows)
        self.subject_ttl = subject_ttl
        self.population_refresh = population_refresh
        self.max_subjects = max_subjects
        self._monotonic = monotonic
        self._subjects: OrderedDict[str, tuple[float, SubjectHistory]] = OrderedDict()
        # The read under way for a subject, which requests that miss meanwhile share.
        self._reads: dict[str, asyncio.Future[SubjectHistory]] = {}
        self._population: Population | None = None
        self._population_at = 0.0
        self._reading = asyncio.Lock()

    async def history(self, subject_id: str, *, now: datetime) -> SubjectHistory:
        cached = self._subjects.get(subject_id)
        clock = self._monotonic()
        if cached is not None and clock - cached[0] < self.subject_ttl:
            return cached[1]
        reading = self._reads.get(subject_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(subject_id, now, clock))
            reading.add_done_callback(_retrieved)
            self._reads[subject_id] = reading
        # Shielded: a request that goes away cancels its own wait, not the others' read.
        return await asyncio.shield(reading)

    async def _read(self, subject_id: str, now: datetime, clock: float) -> SubjectHistory:
        """The subject's history, read for whoever asks meanwhile and then cached, unless this
        node remembered an activity of the subject during the read (``remember`` dropped the
        read from ``_reads``: a request after that must see the activity)."""
        try:
            found = await self.rows.read_risk_history(subject_id, now=now)
        finally:
            current = self._reads.get(subject_id) is asyncio.current_task()
            if current:
                del self._reads[subject_id]
        if current:
            self._subjects[subject_id] = (clock, found)
            self._subjects.move_to_end(subject_id)
            while len(self._subjects) > self.max_subjects:
                self._subjects.popitem(last=False)
        return found

    async def population(self, *, now: datetime) -> Population:
        read_at = self._population_at
        if self._population is not None and self._monotonic() - read_at < self.population_refresh:
            return self._population
        async with self._reading:
            if self._population is not None and self._population_at != read_at:
                return self._population  # another request read it meanwhile
            self._population = await self.rows.read_risk_population()
            self._population_at = self._monotonic()
            return self._population

    async def remember(self, subject_id: str, observation: Observation) -> None:
        self._forget(subject_id)
        await self.rows.remember_risk(subject_id, observation)
        self._forget(subject_id)  # a read that raced the write saw the old rows

    def _forget(self, subject_id: str) -> None:
        """Drop the cached history and any read under way (it is not cached when it ends)."""
        self._subjects.pop(subject_id, None)
        self._reads.pop(subject_id, None)


def _retrieved(reading: asyncio.Future[SubjectHistory]) -> None:
    """A read's failure, retrieved even when every request that waited for it went away."""
    if not reading.cancelled():
        reading.exception()
