"""The console's sign-in at a real OpenID provider (panva's ``oidc-provider``, ``idp/idp.mjs``)
against a real ``piigate serve``. The console is a confidential client (its secret from
``PIIGATE_OIDC_CLIENT_SECRET``); the policy lets people log in at aal2. A login the provider
made at aal2 opens a console session (httpx following the redirects and answering the
provider's login as ``idp_support`` does); one made at aal1 lands on the step-up page with its
login ticket, in Debian's Chromium (Playwright): piigate at ``localhost``, the provider at
``127.0.0.1``, so the provider's redirect back is cross-site, as in production, and the
``SameSite=Strict`` ticket must still reach the step-up page."""

from __future__ import annotations

import re
import secrets
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from browser_support import chromium, console_server, screenshots
from idp_support import ConsoleClient, OidcIdp, running_idp

from loopback_support import free_port

__all__ = ["screenshots"]  # the fixture, for pytest

pytestmark = pytest.mark.slow

AAL1, AAL2 = "urn:piigate:aal1", "urn:piigate:aal2"
CLIENT_ID = "piigate-console"
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
  recovery: {level: aal2}
rules:
  - name: logins-at-aal2
    when: {action: [login]}
    require: {level: aal2}
profile: nist-800-63b-4
"""


@dataclass
class Console:
    base: str
    idp: OidcIdp

    @property
    def callback(self) -> str:
        return f"{self.base}/login/oidc/callback"

    def sign_in(self, http: httpx.Client, *, subject: str, acr: str) -> httpx.Response:
        """From the console's "Sign in with your organisation" to piigate's answer to the
        provider's redirect back."""
        started = http.get(f"{self.base}/login/oidc", params={"next": "/"})
        assert started.status_code == 303, started.text
        assert started.headers["location"].startswith(self.idp.authorization_endpoint)
        login = {"login": subject, "acr": acr}
        back = self.idp.follow_login(http, started, login, back_to=self.callback)
        return http.get(back)


@pytest.fixture
def console(database_url: str, tmp_path: Path) -> Iterator[Console]:
    """The provider, knowing the console's client, and ``piigate serve`` signing in there."""
    port = free_port()
    base = f"http://localhost:{port}"
    secret = secrets.token_urlsafe(32)
    client = ConsoleClient(CLIENT_ID, f"{base}/login/oidc/callback", secret)
    with running_idp(tmp_path / "idp.log", console=client) as idp:
        (tmp_path / "policy.yaml").write_text(POLICY)
        config = tmp_path / "piigate.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                policy: policy.yaml
                service:
                  identity:
                    issuer: {idp.issuer}
                    audience: {idp.audience}
                    jwks_url: {idp.jwks_url}
                    console:
                      client_id: {CLIENT_ID}
                      scopes: [openid, profile]
                """
            )
        )
        with console_server(
            tmp_path,
            database_url,
            host="localhost",
            port=port,
            config=config,
            env={"PIIGATE_OIDC_CLIENT_SECRET": secret},
        ) as server:
            yield Console(server.base, idp)


def test_a_login_at_the_provider_opens_a_console_session(console: Console) -> None:
    with httpx.Client(timeout=10) as http:
        page = http.get(f"{console.base}/login")
        assert "Sign in with your organisation" in page.text
        answer = console.sign_in(http, subject="dana", acr=AAL2)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/"
        assert http.cookies.get("piigate_session")
        home = http.get(f"{console.base}/")
        assert home.status_code == 303 and home.headers["location"] == "/me"
        # No step-up was asked: the provider's acr proved aal2. The session is a person's (their
        # own factors answer), without a local account (database credentials are for those).
        factors = http.get(f"{console.base}/v1/factors")
        assert factors.status_code == 200 and factors.json() == {"factors": []}, factors.text
        refused = http.post(f"{console.base}/v1/db-credentials", headers={"Origin": console.base})
        assert refused.status_code == 403  # database credentials are for local users only
        assert "local users" in refused.json()["detail"]


@pytest.mark.browser
async def test_a_login_the_policy_steps_up_lands_on_the_step_up_page(
    console: Console, screenshots: Path
) -> None:
    async with chromium() as context:
        page = await context.new_page()
        await page.goto(f"{console.base}/login")
        await page.screenshot(path=str(screenshots / "sign-in-organisation.png"))
        await page.get_by_role("link", name="Sign in with your organisation").click()
        await page.wait_for_url(f"{console.idp.issuer}/interaction/**")
        # The provider's login "page" is answered as a form posted from its own origin.
        async with page.expect_request(re.compile(r"/stepup/chl_")) as arrived:
            await page.evaluate(LOGIN_FORM, [page.url, "erin", AAL1])
        stepup = await arrived.value
        sent = (await stepup.all_headers()).get("cookie", "")
        cookies = {c["name"]: c["value"] for c in await context.cookies(console.base)}
    # The step-up page's own request carried the login ticket, and no session exists yet.
    ticket = cookies["piigate_login_ticket"]
    assert f"piigate_login_ticket={ticket}" in sent
    assert "piigate_session" not in cookies
    location = urlsplit(stepup.url)
    assert parse_qs(location.query)["return_to"] == ["/login/complete?next=%2F"]
    challenge_id = location.path.removeprefix("/stepup/")
    async with httpx.AsyncClient(base_url=console.base, timeout=10) as http:
        shown = await http.get(
            f"/v1/challenges/{challenge_id}", headers={"PIIGate-Login-Ticket": ticket}
        )
    assert shown.status_code == 200, shown.text
    assert shown.json()["action"] == "login" and shown.json()["subject"] == "erin"


# Submits the provider's login form: [action URL, subject, acr].
LOGIN_FORM = """([action, login, acr]) => {
  const form = document.createElement("form");
  form.method = "post";
  form.action = action;
  for (const [name, value] of [["login", login], ["acr", acr]]) {
    const input = document.createElement("input");
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
}"""
