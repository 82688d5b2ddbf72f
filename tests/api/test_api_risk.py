"""The decision API with the risk engine wired in: the request's context scored against the
verified history, a burst of reads, the early warning before a signal fires, and what the audit
trail keeps of it (never a raw address or user agent)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from api_support import Node, StartNode, decision_body

from piigate.model import Context
from piigate.risk.geo_settings import GeoConfigError, GeoSettings

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
LONDON_IP = "81.2.69.160"  # in the bundled DB-IP City Lite database: London, GB
SYDNEY_IP = "1.1.1.1"  # Sydney, AU


async def events(node: Node, type: str) -> list[dict[str, Any]]:
    found = await node.services.audit.list_events(types=[type], limit=1000)
    return [dict(e.data) for e in found]


def leaves(value: Any) -> list[str]:
    """Every scalar of a JSON value, as text."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [str(value)]


async def test_the_context_is_scored_against_the_verified_history(node: Node, api_key: str) -> None:
    home = {"ip": LONDON_IP, "user_agent": CHROME, "device_id": "laptop"}
    first = (await node.decide(api_key, decision_body("read", ["phone"], context=home))).json()
    assert first["risk"]["signals"] == [
        {"name": "no_history", "weight": 20, "detail": "no verified activity yet to compare with"}
    ]
    for hours in (30, 20, 10, 1):
        await node.services.context_risk.verified(
            "alice",
            Context(LONDON_IP, CHROME, "laptop"),
            now=node.clock.now() - timedelta(hours=hours),
        )
    usual = (await node.decide(api_key, decision_body("read", ["phone"], context=home))).json()
    assert usual["risk"] == {"score": 0, "signals": []} and usual["outcome"] == "allow"
    away = {"ip": SYDNEY_IP, "user_agent": CHROME, "device_id": "phone"}
    odd = (await node.decide(api_key, decision_body("read", ["phone"], context=away))).json()
    fired = {s["name"]: s for s in odd["risk"]["signals"]}
    assert {"new_device", "new_country", "impossible_travel"} <= set(fired)
    assert "new_country" in fired and "AU" in fired["new_country"]["detail"]
    assert odd["risk"]["score"] == min(100, sum(s["weight"] for s in fired.values()))
    assert odd["outcome"] == "deny"  # the example policy's risk_at_least: 90

    [*_, event] = await events(node, "decision")
    assert event["risk"]["signals"] == [
        {"name": s["name"], "weight": s["weight"]} for s in odd["risk"]["signals"]
    ]
    assert event["risk"]["context"]["country"] == "AU"
    assert event["risk"]["context"]["client"] == "Chrome/Windows/desktop"
    found = leaves(await events(node, "decision"))
    for raw in (LONDON_IP, SYDNEY_IP, CHROME, "Mozilla", "laptop"):
        assert not any(raw in leaf for leaf in found), raw


async def test_a_burst_of_reads_warns_then_fires(node: Node, api_key: str) -> None:
    for n in range(50):  # the example policy's default: 50 distinct records per 10 min
        body = decision_body("read", ["phone"], resource={"type": "customer", "id": f"c{n}"})
        answer = (await node.decide(api_key, body)).json()
        assert "pii_enumeration" not in {s["name"] for s in answer["risk"]["signals"]}
        if n == 38:
            assert await events(node, "approaching_limit") == []
    # Fifty requests in the minute: velocity (60 a minute) is past 80 % of its limit too.
    warnings = {e["signal"]: e for e in await events(node, "approaching_limit")}
    assert warnings["velocity"]["count"] == 48 and warnings["velocity"]["limit"] == 60
    assert warnings["pii_enumeration"] == {
        "signal": "pii_enumeration",
        "per": "subject",
        "count": 40,
        "limit": 50,
        "window": 600,
        "previous": 0,
        "trend": "rising",
    }
    body = decision_body("read", ["phone"], resource={"type": "customer", "id": "c50"})
    answer = (await node.decide(api_key, body)).json()
    [signal] = [s for s in answer["risk"]["signals"] if s["name"] == "pii_enumeration"]
    assert signal["weight"] == 50 and "51 distinct records" in signal["detail"]
    assert len(await events(node, "approaching_limit")) == 2


async def test_an_unreadable_geolocation_database_stops_the_start(
    start_node: StartNode, tmp_path: Path
) -> None:
    broken = tmp_path / "asn.mmdb"
    broken.write_bytes(b"not a MaxMind database")
    with pytest.raises(GeoConfigError) as raised:
        await start_node(risk=GeoSettings(asn_database=str(broken)))
    assert raised.value.errors == [
        f"risk.asn_database: cannot read {broken} (InvalidDatabaseError)"
    ]
