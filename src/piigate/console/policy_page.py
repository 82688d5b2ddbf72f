"""The policy page (``/security/policy``): the policy in force, and a simulator that shows what
it decides for a request the security team fills in, as ``piigate policy explain`` shows it.

The simulator runs ``explain.explain`` on the compiled policy in force: the real engine and
risk engine with ports of their own in memory, so a simulation opens no challenge, spends no
grant, counts nothing for the risk engine and writes no audit event.
"""

from __future__ import annotations

import json
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from piigate.api.services import Services, get_services
from piigate.console.csrf import CSRF_FIELD, check_csrf
from piigate.console.policy_view import policy_view
from piigate.console.simulator import (
    ACTIONS,
    METHOD_AMR,
    Simulation,
    field_problem,
    read_simulation,
    simulator_fields,
)
from piigate.console.web import SecurityTeam, Viewer, page
from piigate.errors import PolicyError, ServiceUnavailable
from piigate.explain import explain
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.durations import format_duration
from piigate.policy.holder import PolicyHolder

__all__ = ["POLICY_PATH", "router"]

router = APIRouter(include_in_schema=False)

POLICY_PATH: Final = "/security/policy"


@router.get(POLICY_PATH)
async def policy(request: Request, viewer: SecurityTeam) -> Response:
    """The policy in force, and the simulator's empty form."""
    blank = Simulation(values={"action": "read"})
    return _policy_page(request, viewer, blank, None)


@router.post(POLICY_PATH + "/simulate")
async def simulate(request: Request, viewer: SecurityTeam) -> Response:
    """The decision on the filled-in request, with each rule's and risk signal's part."""
    services = get_services(request)
    fields = await simulator_fields(request)
    await check_csrf(request, services, (fields.get(CSRF_FIELD) or [""])[-1])
    compiled = _compiled(services)
    sim = read_simulation(fields, compiled, now=services.clock.now())
    result = None
    if sim.request is not None:
        holder = PolicyHolder(compiled, path=services.policy.path)
        try:
            result = await explain(holder, sim.request, clock=services.clock, geo=services.geo)
        except PolicyError as exc:
            sim.problems.extend(field_problem(line) for line in exc.errors)
    return _policy_page(request, viewer, sim, result, status=400 if sim.problems else 200)


def _compiled(services: Services) -> CompiledPolicy:
    compiled = services.policy.current
    if compiled is None:
        raise ServiceUnavailable("no policy is loaded")
    return compiled


def _policy_page(
    request: Request,
    viewer: Viewer,
    sim: Simulation,
    result: dict[str, Any] | None,
    *,
    status: int = 200,
) -> Response:
    services = get_services(request)
    compiled = _compiled(services)
    view = policy_view(compiled, path=services.policy.path)
    context: dict[str, Any] = {
        "policy": view,
        "reload_errors": list(services.policy.last_error),
        "sim": sim,
        "actions": ACTIONS,
        "methods": [m.value for m in compiled.policy.factors if m.value in METHOD_AMR],
        "result": _result_view(result, [r.name for r in view.rules]) if result else None,
    }
    return page(request, "policy.html", context, viewer=viewer, status_code=status)


def _result_view(result: dict[str, Any], rule_names: list[str]) -> dict[str, Any]:
    """What the result card shows: the decision, the requirement in words, every rule of the
    policy with its part (``no match`` for the rules the request did not meet), and the
    explanation's JSON as ``piigate policy explain`` prints it."""
    parts = {e["rule"]: e for e in result["explain"] if e["rule"] is not None}
    required = result.get("required")
    need = None
    if required is not None:
        max_age = required.get("max_age")
        need = {
            "level": required["level"],
            "max_age": "bound to this request"
            if max_age == 0
            else ("any age" if max_age is None else f"within {format_duration(max_age)}"),
            "methods": required.get("methods", []),
        }
    return {
        "outcome": result["outcome"],
        "rules": result["rules"],
        "mask": result["mask"],
        "reason": result.get("reason"),
        "missing_scope": result.get("missing_scope", []),
        "required": need,
        "risk": result["risk"],
        "parts": [
            (name, parts[name]["status"], parts[name]["detail"])
            if name in parts
            else (name, "no_match", "")
            for name in rule_names
        ],
        "json": json.dumps(result, indent=2, sort_keys=False),
    }
