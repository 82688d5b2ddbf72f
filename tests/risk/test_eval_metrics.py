"""AUC with ties, rates at a threshold, and operating points, on hand-counted examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.risk.evaluation.metrics import auc, operating_point, rate_at


def test_auc_counts_ties_as_one_half() -> None:
    # Pairs (attack > legit): 3 beats 1, 2, 0; 2 beats 1 and 0 and ties 2: 5.5 of 6.
    assert auc([3, 2], [1, 2, 0]) == pytest.approx(5.5 / 6)
    assert auc([1, 1], [1, 1, 1]) == 0.5
    assert auc([5], [1, 2]) == 1.0
    assert auc([0], [1, 2]) == 0.0
    assert auc([], [1]) is None
    assert auc([1], []) is None


def naive_auc(attacks: list[int], legit: list[int]) -> float:
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in attacks for b in legit)
    return wins / (len(attacks) * len(legit))


@given(st.lists(st.integers(0, 10), min_size=1), st.lists(st.integers(0, 10), min_size=1))
def test_auc_is_the_pairwise_win_rate(attacks: list[int], legit: list[int]) -> None:
    assert auc(attacks, legit) == pytest.approx(naive_auc(attacks, legit))


def test_rates_step_up_at_or_above_the_threshold() -> None:
    assert rate_at([10, 60, 70, 59], 60) == 0.5
    assert rate_at([], 60) is None


def test_the_operating_point_is_the_highest_threshold_reaching_the_detection() -> None:
    attacks = [float(s) for s in range(1, 21)]  # 20 attacks scoring 1..20
    legit = [0.0] * 90 + [5.0] * 5 + [19.0] * 5
    point = operating_point(attacks, legit, 0.95)
    assert point is not None
    # 19 of 20 attacks (95 %) score 2 or more.
    assert point.threshold == 2
    assert point.detection_rate == 0.95
    assert point.stepup_rate_legit == pytest.approx(0.10)
    exact = operating_point(attacks, legit, 1.0)
    assert exact is not None and exact.threshold == 1 and exact.detection_rate == 1.0
    assert operating_point([], legit, 0.95) is None
