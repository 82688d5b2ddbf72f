"""Subjects ranked by their current risk (``GET /security/subjects``) with the signals behind it,
and one subject's page (``GET /security/subjects/{id}``): their risk and their timeline only,
a page at a time."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
from api_support import Node, decision_body
from monitoring_support import alerts_of, eventually, record_alert_event
from security_support import feed_seqs, sign_in_as

from piigate.model import Context

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
LONDON_IP = "81.2.69.160"  # London, GB in the bundled city database
SYDNEY_IP = "1.1.1.1"  # Sydney, AU
HOME = {"ip": LONDON_IP, "user_agent": CHROME, "device_id": "laptop"}


async def decide(node: Node, key: str, subject: str, **extra: Any) -> dict[str, Any]:
    answer = await node.decide(key, decision_body("read", ["phone"], subject=subject, **extra))
    assert answer.status_code == 200, answer.text
    decided: dict[str, Any] = answer.json()
    return decided


def ranking(page: httpx.Response) -> list[tuple[str, int]]:
    """(subject, score) of each row of the ranking, in order."""
    rows = re.findall(
        r'<th scope="row"><a href="[^"]+">([^<]+)</a></th>\s*<td><span class="badge \w+ score">'
        r"(\d+)</span>",
        page.text,
    )
    return [(subject, int(score)) for subject, score in rows]


async def test_subjects_rank_by_current_risk_with_its_signals(node: Node) -> None:
    _, key = await node.api_key("app")
    await sign_in_as(node, "sec")
    # dan: at home for a day, then a new device on the other side of the world.
    for hours in (30, 20, 10, 1):
        await node.services.context_risk.verified(
            "dan",
            Context(LONDON_IP, CHROME, "laptop"),
            now=node.clock.now() - timedelta(hours=hours),
        )
    away = await decide(
        node, key, "dan", context={"ip": SYDNEY_IP, "user_agent": CHROME, "device_id": "phone"}
    )
    assert away["outcome"] == "deny"
    # eve was as risky an hour ago; her latest decision is what counts.
    await decide(node, key, "eve", context=HOME)
    node.clock.advance(60)
    await decide(node, key, "bob", context=HOME)  # no history yet: 20
    await decide(node, key, "cat")  # no context: nothing to score
    node.clock.advance(60)
    await decide(node, key, "ann", context=HOME)  # as risky as bob, and more recent

    page = await node.client.get("/security/subjects")
    assert page.status_code == 200
    assert ranking(page) == [
        ("dan", away["risk"]["score"]),
        ("ann", 20),
        ("bob", 20),
        ("eve", 20),
        ("sec", 20),  # signing in to the console is a decision too (before eve's, same time)
        ("cat", 0),
    ]
    dan = page.text.split('href="/security/subjects/dan"')[1].split("</tr>")[0]
    for signal in away["risk"]["signals"]:
        name = signal["name"].replace("_", " ")
        assert f'<span class="signal">{name}</span> <span class="muted">+{signal["weight"]}' in dan
    assert "country AU" in dan and "client Chrome/Windows/desktop" in dan
    assert "Denied read of phone on customer 42: risk too high" in dan
    assert '<span class="signal">no history</span>' in page.text
    for raw in (SYDNEY_IP, LONDON_IP, "Mozilla", "laptop"):
        assert raw not in page.text

    # Outside the window, a decision no longer ranks.
    node.clock.advance(3600 - 90)  # the last hour began 30 s after the first decisions
    last_hour = await node.client.get("/security/subjects", params={"window": "1h"})
    assert ranking(last_hour) == [("ann", 20), ("bob", 20), ("cat", 0)]
    node.clock.advance(3600)
    assert ranking(await node.client.get("/security/subjects", params={"window": "1h"})) == []
    assert len(ranking(await node.client.get("/security/subjects", params={"window": "7d"}))) == 6


async def test_a_subjects_page_shows_their_risk_and_only_their_events(node: Node) -> None:
    _, key = await node.api_key("app")
    await sign_in_as(node, "sec")
    mine = [await decide(node, key, "ann", context=HOME) for _ in range(2)]
    theirs = await decide(node, key, "bob")
    await node.services.audit.record("login_failed", subject_id="ann")

    page = await node.client.get("/security/subjects/ann")
    assert page.status_code == 200
    ann = [e.seq for e in await node.services.audit.list_events(subject_id="ann")]
    assert feed_seqs(page) == sorted(ann, reverse=True)
    assert page.text.count("Allowed read of phone on customer 42") == 3  # two lines, and the risk
    assert "Sign-in failed" in page.text
    assert theirs["decision_id"] not in page.text and ">bob<" not in page.text
    assert all(m["decision_id"] not in page.text for m in mine)  # ids stay in the audit
    assert '<span class="badge ok score">20</span>' in page.text
    assert "<dt>country</dt><dd>GB</dd>" in page.text
    assert 'href="/security?subject=ann"' in page.text

    nobody = await node.client.get("/security/subjects/nobody")
    assert "No decision about this subject yet." in nobody.text
    assert "No events." in nobody.text


async def test_a_timeline_pages_backwards_and_forwards(node: Node) -> None:
    await sign_in_as(node, "sec")
    made = [
        (await node.services.audit.record("login_failed", subject_id="a/b")).seq for _ in range(60)
    ]
    await node.services.audit.record("login_failed", subject_id="a")

    first = await node.client.get("/security/subjects/a%2Fb")
    assert feed_seqs(first) == made[::-1][:50]
    assert f'href="?before={made[10]}"' in first.text and "?after=" not in first.text
    older = await node.client.get("/security/subjects/a%2Fb", params={"before": made[10]})
    assert feed_seqs(older) == made[::-1][50:]
    assert "?before=" not in older.text and f'href="?after={made[9]}"' in older.text
    newer = await node.client.get("/security/subjects/a%2Fb", params={"after": made[9]})
    assert feed_seqs(newer) == made[::-1][:50]
    assert f'href="?before={made[10]}"' in newer.text and "?after=" not in newer.text


async def test_a_subjects_open_alerts_come_from_the_alert_desk(node: Node) -> None:
    await sign_in_as(node, "sec")
    without = await node.client.get("/security/subjects/ann")
    assert "Open alerts" in without.text and "psh_1" not in without.text

    event = await record_alert_event(node, "ann", push_id="psh_1", factor_id="fac_2")
    await eventually(lambda: alerts_of(node, event.seq), what="the alert")
    await record_alert_event(node, "bob", push_id="psh_9")  # another subject's
    page = await node.client.get("/security/subjects/ann")
    assert "Open alerts" in page.text
    assert "push denied:" in page.text and "psh_1" in page.text
    assert "psh_9" not in page.text
    assert '<span class="badge bad">high</span>' in page.text

    (alert,) = await alerts_of(node, event.seq)
    await node.services.monitoring.desk.acknowledge(alert.id, "sec")
    after = await node.client.get("/security/subjects/ann")
    assert "psh_1" not in after.text  # acknowledged: no longer open
