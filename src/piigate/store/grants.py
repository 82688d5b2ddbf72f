"""Single-use grants (``max_age: 0``): a grant id may be consumed once, across all nodes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from piigate.store._sql import Repo, insert_for, utc
from piigate.store.tables import used_grants

__all__ = ["GrantStore"]


class GrantStore(Repo):
    async def consume_grant(self, grant_id: str, *, expires_at: datetime, now: datetime) -> bool:
        """Mark the grant used; False when it was used already (by any process).

        The primary key makes this atomic: of two concurrent INSERTs one wins, the other hits
        the conflict and inserts nothing. The row is kept until the grant expires, after which
        the grant is refused for its expiry anyway and :meth:`purge_used_grants` may drop it.
        """
        stmt = (
            insert_for(self.db, used_grants)
            .values(grant_id=grant_id, used_at=utc(now), expires_at=utc(expires_at))
            .on_conflict_do_nothing(index_elements=[used_grants.c.grant_id])
            .returning(used_grants.c.grant_id)
        )
        return await self._write_returning(stmt) is not None

    async def purge_used_grants(self, now: datetime) -> int:
        """Forget used grants that have expired; returns how many rows were deleted."""
        return await self._write(delete(used_grants).where(used_grants.c.expires_at <= utc(now)))
