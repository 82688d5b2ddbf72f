"""The risk port: one method, so the engine never knows where signals come from."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from piigate.model import AccessRequest, Context, RiskAssessment

__all__ = ["CarriedRisk", "NoFeed", "RiskEngine", "RiskFeed"]


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


class NoFeed:
    """A :class:`RiskFeed` that keeps nothing: for a risk engine without a history."""

    async def verified(self, subject_id: str, context: Context, *, now: datetime) -> None:
        return None

    async def failed_stepup(self, subject_id: str, *, now: datetime) -> None:
        return None
