"""Forward-auth (``/v1/forward-auth``): the HTTP gateway's gate for nginx, Traefik and Envoy, on
a node's own engine, with the original request named by headers or by the path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import PROBLEM, Node, StartNode, bearer
from factor_support import Users, enroll_totp, totp_code, users, verify
from feed_support import decided_device, device_key
from joserfc.jwk import RSAKey
from jwt_support import AUDIENCE, ISSUER, JwksServer, idp_token

from piigate.config import IdentitySettings
from piigate.gateway.http.config import GatewayConfigError
from piigate.risk.devices import new_device_id

__all__ = ["users"]  # the fixture, re-exported for pytest

POLICY = """\
version: 1
levels:
  aal1: {acr: "urn:piigate:aal1"}
  aal2: {acr: "urn:piigate:aal2"}
pii:
  ssn: {}
  phone: {}
factors:
  totp: {level: aal2}
  recovery: {level: aal2}
rules:
  - name: read-ssn
    when: {pii: [ssn], action: [read]}
    require: {level: aal2, max_age: 5m}
    otherwise: mask
  - name: edit-ssn
    when: {pii: [ssn], action: [update]}
    require: {level: aal2, max_age: 5m}
  - name: no-export
    when: {action: [export]}
    deny: "exports are not allowed"
profile: nist-800-63b-4
"""
GATEWAY = """\
policy: policy.yaml
gateway:
  http:
    upstream: http://127.0.0.1:9
    default: {default}
{extra}    routes:
      - match: {{method: GET, path: "/customers/{{id}}"}}
        action: read
        resource: {{type: customer, id: "{{id}}"}}
        response_fields: {{"$.ssn": ssn, "$.phone": phone}}
      - match: {{method: [PUT, PATCH], path: "/customers/{{id}}"}}
        action: update
        resource: {{type: customer, id: "{{id}}"}}
        request_fields: {{"$.ssn": ssn, "$.phone": phone}}
      - match: {{method: GET, path: "/export"}}
        action: export
      - match: {{method: POST, path: "/transfers"}}
        action: transact
        transaction: {{amount: "$.amount", currency: "$.currency", payee: "$.to"}}
      - match: {{method: GET, path: "/health"}}
        action: read
      - match: {{method: POST, path: "/customers/{{id}}/phone"}}
        action: update
        resource: {{type: customer, id: "{{id}}"}}
        request_fields: {{"$.phone": phone}}
        response_fields: {{"$.ssn": ssn, "$.phone": phone}}
"""
STYLES = {
    "nginx": ("X-Original-Method", "X-Original-URI"),
    "traefik": ("X-Forwarded-Method", "X-Forwarded-Uri"),
}
STEP_UP = 'Bearer error="insufficient_user_authentication"'


def write_config(where: Path, *, default: str = "deny", extra: str = "") -> Path:
    """The policy and a configuration file with ``gateway.http`` (``extra``: more keys)."""
    (where / "policy.yaml").write_text(POLICY)
    config = where / "piigate.yaml"
    indented = textwrap.indent(extra, "    ")
    config.write_text(GATEWAY.format(default=default, extra=indented))
    return config


async def start(
    start_node: StartNode, tmp_path: Path, jwks: JwksServer, **config: str
) -> tuple[Node, Path]:
    path = write_config(tmp_path, **config)
    node = await start_node(
        config_path=str(path),
        policy_path=str(tmp_path / "policy.yaml"),
        identity=IdentitySettings(ISSUER, AUDIENCE, jwks.url),
    )
    return node, path


@pytest.fixture
async def gw(start_node: StartNode, tmp_path: Path, jwks_server: JwksServer) -> Node:
    return (await start(start_node, tmp_path, jwks_server))[0]


async def ask(
    node: Node,
    method: str,
    target: str,
    token: str | None = None,
    *,
    style: str = "nginx",
    **headers: str,
) -> httpx.Response:
    """Forward-auth for ``method target``, named as the proxy ``style`` names it."""
    sent = dict(bearer(token)) if token else {}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    if style == "envoy":
        return await node.client.request(method, f"/v1/forward-auth{target}", headers=sent)
    method_header, uri_header = STYLES[style]
    sent.update({method_header: method, uri_header: target})
    return await node.client.get("/v1/forward-auth", headers=sent)


def aal1(key: RSAKey) -> str:
    return idp_token(key, acr="urn:piigate:aal1", amr=["pwd"])


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_allow_names_the_subject_and_level(gw: Node, idp_key: RSAKey) -> None:
    response = await ask(gw, "GET", "/customers/1", idp_token(idp_key))  # aal2 a minute ago
    assert response.status_code == 200, response.text
    assert response.headers["piigate-subject"] == "alice"
    assert response.headers["piigate-level"] == "aal2"
    assert response.headers["cache-control"] == "no-store"
    assert response.content == b""
    key_id, key = await gw.api_key("app")
    app = await ask(gw, "GET", "/health", key)
    assert app.status_code == 200 and app.headers["piigate-subject"] == key_id
    assert app.headers["piigate-level"] == ""  # an API key proves no level


async def test_step_up_is_401_with_the_challenge(gw: Node, idp_key: RSAKey) -> None:
    # No body reaches forward-auth: every class of the route's request_fields counts.
    response = await ask(gw, "PATCH", "/customers/1", aal1(idp_key))
    body = problem(response, 401)
    assert response.headers["www-authenticate"] == (
        f'{STEP_UP}, acr_values="urn:piigate:aal2", max_age=300'
    )
    assert body["code"] == "insufficient_user_authentication"
    assert body["required"]["level"] == "aal2"
    challenge = body["challenge"]
    assert challenge["id"].startswith("chl_")
    assert challenge["verify_url"].endswith(f"/v1/challenges/{challenge['id']}/verify")
    assert "masked" not in body


async def test_masked_read_is_the_step_up_that_unlocks_it(gw: Node, idp_key: RSAKey) -> None:
    response = await ask(gw, "GET", "/customers/1", aal1(idp_key))
    body = problem(response, 401)  # never a 200 whose answer would carry the SSN unmasked
    assert response.headers["www-authenticate"].startswith(STEP_UP)
    assert body["masked"] == ["ssn"]
    assert body["challenge"]["id"].startswith("chl_")
    assert "piigate-subject" not in response.headers


async def test_a_write_whose_answer_would_be_masked_is_the_step_up_that_unlocks_it(
    gw: Node, idp_key: RSAKey
) -> None:
    # Changing a phone needs nothing; the answer brings the SSN back, a read that masks it.
    response = await ask(gw, "POST", "/customers/1/phone", aal1(idp_key))
    body = problem(response, 401)
    assert body["masked"] == ["ssn"]
    assert body["required"]["level"] == "aal2"
    fresh = await ask(gw, "POST", "/customers/1/phone", idp_token(idp_key))  # aal2
    assert fresh.status_code == 200, fresh.text
    assert fresh.headers["piigate-level"] == "aal2"


async def test_deny_and_transact_are_403(gw: Node) -> None:
    _, key = await gw.api_key("app")
    denied = problem(await ask(gw, "GET", "/export", key), 403)
    assert denied["detail"] == "exports are not allowed" and denied["decision_id"]
    transfer = problem(await ask(gw, "POST", "/transfers", key), 403)
    assert "reverse proxy" in transfer["detail"]


async def test_missing_credentials_is_401(gw: Node) -> None:
    response = await ask(gw, "GET", "/customers/1")
    assert problem(response, 401)["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == 'Bearer realm="piigate"'


async def test_unmatched_requests_follow_the_default(
    start_node: StartNode, tmp_path: Path, jwks_server: JwksServer, idp_key: RSAKey
) -> None:
    node, _ = await start(start_node, tmp_path, jwks_server)
    assert problem(await ask(node, "GET", "/elsewhere"), 403)["code"] == "forbidden"
    # A policy reload reads the routes again: default pass, the subject under another name.
    write_config(tmp_path, default="pass", extra="headers: {subject: X-User, level: X-Acr}\n")
    assert await node.services.reload_policy()
    passed = await ask(node, "GET", "/elsewhere")
    assert passed.status_code == 200 and passed.headers["x-user"] == ""  # nobody asked
    allowed = await ask(node, "GET", "/customers/1", idp_token(idp_key))
    assert allowed.headers["x-user"] == "alice" and allowed.headers["x-acr"] == "aal2"


@pytest.mark.parametrize("style", ["nginx", "traefik", "envoy"])
async def test_each_proxy_names_the_original_request(gw: Node, style: str) -> None:
    _, key = await gw.api_key("app")
    assert (await ask(gw, "GET", "/health?verbose=1", key, style=style)).status_code == 200
    other = await ask(gw, "DELETE", "/health", key, style=style)  # no route: default deny
    assert problem(other, 403)["detail"] == "no route of this gateway allows this request"
    assert "decision_id" in problem(await ask(gw, "GET", "/export", key, style=style), 403)
    ambiguous = await ask(gw, "GET", "/customers/%2e%2e/health", key, style=style)
    assert problem(ambiguous, 400)["detail"] == "ambiguous segment in the request path"


async def test_the_original_request_must_be_named_once(gw: Node) -> None:
    _, key = await gw.api_key("app")
    call = gw.client.get
    nothing = problem(await call("/v1/forward-auth", headers=bearer(key)), 400)
    assert "X-Original-Method" in nothing["detail"]
    half = {"X-Original-URI": "/health", **bearer(key)}
    problem(await call("/v1/forward-auth", headers=half), 400)
    both = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/health", "X-Original-Method": "GET"}
    # A client may send one pair through a proxy that sets the other: they must agree.
    assert (await call("/v1/forward-auth", headers={**both, **half})).status_code == 200
    other = {**both, **half, "X-Forwarded-Uri": "/export"}
    problem(await call("/v1/forward-auth", headers=other), 400)
    assert problem(await ask(gw, "GE T", "/health", key), 400)["detail"].endswith("method")


async def test_a_grant_from_the_challenge_lets_the_retry_through(
    gw: Node, idp_key: RSAKey, users: Users
) -> None:
    alice = await users(gw, "alice")
    _, secret = await enroll_totp(gw, alice)
    token = aal1(idp_key)
    refused = await ask(gw, "PUT", "/customers/1", token, style="envoy")
    challenge = problem(refused, 401)["challenge"]["id"]
    verified = await verify(alice, challenge, totp_code(gw, secret))
    assert verified.status_code == 200, verified.text
    grant = verified.json()["grant"]
    retry = await ask(gw, "PUT", "/customers/1", token, style="envoy", PIIGate_Grant=grant)
    assert retry.status_code == 200, retry.text
    assert retry.headers["piigate-subject"] == "alice"
    assert retry.headers["piigate-level"] == "aal2"
    # The grant cookie counts as well (the rule's 5 minutes are not over), with nginx too.
    cookie = await ask(gw, "PATCH", "/customers/1", token, Cookie=f"piigate_grant={grant}")
    assert cookie.status_code == 200, cookie.text


async def test_rate_limits_count_the_client_behind_a_trusted_proxy(
    start_node: StartNode, tmp_path: Path, jwks_server: JwksServer
) -> None:
    trusted = "rate_limit: {per_ip: 1/m}\nforward_auth: {trusted_proxies: [127.0.0.1]}\n"
    node, _ = await start(start_node, tmp_path, jwks_server, extra=trusted)
    _, key = await node.api_key("app")

    async def via(address: str) -> httpx.Response:
        return await ask(node, "GET", "/health", key, X_Forwarded_For=address)

    first = await via("203.0.113.9")
    assert first.status_code == 200 and first.headers["ratelimit"].startswith('"per_ip";r=0')
    limited = problem(await via("198.51.100.7, 203.0.113.9"), 429)  # the last hop counts
    assert limited["violated-policies"] == ["per_ip"]
    assert (await via("203.0.113.9, 198.51.100.7")).status_code == 200
    # Not trusted (the configuration reloaded without it): the caller's address counts.
    write_config(tmp_path, extra="rate_limit: {per_ip: 1/m}\n")
    assert await node.services.reload_policy()
    assert (await via("192.0.2.1")).status_code == 200
    refused = await via("192.0.2.2")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0


async def test_the_problem_in_a_header_for_nginx(gw: Node, idp_key: RSAKey) -> None:
    plain = await ask(gw, "GET", "/customers/1", aal1(idp_key))
    assert "piigate-problem" not in plain.headers
    asked = await ask(gw, "GET", "/customers/1", aal1(idp_key), Prefer="piigate-problem-header")
    assert json.loads(asked.headers["piigate-problem"]) == asked.json()
    assert asked.headers["preference-applied"] == "piigate-problem-header"


async def test_envoy_calls_carry_the_apps_cookies(gw: Node) -> None:
    # Forward-auth never reads the session cookie: an unsafe method with it is not cross-site.
    cookie = {"Cookie": "piigate_session=abc", "Origin": "https://app.example"}
    response = await ask(gw, "PUT", "/customers/1", style="envoy", **cookie)
    assert problem(response, 401)["code"] == "unauthorized"


async def test_without_gateway_routes_forward_auth_is_503(node: Node) -> None:
    response = await ask(node, "GET", "/health")
    assert "gateway.http routes" in problem(response, 503)["detail"]


async def test_a_gateway_section_that_cannot_be_read_stops_the_start(
    start_node: StartNode, tmp_path: Path
) -> None:
    path = write_config(tmp_path, default="maybe")
    with pytest.raises(GatewayConfigError) as raised:
        await start_node(config_path=str(path), policy_path=str(tmp_path / "policy.yaml"))
    assert "default must be pass or deny" in str(raised.value.errors)


async def test_openapi_lists_forward_auth(node: Node) -> None:
    paths = (await node.client.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/forward-auth"]) == {"get", "post"}
    assert set(paths["/v1/forward-auth/{path}"]) == {"get", "post"}


async def test_the_end_users_device_cookie_reaches_the_decision(gw: Node, idp_key: RSAKey) -> None:
    """nginx hands forward-auth the original request's cookies: the device cookie is read (and
    checked) into the decision's context."""
    device = new_device_id()
    cookie = f"theme=dark; piigate_device={gw.services.devices.sign(device)}"
    response = await ask(gw, "GET", "/customers/1", idp_token(idp_key), cookie=cookie)
    assert response.status_code == 200, response.text
    assert await decided_device(gw) == await device_key(gw, device)
    forged = f"piigate_device={gw.services.devices.sign(device)[:-2]}xx"
    assert (await ask(gw, "GET", "/customers/1", idp_token(idp_key), cookie=forged)).is_success
    assert await decided_device(gw) is None
