"""The security team's alerts page: who may open it, what it lists, its filters, and the
acknowledge button (CSRF first)."""

from __future__ import annotations

import re

from api_support import Node
from console_support import csrf_of, sign_in
from monitoring_support import alerts_of, eventually, record_alert_event

from piigate.audit.alerts import Alert

PASSWORD = "correct horse battery staple"


async def signed_in(node: Node, name: str = "sec", roles: tuple[str, ...] = ("security",)) -> None:
    await node.user(name, PASSWORD, roles)
    assert (await sign_in(node, name, PASSWORD)).status_code == 303


async def an_alert(node: Node, subject: str = "alice") -> Alert:
    event = await record_alert_event(node, subject)
    (alert,) = await eventually(lambda: alerts_of(node, event.seq), what="the alert")
    return alert


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="(alt_[A-Za-z0-9_-]+)"', html)


async def test_only_the_security_team_may_open_it(node: Node) -> None:
    assert (await node.client.get("/security/alerts")).headers["location"].startswith("/login")
    await signed_in(node, "ann", ())
    page = await node.client.get("/security/alerts")
    assert page.status_code == 403 and "Not allowed" in page.text


async def test_open_alerts_are_listed_with_names_and_ids(node: Node) -> None:
    alert = await an_alert(node)
    await signed_in(node)
    page = await node.client.get("/security/alerts")
    assert page.status_code == 200
    assert rows(page.text) == [alert.id]
    assert "push cer_x denied on device fac_x (challenge chl_x)" in page.text
    assert f"#{alert.event_seq}" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and " style=" not in page.text


async def test_acknowledging_needs_the_token_then_moves_the_alert(node: Node) -> None:
    alert = await an_alert(node)
    await signed_in(node)
    origin = {"Origin": node.settings.public_url.rstrip("/")}
    url = f"/security/alerts/{alert.id}/acknowledge"
    refused = await node.client.post(url, data={"status": "open"}, headers=origin)
    assert refused.status_code == 403
    assert (await node.services.monitoring.desk.recent(open_only=True)) == [alert]
    token = csrf_of(await node.client.get("/security/alerts"))
    done = await node.client.post(url, data={"csrf_token": token, "status": "open"}, headers=origin)
    assert done.status_code == 303 and done.headers["location"] == "/security/alerts?status=open"
    assert rows((await node.client.get("/security/alerts")).text) == []
    acknowledged = await node.client.get("/security/alerts?status=acknowledged")
    assert rows(acknowledged.text) == [alert.id]
    assert "by sec" in acknowledged.text
    again = await node.client.post(url, data={"csrf_token": token}, headers=origin)
    assert again.status_code == 303  # already acknowledged: the list shows by whom
    missing = await node.client.post(
        "/security/alerts/alt_nope/acknowledge", data={"csrf_token": token}, headers=origin
    )
    assert missing.status_code == 404 and "No such alert." in missing.text
    events = await node.services.audit.list_events(types=["alert_acknowledged"])
    assert [e.data["by"] for e in events] == ["sec"]


async def test_filters_by_kind_and_subject(node: Node) -> None:
    for_alice, for_bob = await an_alert(node, "alice"), await an_alert(node, "bob")
    data = {"signal": "velocity", "per": "subject", "count": 80, "limit": 100, "window": 60}
    event = await node.services.audit.record("approaching_limit", subject_id="bob", data=data)
    (warning,) = await eventually(lambda: alerts_of(node, event.seq), what="the warning")
    await signed_in(node)
    everything = await node.client.get("/security/alerts?status=all")
    assert rows(everything.text) == [warning.id, for_bob.id, for_alice.id]
    by_subject = await node.client.get("/security/alerts?subject=bob")
    assert rows(by_subject.text) == [warning.id, for_bob.id]
    by_kind = await node.client.get("/security/alerts?kind=push_denied&subject=bob")
    assert rows(by_kind.text) == [for_bob.id]
    unknown = await node.client.get("/security/alerts?kind=nonsense&status=weird")
    assert rows(unknown.text) == [warning.id, for_bob.id, for_alice.id]  # filters dropped
