"""Prometheus metrics of one app instance (its own registry, so tests and apps never share)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from piigate.model import AuditEvent, Decision, Method

__all__ = ["DecisionCounts", "EventCounts", "LatencyHistogram", "Metrics"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
RISK_BUCKETS = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
GATEWAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
# A phase of a gateway request can be a tenth of a millisecond, and the gateway's added
# latency is judged against 1 ms: fine steps below it, so that a quantile read from the
# buckets says something.
PHASE_BUCKETS = (
    *(0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0008),
    *(0.001, 0.0015, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0),
)


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
        self.events = EventCounts()
        self.registry.register(self.events)
        self.gateway = LatencyHistogram(
            "piigate_gateway_request_seconds",
            "Requests through the gateways, from arrival to the end of the answer, by gateway "
            "and status class",
            labels=("gateway", "code"),
            buckets=GATEWAY_BUCKETS,
        )
        self.registry.register(self.gateway)
        self.gateway_phases = LatencyHistogram(
            "piigate_gateway_http_phase_seconds",
            "Where a request's time goes in the HTTP gateway, by phase: decision (arrival to "
            "the gate's verdict), upstream (the request sent to its answer's status and "
            "headers), masking (the answer read whole and masked), audit_wait (the answer "
            "ready, waiting for its decision's audit commit)",
            labels=("phase",),
            buckets=PHASE_BUCKETS,
        )
        self.registry.register(self.gateway_phases)
        self.statements = LatencyHistogram(
            "piigate_gateway_statement_seconds",
            "The PostgreSQL gateway's time to rule on a statement (reading it, the decision, "
            "a step-up's wait) before it goes to the server or is refused, by protocol step "
            "and ruling",
            labels=("step", "ruling"),
            buckets=LATENCY_BUCKETS,
        )
        self.registry.register(self.statements)

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
        self.risk_counts = [0] * (len(RISK_BUCKETS) + 1)
        self.risk_sum = 0

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
        score = decision.risk.score
        self.risk_counts[bisect_left(RISK_BUCKETS, score)] += 1
        self.risk_sum += score

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
        yield HistogramMetricFamily(
            "piigate_decision_seconds",
            "Time to decide, including the audit commit",
            buckets=_cumulative(self.buckets, self.latency_counts),
            sum_value=self.latency_sum,
        )
        yield HistogramMetricFamily(
            "piigate_risk_score",
            "Risk scores of the decisions (0-100)",
            buckets=_cumulative(RISK_BUCKETS, self.risk_counts),
            sum_value=self.risk_sum,
        )


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Prometheus buckets (``le`` text, cumulative count) from per-bucket counts; the last
    count is the +Inf bucket's. Reads a snapshot of ``counts``."""
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*bounds, float("inf")), list(counts), strict=True):
        running += count
        cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return cumulative


# The audit events a step-up's end is recorded as, and the result each counts as.
_STEPUP_RESULTS: Final = {
    "challenge_verified": "verified",
    "verification_failed": "failed",
    "challenge_denied": "denied",
}
_METHODS: Final = frozenset(m.value for m in Method)


class EventCounts:
    """What this node's audit events say, counted as they commit (``observe``): step-ups by
    method and result, alerts raised by kind, the alert sinks' deliveries and the fan-out's
    messages. Plain integers, as :class:`DecisionCounts`."""

    STEPUP_TYPES: Final = tuple(_STEPUP_RESULTS)

    def __init__(self) -> None:
        self.stepups: dict[tuple[str, str], int] = {}
        self.alerts: dict[str, int] = {}
        # Read at scrape time: each source gives {label values: count}.
        self.sinks: Callable[[], Mapping[tuple[str, str], int]] = dict
        self.fanout: Callable[[], Mapping[str, int]] = _no_fanout

    def observe(self, event: AuditEvent) -> None:
        """Count ``event`` if it ends a step-up."""
        result = _STEPUP_RESULTS.get(event.type)
        if result is None:
            return
        method = event.data.get("method")
        key = (method if isinstance(method, str) and method in _METHODS else "unknown", result)
        self.stepups[key] = self.stepups.get(key, 0) + 1

    def alert_raised(self, kind: str) -> None:
        self.alerts[kind] = self.alerts.get(kind, 0) + 1

    def collect(self) -> Iterator[Metric]:
        stepups = CounterMetricFamily(
            "piigate_stepups",
            "Step-up verifications by method and result (verified, failed, denied)",
            labels=["method", "result"],
        )
        for (method, result), count in sorted(list(self.stepups.items())):
            stepups.add_metric([method, result], count)
        yield stepups
        alerts = CounterMetricFamily(
            "piigate_alerts", "Alerts this node raised, by kind", labels=["kind"]
        )
        for kind, count in sorted(list(self.alerts.items())):
            alerts.add_metric([kind], count)
        yield alerts
        sinks = CounterMetricFamily(
            "piigate_alert_deliveries",
            "Alerts handed to each sink, by result (delivered, dropped from a full queue, "
            "failed after retries)",
            labels=["sink", "result"],
        )
        for (sink, result), count in sorted(self.sinks().items()):
            sinks.add_metric([sink, result], count)
        yield sinks
        fanout = CounterMetricFamily(
            "piigate_event_fanout",
            "Event fan-out between nodes: messages sent, events received, relay failures",
            labels=["result"],
        )
        for result, count in sorted(self.fanout().items()):
            fanout.add_metric([result], count)
        yield fanout


def _no_fanout() -> Mapping[str, int]:
    """A node without a relay (one SQLite node) sends and receives nothing."""
    return {"sent": 0, "received": 0, "failures": 0}


class LatencyHistogram:
    """One histogram family with labels, counted in plain integers (``observe``)."""

    def __init__(
        self, name: str, documentation: str, *, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.buckets = buckets
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        counts, total = series
        counts[bisect_left(self.buckets, seconds)] += 1
        total[0] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for labels, (counts, total) in sorted(list(self._series.items())):
            family.add_metric(
                list(labels), buckets=_cumulative(self.buckets, counts), sum_value=total[0]
            )
        yield family
