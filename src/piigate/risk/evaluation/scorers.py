"""What ``risk eval`` scores attempts with: the engine's context signals and the baselines.

- ``engine``: the live engine's score (:class:`EngineScorer`: ``ContextRisk`` with this
  replay's history and in-memory counters, each attempt a ``login``); :class:`ContextScorer`
  is the context signals alone, summed and capped at 100.
- ``never`` / ``always``: never step up (score 0) / always (score 1).
- ``new_country_or_browser``: 1 when the country or the browser family was never seen for the
  subject (always 1 without history), else 0: the rule of thumb many products ship.
- ``freeman``: Freeman et al.'s likelihood-ratio model alone, ``log`` of the product of the
  ratios of the address, its network, the ASN, the country and the client
  (``risk.familiarity``; no device cookie, no travel, no caps): its own continuous score.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Protocol

from piigate.model import Action, RiskAssessment
from piigate.policy.model import RiskSettings
from piigate.risk.context import context_signals
from piigate.risk.evaluation.rba import LoginRecord
from piigate.risk.familiarity import Marginal, client_ratio
from piigate.risk.observation import Feature, Observation, Population, SubjectHistory, features

__all__ = [
    "Always",
    "ContextScorer",
    "EngineScorer",
    "Freeman",
    "Never",
    "NewCountryOrBrowser",
    "ObservationEngine",
]


class ObservationEngine(Protocol):
    """``risk.engine.ContextRisk``: the assessment of a ready-made observation."""

    async def assess_observation(
        self, subject_id: str, observation: Observation, *, action: Action, now: datetime
    ) -> RiskAssessment: ...

    async def remember_observation(self, subject_id: str, observation: Observation) -> None: ...


class EngineScorer:
    """The live engine: every attempt assessed as a ``login`` of its subject, at its time."""

    name = "engine"

    def __init__(self, engine: ObservationEngine) -> None:
        self.engine = engine

    async def score(
        self,
        record: LoginRecord,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
    ) -> float:
        assessed = await self.engine.assess_observation(
            record.user, observation, action=Action.LOGIN, now=record.at
        )
        return float(assessed.score)


class ContextScorer:
    """The context signals of ``risk.context`` with the policy's weights."""

    name = "context"

    def __init__(self, settings: RiskSettings) -> None:
        self.settings = settings

    async def score(
        self,
        record: LoginRecord,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
    ) -> float:
        signals = context_signals(observation, history, population, self.settings)
        return float(min(100, sum(signal.weight for signal in signals)))


class Never:
    name = "never"

    async def score(
        self,
        record: LoginRecord,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
    ) -> float:
        return 0.0


class Always:
    name = "always"

    async def score(
        self,
        record: LoginRecord,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
    ) -> float:
        return 1.0


class NewCountryOrBrowser:
    name = "new_country_or_browser"

    async def score(
        self,
        record: LoginRecord,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
    ) -> float:
        found = features(observation)
        for kind in (Feature.COUNTRY, Feature.BROWSER):
            value = found.get(kind)
            if value is not None and not history.seen(kind, value):
                return 1.0
        return 1.0 if history.verified == 0 else 0.0


class Freeman:
    name = "freeman"
    _KINDS = (Feature.IP, Feature.NETWORK, Feature.ASN, Feature.COUNTRY)

    async def score(
        self,
        record: LoginRecord,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
    ) -> float:
        found = features(observation)
        total = math.log(client_ratio(found, history, population))
        for kind in self._KINDS:
            value = found.get(kind)
            if value is not None and history.verified:
                total += math.log(Marginal(history, population, kind).ratio(value))
        return total
