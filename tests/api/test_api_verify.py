"""``POST /v1/challenges/{id}/verify`` end to end (CONTRACT §4.3, §5.2-5.4), SQLite and PostgreSQL:
enrol → decision step_up → verify → grant → decision allow."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from api_support import PROBLEM, Node, StartNode, bearer, decision_body
from factor_support import (
    Users,
    challenge,
    enroll_totp,
    factor_policy,
    own_challenge,
    totp_code,
    users,
    verify,
    wrong,
)

__all__ = ["users"]  # the fixture, re-exported for pytest

GRANT_KEYS = {"grant", "level", "expires_at", "amr", "single_use"}


def assert_rejected(response: httpx.Response) -> None:
    """The one vague answer to every failed verification."""
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["code"] == "factor_rejected" and body["detail"] == "Verification failed"
    assert set(body) == {"type", "title", "status", "detail", "code", "instance"}


async def failure_reasons(node: Node) -> list[str]:
    events = await node.services.audit.list_events(types=["verification_failed"], limit=1000)
    return [str(e.data["reason"]) for e in events]


async def failures(node: Node, factor_id: str) -> int:
    row = await node.services.store.get_factor(factor_id)
    assert row is not None
    return row.failures


async def test_enrol_step_up_verify_allow(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    body = decision_body("update", ["ssn"])
    decided = (await node.decide(api_key, body)).json()
    assert decided["outcome"] == "step_up"
    assert "totp" in decided["required"]["methods"]
    challenge_id = decided["challenge"]["id"]

    response = await verify(alice, challenge_id, totp_code(node, secret))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    granted = response.json()
    assert set(granted) == GRANT_KEYS
    assert granted["level"] == "aal2" and granted["amr"] == ["otp"]
    assert granted["single_use"] is False
    # edit-identity-numbers: max_age 5m caps the grant's life.
    assert granted["expires_at"] == int(node.clock.now().timestamp()) + 300
    status = await alice.get(f"/v1/challenges/{challenge_id}/status")
    assert status.json()["state"] == "approved"

    allowed = (await node.decide(api_key, {**body, "grants": [granted["grant"]]})).json()
    assert allowed["outcome"] == "allow" and allowed["mask"] == []
    # The grant is scoped to what the challenge was for: (ssn, update), not (ssn, read)...
    other = await node.decide(api_key, {**decision_body("update", ["passport"]), "grants": []})
    assert other.json()["outcome"] == "step_up"
    # ...and to its subject.
    bob = await node.decide(
        api_key, {**decision_body("update", ["ssn"], subject="bob"), "grants": [granted["grant"]]}
    )
    assert bob.json()["outcome"] == "step_up"

    verified = await node.services.audit.list_events(types=["challenge_verified"])
    assert [e.data["challenge_id"] for e in verified] == [challenge_id]


async def test_the_app_may_relay_its_users_code(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    challenge_id = await challenge(node, api_key, "update")
    response = await node.client.post(
        f"/v1/challenges/{challenge_id}/verify",
        json={"method": "totp", "code": totp_code(node, secret)},
        headers=bearer(api_key),
    )
    assert response.status_code == 200, response.text


async def test_bound_grant_works_once(start_node: StartNode, users: Users) -> None:
    node = await start_node(policy=factor_policy())
    _, key = await node.api_key("app")
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    body = decision_body("delete", ["ssn"], binding={"method": "DELETE", "path": "/customers/42"})
    decided = (await node.decide(key, body)).json()
    assert decided["outcome"] == "step_up" and decided["required"]["max_age"] == 0
    assert decided["required"]["binding"].startswith("sha256:")

    granted = (await verify(alice, decided["challenge"]["id"], totp_code(node, secret))).json()
    assert granted["single_use"] is True
    # Bound to this very request: another record does not take it.
    other = {**body, "resource": {"type": "customer", "id": "43"}, "grants": [granted["grant"]]}
    assert (await node.decide(key, other)).json()["outcome"] == "step_up"
    first = (await node.decide(key, {**body, "grants": [granted["grant"]]})).json()
    assert first["outcome"] == "allow"
    again = (await node.decide(key, {**body, "grants": [granted["grant"]]})).json()
    assert again["outcome"] == "step_up"


async def test_replayed_code_is_rejected(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    code = totp_code(node, secret)
    ok = await verify(alice, await challenge(node, api_key), code)
    assert ok.status_code == 200
    assert_rejected(await verify(alice, await challenge(node, api_key), code))
    # Not in a later step either (RFC 6238 §5.2; CONTRACT §5.2).
    node.clock.advance(32)
    assert_rejected(await verify(alice, await challenge(node, api_key), code))
    assert await failure_reasons(node) == ["replayed", "replayed"]


async def test_wrong_code_is_counted_and_backs_off(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    factor_id, secret = await enroll_totp(node, alice)
    challenge_id = await challenge(node, api_key)
    assert_rejected(await verify(alice, challenge_id, wrong(totp_code(node, secret))))
    assert await failures(node, factor_id) == 1
    throttled = await verify(alice, challenge_id, totp_code(node, secret))
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    assert throttled.json()["code"] == "too_many_requests"
    node.clock.advance(1)
    assert (await verify(alice, challenge_id, totp_code(node, secret))).status_code == 200
    assert await failures(node, factor_id) == 0
    assert await failure_reasons(node) == ["wrong_code", "throttled"]


async def test_psd2_fifty_parallel_guesses_count_exactly_five(
    start_node: StartNode, users: Users
) -> None:
    node = await start_node(policy=factor_policy("psd2", max_attempts=100))
    # Isolate the cap from the back-off: every guess reaches the failure counter at once.
    node.services.verifier.refusals.base_delay = 0
    _, key = await node.api_key("app")
    alice = await users(node, "alice")
    factor_id, secret = await enroll_totp(node, alice)
    challenges = [await challenge(node, key) for _ in range(5)]
    guess = wrong(totp_code(node, secret))
    responses = await asyncio.gather(*(verify(alice, challenges[i % 5], guess) for i in range(50)))
    for response in responses:
        assert_rejected(response)
    assert await failures(node, factor_id) == 5
    reasons = await failure_reasons(node)
    assert reasons.count("wrong_code") == 5 and reasons.count("locked") == 45
    # Locked: the right code no longer helps, and is not counted either.
    assert_rejected(await verify(alice, await challenge(node, key), totp_code(node, secret)))
    assert await failures(node, factor_id) == 5


async def test_psd2_cap_holds_with_back_off_too(start_node: StartNode, users: Users) -> None:
    node = await start_node(policy=factor_policy("psd2"))
    _, key = await node.api_key("app")
    alice = await users(node, "alice")
    factor_id, secret = await enroll_totp(node, alice)
    statuses: set[int] = set()
    for _ in range(7):  # bursts, each after the back-off ran out
        challenges = [await challenge(node, key) for _ in range(10)]
        guess = wrong(totp_code(node, secret))
        responses = await asyncio.gather(
            *(verify(alice, challenges[i % 10], guess) for i in range(50))
        )
        statuses.update(r.status_code for r in responses)
        assert await failures(node, factor_id) <= 5
        node.clock.advance(901)
    assert statuses <= {401, 429}
    assert await failures(node, factor_id) == 5
    assert_rejected(await verify(alice, await challenge(node, key), totp_code(node, secret)))


async def test_recovery_code_works_once(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    granted = (await verify(alice, await own_challenge(alice), totp_code(node, secret))).json()
    created = await alice.post("/v1/factors/recovery", headers={"PIIGate-Grant": granted["grant"]})
    assert created.status_code == 201, created.text
    codes = created.json()["codes"]

    first = await verify(alice, await challenge(node, api_key), codes[0], "recovery")
    assert first.status_code == 200 and first.json()["amr"] == ["kba"]
    assert_rejected(await verify(alice, await challenge(node, api_key), codes[0], "recovery"))
    used = await node.services.audit.list_events(types=["recovery_code_used"])
    assert [e.data["remaining"] for e in used] == [9]


async def test_codes_and_secrets_never_reach_audit_or_logs(
    node: Node,
    api_key: str,
    users: Users,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG")
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    sensitive = [secret]
    code = totp_code(node, secret)
    sensitive.append(code)
    granted = (await verify(alice, await own_challenge(alice), code)).json()
    sensitive.append(granted["grant"])
    created = await alice.post("/v1/factors/recovery", headers={"PIIGate-Grant": granted["grant"]})
    codes = created.json()["codes"]
    sensitive.extend(codes)
    await verify(alice, await challenge(node, api_key), codes[0], "recovery")
    node.clock.advance(30)
    bad = wrong(totp_code(node, secret))
    sensitive.append(bad)
    await verify(alice, await challenge(node, api_key), bad)
    await verify(alice, await challenge(node, api_key), codes[0], "recovery")

    events = await node.services.audit.list_events(limit=1000)
    types = {e.type for e in events}
    assert {"challenge_verified", "verification_failed", "recovery_code_used"} <= types
    audit_text = json.dumps([[e.type, e.subject_id, dict(e.data)] for e in events])
    out, err = capsys.readouterr()
    for text in (audit_text, caplog.text, out, err):
        for value in sensitive:
            assert value not in text


async def test_another_users_challenge_is_not_found(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    bob = await users(node, "bob")
    _, secret = await enroll_totp(node, alice)
    challenge_id = await challenge(node, api_key)
    code = totp_code(node, secret)
    response = await verify(bob, challenge_id, code)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    _, other_key = await node.api_key("other-app")
    response = await node.client.post(
        f"/v1/challenges/{challenge_id}/verify",
        json={"method": "totp", "code": code},
        headers=bearer(other_key),
    )
    assert response.status_code == 404
    assert (await verify(alice, "chl_nope", code)).status_code == 404
    # Nothing was counted or spent: alice can still use that code.
    assert (await verify(alice, challenge_id, code)).status_code == 200


async def test_expired_challenge(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    challenge_id = await challenge(node, api_key)
    node.clock.advance(301)  # challenge_ttl 5m
    assert_rejected(await verify(alice, challenge_id, totp_code(node, secret)))
    status = await alice.get(f"/v1/challenges/{challenge_id}/status")
    assert status.json()["state"] == "expired"
    assert await failure_reasons(node) == ["expired"]


@pytest.mark.parametrize(
    "body",
    [
        {"method": "sms", "code": "123456"},
        {"method": "webauthn", "credential": {"id": "x"}},
        {"method": "totp"},
        {"method": "totp", "code": "abc"},
    ],
)
async def test_unusable_proofs_get_the_same_answer(
    node: Node, api_key: str, users: Users, body: dict[str, object]
) -> None:
    alice = await users(node, "alice")
    await enroll_totp(node, alice)
    challenge_id = await challenge(node, api_key)
    assert_rejected(await alice.post(f"/v1/challenges/{challenge_id}/verify", json=body))


async def test_verify_needs_a_caller(node: Node, api_key: str) -> None:
    challenge_id = await challenge(node, api_key)
    response = await node.client.post(
        f"/v1/challenges/{challenge_id}/verify", json={"method": "totp", "code": "123456"}
    )
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"
