"""The step-up page in a real browser against a real ``piigate serve``: Debian's Chromium, driven
by Playwright. A WebAuthn step-up with the DevTools virtual authenticator (refused without user
verification, which the policy demands, then passed), and a push step-up answered with the
reference authenticator (``piigate authenticator``) while the page shows the number. Each ends
with the grant in the ``piigate_grant`` cookie and the browser back at ``return_to``.

Also saves the page's screenshots ``stepup.png`` and ``stepup-phone.png`` (see
``browser_support``). No browser is ever downloaded: without ``/usr/bin/chromium`` the tests
skip, or fail when ``PIIGATE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from browser_support import (
    ConsoleServer,
    add_authenticator,
    chromium,
    console_server,
    require_chromium,
    screenshots,
    sign_in,
    webauthn_session,
)

from loopback_support import free_port
from serve_support import run_piigate

__all__ = ["screenshots"]  # the fixture, for pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PAYEE = "DE89 3704 0044 0532 0130 00"
FAILED = "That did not work. Try again."
# WebAuthn proves aal3 with user verification required; a transfer over 1000 is approved for
# itself alone (max_age: 0) with WebAuthn or push.
POLICY = """\
version: 1
levels:
  aal1: {acr: "urn:piigate:aal1"}
  aal2: {acr: "urn:piigate:aal2"}
  aal3: {acr: "urn:piigate:aal3", phishing_resistant: true}
pii:
  ssn: {sensitivity: high}
factors:
  totp: {level: aal2}
  push: {level: aal2, number_matching: true}
  webauthn: {level: aal3, user_verification: required}
  recovery: {level: aal2}
rules:
  - name: edit-identity-numbers
    when: {pii: [ssn], action: [update]}
    require: {level: aal2, max_age: 5m}
  - name: transfers
    when: {action: [transact], amount_over: 1000}
    require: {level: aal2, max_age: 0, methods: [webauthn, push]}
profile: nist-800-63b-4
"""

# Enrols a passkey from a console page, with the console's own script module.
REGISTER = """async () => {
  const {api, fromBase64url, toBase64url} = await import("/static/console.js");
  const options = await api("POST", "/v1/factors/webauthn/options");
  if (!options.ok) return options;
  const o = options.body.publicKey;
  const cred = await navigator.credentials.create({publicKey: {
    ...o, challenge: fromBase64url(o.challenge), user: {...o.user, id: fromBase64url(o.user.id)},
    excludeCredentials: (o.excludeCredentials || []).map((c) => ({...c, id: fromBase64url(c.id)})),
  }});
  const credential = {
    id: cred.id, rawId: toBase64url(cred.rawId), type: cred.type,
    clientExtensionResults: cred.getClientExtensionResults(),
    response: {
      clientDataJSON: toBase64url(cred.response.clientDataJSON),
      attestationObject: toBase64url(cred.response.attestationObject),
      transports: cred.response.getTransports(),
    },
  };
  return api("POST", "/v1/factors/webauthn", {credential, label: "laptop"});
}"""


@dataclass
class Server:
    console: ConsoleServer  # http://localhost:PORT: WebAuthn's relying party allows http there
    app: str  # the allow-listed origin the page returns to (served by Playwright)
    tmp: Path

    @property
    def base(self) -> str:
        return self.console.base

    async def decide(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.console.decide(body)

    async def challenge(self, body: dict[str, Any]) -> str:
        decided = await self.decide(body)
        assert decided["outcome"] == "step_up", decided
        challenge_id: str = decided["challenge"]["id"]
        return challenge_id

    async def state(self, challenge_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base) as client:
            answer = await client.get(
                f"/v1/challenges/{challenge_id}",
                headers={"Authorization": f"Bearer {self.console.key}"},
            )
        assert answer.status_code == 200, answer.text
        shown: dict[str, Any] = answer.json()
        return shown

    async def authenticator(self, *args: str) -> str:
        keys = str(self.tmp / "authenticator.json")
        return await asyncio.to_thread(
            run_piigate, self.console.env, "authenticator", *args, "--file", keys
        )


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """``piigate serve`` (:data:`POLICY`) with users alice, carol and dave and an app key;
    ``return_to`` may go to one other origin."""
    require_chromium()
    app = f"http://127.0.0.1:{free_port()}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with console_server(
        tmp_path,
        database_url,
        users={"alice": (), "carol": (), "dave": ()},
        key="billing",
        host="localhost",
        config=policy,
        env={"PIIGATE_RETURN_TO_ORIGINS": app},
    ) as console:
        yield Server(console, app, tmp_path)


@dataclass
class Browser:
    context: Any
    page: Any
    cdp: Any

    async def grant_cookie(self, base: str) -> dict[str, Any] | None:
        for cookie in await self.context.cookies(base):
            if cookie["name"] == "piigate_grant":
                found: dict[str, Any] = cookie
                return found
        return None


@pytest.fixture
async def browser(server: Server) -> AsyncIterator[Browser]:
    async with chromium() as context:
        page = await context.new_page()

        async def the_app(route: Any) -> None:
            await route.fulfill(status=200, content_type="text/html", body="<p>the app</p>")

        await page.route(f"{server.app}/**", the_app)
        yield Browser(context, page, await webauthn_session(page))


def update_ssn(subject: str) -> dict[str, Any]:
    return {
        "subject": {"id": subject},
        "action": "update",
        "resource": {"type": "customer", "id": "42"},
        "pii": ["ssn"],
    }


async def test_a_webauthn_step_up_needs_user_verification(server: Server, browser: Browser) -> None:
    page = browser.page
    first = await add_authenticator(browser.cdp, verifies=True)
    await sign_in(page, "alice", at=f"{server.base}/login")
    registered = await page.evaluate(REGISTER)
    assert registered["status"] == 201, registered
    [credential] = (await browser.cdp.send("WebAuthn.getCredentials", {"authenticatorId": first}))[
        "credentials"
    ]

    challenge_id = await server.challenge(update_ssn("alice"))
    back = f"{server.app}/customers/42"
    await page.goto(f"{server.base}/stepup/{challenge_id}?return_to={back}")
    assert await page.inner_text("h1") == "Change the social security number of customer 42"
    button = page.locator("#webauthn-start")

    # The policy demands user verification (webauthn: user_verification: required): an
    # authenticator that does not verify the user, or cannot, proves nothing.
    await browser.cdp.send(
        "WebAuthn.setUserVerified", {"authenticatorId": first, "isUserVerified": False}
    )
    await button.click()
    await page.wait_for_function(
        "text => document.getElementById('stepup-error').textContent === text", arg=FAILED
    )
    await browser.cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": first})
    unable = await add_authenticator(browser.cdp, verifies=False, can_verify=False)
    await browser.cdp.send(
        "WebAuthn.addCredential", {"authenticatorId": unable, "credential": credential}
    )
    await page.evaluate("document.getElementById('stepup-error').textContent = ''")
    await button.click()
    await page.wait_for_function(
        "text => document.getElementById('stepup-error').textContent === text", arg=FAILED
    )
    # Chrome refused both itself (the options ask for user verification): nothing was sent.
    assert (await server.state(challenge_id))["attempts_left"] == 5
    # A browser that does not ask for it (the options altered in the page) gets an assertion
    # without the UV flag: piigate refuses it, counted as any refused proof.
    await page.evaluate(
        """() => {
          const get = navigator.credentials.get.bind(navigator.credentials);
          navigator.credentials.get = (options) =>
            get({publicKey: {...options.publicKey, userVerification: "discouraged"}});
          document.getElementById('stepup-error').textContent = '';
        }"""
    )
    await button.click()
    await page.wait_for_function(
        "text => document.getElementById('stepup-error').textContent === text", arg=FAILED
    )
    shown = await server.state(challenge_id)
    assert shown["state"] == "pending" and shown["attempts_left"] == 4
    assert await browser.grant_cookie(server.base) is None
    await page.reload()  # the page's own script again
    await asyncio.sleep(1.1)  # the factor's back-off after one failure

    # The same passkey on an authenticator that verifies the user: approved, and back.
    await browser.cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": unable})
    able = await add_authenticator(browser.cdp, verifies=True)
    await browser.cdp.send(
        "WebAuthn.addCredential", {"authenticatorId": able, "credential": credential}
    )
    await button.click()
    await page.wait_for_url(back)
    cookie = await browser.grant_cookie(server.base)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert (await server.state(challenge_id))["state"] == "approved"
    allowed = await server.decide({**update_ssn("alice"), "grants": [cookie["value"]]})
    assert allowed["outcome"] == "allow"


async def test_a_push_step_up_with_the_reference_authenticator(
    server: Server, browser: Browser, screenshots: Path
) -> None:
    page = browser.page
    await sign_in(page, "carol", at=f"{server.base}/login")
    await page.goto(f"{server.base}/login")  # any console page: its script module and token
    started = await page.evaluate(
        """async () => {
          const {api} = await import("/static/console.js");
          return api("POST", "/v1/factors/push", {label: "phone"});
        }"""
    )
    assert started["status"] == 201, started
    enrolled = await server.authenticator(
        "enroll", started["body"]["enroll_uri"], "--name", "phone"
    )
    assert "enrolled device" in enrolled

    transfer = {
        "subject": {"id": "carol"},
        "action": "transact",
        "transaction": {"amount": "12500.00", "currency": "EUR", "payee": PAYEE},
    }
    challenge_id = await server.challenge(transfer)
    back = f"{server.app}/transfers/done"
    await page.goto(f"{server.base}/stepup/{challenge_id}?return_to={back}")
    assert await page.inner_text("h1") == f"Pay 12500.00 EUR to {PAYEE}"
    await page.screenshot(path=str(screenshots / "stepup.png"), full_page=True)

    await page.set_viewport_size({"width": 390, "height": 844})
    await page.click("#push-start")
    number_box = page.locator("#push-number")
    await number_box.wait_for(state="visible")
    number = int(await number_box.inner_text())
    status = page.locator("#stepup-status")
    assert await status.inner_text() == "Waiting for you to approve on your phone…"
    await page.screenshot(path=str(screenshots / "stepup-phone.png"), full_page=False)

    # The device shows who asks for what, never the number; carol types the one she sees.
    [pending] = [
        json.loads(line) for line in (await server.authenticator("pending", "--json")).splitlines()
    ]
    assert "number" not in pending and pending["transaction"]["payee"] == PAYEE
    approved = await server.authenticator("approve", pending["id"], str(number))
    assert approved.strip() == f"{pending['id']}: approved"

    await page.wait_for_function(
        "() => document.getElementById('stepup-status').textContent.startsWith('Approved.')"
    )
    assert "Your access lasts until" in await status.inner_text()
    await page.wait_for_url(back)
    cookie = await browser.grant_cookie(server.base)
    assert cookie is not None and cookie["httpOnly"]
    allowed = await server.decide({**transfer, "grants": [cookie["value"]]})
    assert allowed["outcome"] == "allow"


async def test_a_code_by_keyboard_alone_on_a_phone(server: Server, browser: Browser) -> None:
    page = browser.page
    await page.set_viewport_size({"width": 390, "height": 844})
    await sign_in(page, "dave", at=f"{server.base}/login")
    started = await page.evaluate(
        """async () => {
          const {api} = await import("/static/console.js");
          return api("POST", "/v1/factors/totp", {label: "phone"});
        }"""
    )
    assert started["status"] == 201, started
    totp = pyotp.TOTP(started["body"]["secret"])
    confirmed = await page.evaluate(
        """async ([id, code]) => {
          const {api} = await import("/static/console.js");
          return api("POST", `/v1/factors/totp/${id}/confirm`, {code});
        }""",
        [started["body"]["id"], totp.now()],
    )
    assert confirmed["status"] == 200, confirmed

    challenge_id = await server.challenge(update_ssn("dave"))
    back = f"{server.app}/customers/42"
    await page.goto(f"{server.base}/stepup/{challenge_id}?return_to={back}")
    # Tab from the top of the page: the code field comes after the page's header, with a
    # visible focus ring, and its label names it.
    for _ in range(12):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "totp-code":
            break
    else:
        pytest.fail("the code field cannot be reached with Tab")
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    label = await page.evaluate("document.activeElement.labels[0].textContent")
    assert label == "Code from your authenticator app"

    # A wrong code: one message, said by the alert region, and the focus back on the field.
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    await page.keyboard.type(wrong)
    await page.keyboard.press("Enter")
    await page.wait_for_function("() => document.getElementById('stepup-error').textContent !== ''")
    assert await page.inner_text("#stepup-error") == "That code did not work. Try again."
    assert await page.evaluate("document.activeElement.id") == "totp-code"
    assert await page.input_value("#totp-code") == ""

    await asyncio.sleep(1.1)  # the factor's back-off after one failure
    # The next step's code (one step of skew is accepted; this step's was spent enrolling).
    await page.keyboard.type(totp.at(time.time() + 30))
    await page.keyboard.press("Enter")
    await page.wait_for_url(back)
    assert await browser.grant_cookie(server.base) is not None
