"""The SMS outbox's rows: ``ceremonies`` rows of one purpose, appended and read newest first.

``piigate.factors.sms.outbox.OutboxSender`` seals each message (keyring ciphertext in
``secret``, only the number's hint in ``data``) before it reaches this module, which keeps the
rows and drops those past their retention.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from piigate.factors import CeremonyState
from piigate.store._sql import Repo, utc
from piigate.store.ceremonies import CeremonyRow, _row
from piigate.store.db import Database
from piigate.store.tables import ceremonies

__all__ = ["OutboxStore"]

# Outbox rows belong to no subject; the column is required.
_NO_SUBJECT = ""


class OutboxStore(Repo):
    """Outbox messages as ``ceremonies`` rows of ``purpose``."""

    def __init__(self, db: Database, *, purpose: str) -> None:
        super().__init__(db)
        self.purpose = purpose

    async def append(
        self, *, id: str, secret: str, data: Mapping[str, Any], now: datetime, expires_at: datetime
    ) -> None:
        """Store one message and, in the same transaction, drop the expired ones."""
        expired = delete(ceremonies).where(
            ceremonies.c.purpose == self.purpose, ceremonies.c.expires_at <= utc(now)
        )
        insert = ceremonies.insert().values(
            id=id,
            subject_id=_NO_SUBJECT,
            purpose=self.purpose,
            state=CeremonyState.OPEN,
            secret=secret,
            data=dict(data),
            created_at=utc(now),
            expires_at=utc(expires_at),
        )

        def record(conn: Connection) -> None:
            conn.execute(expired)
            conn.execute(insert)

        await self.db.write(record)

    async def latest(self, limit: int) -> list[CeremonyRow]:
        """The newest ``limit`` messages, newest first."""
        stmt = (
            select(ceremonies)
            .where(ceremonies.c.purpose == self.purpose)
            .order_by(ceremonies.c.created_at.desc(), ceremonies.c.id.desc())
            .limit(limit)
        )
        return [_row(found) for found in await self._all(stmt)]
