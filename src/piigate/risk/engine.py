"""``ContextRisk``: the risk engine. It implements ``RiskEngine`` (decisions ask it) and
``RiskFeed`` (the edges tell it what was verified and what failed).

One assessment, in order:

1. the request's context becomes an :class:`~piigate.risk.observation.Observation`
   (``Observer``: geolocation, parsed client, keyed hashes; ``risk.observer``);
2. the subject's verified history and the population (``HistoryStore``);
3. the context signals (``risk.context.context_signals``: device, network, country, ASN,
   client familiarity, hosting, travel, first activity), unless the request carries no
   context at all (an app that sends none: there is nothing to judge);
4. the behaviour signals (``risk.behaviour``: velocity, PII enumeration, bulk changes, failed
   step-ups), counting this request;
5. the risk the request carries (policy test cases, trusted callers): it only ever raises.

Score = min(100, the sum of the contributions). ``piigate risk eval`` replays logins through
:meth:`ContextRisk.assess_observation` and :meth:`ContextRisk.remember_observation`, the very
scoring decisions get. Any fault (a geolocation database, the store, Redis) raises: the engine
(``stepup/engine.py``) then scores 100 with ``risk_unavailable`` and PII stays closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from piigate.model import AccessRequest, Action, Context, Resource, RiskAssessment, Signal
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import RiskSettings, SignalSettings
from piigate.policy.sections import DEFAULT_SIGNALS
from piigate.risk.behaviour import Behaviour
from piigate.risk.context import context_signals
from piigate.risk.observation import (
    HistoryStore,
    Observation,
    Place,
    Population,
    SubjectHistory,
)

__all__ = ["DEFAULT_SETTINGS", "ContextRisk", "Observer", "combine", "evidence"]

DEFAULT_SETTINGS: Final = RiskSettings(
    {
        name: SignalSettings(weight, dict(params))
        for name, (weight, params) in DEFAULT_SIGNALS.items()
    }
)
_NOWHERE: Final = Place()
_TRAVEL: Final = "impossible_travel"
_RECENT: Final = 10_000  # subjects whose last context signals are kept
_NO_RESOURCE: Final = Resource()


@dataclass(frozen=True, slots=True)
class _Recent:
    history: SubjectHistory
    population: Population
    settings: RiskSettings
    seen: tuple[object, ...]
    at: datetime
    signals: tuple[Signal, ...]


class Observer(Protocol):
    """``risk.observer.ContextObserver``: a request's context as an observation."""

    def observe(self, context: Context, *, now: datetime) -> Observation: ...

    def address_key(self, ip: str) -> str | None: ...


class ContextRisk:
    def __init__(
        self,
        *,
        history: HistoryStore,
        behaviour: Behaviour,
        policy: PolicyHolder,
        observer: Observer | None = None,
    ) -> None:
        """``observer`` may be None where observations come ready-made (``risk eval``)."""
        self.history = history
        self.behaviour = behaviour
        self.policy = policy
        self.observer = observer
        self._recent: dict[str, _Recent] = {}

    # -- RiskEngine ---------------------------------------------------------------------------
    async def assess(self, request: AccessRequest, *, now: datetime) -> RiskAssessment:
        observation = self._observe(request.context, now)
        return await self.assess_observation(
            request.subject.id,
            observation,
            action=request.action,
            pii=bool(request.pii),
            resource=request.resource,
            rows=None if request.rows is None else request.rows.estimate,
            carried=request.risk,
            now=now,
        )

    async def assess_observation(
        self,
        subject_id: str,
        observation: Observation,
        *,
        action: Action,
        now: datetime,
        pii: bool = False,
        resource: Resource = _NO_RESOURCE,
        rows: int | None = None,
        carried: RiskAssessment | None = None,
    ) -> RiskAssessment:
        """The assessment of one observed request (no raw address or user agent needed)."""
        settings = self.settings()
        signals: list[Signal] = []
        if _has_context(observation):
            history = await self.history.history(subject_id, now=now)
            population = await self.history.population(now=now)
            signals.extend(self._context(subject_id, observation, history, population, settings))
        signals.extend(
            await self.behaviour.signals(
                subject_id,
                ip_key=observation.ip_key,
                action=action,
                pii=pii,
                resource=resource,
                rows=rows,
                settings=settings,
                now=now,
            )
        )
        return combine(signals, carried, evidence(observation))

    # -- RiskFeed -----------------------------------------------------------------------------
    async def verified(self, subject_id: str, context: Context, *, now: datetime) -> None:
        """The subject proved who they are from ``context``: it enters their history."""
        await self.remember_observation(subject_id, self._observe(context, now))

    async def remember_observation(self, subject_id: str, observation: Observation) -> None:
        if _has_context(observation):
            await self.history.remember(subject_id, observation)

    async def failed_stepup(self, subject_id: str, *, now: datetime) -> None:
        await self.behaviour.failed_stepup(subject_id, settings=self.settings(), now=now)

    def settings(self) -> RiskSettings:
        """The policy's signal weights and parameters (the defaults without a policy)."""
        compiled = self.policy.current
        return DEFAULT_SETTINGS if compiled is None else compiled.policy.risk

    def _context(
        self,
        subject_id: str,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
        settings: RiskSettings,
    ) -> tuple[Signal, ...]:
        """``context_signals``, or the subject's last result when nothing it depends on changed.

        A subject asks again and again from the same context, and the history store hands out
        the same history and population objects until they are re-read: the signals are the
        same, but for the travel speed, which only falls as time passes. So the last result
        stands if it had no travel signal, the inputs are the very same objects and values, and
        the observation is no earlier.
        """
        seen = (observation.place, observation.client, observation.ip_key,
                observation.network_key, observation.device_key)  # fmt: skip
        last = self._recent.get(subject_id)
        if (
            last is not None
            and last.history is history
            and last.population is population
            and last.settings is settings
            and last.seen == seen
            and observation.at >= last.at
        ):
            return last.signals
        found = context_signals(observation, history, population, settings)
        if any(s.name == _TRAVEL for s in found):
            self._recent.pop(subject_id, None)
        else:
            self._recent[subject_id] = _Recent(
                history, population, settings, seen, observation.at, found
            )
            if len(self._recent) > _RECENT:
                del self._recent[next(iter(self._recent))]
        return found

    def address_key(self, ip: str) -> str | None:
        """The keyed hash of a client's address, as the history and the audit know it."""
        return None if self.observer is None else self.observer.address_key(ip)

    def _observe(self, context: Context, now: datetime) -> Observation:
        if self.observer is None:
            raise RuntimeError("this risk engine has no observer: it scores observations only")
        return self.observer.observe(context, now=now)


def combine(
    signals: Iterable[Signal],
    carried: RiskAssessment | None = None,
    seen: tuple[tuple[str, str], ...] = (),
) -> RiskAssessment:
    """One assessment: the signals (one per name, the larger contribution), the carried ones
    added, score = min(100, their sum), never below the carried score."""
    by_name: dict[str, Signal] = {}
    for signal in (*signals, *(carried.signals if carried is not None else ())):
        kept = by_name.get(signal.name)
        if kept is None or signal.weight > kept.weight:
            by_name[signal.name] = signal
    total = sum(s.weight for s in by_name.values())
    floor = carried.score if carried is not None else 0
    return RiskAssessment(min(100, max(total, floor)), tuple(by_name.values()), seen)


def evidence(observation: Observation) -> tuple[tuple[str, str], ...]:
    """What of an observation may go into the audit trail (keyed hashes, country, ASN, the
    parsed client), for investigations; never a raw address, user agent or device id."""
    found: list[tuple[str, str]] = []
    for name, value in (
        ("ip", observation.ip_key),
        ("network", observation.network_key),
        ("device", observation.device_key),
    ):
        if value:
            found.append((name, value))
    place = observation.place
    if place.private:
        found.append(("place", "private"))
    if place.country:
        found.append(("country", place.country))
    if place.asn is not None:
        found.append(("asn", f"AS{place.asn}"))
    if place.hosting:
        found.append(("hosting", "yes"))
    client = observation.client
    if client.browser or client.os:
        found.append(
            ("client", f"{client.browser or '?'}/{client.os or '?'}/{client.device_type or '?'}")
        )
    return tuple(found)


def _has_context(observation: Observation) -> bool:
    return bool(
        observation.ip_key
        or observation.device_key
        or observation.place != _NOWHERE
        or observation.client.browser
        or observation.client.os
        or observation.client.device_type
    )
