"""The audit tables: the chained events, their head, and the group-commit transaction.

``piigate.audit`` owns the chain (what an event's hash covers, given here as ``event_hash``) and
the group commit (which events share a transaction). This module owns their SQL: the one
transaction that inserts the rows queued with a batch, locks and reads the chain head, inserts
the chained events and moves the head -- the same function wherever it runs, in a writer thread
of the server or in the audit writer process -- and the reads behind verification and the feed
(the console's counts over time windows: ``store/audit_windows.py``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    bindparam,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from piigate.model import AuditEvent
from piigate.store.challenges import challenge_open
from piigate.store.db import Database
from piigate.store.driver import DriverStatement, DriverTransaction
from piigate.store.tables import audit_events, audit_head, metadata

__all__ = [
    "UNMET",
    "AuditStore",
    "BatchItem",
    "EventHash",
    "Head",
    "Link",
    "StoredEvent",
    "Written",
    "event_of",
    "json_text",
]

# What the chain gave one event: (seq, prev_hash, hash).
Link = tuple[int, str, str]
# What the batch did with one item: its event's link; None for rows only; UNMET when its
# ``if_open`` did not hold, and nothing of it was written.
UNMET: Final = "unmet"
Written = Link | Literal["unmet"] | None
# The chain head: (seq, hash) of the last appended event.
Head = tuple[int, str]
# hash(prev_hash, seq, at, type, subject_id, canonical data text): piigate.audit.chain's
# event_hash_text.
EventHash = Callable[[str, int, datetime, str, str | None, str], str]


class BatchItem(NamedTuple):
    """One queued write: an event (``at`` in UTC, ``text`` its canonical data) and/or rows,
    each as (name of a store table, row). With ``if_open`` (a challenge's id and an instant),
    an event only, written only if that challenge is still open then (``challenge_open``)."""

    event: AuditEvent | None
    text: str = "{}"
    rows: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    if_open: tuple[str, datetime] | None = None


class StoredEvent(NamedTuple):
    """One stored event as verification reads it: ``data`` is the stored JSON text."""

    seq: int
    at: datetime
    type: str
    subject_id: str | None
    data: str
    prev_hash: str
    hash: str


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
# On SQLite the write transaction opens with BEGIN IMMEDIATE: the database-wide write lock is
# ours before the head is read, so no other process can append in between.
_HEAD_PLAIN = DriverStatement(_HEAD_READ)
# Row lock on the head: appenders in other processes queue here, and each then reads the head
# its predecessor committed (READ COMMITTED re-reads the locked row).
_HEAD_LOCK = DriverStatement(_HEAD_READ.with_for_update())


class AuditStore:
    """The audit log's tables over one :class:`Database`."""

    def __init__(self, db: Database, event_hash: EventHash) -> None:
        self.db = db
        self._event_hash = event_hash
        self._head_query = _HEAD_LOCK if db.dialect == "postgresql" else _HEAD_PLAIN

    # -- the group commit --------------------------------------------------------------------

    @staticmethod
    def has_table(name: str) -> bool:
        """Whether ``name`` is a store table that rows can be queued for."""
        return name in metadata.tables

    async def commit(self, items: Sequence[BatchItem]) -> list[Written]:
        """Write ``items`` in one durable transaction in a writer thread; what became of each,
        in order."""
        work = functools.partial(self.write_batch, items)
        return await self.db.write(work, durable=True, driver=True)

    def commit_blocking(self, items: Sequence[BatchItem]) -> list[Written]:
        """:meth:`commit` in the calling thread (the audit writer process)."""
        return self.db.run_durable_blocking(functools.partial(self.write_batch, items))

    def write_batch(self, items: Sequence[BatchItem], conn: DriverTransaction) -> list[Written]:
        """The rows queued with the batch, then the conditions of the items that have one,
        then the chained events, then the head. Runs inside one transaction that has already
        begun."""
        queued: dict[str, list[Mapping[str, Any]]] = {}
        for item in items:
            for table, row in item.rows:
                queued.setdefault(table, []).append(row)
        for table, table_rows in queued.items():
            _insert_rows(conn, metadata.tables[table], table_rows)
        # After the rows: a challenge opened in this batch is open to the items after it.
        unmet = {i for i, item in enumerate(items) if not _holds(conn, item)}
        kept = [item for i, item in enumerate(items) if i not in unmet]
        written: list[Written] = [None] * len(kept)
        if any(item.event is not None for item in kept):
            head = self._head_query.execute(conn, {}).rows[0]
            rows, written = self._chain(kept, int(head["seq"]), str(head["hash"]))
            last = rows[-1]
            _insert_rows(conn, audit_events, rows)
            _HEAD_UPDATE.execute(conn, {"new_seq": last["seq"], "new_hash": last["hash"]})
        if not unmet:
            return written
        done = iter(written)
        return [UNMET if i in unmet else next(done) for i in range(len(items))]

    def _chain(
        self, items: Sequence[BatchItem], seq: int, prev_hash: str
    ) -> tuple[list[dict[str, Any]], list[Written]]:
        """The event rows after head (``seq``, ``prev_hash``), and each item's link."""
        rows: list[dict[str, Any]] = []
        links: list[Written] = []
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
        return [event_of(row) for row in rows]

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
        return [event_of(row) for row in rows]

    def _filtered(
        self, types: Sequence[str], subject_id: str | None, outcome: str | None
    ) -> Select[Any]:
        query = select(audit_events)
        if types:
            query = query.where(audit_events.c.type.in_(list(types)))
        if subject_id is not None:
            query = query.where(audit_events.c.subject_id == subject_id)
        if outcome is not None:
            outcome_text = json_text(self.db.dialect, "outcome")
            query = query.where(audit_events.c.type == _DECISION, outcome_text == outcome)
        return query

    async def events_at(self, seqs: Sequence[int]) -> list[AuditEvent]:
        """The events of ``seqs`` that exist, in seq order."""
        query = (
            select(audit_events)
            .where(audit_events.c.seq.in_(list(seqs)))
            .order_by(audit_events.c.seq)
        )
        rows = await self.db.read(lambda conn: conn.execute(query).all())
        return [event_of(row) for row in rows]

    async def event(self, seq: int) -> AuditEvent | None:
        """The event ``seq``; None when there is none."""
        query = select(audit_events).where(audit_events.c.seq == seq)
        row = await self.db.read(lambda conn: conn.execute(query).first())
        return None if row is None else event_of(row)


def _stored(row: Row[Any]) -> StoredEvent:
    return StoredEvent(
        int(row.seq), row.at, row.type, row.subject_id, row.data, row.prev_hash, row.hash
    )


def event_of(row: Row[Any]) -> AuditEvent:
    """The event of an ``audit_events`` row."""
    return AuditEvent(
        type=row.type,
        at=row.at,
        subject_id=row.subject_id,
        data=json.loads(row.data),
        seq=int(row.seq),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def json_text(dialect: str, *path: str) -> ColumnElement[Any]:
    """The value at ``path`` in an event's data, as text (PostgreSQL) or as stored (SQLite's
    ``json_extract``: numbers stay numbers)."""
    if dialect == "postgresql":
        text: ColumnElement[Any] = cast(audit_events.c.data, JSONB)[path].astext
        return text
    return func.json_extract(audit_events.c.data, "$." + ".".join(path))


@functools.cache
def _bulk_insert(table: Table, columns: tuple[str, ...]) -> DriverStatement:
    """An INSERT of ``columns`` into ``table``, run at the driver level (``executemany``): the
    values SQLAlchemy's ``execute(insert, rows)`` would bind, without its per-row parameter
    construction, which would be most of the group commit's CPU."""
    return DriverStatement(table.insert().values({name: bindparam(name) for name in columns}))


def _holds(conn: DriverTransaction, item: BatchItem) -> bool:
    """Whether ``item``'s condition holds (an item without one always does)."""
    if item.if_open is None:
        return True
    if item.rows:
        raise ValueError("a conditional item carries an event only")
    challenge_id, at = item.if_open
    return challenge_open(conn, challenge_id, at=at)


def _insert_rows(conn: DriverTransaction, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (all with the keys of the first) into ``table``."""
    _bulk_insert(table, tuple(rows[0])).execute_many(conn, rows)
