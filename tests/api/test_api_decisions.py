"""``POST /v1/decisions`` (CONTRACT §4.2) over the example policy, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from api_support import T0, Node, decision_body

from piigate.audit.log import AuditLog
from piigate.errors import step_up_header
from piigate.model import Grant
from piigate.stepup.grants import issue_grant

DECISION_KEYS = {"decision_id", "outcome", "rules", "mask", "risk"}


def mint(
    node: Node,
    *,
    subject: str = "alice",
    level: str = "aal2",
    scope: frozenset[tuple[str, str]] = frozenset(),
    binding: str | None = None,
    auth_age: int = 30,
    grant_id: str = "grt_test",
    audience: str | None = None,
) -> str:
    """A grant signed by ``node``, for the app whose key id is ``audience``."""
    now = node.clock.now()
    grant = Grant(
        id=grant_id,
        subject_id=subject,
        level=level,
        amr=("otp",),
        auth_time=now - timedelta(seconds=auth_age),
        expires_at=now + timedelta(minutes=10),
        scope=scope,
        binding=binding,
        audience=audience,
    )
    return issue_grant(grant, keyring=node.services.keyring, issuer=node.services.settings.issuer)


async def decision_events(audit: AuditLog) -> list[dict[str, Any]]:
    return [dict(e.data) for e in await audit.list_events(types=["decision"], limit=1000)]


async def test_allow_without_matching_rule(node: Node, api_key: str) -> None:
    response = await node.decide(api_key, decision_body("read", ["phone"]))
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= DECISION_KEYS
    assert body["outcome"] == "allow"
    assert body["decision_id"].startswith("dec_")
    assert body["rules"] == [] and body["mask"] == []
    assert body["risk"] == {"score": 0, "signals": []}
    assert "challenge" not in body and "www_authenticate" not in body
    events = await decision_events(node.services.audit)
    assert [e["decision_id"] for e in events] == [body["decision_id"]]
    assert events[0]["outcome"] == "allow"


async def test_allow_with_mask_offers_the_unlocking_step_up(node: Node, api_key: str) -> None:
    response = await node.decide(api_key, decision_body("read", ["ssn", "phone"]))
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "allow"
    assert body["mask"] == ["ssn"]
    assert body["rules"] == ["read-identity-numbers"]
    assert body["required"]["level"] == "aal2"
    assert body["required"]["max_age"] == 300
    assert body["required"]["binding"] is None
    challenge = await node.services.engine.challenges.get(body["challenge"]["id"])
    assert challenge is not None and challenge.pii == {"ssn", "phone"}


async def test_step_up_shape_challenge_and_rfc9470_header(node: Node, api_key: str) -> None:
    response = await node.decide(api_key, decision_body("update", ["ssn"]))
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "step_up"
    assert body["rules"] == ["edit-identity-numbers"]
    assert body["mask"] == []
    required = body["required"]
    assert required["level"] == "aal2"
    assert required["acr_values"] == ["urn:piigate:aal2"]
    assert required["max_age"] == 300
    assert set(required["methods"]) == {"totp", "sms", "push", "webauthn", "recovery"}
    assert required["binding"] is None
    assert body["www_authenticate"] == (
        'Bearer error="insufficient_user_authentication", '
        'acr_values="urn:piigate:aal2", max_age=300'
    )
    assert body["www_authenticate"] == step_up_header(["urn:piigate:aal2"], 300)
    chl = body["challenge"]
    assert re.fullmatch(r"chl_[A-Za-z0-9_-]+", chl["id"])
    # No step-up page is served yet, so the challenge names none.
    assert set(chl) == {"id", "expires_at"}
    assert chl["expires_at"] > int(T0.timestamp())
    stored = await node.services.engine.challenges.get(chl["id"])
    assert stored is not None
    assert stored.subject_id == "alice"
    assert stored.decision_id == body["decision_id"]
    assert stored.requirement.level == "aal2"
    assert stored.state.value == "pending"
    events = await decision_events(node.services.audit)
    assert events[-1]["challenge_id"] == chl["id"]
    assert events[-1]["outcome"] == "step_up"


async def test_step_up_bound_for_max_age_zero(node: Node, api_key: str) -> None:
    response = await node.decide(api_key, decision_body("delete", ["ssn"]))
    body = response.json()
    assert body["outcome"] == "step_up"
    assert body["required"]["level"] == "aal3"
    assert body["required"]["max_age"] == 0
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", body["required"]["binding"])
    assert body["www_authenticate"].endswith('acr_values="urn:piigate:aal3", max_age=0')
    stored = await node.services.engine.challenges.get(body["challenge"]["id"])
    assert stored is not None and stored.requirement.binding == body["required"]["binding"]


async def test_deny_by_role(node: Node, api_key: str) -> None:
    body = decision_body("export", ["ssn"], roles=["support"])
    response = await node.decide(api_key, body)
    assert response.status_code == 200
    result = response.json()
    assert result["outcome"] == "deny"
    assert result["rules"] == ["support-cannot-export"]
    assert result["reason"] == "support staff cannot export PII"
    assert "challenge" not in result and "required" not in result


async def test_acr_alias_with_fresh_auth_time_satisfies(node: Node, api_key: str) -> None:
    for alias in ("urn:okta:loa:2fa:any", "2", "urn:piigate:aal2"):
        session = {"acr": alias, "auth_time": int(T0.timestamp()) - 60}
        response = await node.decide(api_key, decision_body("update", ["ssn"], session=session))
        assert response.json()["outcome"] == "allow", alias


async def test_stale_auth_time_does_not_satisfy(node: Node, api_key: str) -> None:
    session = {"acr": "urn:okta:loa:2fa:any", "auth_time": int(T0.timestamp()) - 301}
    response = await node.decide(api_key, decision_body("update", ["ssn"], session=session))
    assert response.json()["outcome"] == "step_up"
    # A weaker level, however fresh, does not satisfy either.
    session = {"acr": "urn:piigate:aal1", "auth_time": int(T0.timestamp())}
    response = await node.decide(api_key, decision_body("update", ["ssn"], session=session))
    assert response.json()["outcome"] == "step_up"


async def test_grant_satisfies(node: Node) -> None:
    key_id, api_key = await node.api_key("app")
    token = mint(node, scope=frozenset({("ssn", "update")}), audience=key_id)
    response = await node.decide(api_key, decision_body("update", ["ssn"], grants=[token]))
    assert response.json()["outcome"] == "allow"
    events = await decision_events(node.services.audit)
    assert events[-1]["proofs"] == [{"source": "grant", "level": "aal2", "grant_id": "grt_test"}]
    # The grant's scope is respected: it does not cover another PII class.
    response = await node.decide(api_key, decision_body("update", ["passport"], grants=[token]))
    assert response.json()["outcome"] == "step_up"


async def test_bound_grant_allows_once_then_replay_steps_up(node: Node) -> None:
    key_id, api_key = await node.api_key("app")
    request = decision_body("delete", ["ssn"])
    first = (await node.decide(api_key, request)).json()
    assert first["outcome"] == "step_up"
    binding = first["required"]["binding"]
    token = mint(node, level="aal3", binding=binding, grant_id="grt_bound", audience=key_id)
    allowed = await node.decide(api_key, {**request, "grants": [token]})
    assert allowed.json()["outcome"] == "allow"
    replay = await node.decide(api_key, {**request, "grants": [token]})
    assert replay.json()["outcome"] == "step_up"
    # ... and the bound grant does not fit a different request either.
    other = decision_body("delete", ["ssn"], resource={"type": "customer", "id": "43"})
    token2 = mint(node, level="aal3", binding=binding, grant_id="grt_bound2", audience=key_id)
    assert (await node.decide(api_key, {**other, "grants": [token2]})).json()[
        "outcome"
    ] == "step_up"


async def test_grant_for_another_subject_is_ignored(node: Node, api_key: str) -> None:
    token = mint(node, subject="bob", scope=frozenset({("ssn", "update")}))
    response = await node.decide(api_key, decision_body("update", ["ssn"], grants=[token]))
    assert response.json()["outcome"] == "step_up"
    events = await decision_events(node.services.audit)
    assert events[-1]["rejected_grants"] == ["wrong_subject"]
    assert token not in str(events)


async def test_garbage_grant_is_ignored_not_an_error(node: Node, api_key: str) -> None:
    body = decision_body("update", ["ssn"], grants=["not.a.grant", "x"])
    response = await node.decide(api_key, body)
    assert response.status_code == 200
    assert response.json()["outcome"] == "step_up"


async def test_auth_time_from_the_future_is_refused(node: Node, api_key: str) -> None:
    # A future auth_time would look fresh for as long as it stays in the future.
    session = {"acr": "urn:piigate:aal2", "auth_time": int(T0.timestamp()) + 86400}
    response = await node.decide(api_key, decision_body("update", ["ssn"], session=session))
    assert response.status_code == 400
    assert response.json()["field"] == "session.auth_time"
    # A little clock skew is tolerated.
    session["auth_time"] = int(T0.timestamp()) + 30
    response = await node.decide(api_key, decision_body("update", ["ssn"], session=session))
    assert response.json()["outcome"] == "allow"


async def test_rows_from_a_gateway_meet_the_bulk_guardrail(node: Node, api_key: str) -> None:
    body = decision_body("update", ["mailing_address"], rows={"estimate": 500})
    response = await node.decide(api_key, body)
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["outcome"] == "step_up" and found["required"]["level"] == "aal3"
    # Another subject: the 500 rows already count towards the first one's bulk_destructive.
    small = await node.decide(
        api_key, decision_body("update", ["mailing_address"], subject="bob", rows={"estimate": 2})
    )
    assert small.json()["required"]["level"] == "aal2"
    bad = await node.decide(
        api_key, decision_body("update", ["mailing_address"], rows={"estimate": -1})
    )
    assert bad.status_code == 400
