"""Prometheus metrics of one app instance (its own registry, so tests and apps never share)."""

from __future__ import annotations

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

    def observe(self, decision: Decision, seconds: float) -> None:
        outcome = decision.outcome.value
        self.decisions.labels(outcome).inc()
        for rule in decision.rules:
            self.rule_hits.labels(rule, outcome).inc()
        self.latency.observe(seconds)
