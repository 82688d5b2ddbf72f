"""Prometheus metrics of one app instance (its own registry, so tests and apps never share)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from piigate.model import Decision

__all__ = ["DecisionCounts", "Metrics"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = DecisionCounts()
        self.registry.register(self.decisions)
        self.policy_loaded = Gauge(
            "piigate_policy_loaded", "1 when a policy is in force", registry=self.registry
        )
        self.policy_reload_failures = Counter(
            "piigate_policy_reload_failures_total", "Policy reloads refused", registry=self.registry
        )
        self.logins = Counter(
            "piigate_logins_total", "Local logins by result", ["result"], registry=self.registry
        )

    def observe(self, decision: Decision, seconds: float) -> None:
        self.decisions.observe(decision, seconds)


class DecisionCounts:
    """The decision metrics, counted in plain integers and exported when scraped.

    Every decision bumps its outcome, each of its rules, a latency bucket, and each rule whose
    CEL condition failed (so a broken condition shows, though it fails closed). Plain dict
    updates, not ``prometheus_client``'s counters, which take a lock and a method call per count,
    several per decision on the hot path. Counting happens on the event loop
    only; a scrape (in any thread) reads a snapshot of each dict. Rule names only ever come
    from a loaded policy, never from a request, so the label sets stay bounded.
    """

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.by_outcome: dict[str, int] = {}
        self.by_rule: dict[tuple[str, str], int] = {}
        self.expr_errors: dict[str, int] = {}
        self.latency_counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.latency_sum = 0.0

    def observe(self, decision: Decision, seconds: float) -> None:
        outcome = decision.outcome.value
        by_outcome = self.by_outcome
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        by_rule = self.by_rule
        for rule in decision.rules:
            key = (rule, outcome)
            by_rule[key] = by_rule.get(key, 0) + 1
        for rule in decision.expr_errors:  # rare: a policy condition that failed
            self.expr_errors[rule] = self.expr_errors.get(rule, 0) + 1
        self.latency_counts[bisect_left(self.buckets, seconds)] += 1
        self.latency_sum += seconds

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "piigate_decisions", "Decisions by outcome", labels=["outcome"]
        )
        for outcome, count in sorted(list(self.by_outcome.items())):
            decisions.add_metric([outcome], count)
        yield decisions
        rules = CounterMetricFamily(
            "piigate_decision_rules",
            "Rules that produced a decision, by rule and outcome",
            labels=["rule", "outcome"],
        )
        for (rule, outcome), count in sorted(list(self.by_rule.items())):
            rules.add_metric([rule, outcome], count)
        yield rules
        errors = CounterMetricFamily(
            "piigate_policy_expression_errors",
            "Rules whose CEL condition failed to evaluate (taken as matching), by rule",
            labels=["rule"],
        )
        for rule, count in sorted(list(self.expr_errors.items())):
            errors.add_metric([rule], count)
        yield errors
        counts, total = list(self.latency_counts), self.latency_sum
        cumulative, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        yield HistogramMetricFamily(
            "piigate_decision_seconds",
            "Time to decide, including the audit commit",
            buckets=cumulative,
            sum_value=total,
        )
