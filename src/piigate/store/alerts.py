"""The alert desk's tables: an alert stored once per source event, listed, acknowledged once;
and the watermark of the audit trail examined for alerts, with the reads a catch-up makes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Row, Select, func, or_, select, update

from piigate.audit.alerts import Alert, AlertDraft, AlertKind, Severity
from piigate.store._sql import Repo, insert_for, utc
from piigate.store.tables import alert_watermark, alerts, audit_events

__all__ = ["AlertStore"]

_KINDS = frozenset(kind.value for kind in AlertKind)
_SEVERITIES = frozenset(severity.value for severity in Severity)
_WATERMARK: Final = 1


class AlertStore(Repo):
    """Alerts over one :class:`~piigate.store.db.Database`."""

    async def raise_alert(
        self, alert_id: str, draft: AlertDraft, *, unless_within: timedelta | None = None
    ) -> Alert | None:
        """Store ``draft`` as ``alert_id``; None when its source event already has an alert
        (raised by this node before, or by another node), or, with ``unless_within``, when
        :meth:`alert_around` finds an alert of its kind and subject within that of it.

        The check and the insert are one transaction, under a lock on the kind and subject
        (PostgreSQL's advisory lock; SQLite's write transactions are serial anyway): of nodes
        raising from one persisting signal at once, one stores an alert."""
        statement = (
            insert_for(self.db, alerts)
            .values(
                id=alert_id,
                kind=draft.kind.value,
                severity=draft.severity.value,
                subject_id=draft.subject_id,
                at=utc(draft.at),
                event_seq=draft.event_seq,
                summary=draft.summary,
            )
            .on_conflict_do_nothing(index_elements=[alerts.c.event_seq])
            .returning(alerts.c.id)
        )
        if unless_within is None:
            stored = await self._write_returning(statement)
        else:
            around = _around(draft.kind.value, draft.subject_id, draft.at, unless_within)
            key = f"piigate.alerts:{draft.kind.value}:{draft.subject_id}"

            def raise_unless(conn: Connection) -> Any:
                if self.db.dialect == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
                if conn.execute(around).first() is not None:
                    return None
                return conn.execute(statement).scalar_one_or_none()

            stored = await self.db.write(raise_unless)
        if stored is None:
            return None
        return Alert(
            id=alert_id,
            kind=draft.kind,
            severity=draft.severity,
            subject_id=draft.subject_id,
            at=utc(draft.at),
            event_seq=draft.event_seq,
            summary=draft.summary,
        )

    async def get_alert(self, alert_id: str) -> Alert | None:
        row = await self._first(select(alerts).where(alerts.c.id == alert_id))
        return None if row is None else _alert(row)

    async def list_alerts(
        self,
        *,
        open_only: bool = False,
        acknowledged_only: bool = False,
        subject_id: str | None = None,
        kinds: tuple[str, ...] = (),
        limit: int = 100,
    ) -> list[Alert]:
        """The newest alerts first."""
        query = select(alerts)
        if open_only:
            query = query.where(alerts.c.acknowledged_at.is_(None))
        if acknowledged_only:
            query = query.where(alerts.c.acknowledged_at.is_not(None))
        if subject_id is not None:
            query = query.where(alerts.c.subject_id == subject_id)
        if kinds:
            query = query.where(alerts.c.kind.in_(list(kinds)))
        query = query.order_by(alerts.c.event_seq.desc()).limit(limit)
        return [_alert(row) for row in await self._all(query)]

    async def acknowledge_alert(self, alert_id: str, *, by: str, at: datetime) -> bool:
        """Mark an open alert acknowledged by ``by``: True when this call did (compare-and-set:
        an alert is acknowledged once)."""
        statement = (
            update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.acknowledged_at.is_(None))
            .values(acknowledged_by=by, acknowledged_at=utc(at))
        )
        return await self._changed(statement)

    async def alert_around(
        self, kind: str, subject_id: str | None, *, at: datetime, within: timedelta
    ) -> Alert | None:
        """The newest alert of ``kind`` for ``subject_id`` (None: for no subject) dated within
        ``within`` of ``at``, either side, and not acknowledged by ``at``; None when there is
        none. An answer that depends on the event's time only, not on when it is asked, so that
        examining an event again (a catch-up) answers as the first time did."""
        row = await self._first(_around(kind, subject_id, at, within))
        return None if row is None else _alert(row)

    # -- the watermark -------------------------------------------------------------------------
    async def watermark(self) -> int | None:
        """The seq up to which every source event has been examined; None before the first
        catch-up."""
        found = await self._scalar(
            select(alert_watermark.c.seq).where(alert_watermark.c.id == _WATERMARK)
        )
        return None if found is None else int(found)

    async def advance_watermark(self, seq: int, *, at: datetime) -> int:
        """Move the watermark forward to ``seq`` (never back: of catch-ups ending in any order
        the furthest holds); the watermark afterwards."""
        insert = insert_for(self.db, alert_watermark).values(id=_WATERMARK, seq=seq, at=utc(at))
        statement = insert.on_conflict_do_update(
            index_elements=[alert_watermark.c.id],
            set_={"seq": insert.excluded.seq, "at": insert.excluded.at},
            where=alert_watermark.c.seq < insert.excluded.seq,
        )
        read = select(alert_watermark.c.seq).where(alert_watermark.c.id == _WATERMARK)

        def advance(conn: Connection) -> int:
            conn.execute(statement)
            return int(conn.execute(read).scalar_one())

        return await self.db.write(advance)

    async def event_seqs(
        self, *, after: int, through: int, types: Sequence[str], limit: int
    ) -> list[int]:
        """The seqs of the audit events of ``types`` in ``(after, through]``, ascending, at most
        ``limit``: what a catch-up must have examined. Only seqs: it reads the events
        themselves for the seqs its node has not examined already."""
        query = (
            select(audit_events.c.seq)
            .where(
                audit_events.c.seq > after,
                audit_events.c.seq <= through,
                audit_events.c.type.in_(list(types)),
            )
            .order_by(audit_events.c.seq)
            .limit(limit)
        )
        return [int(row.seq) for row in await self._all(query)]


def _alert(row: Row[Any]) -> Alert:
    return Alert(
        id=row.id,
        kind=AlertKind(row.kind) if row.kind in _KINDS else AlertKind.OTHER,
        severity=Severity(row.severity) if row.severity in _SEVERITIES else Severity.HIGH,
        subject_id=row.subject_id,
        at=row.at,
        event_seq=int(row.event_seq),
        summary=row.summary,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
    )


def _around(kind: str, subject_id: str | None, at: datetime, within: timedelta) -> Select[Any]:
    """:meth:`AlertStore.alert_around`'s query."""
    return (
        select(alerts)
        .where(
            alerts.c.kind == kind,
            alerts.c.subject_id.is_(None)
            if subject_id is None
            else alerts.c.subject_id == subject_id,
            alerts.c.at >= utc(at - within),
            alerts.c.at <= utc(at + within),
            or_(alerts.c.acknowledged_at.is_(None), alerts.c.acknowledged_at > utc(at)),
        )
        .order_by(alerts.c.event_seq.desc())
        .limit(1)
    )
