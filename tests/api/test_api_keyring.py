"""One keyring for the deployment (SQLite and PostgreSQL): nodes with their own data directories
and the same master key share the store's keys, learn each other's rotations without a restart,
refuse to start with another master key, and treat a factor they cannot decrypt as their own
fault (503), never as a failure of the factor."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import structlog
from api_support import PROBLEM, T0, Node, StartNode, decision_body, same_origin
from factor_support import (
    Users,
    challenge,
    enroll_totp,
    factor_policy,
    own_challenge,
    totp_code,
    users,
    verify,
)
from joserfc import jwt
from sqlalchemy import text

from piigate.crypto.keyfile import encode_key_file
from piigate.crypto.keyring import Keyring, KeyringError
from piigate.crypto.keyset import fresh_key_set
from piigate.crypto.secret import Secret
from piigate.factors.ports import factor_aad
from piigate.factors.totp.protocol import new_totp_secret
from piigate.store import Database, Store

__all__ = ["users"]  # the fixture, re-exported for pytest

MASTER = Secret(base64.b64encode(b"m" * 32).decode())
OTHER_MASTER = Secret(base64.b64encode(b"o" * 32).decode())


@dataclass
class Pair:
    a: Node
    b: Node


@pytest.fixture
async def pair(start_node: StartNode, tmp_path: Path) -> Pair:
    """Two nodes on one store, each with its own data directory, both given the master key."""
    policy = factor_policy()
    a = await start_node(policy=policy, data_dir=tmp_path / "a", master_key=MASTER)
    b = await start_node(policy=policy, data_dir=tmp_path / "b", master_key=MASTER, clock=a.clock)
    return Pair(a, b)


async def grant_on(node: Node, client: httpx.AsyncClient, key: str, secret: str) -> str:
    """A grant for reading alice's SSN, stepped up with TOTP on ``node``."""
    node.clock.advance(30)  # a fresh TOTP step
    response = await verify(client, await challenge(node, key, "read"), totp_code(node, secret))
    assert response.status_code == 200, response.text
    token: str = response.json()["grant"]
    return token


async def outcome(node: Node, key: str, grant: str) -> str:
    response = await node.decide(key, decision_body("read", ["ssn"], grants=[grant]))
    assert response.status_code == 200, response.text
    result: str = response.json()["outcome"]
    return result


async def test_a_grant_from_one_node_is_accepted_by_the_other(pair: Pair, users: Users) -> None:
    _, key = await pair.a.api_key("app")
    alice = await users(pair.a, "alice")
    _, secret = await enroll_totp(pair.a, alice)

    grant = await grant_on(pair.a, alice, key, secret)

    assert await outcome(pair.b, key, grant) == "allow"


async def test_a_rotation_on_one_node_is_seen_by_the_other_without_a_restart(
    pair: Pair,
    users: Users,
) -> None:
    _, key = await pair.a.api_key("app")
    alice = await users(pair.a, "alice")
    keys_a, keys_b = pair.a.services.keyring, pair.b.services.keyring

    signing, data = await keys_a.rotate_signing_key(), await keys_a.rotate_data_key()
    assert keys_b.verify_key(signing) is None  # b has not heard of it yet

    # A factor sealed after the rotation, on a: b reads it; a grant signed with the new key: b
    # verifies it.
    factor_id, secret = await enroll_totp(pair.a, alice)
    row = await pair.a.services.store.get_factor(factor_id)
    assert row is not None and row.secret is not None and f".{data}." in row.secret
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pair.b.app),
        base_url="http://t",
        cookies=alice.cookies,
        headers=same_origin(pair.b.settings),
    ) as alice_on_b:
        grant_b = await grant_on(pair.b, alice_on_b, key, secret)
    grant_a = await grant_on(pair.a, alice, key, secret)
    assert json.loads(base64.urlsafe_b64decode(grant_a.split(".")[0] + "=="))["kid"] == signing

    assert await outcome(pair.b, key, grant_a) == "allow"
    assert (keys_b.signing_kid, keys_b.data_kid) == (signing, data)
    assert await outcome(pair.a, key, grant_b) == "allow"


async def test_a_grant_signed_by_an_unknown_key_is_logged_without_the_token(
    node: Node, api_key: str
) -> None:
    forged = jwt.encode(
        {"alg": "ES256", "typ": "piigate-grant+jwt", "kid": "sig-forged"},
        {"sub": "alice"},
        Keyring.ephemeral().sign_key(),
    )
    with structlog.testing.capture_logs() as logs:
        response = await node.decide(api_key, decision_body("update", ["ssn"], grants=[forged]))
    assert response.json()["outcome"] == "step_up"
    [warning] = [e for e in logs if e["event"] == "grant_key_unknown"]
    assert warning["log_level"] == "warning"
    assert (warning["kid"], warning["reason"]) == ("sig-forged", "unknown_key")
    assert forged not in str(logs) and forged.split(".")[2] not in str(logs)
    [event] = await node.services.audit.list_events(types=["decision"])
    assert event.data["rejected_grants"] == ["unknown_key"]


# -- refusing to start, and /readyz ---------------------------------------------------------


async def test_a_node_with_another_master_key_refuses_to_start(
    start_node: StartNode, tmp_path: Path
) -> None:
    await start_node(data_dir=tmp_path / "a", master_key=MASTER)
    with pytest.raises(KeyringError) as info:
        await start_node(data_dir=tmp_path / "b", master_key=OTHER_MASTER)
    assert "sealed by master key mk-" in info.value.detail
    assert OTHER_MASTER.reveal() not in info.value.detail


async def test_readyz_says_when_the_stores_keys_can_no_longer_be_opened(node: Node) -> None:
    keyring = node.services.keyring
    async with node.services.db.begin(immediate=True) as conn:
        kid, sealed = (await conn.execute(text("SELECT kid, sealed FROM keyring_keys"))).first()  # type: ignore[misc]
        damaged = sealed[:-8] + "AAAAAAAA"
        await conn.execute(
            text("UPDATE keyring_keys SET sealed = :s WHERE kid = :k"), {"s": damaged, "k": kid}
        )
    await keyring.refresh()

    ready = await node.client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["content-type"].startswith(PROBLEM)
    assert f"keys unreadable: the store's key {kid} cannot be opened" in ready.json()["detail"]
    assert sealed not in ready.text

    async with node.services.db.begin() as conn:
        await conn.execute(
            text("UPDATE keyring_keys SET sealed = :s WHERE kid = :k"), {"s": sealed, "k": kid}
        )
    await keyring.refresh()
    assert (await node.client.get("/readyz")).status_code == 200


# -- a factor the keyring cannot open -------------------------------------------------------


async def test_an_undecryptable_factor_is_a_503_and_its_failures_do_not_move(
    start_node: StartNode,
    users: Users,
) -> None:
    node = await start_node(policy=factor_policy())
    _, key = await node.api_key("app")
    alice = await users(node, "alice")
    factor_id, secret = await enroll_totp(node, alice)
    store = node.services.store
    row = await store.get_factor(factor_id)
    assert row is not None and row.secret is not None
    # The secret as a node with its own keyring would have sealed it.
    foreign = Keyring.ephemeral().encrypt(secret.encode(), aad=factor_aad(factor_id))
    assert await store.replace_factor_secret(factor_id, expected=row.secret, new=foreign)
    chl = await challenge(node, key, "read")

    for _ in range(3):
        response = await verify(alice, chl, totp_code(node, secret))
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["code"] == "factor_unreadable"
        assert secret not in response.text and foreign not in response.text

    after = await store.get_factor(factor_id)
    assert after is not None and (after.failures, after.last_failure_at) == (0, None)
    failed = await node.services.audit.list_events(types=["verification_failed"])
    assert failed == []


# -- a deployment of an earlier version -----------------------------------------------------


async def test_an_existing_file_keyring_moves_into_the_store_and_its_secrets_stay_readable(
    start_node: StartNode,
    migrated_url: str,
    tmp_path: Path,
    users: Users,
) -> None:
    # What an earlier version left: DATA_DIR/keyring/keyring.json, and a factor sealed with it.
    data_dir = tmp_path / "old-node"
    (data_dir / "keyring").mkdir(parents=True)
    legacy = fresh_key_set(T0 - timedelta(days=30))
    (data_dir / "keyring" / "keyring.json").write_bytes(encode_key_file(legacy))
    sealer = Keyring(legacy)
    secret = new_totp_secret()
    db = Database.open(migrated_url)
    try:
        await db.upgrade()
        await Store(db).add_factor(
            id="fct_old",
            subject_id="alice",
            kind="totp",
            now=T0 - timedelta(days=30),
            secret=sealer.encrypt(secret.reveal().encode(), aad=factor_aad("fct_old")),
            state="active",
        )
    finally:
        await db.close()

    node = await start_node(policy=factor_policy(), data_dir=data_dir)

    [imported] = await node.services.audit.list_events(types=["keyring_imported"])
    assert set(imported.data["kids"]) == {legacy.signing_kid, legacy.data_kid}
    assert node.services.keyring.data_kid == legacy.data_kid
    _, key = await node.api_key("app")
    alice = await users(node, "alice")
    response = await verify(
        alice, await challenge(node, key, "read"), totp_code(node, secret.reveal())
    )
    assert response.status_code == 200, response.text


async def test_a_persons_own_grant_signed_after_a_rotation_works_on_the_other_node(
    pair: Pair, users: Users
) -> None:
    alice = await users(pair.a, "alice")
    _, secret = await enroll_totp(pair.a, alice)
    signing = await pair.a.services.keyring.rotate_signing_key()
    # b has not heard of it yet (asked without starting a reload, as verify_key would)
    assert signing not in {k["kid"] for k in pair.b.services.keyring.jwks()["keys"]}
    # Signed on a with the new key, and used at once (no time passes for b to reload).
    verified = await verify(alice, await own_challenge(alice), totp_code(pair.a, secret))
    assert verified.status_code == 200, verified.text
    grant = verified.json()["grant"]

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pair.b.app),
        base_url="http://t",
        cookies=alice.cookies,
        headers=same_origin(pair.b.settings),
    ) as alice_on_b:
        # Changing factors on b with it: b learns the key first, instead of refusing once.
        added = await alice_on_b.post("/v1/factors/recovery", headers={"PIIGate-Grant": grant})

    assert added.status_code == 201, added.text
    assert pair.b.services.keyring.verify_key(signing) is not None
