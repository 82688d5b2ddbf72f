"""The FastAPI application factory: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from piigate import __version__
from piigate.api.middleware import BodyLimit
from piigate.api.problems import install_problem_handlers
from piigate.api.routes import (
    approvals,
    challenges,
    decisions,
    events,
    factors,
    ops,
    push,
    sessions,
    sms,
    verify,
    webauthn,
)
from piigate.api.services import Services
from piigate.clock import Clock
from piigate.config import Settings
from piigate.policy.holder import PolicyHolder

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    policy: PolicyHolder | None = None,
    services: Services | None = None,
    started: bool = False,
) -> FastAPI:
    """The app; it starts ``services`` in its lifespan unless they are ``started`` already
    (``piigate serve`` starts them first, to report a bad store in one line before binding)."""
    node = services or Services(settings, clock=clock, policy=policy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not started:
            await node.start()
        app.state.services = node
        try:
            yield
        finally:
            await node.stop()

    app = FastAPI(
        title="piigate",
        version=__version__,
        summary="Step-up authentication around personally identifiable information",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        # piigate exports Prometheus metrics and its own audit trail, not OpenTelemetry: with
        # FastAPI's native telemetry off, no request pays for looking up OTel providers.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_problem_handlers(app)
    for module in (
        decisions,
        challenges,
        verify,
        sms,
        push,
        webauthn,
        factors,
        approvals,
        sessions,
        events,
        ops,
    ):
        app.include_router(module.router)
    decisions.install_lean_route(app)  # the hot path, in front of its declared route
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
