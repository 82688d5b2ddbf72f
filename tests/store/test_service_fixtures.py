from __future__ import annotations

import pytest
import redis.asyncio as redis
from sqlalchemy import make_url


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
