"""``piigate policy explain``: one decision, computed by the real engine with in-memory ports."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from piigate.api.schemas import decision_json
from piigate.clock import SystemClock
from piigate.decision_request import DecisionRequestIn, first_error
from piigate.errors import BadRequest, PolicyError, step_up_header
from piigate.model import Outcome
from piigate.policy.holder import PolicyHolder
from piigate.risk.port import CarriedRisk
from piigate.stepup.engine import Engine
from piigate.stepup.ports import MemoryAudit, MemoryChallenges, MemoryGrantLedger

__all__ = ["explain_request"]


async def explain_request(policy_file: str, data: Any) -> dict[str, Any]:
    holder = PolicyHolder.from_file(policy_file)
    compiled = holder.current
    assert compiled is not None
    try:
        body = DecisionRequestIn.model_validate(data)
        request = body.to_domain(compiled)
    except ValidationError as exc:
        raise PolicyError([f"request: {first_error(exc)}"]) from None
    except BadRequest as exc:
        raise PolicyError([f"request: {exc.detail}"]) from None
    engine = Engine(
        policy=holder,
        risk=CarriedRisk(),
        grants=None,  # no keyring here: presented grants are reported as not verified
        ledger=MemoryGrantLedger(),
        challenges=MemoryChallenges(),
        audit=MemoryAudit(),
        clock=SystemClock(),
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
