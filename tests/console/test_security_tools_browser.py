"""The security team's policy simulator and approvals queue in a real browser, against a real
``piigate serve``: Debian's Chromium, driven by Playwright (never a downloaded browser). An admin
signs in, simulates an SSN update and sees the step-up with the rules that ask for it, then
opens the approvals queue with an agent's step-up waiting. Saves the screenshots
``policy-simulator.png`` and ``approvals.png`` (see ``browser_support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[ConsoleServer]:
    """``piigate serve`` on a free port with the example policy, an admin of the security team
    and an agent's app key (scope ``decisions``)."""
    require_chromium()
    team = {"sam": ["admin", "security"]}
    with console_server(tmp_path, sqlite_url, users=team, key="agents") as server:
        yield server


@pytest.fixture
async def page(server: ConsoleServer) -> AsyncIterator[Any]:
    async with chromium() as context:
        yield await context.new_page()


async def agent_step_up(server: ConsoleServer, body: dict[str, Any]) -> str:
    decided = await server.decide(body)
    assert decided["outcome"] == "step_up" and decided["required"]["methods"] == ["approval"]
    challenge_id: str = decided["challenge"]["id"]
    return challenge_id


async def test_an_admin_simulates_an_ssn_update_and_sees_the_queue(
    server: ConsoleServer, page: Any, screenshots: Path
) -> None:
    problems = watch_console(page)

    await sign_in(page, "sam", at=f"{server.base}/login?next=/security/policy")
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
    await page.screenshot(path=str(screenshots / "policy-simulator.png"))

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
    await page.screenshot(path=str(screenshots / "approvals.png"))
    # The pages broke no rule of their Content-Security-Policy, and their scripts threw nothing.
    assert problems == []
