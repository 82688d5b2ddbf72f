"""The context signals of one request: its device, network, place and client against the
subject's verified history (and, for the client, the population's).

Each :class:`~piigate.model.Signal` carries its *contribution* as ``weight``: the policy's
weight, or a share of it where the evidence is graded. docs/RISK.md gives each rule with units.

- ``new_device``, ``new_country``, ``new_asn``, ``new_network``: a value the subject never
  showed. The policy's weight is scaled by Witten-Bell's confidence that the subject repeats
  themselves, ``n / (n + t)`` (``n`` sightings of ``t`` distinct values): nearly the full
  weight for a subject who always comes back with the same value, less for one who varies.
- ``unfamiliar_client``: Freeman's likelihood ratio of the parsed client
  (:func:`~piigate.risk.familiarity.client_ratio`), from nothing at ratio 1 to the full weight
  at ``full_ratio``, log-linearly.
- ``hosting_network``: a hosting, datacenter or VPN network; the weight less the subject's own
  (smoothed) share of sightings from that ASN.
- ``impossible_travel``: the speed from the subject's last located activity, after the accuracy
  radii and ``tolerance_km``, over at least ``min_elapsed`` seconds; half the weight at
  ``suspicious_kmh``, rising linearly to the full weight at ``impossible_kmh``.
- ``no_history``: the subject's first verified activity. Nothing can be new *for the subject*
  then, so the history signals above stay silent, and no familiarity is credited either: this
  signal carries its own weight, and ``hosting_network`` its full weight.

No signal names a raw address, user agent or device id: details give countries, ASNs, client
families, distances and speeds only. A private (non-routable) address has no geography: no
country, network-kind or travel signal.

Only ``impossible_travel`` depends on the observation's time. :func:`steady_signals` gives the
others, which a caller may keep for a context while the history, population and settings are
the same (``risk.engine`` does); :func:`travel_signal` gives the travel signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from piigate.model import Signal
from piigate.policy.model import RiskSettings, SignalSettings
from piigate.risk.familiarity import client_ratio, repeat_share, subject_share, tally
from piigate.risk.geodesy import great_circle_km, speed_kmh, travel_km
from piigate.risk.observation import Feature, Observation, Population, SubjectHistory, features

__all__ = ["SteadySignals", "context_signals", "steady_signals", "travel_signal"]

# The history signals: (signal, feature, what the detail calls a value).
_NEW_VALUE = (
    ("new_device", Feature.DEVICE, "device"),
    ("new_country", Feature.COUNTRY, "country"),
    ("new_asn", Feature.ASN, "network (ASN)"),
    ("new_network", Feature.NETWORK, "address block"),
)
# Values shown in a detail as they are (the others are keyed hashes, never shown).
_SHOWN = frozenset({Feature.COUNTRY, Feature.ASN})


def context_signals(
    observation: Observation,
    history: SubjectHistory,
    population: Population,
    settings: RiskSettings,
) -> tuple[Signal, ...]:
    """The context signals that fire for ``observation``, with their contributions (> 0)."""
    steady = steady_signals(observation, history, population, settings)
    return steady.around(travel_signal(observation, history, settings))


@dataclass(frozen=True, slots=True)
class SteadySignals:
    """The context signals that do not depend on the observation's time: all but
    ``impossible_travel``, whose place is between ``before`` and ``after``."""

    before: tuple[Signal, ...]
    after: tuple[Signal, ...]

    def around(self, travel: Signal | None) -> tuple[Signal, ...]:
        """All the context signals, ``travel`` (:func:`travel_signal`) in its place."""
        if travel is None:
            return self.before + self.after
        return (*self.before, travel, *self.after)


def steady_signals(
    observation: Observation,
    history: SubjectHistory,
    population: Population,
    settings: RiskSettings,
) -> SteadySignals:
    """The context signals but travel: the same for the same context, history, population and
    settings, whatever the time (a caller may keep them)."""
    found = features(observation)
    if observation.place.private:
        # Non-routable: no country, ASN or coordinates can be trusted, nor any network kind.
        for kind in (Feature.COUNTRY, Feature.REGION, Feature.CITY, Feature.ASN):
            found.pop(kind, None)
    before: list[Signal | None] = []
    if history.verified == 0:
        before.append(_flat(settings, "no_history", "no verified activity yet to compare with"))
    else:
        before.extend(_new_value(settings, history, found, *spec) for spec in _NEW_VALUE)
        before.append(_unfamiliar_client(settings, history, population, found))
    return SteadySignals(_fired(before), _fired([_hosting(settings, observation, history)]))


def travel_signal(
    observation: Observation, history: SubjectHistory, settings: RiskSettings
) -> Signal | None:
    """``impossible_travel`` from the subject's last located activity, if it fires. For one
    context and history, the speed only falls as the observation's time moves on: once quiet,
    it stays quiet."""
    if history.verified == 0:
        return None  # a first activity has nowhere to travel from
    found = _travel(settings, observation, history)
    return found if found is not None and found.weight > 0 else None


def _fired(signals: list[Signal | None]) -> tuple[Signal, ...]:
    return tuple(s for s in signals if s is not None and s.weight > 0)


def _settings(settings: RiskSettings, name: str) -> SignalSettings | None:
    found = settings.signals.get(name)
    return found if found is not None and found.weight > 0 else None


def _flat(settings: RiskSettings, name: str, detail: str) -> Signal | None:
    found = _settings(settings, name)
    return None if found is None else Signal(name, found.weight, detail)


def _graded(found: SignalSettings, share: float) -> int:
    """A share (0..1) of the policy's weight, rounded, never above the weight."""
    return max(0, min(found.weight, round(found.weight * share)))


def _new_value(
    settings: RiskSettings,
    history: SubjectHistory,
    found: dict[Feature, str],
    name: str,
    kind: Feature,
    what: str,
) -> Signal | None:
    spec = _settings(settings, name)
    value = found.get(kind)
    if spec is None or value is None:
        return None  # no device key, unknown country...: no signal, and no credit
    counted = tally(history, kind)
    if counted.count(value):
        return None
    confidence = repeat_share(counted)
    shown = f"{what} {value}" if kind in _SHOWN else what
    detail = (
        f"{shown} not seen in {counted.n} verified sighting(s) "
        f"({counted.t} distinct; confidence {confidence:.2f})"
    )
    return Signal(name, _graded(spec, confidence), detail)


def _unfamiliar_client(
    settings: RiskSettings,
    history: SubjectHistory,
    population: Population,
    found: dict[Feature, str],
) -> Signal | None:
    spec = _settings(settings, "unfamiliar_client")
    combo = found.get(Feature.CLIENT)
    if spec is None or combo is None:
        return None
    ratio = client_ratio(found, history, population)
    if ratio <= 1.0:
        return None
    full = max(2, spec.params.get("full_ratio", 1000))
    share = min(1.0, math.log(ratio) / math.log(full))
    detail = f"client {combo}: likelihood ratio {ratio:.3g} against this subject's history"
    return Signal("unfamiliar_client", _graded(spec, share), detail)


def _hosting(
    settings: RiskSettings, observation: Observation, history: SubjectHistory
) -> Signal | None:
    place = observation.place
    spec = _settings(settings, "hosting_network")
    if spec is None or not place.hosting or place.private:
        return None
    asn = None if place.asn is None else f"AS{place.asn}"
    share = 0.0
    if asn is not None:
        counted = tally(history, Feature.ASN)
        share = subject_share(counted, asn, 0.0, 1.0)
    shown = asn or "unknown ASN"
    detail = f"{shown} is a hosting, datacenter or VPN network"
    if share:
        detail += f" (the subject's share of sightings from it: {share:.2f})"
    return Signal("hosting_network", _graded(spec, 1.0 - share), detail)


def _travel(
    settings: RiskSettings, observation: Observation, history: SubjectHistory
) -> Signal | None:
    spec = _settings(settings, "impossible_travel")
    place, last = observation.place, history.last_place
    if spec is None or last is None or place.private or not place.located:
        return None
    assert place.latitude is not None and place.longitude is not None
    params = spec.params
    distance = great_circle_km(last.latitude, last.longitude, place.latitude, place.longitude)
    radii = (last.radius_km or 0.0) + (place.radius_km or 0.0)
    moved = travel_km(distance, radii_km=radii, tolerance_km=params.get("tolerance_km", 100))
    elapsed = (observation.at - last.at).total_seconds()
    minimum = max(1, params.get("min_elapsed", 300))
    speed = speed_kmh(moved, elapsed, min_elapsed_seconds=minimum)
    suspicious = params.get("suspicious_kmh", 250)
    impossible = max(suspicious + 1, params.get("impossible_kmh", 900))
    if moved <= 0 or speed < suspicious:
        return None
    share = min(1.0, 0.5 + 0.5 * (speed - suspicious) / (impossible - suspicious))
    band = "impossible" if speed >= impossible else "suspicious"
    since = f" from {last.country}" if last.country else ""
    detail = (
        f"{band} travel: {distance:.0f} km{since} in {max(0.0, elapsed) / 60:.0f} min "
        f"({speed:.0f} km/h after {radii + params.get('tolerance_km', 100):.0f} km tolerance)"
    )
    return Signal("impossible_travel", _graded(spec, share), detail)
