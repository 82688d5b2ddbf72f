"""``identity/oidc.py``'s ``OidcClient`` over httpx's ``MockTransport``: what the console's
HTTP tests (tests/console/test_oidc_signin.py) do not reach — discovery checked, cached and
kept through a failure, the client's credentials as the provider takes them, and token
endpoint answers that are refused or mean the provider is down."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from piigate.crypto.secret import Secret
from piigate.identity.errors import IdpUnavailable
from piigate.identity.oidc import OidcClient, OidcRefused, ProviderMetadata
from piigate.identity.oidc_flow import SignInFlow
from piigate.oidc_settings import OidcClientSettings

ISSUER = "https://idp.example"
CLIENT = "piigate-console"
REDIRECT = "https://piigate.example/login/oidc/callback"
T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})

Handler = Callable[[httpx.Request], httpx.Response]


def document(**overrides: Any) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
        **overrides,
    }


class Provider:
    """Answers discovery, the JWKS and the token endpoint; counts the discovery fetches."""

    def __init__(self, doc: dict[str, Any] | None = None) -> None:
        self.doc = doc or document()
        self.discovery: list[int] = []
        self.discovery_status = 200
        self.token_answer: httpx.Response | None = None
        self.token_requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            self.discovery.append(self.discovery_status)
            return httpx.Response(self.discovery_status, json=self.doc)
        if path == "/jwks":
            return httpx.Response(200, json=KeySet([KEY]).as_dict(private=False))
        self.token_requests.append(request)
        assert self.token_answer is not None
        return self.token_answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client(provider: Provider, timer: Clock | None = None, **settings: Any) -> OidcClient:
    return OidcClient(
        issuer=ISSUER,
        settings=OidcClientSettings(CLIENT, **settings),
        redirect_uri=REDIRECT,
        roles_claim="roles",
        http=httpx.AsyncClient(transport=httpx.MockTransport(provider)),
        timer=timer or Clock(),
        discovery_ttl=60,
        retry_interval=5,
    )


def id_token(flow: SignInFlow, **claims: Any) -> str:
    now = int(T0.timestamp())
    base = {"iss": ISSUER, "aud": CLIENT, "sub": "dana", "iat": now, "exp": now + 300}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, {**base, "nonce": flow.nonce, **claims}, KEY)


async def test_discovery_is_checked_cached_and_kept_through_a_failure() -> None:
    provider, timer = Provider(), Clock()
    oidc = client(provider, timer)
    found = await oidc.metadata()
    assert found == ProviderMetadata(
        ISSUER, f"{ISSUER}/authorize", f"{ISSUER}/token", f"{ISSUER}/jwks"
    )
    await oidc.metadata()
    assert provider.discovery == [200]  # cached
    timer.now += 61
    provider.discovery_status = 500
    assert await oidc.metadata() == found  # stale, but the provider is down: kept
    assert await oidc.metadata() == found  # not asked again within the retry interval
    assert provider.discovery == [200, 500]
    timer.now += 6
    provider.discovery_status = 200
    await oidc.metadata()
    assert provider.discovery == [200, 500, 200]


@pytest.mark.parametrize(
    "doc",
    [
        document(issuer="https://other.example"),
        document(token_endpoint="http://idp.example/token"),  # plain http off loopback
        document(jwks_uri=None),
        {"not": "a discovery document"},
    ],
)
async def test_a_discovery_document_that_cannot_be_trusted_is_not_used(
    doc: dict[str, Any],
) -> None:
    oidc = client(Provider(doc))
    with pytest.raises(IdpUnavailable):
        await oidc.metadata()
    with pytest.raises(IdpUnavailable):
        await oidc.authorization_url(SignInFlow.start("/", now=T0))


async def test_a_confidential_client_uses_basic_or_what_the_provider_takes() -> None:
    provider = Provider()
    flow = SignInFlow.start("/", now=T0)
    provider.token_answer = httpx.Response(200, json={"id_token": id_token(flow)})
    secret = Secret("pa:ss word")
    login = await client(provider, client_secret=secret).sign_in(code="c", flow=flow, now=T0)
    assert login.subject_id == "dana" and login.issuer == ISSUER
    basic = provider.token_requests[-1]
    expected = base64.b64encode(b"piigate-console:pa%3Ass+word").decode()
    assert basic.headers["authorization"] == f"Basic {expected}"
    form = dict(x.split("=", 1) for x in basic.content.decode().split("&"))
    assert "client_secret" not in form and "client_id" not in form
    assert form["code_verifier"] == flow.verifier and form["grant_type"] == "authorization_code"

    provider.doc = document(token_endpoint_auth_methods_supported=["client_secret_post"])
    flow = SignInFlow.start("/", now=T0)
    provider.token_answer = httpx.Response(200, json={"id_token": id_token(flow)})
    await client(provider, client_secret=secret).sign_in(code="c", flow=flow, now=T0)
    posted = provider.token_requests[-1]
    assert "authorization" not in posted.headers
    assert b"client_secret=pa%3Ass+word" in posted.content


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (httpx.Response(400, json={"error": "invalid_grant"}), "token_invalid_grant"),
        (httpx.Response(400, json={"error": "<script>"}), "token_refused"),
        (httpx.Response(401, text="<html>no</html>"), "token_answer_unreadable"),
        (httpx.Response(200, json={"access_token": "x"}), "token_without_id_token"),
    ],
)
async def test_a_token_answer_without_an_id_token_is_refused(
    answer: httpx.Response, reason: str
) -> None:
    provider = Provider()
    provider.token_answer = answer
    with pytest.raises(OidcRefused) as refused:
        await client(provider).sign_in(code="c", flow=SignInFlow.start("/", now=T0), now=T0)
    assert refused.value.reason == reason


async def test_a_token_endpoint_that_fails_is_an_unavailable_provider() -> None:
    provider = Provider()
    provider.token_answer = httpx.Response(502, text="bad gateway")
    with pytest.raises(IdpUnavailable):
        await client(provider).sign_in(code="c", flow=SignInFlow.start("/", now=T0), now=T0)


async def test_several_audiences_need_this_client_as_the_authorized_party() -> None:
    provider = Provider()
    flow = SignInFlow.start("/", now=T0)
    token = id_token(flow, aud=[CLIENT, "api"], azp=CLIENT, roles=["security"])
    provider.token_answer = httpx.Response(200, json={"id_token": token})
    login = await client(provider).sign_in(code="c", flow=flow, now=T0)
    assert login.roles == {"security"} and login.auth_time == T0  # auth_time from iat
    assert json.loads(json.dumps(login.data()))["subject_id"] == "dana"
