"""``/v1/factors`` (CONTRACT §4.4): enrol, confirm, list and remove the caller's own factors."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from api_support import Node, bearer
from factor_support import (
    Users,
    challenge,
    enroll_totp,
    own_challenge,
    own_grant,
    totp_code,
    users,
    verify,
    wrong,
)

__all__ = ["users"]  # the fixture, re-exported for pytest


async def test_totp_enrollment(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    started = await alice.post("/v1/factors/totp", json={"label": "work phone"})
    assert started.status_code == 201
    assert started.headers["cache-control"] == "no-store"
    body = started.json()
    assert set(body) == {"id", "secret", "otpauth_uri", "qr_svg", "state"}
    assert body["state"] == "pending" and body["id"].startswith("fct_")
    uri = urlparse(body["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert parse_qs(uri.query)["secret"] == [body["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["piigate"]
    assert body["qr_svg"].startswith("<svg") and "xmlns" in body["qr_svg"]

    row = await node.services.store.get_factor(body["id"])
    assert row is not None and row.secret is not None and body["secret"] not in row.secret

    confirm = f"/v1/factors/totp/{body['id']}/confirm"
    code = totp_code(node, body["secret"])
    refused = await alice.post(confirm, json={"code": wrong(code)})
    assert refused.status_code == 401 and refused.json()["code"] == "factor_rejected"
    confirmed = await alice.post(confirm, json={"code": code})
    assert confirmed.status_code == 200
    assert confirmed.json()["state"] == "active" and confirmed.json()["label"] == "work phone"
    again = await alice.post(confirm, json={"code": code})
    assert again.status_code == 409


async def test_listing_hides_secrets(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    factor_id, secret = await enroll_totp(node, alice)
    grant = await own_grant(node, alice, secret)
    codes = (await alice.post("/v1/factors/recovery", headers={"PIIGate-Grant": grant})).json()
    listed = await alice.get("/v1/factors")
    assert listed.status_code == 200
    factors = listed.json()["factors"]
    assert [(f["id"], f["kind"], f["state"]) for f in factors] == [
        (factor_id, "totp", "active"),
        (codes["id"], "recovery", "active"),
    ]
    assert set(factors[0]) == {"id", "kind", "label", "state", "created_at", "confirmed_at"}
    assert factors[1]["remaining"] == 10
    text = listed.text
    assert secret not in text and "$argon2" not in text and "v1." not in text
    assert not any(code in text for code in codes["codes"])
    # Each user sees only their own.
    bob = await users(node, "bob")
    assert (await bob.get("/v1/factors")).json() == {"factors": []}


async def test_recovery_codes(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    # The first factor may be recovery codes, enrolled with the session alone.
    first = await alice.post("/v1/factors/recovery")
    assert first.status_code == 201 and first.headers["cache-control"] == "no-store"
    codes = first.json()["codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(len(c) == 14 and c.count("-") == 2 for c in codes)
    # From then on, changing factors is a step-up.
    assert (await alice.post("/v1/factors/recovery")).status_code == 401
    granted = await verify(alice, await own_challenge(alice), codes[0], "recovery")
    assert granted.status_code == 200
    second = await alice.post(
        "/v1/factors/recovery", headers={"PIIGate-Grant": granted.json()["grant"]}
    )
    assert second.status_code == 201
    node.clock.advance(1)  # past the back-off of the failure below
    assert (
        await verify(alice, await challenge(node, api_key), codes[1], "recovery")
    ).status_code == 401
    node.clock.advance(1)
    fresh = second.json()["codes"][0]
    assert (
        await verify(alice, await challenge(node, api_key), fresh, "recovery")
    ).status_code == 200


async def test_adding_a_factor_needs_a_fresh_grant(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    refused = await alice.post("/v1/factors/totp")
    assert refused.status_code == 401
    assert refused.json()["code"] == "insufficient_user_authentication"
    assert refused.headers["www-authenticate"] == (
        'Bearer error="insufficient_user_authentication", '
        'acr_values="urn:piigate:aal2", max_age=300'
    )
    grant = await own_grant(node, alice, secret)
    # The grant also travels in the piigate_grant cookie.
    alice.cookies.set("piigate_grant", grant)
    try:
        assert (await alice.post("/v1/factors/totp")).status_code == 201
    finally:
        alice.cookies.delete("piigate_grant")
    garbage = await alice.post("/v1/factors/totp", headers={"PIIGate-Grant": "not-a-grant"})
    assert garbage.status_code == 401 and garbage.json()["code"] == "grant_rejected"


async def test_delete_needs_a_fresh_grant(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    first, secret = await enroll_totp(node, alice)
    without = await alice.delete(f"/v1/factors/{first}")
    assert without.status_code == 401
    assert without.json()["code"] == "insufficient_user_authentication"

    grant = await own_grant(node, alice, secret)
    last = await alice.delete(f"/v1/factors/{first}", headers={"PIIGate-Grant": grant})
    assert last.status_code == 409  # the last active factor (recovery codes aside)

    second, _ = await enroll_totp(node, alice, grant=grant)
    # Another user's grant is no use, nor is the right one once it is stale.
    bob = await users(node, "bob")
    _, bob_secret = await enroll_totp(node, bob)
    bob_grant = await own_grant(node, bob, bob_secret)
    foreign = await alice.delete(f"/v1/factors/{first}", headers={"PIIGate-Grant": bob_grant})
    assert foreign.status_code == 401
    node.clock.advance(300)
    stale = await alice.delete(f"/v1/factors/{first}", headers={"PIIGate-Grant": grant})
    assert stale.status_code == 401

    node.clock.advance(30)
    grant = await own_grant(node, alice, secret)
    deleted = await alice.delete(f"/v1/factors/{first}", headers={"PIIGate-Grant": grant})
    assert deleted.status_code == 204
    listed = (await alice.get("/v1/factors")).json()["factors"]
    assert [f["id"] for f in listed] == [second]
    # Someone else's factor does not exist for you; a pending one goes without a grant.
    assert (await bob.delete(f"/v1/factors/{second}")).status_code == 404
    pending = (await alice.post("/v1/factors/totp", headers={"PIIGate-Grant": grant})).json()
    assert (await alice.delete(f"/v1/factors/{pending['id']}")).status_code == 204
    removed = await node.services.audit.list_events(types=["factor_removed"])
    assert [e.data["factor_id"] for e in removed] == [first, pending["id"]]


async def test_factors_belong_to_users(node: Node, api_key: str) -> None:
    assert (await node.client.get("/v1/factors")).status_code == 401
    as_app = await node.client.get("/v1/factors", headers=bearer(api_key))
    assert as_app.status_code == 403
    assert (await node.client.post("/v1/factors/totp", headers=bearer(api_key))).status_code == 403


async def test_openapi_lists_the_endpoints(node: Node) -> None:
    paths = (await node.client.get("/openapi.json")).json()["paths"]
    assert {"get"} <= set(paths["/v1/factors"])
    assert {"post"} <= set(paths["/v1/factors/totp"])
    assert {"post"} <= set(paths["/v1/factors/totp/{factor_id}/confirm"])
    assert {"post"} <= set(paths["/v1/factors/recovery"])
    assert {"delete"} <= set(paths["/v1/factors/{factor_id}"])
    assert {"post"} <= set(paths["/v1/challenges/{challenge_id}/verify"])
