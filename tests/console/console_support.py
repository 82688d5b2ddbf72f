"""Helpers of the console tests: a form's CSRF token, and signing in through the sign-in page
(imported by name: ``tests/console`` is on ``sys.path``)."""

from __future__ import annotations

import re

import httpx
from api_support import Node

__all__ = ["csrf_of", "sign_in"]

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token of the first form of ``page``."""
    found = _TOKEN.search(page.text)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def sign_in(node: Node, username: str, password: str) -> httpx.Response:
    """Sign in through the console's form (the client keeps the cookies)."""
    form = await node.client.get("/login")
    origin = node.settings.public_url.rstrip("/")
    return await node.client.post(
        "/login",
        data={"csrf_token": csrf_of(form), "username": username, "password": password},
        headers={"Origin": origin},
    )
