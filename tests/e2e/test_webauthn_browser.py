"""WebAuthn in a real browser against a real ``piigate serve``: Debian's Chromium, driven by
Playwright, with the DevTools virtual authenticator (CTAP2, internal transport, user
verification) — register a credential, then answer an ordinary and a bound step-up with it.

The page is served by Playwright's request interception at ``http://localhost:PORT/`` (the
origin of ``PIIGATE_PUBLIC_URL``; WebAuthn allows http on localhost), and everything it fetches
goes to the piigate process on that port. No browser is ever downloaded: without
``/usr/bin/chromium`` the test skips, or fails when ``PIIGATE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    PASSWORD,
    ConsoleServer,
    add_authenticator,
    chromium,
    console_server,
    require_chromium,
    webauthn_session,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# The relying party's page: base64url ⇄ ArrayBuffer, and the two ceremonies over fetch().
PAGE = """<!doctype html>
<meta charset="utf-8"><title>piigate WebAuthn</title>
<script>
const enc = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const dec = (text) => {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), c => c.charCodeAt(0));
};
const ids = (list) => (list || []).map(c => ({...c, id: dec(c.id)}));
async function api(method, path, body) {
  const r = await fetch(path, {
    method, credentials: "same-origin",
    headers: body ? {"Content-Type": "application/json"} : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return {status: r.status, body: await r.json().catch(() => null)};
}
async function login(username, password) {
  return api("POST", "/v1/login", {username, password});
}
async function register(label) {
  const options = await api("POST", "/v1/factors/webauthn/options");
  if (options.status !== 200) return options;
  const o = options.body.publicKey;
  const cred = await navigator.credentials.create({publicKey: {
    ...o, challenge: dec(o.challenge), user: {...o.user, id: dec(o.user.id)},
    excludeCredentials: ids(o.excludeCredentials),
  }});
  const credential = {
    id: cred.id, rawId: enc(cred.rawId), type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment,
    clientExtensionResults: cred.getClientExtensionResults(),
    response: {
      clientDataJSON: enc(cred.response.clientDataJSON),
      attestationObject: enc(cred.response.attestationObject),
      transports: cred.response.getTransports(),
    },
  };
  return api("POST", "/v1/factors/webauthn", {credential, label});
}
async function stepUp(challengeId) {
  const options = await api("GET", `/v1/challenges/${challengeId}/webauthn`);
  if (options.status !== 200) return options;
  const o = options.body.publicKey;
  const cred = await navigator.credentials.get({publicKey: {
    ...o, challenge: dec(o.challenge), allowCredentials: ids(o.allowCredentials),
  }});
  const r = cred.response;
  const credential = {
    id: cred.id, rawId: enc(cred.rawId), type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment,
    clientExtensionResults: cred.getClientExtensionResults(),
    response: {
      clientDataJSON: enc(r.clientDataJSON), authenticatorData: enc(r.authenticatorData),
      signature: enc(r.signature), userHandle: r.userHandle ? enc(r.userHandle) : null,
    },
  };
  const verified = await api("POST", `/v1/challenges/${challengeId}/verify`,
                             {method: "webauthn", credential});
  return {...verified, webauthnChallenge: o.challenge};
}
</script>
"""


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ConsoleServer]:
    """``piigate serve`` on a free port, public URL ``http://localhost:PORT``, with user alice
    and an app key (scope ``decisions``)."""
    require_chromium()
    users = {"alice": ()}
    with console_server(tmp_path, database_url, users=users, key="app", host="localhost") as server:
        yield server


@dataclass
class Browser:
    page: Any
    cdp: Any
    authenticator_id: str

    async def call(self, function: str, *args: Any) -> Any:
        return await self.page.evaluate(f"(args) => {function}(...args)", list(args))

    async def credentials(self) -> list[dict[str, Any]]:
        found = await self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id}
        )
        return list(found["credentials"])


@pytest.fixture
async def browser(server: ConsoleServer) -> AsyncIterator[Browser]:
    async with chromium() as context:
        page = await context.new_page()

        async def serve_page(route: Any) -> None:
            await route.fulfill(status=200, content_type="text/html", body=PAGE)

        await page.route(f"{server.base}/", serve_page)
        await page.goto(f"{server.base}/")
        cdp = await webauthn_session(page)
        yield Browser(page, cdp, await add_authenticator(cdp))


def request(action: str, **extra: Any) -> dict[str, Any]:
    return {
        "subject": {"id": "alice"},
        "action": action,
        "resource": {"type": "customer", "id": "42"},
        "pii": ["ssn"],
        **extra,
    }


async def test_register_and_step_up_in_chromium(server: ConsoleServer, browser: Browser) -> None:
    logged_in = await browser.call("login", "alice", PASSWORD)
    assert logged_in["status"] == 200, logged_in

    registered = await browser.call("register", "virtual key")
    assert registered["status"] == 201, registered
    factor = registered["body"]
    assert factor["kind"] == "webauthn" and factor["state"] == "active"
    assert factor["transports"] == ["internal"]
    stored = await browser.credentials()
    assert len(stored) == 1 and stored[0]["rpId"] == "localhost"

    # An ordinary step-up: update an SSN (aal2 within 5 minutes; WebAuthn proves aal3).
    update = request("update")
    decided = await server.decide(update)
    assert decided["outcome"] == "step_up" and "webauthn" in decided["required"]["methods"]
    answered = await browser.call("stepUp", decided["challenge"]["id"])
    assert answered["status"] == 200, answered
    grant = answered["body"]
    assert grant["level"] == "aal3" and grant["amr"] == ["hwk", "user"]
    allowed = await server.decide({**update, "grants": [grant["grant"]]})
    assert allowed["outcome"] == "allow"

    # A bound step-up (max_age 0): the WebAuthn challenge is derived from this request, and the
    # grant opens this request once.
    delete = request("delete", binding={"method": "DELETE", "path": "/customers/42"})
    decided = await server.decide(delete)
    assert decided["required"]["max_age"] == 0
    answered = await browser.call("stepUp", decided["challenge"]["id"])
    assert answered["status"] == 200, answered
    assert answered["body"]["single_use"] is True
    other = {**delete, "resource": {"type": "customer", "id": "43"}}
    assert (await server.decide({**other, "grants": [answered["body"]["grant"]]}))[
        "outcome"
    ] == "step_up"
    first = await server.decide({**delete, "grants": [answered["body"]["grant"]]})
    assert first["outcome"] == "allow"
    again = await server.decide({**delete, "grants": [answered["body"]["grant"]]})
    assert again["outcome"] == "step_up"

    # The authenticator counted both signatures.
    assert (await browser.credentials())[0]["signCount"] >= 2
