"""The behaviour signals' limits and windows as a policy sets them (``risk:`` in the policy file),
with their defaults: read once per policy (:func:`read_rules`), not on every request.
``risk.behaviour`` counts against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from piigate.policy.model import RiskSettings, SignalSettings

__all__ = ["Rule", "Rules", "read_rules"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One behaviour signal as the policy sets it (weight above 0)."""

    weight: int
    window: int  # seconds
    limit: int
    ip_limit: int  # velocity: requests per client address
    habit_window: int  # bulk_destructive: the window of the subject's usual rate
    baseline_factor: int  # bulk_destructive: how far above that rate it fires


@dataclass(frozen=True, slots=True, eq=False)
class Rules:
    """The behaviour signals of one policy's settings (None: weighted 0), read once per policy
    rather than on every request."""

    settings: RiskSettings  # the settings read: a reload brings new ones
    velocity: Rule | None
    failed: Rule | None
    bulk: Rule | None
    enumeration: Rule | None


def read_rules(settings: RiskSettings) -> Rules:
    """The behaviour signals of ``settings``."""
    signals = settings.signals
    return Rules(
        settings,
        velocity=_rule(signals, "velocity", "limit", 60),
        failed=_rule(signals, "failed_stepups", "limit", 3),
        bulk=_rule(signals, "bulk_destructive", "limit", 20),
        enumeration=_rule(signals, "pii_enumeration", "distinct_records", 50),
    )


def _rule(
    signals: Mapping[str, SignalSettings], name: str, limit: str, default: int
) -> Rule | None:
    """The signal ``name`` (None when weighted 0), its limit the parameter ``limit``."""
    spec = signals.get(name)
    if spec is None or spec.weight <= 0:
        return None
    params = spec.params
    window = max(1, params.get("window", 60))
    return Rule(
        spec.weight,
        window,
        params.get(limit, default),
        ip_limit=params.get("ip_limit", 300),
        habit_window=max(window, params.get("baseline_window", 86_400)),
        baseline_factor=params.get("baseline_factor", 3),
    )
