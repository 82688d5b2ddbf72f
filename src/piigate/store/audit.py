"""The audit tables: the chained events, their head, and the group-commit transaction.

``piigate.audit`` owns the chain (what an event's hash covers, given here as ``event_hash``) and
the group commit (which events share a transaction). This module owns their SQL: the one
transaction that inserts the rows queued with a batch, locks and reads the chain head, inserts
the chained events and moves the head -- the same function wherever it runs, in a writer thread
of the server or in the audit writer process -- and the reads behind verification and the feed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    Table,
    bindparam,
    case,
    cast,
    extract,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from piigate.model import AuditEvent
from piigate.store.db import Database
from piigate.store.driver import DriverStatement, DriverTransaction
from piigate.store.tables import audit_events, audit_head, metadata

__all__ = [
    "AuditStore",
    "BatchItem",
    "EventHash",
    "Head",
    "Link",
    "RankedDecision",
    "StoredEvent",
    "TallyRow",
]

# What the chain gave one event: (seq, prev_hash, hash).
Link = tuple[int, str, str]
# The chain head: (seq, hash) of the last appended event.
Head = tuple[int, str]
# hash(prev_hash, seq, at, type, subject_id, canonical data text): piigate.audit.chain's
# event_hash_text.
EventHash = Callable[[str, int, datetime, str, str | None, str], str]


class BatchItem(NamedTuple):
    """One queued write: an event (``at`` in UTC, ``text`` its canonical data) and/or rows,
    each as (name of a store table, row)."""

    event: AuditEvent | None
    text: str = "{}"
    rows: tuple[tuple[str, Mapping[str, Any]], ...] = ()


class StoredEvent(NamedTuple):
    """One stored event as verification reads it: ``data`` is the stored JSON text."""

    seq: int
    at: datetime
    type: str
    subject_id: str | None
    data: str
    prev_hash: str
    hash: str


class RankedDecision(NamedTuple):
    """A subject's latest decision in a window, and how many decisions of theirs it held."""

    event: AuditEvent
    decisions: int


class TallyRow(NamedTuple):
    """How many events (``events``) of ``series`` fell into the time bucket ``bucket`` (0 =
    the first)."""

    bucket: int
    series: str
    events: int


_HEAD_ID = 1
_DECISION = "decision"
# Statements built once and run at the driver level (store/driver.py), as is the whole group
# commit: a statement object built per batch costs a cache-key computation each time, and
# SQLAlchemy's execution machinery more than the statement itself. Bound parameters throughout.
_HEAD_UPDATE = DriverStatement(
    update(audit_head)
    .where(audit_head.c.id == _HEAD_ID)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
_HEAD_READ = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == _HEAD_ID)
# Row lock on the head: appenders in other processes queue here, and each then reads the head
# its predecessor committed (READ COMMITTED re-reads the locked row).
_HEAD_LOCK = DriverStatement(_HEAD_READ.with_for_update())
# On SQLite the write transaction opens with BEGIN IMMEDIATE: the database-wide write lock is
# ours before the head is read, so no other process can append in between.
_HEAD_IN_WRITE = DriverStatement(_HEAD_READ)


class AuditStore:
    """The audit log's tables over one :class:`Database`."""

    def __init__(self, db: Database, event_hash: EventHash) -> None:
        self.db = db
        self._event_hash = event_hash
        self._head_query = _HEAD_LOCK if db.dialect == "postgresql" else _HEAD_IN_WRITE

    # -- the group commit --------------------------------------------------------------------

    @staticmethod
    def has_table(name: str) -> bool:
        """Whether ``name`` is a store table that rows can be queued for."""
        return name in metadata.tables

    async def commit(self, items: Sequence[BatchItem]) -> list[Link | None]:
        """Write ``items`` in one durable transaction in a writer thread; each event's link, in
        order (None for a rows-only item)."""
        work = functools.partial(self.write_batch, items)
        return await self.db.write(work, durable=True, driver=True)

    def commit_blocking(self, items: Sequence[BatchItem]) -> list[Link | None]:
        """:meth:`commit` in the calling thread (the audit writer process)."""
        return self.db.run_durable_blocking(functools.partial(self.write_batch, items))

    def write_batch(self, items: Sequence[BatchItem], conn: DriverTransaction) -> list[Link | None]:
        """The rows queued with the batch, then the chained events, then the head. Runs inside
        one transaction that has already begun."""
        queued: dict[str, list[Mapping[str, Any]]] = {}
        for item in items:
            for table, row in item.rows:
                queued.setdefault(table, []).append(row)
        for table, table_rows in queued.items():
            _insert_rows(conn, metadata.tables[table], table_rows)
        if all(item.event is None for item in items):
            return [None] * len(items)
        (head,) = self._head_query.execute(conn, {}).rows
        rows, links = self._chain(items, int(head["seq"]), str(head["hash"]))
        last = rows[-1]
        _insert_rows(conn, audit_events, rows)
        _HEAD_UPDATE.execute(conn, {"new_seq": last["seq"], "new_hash": last["hash"]})
        return links

    def _chain(
        self, items: Sequence[BatchItem], seq: int, prev_hash: str
    ) -> tuple[list[dict[str, Any]], list[Link | None]]:
        """The event rows after head (``seq``, ``prev_hash``), and each item's link."""
        rows: list[dict[str, Any]] = []
        links: list[Link | None] = []
        for item in items:
            event = item.event
            if event is None:
                links.append(None)
                continue
            seq += 1
            digest = self._event_hash(
                prev_hash, seq, event.at, event.type, event.subject_id, item.text
            )
            rows.append(
                {
                    "seq": seq,
                    "at": event.at,
                    "type": event.type,
                    "subject_id": event.subject_id,
                    "data": item.text,
                    "prev_hash": prev_hash,
                    "hash": digest,
                }
            )
            links.append((seq, prev_hash, digest))
            prev_hash = digest
        return rows, links

    # -- reading -----------------------------------------------------------------------------

    async def head(self) -> Head:
        row = await self.db.read(lambda conn: conn.execute(_HEAD_READ).one())
        return int(row.seq), str(row.hash)

    async def scan(
        self, feed: Callable[[StoredEvent], bool], *, batch_size: int = 1000
    ) -> Head | None:
        """Feed every event to ``feed`` in seq order until it returns False; the head (None
        when missing). One snapshot: appends running meanwhile are not seen."""

        def read(conn: Connection) -> Head | None:
            found = conn.execute(_HEAD_READ).first()
            after = 0
            while True:
                query = (
                    select(audit_events)
                    .where(audit_events.c.seq > after)
                    .order_by(audit_events.c.seq)
                    .limit(batch_size)
                )
                rows = conn.execute(query).all()
                if not rows or not all(feed(_stored(row)) for row in rows):
                    break
                after = int(rows[-1].seq)
            return None if found is None else (int(found.seq), str(found.hash))

        return await self.db.read(read, snapshot=True)

    async def events(
        self,
        *,
        after: int,
        types: Sequence[str],
        subject_id: str | None,
        limit: int,
        outcome: str | None = None,
    ) -> list[AuditEvent]:
        """Events with ``seq > after`` in seq order, of ``types`` (all when empty), of
        ``subject_id`` and, when ``outcome`` is given, decisions with that outcome only."""
        query = self._filtered(types, subject_id, outcome).where(audit_events.c.seq > after)
        query = query.order_by(audit_events.c.seq).limit(limit)
        rows = await self.db.read(lambda conn: conn.execute(query).all())
        return [_event(row) for row in rows]

    async def latest(
        self,
        *,
        types: Sequence[str] = (),
        subject_id: str | None = None,
        before: int | None = None,
        limit: int,
        outcome: str | None = None,
    ) -> list[AuditEvent]:
        """The newest events with ``seq < before`` (any seq when None), newest first, filtered
        as :meth:`events`."""
        query = self._filtered(types, subject_id, outcome)
        if before is not None:
            query = query.where(audit_events.c.seq < before)
        query = query.order_by(audit_events.c.seq.desc()).limit(limit)
        rows = await self.db.read(lambda conn: conn.execute(query).all())
        return [_event(row) for row in rows]

    def _filtered(
        self, types: Sequence[str], subject_id: str | None, outcome: str | None
    ) -> Select[Any]:
        query = select(audit_events)
        if types:
            query = query.where(audit_events.c.type.in_(list(types)))
        if subject_id is not None:
            query = query.where(audit_events.c.subject_id == subject_id)
        if outcome is not None:
            query = query.where(
                audit_events.c.type == _DECISION, self._json_text("outcome") == outcome
            )
        return query

    async def ranked_decisions(
        self, *, since: datetime, scan: int, limit: int
    ) -> tuple[list[RankedDecision], int]:
        """Each subject's latest decision at or after ``since``, highest risk score first (the
        more recent first among equal scores), at most ``limit``; read from the newest ``scan``
        decisions of the window. Also how many decisions were read (``scan`` when capped)."""
        recent = (
            select(audit_events.c.seq, audit_events.c.subject_id)
            .where(
                audit_events.c.type == _DECISION,
                audit_events.c.at >= since,
                audit_events.c.subject_id.is_not(None),
            )
            .order_by(audit_events.c.at.desc(), audit_events.c.seq.desc())
            .limit(scan)
            .cte("recent")
        )
        latest = (
            select(func.max(recent.c.seq).label("seq"), func.count().label("decisions"))
            .group_by(recent.c.subject_id)
            .cte("latest")
        )
        scanned = select(func.count()).select_from(recent).scalar_subquery()
        score = cast(self._json_text("risk", "score"), Integer)
        query = (
            select(audit_events, latest.c.decisions, scanned.label("scanned"))
            .join(latest, latest.c.seq == audit_events.c.seq)
            .order_by(score.desc(), audit_events.c.at.desc(), audit_events.c.seq.desc())
            .limit(limit)
        )
        rows = await self.db.read(lambda conn: conn.execute(query).all())
        ranked = [RankedDecision(_event(row), int(row.decisions)) for row in rows]
        return ranked, int(rows[0].scanned) if rows else 0

    async def tally(
        self, *, types: Sequence[str], since: datetime, until: datetime, width: int
    ) -> list[TallyRow]:
        """Events of ``types`` in ``[since, until)`` counted per time bucket of ``width``
        seconds from ``since`` and per series: a decision's outcome, or another event's type."""
        bucket = self._bucket(since, width)
        series = case(
            (audit_events.c.type == _DECISION, self._json_text("outcome")),
            else_=audit_events.c.type,
        )
        inner = (
            select(bucket.label("bucket"), series.label("series"))
            .where(
                audit_events.c.type.in_(list(types)),
                audit_events.c.at >= since,
                audit_events.c.at < until,
            )
            .subquery()
        )
        query = select(inner.c.bucket, inner.c.series, func.count()).group_by(
            inner.c.bucket, inner.c.series
        )
        rows = await self.db.read(lambda conn: conn.execute(query).all())
        return [TallyRow(int(b), str(s), int(n)) for b, s, n in rows if s is not None]

    def _json_text(self, *path: str) -> ColumnElement[Any]:
        """The value at ``path`` in an event's data, as text (PostgreSQL) or as stored (SQLite's
        ``json_extract``: numbers stay numbers)."""
        if self.db.dialect == "postgresql":
            text: ColumnElement[Any] = cast(audit_events.c.data, JSONB)[path].astext
            return text
        return func.json_extract(audit_events.c.data, "$." + ".".join(path))

    def _bucket(self, since: datetime, width: int) -> ColumnElement[Any]:
        """The bucket of an event's time: whole ``width``-second steps since ``since``."""
        start = int(since.timestamp())
        if self.db.dialect == "postgresql":
            seconds = extract("epoch", audit_events.c.at) - start
            return cast(func.floor(seconds / width), Integer)
        seconds = cast(func.strftime("%s", audit_events.c.at), Integer) - start
        bucket: ColumnElement[Any] = seconds // width
        return bucket

    async def events_at(self, seqs: Sequence[int]) -> list[AuditEvent]:
        """The events of ``seqs`` that exist, in seq order."""
        query = (
            select(audit_events)
            .where(audit_events.c.seq.in_(list(seqs)))
            .order_by(audit_events.c.seq)
        )
        rows = await self.db.read(lambda conn: conn.execute(query).all())
        return [_event(row) for row in rows]

    async def event(self, seq: int) -> AuditEvent | None:
        """The event ``seq``; None when there is none."""
        query = select(audit_events).where(audit_events.c.seq == seq)
        row = await self.db.read(lambda conn: conn.execute(query).first())
        return None if row is None else _event(row)


def _stored(row: Row[Any]) -> StoredEvent:
    return StoredEvent(
        int(row.seq), row.at, row.type, row.subject_id, row.data, row.prev_hash, row.hash
    )


def _event(row: Row[Any]) -> AuditEvent:
    return AuditEvent(
        type=row.type,
        at=row.at,
        subject_id=row.subject_id,
        data=json.loads(row.data),
        seq=int(row.seq),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


@functools.cache
def _bulk_insert(table: Table, columns: tuple[str, ...]) -> DriverStatement:
    """An INSERT of ``columns`` into ``table``, run at the driver level (``executemany``): the
    values SQLAlchemy's ``execute(insert, rows)`` would bind, without its per-row parameter
    construction, which would be most of the group commit's CPU."""
    return DriverStatement(table.insert().values({name: bindparam(name) for name in columns}))


def _insert_rows(conn: DriverTransaction, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (all with the keys of the first) into ``table``."""
    _bulk_insert(table, tuple(rows[0])).execute_many(conn, rows)
