from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as redis
from alembic.script import ScriptDirectory
from sqlalchemy import make_url

from piigate.store import Database, Store
from piigate.store.db import alembic_config
from store_support import list_users


@pytest.mark.redis
async def test_redis_url_reaches_a_server(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_database_url_names_a_fresh_database(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        assert url.database is not None and url.database.startswith("piigate_t_")
    else:
        assert url.database is not None and url.database.endswith("piigate.db")


async def test_migrated_url_is_a_fresh_copy_at_the_current_schema(migrated_url: str) -> None:
    url = make_url(migrated_url)
    if url.get_backend_name() == "postgresql":
        assert url.database is not None and url.database.startswith("piigate_t_")
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    db = Database.open(migrated_url)
    try:
        assert await db.current_revision() == head
        # A copy of its own: what earlier tests wrote to theirs is not here, and this write
        # reaches no later test.
        assert await list_users(db) == []
        await Store(db).add_user("alice", "$argon2id$x", [], datetime.now(UTC))
        assert [user.username for user in await list_users(db)] == ["alice"]
    finally:
        await db.close()
