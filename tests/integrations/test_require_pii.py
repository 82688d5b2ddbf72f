"""``require_pii`` in the README's example app (examples/fastapi_app.py), with the engine in this
process and through ``PiigateClient``: allow (masked by the endpoint), the gateway's 401 step-up
and 403, a grant after a TOTP step-up, and fail-closed answers."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import httpx
import pytest
from api_support import PROBLEM, ROOT, Node, bearer
from factor_support import Users, enroll_totp, totp_code, users, verify
from fastapi import Depends, FastAPI
from integration_support import Token, Who, Wired, example_app, serve

from piigate.gateway.http.verdict import Verdict, refusal
from piigate.integrations import PiigateClient, configure, require_pii
from piigate.model import Outcome

__all__ = ["users"]  # the fixture, for pytest

Exports = Annotated[Verdict, Depends(require_pii("ssn", action="export"))]
STEP_UP = (
    'Bearer error="insufficient_user_authentication", acr_values="urn:piigate:aal2", max_age=300'
)


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    return body


async def test_allow_returns_the_verdict_and_the_endpoint_masks(wired: Wired, token: Token) -> None:
    # aal1: the example policy lets alice read, with the SSN masked (otherwise: mask).
    masked = await wired.app.get("/customers/42", headers=bearer(token()))
    assert masked.status_code == 200, masked.text
    assert masked.json() == {"id": "42", "ssn": "***-**-6789"}
    # aal2 at her IdP, 60 s ago: within the rule's 5 minutes, nothing to mask.
    proven = await wired.app.get("/customers/42", headers=bearer(token(acr="urn:piigate:aal2")))
    assert proven.json() == {"id": "42", "ssn": "123-45-6789"}


async def test_step_up_is_the_gateway_s_answer(wired: Wired, token: Token) -> None:
    response = await wired.app.put(
        "/customers/42", json={"ssn": "987-65-4321"}, headers=bearer(token())
    )
    body = _problem(response, 401)
    assert response.headers["www-authenticate"] == STEP_UP
    cid = body["challenge"]["id"]
    assert body == {
        "type": "https://piigate.dev/problems/insufficient_user_authentication",
        "title": "Step-up authentication required",
        "status": 401,
        "detail": "a stronger or more recent authentication is required",
        "code": "insufficient_user_authentication",
        "decision_id": body["decision_id"],
        "required": {
            "level": "aal2",
            "acr_values": ["urn:piigate:aal2"],
            "max_age": 300,
            "methods": body["required"]["methods"],
        },
        "challenge": {
            "id": cid,
            "expires_at": body["challenge"]["expires_at"],
            "url": f"{wired.links}/stepup/{cid}",
            "verify_url": f"{wired.links}/v1/challenges/{cid}/verify",
        },
    }
    assert "totp" in body["required"]["methods"]
    # Byte for byte what the gateway renders for this verdict.
    verdict = Verdict(
        decision_id=body["decision_id"],
        outcome=Outcome.STEP_UP,
        required_level="aal2",
        acr_values=("urn:piigate:aal2",),
        max_age=300,
        methods=tuple(body["required"]["methods"]),
        challenge=body["challenge"],
    )
    expected = refusal(verdict)
    assert expected is not None
    assert response.content == expected.body
    sent = {(k.lower(), v) for k, v in expected.headers}
    assert sent <= set(response.headers.items())
    stored = await wired.node.services.challenges.get(cid)
    assert stored is not None and stored.subject_id == "alice"
    # In process the person asks (the grant will be hers); through the client, the app does.
    if wired.mode == "engine":
        assert stored.audience == "user:alice"
    else:
        assert stored.audience == stored.requested_by != "alice"


async def test_deny_is_403_and_no_token_is_401(wired: Wired, token: Token) -> None:
    @wired.asgi.get("/customers/{id}/export")
    async def export(id: str, verdict: Exports) -> dict[str, str]:
        return {"id": id}

    denied = await wired.app.get("/customers/42/export", headers=bearer(token(roles=["support"])))
    body = _problem(denied, 403)
    assert body["code"] == "forbidden" and body["detail"] == "support staff cannot export PII"
    assert body["decision_id"]
    anonymous = _problem(await wired.app.get("/customers/42"), 401)
    assert anonymous["code"] == "unauthorized"
    forged = _problem(await wired.app.get("/customers/42", headers=bearer("a.b.c")), 401)
    assert forged["code"] == "invalid_token"


async def test_the_grant_of_a_totp_step_up_lets_the_retry_through(
    wired: Wired, token: Token, users: Users
) -> None:
    alice = await users(wired.node, "alice")
    _, secret = await enroll_totp(wired.node, alice)
    headers = bearer(token())
    edit = {"ssn": "987-65-4321"}
    first = await wired.app.put("/customers/42", json=edit, headers=headers)
    cid = _problem(first, 401)["challenge"]["id"]
    code = totp_code(wired.node, secret)
    if wired.piigate is None:  # in process: alice answers her own challenge at piigate
        answered = await verify(alice, cid, code)
        assert answered.status_code == 200, answered.text
        grant = answered.json()["grant"]
    else:  # the app relays her code with its API key
        grant = (await wired.piigate.verify(cid, "totp", code=code)).token
    retried = await wired.app.put(
        "/customers/42", json=edit, headers={**headers, "PIIGate-Grant": grant}
    )
    assert retried.status_code == 200, retried.text
    assert retried.json() == {"id": "42", "saved": True}


async def test_an_engine_out_of_reach_fails_closed(node: Node, who: Who, token: Token) -> None:
    gone = PiigateClient("http://127.0.0.1:9", "pgk_none", timeout=2)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(gone.aclose)
        app = await serve(example_app().create_app(client=gone, **who), stack)
        for method in ("GET", "PUT"):
            response = await app.request(
                method, "/customers/42", json={"ssn": "1"}, headers=bearer(token())
            )
            body = _problem(response, 503)
            assert body["code"] == "unavailable"
            assert "123-45-6789" not in response.text


def test_configuration_mistakes_are_refused_at_set_up(who: Who) -> None:
    app = FastAPI()
    with pytest.raises(ValueError, match=r"engine= .* or client="):
        configure(app, **who)
    with pytest.raises(ValueError, match="who calls"):
        configure(app, client=PiigateClient("http://x", "pgk_x"))
    with pytest.raises(ValueError, match="PII classes"):
        require_pii()
    with pytest.raises(ValueError, match="transaction"):
        require_pii("bank_account", action="transact")
    with pytest.raises(ValueError):
        require_pii("ssn", action="peek")


def test_the_readme_shows_the_example_these_tests_run() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## In your Python app\n", 1)[1].split("\n## ", 1)[0]
    shown = section.split("```python\n", 1)[1].split("```", 1)[0]
    example = (ROOT / "examples" / "fastapi_app.py").read_text(encoding="utf-8")
    assert "require_pii(" in shown and shown in example
