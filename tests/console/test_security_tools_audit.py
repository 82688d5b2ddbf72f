"""The audit page: the chain's head, a verification started from the console (in the
background, followed through its progress), its result, and where a tampered chain breaks."""

from __future__ import annotations

import asyncio
import html
from typing import Any

import pytest
from api_support import Node
from console_support import csrf_of, sign_in
from sqlalchemy import update

from piigate.console.audit_checks import ChainChecks
from piigate.store.tables import audit_events

PASSWORD = "correct horse battery staple"
AUDIT = "/security/audit"


@pytest.fixture
async def admin(node: Node) -> Node:
    await node.user("bob", PASSWORD, ["security"])
    assert (await sign_in(node, "bob", PASSWORD)).status_code == 303
    return node


async def verify_now(node: Node) -> str:
    """Press Verify, follow the progress until the verification is done; the page then."""
    token = csrf_of(await node.client.get(AUDIT))
    pressed = await node.client.post(f"{AUDIT}/verify", data={"csrf_token": token})
    assert pressed.status_code == 303 and pressed.headers["location"] == AUDIT
    progress: dict[str, Any] = {"running": True}
    while progress["running"]:
        answer = await node.client.get(f"{AUDIT}/progress")
        assert answer.status_code == 200
        progress = answer.json()
        await asyncio.sleep(0.01)
    assert progress["checked"] <= progress["total"]
    page = await node.client.get(AUDIT)
    assert page.status_code == 200
    return html.unescape(page.text)


async def fill(node: Node, count: int) -> None:
    for n in range(count):
        await node.services.audit.record("test_event", subject_id="ann", data={"n": n})


async def test_the_page_shows_the_head_and_an_intact_chain_after_verify(admin: Node) -> None:
    await fill(admin, 5)
    head = await admin.services.audit.head()
    page = html.unescape((await admin.client.get(AUDIT)).text)
    assert f'<dd id="event-count">{head.seq}</dd>' in page and head.hash in page
    assert "has not been verified from the console yet" in page

    text = await verify_now(admin)
    assert 'data-verdict="ok"' in text
    assert f"{head.seq} events verified" in text
    assert "By bob" in text
    done = (await admin.client.get(f"{AUDIT}/progress")).json()
    assert (done["running"], done["checked"], done["total"]) == (False, head.seq, head.seq)
    [event] = await admin.services.audit.list_events(types=["audit_verified"])
    assert event.subject_id == "bob" and event.seq == head.seq + 1
    assert event.data == {"ok": True, "count": head.seq, "broken_at": None}
    # The next verification covers the event the last one appended.
    again = await verify_now(admin)
    assert f"{head.seq + 1} events verified" in again
    assert len(await admin.services.audit.list_events(types=["audit_verified"])) == 2


async def test_a_tampered_event_shows_where_the_chain_breaks(admin: Node) -> None:
    await fill(admin, 6)
    events = await admin.services.audit.list_events(types=["test_event"])
    target = events[2]
    secret = "tampered-value-42"
    async with admin.services.db.begin() as conn:
        await conn.execute(
            update(audit_events)
            .where(audit_events.c.seq == target.seq)
            .values(data=f'{{"n":"{secret}"}}')
        )
    text = await verify_now(admin)
    assert 'data-verdict="broken"' in text
    assert f'at seq <strong id="broken-at">{target.seq}</strong>' in text
    assert "(a <code>test_event</code> event)" in text
    assert f"the {target.seq - 1} events before it verify" in text
    assert secret not in text  # never the event's contents
    [event] = await admin.services.audit.list_events(types=["audit_verified"])
    assert event.data["ok"] is False and event.data["broken_at"] == target.seq
    assert event.data["count"] == target.seq - 1
    assert secret not in str(event.data)


async def test_a_removed_event_is_named_by_its_seq(admin: Node) -> None:
    await fill(admin, 4)
    events = await admin.services.audit.list_events(types=["test_event"])
    gone = events[1].seq
    async with admin.services.db.begin() as conn:
        await conn.execute(audit_events.delete().where(audit_events.c.seq == gone))
    text = await verify_now(admin)
    assert f'at seq <strong id="broken-at">{gone}</strong>;' in text  # no type: it is gone
    assert f"event {gone} missing" in text


async def test_one_verification_runs_at_a_time(admin: Node) -> None:
    await fill(admin, 3)
    checks = ChainChecks(admin.services.audit, admin.clock)
    first = await checks.start("bob")
    assert await checks.start("ann") is first  # joined, not started again
    while first.running:
        await checks.settle(1.0)
    assert first.report is not None and first.report.ok and first.failure is None
    second = await checks.start("ann")
    assert second is not first
    while second.running:
        await checks.settle(1.0)
    verified = await admin.services.audit.list_events(types=["audit_verified"])
    assert [e.subject_id for e in verified] == ["bob", "ann"]
