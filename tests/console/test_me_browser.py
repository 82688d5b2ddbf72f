"""My security in a real browser against a real ``piigate serve``: Debian's Chromium, driven by
Playwright — sign in through /login, enrol TOTP through the page (the secret read from the
page, the code from pyotp), then add a passkey with the DevTools virtual authenticator, which
needs a step-up first (the step-up page is stood in for: the test answers the challenge
through the API and hands the page the grant cookie, as that page does), and report the
sign-in as not theirs.

Saves the screenshots ``my-security.png`` and ``my-security-activity.png`` (see
``browser_support``). No browser is ever downloaded: without ``/usr/bin/chromium`` the test
skips, or fails when ``PIIGATE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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

__all__ = ["screenshots"]  # the fixture, for pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def console(sqlite_url: str, tmp_path: Path) -> Iterator[ConsoleServer]:
    """``piigate serve`` on a free port (public URL ``http://localhost:PORT``, where WebAuthn
    allows http), with the user ann."""
    require_chromium()
    with console_server(tmp_path, sqlite_url, users={"ann": ()}, host="localhost") as server:
        yield server


@dataclass
class Browser:
    context: Any
    page: Any
    cdp: Any
    authenticator_id: str
    step_ups: list[str]  # the step-up page URLs the console sent the browser to


@pytest.fixture
async def browser(console: ConsoleServer) -> AsyncIterator[Browser]:
    async with chromium() as context:
        page = await context.new_page()
        step_ups: list[str] = []

        async def step_up_page(route: Any) -> None:
            step_ups.append(route.request.url)
            await route.fulfill(status=200, content_type="text/html", body="step-up")

        await page.route(re.compile(r"/stepup/"), step_up_page)
        await page.goto(f"{console.base}/login")
        cdp = await webauthn_session(page)
        authenticator_id = await add_authenticator(cdp)
        yield Browser(context, page, cdp, authenticator_id, step_ups)


async def stand_in_for_the_step_up_page(
    console: ConsoleServer, browser: Browser, secret: str
) -> str:
    """Answer the challenge the console sent the browser to with a TOTP code (the next time
    step's: this one's was spent confirming the factor), set the grant cookie as the step-up
    page does, and return where that page would send the browser back to."""
    url = urlsplit(browser.step_ups[-1])
    challenge_id = url.path.removeprefix("/stepup/")
    verified = await browser.context.request.post(
        f"{console.base}/v1/challenges/{challenge_id}/verify",
        data={"method": "totp", "code": pyotp.TOTP(secret).at(time.time() + 30)},
        headers={"Origin": console.base},
    )
    assert verified.status == 200, await verified.text()
    grant = (await verified.json())["grant"]
    await browser.context.add_cookies(
        [{"name": "piigate_grant", "value": grant, "url": console.base, "httpOnly": True}]
    )
    [back] = parse_qs(url.query)["return_to"]
    return back


async def test_sign_in_enrol_totp_and_a_passkey(
    console: ConsoleServer, browser: Browser, screenshots: Path
) -> None:
    page = browser.page
    await sign_in(page, "ann")
    await page.wait_for_url(f"{console.base}/me")
    assert "You have no factors yet" in await page.content()

    # TOTP: the secret from the page, the code from pyotp.
    await page.fill("#totp-label", "phone app")
    await page.click("#add-totp button[type=submit]")
    await page.wait_for_selector("#totp-secret")
    secret = (await page.text_content("#totp-secret") or "").strip()
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
    assert await page.get_attribute(".qr img", "src") or "" != ""
    await page.fill("#code", pyotp.TOTP(secret).now())
    await page.click("button[type=submit].primary")
    await page.wait_for_url(f"{console.base}/me?done=totp")
    assert "Your authenticator app is set up." in await page.content()

    # A passkey: a change once a factor is active, so the step-up page comes first.
    await page.fill("#passkey-label", "laptop")
    await page.click("#add-webauthn button[type=submit]")
    await page.wait_for_url(re.compile(r"/stepup/chl_"))
    back = await stand_in_for_the_step_up_page(console, browser, secret)
    assert back == "/me?resume=webauthn"
    await page.goto(f"{console.base}{back}")
    await page.fill("#resume-passkey-label", "laptop")
    await page.click("#resume button[type=submit]")
    await page.wait_for_url(f"{console.base}/me?done=webauthn")
    content = await page.content()
    assert "Your passkey is set up." in content
    assert "Passkey or security key" in content and "laptop" in content
    found = await browser.cdp.send(
        "WebAuthn.getCredentials", {"authenticatorId": browser.authenticator_id}
    )
    assert len(found["credentials"]) == 1 and found["credentials"][0]["rpId"] == "localhost"
    assert "Added a passkey or security key" in content  # the activity list

    await page.screenshot(path=str(screenshots / "my-security.png"))

    # "This wasn't me" on the sign-in: the report is recorded and shown.
    signed_in = page.locator("ol.activity li", has_text="Signed in").last
    await signed_in.get_by_role("button", name="This wasn't me").click()
    await page.wait_for_url(f"{console.base}/me?done=reported#activity")
    assert "Your report went to the security team" in await page.content()
    assert (
        await page.locator("ol.activity li", has_text="You reported “Signed in” as not you").count()
        == 1
    )
    await page.locator("#activity").screenshot(path=str(screenshots / "my-security-activity.png"))
