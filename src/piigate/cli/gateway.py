"""``piigate gateway http``: the HTTP reverse-proxy gateway (``postgres``: ``cli/gateway_pg.py``).

The engine runs in this process by default, on the same store and keys as ``piigate serve``
(the same configuration file), so challenges it opens are answered at the service; with
``--engine URL`` the gateway asks a running ``piigate serve`` instead, over ``/v1/decisions``
with the API key in ``PIIGATE_ENGINE_KEY`` (scope ``decisions``). SIGHUP reloads the policy and
the gateway's configuration; a configuration that cannot be read keeps the one in force, and what
the process set up at start (``RESTART_KEYS``) waits for a restart.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

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
    worker_listener,
)
from piigate.cli.serve import freeze_heap, run_server
from piigate.cli.workers import worker_slot
from piigate.config import Settings
from piigate.errors import PiigateError

if TYPE_CHECKING:
    from piigate.api.metrics import Metrics
    from piigate.gateway.http.config import HttpGatewayConfig
    from piigate.gateway.http.gate import ApiKeyLookup, Decider, Gate
    from piigate.identity import JwtValidator
    from piigate.policy.holder import PolicyHolder

__all__ = ["gateway_app"]

gateway_app = typer.Typer(
    help="Run a gateway: HTTP (reverse proxy) or PostgreSQL.", no_args_is_help=True
)

ENGINE_KEY_ENV = "PIIGATE_ENGINE_KEY"
# What the process sets up once from the configuration: a reload that changes these is logged,
# and they take effect on the next start (routes, masks, headers, default and max_body apply
# at once).
RESTART_KEYS = (
    "listen_host",
    "listen_port",
    "upstream",
    "timeouts",
    "identity",
    "rate_limit",
    "workers",
)


@gateway_app.command("http")
def http(
    config: ConfigOpt = None,
    engine: Annotated[
        str | None,
        typer.Option(help="URL of a piigate service to ask (API key in PIIGATE_ENGINE_KEY)."),
    ] = None,
    metrics: MetricsOpt = None,
) -> None:
    """Run the HTTP gateway in front of the upstream API of ``gateway.http``."""
    from piigate.gateway.http.config import load_gateway_config

    config, settings, holder = gateway_start(config, "http")
    key = os.environ.get(ENGINE_KEY_ENV, "").strip()
    if engine is not None and not key:
        fail(f"--engine needs the gateway's API key (scope decisions) in {ENGINE_KEY_ENV}")
    compiled = holder.current
    assert compiled is not None  # from_file loaded it or raised
    gateway = load_gateway_config(config, compiled)
    for warning in gateway.warnings:
        typer.echo(warning, err=True)
    metrics_at = metrics_address(metrics)
    check_workers(settings, gateway.workers, engine_here=engine is None)
    if gateway.workers > 1 and worker_slot() is None:
        where = (gateway.listen_host, gateway.listen_port)
        supervise(gateway.workers, where, f"gateway on http://{{}} -> {gateway.upstream}")
    run_server(_serve(_Run(settings, holder, gateway, config, engine, key, metrics_at)))


@dataclass
class _Run:
    settings: Settings
    holder: PolicyHolder
    gateway: HttpGatewayConfig
    config_path: str
    engine_url: str | None
    engine_key: str
    metrics_at: tuple[str, int] | None = None
    # The node's metrics when the engine runs here, else the gateway's own.
    metrics: Metrics = field(default_factory=lambda: _metrics())
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)


async def _serve(run: _Run) -> None:
    import signal

    from piigate.gateway.http.proxy import HttpGateway
    from piigate.gateway.http.server import gateway_server
    from piigate.gateway.http.upstream import Upstream

    try:
        gate = await _gate(run)
    except PiigateError as exc:
        fail(f"cannot start: {exc.detail}")
    config = run.gateway
    upstream = Upstream(
        config.upstream,
        connect_timeout=config.timeouts.connect,
        read_timeout=config.timeouts.read,
    )
    run.closers.append(upstream.aclose)
    app = HttpGateway(
        gate, upstream, timings=run.metrics.gateway, phases=run.metrics.gateway_phases
    )
    slot = worker_slot()
    if run.metrics_at is not None:
        if slot is not None:
            run.metrics_at = slot.own(run.metrics_at)
        _serve_metrics(run)
    server = gateway_server(app, config.listen_host, config.listen_port)
    sockets = None if slot is None else [worker_listener(slot, config.listen_host)]
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(_reload(run, gate))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    on_signal(signal.SIGHUP, on_hup)
    where = f"http://{config.listen_host}:{slot.port if slot else config.listen_port}"
    which = f" ({slot})" if slot else ""
    typer.echo(f"piigate {__version__} gateway on {where} -> {config.upstream}{which}", err=True)
    freeze_heap()
    try:
        await server.serve(sockets)
    finally:
        for close in reversed(run.closers):
            await close()
    if not server.started:
        fail(f"could not listen on {config.listen_host}:{config.listen_port}")


async def _gate(run: _Run) -> Gate:
    """The gate (``gateway/http/assemble.py``): the engine here or remote, who may call, the
    rate limits."""
    from piigate.clock import SystemClock
    from piigate.gateway.http.assemble import assemble_gate

    decider, api_keys, jwt = await _decider(run)
    assembled = assemble_gate(
        run.gateway,
        decider=decider,
        api_keys=api_keys,
        policy=run.holder,
        clock=SystemClock(),
        jwt=jwt,
    )
    run.closers.append(assembled.aclose)
    return assembled.gate


async def _decider(
    run: _Run,
) -> tuple[Decider, ApiKeyLookup | None, JwtValidator | None]:
    """The engine in this process, with its API keys and (unless ``gateway.http.identity``
    names another) the IdP of ``service.identity``; or the remote one, without either."""
    if run.engine_url is not None:
        from piigate.gateway.http.deciders import RemoteDecider

        remote = RemoteDecider(run.engine_url, run.engine_key)
        run.closers.append(remote.aclose)
        return remote, None, None
    from piigate.api.services import Services
    from piigate.gateway.http.assemble import in_process

    services = Services(run.settings, policy=run.holder, forward_auth=False)
    await services.start()
    run.closers.append(services.stop)
    run.metrics = services.metrics
    return (*in_process(services), services.jwt)


def _metrics() -> Metrics:
    from piigate.api.metrics import Metrics

    return Metrics()


def _serve_metrics(run: _Run) -> None:
    """``GET /metrics`` of the gateway's registry on ``--metrics``."""
    assert run.metrics_at is not None
    run.closers.append(serve_metrics(run.metrics.registry, run.metrics_at))


async def _reload(run: _Run, gate: Gate) -> None:
    """SIGHUP: the policy, then the gateway's configuration read against it; either one that
    cannot be read keeps the one in force (one log line naming the problems)."""
    import structlog

    from piigate.gateway.http.config import load_gateway_config

    log = structlog.get_logger("piigate.gateway")
    try:
        compiled = run.holder.reload()
        gate.config = load_gateway_config(run.config_path, compiled)
    except PiigateError as exc:
        log.error("gateway_reload_failed", errors=getattr(exc, "errors", [exc.detail]))
        return
    log.info("gateway_reloaded", policy=compiled.digest, routes=len(gate.config.routes))
    unapplied = [
        key for key in RESTART_KEYS if getattr(gate.config, key) != getattr(run.gateway, key)
    ]
    if unapplied:  # what the process was started with stays in force for these
        log.warning("gateway_reload_needs_restart", settings=unapplied)


@gateway_app.command("postgres")
def postgres(config: ConfigOpt = None) -> None:
    """Run the PostgreSQL gateway in front of the database of ``gateway.postgres``."""
    from piigate.cli.gateway_pg import postgres as run

    run(config)
