"""The deployment's keyring (``crypto.keystore``): sealed keys, only ever added.

Keys reach the store already sealed by the master key; the store never sees one in the clear.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select

from piigate.crypto.keyset import KeyKind
from piigate.crypto.keystore import StoredKey
from piigate.store._sql import Repo, insert_for, utc
from piigate.store.tables import keyring_keys

__all__ = ["KeyringStore"]

_KEYS = select(
    keyring_keys.c.kid,
    keyring_keys.c.kind,
    keyring_keys.c.created_at,
    keyring_keys.c.active,
    keyring_keys.c.kek_id,
    keyring_keys.c.sealed,
).order_by(keyring_keys.c.seq)


class KeyringStore(Repo):
    async def keyring_keys(self) -> list[StoredKey]:
        """Every key, in the order they were added."""

        def work(conn: Connection) -> list[StoredKey]:
            return [
                StoredKey(
                    kid=row.kid,
                    kind=KeyKind(row.kind),
                    created_at=row.created_at,
                    active=bool(row.active),
                    kek_id=row.kek_id,
                    sealed=row.sealed,
                )
                for row in conn.execute(_KEYS)
            ]

        return await self.db.read(work)

    async def add_keyring_keys(self, keys: Sequence[StoredKey]) -> None:
        """Add ``keys`` in order, in one transaction; a kid already there is left as it is."""
        if not keys:
            return
        statement = insert_for(self.db, keyring_keys).on_conflict_do_nothing(index_elements=["kid"])

        def work(conn: Connection) -> None:
            # One statement per key: the order of the rows' seq is the order given.
            for key in keys:
                values = {
                    "kid": key.kid,
                    "kind": key.kind.value,
                    "created_at": utc(key.created_at),
                    "active": key.active,
                    "kek_id": key.kek_id,
                    "sealed": key.sealed,
                }
                conn.execute(statement.values(**values))

        await self.db.write(work)
