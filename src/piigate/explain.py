"""``piigate policy explain``: one decision, computed by the real engine with in-memory ports.

The risk engine is the real one too (``risk.engine.ContextRisk``, the bundled geolocation
database), over an empty history and fresh counters: a request's ``context`` is scored as the
first request of a subject with no verified activity would be, and ``risk.signals`` shows each
signal's weight and detail. A request without context gets no context signals.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from piigate.api.schemas import decision_json
from piigate.clock import SystemClock
from piigate.crypto.secret import Secret
from piigate.decision_request import DecisionRequestIn, first_error
from piigate.errors import BadRequest, PolicyError, step_up_header
from piigate.model import Outcome
from piigate.policy.holder import PolicyHolder
from piigate.risk.behaviour import Behaviour
from piigate.risk.clients import ClientParser
from piigate.risk.engine import ContextRisk
from piigate.risk.geo import open_locator
from piigate.risk.geo_settings import GeoSettings
from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observer import ContextObserver
from piigate.stepup.engine import Engine
from piigate.stepup.ports import MemoryAudit, MemoryChallenges, MemoryGrantLedger
from piigate.store.memory_counters import MemoryCounters

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
        risk=_fresh_risk(holder),
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


def _fresh_risk(holder: PolicyHolder) -> ContextRisk:
    """The risk engine with nothing remembered: its key is random, its history empty."""
    key = Secret(secrets.token_bytes(32))
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
