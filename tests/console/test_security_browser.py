"""The live feed in a real browser against a real ``piigate serve``: Debian's Chromium, driven by
Playwright, signs in as an admin, opens ``/security``, and sees a decision the test makes through
the API arrive at the top of the feed; then the subjects ranked by risk. Saves the pages'
screenshots ``live-feed.png`` and ``subjects.png`` (see ``browser_support``).

No browser is ever downloaded: without ``/usr/bin/chromium`` the test skips, or fails when
``PIIGATE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import (
    ConsoleServer,
    chromium,
    console_server,
    require_chromium,
    screenshots,
    sign_in,
    watch_console,
)

__all__ = ["screenshots"]  # the fixture, for pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[ConsoleServer]:
    """``piigate serve`` on a free port with an admin ``sec`` and an app key (``decisions``)."""
    require_chromium()
    with console_server(tmp_path, sqlite_url, users={"sec": ["admin"]}, key="app") as server:
        yield server


@pytest.fixture
async def page(server: ConsoleServer) -> AsyncIterator[Any]:
    """A Chromium page (1100x800) whose CSP violations and script errors fail the test."""
    async with chromium() as context:
        page = await context.new_page()
        problems = watch_console(page)
        yield page
        assert problems == []


async def decide(
    server: ConsoleServer, subject: str, action: str, pii: list[str], **extra: Any
) -> dict[str, Any]:
    """The app's decision about ``subject`` on customer 42 (or ``record``)."""
    body = {
        "subject": {"id": subject, "roles": extra.pop("roles", [])},
        "action": action,
        "resource": {"type": "customer", "id": extra.pop("record", "42")},
        "pii": pii,
        **extra,
    }
    return await server.decide(body)


async def some_activity(server: ConsoleServer) -> None:
    """Decisions for a few people: reads from known places, an export support may not make,
    and a burst of deletes that trips the risk engine."""
    places = {"ann": "81.2.69.160", "bob": "1.1.1.1", "cy": "8.8.8.8"}
    for subject, ip in places.items():
        context = {"ip": ip, "user_agent": CHROME, "device_id": f"{subject}-laptop"}
        await decide(server, subject, "read", ["phone"], context=context)
        await decide(server, subject, "read", ["ssn"], context=context)
    await decide(server, "dee", "export", ["ssn", "phone"], roles=["support"])
    for n in range(22):
        stepped = await decide(server, "mallory", "delete", ["ssn"], record=f"c{n}")
    # Wrong codes for the last step-up: mallory has no authenticator app.
    async with httpx.AsyncClient(base_url=server.base) as client:
        for code in ("000000", "123456"):
            await client.post(
                f"/v1/challenges/{stepped['challenge']['id']}/verify",
                json={"method": "totp", "code": code},
                headers={"Authorization": f"Bearer {server.key}"},
            )


async def test_a_decision_arrives_in_the_live_feed(
    server: ConsoleServer, page: Any, screenshots: Path
) -> None:
    await some_activity(server)
    await page.goto(f"{server.base}/security")
    assert page.url == f"{server.base}/login?next=%2Fsecurity"
    await sign_in(page, "sec")
    await page.wait_for_url(f"{server.base}/security")
    status = page.locator("#feed-status")
    await status.filter(has_text="Live").wait_for(timeout=10_000)

    made = await decide(server, "carol", "update", ["ssn"])
    arrived = page.locator("#feed > li.event").first
    await arrived.filter(has_text="carol").wait_for(timeout=10_000)
    assert await arrived.locator(".headline").text_content() == (
        "Step-up to aal2 asked for update of ssn on customer 42"
    )
    assert await arrived.locator(".badge").text_content() == "step-up"
    assert f"challenge {made['challenge']['id']}" in (await arrived.text_content() or "")
    assert await arrived.locator("a.subject").get_attribute("href") == "/security/subjects/carol"
    await page.screenshot(path=str(screenshots / "live-feed.png"))

    await page.click("nav >> text=Subjects")
    await page.wait_for_url(f"{server.base}/security/subjects")
    first = page.locator("table.ranking tbody tr").first
    assert await first.locator("th").text_content() == "mallory"
    assert "bulk destructive" in (await first.text_content() or "")
    await page.screenshot(path=str(screenshots / "subjects.png"))
