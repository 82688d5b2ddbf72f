"""The channels nodes tell each other about committed audit events on (``audit/fanout.py``).

A relay moves short text messages between the nodes of one deployment: Redis pub/sub when the
nodes share a Redis (``redis_url``), else PostgreSQL ``LISTEN``/``NOTIFY`` on the shared
database. Delivery is at most once and only to nodes listening at the time (both transports'
nature): the events themselves stay in the store, which every reader can go back to.

A relay's ``listen`` connects and subscribes, then its listener yields what arrives and raises
when the connection is lost (the fan-out listens again). Errors are ``StoreUnavailable``
naming the error's class, never with the driver's message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final, Protocol

import psycopg
import redis.asyncio as aioredis
from psycopg import sql
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from sqlalchemy import make_url

from piigate.store.db import Database, StoreUnavailable

__all__ = ["EventRelay", "Listener", "PostgresRelay", "RedisRelay", "open_relay"]

CHANNEL: Final = "piigate_events"
_CONNECT_TIMEOUT = 5


class Listener(Protocol):
    """A subscription made: the messages published from then on."""

    def messages(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


class EventRelay(Protocol):
    name: str

    async def publish(self, message: str) -> None: ...

    async def listen(self) -> Listener: ...

    async def aclose(self) -> None: ...


class RedisRelay:
    """Redis pub/sub on ``channel`` (named for the deployment: a Redis may serve several)."""

    name = "redis"

    def __init__(self, url: str, channel: str) -> None:
        self.channel = channel
        self._client = aioredis.Redis.from_url(
            url, socket_connect_timeout=_CONNECT_TIMEOUT, health_check_interval=30
        )

    async def publish(self, message: str) -> None:
        try:
            await self._client.publish(self.channel, message)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis publish failed ({type(exc).__name__})") from None

    async def listen(self) -> Listener:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
        except (RedisError, OSError) as exc:
            await pubsub.aclose()
            raise StoreUnavailable(f"redis subscribe failed ({type(exc).__name__})") from None
        return _RedisListener(pubsub)

    async def aclose(self) -> None:
        await self._client.aclose()


class _RedisListener:
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def messages(self) -> AsyncIterator[str]:
        try:
            while True:
                message = await self._pubsub.get_message(timeout=30.0)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    yield data.decode() if isinstance(data, bytes) else str(data)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis subscription lost ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        await self._pubsub.aclose()


class PostgresRelay:
    """``NOTIFY``/``LISTEN`` on the store's own PostgreSQL database (one channel per database,
    so the channel needs no deployment name)."""

    name = "postgres"

    def __init__(self, db: Database) -> None:
        url = make_url(db.url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._sender: psycopg.AsyncConnection[object] | None = None
        self._lock = asyncio.Lock()

    async def publish(self, message: str) -> None:
        async with self._lock:
            try:
                if self._sender is None or self._sender.closed:
                    self._sender = await self._connect()
                await self._sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, message))
            except (psycopg.Error, OSError) as exc:
                await self._drop_sender()
                raise StoreUnavailable(f"notify failed ({type(exc).__name__})") from None

    async def listen(self) -> Listener:
        conn = None
        try:
            conn = await self._connect()
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        except (psycopg.Error, OSError) as exc:
            if conn is not None:
                await conn.close()
            raise StoreUnavailable(f"listen failed ({type(exc).__name__})") from None
        return _PostgresListener(conn)

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop_sender()

    async def _connect(self) -> psycopg.AsyncConnection[object]:
        conn: psycopg.AsyncConnection[object] = await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
        )
        return conn

    async def _drop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None and not sender.closed:
            await sender.close()


class _PostgresListener:
    def __init__(self, conn: psycopg.AsyncConnection[object]) -> None:
        self._conn = conn

    async def messages(self) -> AsyncIterator[str]:
        try:
            async for notify in self._conn.notifies():
                yield notify.payload
        except (psycopg.Error, OSError) as exc:
            raise StoreUnavailable(f"listen lost ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        await self._conn.close()


def open_relay(db: Database, redis_url: str | None, *, deployment: str) -> EventRelay | None:
    """Redis when the nodes share one, else PostgreSQL's own; None on SQLite (one node)."""
    if redis_url:
        return RedisRelay(redis_url, f"piigate:events:{deployment}")
    if db.dialect == "postgresql":
        return PostgresRelay(db)
    return None
