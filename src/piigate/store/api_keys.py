"""API keys (``pgk_...``), stored by the hash of the key; the key itself is shown once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, exc, select

from piigate.store._sql import Repo, utc
from piigate.store.db import AlreadyExists
from piigate.store.tables import api_keys

__all__ = ["ApiKeyRow", "ApiKeyStore"]


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    id: str
    name: str
    key_hash: bytes
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None

    def __repr__(self) -> str:
        # The hash is not the key, but there is no reason to print it either.
        return f"ApiKeyRow(id={self.id!r}, name={self.name!r}, revoked={self.revoked_at})"


def _row(found: Row[Any]) -> ApiKeyRow:
    data = found._asdict()
    data["key_hash"] = bytes(data["key_hash"])
    data["roles"] = tuple(data["roles"])
    data["scopes"] = tuple(data["scopes"])
    return ApiKeyRow(**data)


class ApiKeyStore(Repo):
    async def create_api_key(
        self,
        id: str,
        name: str,
        key_hash: bytes,
        roles: Iterable[str],
        scopes: Iterable[str],
        now: datetime,
    ) -> ApiKeyRow:
        """Store a key; raises :class:`AlreadyExists` when the name (or hash) is taken."""
        row = ApiKeyRow(
            id=id,
            name=name,
            key_hash=bytes(key_hash),
            roles=tuple(sorted(set(roles))),
            scopes=tuple(sorted(set(scopes))),
            created_at=utc(now),
        )
        try:
            await self._write(
                api_keys.insert().values(
                    id=row.id,
                    name=row.name,
                    key_hash=row.key_hash,
                    roles=list(row.roles),
                    scopes=list(row.scopes),
                    created_at=row.created_at,
                )
            )
        except exc.IntegrityError as error:
            raise AlreadyExists("an API key with that name exists") from error
        return row

    async def find_api_key(self, key_hash: bytes) -> ApiKeyRow | None:
        """The active key with this hash; None when unknown or revoked."""
        stmt = select(api_keys).where(
            api_keys.c.key_hash == bytes(key_hash), api_keys.c.revoked_at.is_(None)
        )
        found = await self._first(stmt)
        return None if found is None else _row(found)

    async def api_key_by_id(self, id: str) -> ApiKeyRow | None:
        """The key with this id, revoked or not (to name the app a challenge came from)."""
        found = await self._first(select(api_keys).where(api_keys.c.id == id))
        return None if found is None else _row(found)
