"""The Grafana dashboard (docs/grafana/piigate.json) uses exactly the metrics a node exports:
every metric name in its PromQL is a sample of a real ``/metrics`` scrape of a node that made
decisions, step-ups, an alert and a forward-auth answer."""

from __future__ import annotations

import json
import re
from pathlib import Path

from api_support import EXAMPLE_POLICY, ROOT, StartNode, bearer
from factor_support import Users, challenge, enroll_totp, totp_code, users, verify, wrong
from monitoring_support import alerts_of, eventually, record_alert_event
from prometheus_client.parser import text_string_to_metric_families

from piigate.audit.sink_settings import AlertSettings, JsonLinesSettings

__all__ = ["users"]  # the fixture, re-exported for pytest

DASHBOARD = ROOT / "docs" / "grafana" / "piigate.json"
# What the dashboard must show (the list): decisions, step-ups by method and result,
# risk scores, alerts, gateway latency.
REQUIRED = {
    "piigate_decisions_total",
    "piigate_decision_seconds_bucket",
    "piigate_stepups_total",
    "piigate_risk_score_bucket",
    "piigate_alerts_total",
    "piigate_gateway_request_seconds_bucket",
}
CONFIG = """\
policy: {policy}
gateway:
  http:
    upstream: http://127.0.0.1:9
    routes:
      - match: {{method: GET, path: "/health"}}
        action: read
"""


POSTGRES_GATEWAY = frozenset(
    {"piigate_gateway_statement_seconds_bucket", "piigate_gateway_statement_seconds_count"}
)
# Counted by the HTTP gateway's proxy only: scraped in tests/gateway/http/test_proxy.py
# (test_each_phase_of_a_request_is_timed).
HTTP_GATEWAY_PHASES = frozenset(
    {"piigate_gateway_http_phase_seconds_sum", "piigate_gateway_http_phase_seconds_count"}
)


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert found and all(isinstance(e, str) and e for e in found)
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label names and functions are not
    ``piigate_``-prefixed; strings are left out)."""
    return set(re.findall(r"\bpiigate_[a-z0-9_]+\b", re.sub(r'"[^"]*"', "", expr)))


def test_expressions_are_read_as_expected() -> None:
    expr = 'sum by (le) (rate(piigate_x_bucket{code="piigate_not_a_metric"}[5m])) / piigate_y'
    assert metric_names(expr) == {"piigate_x_bucket", "piigate_y"}


async def test_every_metric_of_the_dashboard_is_in_a_real_scrape(
    start_node: StartNode, users: Users, tmp_path: Path
) -> None:
    config = tmp_path / "piigate.yaml"
    config.write_text(CONFIG.format(policy=EXAMPLE_POLICY))
    node = await start_node(
        config_path=str(config),
        alerts=AlertSettings(jsonl=JsonLinesSettings(str(tmp_path / "alerts.jsonl"))),
    )
    _, key = await node.api_key("app")
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    for _ in range(2):  # one step-up verified, one failed
        challenge_id = await challenge(node, key)
        code = totp_code(node, secret)
        await verify(alice, challenge_id, code)
        await verify(alice, await challenge(node, key), wrong(code))
        node.clock.advance(30)
    event = await record_alert_event(node)
    await eventually(lambda: alerts_of(node, event.seq), what="the alert")
    await node.services.monitoring.desk.sinks[0].drained()
    asked = await node.client.get(
        "/v1/forward-auth",
        headers={"X-Original-Method": "GET", "X-Original-URI": "/health", **bearer(key)},
    )
    assert asked.status_code in (200, 401, 403)
    scrape = (await node.client.get("/metrics")).text
    samples = {s.name for f in text_string_to_metric_families(scrape) for s in f.samples}

    used = set().union(*(metric_names(e) for e in expressions()))
    assert used >= REQUIRED, f"missing: {sorted(REQUIRED - used)}"
    # The PostgreSQL gateway's statements are scraped from a gateway in
    # tests/gateway/postgres/test_pg_gateway.py (test_each_ruling_is_timed_in_the_node_metrics).
    exported = used - POSTGRES_GATEWAY - HTTP_GATEWAY_PHASES
    assert exported <= samples, f"not exported: {sorted(exported - samples)}"
    stepups = [
        s.labels
        for f in text_string_to_metric_families(scrape)
        for s in f.samples
        if s.name == "piigate_stepups_total"
    ]
    assert {"method": "totp", "result": "verified"} in stepups
    assert {"method": "totp", "result": "failed"} in stepups
