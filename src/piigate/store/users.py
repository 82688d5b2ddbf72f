"""Local users (the embedded identity provider)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select

from piigate.store._sql import Repo, insert_for, utc
from piigate.store.db import AlreadyExists
from piigate.store.tables import users

__all__ = ["UserRow", "UserStore"]


@dataclass(frozen=True, slots=True)
class UserRow:
    username: str
    password_hash: str
    roles: tuple[str, ...]
    created_at: datetime
    disabled: bool = False


def _row(found: Row[Any]) -> UserRow:
    data = found._asdict()
    data["roles"] = tuple(data["roles"])
    data["disabled"] = bool(data["disabled"])
    return UserRow(**data)


class UserStore(Repo):
    async def add_user(
        self, username: str, password_hash: str, roles: Iterable[str], now: datetime
    ) -> UserRow:
        """Create a user; raises :class:`AlreadyExists` when the name is taken."""
        row = UserRow(username, password_hash, tuple(sorted(set(roles))), utc(now))
        stmt = (
            insert_for(self.db, users)
            .values(
                username=row.username,
                password_hash=row.password_hash,
                roles=list(row.roles),
                created_at=row.created_at,
                disabled=False,
            )
            .on_conflict_do_nothing(index_elements=[users.c.username])
            .returning(users.c.username)
        )
        if await self._write_returning(stmt) is None:
            raise AlreadyExists("that username is taken")
        return row

    async def get_user(self, username: str) -> UserRow | None:
        found = await self._first(select(users).where(users.c.username == username))
        return None if found is None else _row(found)
