"""The monitoring metrics: risk scores with the decisions, step-ups and alerts from audit
events, gateway timings; plain integers exported in Prometheus' text format."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest
from test_metrics import _sample

from piigate.api.metrics import Metrics
from piigate.model import AuditEvent, Decision, Outcome, RiskAssessment

AT = datetime(2026, 5, 4, tzinfo=UTC)


def test_risk_scores_are_a_histogram_of_the_decisions() -> None:
    metrics = Metrics()
    for score in (0, 10, 35, 100):
        metrics.observe(Decision("d", Outcome.ALLOW, risk=RiskAssessment(score, ())), 0.001)
    text = generate_latest(metrics.registry).decode()
    assert _sample(text, "piigate_risk_score_bucket", le="0.0") == 1
    assert _sample(text, "piigate_risk_score_bucket", le="10.0") == 2
    assert _sample(text, "piigate_risk_score_bucket", le="30.0") == 2
    assert _sample(text, "piigate_risk_score_bucket", le="40.0") == 3
    assert _sample(text, "piigate_risk_score_bucket", le="+Inf") == 4
    assert _sample(text, "piigate_risk_score_sum") == 145
    assert _sample(text, "piigate_risk_score_count") == 4


def test_step_ups_are_counted_from_their_audit_events() -> None:
    metrics = Metrics()
    for type, method in [
        ("challenge_verified", "totp"),
        ("challenge_verified", "totp"),
        ("verification_failed", "webauthn"),
        ("challenge_denied", "push"),
        ("verification_failed", "<script>"),  # never a label value from outside
        ("decision", "totp"),
    ]:
        metrics.events.observe(AuditEvent(type, AT, "alice", {"method": method}))
    metrics.events.alert_raised("push_denied")
    text = generate_latest(metrics.registry).decode()
    assert _sample(text, "piigate_stepups_total", method="totp", result="verified") == 2
    assert _sample(text, "piigate_stepups_total", method="webauthn", result="failed") == 1
    assert _sample(text, "piigate_stepups_total", method="push", result="denied") == 1
    assert _sample(text, "piigate_stepups_total", method="unknown", result="failed") == 1
    assert _sample(text, "piigate_alerts_total", kind="push_denied") == 1
    assert _sample(text, "piigate_event_fanout_total", result="sent") == 0


def test_gateway_timings_by_gateway_and_status_class() -> None:
    metrics = Metrics()
    metrics.gateway.observe(("http", "2xx"), 0.004)
    metrics.gateway.observe(("http", "2xx"), 0.3)
    metrics.gateway.observe(("forward_auth", "4xx"), 0.0005)
    text = generate_latest(metrics.registry).decode()
    name = "piigate_gateway_request_seconds"
    assert _sample(text, f"{name}_bucket", code="2xx", gateway="http", le="0.005") == 1
    assert _sample(text, f"{name}_bucket", code="2xx", gateway="http", le="+Inf") == 2
    assert _sample(text, f"{name}_count", code="4xx", gateway="forward_auth") == 1
    assert _sample(text, f"{name}_sum", code="2xx", gateway="http") == 0.304
