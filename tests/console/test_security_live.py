"""The live page (``GET /security``): the latest events in words, the filters, the charts of
decisions and step-ups counted from real decisions and verifications; and the live feed
(``GET /security/feed``) delivering a new event over Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from api_support import Node, bearer, decision_body
from factor_support import Users, enroll_totp, totp_code, users, wrong
from security_support import bar_counts, bar_tips, chart, feed_seqs, sign_in_as

from loopback_support import serve_uvicorn
from piigate.api.auth import SESSION_COOKIE

__all__ = ["users"]  # the fixture, for pytest


async def decide(node: Node, key: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await node.decide(key, body)
    assert answer.status_code == 200, answer.text
    decided: dict[str, Any] = answer.json()
    return decided


async def test_the_page_shows_the_latest_events_in_words(node: Node) -> None:
    _, key = await node.api_key("app")
    await sign_in_as(node, "sec")
    await decide(node, key, decision_body("read", ["phone"], subject="ann"))
    stepped = await decide(node, key, decision_body("update", ["ssn"], subject="bob"))
    await decide(node, key, decision_body("export", ["ssn"], subject="cy", roles=["support"]))

    page = await node.client.get("/security")
    assert page.status_code == 200
    text = page.text
    assert "Allowed read of phone on customer 42" in text
    assert "Step-up to aal2 asked for update of ssn on customer 42" in text
    assert f"challenge {stepped['challenge']['id']}" in text
    assert "Denied export of ssn on customer 42: support staff cannot export PII" in text
    assert "rules: support-cannot-export" in text
    assert '<a class="subject" href="/security/subjects/bob">bob</a>' in text
    assert "Signed in at aal1" in text  # the security team member's own sign-in
    seqs = feed_seqs(page)
    assert seqs == sorted(seqs, reverse=True)  # newest first
    head = (await node.services.audit.head()).seq
    assert seqs[0] == head
    assert f'data-stream="/security/feed?after={head}"' in text
    assert '<script type="module" src="/static/live.js"></script>' in text


async def test_the_filters_narrow_the_events(node: Node) -> None:
    _, key = await node.api_key("app")
    await sign_in_as(node, "sec")
    for subject in ("ann", "bob"):
        await decide(node, key, decision_body("read", ["phone"], subject=subject))
        await decide(node, key, decision_body("update", ["ssn"], subject=subject))

    def lines(page: httpx.Response) -> list[str]:
        return [part.split("</p>")[0] for part in page.text.split('<p class="headline">')[1:]]

    stepped = await node.client.get("/security", params={"outcome": "step_up"})
    assert lines(stepped) == ["Step-up to aal2 asked for update of ssn on customer 42"] * 2
    assert 'data-stream="/security/feed?outcome=step_up&amp;after=' in stepped.text
    anns = await node.client.get("/security", params={"subject": "ann", "type": "decision"})
    assert lines(anns) == [
        "Step-up to aal2 asked for update of ssn on customer 42",
        "Allowed read of phone on customer 42",
    ]
    assert '<option value="decision" selected>' in anns.text
    logins = await node.client.get("/security", params={"type": "login"})
    assert lines(logins) == ["Signed in at aal1"]
    # What the filters do not know shows everything.
    everything = await node.client.get("/security", params={"type": "nope", "outcome": "maybe"})
    assert len(lines(everything)) == len(lines(await node.client.get("/security")))


async def test_the_charts_count_the_decisions_and_step_ups_made(node: Node, users: Users) -> None:
    _, key = await node.api_key("app")
    await sign_in_as(node, "sec")  # a login, decided: allowed
    alice = await users(node, "alice")  # another
    _, secret = await enroll_totp(node, alice)
    outcomes = ["allow", "allow"]
    for action, pii in (("read", "phone"), ("read", "ssn"), ("update", "ssn")):
        outcomes.append((await decide(node, key, decision_body(action, [pii])))["outcome"])
    denied = decision_body("export", ["ssn"], roles=["support"])
    outcomes.append((await decide(node, key, denied))["outcome"])

    node.clock.advance(3600)  # the next hour's bar
    stepped = await decide(node, key, decision_body("update", ["ssn"]))
    outcomes.append(stepped["outcome"])
    verify = f"/v1/challenges/{stepped['challenge']['id']}/verify"
    for proof in (wrong, lambda code: wrong(wrong(code)), str):
        answer = await node.client.post(
            verify,
            json={"method": "totp", "code": proof(totp_code(node, secret))},
            headers=bearer(key),
        )
        node.clock.advance(4)  # past the back-off after a failure
    assert answer.status_code == 200, answer.text

    page = await node.client.get("/security")
    decisions = chart(page, "chart-decisions")
    assert bar_counts(decisions) == {o: outcomes.count(o) for o in set(outcomes)}
    assert outcomes.count("allow") == 4 and outcomes.count("step_up") == 2
    assert bar_tips(decisions)[-1] == "11:00 to 12:00 UTC: 1 step-up"
    assert "10:00 to 11:00 UTC: 4 allowed" in bar_tips(decisions)
    step_ups = chart(page, "chart-stepups")
    assert bar_counts(step_ups) == {"failed": 2, "passed": 1}
    assert (
        "Step-ups by result, last 24 hours, per hour: 1 passed, 2 failed attempts, 0 refused."
        in (page.text)
    )

    last_hour = await node.client.get("/security", params={"range": "1h"})
    per_minute = chart(last_hour, "chart-decisions")
    assert bar_counts(per_minute) == {"step_up": 1}  # an hour ago is out of this one
    assert bar_tips(per_minute) == ["11:00 to 11:01 UTC: 1 step-up"]


async def test_the_feed_delivers_new_events_over_sse(node: Node) -> None:
    _, key = await node.api_key("app")
    await sign_in_as(node, "sec")
    cookies = {SESSION_COOKIE: node.client.cookies[SESSION_COOKIE]}
    head = (await node.services.audit.head()).seq
    async with (
        serve_uvicorn(node.app) as base,
        httpx.AsyncClient(base_url=base, cookies=cookies) as client,
    ):
        async with asyncio.timeout(10):
            params = {"type": "decision", "after": str(head)}
            async with client.stream("GET", "/security/feed", params=params) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                await node.services.audit.record("login_failed", subject_id="zed")  # filtered
                made = await decide(node, key, decision_body("delete", ["ssn"], subject="zed"))
                frame = await next_frame(response)
    assert frame["seq"] == head + 2 and frame["subject"] == "zed"
    assert frame["headline"] == "Step-up to aal3 asked for delete of ssn on customer 42"
    assert frame["badge"] == "step_up" and frame["badge_text"] == "step-up"
    assert f"challenge {made['challenge']['id']}" in frame["details"]
    assert frame["type"] == "decision" and frame["at"].startswith("2026-05-04T10:00:00")


async def test_the_feed_refuses_people_without_a_security_role(node: Node) -> None:
    await sign_in_as(node, "ann", roles=())
    async with asyncio.timeout(10):
        answer = await node.client.get("/security/feed")
    assert answer.status_code == 403
    assert not answer.headers["content-type"].startswith("text/event-stream")


async def test_the_feed_ends_when_the_session_does(node: Node, monkeypatch: Any) -> None:
    from piigate.console import live

    monkeypatch.setattr(live, "RECHECK_SECONDS", 0.0)
    await sign_in_as(node, "sec")
    token = node.client.cookies[SESSION_COOKIE]
    async with (
        serve_uvicorn(node.app) as base,
        httpx.AsyncClient(base_url=base, cookies={SESSION_COOKIE: token}) as client,
    ):
        async with asyncio.timeout(10):
            async with client.stream("GET", "/security/feed") as response:
                assert response.status_code == 200
                await node.services.logins.logout(token)
                # The stream ends by itself: reading it to its end returns.
                rest = [line async for line in response.aiter_lines()]
    assert not any(line.startswith("data:") for line in rest)


async def next_frame(response: httpx.Response) -> dict[str, Any]:
    """The data of the next event frame of an SSE response."""
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            found: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return found
    raise AssertionError("the stream ended")
