"""The security team's live pages are the security team's: signed-out browsers are sent to sign
in (and back), people without the ``admin`` or ``security`` role are refused, the feed too."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from api_support import Node
from security_support import sign_in_as

PAGES = [
    "/security",
    "/security?type=decision&outcome=deny",
    "/security/feed",
    "/security/subjects",
    "/security/subjects?window=7d",
    "/security/subjects/alice",
    "/security/subjects/alice?before=10",
]


@pytest.mark.parametrize("path", PAGES)
async def test_a_signed_out_browser_is_sent_to_sign_in(node: Node, path: str) -> None:
    answer = await node.client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next={quote(path, safe='')}"


async def test_people_without_a_security_role_are_refused_every_page(node: Node) -> None:
    await sign_in_as(node, "ann", roles=())
    for path in PAGES:
        answer = await node.client.get(path)
        assert answer.status_code == 403, path
        assert "Not allowed" in answer.text
        assert "text/event-stream" not in answer.headers["content-type"]


@pytest.mark.parametrize("role", ["admin", "security"])
async def test_the_security_roles_open_the_pages(node: Node, role: str) -> None:
    await sign_in_as(node, "sec", roles=(role,))
    for path in PAGES:
        if path.startswith("/security/feed"):
            continue  # a stream: tests/console/test_security_live.py reads it
        answer = await node.client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["cache-control"] == "no-store"
        assert "unsafe-inline" not in answer.headers["content-security-policy"]
        assert " style=" not in answer.text and "<script>" not in answer.text
