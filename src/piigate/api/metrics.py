"""Prometheus metrics of one app instance (its own registry, so tests and apps never share)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from piigate.model import Decision

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "piigate_decisions_total", "Decisions by outcome", ["outcome"], registry=self.registry
        )
        self.rule_hits = Counter(
            "piigate_decision_rules_total",
            "Rules that produced a decision, by rule and outcome",
            ["rule", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "piigate_decision_seconds",
            "Time to decide, including the audit commit",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.policy_loaded = Gauge(
            "piigate_policy_loaded", "1 when a policy is in force", registry=self.registry
        )
        self.policy_reload_failures = Counter(
            "piigate_policy_reload_failures_total", "Policy reloads refused", registry=self.registry
        )
        self.logins = Counter(
            "piigate_logins_total", "Local logins by result", ["result"], registry=self.registry
        )

        # The labelled children, by label values: ``labels()`` validates and locks on every
        # call, which showed on the decision hot path. Bounded by the outcomes and the rules
        # of the policies loaded (rule names only ever come from a policy, never a request).
        self._by_outcome: dict[str, Any] = {}
        self._by_rule: dict[tuple[str, str], Any] = {}

    def observe(self, decision: Decision, seconds: float) -> None:
        outcome = decision.outcome.value
        child = self._by_outcome.get(outcome)
        if child is None:
            child = self._by_outcome[outcome] = self.decisions.labels(outcome)
        child.inc()
        for rule in decision.rules:
            hit = self._by_rule.get((rule, outcome))
            if hit is None:
                hit = self._by_rule[(rule, outcome)] = self.rule_hits.labels(rule, outcome)
            hit.inc()
        self.latency.observe(seconds)
