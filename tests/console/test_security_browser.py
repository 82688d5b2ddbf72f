"""The live feed in a real browser against a real ``piigate serve``: Debian's Chromium, driven by
Playwright, signs in as an admin, opens ``/security``, and sees a decision the test makes through
the API arrive at the top of the feed; then the subjects ranked by risk. The pages' screenshots
go to ``docs/screenshots/`` (``live-feed.png``, ``subjects.png``).

No browser is ever downloaded: without ``/usr/bin/chromium`` the test skips, or fails when
``PIIGATE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback_support import free_port
from serve_support import run_piigate, serving
from services_support import unavailable

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery staple"
CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@dataclass
class Server:
    base: str
    key: str

    async def decide(self, subject: str, action: str, pii: list[str], **extra: Any) -> Any:
        body = {
            "subject": {"id": subject, "roles": extra.pop("roles", [])},
            "action": action,
            "resource": {"type": "customer", "id": extra.pop("record", "42")},
            "pii": pii,
            **extra,
        }
        async with httpx.AsyncClient(base_url=self.base) as client:
            answer = await client.post(
                "/v1/decisions", json=body, headers={"Authorization": f"Bearer {self.key}"}
            )
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[Server]:
    """``piigate serve`` on a free port with an admin ``sec`` and an app key (``decisions``)."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} not found: apt-get install chromium (never a downloaded browser)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIIGATE_")}
    env.update(
        PIIGATE_DATA_DIR=str(tmp_path / "data"),
        PIIGATE_DATABASE_URL=sqlite_url,
        PIIGATE_PUBLIC_URL=base,
        PIIGATE_LOG_FORMAT="json",
    )
    add = ("users", "add", "sec", "--password-stdin", "--role", "admin")
    run_piigate(env, *add, stdin=PASSWORD + "\n")
    key = run_piigate(env, "keys", "create", "app", "--scope", "decisions").strip().splitlines()[-1]
    with serving(env, port, tmp_path / "serve.log"):
        yield Server(base, key)


@pytest.fixture
async def page(server: Server) -> AsyncIterator[Any]:
    """A Chromium page (1100x800) whose CSP violations and script errors fail the test."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            context = await chromium.new_context(viewport={"width": 1100, "height": 800})
            page = await context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            yield page
            assert problems == []
        finally:
            await chromium.close()


async def some_activity(server: Server) -> None:
    """Decisions for a few people: reads from known places, an export support may not make,
    and a burst of deletes that trips the risk engine."""
    places = {"ann": "81.2.69.160", "bob": "1.1.1.1", "cy": "8.8.8.8"}
    for subject, ip in places.items():
        context = {"ip": ip, "user_agent": CHROME, "device_id": f"{subject}-laptop"}
        await server.decide(subject, "read", ["phone"], context=context)
        await server.decide(subject, "read", ["ssn"], context=context)
    await server.decide("dee", "export", ["ssn", "phone"], roles=["support"])
    for n in range(22):
        stepped = await server.decide("mallory", "delete", ["ssn"], record=f"c{n}")
    # Wrong codes for the last step-up: mallory has no authenticator app.
    async with httpx.AsyncClient(base_url=server.base) as client:
        for code in ("000000", "123456"):
            await client.post(
                f"/v1/challenges/{stepped['challenge']['id']}/verify",
                json={"method": "totp", "code": code},
                headers={"Authorization": f"Bearer {server.key}"},
            )


async def test_a_decision_arrives_in_the_live_feed(server: Server, page: Any) -> None:
    await some_activity(server)
    await page.goto(f"{server.base}/security")
    assert page.url == f"{server.base}/login?next=%2Fsecurity"
    await page.fill("#username", "sec")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.base}/security")
    status = page.locator("#feed-status")
    await status.filter(has_text="Live").wait_for(timeout=10_000)

    made = await server.decide("carol", "update", ["ssn"])
    arrived = page.locator("#feed > li.event").first
    await arrived.filter(has_text="carol").wait_for(timeout=10_000)
    assert await arrived.locator(".headline").text_content() == (
        "Step-up to aal2 asked for update of ssn on customer 42"
    )
    assert await arrived.locator(".badge").text_content() == "step-up"
    assert f"challenge {made['challenge']['id']}" in (await arrived.text_content() or "")
    assert await arrived.locator("a.subject").get_attribute("href") == "/security/subjects/carol"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "live-feed.png"))

    await page.click("nav >> text=Subjects")
    await page.wait_for_url(f"{server.base}/security/subjects")
    first = page.locator("table.ranking tbody tr").first
    assert await first.locator("th").text_content() == "mallory"
    assert "bulk destructive" in (await first.text_content() or "")
    await page.screenshot(path=str(SCREENSHOTS / "subjects.png"))
