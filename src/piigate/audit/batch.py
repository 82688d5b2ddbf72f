"""One group commit: a batch of audit events (and the rows queued with them) in ONE transaction.

The same function runs wherever the transaction runs: in a worker thread of the server, inside
PostgreSQL's async connection, or in the audit writer process (``piigate.audit.writer``). It is
plain synchronous SQLAlchemy Core on a connection that has already begun the transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Dialect, Table, bindparam, select, update

from piigate.audit.chain import event_hash_text
from piigate.model import AuditEvent
from piigate.store.tables import audit_events, audit_head

__all__ = ["HEAD_READ", "BatchItem", "Link", "write_batch"]

# What the chain gave one event: (seq, prev_hash, hash).
Link = tuple[int, str, str]


class BatchItem(NamedTuple):
    """One queued write: an event (``at`` in UTC, ``text`` its canonical data) and/or rows."""

    event: AuditEvent | None
    text: str = "{}"
    rows: tuple[tuple[Table, Mapping[str, Any]], ...] = ()


_HEAD_ID = 1
# The writer's statements, built once: a statement object built per batch costs a cache-key
# computation each time, and values baked into it a compilation. Bound parameters throughout.
_HEAD_UPDATE = (
    update(audit_head)
    .where(audit_head.c.id == _HEAD_ID)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
HEAD_READ = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == _HEAD_ID)
# Row lock on the head: appenders in other processes queue here, and each then reads the head
# its predecessor committed (READ COMMITTED re-reads the locked row).
_HEAD_LOCK = HEAD_READ.with_for_update()


def write_batch(items: Sequence[BatchItem], dialect: str, conn: Connection) -> list[Link | None]:
    """The rows queued with the batch, then the chained events, then the head; the link of
    each event in order (None for a rows-only item). Runs inside one transaction."""
    # On SQLite the transaction opened with BEGIN IMMEDIATE: the database-wide write lock is
    # ours before the head is read, so no other process can append in between.
    head_query = _HEAD_LOCK if dialect == "postgresql" else HEAD_READ
    extra: dict[Table, list[Mapping[str, Any]]] = {}
    for item in items:
        for table, row in item.rows:
            extra.setdefault(table, []).append(row)
    for table, table_rows in extra.items():
        _insert_rows(conn, table, table_rows)
    links: list[Link | None] = []
    rows: list[dict[str, Any]] = []
    if any(item.event is not None for item in items):
        head = conn.execute(head_query).one()
        seq, prev_hash = int(head.seq), str(head.hash)
    for item in items:
        event = item.event
        if event is None:
            links.append(None)
            continue
        seq += 1
        digest = event_hash_text(prev_hash, seq, event.at, event.type, event.subject_id, item.text)
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
    if rows:
        _insert_rows(conn, audit_events, rows)
        conn.execute(_HEAD_UPDATE, {"new_seq": seq, "new_hash": prev_hash})
    return links


class _BulkInsert:
    """An INSERT of many rows, compiled once per table, columns and dialect, and executed at the
    driver level (``exec_driver_sql``) with each value passed through its column type's own bind
    processor -- the values SQLAlchemy's ``execute(insert, rows)`` would bind, without its
    per-row parameter construction, which was most of the writer's CPU.
    """

    def __init__(self, table: Table, columns: tuple[str, ...], dialect: Dialect) -> None:
        compiled = table.insert().values({name: bindparam(name) for name in columns})
        self.compiled = compiled.compile(dialect=dialect)
        order = self.compiled.positiontup
        if not self.compiled.positional or order is None:
            raise TypeError(f"{dialect.name}: a positional paramstyle is needed")
        self.sql = str(self.compiled)
        self.order = tuple(order)
        self.processors = tuple(
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order
        )

    def run(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        pairs = tuple(zip(self.order, self.processors, strict=True))
        params = [
            tuple(row[name] if proc is None else proc(row[name]) for name, proc in pairs)
            for row in rows
        ]
        conn.exec_driver_sql(self.sql, params)


@functools.cache
def _bulk_insert(table: Table, columns: tuple[str, ...], dialect: Dialect) -> _BulkInsert:
    return _BulkInsert(table, columns, dialect)


def _insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (all with the keys of the first) into ``table``."""
    _bulk_insert(table, tuple(rows[0]), conn.dialect).run(conn, rows)
