"""Metrics of a replay: AUC, step-up and detection rates, operating points.

A score at or above the threshold steps up. The AUC is the probability that a random attack
scores above a random legitimate attempt, ties counting one half (the Mann-Whitney U statistic).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Point", "auc", "operating_point", "rate_at"]


def auc(attacks: Sequence[float], legit: Sequence[float]) -> float | None:
    """The area under the ROC curve (None when either side is empty)."""
    if not attacks or not legit:
        return None
    ordered = sorted(legit)
    above = 0.0
    for score in attacks:
        below = bisect.bisect_left(ordered, score)
        ties = bisect.bisect_right(ordered, score) - below
        above += below + ties / 2
    return above / (len(attacks) * len(ordered))


def rate_at(scores: Sequence[float], threshold: float) -> float | None:
    """The share of ``scores`` at or above ``threshold`` (None for no scores)."""
    if not scores:
        return None
    return sum(1 for s in scores if s >= threshold) / len(scores)


@dataclass(frozen=True, slots=True)
class Point:
    """A point of the ROC curve: the threshold and what it does."""

    threshold: float
    stepup_rate_legit: float
    detection_rate: float


def operating_point(
    attacks: Sequence[float], legit: Sequence[float], detection: float
) -> Point | None:
    """The highest threshold that still detects at least ``detection`` of ``attacks``.

    Read off the curve of this very file: it says what the scores can separate, not a threshold
    to deploy.
    """
    if not attacks or not legit:
        return None
    ordered = sorted(attacks, reverse=True)
    # The k-th highest attack score detects k attacks at least.
    needed = max(1, math.ceil(detection * len(ordered) - 1e-9))
    threshold = ordered[min(needed, len(ordered)) - 1]
    return Point(
        threshold,
        rate_at(legit, threshold) or 0.0,
        rate_at(attacks, threshold) or 0.0,
    )
