"""The audit log: appends with group commit, verification and queries over the store.

Callers pass names, ids and settings in ``AuditEvent.data`` -- field and PII class names, record
ids, rule names, reasons -- never PII values, codes, secrets or tokens. The log does not try to
detect secrets; it relies on that contract.

Group commit: ``append`` queues the event and waits. One writer task takes everything queued
(up to ``max_batch``), and in ONE transaction locks the chain head, chains and inserts all the
events, moves the head and commits; only then does each caller's ``append`` return. If that
transaction fails, every caller in the batch gets ``StoreUnavailable``: nothing is acknowledged
that is not durable. Concurrent requests thus share one commit (and one fsync) instead of
queueing for one each. With a writer process, an append queued while nothing is in flight is
sent to it at once, in its caller's turn of the event loop, as a batch of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from piigate.audit.bus import EventBus
from piigate.audit.chain import (
    ChainHead,
    ChainReport,
    ChainRow,
    ChainVerifier,
    canonical_form,
    event_hash_text,
)
from piigate.audit.writer import ProcessWriter, WriterUnavailable
from piigate.clock import Clock
from piigate.model import AuditEvent
from piigate.store._sql import utc
from piigate.store.audit import AuditStore, BatchItem, StoredEvent, Written
from piigate.store.audit_windows import AuditWindows, RankedDecision, TallyRow
from piigate.store.db import Database, StoreUnavailable

__all__ = ["AuditLog", "AuditStats"]

_logger = logging.getLogger(__name__)

_MAX_LIMIT = 1000
_MAX_BUCKETS = 1000


@dataclass(slots=True)
class AuditStats:
    """Counters of the writer; ``batches < events`` shows that group commit is batching."""

    events: int = 0
    batches: int = 0
    max_batch: int = 0
    failed_batches: int = 0


@dataclass(slots=True)
class _Pending:
    item: BatchItem  # the event's at normalised to UTC; no event for a rows-only write
    data: dict[str, Any]  # canonical form of the event's data
    future: asyncio.Future[Any]
    shipped: bool = False  # sent to the writer process on being queued (a batch of its own)


_STOP = object()


class AuditLog:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus | None = None,
        *,
        max_batch: int = 500,
        writer_process: bool = False,
    ) -> None:
        self.db = db
        self.clock = clock
        self._store = AuditStore(db, event_hash_text)
        self._windows = AuditWindows(db)
        self.bus = bus
        self.max_batch = max_batch
        self.stats = AuditStats()
        # Commit in a child process rather than in a thread of the server (see
        # piigate.audit.writer).
        self._want_process = writer_process
        self._process: ProcessWriter | None = None
        self._queue: asyncio.Queue[_Pending | object] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._idle = False  # the writer task waits for an item, no batch in flight
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer task (``append`` also starts it on first use), and the writer
        process if one was asked for; if that cannot start, the log commits from a thread."""
        if self._want_process and self._process is None:
            process = ProcessWriter(self.db.url)
            try:
                await process.start()
            except StoreUnavailable as error:
                self._write_from_thread(error)
            else:
                self._process = process
        if self._writer is None or self._writer.done():
            self._stopped = False
            self._queue = asyncio.Queue()
            self._writer = asyncio.create_task(self._run(self._queue), name="piigate-audit")

    async def stop(self) -> None:
        """Commit everything queued so far, then stop; later appends raise StoreUnavailable."""
        self._stopped = True
        writer, queue = self._writer, self._queue
        if writer is None or queue is None:
            return
        if not writer.done():
            queue.put_nowait(_STOP)
            await asyncio.shield(writer)
        self._writer = None
        process, self._process = self._process, None
        if process is not None:
            await process.stop()

    # -- writing -----------------------------------------------------------------------------

    async def append(self, event: AuditEvent) -> AuditEvent:
        """Append ``event`` to the chain; returns it with ``seq``, ``prev_hash`` and ``hash``.

        Returns only once the event is committed. Raises ``StoreUnavailable`` when it could not
        be, ``TypeError``/``ValueError`` when ``data`` is not plain JSON-able values.
        """
        appended: AuditEvent = await self._queued(*_item(event))
        return appended

    async def append_if_open(
        self, event: AuditEvent, *, challenge_id: str, at: datetime
    ) -> AuditEvent | None:
        """:meth:`append`, if challenge ``challenge_id`` can still be answered at ``at``
        (pending, attempts left, unexpired) in the commit's transaction, so it still can when
        ``event`` is durable; None, and nothing appended, when it cannot (``stepup/reuse.py``:
        a decision that names a challenge an earlier one opened)."""
        item, data = _item(event)
        found: AuditEvent | None = await self._queued(
            item._replace(if_open=(challenge_id, utc(at))), data
        )
        return found

    async def write_rows(self, table: str, *rows: Mapping[str, Any]) -> None:
        """Insert ``rows`` into the store table named ``table`` in the next group-commit
        transaction, beside the audit events.

        State that a decision creates (its challenge) thus costs no transaction of its own, and
        is durable exactly when the events queued with it are. Returns after the commit.
        Raises ``ValueError`` at once for an unknown table, which would fail the whole batch.
        """
        if not self._store.has_table(table):
            raise ValueError(f"no store table {table!r}")
        await self._queued(BatchItem(None, rows=tuple((table, row) for row in rows)), {})

    async def _queued(self, item: BatchItem, data: dict[str, Any]) -> Any:
        """What became of ``item`` (``data``: its event's data in plain form) once its batch is
        committed: the event with its link, or None (rows only, or its condition unmet)."""
        if self._stopped:
            raise StoreUnavailable("the audit log is stopped")
        if self._writer is None or self._writer.done():
            await self.start()
        assert self._queue is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = _Pending(item, data, future)
        if self._idle and self._process is not None and self._queue.empty():  # nothing in flight
            pending.shipped = self._process.ship([item])  # now, not at the writer task's turn
        self._queue.put_nowait(pending)
        # A cancelled caller cancels only its wait: the item is still written with its batch.
        return await future

    async def record(
        self,
        type: str,
        *,
        subject_id: str | None = None,
        data: Mapping[str, object] | None = None,
        at: datetime | None = None,
    ) -> AuditEvent:
        """Build an event stamped with the log's clock and append it."""
        event = AuditEvent(
            type=type, at=at or self.clock.now(), subject_id=subject_id, data=dict(data or {})
        )
        return await self.append(event)

    async def _run(self, queue: asyncio.Queue[_Pending | object]) -> None:
        stopping = False
        batch: list[_Pending] = []
        try:
            while not stopping:
                self._idle = queue.empty()
                first = await queue.get()
                self._idle = False
                if first is _STOP:
                    break
                assert isinstance(first, _Pending)
                batch = [first]
                while not first.shipped and len(batch) < self.max_batch:
                    try:
                        item = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    assert isinstance(item, _Pending)
                    batch.append(item)
                await self._commit(batch)
                batch = []
        finally:
            # Cancelled (event loop shutting down): whoever still waits is told that nothing was
            # acknowledged, including a batch whose transaction was interrupted.
            self._idle = False
            waiting = list(batch)
            while not queue.empty():
                item = queue.get_nowait()
                if isinstance(item, _Pending):
                    waiting.append(item)
            if any(item.shipped for item in waiting) and self._process is not None:
                self._process.abandon()  # its answer will not be read
            for item in waiting:
                if not item.future.done():
                    item.future.set_exception(StoreUnavailable("the audit log stopped"))

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            committed = await self._write(batch)
        except Exception as error:
            self.stats.failed_batches += 1
            if not isinstance(error, StoreUnavailable):
                _logger.error("audit batch failed: %s", type(error).__name__, exc_info=error)
            for item in batch:
                if not item.future.done():
                    failure = StoreUnavailable("the audit event could not be stored")
                    failure.__cause__ = error
                    item.future.set_exception(failure)
            return
        events = [event for event in committed if event is not None]
        self.stats.batches += 1
        self.stats.events += len(events)
        self.stats.max_batch = max(self.stats.max_batch, len(events))
        for item, event in zip(batch, committed, strict=True):
            if not item.future.done():
                item.future.set_result(event)
        if self.bus is not None:
            for event in events:
                self.bus.publish(event)

    def _write_from_thread(self, error: StoreUnavailable) -> None:
        """No writer process could be started: from now on batches commit from a thread."""
        _logger.warning("audit writer process unavailable, writing from a thread: %s", error)
        self._want_process = False
        self._process = None

    async def _write(self, batch: list[_Pending]) -> list[AuditEvent | None]:
        items = [pending.item for pending in batch]
        links: list[Written] | None = None
        if self._process is not None:
            try:
                links = await self._process.write(items)
            except WriterUnavailable as error:
                # No child could be started again after one was lost: nothing of this batch
                # reached a store, so it and the rest are written from a thread.
                process = self._process
                self._write_from_thread(error)
                await process.stop()
        if links is None:
            links = await self._store.commit(items)
        committed: list[AuditEvent | None] = []
        for pending, link in zip(batch, links, strict=True):
            event = pending.item.event
            if event is None or not isinstance(link, tuple):  # rows only, or UNMET
                committed.append(None)
            else:
                committed.append(
                    AuditEvent(event.type, event.at, event.subject_id, pending.data, *link)
                )
        return committed

    # -- reading -----------------------------------------------------------------------------

    async def head(self) -> ChainHead:
        seq, digest = await self._store.head()
        return ChainHead(seq=seq, hash=digest)

    async def verify(
        self, *, batch_size: int = 1000, progress: Callable[[int], None] | None = None
    ) -> ChainReport:
        """Verify the whole chain against its head, reading rows in seq order in batches, in a
        reader thread of the store (off the event loop).

        Reads one snapshot, so appends running meanwhile neither break nor extend the check.
        ``progress`` is called (in that thread) with the seq of each event checked.
        """
        verifier = ChainVerifier()

        def feed(row: StoredEvent) -> bool:
            going = verifier.feed(_chain_row(row))
            if progress is not None:
                progress(row.seq)
            return going

        found = await self._store.scan(feed, batch_size=batch_size)
        head = None if found is None else ChainHead(seq=found[0], hash=found[1])
        report = verifier.finish(head)
        if head is None and report.ok:
            return ChainReport(ok=False, count=report.count, reason="the chain head is missing")
        return report

    async def list_events(
        self,
        after: int = 0,
        types: Sequence[str] = (),
        subject_id: str | None = None,
        limit: int = 100,
        *,
        outcome: str | None = None,
    ) -> list[AuditEvent]:
        """Events with ``seq > after`` in seq order, optionally filtered (``limit`` ≤ 1000);
        ``outcome`` keeps only the decisions with that outcome."""
        return await self._store.events(
            after=after,
            types=types,
            subject_id=subject_id,
            limit=_capped(limit),
            outcome=outcome,
        )

    async def latest_events(
        self,
        types: Sequence[str] = (),
        subject_id: str | None = None,
        limit: int = 100,
        *,
        before: int | None = None,
        outcome: str | None = None,
    ) -> list[AuditEvent]:
        """The newest events with ``seq < before`` (the newest of all when None), newest first,
        filtered as :meth:`list_events`."""
        return await self._store.latest(
            types=types,
            subject_id=subject_id,
            before=before,
            limit=_capped(limit),
            outcome=outcome,
        )

    async def ranked_decisions(
        self, *, since: datetime, scan: int, limit: int
    ) -> tuple[list[RankedDecision], int]:
        """Each subject's latest decision since ``since``, by risk score (see
        ``AuditWindows.ranked_decisions``), and how many decisions were read."""
        return await self._windows.ranked_decisions(since=since, scan=scan, limit=_capped(limit))

    async def tally(
        self, *, types: Sequence[str], since: datetime, until: datetime, width: int
    ) -> list[TallyRow]:
        """Events of ``types`` in ``[since, until)`` counted per ``width``-second bucket and
        series (a decision's outcome, or the event's type)."""
        if width < 1 or (until - since).total_seconds() > _MAX_BUCKETS * width:
            raise ValueError("a tally covers at most 1000 buckets of at least a second")
        return await self._windows.tally(types=types, since=since, until=until, width=width)

    async def events_at(self, seqs: Sequence[int]) -> list[AuditEvent]:
        """The events of ``seqs`` (at most 1000) that exist, in seq order."""
        if not seqs:
            return []
        return await self._store.events_at(list(seqs)[:_MAX_LIMIT])

    async def get_event(self, seq: int) -> AuditEvent | None:
        """The event ``seq``, or None."""
        return await self._store.event(seq)


def _item(event: AuditEvent) -> tuple[BatchItem, dict[str, Any]]:
    """``event`` as queued (its time in UTC, its data in canonical form), and its plain data."""
    text, data = canonical_form(event.data)
    return BatchItem(AuditEvent(event.type, utc(event.at), event.subject_id, data), text), data


def _capped(limit: int) -> int:
    return max(0, min(limit, _MAX_LIMIT))


def _chain_row(row: StoredEvent) -> ChainRow:
    return ChainRow(*row)  # the same fields, in the same order
