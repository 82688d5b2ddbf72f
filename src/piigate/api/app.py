"""The FastAPI application factory: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from piigate import __version__
from piigate.api.auth import LOGIN_TICKET_COOKIE, SESSION_COOKIE
from piigate.api.lean import LeanPaths
from piigate.api.middleware import BodyLimit, CrossSiteGuard
from piigate.api.problems import install_problem_handlers
from piigate.api.routes import (
    approvals,
    challenges,
    decisions,
    events,
    factors,
    forward_auth,
    ops,
    push,
    sessions,
    sms,
    verify,
    webauthn,
)
from piigate.api.services import Services
from piigate.clock import Clock
from piigate.config import ConfigError, Settings
from piigate.console.app import install_console
from piigate.gateway.http.forward_auth import FORWARD_AUTH_PATH
from piigate.origins import web_origin
from piigate.policy.holder import PolicyHolder

__all__ = ["PiigateApp", "create_app", "trusted_origins"]


class PiigateApp(FastAPI):
    """FastAPI, with the hot paths (decisions, verifications) in front of its whole middleware
    stack (``api/lean.py``)."""

    max_body_bytes = 64 * 1024
    lean: LeanPaths | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        self.lean = LeanPaths(
            stack,
            owner=self,
            routes=(decisions.lean_decisions(), verify.lean_verify()),
            max_body_bytes=self.max_body_bytes,
        )
        return self.lean


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

    app = PiigateApp(
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
        forward_auth,
        ops,
    ):
        app.include_router(module.router)
    install_console(app, settings)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CrossSiteGuard,
        origins=trusted_origins(settings),
        ambient_cookies=(SESSION_COOKIE, LOGIN_TICKET_COOKIE),
        entry_paths=sessions.ENTRY_PATHS,
        cookieless=(FORWARD_AUTH_PATH,),
    )
    app.max_body_bytes = settings.max_body_bytes  # the hot path claims only what fits
    return app


def trusted_origins(settings: Settings) -> frozenset[str]:
    """The origins whose pages may send cookie-authenticated requests: the public URL's, and
    ``allowed_origins``."""
    try:
        public = web_origin(settings.public_url)
    except ValueError as exc:
        raise ConfigError([f"public_url: {exc}"]) from None
    return frozenset({public, *settings.allowed_origins})
