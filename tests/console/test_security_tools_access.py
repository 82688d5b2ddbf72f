"""Who may open the approvals, policy and audit pages, and the CSRF token every one of their
forms must carry."""

from __future__ import annotations

import pytest
from api_support import Node
from console_support import csrf_of, sign_in

PASSWORD = "correct horse battery staple"
PAGES = ["/security/approvals", "/security/policy", "/security/audit"]
FORMS = [
    ("/security/approvals", "/security/approvals/chl_x", {"decision": "approve"}),
    ("/security/policy", "/security/policy/simulate", {"subject_id": "ann", "action": "read"}),
    ("/security/audit", "/security/audit/verify", {"verify": "1"}),
]


@pytest.mark.parametrize("path", [*PAGES, "/security/audit/progress"])
async def test_signed_out_the_pages_send_to_sign_in(node: Node, path: str) -> None:
    answer = await node.client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=%2Fsecurity%2F")


async def test_people_without_a_security_role_get_403_on_every_page_and_form(
    node: Node,
) -> None:
    await node.user("dave", PASSWORD, ["support", "agent"])
    assert (await sign_in(node, "dave", PASSWORD)).status_code == 303
    token = csrf_of(await node.client.get("/security/policy"))  # the sign-out form's
    for path in [*PAGES, "/security/audit/progress"]:
        answer = await node.client.get(path)
        assert answer.status_code == 403, path
        assert "Not allowed" in answer.text
    for _, action, fields in FORMS:
        answer = await node.client.post(action, data={"csrf_token": token, **fields})
        assert answer.status_code == 403, action
        assert "Not allowed" in answer.text
    # Nothing ran: no verification was recorded.
    assert await node.services.audit.list_events(types=["audit_verified"]) == []


@pytest.mark.parametrize(("page", "action", "fields"), FORMS)
async def test_every_form_is_refused_without_its_token(
    node: Node, page: str, action: str, fields: dict[str, str]
) -> None:
    await node.user("bob", PASSWORD, ["security"])
    await sign_in(node, "bob", PASSWORD)
    shown = await node.client.get(page)
    assert shown.status_code == 200
    assert 'name="csrf_token"' in shown.text
    missing = await node.client.post(action, data=fields)
    assert missing.status_code == 403
    assert missing.json()["code"] == "csrf_rejected"
    forged = await node.client.post(action, data={"csrf_token": "k.deadbeef", **fields})
    assert forged.status_code == 403
    assert forged.json()["code"] == "csrf_rejected"
    assert await node.services.audit.list_events(types=["audit_verified"]) == []


async def test_a_token_from_before_sign_in_is_refused(node: Node) -> None:
    await node.user("bob", PASSWORD, ["security"])
    stale = csrf_of(await node.client.get("/login"))  # a form rendered before the session
    await sign_in(node, "bob", PASSWORD)
    answer = await node.client.post("/security/audit/verify", data={"csrf_token": stale})
    assert answer.status_code == 403
    assert answer.json()["code"] == "csrf_rejected"


async def test_the_pages_load_no_inline_script_or_style(node: Node) -> None:
    await node.user("bob", PASSWORD, ["admin"])
    await sign_in(node, "bob", PASSWORD)
    for path in PAGES:
        answer = await node.client.get(path)
        assert answer.status_code == 200, path
        assert "<script>" not in answer.text and "style=" not in answer.text
        assert " on" + "click=" not in answer.text
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-store"
