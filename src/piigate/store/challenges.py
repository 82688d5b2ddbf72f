"""Pending step-up challenges: stored once, then only counted and moved between states."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from piigate.errors import NotFound
from piigate.model import ChallengeState
from piigate.store._sql import Repo, utc
from piigate.store.driver import DriverStatement, Transaction
from piigate.store.tables import TS, challenges

__all__ = ["ChallengeRow", "ChallengeStore", "challenge_open"]

_COLUMNS = frozenset(challenges.c.keys())
_OPEN = select(challenges.c.id).where(
    challenges.c.id == bindparam("challenge_id"),
    challenges.c.state == ChallengeState.PENDING.value,
    challenges.c.attempts < challenges.c.max_attempts,
    challenges.c.expires_at > bindparam("at", type_=TS),
)
_OPEN_PLAIN = DriverStatement(_OPEN)
# FOR SHARE: a concurrent compare-and-set of the state (an approval, a denial) or a counted
# attempt waits for the caller's commit, so what it found holds until then.
_OPEN_LOCKED = DriverStatement(_OPEN.with_for_update(read=True))


def challenge_open(conn: Transaction, challenge_id: str, *, at: datetime) -> bool:
    """Whether challenge ``challenge_id`` can still be answered at ``at`` -- pending, with
    attempts left, unexpired -- in ``conn``'s write transaction, where it stays so until the
    commit: PostgreSQL share-locks the row; SQLite's writers already wait for the database's
    write lock, which the transaction holds (``BEGIN IMMEDIATE``)."""
    statement = _OPEN_LOCKED if conn.dialect.name == "postgresql" else _OPEN_PLAIN
    found = statement.execute(conn, {"challenge_id": challenge_id, "at": utc(at)})
    return bool(found.rows)


@dataclass(frozen=True, slots=True)
class ChallengeRow:
    id: str
    subject_id: str
    state: str
    created_at: datetime
    expires_at: datetime
    attempts: int
    max_attempts: int
    body: dict[str, Any]
    last_attempt_at: datetime | None = None
    decision_id: str | None = None
    requested_by: str | None = None
    approval: dict[str, Any] | None = None
    grant_collected_at: datetime | None = None


class ChallengeStore(Repo):
    async def insert_challenge(self, row: Mapping[str, Any]) -> None:
        """Store a new challenge. ``row`` holds column values; ``body`` is JSON (no PII)."""
        unknown = set(row) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown challenge columns: {sorted(unknown)}")
        values = dict(row)
        values.setdefault("attempts", 0)
        await self._write(challenges.insert().values(values))

    async def get_challenge(self, challenge_id: str) -> ChallengeRow | None:
        found = await self._first(select(challenges).where(challenges.c.id == challenge_id))
        return None if found is None else ChallengeRow(**found._asdict())

    async def record_attempt(self, challenge_id: str, *, now: datetime) -> int:
        """Count one verification attempt and return the new count, atomically.

        Parallel attempts each get a distinct count, so the caller compares it with
        ``max_attempts`` and no burst of guesses can slip past the cap. Raises ``NotFound``
        when there is no such challenge.
        """
        stmt = (
            update(challenges)
            .where(challenges.c.id == challenge_id)
            .values(attempts=challenges.c.attempts + 1, last_attempt_at=utc(now))
            .returning(challenges.c.attempts)
        )
        attempts = await self._write_returning(stmt)
        if attempts is None:
            raise NotFound("no such challenge")
        return int(attempts)

    async def set_challenge_state(
        self,
        challenge_id: str,
        *,
        expected: str,
        new: str,
        approval: Mapping[str, Any] | None = None,
        collected_at: datetime | None = None,
    ) -> bool:
        """Compare-and-set the state: True only for the one caller that saw ``expected``.

        ``approval`` (how it was approved) and ``collected_at`` (its grant already handed out,
        as when the verifying request receives it itself) are written in the same statement.
        """
        values: dict[str, Any] = {"state": new}
        if approval is not None:
            values["approval"] = dict(approval)
        if collected_at is not None:
            values["grant_collected_at"] = utc(collected_at)
        stmt = (
            update(challenges)
            .where(challenges.c.id == challenge_id, challenges.c.state == expected)
            .values(values)
        )
        return await self._changed(stmt)

    async def collect_challenge_grant(self, challenge_id: str, *, now: datetime) -> bool:
        """Mark the grant of an approved challenge handed out: True once, for one caller."""
        stmt = (
            update(challenges)
            .where(
                challenges.c.id == challenge_id,
                challenges.c.state == ChallengeState.APPROVED,
                challenges.c.approval.is_not(None),
                challenges.c.grant_collected_at.is_(None),
            )
            .values(grant_collected_at=utc(now))
        )
        return await self._changed(stmt)

    async def list_challenges(
        self, *, state: str, created_after: datetime, limit: int = 200
    ) -> list[ChallengeRow]:
        """Challenges in ``state`` opened after ``created_after``, newest first."""
        stmt = (
            select(challenges)
            .where(challenges.c.state == state, challenges.c.created_at > utc(created_after))
            .order_by(challenges.c.created_at.desc())
            .limit(limit)
        )
        return [ChallengeRow(**found._asdict()) for found in await self._all(stmt)]
