"""Fail closed (CONTRACT §5.1): a dead store or a missing policy never yields an allow; a bad
policy reload keeps the old policy in force (§2)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import psycopg
from api_support import EXAMPLE_POLICY, PROBLEM, Node, StartNode, decision_body
from sqlalchemy import make_url

from piigate.policy.holder import PolicyHolder


async def break_store(node: Node, database_url: str) -> None:
    """Make the node's database really unreachable, whatever the backend."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        admin = url.set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')
        return
    # SQLite: put a directory where the file was, so every new connection fails to open it,
    # then close the pooled connections (the async engine's and the units of work's). In this
    # order: a background read (the alert desk catching up) that starts while close() awaits
    # would otherwise open a connection to the old file and pool it, and later writes would
    # commit there.
    _replace_with_directory(Path(str(url.database)))
    await node.services.db.close()


def _replace_with_directory(path: Path) -> None:
    moved = path.with_name("moved")
    moved.mkdir()
    for sibling in path.parent.glob(path.name + "*"):
        shutil.move(sibling, moved / sibling.name)
    path.mkdir()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "allow" not in response.text


async def test_store_outage_fails_closed(start_node: StartNode, migrated_url: str) -> None:
    node = await start_node()
    _, warm_key = await node.api_key("warm")
    _, cold_key = await node.api_key("cold")
    assert (await node.decide(warm_key, decision_body("read", ["phone"]))).status_code == 200
    assert (await node.client.get("/readyz")).status_code == 200

    await break_store(node, migrated_url)

    ready = await node.client.get("/readyz")
    assert_unavailable(ready)
    assert "store unreachable" in ready.text
    # The key is cached, so the request gets as far as the engine: the decision that would be
    # an allow cannot be audited, and is not returned.
    assert_unavailable(await node.decide(warm_key, decision_body("read", ["phone"])))
    assert_unavailable(await node.decide(warm_key, decision_body("read", ["ssn"])))
    assert_unavailable(await node.decide(warm_key, decision_body("update", ["ssn"])))
    # A key the node has not seen yet cannot be checked: 503, not 401.
    assert_unavailable(await node.decide(cold_key, decision_body("read", ["phone"])))
    # Liveness does not depend on the store.
    assert (await node.client.get("/healthz")).status_code == 200


async def test_no_policy_never_allows(start_node: StartNode) -> None:
    node = await start_node(policy=PolicyHolder())
    _, key = await node.api_key()
    for action, pii in (("read", ["phone"]), ("read", []), ("update", ["ssn"])):
        response = await node.decide(key, decision_body(action, pii))
        assert response.status_code in (503, 200), response.text
        if response.status_code == 200:
            assert response.json()["outcome"] == "deny"
        else:
            assert response.headers["content-type"].startswith(PROBLEM)
    ready = await node.client.get("/readyz")
    assert ready.status_code == 503 and "no policy loaded" in ready.text
    assert "piigate_policy_loaded 0.0" in (await node.client.get("/metrics")).text


CHANGED_RULE = """
  - name: read-phone
    when: {pii: [phone], action: [read]}
    require: {level: aal2, max_age: 10m}
"""


async def test_policy_reload(start_node: StartNode, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    original = EXAMPLE_POLICY.read_text()
    policy_file.write_text(original)
    node = await start_node(policy_path=str(policy_file))
    _, key = await node.api_key()
    services = node.services
    digest = (await node.client.get("/readyz")).json()["policy"]
    assert (await node.decide(key, decision_body("read", ["phone"]))).json()["outcome"] == "allow"

    policy_file.write_text(original.replace("rules:", "rules: [\n", 1))
    assert await services.reload_policy() is False
    assert (await node.decide(key, decision_body("read", ["phone"]))).json()["outcome"] == "allow"
    assert (await node.decide(key, decision_body("update", ["ssn"]))).json()["outcome"] == "step_up"
    assert (await node.client.get("/readyz")).json()["policy"] == digest
    rejected = await services.audit.list_events(types=["policy_rejected"])
    assert rejected and rejected[0].data["kept"] == digest
    assert str(policy_file) in str(rejected[0].data["errors"])
    metrics = (await node.client.get("/metrics")).text
    assert re.search(r"^piigate_policy_reload_failures_total [1-9]", metrics, re.MULTILINE)

    # A policy that parses but breaks a rule of the language is refused the same way.
    policy_file.write_text(original.replace("level: aal2, max_age: 15m", "level: aal9"))
    assert await services.reload_policy() is False
    assert (await node.decide(key, decision_body("update", ["mailing_address"]))).json()[
        "outcome"
    ] == "step_up"

    policy_file.write_text(original.replace("rules:", "rules:" + CHANGED_RULE, 1))
    assert await services.reload_policy() is True
    response = (await node.decide(key, decision_body("read", ["phone"]))).json()
    assert response["outcome"] == "step_up"
    assert response["rules"] == ["read-phone"]
    assert response["required"]["max_age"] == 600
    assert (await node.client.get("/readyz")).json()["policy"] != digest
    loaded = await services.audit.list_events(types=["policy_loaded"])
    assert loaded and loaded[-1].data["policy"] != digest
