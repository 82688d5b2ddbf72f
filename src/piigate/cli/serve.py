"""``piigate serve``: run the service (the decision API) on uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import typer

from piigate import __version__
from piigate.cli.common import ConfigOpt, fail, on_signal, settings_from
from piigate.config import Settings
from piigate.errors import PiigateError

if TYPE_CHECKING:
    from piigate.policy.holder import PolicyHolder

__all__ = ["freeze_heap", "run_server", "serve"]


def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8080).")] = None,
) -> None:
    """Run the service: the decision API (and, later, the console)."""
    import structlog

    from piigate.logs import configure_logging
    from piigate.policy.holder import PolicyHolder

    settings = settings_from(config).serving_on(host, port)
    if settings.policy_path is None:
        fail("no policy: pass --config FILE (a policy or configuration file) or set PIIGATE_POLICY")
    configure_logging(settings.log_format)
    if settings.public_url_guessed:
        structlog.get_logger("piigate.service").warning(
            "public_url_not_set",
            public_url=settings.public_url,
            hint="set PIIGATE_PUBLIC_URL (service.public_url) to the URL clients reach",
        )
    # Refuse to start on a bad policy, before binding the port.
    holder = PolicyHolder.from_file(settings.policy_path)
    run_server(_serve(settings, holder))


async def _serve(settings: Settings, holder: PolicyHolder) -> None:
    """Start the node's services, then serve until stopped; one line if either fails."""
    import signal

    import uvicorn

    from piigate.api.app import create_app
    from piigate.api.services import Services

    services = Services(settings, policy=holder)
    try:
        await services.start()
    except PiigateError as exc:
        fail(f"cannot start: {exc.detail}")
    application = create_app(settings, services=services, started=True)
    server = uvicorn.Server(
        uvicorn.Config(
            application,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            lifespan="on",
        )
    )
    # SIGHUP reloads the policy where the platform has it; the policy file is also polled for
    # changes, so a reload never depends on it.
    on_signal(signal.SIGHUP, services.request_reload)
    typer.echo(f"piigate {__version__} serving on http://{settings.host}:{settings.port}", err=True)
    freeze_heap()
    try:
        await server.serve()
    finally:
        if not server.started:
            await services.stop()
    if not server.started:
        fail(f"could not listen on {settings.host}:{settings.port}")


def freeze_heap() -> None:
    """Called once a server is set up, before it serves. Everything loaded so far (modules, the
    app, the policy, the engine) lives as long as the process. Frozen, the cyclic GC stops
    re-scanning it: a full collection stalls every request behind it and sets the p99
    latency."""
    import gc

    gc.collect()
    gc.freeze()


def run_server(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (uvicorn[standard] brings it), as uvicorn itself would."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional in principle
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
