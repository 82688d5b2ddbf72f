"""How familiar a value is for a subject: smoothed probabilities and likelihood ratios.

The estimates follow Freeman et al., "Who Are You? A Statistical Approach to Measuring User
Authenticity" (NDSS 2016): the probability of a value for the subject, ``p_u(x)``, is smoothed
(Witten-Bell) and backs off to the population's ``p(x)`` for values the subject never showed;
the evidence that a login is not the subject's is the likelihood ratio ``p(x) / p_u(x)``
(an attacker is modelled as a random member of the population).

Witten-Bell: a subject with ``n`` sightings of a feature among ``t`` distinct values shows a new
value with probability ``t / (n + t)``; a seen value ``x`` counted ``c`` times has
``c / (n + t)``. So a subject who always comes back with the same value gives a new one little
probability (strong evidence), and one who varies gives it more (weak evidence). With no
sightings at all, ``p_u = p`` and the ratio is 1: no evidence either way, and no credit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from piigate.risk.observation import Feature, Population, Seen, SubjectHistory

__all__ = [
    "Marginal",
    "Tally",
    "client_ratio",
    "population_share",
    "repeat_share",
    "subject_share",
    "tally",
    "unseen_share",
    "version_ratio",
]

# The least share of the population's mass left to the values a subject has not shown: keeps
# the back-off finite for a subject who has shown every common value.
_MIN_UNSEEN = 0.05


@dataclass(frozen=True, slots=True)
class Tally:
    """One feature of a subject's history: ``n`` sightings of ``t`` distinct values."""

    counts: Mapping[str, Seen]
    n: int
    t: int

    def count(self, value: str) -> int:
        seen = self.counts.get(value)
        return 0 if seen is None else seen.count


_NOTHING = Tally({}, 0, 0)


def tally(history: SubjectHistory, kind: Feature, *, prefix: str = "") -> Tally:
    """The subject's sightings of ``kind`` (only the values starting with ``prefix``)."""
    counts = history.values.get(kind)
    if not counts:
        return _NOTHING
    if prefix:
        counts = {v: s for v, s in counts.items() if v.startswith(prefix)}
    n = 0
    for seen in counts.values():
        n += seen.count
    return Tally(counts, n, len(counts))


def repeat_share(counted: Tally) -> float:
    """Witten-Bell's probability that the subject's next value is one already seen: ``n/(n+t)``
    (0 without sightings). The confidence with which "never seen" is evidence."""
    if counted.n == 0:
        return 0.0
    return counted.n / (counted.n + counted.t)


def population_share(population: Population, kind: Feature, value: str) -> float:
    """``p(x)`` over all verified activity, add-half smoothed (never 0 nor above 1)."""
    return (population.count(kind, value) + 0.5) / (population.verified + 1)


def unseen_share(shares: Iterable[float]) -> float:
    """What is left of the back-off distribution once the subject's seen values are taken."""
    return max(_MIN_UNSEEN, 1.0 - sum(shares))


def subject_share(counted: Tally, value: str, prior: float, unseen: float) -> float:
    """``p_u(x)`` by Witten-Bell, backing off to ``prior`` (renormalised by ``unseen``)."""
    if counted.n == 0:
        return prior
    c = counted.count(value)
    if c:
        return c / (counted.n + counted.t)
    return counted.t / (counted.n + counted.t) * prior / unseen


class Marginal:
    """``p_u`` of one feature of a subject, backing off to the population's ``p``."""

    def __init__(self, history: SubjectHistory, population: Population, kind: Feature) -> None:
        self.kind = kind
        self.population = population
        self.counted = tally(history, kind)
        self._unseen: float | None = None

    @property
    def unseen(self) -> float:
        """The population's share of the values the subject has not shown (computed once)."""
        if self._unseen is None:
            kind, population = self.kind, self.population
            self._unseen = unseen_share(
                population_share(population, kind, v) for v in self.counted.counts
            )
        return self._unseen

    def share(self, value: str) -> float:
        prior = population_share(self.population, self.kind, value)
        if self.counted.n == 0 or self.counted.count(value):
            return subject_share(self.counted, value, prior, 1.0)  # no back-off needed
        return subject_share(self.counted, value, prior, self.unseen)

    def ratio(self, value: str) -> float:
        """Freeman's likelihood ratio ``p(x) / p_u(x)`` (1 without history)."""
        return population_share(self.population, self.kind, value) / self.share(value)


def version_ratio(
    history: SubjectHistory,
    population: Population,
    kind: Feature,
    family: str,
    version: str,
) -> float:
    """The ratio of a version given its family (``Chrome 131`` given ``Chrome``).

    The subject's versions of the family back off to the population's versions of it. A
    version newer than every one the subject has shown of that family is an upgrade, which
    browsers and systems do by themselves: no evidence (ratio 1). An unseen older version (a
    downgrade, or a user agent copied from elsewhere) is evidence like any unseen value.
    """
    counted = tally(history, kind, prefix=f"{family} ")
    if counted.n == 0:
        return 1.0
    value = f"{family} {version}"
    family_count = population.count(_FAMILY_OF[kind], family) + 1.0

    def given_family(v: str) -> float:
        return (population.count(kind, v) + 0.5) / family_count

    prior = given_family(value)
    if not counted.count(value) and _is_upgrade(version, counted.counts, len(family) + 1):
        return 1.0
    unseen = unseen_share(given_family(v) for v in counted.counts)
    return _familiar_cap(counted, value, prior / subject_share(counted, value, prior, unseen))


_FAMILY_OF = {Feature.BROWSER_VERSION: Feature.BROWSER, Feature.OS_VERSION: Feature.OS}


def _familiar_cap(counted: Tally, value: str, ratio: float) -> float:
    """A value the subject has shown is never evidence against them: its ratio is at most 1.

    (Freeman's ratio can exceed 1 for a value the subject uses less often than the population
    does; as a risk signal that would make a second sighting riskier than an upgrade.)
    """
    return min(1.0, ratio) if counted.count(value) else ratio


def _major(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 6 else None


def _is_upgrade(version: str, seen: Mapping[str, Seen], cut: int) -> bool:
    new = _major(version)
    if new is None:
        return False
    majors = [_major(v[cut:]) for v in seen]
    known = [m for m in majors if m is not None]
    return bool(known) and new > max(known)


_COMBO_PARTS = (Feature.BROWSER, Feature.OS, Feature.DEVICE_TYPE)


def client_ratio(
    found: Mapping[Feature, str], history: SubjectHistory, population: Population
) -> float:
    """The likelihood ratio of a parsed client (``found``: the observation's :func:`features`).

    Three factors, multiplied as Freeman's independent features are:

    - the combination browser/OS/device type, whose unseen values back off to the product of
      the subject's own (smoothed) browser, OS and device-type shares: a new pairing of
      families the subject uses scores low, families never seen score high;
    - the browser version given its family and the OS version given its family
      (:func:`version_ratio`: upgrades are no evidence).

    A factor whose value the subject has shown is at most 1 (:func:`_familiar_cap`).
    Familiar combinations take a shortcut (:func:`_versions_ratio`).
    """
    combo = found.get(Feature.CLIENT)
    counted = tally(history, Feature.CLIENT)
    if combo is None or counted.n == 0:
        return 1.0
    if counted.count(combo):
        # A familiar combination: its factor (at most 1) needs no back-off; a familiar version
        # counts as 1 (all the common case needs is that nothing here is evidence).
        share = counted.count(combo) / (counted.n + counted.t)
        ratio = min(1.0, population_share(population, Feature.CLIENT, combo) / share)
        return ratio * _versions_ratio(found, history, population, familiar=True)
    marginals = [Marginal(history, population, kind) for kind in _COMBO_PARTS]

    def backoff(value: str) -> float:
        parts = value.split("/")
        if len(parts) != len(marginals):
            return 1.0
        share = 1.0
        for marginal, part in zip(marginals, parts, strict=True):
            if part != "?":
                share *= marginal.share(part)
        return share

    unseen = unseen_share(backoff(v) for v in counted.counts)
    share = subject_share(counted, combo, backoff(combo), unseen)
    ratio = population_share(population, Feature.CLIENT, combo) / share
    return ratio * _versions_ratio(found, history, population, familiar=False)


def _versions_ratio(
    found: Mapping[Feature, str],
    history: SubjectHistory,
    population: Population,
    *,
    familiar: bool,
) -> float:
    """The browser's and the system's version factors (a version already seen counts 1 when
    ``familiar``)."""
    ratio = 1.0
    for kind, family_kind in _FAMILY_OF.items():
        family = found.get(family_kind)
        versioned = found.get(kind)
        if not family or not versioned or (familiar and history.seen(kind, versioned)):
            continue
        version = versioned[len(family) + 1 :]
        ratio *= version_ratio(history, population, kind, family, version)
    return ratio
