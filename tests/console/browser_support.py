"""What the browser tests share (imported by name: ``tests/console`` is on ``sys.path``, for the
end-to-end tests too): Debian's Chromium driven by Playwright, never a downloaded browser, and a
real ``piigate serve`` for it to open.

- :func:`require_chromium`: skip with the reason shown when ``/usr/bin/chromium`` is missing,
  or fail under ``PIIGATE_REQUIRE_SERVICES=1`` (CI), where every browser test must run.
- :func:`chromium`: a fresh context of that browser (headless, 1100x800), closed afterwards.
- :func:`console_server`: ``piigate serve`` on a free port, with local users and an app key.
- :func:`sign_in`: the console's sign-in form, filled in and sent as a person does.
- :func:`watch_console`: what goes wrong in a page (script errors, Content-Security-Policy
  violations).
- :func:`webauthn_session`, :func:`add_authenticator`: the DevTools virtual authenticator.
- ``screenshots`` (a fixture: import it into the test module): where the pages' pictures go,
  ``PIIGATE_SCREENSHOT_DIR`` when set (``make screenshots`` sets ``docs/screenshots``), else a
  directory of the test session's own, so that a test run leaves the working tree alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from loopback_support import free_port
from serve_support import EXAMPLE_POLICY, run_piigate, serving
from services_support import unavailable

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, CDPSession, Page

__all__ = [
    "CHROMIUM",
    "LAUNCH_ARGS",
    "PASSWORD",
    "ConsoleServer",
    "add_authenticator",
    "chromium",
    "console_server",
    "require_chromium",
    "screenshots",
    "sign_in",
    "watch_console",
    "webauthn_session",
]

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = (
    "--no-sandbox",  # the tests may run as root in a container, where the sandbox cannot start
    "--disable-gpu",
    # Nothing but the pages' own requests: no calls home, component updates or sync.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PASSWORD = "correct horse battery staple"  # every local user's


def require_chromium() -> Path:
    """Debian's Chromium; skips the test (fails it under ``PIIGATE_REQUIRE_SERVICES=1``) when
    it is not installed. Call it before starting anything the test would need it for."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} not found: apt-get install chromium (never a downloaded browser)")
    return CHROMIUM


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[BrowserContext]:
    """A fresh context (cookies, storage) of headless Chromium with a 1100x800 viewport; the
    browser is closed afterwards."""
    path = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(path), headless=True, args=list(LAUNCH_ARGS)
        )
        try:
            yield await browser.new_context(viewport={"width": 1100, "height": 800})
        finally:
            await browser.close()


@dataclass(frozen=True)
class ConsoleServer:
    """A running ``piigate serve``: its public URL, the app key made for it (if any), and its
    environment (for more CLI commands against the same data)."""

    base: str
    key: str | None
    env: dict[str, str]

    async def decide(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/decisions`` with the app key: the decision (a 200 is asserted)."""
        assert self.key is not None, "the server was started without an app key"
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            answer = await client.post(
                "/v1/decisions", json=body, headers={"Authorization": f"Bearer {self.key}"}
            )
        assert answer.status_code == 200, answer.text
        decided: dict[str, Any] = answer.json()
        return decided


@contextlib.contextmanager
def console_server(
    tmp_path: Path,
    database_url: str,
    *,
    users: Mapping[str, Sequence[str]] | None = None,
    key: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    config: Path = EXAMPLE_POLICY,
    env: Mapping[str, str] | None = None,
) -> Iterator[ConsoleServer]:
    """``piigate serve`` with ``config`` on ``port`` (a free one by default), public URL
    ``http://{host}:{port}`` (``localhost`` where WebAuthn must work over http), its data under
    ``tmp_path``, none of the caller's ``PIIGATE_*`` variables but ``env``. First the local
    ``users`` (name → roles; password :data:`PASSWORD`) and an app key named ``key`` (scope
    ``decisions``) are made with the CLI."""
    port = port or free_port()
    base = f"http://{host}:{port}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIIGATE_")}
    environment.update(
        PIIGATE_DATA_DIR=str(tmp_path / "data"),
        PIIGATE_DATABASE_URL=database_url,
        PIIGATE_PUBLIC_URL=base,
        PIIGATE_LOG_FORMAT="json",
    )
    environment.update(env or {})
    for name, roles in (users or {}).items():
        with_roles = [arg for role in roles for arg in ("--role", role)]
        add = ("users", "add", name, "--password-stdin", *with_roles)
        run_piigate(environment, *add, stdin=PASSWORD + "\n")
    made = None
    if key is not None:
        created = run_piigate(environment, "keys", "create", key, "--scope", "decisions")
        made = created.strip().splitlines()[-1]
    with serving(environment, port, tmp_path / "serve.log", config=config):
        yield ConsoleServer(base, made, environment)


async def sign_in(
    page: Page, username: str, *, at: str | None = None, password: str = PASSWORD
) -> None:
    """Sign in with the console's sign-in form: the one at ``at`` (a ``/login`` URL), or the one
    the page shows. Returns once the answer has loaded, with a session cookie set."""
    if at is not None:
        await page.goto(at)
    await page.fill("#username", username)
    await page.fill("#password", password)
    async with page.expect_navigation():
        await page.click("button[type=submit].primary")
    cookies = {cookie["name"] for cookie in await page.context.cookies()}
    assert "piigate_session" in cookies, f"signing in as {username} opened no session"


def watch_console(page: Page) -> list[str]:
    """A list that fills with what goes wrong in ``page`` from now on: the errors its scripts
    throw and the console's error messages, among them every Content-Security-Policy violation
    (Chromium reports each as one)."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    return problems


async def webauthn_session(page: Page) -> CDPSession:
    """A DevTools session of ``page`` with WebAuthn's virtual authenticators enabled (until the
    first one is added, ``navigator.credentials`` finds no authenticator)."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    return cdp


async def add_authenticator(
    cdp: CDPSession, *, verifies: bool = True, can_verify: bool = True
) -> str:
    """A virtual platform authenticator (CTAP2, internal transport, resident keys) that
    simulates the person's presence and verifies the person (``verifies``) if it can
    (``can_verify``); its id."""
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": can_verify,
                "isUserVerified": verifies,
                "automaticPresenceSimulation": True,
            }
        },
    )
    authenticator_id: str = added["authenticatorId"]
    return authenticator_id


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots: ``PIIGATE_SCREENSHOT_DIR`` when set
    (``make screenshots`` points it at ``docs/screenshots``, the README's pictures), else a
    directory of this test session's own."""
    chosen = os.environ.get("PIIGATE_SCREENSHOT_DIR", "")
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
