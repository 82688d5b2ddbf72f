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

import structlog

from piigate.gateway.postgres.config import PostgresGatewayConfig
from piigate.gateway.postgres.desk import Desk
from piigate.gateway.postgres.plan import BUILTINS_QUERY
from piigate.gateway.postgres.reading import Reader
from piigate.gateway.postgres.session import ClientSession, SessionLinks
from piigate.gateway.postgres.statements import Gatekeeper
from piigate.model import Caller
from piigate.store.pg_planning import PlanConnections

__all__ = ["PostgresGateway", "tls_context"]

log = structlog.get_logger("piigate.gateway.postgres")


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
        self.planning = PlanConnections()
        self.server: asyncio.Server | None = None
        self.links: SessionLinks | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        dsn = self.config.upstream
        await self.planning.start(
            host=dsn.host,
            port=dsn.port,
            user=dsn.user,
            password=dsn.password,
            database=dsn.database,
        )
        builtins = await self.planning.names(BUILTINS_QUERY)
        reader = Reader(self.config.catalog, self.planning.explain, builtins=builtins)
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
        catalog = self.config.catalog
        tables = {(t.schema, t.name): t for t in catalog.tables()}
        for oid, attnum, schema, table, column in await self.planning.columns(tables):
            links.oid_tables.add(oid)
            pii = catalog.pii_of(tables[(schema, table)], column)
            if pii is not None:
                links.oid_columns[(oid, attnum)] = pii

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
        with contextlib.suppress(Exception):
            await self.planning.aclose()
