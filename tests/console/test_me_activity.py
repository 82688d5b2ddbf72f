"""My security's recent activity: the person's own audit events in plain language (never
another person's), and "this wasn't me": an ``alert`` event for the security team and the
``reported_activity`` risk signal on the person's next decisions, on this node at once and on
every node through the store."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from api_support import Node, decision_body
from me_support import post, signed_in

from piigate.model import AccessRequest, Action, Subject
from piigate.risk.port import CarriedRisk
from piigate.risk.recorded import RecordedRisk

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
LONDON_IP = "81.2.69.160"  # London, GB in the bundled DB-IP City Lite database
HOME = {"ip": LONDON_IP, "user_agent": CHROME, "device_id": "dev-7f3a"}


async def decide(node: Node, key: str, subject: str, record: str = "42") -> dict[str, Any]:
    body = decision_body("read", ["ssn", "phone"], subject=subject, context=HOME)
    body["resource"]["id"] = record
    answer = await node.decide(key, body)
    assert answer.status_code == 200, answer.text
    decided: dict[str, Any] = answer.json()
    return decided


async def seq_of(node: Node, decision_id: str) -> int:
    for event in await node.services.audit.list_events(types=["decision"], limit=1000):
        if event.data["decision_id"] == decision_id:
            assert event.seq is not None
            return event.seq
    raise AssertionError(decision_id)


def item(page: str, seq: int) -> str:
    found = re.search(rf'<li data-seq="{seq}">.*?</li>', page, re.S)
    assert found is not None, seq
    return found.group(0)


async def test_activity_lists_the_persons_own_events_in_plain_language(node: Node) -> None:
    _, key = await node.api_key()
    await signed_in(node, "ann")
    mine = await decide(node, key, "ann")
    theirs = await decide(node, key, "bob", record="777")
    page = (await node.client.get("/me")).text
    described = item(page, await seq_of(node, mine["decision_id"]))
    assert "Read phone, ssn of customer 42" in described
    assert "From GB, Chrome/Windows/desktop" in described
    assert "Hidden: ssn" in described and ">allowed<" in described
    assert "This wasn't me" in described
    assert "Signed in" in page
    assert f'data-seq="{await seq_of(node, theirs["decision_id"])}"' not in page
    assert "customer 777" not in page
    for raw in (LONDON_IP, "Mozilla", "dev-7f3a"):
        assert raw not in page


async def test_older_activity_is_paged_newest_first(node: Node) -> None:
    _, key = await node.api_key()
    await signed_in(node, "ann")
    for record in range(60):
        await decide(node, key, "ann", record=f"r{record}")
    first = (await node.client.get("/me")).text
    seqs = [int(s) for s in re.findall(r'<li data-seq="(\d+)">', first)]
    assert len(seqs) == 50 and seqs == sorted(seqs, reverse=True)
    assert "customer r59" in first and "customer r5<" not in first
    older = re.search(r'href="/me\?before=(\d+)#activity"', first)
    assert older is not None and int(older.group(1)) == seqs[-1]
    second = (await node.client.get(f"/me?before={older.group(1)}")).text
    rest = [int(s) for s in re.findall(r'<li data-seq="(\d+)">', second)]
    assert rest and max(rest) < seqs[-1]
    assert "customer r0<" in second
    for odd in ("²", "-1", "9" * 30, "x"):  # not a position: the newest page
        assert (await node.client.get(f"/me?before={odd}")).text.count("<li data-seq=") == 50


async def test_this_wasnt_me_alerts_and_raises_the_persons_risk(node: Node) -> None:
    _, key = await node.api_key()
    await signed_in(node, "ann")
    before = await decide(node, key, "ann")
    seq = await seq_of(node, before["decision_id"])

    reported = await post(node, f"/me/activity/{seq}/report")
    assert reported.status_code == 303
    assert reported.headers["location"] == "/me?done=reported#activity"
    [alert] = await node.services.audit.list_events(types=["alert"])
    assert alert.subject_id == "ann"
    assert alert.data == {"kind": "reported_by_subject", "event_seq": seq, "event_type": "decision"}

    after = await decide(node, key, "ann")
    signals = {s["name"]: s for s in after["risk"]["signals"]}
    assert signals["reported_activity"]["weight"] == 40
    assert after["risk"]["score"] == min(100, before["risk"]["score"] + 40)
    assert after["risk"]["score"] > before["risk"]["score"]
    bob = await decide(node, key, "bob")
    assert "reported_activity" not in {s["name"] for s in bob["risk"]["signals"]}

    # Another node reads the report from the store (no event bus between nodes).
    other = RecordedRisk(CarriedRisk(), node.services.store, node.services.policy)
    assessed = await other.assess(AccessRequest(Subject("ann"), Action.READ), now=node.clock.now())
    assert assessed.signal_names == {"reported_activity"} and assessed.score == 40

    page = (await node.client.get("/me?done=reported")).text
    assert "Your report went to the security team" in page
    assert '<span class="badge bad">reported</span>' in item(page, seq)
    assert "You reported “A request about you” as not you" in item(page, alert.seq or 0)
    assert "This wasn't me" not in item(page, alert.seq or 0)

    again = await post(node, f"/me/activity/{seq}/report")
    assert again.headers["location"] == "/me?done=already_reported#activity"
    assert len(await node.services.audit.list_events(types=["alert"])) == 1

    # A day later the report no longer weighs.
    node.clock.advance(timedelta(days=1, seconds=1).total_seconds())
    later = await decide(node, key, "ann")
    assert "reported_activity" not in {s["name"] for s in later["risk"]["signals"]}


async def test_another_persons_event_cannot_be_reported(node: Node) -> None:
    _, key = await node.api_key()
    await signed_in(node, "ann")
    theirs = await decide(node, key, "bob")
    their_seq = str(await seq_of(node, theirs["decision_id"]))
    for seq in (their_seq, "999999", "0", "-1", "1e3", "²", "9" * 30):
        refused = await post(node, f"/me/activity/{seq}/report")
        assert refused.status_code == 404, seq
        assert "no such event" in refused.text
    assert await node.services.audit.list_events(types=["alert"]) == []
    assert "reported_activity" not in {
        s["name"] for s in (await decide(node, key, "bob"))["risk"]["signals"]
    }
