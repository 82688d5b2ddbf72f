"""The demo's PostgreSQL side, when a server is reachable: a database of its own with the
synthetic customers, and the PostgreSQL gateway in front of it, in the demo's process.

The server is ``PIIGATE_DEMO_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/
postgres``: a role that may create databases); the database, ``piigate_demo`` (or
``PIIGATE_DEMO_POSTGRES_DB``), gets the ``customers`` table of examples/customers.sql. When the
server cannot be reached, :func:`start_postgres_side` says so in one line and the demo goes on
without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from piigate.demo.synthetic import synthetic_customers
from piigate.gateway.postgres.config import UpstreamDsn, load_postgres_config, parse_upstream
from piigate.store.demo_database import (
    CustomerRow,
    DemoDatabaseUnavailable,
    prepare_demo_database,
)

if TYPE_CHECKING:
    from piigate.api.services import Services
    from piigate.gateway.postgres.server import PostgresGateway

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_SERVER",
    "POSTGRES_DB_ENV",
    "POSTGRES_URL_ENV",
    "PostgresSide",
    "customer_rows",
    "start_postgres_side",
]

POSTGRES_URL_ENV: Final = "PIIGATE_DEMO_POSTGRES_URL"
POSTGRES_DB_ENV: Final = "PIIGATE_DEMO_POSTGRES_DB"
DEFAULT_SERVER: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE: Final = "piigate_demo"


@dataclass(frozen=True, slots=True)
class PostgresSide:
    """The gateway and what it stands in front of; or, when it did not start, None and the
    line that says why."""

    gateway: PostgresGateway | None
    note: str
    upstream: UpstreamDsn | None = None
    port: int | None = None


def customer_rows() -> list[CustomerRow]:
    """The synthetic customers as rows of examples/customers.sql's table."""
    rows = []
    for c in synthetic_customers():
        address = c["address"]
        rows.append(
            (
                int(c["id"]),
                c["name"],
                c["ssn"],
                c["phone"],
                f"{address['street']}, {address['city']} {address['zip']}",
            )
        )
    return rows


async def start_postgres_side(
    services: Services,
    config_path: str,
    *,
    port: int,
    reset: bool,
    env: Mapping[str, str] | None = None,
) -> PostgresSide:
    """Prepare the demo database and start the gateway on 127.0.0.1:``port``; without a
    reachable server, a :class:`PostgresSide` with no gateway and the note saying why."""
    env = os.environ if env is None else env
    text = env.get(POSTGRES_URL_ENV) or DEFAULT_SERVER
    try:
        server = parse_upstream(text, env={})
    except ValueError as exc:
        return PostgresSide(None, f"PostgreSQL: {POSTGRES_URL_ENV} is not usable: {exc}")
    database = env.get(POSTGRES_DB_ENV) or DEFAULT_DATABASE
    try:
        await prepare_demo_database(server, database, customer_rows(), reset=reset)
    except DemoDatabaseUnavailable as exc:
        note = (
            f"PostgreSQL: not reachable at {server.display()} ({exc.reason}); the PostgreSQL "
            f"gateway is not started (set {POSTGRES_URL_ENV} to use another server)"
        )
        return PostgresSide(None, note)
    except ValueError as exc:
        return PostgresSide(None, f"PostgreSQL: {POSTGRES_DB_ENV}: {exc}")
    upstream = replace(server, database=database)
    gateway = await _gateway(services, config_path, upstream, port)
    return PostgresSide(gateway, f"in front of {upstream.display()}", upstream, port)


async def _gateway(
    services: Services, config_path: str, upstream: UpstreamDsn, port: int
) -> PostgresGateway:
    """The gateway of ``gateway.postgres`` in ``config_path`` on this node's services, as
    ``piigate gateway postgres`` wires it (``cli/gateway_pg.py``), in front of ``upstream``."""
    from piigate.api.auth import api_key_caller
    from piigate.callers import Caller
    from piigate.gateway.http.gate import GatewayCallers
    from piigate.gateway.postgres.desk import Desk
    from piigate.gateway.postgres.server import PostgresGateway

    compiled = services.policy.current
    assert compiled is not None  # the demo's policy loaded before the services started
    config = load_postgres_config(config_path, compiled)
    config = replace(config, upstream=upstream, listen_port=port)

    async def api_keys(credential: str) -> Caller:
        return await api_key_caller(services, credential)

    callers = GatewayCallers(jwt=services.jwt, api_keys=api_keys, clock=services.clock)
    desk = Desk(services, config.public_url)

    async def authenticate(password: str) -> Caller:
        return await desk.caller(password, callers)

    gateway = PostgresGateway(config, desk=desk, authenticate=authenticate)
    await gateway.start()
    return gateway
