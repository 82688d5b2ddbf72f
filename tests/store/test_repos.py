from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import IntegrityError

from piigate.errors import Conflict, NotFound
from piigate.store import AlreadyExists, ChallengeRow, Database, Store
from store_support import (
    list_api_keys,
    list_users,
    revoke_api_key,
    set_password_hash,
    set_user_disabled,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def challenge(id: str = "chl_1", **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": id,
        "subject_id": "alice",
        "state": "pending",
        "created_at": T0,
        "expires_at": T0 + timedelta(minutes=5),
        "max_attempts": 5,
        "decision_id": "dec_1",
        "body": {"action": "read", "pii": ["ssn"], "requirement": {"level": "aal2"}},
    }
    row.update(over)
    return row


async def test_challenge_roundtrip(db: Database) -> None:
    store = Store(db)
    await store.insert_challenge(challenge())
    got = await store.get_challenge("chl_1")
    assert got == ChallengeRow(
        id="chl_1",
        subject_id="alice",
        state="pending",
        created_at=T0,
        expires_at=T0 + timedelta(minutes=5),
        attempts=0,
        max_attempts=5,
        body={"action": "read", "pii": ["ssn"], "requirement": {"level": "aal2"}},
        decision_id="dec_1",
    )
    assert got.created_at.tzinfo is not None
    assert await store.get_challenge("nope") is None
    with pytest.raises(ValueError, match="unknown"):
        await store.insert_challenge(challenge("chl_2", colour="red"))


async def test_times_come_back_as_utc_whatever_zone_went_in(db: Database) -> None:
    store = Store(db)
    plus_two = timezone(timedelta(hours=2))
    await store.insert_challenge(
        challenge(created_at=T0.astimezone(plus_two), expires_at=datetime(2026, 1, 1, 12, 5))
    )
    got = await store.get_challenge("chl_1")
    assert got is not None
    assert got.created_at == T0 and got.created_at.utcoffset() == timedelta(0)
    assert got.expires_at == T0 + timedelta(minutes=5)  # naive taken as UTC


async def test_record_attempt_counts_atomically(db: Database) -> None:
    store = Store(db)
    await store.insert_challenge(challenge())
    counts = await asyncio.gather(*(store.record_attempt("chl_1", now=T0) for _ in range(20)))
    assert sorted(counts) == list(range(1, 21))
    got = await store.get_challenge("chl_1")
    assert got is not None and got.attempts == 20 and got.last_attempt_at == T0
    with pytest.raises(NotFound):
        await store.record_attempt("missing", now=T0)


async def test_set_challenge_state_is_compare_and_set(db: Database) -> None:
    store = Store(db)
    await store.insert_challenge(challenge())
    results = await asyncio.gather(
        *(store.set_challenge_state("chl_1", expected="pending", new="approved") for _ in range(10))
    )
    assert results.count(True) == 1
    assert not await store.set_challenge_state("chl_1", expected="pending", new="denied")
    got = await store.get_challenge("chl_1")
    assert got is not None and got.state == "approved"


async def test_consume_grant_once_only_under_concurrency(db: Database) -> None:
    store = Store(db)
    exp = T0 + timedelta(minutes=5)
    results = await asyncio.gather(
        *(store.consume_grant("g1", expires_at=exp, now=T0) for _ in range(30))
    )
    assert results.count(True) == 1
    assert await store.consume_grant("g2", expires_at=T0 + timedelta(minutes=1), now=T0)
    assert await store.purge_used_grants(T0 + timedelta(minutes=2)) == 1  # g2 expired
    assert not await store.consume_grant("g1", expires_at=exp, now=T0)


async def test_users(db: Database) -> None:
    store = Store(db)
    user = await store.add_user("alice", "$argon2id$x", ["support", "admin", "support"], T0)
    assert user.roles == ("admin", "support")
    assert await store.get_user("alice") == user
    with pytest.raises(AlreadyExists) as raised:
        await store.add_user("alice", "$argon2id$y", [], T0)
    assert isinstance(raised.value, Conflict) and raised.value.status == 409
    assert await set_password_hash(db, "alice", "$argon2id$z")
    assert not await set_password_hash(db, "bob", "$argon2id$z")
    got = await store.get_user("alice")
    assert got is not None and got.password_hash == "$argon2id$z" and not got.disabled
    assert await set_user_disabled(db, "alice", True)
    got = await store.get_user("alice")
    assert got is not None and got.disabled
    assert await store.get_user("bob") is None
    assert [u.username for u in await list_users(db)] == ["alice"]


async def test_sessions(db: Database) -> None:
    store = Store(db)
    created = await store.create_session(
        "h" * 64, "alice", "aal1", ["pwd"], T0, T0 + timedelta(hours=1), T0
    )
    assert await store.get_session("h" * 64, T0 + timedelta(minutes=59)) == created
    assert created.amr == ("pwd",)
    assert await store.get_session("h" * 64, T0 + timedelta(hours=1)) is None
    assert await store.get_session("x" * 64, T0) is None
    assert await store.delete_session("h" * 64)
    assert await store.get_session("h" * 64, T0) is None
    assert not await store.delete_session("h" * 64)


async def test_errors_do_not_carry_bound_values(db: Database) -> None:
    store = Store(db)
    args = ("s" * 64, "alice", None, [], T0, T0 + timedelta(hours=1), T0)
    await store.create_session(*args)
    with pytest.raises(IntegrityError) as raised:
        await store.create_session(*args)
    assert "s" * 64 not in str(raised.value)


async def test_api_keys(db: Database) -> None:
    store = Store(db)
    key_hash = bytes(range(32))
    row = await store.create_api_key("key_1", "billing", key_hash, ["app"], ["decisions"], T0)
    assert await store.find_api_key(key_hash) == row
    assert row.scopes == ("decisions",)
    assert "000102" not in repr(row)
    with pytest.raises(AlreadyExists):
        await store.create_api_key("key_2", "billing", bytes(32), [], [], T0)
    await store.create_api_key("key_3", "audit", bytes(32), [], [], T0)
    assert [k.name for k in await list_api_keys(db)] == ["audit", "billing"]
    assert await revoke_api_key(db, "billing", now=T0)
    assert not await revoke_api_key(db, "billing", now=T0)
    assert await store.find_api_key(key_hash) is None
    revoked = {k.name: k.revoked_at for k in await list_api_keys(db)}
    assert revoked == {"audit": None, "billing": T0}
