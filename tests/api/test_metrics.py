"""The decision metrics: counted in plain integers, exported in Prometheus' text format."""

from __future__ import annotations

import re

from prometheus_client import generate_latest

from piigate.api.metrics import Metrics
from piigate.model import Decision, Outcome


def _sample(text: str, name: str, **labels: str) -> float | None:
    rendered = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.escape(name + (f"{{{rendered}}}" if labels else "")) + r" (\S+)$"
    found = re.search(pattern, text, re.M)
    return None if found is None else float(found.group(1))


def test_decisions_rules_and_latency_are_counted() -> None:
    metrics = Metrics()
    metrics.observe(Decision("d1", Outcome.ALLOW, rules=("a", "b")), 0.0004)
    metrics.observe(Decision("d2", Outcome.STEP_UP, rules=("a",)), 0.003)
    metrics.observe(Decision("d3", Outcome.STEP_UP, rules=("a",)), 0.0025)  # on a bound: le
    metrics.observe(Decision("d4", Outcome.DENY), 7.0)  # beyond the last bucket
    text = generate_latest(metrics.registry).decode()

    assert _sample(text, "piigate_decisions_total", outcome="allow") == 1
    assert _sample(text, "piigate_decisions_total", outcome="step_up") == 2
    assert _sample(text, "piigate_decisions_total", outcome="deny") == 1
    assert _sample(text, "piigate_decision_rules_total", rule="a", outcome="step_up") == 2
    assert _sample(text, "piigate_decision_rules_total", rule="b", outcome="allow") == 1
    assert _sample(text, "piigate_decision_rules_total", rule="b", outcome="step_up") is None

    # Cumulative buckets, each counting the observations at or below its bound.
    assert _sample(text, "piigate_decision_seconds_bucket", le="0.0005") == 1
    assert _sample(text, "piigate_decision_seconds_bucket", le="0.001") == 1
    assert _sample(text, "piigate_decision_seconds_bucket", le="0.0025") == 2
    assert _sample(text, "piigate_decision_seconds_bucket", le="0.005") == 3
    assert _sample(text, "piigate_decision_seconds_bucket", le="1.0") == 3
    assert _sample(text, "piigate_decision_seconds_bucket", le="+Inf") == 4
    assert _sample(text, "piigate_decision_seconds_count") == 4
    total = _sample(text, "piigate_decision_seconds_sum")
    assert total is not None and abs(total - 7.0059) < 1e-9
    assert "# TYPE piigate_decision_seconds histogram" in text


def test_nothing_observed_exports_zeroes() -> None:
    text = generate_latest(Metrics().registry).decode()
    assert _sample(text, "piigate_decision_seconds_count") == 0
    assert _sample(text, "piigate_decision_seconds_bucket", le="+Inf") == 0
    assert "# TYPE piigate_decisions_total counter" in text


def test_failed_policy_conditions_are_counted_by_rule() -> None:
    metrics = Metrics()
    broken = Decision("d1", Outcome.DENY, rules=("by-number",), expr_errors=("by-number",))
    metrics.observe(broken, 0.001)
    metrics.observe(broken, 0.001)
    metrics.observe(Decision("d2", Outcome.ALLOW), 0.001)
    text = generate_latest(metrics.registry).decode()
    assert _sample(text, "piigate_policy_expression_errors_total", rule="by-number") == 2
    assert text.count("piigate_policy_expression_errors_total{") == 1
