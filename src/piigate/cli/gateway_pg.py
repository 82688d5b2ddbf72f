"""``piigate gateway postgres``: the PostgreSQL wire-protocol gateway.

The engine runs in this process, on the same store, keys and policy as ``piigate serve`` (the
same configuration file), so the step-ups it opens are answered with the factors people already
have and at the service's step-up page. Clients give a piigate API key, or a JWT of the IdP
(``gateway.postgres.identity``, else ``service.identity``), as their password.
"""

from __future__ import annotations

import signal

import typer

from piigate import __version__
from piigate.cli.common import (
    ConfigOpt,
    MetricsOpt,
    check_workers,
    fail,
    gateway_start,
    metrics_address,
    on_signal,
    serve_metrics,
    supervise,
    until_stopped,
    worker_listener,
)
from piigate.cli.serve import freeze_heap, run_server
from piigate.cli.workers import worker_slot
from piigate.config import Settings
from piigate.errors import PiigateError

__all__ = ["postgres"]


def postgres(config: ConfigOpt = None, metrics: MetricsOpt = None) -> None:
    """Run the PostgreSQL gateway in front of the database of ``gateway.postgres``."""
    from piigate.gateway.postgres.config import load_postgres_config

    config, settings, holder = gateway_start(config, "postgres")
    compiled = holder.current
    assert compiled is not None  # from_file loaded it or raised
    gateway = load_postgres_config(config, compiled)  # FILE:LINE:COL lines (cli.main)
    check_workers(settings, gateway.workers)
    if gateway.workers > 1 and worker_slot() is None:
        where = (gateway.listen_host, gateway.listen_port)
        supervise(gateway.workers, where, f"postgres gateway on {{}} -> {gateway.upstream_display}")
    run_server(_serve(settings, holder, gateway, metrics_address(metrics)))


async def _serve(
    settings: Settings, holder: object, config: object, metrics_at: tuple[str, int] | None
) -> None:
    from piigate.api.auth import api_key_caller
    from piigate.api.services import Services
    from piigate.callers import Caller
    from piigate.clock import SystemClock
    from piigate.gateway.http.assemble import idp_validator
    from piigate.gateway.http.gate import GatewayCallers
    from piigate.gateway.postgres.config import PostgresGatewayConfig
    from piigate.gateway.postgres.desk import Desk
    from piigate.gateway.postgres.peers import CancelPeers
    from piigate.gateway.postgres.server import PostgresGateway
    from piigate.policy.holder import PolicyHolder

    assert isinstance(holder, PolicyHolder) and isinstance(config, PostgresGatewayConfig)
    services = Services(settings, policy=holder, forward_auth=False)
    try:
        await services.start()
    except PiigateError as exc:
        fail(f"cannot start: {exc.detail}")
    # SIGHUP reloads the policy now, as for piigate serve (the file is also polled); the
    # gateway's own section is read at start only.
    on_signal(signal.SIGHUP, services.request_reload)
    jwt = services.jwt
    if config.identity is not None:
        jwt = idp_validator(config.identity, holder)

    async def api_keys(credential: str) -> Caller:
        return await api_key_caller(services, credential)

    callers = GatewayCallers(jwt=jwt, api_keys=api_keys, clock=SystemClock())

    desk = Desk(services, config.public_url)

    async def authenticate(password: str) -> Caller:
        return await desk.caller(password, callers)

    gateway = PostgresGateway(config, desk=desk, authenticate=authenticate)
    slot = worker_slot()
    if slot is not None and metrics_at is not None:
        metrics_at = slot.own(metrics_at)
    # The node's metrics: its decisions and step-ups, and each statement's ruling time.
    stop_metrics = serve_metrics(services.metrics.registry, metrics_at) if metrics_at else None
    try:
        try:
            if slot is None:
                await gateway.start()
            else:
                listening = worker_listener(slot, config.listen_host)
                peers = CancelPeers(slot.index, slot.count, slot.directory)
                await gateway.start(sock=listening, peers=peers)
        except (OSError, PiigateError) as exc:
            fail(f"cannot start the gateway: {getattr(exc, 'detail', None) or exc}")
        freeze_heap()
        where = f"{config.listen_host}:{gateway.port}"
        which = f" ({slot})" if slot else ""
        typer.echo(
            f"piigate {__version__} postgres gateway on {where} -> "
            f"{config.upstream_display}{which}",
            err=True,
        )
        await until_stopped()
    finally:
        if stop_metrics is not None:
            await stop_metrics()
        await gateway.aclose()
        if jwt is not None and jwt is not services.jwt:
            await jwt.aclose()
        await services.stop()
