"""``ContextRisk``: the risk engine. It implements ``RiskEngine`` (decisions ask it) and
``RiskFeed`` (the edges tell it what was verified and what failed).

One assessment, in order:

1. the request's context becomes an :class:`~piigate.risk.observation.Observation`
   (``Observer``: geolocation, parsed client, keyed hashes; ``risk.observer``);
2. the subject's verified history and the population (``HistoryStore``);
3. the context signals (``risk.context``: device, network, country, ASN, client
   familiarity, hosting, travel, first activity), unless the request carries no context at
   all (an app that sends none: there is nothing to judge);
4. the behaviour signals (``risk.behaviour``: velocity, PII enumeration, bulk changes, failed
   step-ups), counting this request;
5. the risk the request carries (policy test cases, trusted callers): it only ever raises.

Score = min(100, the sum of the contributions). ``piigate risk eval`` replays logins through
:meth:`ContextRisk.assess_observation` and :meth:`ContextRisk.remember_observation`, the very
scoring decisions get. Any fault (a geolocation database, the store, Redis) raises: the engine
(``stepup/engine.py``) then scores 100 with ``risk_unavailable`` and PII stays closed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from piigate.memo import Bounded
from piigate.model import AccessRequest, Action, Context, Resource, RiskAssessment, Signal
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import RiskSettings, SignalSettings
from piigate.policy.sections import DEFAULT_SIGNALS
from piigate.risk.behaviour import Behaviour
from piigate.risk.context import SteadySignals, steady_signals, travel_signal
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
_RECENT: Final = 10_000  # subjects whose recent contexts' signals are kept
_CONTEXTS: Final = 3  # contexts kept per subject (home, office, phone...)
_NO_RESOURCE: Final = Resource()


@dataclass(slots=True)
class _Recent:
    """A subject's steady context signals and evidence in one context, with what they were
    computed from: they stand while those are the very same objects and values."""

    history: SubjectHistory
    population: Population
    settings: RiskSettings
    seen: tuple[object, ...]
    steady: SteadySignals
    evidence: tuple[tuple[str, str], ...]
    # A time at which the travel signal did not fire in this context: nor will it later.
    calm_since: datetime | None = None

    def computed_from(
        self, history: SubjectHistory, population: Population, settings: RiskSettings
    ) -> bool:
        return (
            self.history is history and self.population is population and self.settings is settings
        )


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
        self._recent = Bounded[str, tuple[_Recent, ...]](_RECENT)

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
        context: tuple[Signal, ...] = ()
        if _has_context(observation):
            history = await self.history.history(subject_id, now=now)
            population = await self.history.population(now=now)
            recent = self._recent_for(subject_id, observation, history, population, settings)
            context = recent.steady.around(self._travel(recent, observation))
            seen = recent.evidence
        else:
            seen = evidence(observation)
        behaviour = await self.behaviour.signals(
            subject_id,
            ip_key=observation.ip_key,
            action=action,
            pii=pii,
            resource=resource,
            rows=rows,
            settings=settings,
            now=now,
        )
        return combine((*context, *behaviour), carried, seen)

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

    def _recent_for(
        self,
        subject_id: str,
        observation: Observation,
        history: SubjectHistory,
        population: Population,
        settings: RiskSettings,
    ) -> _Recent:
        """The subject's steady context signals for this context, computed or kept.

        A subject asks again and again from the same few contexts, and the history store hands
        out the same history and population objects until they are re-read: the steady signals
        (all but travel) and the evidence are then the same. So those of the subject's last
        :data:`_CONTEXTS` contexts stand while their inputs are the very same objects and
        values; a new history, population or policy replaces them all.
        """
        seen = (observation.place, observation.client, observation.ip_key,
                observation.network_key, observation.device_key)  # fmt: skip
        kept = self._recent.get(subject_id, ())
        for recent in kept:
            if recent.seen == seen and recent.computed_from(history, population, settings):
                return recent
        steady = steady_signals(observation, history, population, settings)
        recent = _Recent(history, population, settings, seen, steady, evidence(observation))
        others = [r for r in kept if r.computed_from(history, population, settings)]
        self._recent.put(subject_id, (recent, *others[: _CONTEXTS - 1]))
        return recent

    def _travel(self, recent: _Recent, observation: Observation) -> Signal | None:
        """The travel signal, unless it was quiet in this context at an earlier time (the speed
        only falls as time passes)."""
        if recent.calm_since is not None and observation.at >= recent.calm_since:
            return None
        found = travel_signal(observation, recent.history, recent.settings)
        if found is None:
            recent.calm_since = observation.at
        return found

    def address_key(self, ip: str) -> str | None:
        """The keyed hash of a client's address, as the history and the audit know it."""
        return None if self.observer is None else self.observer.address_key(ip)

    def _observe(self, context: Context, now: datetime) -> Observation:
        if self.observer is None:
            raise RuntimeError("this risk engine has no observer: it scores observations only")
        return self.observer.observe(context, now=now)


def combine(
    signals: Collection[Signal],
    carried: RiskAssessment | None = None,
    seen: tuple[tuple[str, str], ...] = (),
) -> RiskAssessment:
    """One assessment: the signals (one per name, the larger contribution), the carried ones
    added, score = min(100, their sum), never below the carried score."""
    if carried is None and not signals:
        return RiskAssessment(0, (), seen)  # the common case: nothing fired
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
