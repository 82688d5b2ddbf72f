"""``piigate policy explain`` and the console's policy simulator: one decision, computed by the
real engine with in-memory ports, so nothing is stored, audited, counted or spent.

The engine is given a challenge store, grant ledger and audit sink of its own, in memory, and
no grant verifier (presented grants are reported as not verified). The risk engine is the real
one too (``risk.engine.ContextRisk``, the bundled geolocation database unless one is given),
over an empty history and fresh counters: a request's ``context`` is scored as the first request
of a subject with no verified activity would be, and ``risk.signals`` shows each signal's weight
and detail. A request without context gets no context signals.

Beyond the decision request (CONTRACT §4.2), a request may carry the test cases' stand-in for
the risk engine, ``risk: {score, signals}``: each named signal fires with the policy's weight for
it (0 for a name the policy does not weigh), and the score is their sum, at least ``score``, at
most 100 — the risk engine's own combination.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from piigate.api.schemas import decision_json
from piigate.clock import Clock, SystemClock
from piigate.crypto.secret import Secret
from piigate.decision_request import DecisionRequestIn, RiskIn, first_error
from piigate.errors import BadRequest, PolicyError, step_up_header
from piigate.model import AccessRequest, Outcome, RiskAssessment, Signal
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.holder import PolicyHolder
from piigate.risk.behaviour import Behaviour
from piigate.risk.clients import ClientParser
from piigate.risk.engine import ContextRisk
from piigate.risk.geo import GeoLocator, open_locator
from piigate.risk.geo_settings import GeoSettings
from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observer import ContextObserver
from piigate.stepup.engine import Engine
from piigate.stepup.ports import MemoryAudit, MemoryChallenges, MemoryGrantLedger
from piigate.store.memory_counters import MemoryCounters

__all__ = ["GIVEN_SIGNAL", "explain", "explain_request", "read_request"]

# The detail of a risk signal the request names (``risk.signals``) rather than the engine found.
GIVEN_SIGNAL = "given in the request"


async def explain_request(policy_file: str, data: Any) -> dict[str, Any]:
    """``piigate policy explain``: :func:`explain` under the policy file ``policy_file``."""
    return await explain(PolicyHolder.from_file(policy_file), data)


async def explain(
    holder: PolicyHolder,
    data: Any,
    *,
    clock: Clock | None = None,
    geo: GeoLocator | None = None,
) -> dict[str, Any]:
    """The decision on ``data`` under the policy ``holder`` holds, as the API answers it, with
    the policy's digest and each rule's part (``explain``). ``PolicyError`` with one
    ``request: FIELD: problem`` line for a request the API would refuse."""
    compiled = holder.current
    if compiled is None:
        raise PolicyError(["no policy is loaded"])
    request = read_request(compiled, data)
    fixed = PolicyHolder(compiled, path=holder.path)  # one policy for the whole decision
    engine = Engine(
        policy=fixed,
        risk=_fresh_risk(fixed, geo),
        grants=None,  # no keyring here: presented grants are reported as not verified
        ledger=MemoryGrantLedger(),
        challenges=MemoryChallenges(),
        audit=MemoryAudit(),
        clock=clock or SystemClock(),
        explain=True,
    )
    decision = await engine.decide(request)
    header = None
    if decision.outcome is Outcome.STEP_UP and decision.required is not None:
        header = step_up_header(decision.required.acr_values, decision.required.max_age)
    result = decision_json(decision, header)
    result["policy"] = compiled.digest
    result["explain"] = [
        {"rule": t.rule, "status": t.status.value, "detail": t.detail} for t in decision.trace
    ]
    if not decision.trace:
        result["explain"] = [{"rule": None, "status": "no_match", "detail": "no rule matched"}]
    return result


def read_request(compiled: CompiledPolicy, data: Any) -> AccessRequest:
    """The engine's request from a decision request with an optional ``risk`` stand-in;
    ``PolicyError`` naming the field (never the value) when it is not one."""
    given: Any = None
    if isinstance(data, Mapping) and "risk" in data:
        given = data["risk"]
        data = {key: value for key, value in data.items() if key != "risk"}
    try:
        request = DecisionRequestIn.model_validate(data).to_domain(compiled)
    except ValidationError as exc:
        raise PolicyError([f"request: {first_error(exc)}"]) from None
    except BadRequest as exc:
        raise PolicyError([f"request: {exc.detail}"]) from None
    if given is None:
        return request
    try:
        risk = RiskIn.model_validate(given)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(["risk", *(str(part) for part in first["loc"])])
        raise PolicyError([f"request: {where}: {first['msg']}"]) from None
    weights = compiled.policy.risk.signals
    signals = tuple(
        Signal(name, weights[name].weight if name in weights else 0, GIVEN_SIGNAL)
        for name in dict.fromkeys(risk.signals)
    )
    return dataclasses.replace(request, risk=RiskAssessment(risk.score, signals))


def _fresh_risk(holder: PolicyHolder, geo: GeoLocator | None) -> ContextRisk:
    """The risk engine with nothing remembered: its key is random, its history empty; ``geo``
    (else the bundled database) only read."""
    key = Secret(secrets.token_bytes(32))
    if geo is None:
        geo = open_locator(GeoSettings(), announce=False)  # the start-up line is the service's
    return ContextRisk(
        observer=ContextObserver(geo=geo, clients=ClientParser(), key=key),
        history=MemoryHistory(),
        behaviour=Behaviour(MemoryCounters(), _NoAudit(), key=key),
        policy=holder,
    )


class _NoAudit:
    async def record(
        self, type: str, *, subject_id: str | None = None, data: Mapping[str, object] | None = None
    ) -> object:
        return None
