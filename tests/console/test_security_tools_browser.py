"""The security team's policy simulator and approvals queue in a real browser, against a real
``piigate serve``: Debian's Chromium, driven by Playwright (never a downloaded browser). An admin
signs in, simulates an SSN update and sees the step-up with the rules that ask for it, then
opens the approvals queue with an agent's step-up waiting. The screenshots go to
``docs/screenshots/``."""

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
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Server:
    base: str
    key: str


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[Server]:
    """``piigate serve`` on a free port with the example policy, an admin of the security team
    and an agent's app key (scope ``decisions``)."""
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
    run_piigate(
        env,
        *("users", "add", "sam", "--password-stdin", "--role", "admin", "--role", "security"),
        stdin=PASSWORD + "\n",
    )
    key = run_piigate(env, "keys", "create", "agents", "--scope", "decisions")
    with serving(env, port, tmp_path / "serve.log"):
        yield Server(base, key.strip().splitlines()[-1])


@pytest.fixture
async def page(server: Server) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await chromium.new_context(viewport={"width": 1100, "height": 800})
            yield await context.new_page()
        finally:
            await chromium.close()


async def agent_step_up(server: Server, body: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=server.base) as client:
        answer = await client.post(
            "/v1/decisions", json=body, headers={"Authorization": f"Bearer {server.key}"}
        )
    decided = answer.json()
    assert decided["outcome"] == "step_up" and decided["required"]["methods"] == ["approval"]
    challenge_id: str = decided["challenge"]["id"]
    return challenge_id


async def test_an_admin_simulates_an_ssn_update_and_sees_the_queue(
    server: Server, page: Any
) -> None:
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)

    await page.goto(f"{server.base}/login?next=/security/policy")
    await page.fill("#username", "sam")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit].primary")
    await page.wait_for_url(f"{server.base}/security/policy")
    assert "examples/policy.yaml" in await page.text_content("dl.facts")

    await page.fill("#subject_id", "alice")
    await page.select_option("#action", "update")
    await page.check("input[name=pii][value=ssn]")
    await page.fill("#resource_type", "customer")
    await page.fill("#resource_id", "42")
    await page.click("form.simulator button[type=submit]")
    await page.wait_for_selector("#result")
    outcome = page.locator("#result [data-outcome]")
    assert await outcome.get_attribute("data-outcome") == "step_up"
    assert await page.locator("#result code.rule").all_text_contents() == ["edit-identity-numbers"]
    facts = await page.text_content("#result dl.facts")
    assert "aal2, within 5m" in facts
    matched = page.locator("#result table.parts tr.matched")
    assert await matched.count() == 1
    assert "edit-identity-numbers" in await matched.first.text_content()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "policy-simulator.png"))

    wanted = await agent_step_up(
        server,
        {
            "subject": {"id": "report-agent", "roles": ["agent"]},
            "action": "export",
            "resource": {"type": "customer", "id": "42"},
            "pii": ["ssn", "phone"],
            "context": {"ip": "203.0.113.7"},
        },
    )
    await page.click("nav a[href='/security/approvals']")
    await page.wait_for_url(f"{server.base}/security/approvals")
    card = page.locator("article.waiting")
    assert await card.count() == 1
    text = await card.first.text_content()
    assert wanted in text and "report-agent" in text and "export" in text
    assert await card.first.locator("button.primary").text_content() == "Approve"
    await page.screenshot(path=str(SCREENSHOTS / "approvals.png"))
    assert refused == []  # the pages broke no rule of their Content-Security-Policy
