"""Where the step-up page sends the browser back: a path here, or a URL on an origin of
``service.console.return_to_origins`` (``PIIGATE_RETURN_TO_ORIGINS``); every other target is
``/``. The setting is read like every other (``FILE:LINE:COL`` errors) and reaches the page's
CSP ``form-action`` too."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest
from api_support import Node, StartNode
from stepup_page_support import (
    Browsers,
    browsers,
    challenge_for,
    enrol_totp,
    post_code,
    signed_in,
    totp_now,
)

from piigate.config import ConfigError, load_settings

__all__ = ["browsers"]  # the fixture, for pytest

APP = "https://app.example"


async def _approve(node: Node, browser: httpx.AsyncClient, return_to: str) -> httpx.Response:
    secret = await enrol_totp(node, "alice")
    _, key = await node.api_key("billing")
    challenge_id = await challenge_for(node, key)
    page = await browser.get(f"/stepup/{challenge_id}", params={"return_to": return_to})
    assert page.status_code == 200, page.text
    return await post_code(browser, challenge_id, totp_now(node, secret), return_to=return_to)


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "https://app.example.evil.example/",
        "http://app.example/",  # the allowed origin is https
        "https://app.example@evil.example/",
        "/ok\r\nSet-Cookie: x=1",
    ],
)
async def test_another_site_is_never_where_the_page_returns(
    start_node: StartNode, browsers: Browsers, target: str
) -> None:
    node = await start_node(return_to_origins=(APP,))
    browser = browsers(node)
    await signed_in(node, browser, "alice")
    answer = await _approve(node, browser, target)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/"


@pytest.mark.parametrize("target", [f"{APP}/orders/7?step=2", "/customers/42?x=1#f"])
async def test_this_origin_and_an_allowed_one_are(
    start_node: StartNode, browsers: Browsers, target: str
) -> None:
    node = await start_node(return_to_origins=(APP,))
    browser = browsers(node)
    await signed_in(node, browser, "alice")
    answer = await _approve(node, browser, target)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == target
    # The page's forms may end there (CSP form-action follows the redirect).
    page = await browser.get("/login")
    assert f"form-action 'self' {APP};" in page.headers["content-security-policy"]


async def test_the_page_renders_only_a_safe_return_to(node: Node, browsers: Browsers) -> None:
    browser = browsers(node)
    await signed_in(node, browser, "alice")
    await enrol_totp(node, "alice")
    _, key = await node.api_key("billing")
    challenge_id = await challenge_for(node, key)
    page = await browser.get(
        f"/stepup/{challenge_id}", params={"return_to": "https://evil.example/"}
    )
    assert "evil.example" not in page.text
    assert 'data-return-to="/"' in page.text


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_the_setting_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml",
        """\
        policy: p.yaml
        service:
          console:
            return_to_origins: [https://App.Example, "http://localhost:3000/"]
        """,
    )
    settings = load_settings(path, environ={})
    assert settings.return_to_origins == ("https://app.example", "http://localhost:3000")
    env = {"PIIGATE_RETURN_TO_ORIGINS": "https://b.example, http://[::1]:8081"}
    assert load_settings(path, environ=env).return_to_origins == (
        "https://b.example",
        "http://[::1]:8081",
    )
    assert load_settings(None, environ={}).return_to_origins == ()


def test_a_wrong_setting_is_named_with_its_place(tmp_path: Path) -> None:
    path = write(
        tmp_path / "piigate.yaml",
        """\
        policy: p.yaml
        service:
          console:
            return_to_origins: [https://ok.example, https://x.example/app]
            return_to: x
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.errors == [
        f"{path}:5:5: unknown key 'return_to' in console (expected one of: return_to_origins)",
        f"{path}:4:45: return_to_origins: 'https://x.example/app' must be "
        "scheme://host[:port] only",
    ]
    with pytest.raises(ConfigError, match=r"PIIGATE_RETURN_TO_ORIGINS: 'ftp://x\.example'"):
        load_settings(None, environ={"PIIGATE_RETURN_TO_ORIGINS": "ftp://x.example"})
