"""The context a request shows (CONTRACT §4.1, §4.2), and what the routes tell the risk engine
about it afterwards (``risk.port.RiskFeed``).

A person's own request (a login, their own step-up, their own decision) has the context it
came with: the peer's address, its ``User-Agent`` and its device (``api/devices.py``). An app
relays its user's context in the body (``context``), read by ``decision_request.ContextIn``;
its device id is resolved like a cookie or header, so a relayed cookie value counts only when
its signature holds.

The feed is told after the fact, and a fault there never undoes what was done (a session
opened, a grant issued): it is logged by its type and the request goes on.
"""

from __future__ import annotations

import dataclasses
from typing import Final

import structlog
from fastapi import Request

from piigate.api.devices import presented_device
from piigate.api.services import Services
from piigate.model import Context

__all__ = [
    "MAX_USER_AGENT",
    "own_context",
    "resolved_context",
    "tell_failed_stepup",
    "tell_verified",
]

log = structlog.get_logger("piigate.api")

# The decision request's bound on ``context.user_agent`` (``decision_request.ContextIn``).
MAX_USER_AGENT: Final = 1024


async def own_context(services: Services, request: Request) -> Context:
    """The context of the caller's own request: the peer's address, the user agent (cut to
    ``MAX_USER_AGENT``) and the device it presents, resolved."""
    agent = request.headers.get("user-agent")
    device = presented_device(request.cookies, request.headers)
    return Context(
        ip=request.client.host if request.client else None,
        user_agent=agent[:MAX_USER_AGENT] if agent else None,
        device_id=await services.devices.resolve(device),
    )


async def resolved_context(services: Services, context: Context) -> Context:
    """``context`` with its device id resolved (``DeviceCookies.resolve``)."""
    if context.device_id is None:
        return context
    device = await services.devices.resolve(context.device_id)
    return dataclasses.replace(context, device_id=device)


def completed(context: Context, fallback: Context) -> Context:
    """``context``, its missing parts taken from ``fallback``."""
    return Context(
        ip=context.ip or fallback.ip,
        user_agent=context.user_agent or fallback.user_agent,
        device_id=context.device_id or fallback.device_id,
    )


async def tell_verified(services: Services, subject_id: str, context: Context) -> None:
    """The subject proved who they are from ``context`` (a login, a step-up)."""
    try:
        await services.risk_feed.verified(subject_id, context, now=services.clock.now())
    except Exception as exc:
        log.warning("risk_feed_failed", event="verified", error=type(exc).__name__)


async def tell_failed_stepup(services: Services, subject_id: str) -> None:
    """A step-up verification of the subject's failed."""
    try:
        await services.risk_feed.failed_stepup(subject_id, now=services.clock.now())
    except Exception as exc:
        log.warning("risk_feed_failed", event="failed_stepup", error=type(exc).__name__)
