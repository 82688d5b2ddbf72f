"""Reads of the audit events over a time window, for the console's pages: each subject's
latest decision ranked by risk, and events counted per time bucket and series."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Integer, case, cast, extract, func, select

from piigate.model import AuditEvent
from piigate.store.audit import event_of, json_text
from piigate.store.db import Database
from piigate.store.tables import audit_events

__all__ = ["AuditWindows", "RankedDecision", "TallyRow"]

_DECISION = "decision"


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


class AuditWindows:
    """The window reads over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
        score = cast(json_text(self.db.dialect, "risk", "score"), Integer)
        query = (
            select(audit_events, latest.c.decisions, scanned.label("scanned"))
            .join(latest, latest.c.seq == audit_events.c.seq)
            .order_by(score.desc(), audit_events.c.at.desc(), audit_events.c.seq.desc())
            .limit(limit)
        )
        rows = await self.db.read(lambda conn: conn.execute(query).all())
        ranked = [RankedDecision(event_of(row), int(row.decisions)) for row in rows]
        return ranked, int(rows[0].scanned) if rows else 0

    async def tally(
        self, *, types: Sequence[str], since: datetime, until: datetime, width: int
    ) -> list[TallyRow]:
        """Events of ``types`` in ``[since, until)`` counted per time bucket of ``width``
        seconds from ``since`` and per series: a decision's outcome, or another event's type."""
        bucket = self._bucket(since, width)
        series = case(
            (audit_events.c.type == _DECISION, json_text(self.db.dialect, "outcome")),
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

    def _bucket(self, since: datetime, width: int) -> ColumnElement[Any]:
        """The bucket of an event's time: whole ``width``-second steps since ``since``."""
        start = int(since.timestamp())
        if self.db.dialect == "postgresql":
            seconds = extract("epoch", audit_events.c.at) - start
            return cast(func.floor(seconds / width), Integer)
        seconds = cast(func.strftime("%s", audit_events.c.at), Integer) - start
        bucket: ColumnElement[Any] = seconds // width
        return bucket
