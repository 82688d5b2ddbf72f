"""The risk port: one method, so the engine never knows where signals come from."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from piigate.model import AccessRequest, Context, RiskAssessment

__all__ = ["CarriedRisk", "RiskEngine", "RiskFeed", "audit_json"]


class RiskEngine(Protocol):
    async def assess(self, request: AccessRequest, *, now: datetime) -> RiskAssessment: ...


class RiskFeed(Protocol):
    """What the edges tell the risk engine after the fact.

    ``verified``: the subject proved who they are (a login, a step-up) from this context; only
    such activity enters the history. ``failed_stepup``: a step-up verification failed.
    """

    async def verified(self, subject_id: str, context: Context, *, now: datetime) -> None: ...

    async def failed_stepup(self, subject_id: str, *, now: datetime) -> None: ...


class CarriedRisk:
    """Returns the risk the request carries (policy tests, trusted callers), else no risk.

    Risk only ever raises a requirement, so a caller that omits it gains nothing it would not
    have had anyway.
    """

    async def assess(self, request: AccessRequest, *, now: datetime) -> RiskAssessment:
        return request.risk or RiskAssessment()


def audit_json(risk: RiskAssessment) -> dict[str, object]:
    """An assessment as a decision's audit event holds it: each signal's name and contribution,
    and what the risk engine saw of the context (``RiskAssessment.evidence``: keyed hashes,
    country, ASN, parsed client), never a raw address or user agent."""
    found: dict[str, object] = {
        "score": risk.score,
        "signals": [{"name": s.name, "weight": s.weight} for s in risk.signals],
    }
    if risk.evidence:
        found["context"] = dict(risk.evidence)
    return found
