"""The risk port: one method, so the engine never knows where signals come from."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from piigate.model import AccessRequest, RiskAssessment

__all__ = ["CarriedRisk", "RiskEngine"]


class RiskEngine(Protocol):
    async def assess(self, request: AccessRequest, *, now: datetime) -> RiskAssessment: ...


class CarriedRisk:
    """Returns the risk the request carries (policy tests, trusted callers), else no risk.

    Risk only ever raises a requirement, so a caller that omits it gains nothing it would not
    have had anyway.
    """

    async def assess(self, request: AccessRequest, *, now: datetime) -> RiskAssessment:
        return request.risk or RiskAssessment()
