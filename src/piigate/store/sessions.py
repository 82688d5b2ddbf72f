"""Console sessions from a local login or a sign-in at the identity provider, stored by the
hash of their token (never the token)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, select

from piigate.store._sql import Repo, utc
from piigate.store.tables import sessions

__all__ = ["SessionRow", "SessionStore"]


@dataclass(frozen=True, slots=True)
class SessionRow:
    token_hash: str
    username: str
    level: str | None
    amr: tuple[str, ...]
    auth_time: datetime
    created_at: datetime
    expires_at: datetime
    scram_verifier: str | None = None
    # A sign-in at the identity provider: who vouched, and the roles it gave.
    issuer: str | None = None
    roles: tuple[str, ...] | None = None


def _row(found: Row[Any]) -> SessionRow:
    data = found._asdict()
    data["amr"] = tuple(data["amr"])
    data["roles"] = None if data["roles"] is None else tuple(data["roles"])
    return SessionRow(**data)


class SessionStore(Repo):
    async def create_session(
        self,
        token_hash: str,
        username: str,
        level: str | None,
        amr: Iterable[str],
        auth_time: datetime,
        expires_at: datetime,
        now: datetime,
        *,
        roles: Iterable[str] | None = None,
        issuer: str | None = None,
    ) -> SessionRow:
        row = SessionRow(
            token_hash=token_hash,
            username=username,
            level=level,
            amr=tuple(amr),
            auth_time=utc(auth_time),
            created_at=utc(now),
            expires_at=utc(expires_at),
            issuer=issuer,
            roles=None if roles is None else tuple(roles),
        )
        await self._write(
            sessions.insert().values(
                token_hash=row.token_hash,
                username=row.username,
                level=row.level,
                amr=list(row.amr),
                auth_time=row.auth_time,
                created_at=row.created_at,
                expires_at=row.expires_at,
                issuer=row.issuer,
                roles=None if row.roles is None else list(row.roles),
            )
        )
        return row

    async def set_session_scram(self, token_hash: str, verifier: str) -> bool:
        """Keep a database credential's SCRAM verifier with its session."""
        stmt = (
            sessions.update()
            .where(sessions.c.token_hash == token_hash)
            .values(scram_verifier=verifier)
        )
        return bool(await self._write(stmt))

    async def get_session_by_id(self, session_id: str, now: datetime) -> SessionRow | None:
        """The open session whose id (its token hash's first 16 hex digits) is ``session_id``;
        None when there is none or the prefix is not unique."""
        if len(session_id) != 16 or any(ch not in "0123456789abcdef" for ch in session_id):
            return None
        stmt = select(sessions).where(
            sessions.c.token_hash.startswith(session_id, autoescape=True),
            sessions.c.expires_at > utc(now),
        )
        found = await self._all(stmt)
        if len(found) != 1:
            return None
        return _row(found[0])

    async def get_session(self, token_hash: str, now: datetime) -> SessionRow | None:
        """The session, or None when unknown or expired at ``now``."""
        stmt = select(sessions).where(
            sessions.c.token_hash == token_hash, sessions.c.expires_at > utc(now)
        )
        found = await self._first(stmt)
        if found is None:
            return None
        return _row(found)

    async def delete_session(self, token_hash: str) -> bool:
        return await self._changed(delete(sessions).where(sessions.c.token_hash == token_hash))

    async def purge_sessions(self, now: datetime) -> int:
        return await self._write(delete(sessions).where(sessions.c.expires_at <= utc(now)))
