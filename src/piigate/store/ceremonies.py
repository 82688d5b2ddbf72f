"""Single-use ceremony state: a WebAuthn challenge, an SMS code sent, a push to a device, an
enrollment token — whatever one node starts and another may finish.

A ceremony is opened once and closed once: :meth:`CeremonyStore.close_ceremony` is a
compare-and-set on ``state`` (``open`` → ``used`` / ``approved`` / ``denied`` / ``expired``), so of
two nodes answering the same ceremony exactly one wins, and a replayed answer finds it closed.
``secret`` holds only what the caller already protected (a keyring ciphertext or a hash).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select, union_all, update

from piigate.factors import CeremonyState
from piigate.store._sql import Repo, insert_for, utc
from piigate.store.tables import ceremonies

__all__ = ["CEREMONY_STATES", "CeremonyRow", "CeremonyStore"]

CEREMONY_STATES = frozenset(CeremonyState)


@dataclass(frozen=True, slots=True)
class CeremonyRow:
    id: str
    subject_id: str
    purpose: str
    state: str
    created_at: datetime
    expires_at: datetime
    challenge_id: str | None = None
    factor_id: str | None = None
    secret: str | None = field(default=None, repr=False)
    data: dict[str, Any] = field(default_factory=dict)
    closed_at: datetime | None = None


def _row(found: Row[Any]) -> CeremonyRow:
    values = found._asdict()
    values["data"] = dict(values["data"] or {})
    return CeremonyRow(**values)


def _values(row: CeremonyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "subject_id": row.subject_id,
        "purpose": row.purpose,
        "state": row.state,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "challenge_id": row.challenge_id,
        "factor_id": row.factor_id,
        "secret": row.secret,
        "data": row.data,
    }


def _check_state(state: str) -> None:
    if state not in CEREMONY_STATES:
        raise ValueError(f"unknown ceremony state {state!r}")


class CeremonyStore(Repo):
    async def open_ceremony(
        self,
        *,
        id: str,
        subject_id: str,
        purpose: str,
        now: datetime,
        expires_at: datetime,
        challenge_id: str | None = None,
        factor_id: str | None = None,
        secret: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> CeremonyRow:
        """Store a new open ceremony (``id`` like ``cer_...``); ``secret`` already protected."""
        row = CeremonyRow(
            id=id,
            subject_id=subject_id,
            purpose=purpose,
            state=CeremonyState.OPEN,
            created_at=utc(now),
            expires_at=utc(expires_at),
            challenge_id=challenge_id,
            factor_id=factor_id,
            secret=secret,
            data=dict(data or {}),
        )
        await self._write(ceremonies.insert().values(_values(row)))
        return row

    async def open_ceremony_once(
        self,
        *,
        id: str,
        subject_id: str,
        purpose: str,
        now: datetime,
        expires_at: datetime,
        secret: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> CeremonyRow:
        """Open the ceremony ``id`` unless it exists; the stored one either way.

        For rows shared by every node (the SMS number key): of nodes racing to create it, one
        inserts and all of them read back that one row.
        """
        row = CeremonyRow(
            id=id,
            subject_id=subject_id,
            purpose=purpose,
            state=CeremonyState.OPEN,
            created_at=utc(now),
            expires_at=utc(expires_at),
            secret=secret,
            data=dict(data or {}),
        )
        insert = insert_for(self.db, ceremonies).values(_values(row))
        stmt = insert.on_conflict_do_nothing(index_elements=[ceremonies.c.id])
        read = select(ceremonies).where(ceremonies.c.id == id)

        def create(conn: Connection) -> CeremonyRow:
            conn.execute(stmt)
            return _row(conn.execute(read).one())

        return await self.db.write(create)

    async def get_ceremony(self, ceremony_id: str) -> CeremonyRow | None:
        found = await self._first(select(ceremonies).where(ceremonies.c.id == ceremony_id))
        return None if found is None else _row(found)

    async def list_ceremonies(
        self,
        *,
        subject_id: str | None = None,
        challenge_id: str | None = None,
        factor_id: str | None = None,
        purposes: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[CeremonyRow]:
        """Ceremonies matching every filter given (``since``: opened at or after), oldest first."""
        stmt = select(ceremonies)
        if since is not None:
            stmt = stmt.where(ceremonies.c.created_at >= utc(since))
        if subject_id is not None:
            stmt = stmt.where(ceremonies.c.subject_id == subject_id)
        if challenge_id is not None:
            stmt = stmt.where(ceremonies.c.challenge_id == challenge_id)
        if factor_id is not None:
            stmt = stmt.where(ceremonies.c.factor_id == factor_id)
        if purposes is not None:
            stmt = stmt.where(ceremonies.c.purpose.in_([str(p) for p in purposes]))
        if states is not None:
            stmt = stmt.where(ceremonies.c.state.in_([str(s) for s in states]))
        stmt = stmt.order_by(ceremonies.c.created_at, ceremonies.c.id).limit(limit)
        return [_row(found) for found in await self._all(stmt)]

    async def recent_ceremonies(
        self,
        *,
        since: Mapping[str, datetime],
        states: Mapping[str, Iterable[str]] | None = None,
        limit: int = 100,
    ) -> list[CeremonyRow]:
        """The ceremonies of each purpose in ``since`` opened at or after its time, in the
        states ``states`` names for that purpose (any state when it names none): one query, at
        most ``limit`` of each purpose, the oldest first within each."""
        parts = []
        for purpose, after in since.items():
            part = select(ceremonies).where(
                ceremonies.c.purpose == str(purpose), ceremonies.c.created_at >= utc(after)
            )
            wanted = (states or {}).get(purpose)
            if wanted is not None:
                part = part.where(ceremonies.c.state.in_([str(s) for s in wanted]))
            ordered = part.order_by(ceremonies.c.created_at, ceremonies.c.id).limit(limit)
            # Each part in a subquery of its own: SQLite allows no LIMIT on a UNION's parts.
            parts.append(select(ordered.subquery()))
        if not parts:
            return []
        query = parts[0] if len(parts) == 1 else union_all(*parts)
        return [_row(found) for found in await self._all(query)]

    async def count_ceremonies(
        self,
        *,
        since: datetime,
        subject_id: str | None = None,
        factor_id: str | None = None,
        purposes: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
    ) -> int:
        """How many ceremonies matching the filters were opened at or after ``since``."""
        stmt = select(func.count()).select_from(ceremonies)
        stmt = stmt.where(ceremonies.c.created_at >= utc(since))
        if subject_id is not None:
            stmt = stmt.where(ceremonies.c.subject_id == subject_id)
        if factor_id is not None:
            stmt = stmt.where(ceremonies.c.factor_id == factor_id)
        if purposes is not None:
            stmt = stmt.where(ceremonies.c.purpose.in_([str(p) for p in purposes]))
        if states is not None:
            stmt = stmt.where(ceremonies.c.state.in_([str(s) for s in states]))
        return int(await self._scalar(stmt))

    async def close_ceremony(
        self,
        ceremony_id: str,
        *,
        new: str,
        now: datetime,
        expected: str = CeremonyState.OPEN,
        data: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move ``expected`` → ``new`` (compare-and-set): True for exactly one caller.

        ``data``, when given, replaces the ceremony's data in the same statement (what the
        answer was: the approving device, the reason of a denial).
        """
        _check_state(new)
        values: dict[str, Any] = {"state": new, "closed_at": utc(now)}
        if data is not None:
            values["data"] = dict(data)
        stmt = (
            update(ceremonies)
            .where(ceremonies.c.id == ceremony_id, ceremonies.c.state == expected)
            .values(values)
        )
        return await self._changed(stmt)

    async def close_open_ceremonies(
        self, *, challenge_id: str, purposes: Iterable[str], new: str, now: datetime
    ) -> int:
        """Close every still-open ceremony of a challenge (a resent SMS voids the older code)."""
        _check_state(new)
        stmt = (
            update(ceremonies)
            .where(
                ceremonies.c.challenge_id == challenge_id,
                ceremonies.c.purpose.in_([str(p) for p in purposes]),
                ceremonies.c.state == CeremonyState.OPEN,
            )
            .values(state=new, closed_at=utc(now))
        )
        return await self._write(stmt)

    async def purge_ceremonies(self, *, expired_before: datetime) -> int:
        """Drop ceremonies whose life ended before ``expired_before`` (kept a while after their
        end for rate limits and investigation; the audit trail keeps what happened)."""
        stmt = delete(ceremonies).where(ceremonies.c.expires_at < utc(expired_before))
        return await self._write(stmt)
