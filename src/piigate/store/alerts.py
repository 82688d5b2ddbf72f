"""The alerts table: an alert stored once per source event, listed, acknowledged once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update

from piigate.audit.alerts import Alert, AlertDraft, AlertKind, Severity
from piigate.store._sql import Repo, insert_for, utc
from piigate.store.tables import alerts

__all__ = ["AlertStore"]

_KINDS = frozenset(kind.value for kind in AlertKind)
_SEVERITIES = frozenset(severity.value for severity in Severity)


class AlertStore(Repo):
    """Alerts over one :class:`~piigate.store.db.Database`."""

    async def raise_alert(self, alert_id: str, draft: AlertDraft) -> Alert | None:
        """Store ``draft`` as ``alert_id``; None when its source event already has an alert
        (raised by this node before, or by another node)."""
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
        if await self._write_returning(statement) is None:
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
