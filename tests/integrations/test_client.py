"""``PiigateClient`` against a node's HTTP API (through ASGITransport): the typed answers of the
decision and challenge endpoints, and its errors: a problem answer → ``PiigateProblem`` (never
repeating a code), a connection refused → ``PiigateNetworkError``, anything else than the
endpoint's document → ``PiigateBadAnswer``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from api_support import Node
from factor_support import Users, enroll_sms, enroll_totp, outbox_code, totp_code, users, wrong
from integration_support import PIIGATE_URL, piigate_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loopback_support import free_port
from piigate.integrations import (
    AccessRequest,
    Action,
    Outcome,
    PiigateBadAnswer,
    PiigateClient,
    PiigateNetworkError,
    PiigateProblem,
    Resource,
    SessionAuth,
    Subject,
    Transaction,
)
from piigate.model import ChallengeState

__all__ = ["users"]  # the fixture, for pytest


@pytest.fixture
async def piigate(node: Node) -> AsyncIterator[PiigateClient]:
    async with contextlib.AsyncExitStack() as stack:
        yield await piigate_client(node, stack)


def _update_ssn(subject: str = "alice", **kw: object) -> AccessRequest:
    return AccessRequest(
        subject=Subject(subject, roles=frozenset({"support"})),
        action=Action.UPDATE,
        pii=frozenset({"ssn"}),
        resource=Resource("customer", "42"),
        session=SessionAuth(id="s-1", acr="urn:piigate:aal1", amr=("pwd",)),
        **kw,  # type: ignore[arg-type]
    )


async def test_decide_challenge_verify_status(
    node: Node, piigate: PiigateClient, users: Users
) -> None:
    _, secret = await enroll_totp(node, await users(node, "alice"))
    verdict = await piigate.decide(_update_ssn())
    assert verdict.outcome is Outcome.STEP_UP
    assert (verdict.required_level, verdict.acr_values, verdict.max_age) == (
        "aal2",
        ("urn:piigate:aal2",),
        300,
    )
    assert verdict.challenge is not None
    cid = verdict.challenge["id"]
    assert verdict.challenge["verify_url"] == f"{PIIGATE_URL}/v1/challenges/{cid}/verify"

    info = await piigate.challenge(cid)
    assert (info.id, info.state, info.subject, info.action) == (
        cid,
        ChallengeState.PENDING,
        "alice",
        Action.UPDATE,
    )
    assert info.pii == ("ssn",) and info.level == "aal2" and info.max_age == 300
    assert (info.resource.type, info.resource.id) == ("customer", "42")
    assert info.expires_at.tzinfo is not None and info.expires_at > info.created_at
    assert info.push is None and info.transaction is None and not info.bound

    pending = await piigate.status(cid)
    assert (pending.state, pending.grant) == (ChallengeState.PENDING, None)

    code = totp_code(node, secret)
    granted = await piigate.verify(cid, "totp", code=code)
    assert granted.level == "aal2" and "otp" in granted.amr and not granted.single_use
    assert granted.token.count(".") == 2 and granted.token not in repr(granted)
    assert granted.expires_at > datetime(2026, 1, 1, tzinfo=UTC)
    assert (await piigate.status(cid)).state is ChallengeState.APPROVED

    allowed = await piigate.decide(_update_ssn(grants=(granted.token,)))
    assert allowed.outcome is Outcome.ALLOW and allowed.level == "aal2"


async def test_a_transfer_and_a_binding_reach_the_engine(
    node: Node, piigate: PiigateClient
) -> None:
    request = AccessRequest(
        subject=Subject("alice"),
        action=Action.TRANSACT,
        transaction=Transaction(Decimal("25000.00"), "EUR", "DE89370400440532013000"),
        binding_fields={"method": "POST", "target": "0" * 64},
    )
    verdict = await piigate.decide(request)
    assert verdict.outcome is Outcome.STEP_UP and verdict.max_age == 0
    assert verdict.challenge is not None
    info = await piigate.challenge(verdict.challenge["id"])
    assert info.bound and info.transaction is not None
    assert info.transaction.amount == Decimal("25000.00") and info.transaction.currency == "EUR"


async def test_sms_push_and_webauthn(node: Node, piigate: PiigateClient, users: Users) -> None:
    await enroll_sms(node, await users(node, "alice"))
    verdict = await piigate.decide(_update_ssn())
    assert verdict.challenge is not None
    cid = verdict.challenge["id"]
    sent = await piigate.send_sms(cid)
    assert sent.to == "+1 •••-•••-••42" and sent.expires_at > node.clock.now()
    granted = await piigate.verify(cid, "sms", code=await outbox_code(node))
    assert granted.level == "aal2"
    # Alice has no push device and no security key: the service says so, as a problem.
    other = await piigate.decide(_update_ssn())
    assert other.challenge is not None
    for call in (piigate.send_push, piigate.webauthn_options):
        with pytest.raises(PiigateProblem) as caught:
            await call(other.challenge["id"])
        assert 400 <= caught.value.status < 500 and caught.value.code


async def test_problems_carry_status_code_and_detail_but_never_the_code(
    node: Node, piigate: PiigateClient, users: Users
) -> None:
    await enroll_totp(node, await users(node, "alice"))
    verdict = await piigate.decide(_update_ssn())
    assert verdict.challenge is not None
    cid = verdict.challenge["id"]
    with pytest.raises(PiigateProblem) as rejected:
        await piigate.verify(cid, "totp", code=wrong("123456"))
    problem = rejected.value
    assert (problem.status, problem.code) == (401, "factor_rejected")
    assert problem.detail and problem.problem["status"] == 401
    assert wrong("123456") not in str(problem) and wrong("123456") not in repr(problem.args)
    with pytest.raises(PiigateProblem) as missing:
        await piigate.challenge("chl_nope")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    _, other_key = await node.api_key("someone-else")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app)) as http:
        stranger = PiigateClient(PIIGATE_URL, other_key, http=http)
        with pytest.raises(PiigateProblem) as hidden:  # another app's challenge: not found
            await stranger.status(cid)
        assert hidden.value.status == 404
        refused = PiigateClient(PIIGATE_URL, "pgk_not-a-key", http=http)
        with pytest.raises(PiigateProblem) as unauthorized:
            await refused.decide(_update_ssn())
        assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")
        assert "pgk_not-a-key" not in str(unauthorized.value) and "pgk" not in repr(refused)
    with pytest.raises(ValueError, match="code or a credential"):
        await piigate.verify(cid, "totp")


async def test_a_connection_refused_is_a_network_error() -> None:
    async with PiigateClient(f"http://127.0.0.1:{free_port()}", "pgk_x", timeout=2) as gone:
        with pytest.raises(PiigateNetworkError, match="cannot reach"):
            await gone.decide(_update_ssn())
        with pytest.raises(PiigateNetworkError):
            await gone.status("chl_x")


async def _odd(request: Request) -> Response:
    """A service that answers something else than piigate's documents."""
    path = request.url.path
    if path == "/v1/decisions":
        return JSONResponse({"outcome": "maybe"})
    if path.endswith("/verify"):
        return JSONResponse({"grant": "eyJ.secret.token"})  # no level
    if path.endswith("/status"):
        return Response(b"<html>", media_type="text/html")
    return Response(b"<html>bad gateway</html>", status_code=502, media_type="text/html")


async def test_answers_that_are_not_the_endpoint_s_document_are_refused() -> None:
    odd_service = Starlette(routes=[Route("/{path:path}", _odd, methods=["GET", "POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=odd_service)) as http:
        odd = PiigateClient("http://odd", "pgk_x", http=http)
        with pytest.raises(PiigateBadAnswer, match="not a decision"):
            await odd.decide(_update_ssn())
        with pytest.raises(PiigateBadAnswer) as bad_grant:
            await odd.verify("chl_1", "totp", code="123456")
        assert "secret" not in str(bad_grant.value) and bad_grant.value.__cause__ is None
        with pytest.raises(PiigateBadAnswer, match="not JSON"):
            await odd.status("chl_1")
        with pytest.raises(PiigateProblem) as proxy:
            await odd.challenge("chl_1")
        assert (proxy.value.status, proxy.value.code) == (502, "http_502")
        assert "html" not in str(proxy.value)
