"""Operations: liveness, readiness, Prometheus metrics, and the keys that verify grants."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from piigate.api.jsonbody import JsonRoute
from piigate.api.services import get_services
from piigate.errors import ServiceUnavailable

router = APIRouter(tags=["operations"], route_class=JsonRoute)


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The store and Redis (if set) are reachable, the keys readable, a policy is loaded",
)
async def readyz(request: Request) -> dict[str, Any]:
    services = get_services(request)
    problems = []
    try:
        await services.db.ping()
    except ServiceUnavailable:
        problems.append("store unreachable")
    if services.redis_counters is not None:
        try:
            await services.redis_counters.ping()
        except ServiceUnavailable:
            problems.append("redis unreachable")
    if services.keyring.problem is not None:
        problems.append(f"keys unreadable: {services.keyring.problem}")
    compiled = services.policy.current
    if compiled is None:
        problems.append("no policy loaded")
    if problems:
        raise ServiceUnavailable("; ".join(problems), checks=problems)
    assert compiled is not None
    return {"status": "ready", "policy": compiled.digest}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = get_services(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/.well-known/jwks.json", summary="Public keys that verify piigate grants")
async def jwks(request: Request) -> dict[str, Any]:
    return get_services(request).keyring.jwks()
