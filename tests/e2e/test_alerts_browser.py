"""The alerts page in a real browser against a real ``piigate serve``: a bulk delete raises
its alerts, a security person signs in, sees them, and acknowledges one. Debian's Chromium
driven by Playwright (never a downloaded browser): without ``/usr/bin/chromium`` the test
skips, or fails when ``PIIGATE_REQUIRE_SERVICES=1`` (CI). Saves the screenshot ``alerts.png``
(see ``browser_support``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser_support import chromium, console_server, require_chromium, screenshots, sign_in

__all__ = ["screenshots"]  # the fixture, for pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_the_security_team_sees_and_acknowledges_alerts(
    sqlite_url: str, tmp_path: Path, screenshots: Path
) -> None:
    require_chromium()
    with console_server(tmp_path, sqlite_url, users={"sam": ["security"]}, key="app") as server:
        for record in range(24):  # the example policy's bulk_destructive limit is 20 in 10 min
            body = {"subject": {"id": "mallory"}, "action": "delete", "pii": ["ssn"],
                    "resource": {"type": "customer", "id": str(1000 + record)}}  # fmt: skip
            await server.decide(body)
        async with chromium() as context:
            page = await context.new_page()
            await sign_in(page, "sam", at=f"{server.base}/login?next=/security/alerts")
            await page.wait_for_url(f"{server.base}/security/alerts")
            deadline = time.monotonic() + 20
            while await page.locator("tr.alert.open").count() < 2:
                assert time.monotonic() < deadline, "the alerts did not show"
                await page.reload()
            kinds = await page.locator("tr.alert.open td:nth-child(3)").all_inner_texts()
            assert sorted(kinds) == ["approaching limit", "bulk destructive"]
            assert "mallory" in await page.inner_text("#alerts")
            await page.screenshot(path=str(screenshots / "alerts.png"))
            first = page.locator("tr.alert.open").first
            await first.get_by_role("button", name="Acknowledge").click()
            await page.wait_for_load_state()
            assert await page.locator("tr.alert.open").count() == 1
            await page.select_option("#status", "all")
            await page.click(".filters button[type=submit]")
            await page.wait_for_url("**status=all**")
            assert "by sam" in await page.inner_text("#alerts")
