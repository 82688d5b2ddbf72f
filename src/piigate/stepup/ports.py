"""The engine's ports: narrow protocols, each with an in-memory implementation beside it."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime
from typing import Protocol

from piigate.model import AuditEvent, Challenge, ChallengeState

__all__ = [
    "AuditSink",
    "ChallengeStore",
    "GrantLedger",
    "MemoryAudit",
    "MemoryChallenges",
    "MemoryGrantLedger",
]


class ChallengeStore(Protocol):
    async def create(self, challenge: Challenge) -> None: ...

    async def get(self, challenge_id: str) -> Challenge | None: ...


class GrantLedger(Protocol):
    async def consume(self, grant_id: str, *, expires_at: datetime, now: datetime) -> bool:
        """Mark a single-use grant as spent; False when it already was (a replay)."""
        ...


class AuditSink(Protocol):
    async def append(self, event: AuditEvent) -> AuditEvent: ...

    async def append_if_open(
        self, event: AuditEvent, *, challenge_id: str, at: datetime
    ) -> AuditEvent | None:
        """``append(event)`` if challenge ``challenge_id`` can still be answered at ``at``
        (pending, attempts left, unexpired) when the event is committed; else None, and
        nothing appended."""
        ...


class MemoryChallenges:
    def __init__(self) -> None:
        self.items: dict[str, Challenge] = {}

    async def create(self, challenge: Challenge) -> None:
        self.items[challenge.id] = challenge

    async def get(self, challenge_id: str) -> Challenge | None:
        return self.items.get(challenge_id)


class MemoryGrantLedger:
    def __init__(self) -> None:
        self.used: dict[str, datetime] = {}

    async def consume(self, grant_id: str, *, expires_at: datetime, now: datetime) -> bool:
        if grant_id in self.used:
            return False
        self.used[grant_id] = expires_at
        return True


class MemoryAudit:
    """Keeps events in a list (tests, ``policy explain``); no chain. ``challenges``: where
    :meth:`append_if_open` looks challenges up (none: it finds none)."""

    def __init__(self, challenges: MemoryChallenges | None = None) -> None:
        self.events: list[AuditEvent] = []
        self.challenges = challenges
        self._seq = itertools.count(1)

    async def append(self, event: AuditEvent) -> AuditEvent:
        stored = dataclasses.replace(event, seq=next(self._seq))
        self.events.append(stored)
        return stored

    async def append_if_open(
        self, event: AuditEvent, *, challenge_id: str, at: datetime
    ) -> AuditEvent | None:
        found = None if self.challenges is None else self.challenges.items.get(challenge_id)
        if (
            found is None
            or found.state is not ChallengeState.PENDING
            or found.attempts >= found.max_attempts
            or found.expires_at <= at
        ):
            return None
        return await self.append(event)
