"""The alerts page in a real browser against a real ``piigate serve``: a bulk delete raises
its alerts, a security person signs in, sees them, and acknowledges one. Debian's Chromium
driven by Playwright (never a downloaded browser): without ``/usr/bin/chromium`` the test
skips, or fails when ``PIIGATE_REQUIRE_SERVICES=1`` (CI). Saves docs/screenshots/alerts.png.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from loopback_support import free_port
from serve_support import run_piigate, serving
from services_support import unavailable

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery staple"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_the_security_team_sees_and_acknowledges_alerts(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} not found: apt-get install chromium (never a downloaded browser)")
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIIGATE_")}
    env.update(PIIGATE_DATA_DIR=str(tmp_path / "data"), PIIGATE_LOG_FORMAT="json")
    run_piigate(env, "users", "add", "sam", "--role", "security", "--password-stdin",
                stdin=PASSWORD + "\n")  # fmt: skip
    key = run_piigate(env, "keys", "create", "app", "--scope", "decisions").split()[-1]
    with serving(env, port, tmp_path / "serve.log"):
        for record in range(24):  # the example policy's bulk_destructive limit is 20 in 10 min
            body = {"subject": {"id": "mallory"}, "action": "delete", "pii": ["ssn"],
                    "resource": {"type": "customer", "id": str(1000 + record)}}  # fmt: skip
            answer = httpx.post(
                f"{url}/v1/decisions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            assert answer.status_code == 200, answer.text
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                page.goto(f"{url}/login?next=/security/alerts")
                page.fill("#username", "sam")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit].primary")
                page.wait_for_url(f"{url}/security/alerts")
                deadline = time.monotonic() + 20
                while page.locator("tr.alert.open").count() < 2:
                    assert time.monotonic() < deadline, "the alerts did not show"
                    page.reload()
                kinds = page.locator("tr.alert.open td:nth-child(3)").all_inner_texts()
                assert sorted(kinds) == ["approaching limit", "bulk destructive"]
                assert "mallory" in page.inner_text("#alerts")
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / "alerts.png"))
                first = page.locator("tr.alert.open").first
                first.get_by_role("button", name="Acknowledge").click()
                page.wait_for_load_state()
                assert page.locator("tr.alert.open").count() == 1
                page.select_option("#status", "all")
                page.click(".filters button[type=submit]")
                page.wait_for_url("**status=all**")
                assert "by sam" in page.inner_text("#alerts")
            finally:
                browser.close()
