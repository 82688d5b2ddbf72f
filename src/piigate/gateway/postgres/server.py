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
import json
import socket
import ssl
from collections.abc import Awaitable, Callable

import structlog

from piigate.callers import Caller
from piigate.gateway.postgres.cancels import cancel
from piigate.gateway.postgres.catalog import Catalog, CatalogColumn, TableName
from piigate.gateway.postgres.config import PostgresGatewayConfig
from piigate.gateway.postgres.desk import Desk
from piigate.gateway.postgres.links import Link
from piigate.gateway.postgres.peers import CancelPeers
from piigate.gateway.postgres.plan import BUILTINS_QUERY, PlanFacts, read_plan
from piigate.gateway.postgres.reading import Reader
from piigate.gateway.postgres.session import ClientSession, SessionLinks
from piigate.gateway.postgres.statements import Gatekeeper
from piigate.store.pg_planning import PlanConnections

__all__ = ["PostgresGateway", "tls_context"]

log = structlog.get_logger("piigate.gateway.postgres")


def _carried(facts: PlanFacts | None, catalog: Catalog, count: int) -> list[frozenset[str]]:
    everything = catalog.classes()
    if facts is None or facts.functions:
        return [everything] * count
    if facts.outputs is None or len(facts.outputs) < count:
        touched = frozenset(c.pii for c in facts.reads)
        return [touched] * count
    return list(facts.outputs[:count])


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
        self.peers: CancelPeers | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(
        self, *, sock: socket.socket | None = None, peers: CancelPeers | None = None
    ) -> None:
        """Listen on the configured address, or on ``sock`` (a worker's, with its ``peers``:
        ``cli/workers.py``, ``peers.py``)."""
        dsn = self.config.upstream
        await self.planning.start(
            host=dsn.host,
            port=dsn.port,
            user=dsn.user,
            password=dsn.password,
            database=dsn.database,
        )
        builtins = await self.planning.names(BUILTINS_QUERY)
        catalog = await self._with_materialized_views(self.config.catalog, builtins)
        reader = Reader(
            catalog,
            self.planning.explain,
            builtins=builtins,
            ancestors=self.planning.ancestors,
            triggered=self.planning.triggered,
        )
        links = SessionLinks(
            config=self.config,
            catalog=catalog,
            database_credentials=self.desk.scram,
            authenticate=self.authenticate,
            reader=reader,
            gatekeeper=Gatekeeper(self.desk, self.config.approval_wait),
            tls=tls_context(self.config),
            peers=peers,
        )
        await self._load_oids(links)
        self.links = links
        if peers is not None:
            self.peers = peers
            await peers.start(lambda message: cancel(links, message, handed=True))
        loop = asyncio.get_running_loop()

        def link() -> Link:
            return Link(on_connection=self._connected)

        if sock is not None:
            self.server = await loop.create_server(link, sock=sock)
        else:
            self.server = await loop.create_server(
                link, self.config.listen_host, self.config.listen_port
            )

    async def _with_materialized_views(self, catalog: Catalog, builtins: frozenset[str]) -> Catalog:
        """``catalog`` and the materialized views that hold copies of its columns: a view's
        rows are the server's to expand, a materialized view's are stored, so its columns
        are catalogued with the classes its query reads into them (all of them, when the
        plan cannot say which column carries what)."""
        derived: dict[TableName, dict[str, CatalogColumn]] = {}
        for schema, name, query, columns in await self.planning.materialized_views():
            table = TableName(schema, name)
            if catalog.table(table):
                continue  # catalogued by hand: the configuration's word stands
            try:
                plan = json.loads(await self.planning.explain(query, None))
                facts = read_plan(plan, catalog, builtins)
            except Exception as exc:  # cannot be planned: every class, every column
                log.warning("pg_matview_unplanned", view=str(table), error=type(exc).__name__)
                facts = None
            carried = _carried(facts, catalog, len(columns))
            found = {
                col: CatalogColumn(table, col, min(classes), suspected=True)
                for col, classes in zip(columns, carried, strict=True)
                if classes
            }
            if found:
                derived[table] = found
        if not derived:
            return catalog
        return Catalog({**catalog.columns, **derived})

    async def _load_oids(self, links: SessionLinks) -> None:
        catalog = links.catalog
        tables = {(t.schema, t.name): t for t in catalog.tables()}
        for oid, attnum, schema, table, column in await self.planning.columns(tables):
            links.oid_tables.add(oid)
            pii = catalog.pii_of(tables[(schema, table)], column)
            if pii is not None:
                links.oid_columns[(oid, attnum)] = pii

    def _connected(self, client: Link) -> None:
        """A client connected: its session runs in a task of its own."""
        task = asyncio.get_running_loop().create_task(self._handle(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, client: Link) -> None:
        assert self.links is not None
        try:
            await ClientSession(self.links, client).run()
        except asyncio.CancelledError:
            # ``aclose`` ends the session: nothing awaits the task, which would log the cancel
            # as an error.
            client.close()

    async def serve_forever(self) -> None:
        assert self.server is not None
        await self.server.serve_forever()

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.peers is not None:
            await self.peers.aclose()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.planning.aclose()
