"""The PostgreSQL gateway's listener, and what its sessions share.

:class:`PostgresGateway` listens, and for each client runs a
:class:`~piigate.gateway.postgres.session.ClientSession`. At start it opens a small pool of its
own connections to the database (``asyncpg``): one reads the catalogued tables' OIDs and column
numbers (the second source that tells a result column's origin, from ``RowDescription``), and
the pool plans statements the parser could not resolve (``EXPLAIN``, see ``reading``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from piigate.gateway.postgres.config import PostgresGatewayConfig
from piigate.gateway.postgres.desk import Desk
from piigate.gateway.postgres.plan import BUILTINS_QUERY
from piigate.gateway.postgres.reading import Reader
from piigate.gateway.postgres.session import ClientSession, SessionLinks
from piigate.gateway.postgres.statements import Gatekeeper
from piigate.model import Caller

__all__ = ["PostgresGateway", "tls_context"]

log = structlog.get_logger("piigate.gateway.postgres")

_OIDS = """
SELECT c.oid::int8, a.attnum::int4, n.nspname, c.relname, a.attname
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""


def tls_context(config: PostgresGatewayConfig) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls.cert, config.tls.key)
    return context


class PostgresGateway:
    def __init__(
        self,
        config: PostgresGatewayConfig,
        *,
        desk: Desk,
        authenticate: Callable[[str], Awaitable[Caller]],
    ) -> None:
        self.config = config
        self.desk = desk
        self.authenticate = authenticate
        self.pool: Any = None
        self.server: asyncio.Server | None = None
        self.links: SessionLinks | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        dsn = self.config.upstream
        self.pool = await asyncpg.create_pool(
            host=dsn.host,
            port=dsn.port,
            user=dsn.user,
            password=dsn.password,
            database=dsn.database,
            min_size=1,
            max_size=4,
            statement_cache_size=0,
        )
        rows = await self.pool.fetch(BUILTINS_QUERY)
        builtins = frozenset(str(row[0]) for row in rows)
        reader = Reader(self.config.catalog, self._explain, builtins=builtins)
        links = SessionLinks(
            config=self.config,
            authenticate=self.authenticate,
            reader=reader,
            gatekeeper=Gatekeeper(self.desk, self.config.approval_wait),
            tls=tls_context(self.config),
        )
        await self._load_oids(links)
        self.links = links
        self.server = await asyncio.start_server(
            self._handle, self.config.listen_host, self.config.listen_port
        )

    async def _load_oids(self, links: SessionLinks) -> None:
        tables = list(self.config.catalog.tables())
        if not tables:
            return
        rows = await self.pool.fetch(_OIDS, [t.schema for t in tables], [t.name for t in tables])
        for oid, attnum, schema, table, column in rows:
            links.oid_tables.add(int(oid))
            for name in tables:
                if name.schema == schema and name.name == table:
                    pii = self.config.catalog.pii_of(name, column)
                    if pii is not None:
                        links.oid_columns[(int(oid), int(attnum))] = pii

    async def _explain(self, sql: str, search_path: str | None) -> str:
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            if search_path:
                await conn.execute(
                    "SELECT pg_catalog.set_config('search_path', $1, true)", search_path
                )
            statement = await conn.prepare("EXPLAIN (VERBOSE, FORMAT JSON) " + sql)
            count = len(statement.get_parameters())
            value = await statement.fetchval(*([None] * count))
        return value if isinstance(value, str) else str(value)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.links is not None
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await ClientSession(self.links, reader, writer).run()
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def serve_forever(self) -> None:
        assert self.server is not None
        await self.server.serve_forever()

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await self.pool.close()
