from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import exc

from piigate.errors import NotFound
from piigate.factors import FactorState
from piigate.model import Method
from piigate.store import AlreadyExists, Database, FactorRow, Store
from piigate.store.factors import FACTOR_STATES
from store_support import set_factor_state

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CIPHERTEXT = "v1.dek-0011223344556677.bm90LXJlYWxseS1lbmNyeXB0ZWQ"


async def add_totp(store: Store, id: str = "fct_1", **over: object) -> FactorRow:
    values: dict[str, object] = {
        "id": id,
        "subject_id": "alice",
        "kind": "totp",
        "now": T0,
        "label": "phone",
        "secret": CIPHERTEXT,
        "data": {"digits": 6, "period": 30, "algorithm": "sha1"},
    }
    values.update(over)
    return await store.add_factor(**values)  # type: ignore[arg-type]


def test_states_match_the_domain_enum() -> None:
    assert {s.value for s in FactorState} == FACTOR_STATES


async def test_roundtrip(db: Database) -> None:
    store = Store(db)
    added = await add_totp(store)
    got = await store.get_factor("fct_1")
    assert (
        got
        == added
        == FactorRow(
            id="fct_1",
            subject_id="alice",
            kind="totp",
            label="phone",
            state="pending",
            created_at=T0,
            secret=CIPHERTEXT,
            data={"digits": 6, "period": 30, "algorithm": "sha1"},
        )
    )
    assert got.created_at.tzinfo is not None
    assert got.last_step is None and got.failures == 0 and got.confirmed_at is None
    # The (encrypted) secret is stored as given and kept out of reprs.
    assert CIPHERTEXT not in repr(got)
    assert await store.get_factor("fct_missing") is None


async def test_duplicate_ids_are_refused(db: Database) -> None:
    store = Store(db)
    await add_totp(store)
    with pytest.raises(exc.IntegrityError):
        await add_totp(store)


async def test_unknown_states_are_refused(db: Database) -> None:
    store = Store(db)
    with pytest.raises(ValueError, match="state"):
        await add_totp(store, state="enabled")
    with pytest.raises(ValueError):
        await set_factor_state(db, "fct_1", expected="active", new="gone")


async def test_recovery_factor_without_secret(db: Database) -> None:
    store = Store(db)
    hashes = ["$argon2id$a", "$argon2id$b", None]
    row = await store.add_factor(
        id="fct_r",
        subject_id="alice",
        kind=Method.RECOVERY,
        now=T0,
        state=FactorState.ACTIVE,
        data={"hashes": hashes},
    )
    assert row.confirmed_at == T0  # created active
    got = await store.get_factor("fct_r")
    assert got is not None
    assert got.secret is None and got.kind == "recovery" and got.state == "active"
    assert got.data == {"hashes": hashes} and got.label == ""


async def test_list_and_filter(db: Database) -> None:
    store = Store(db)
    await add_totp(store, "fct_a", now=T0)
    await add_totp(store, "fct_b", now=T0 + timedelta(seconds=1), state="active")
    await add_totp(store, "fct_c", now=T0 + timedelta(seconds=2), kind="recovery", secret=None)
    await add_totp(store, "fct_d", now=T0 + timedelta(seconds=3), state="disabled")
    await add_totp(store, "fct_x", subject_id="bob")

    async def ids(**filters: object) -> list[str]:
        rows = await store.list_factors("alice", **filters)  # type: ignore[arg-type]
        return [r.id for r in rows]

    assert await ids() == ["fct_a", "fct_b", "fct_c", "fct_d"]
    assert await ids(kinds=["totp"]) == ["fct_a", "fct_b", "fct_d"]
    assert await ids(kinds=[Method.RECOVERY]) == ["fct_c"]
    assert await ids(states=["active", "pending"]) == ["fct_a", "fct_b", "fct_c"]
    assert await ids(kinds=["totp"], states=[FactorState.ACTIVE]) == ["fct_b"]
    assert await ids(kinds=[]) == []
    assert await store.list_factors("nobody") == []


async def test_activation_is_compare_and_set(db: Database) -> None:
    store = Store(db)
    await add_totp(store)
    confirmed = T0 + timedelta(minutes=1)
    results = await asyncio.gather(
        *(store.activate_factor("fct_1", now=confirmed) for _ in range(10))
    )
    assert results.count(True) == 1
    got = await store.get_factor("fct_1")
    assert got is not None and got.state == "active" and got.confirmed_at == confirmed
    assert await store.activate_factor("fct_1", now=confirmed) is False
    assert await store.activate_factor("fct_missing", now=confirmed) is False


async def test_state_changes_are_compare_and_set(db: Database) -> None:
    store = Store(db)
    await add_totp(store, state="active")
    assert await set_factor_state(db, "fct_1", expected="pending", new="disabled") is False
    assert await set_factor_state(db, "fct_1", expected="active", new="disabled") is True
    got = await store.get_factor("fct_1")
    assert got is not None and got.state == "disabled"
    # A disabled factor cannot be "activated" again through the confirmation path.
    assert await store.activate_factor("fct_1", now=T0) is False


async def test_advance_totp_step(db: Database) -> None:
    store = Store(db)
    await add_totp(store)
    assert await store.advance_totp_step("fct_1", expected=None, new=100) is True
    assert await store.advance_totp_step("fct_1", expected=None, new=101) is False  # stale
    assert await store.advance_totp_step("fct_1", expected=99, new=101) is False  # stale
    assert await store.advance_totp_step("fct_1", expected=100, new=100) is False  # not newer
    assert await store.advance_totp_step("fct_1", expected=100, new=99) is False  # older
    assert await store.advance_totp_step("fct_1", expected=100, new=101) is True
    got = await store.get_factor("fct_1")
    assert got is not None and got.last_step == 101
    assert await store.advance_totp_step("fct_missing", expected=None, new=1) is False


async def test_advance_totp_step_holds_big_steps(db: Database) -> None:
    # RFC 6238 §4.2: T must not stop at 2^31 (the year 2038 for 1-second steps, sooner for
    # custom epochs); the column is a BIGINT.
    store = Store(db)
    await add_totp(store)
    big = 2**40
    assert await store.advance_totp_step("fct_1", expected=None, new=big) is True
    assert await store.advance_totp_step("fct_1", expected=big, new=big + 1) is True
    got = await store.get_factor("fct_1")
    assert got is not None and got.last_step == big + 1


@pytest.mark.parametrize("expected", [None, 57])
async def test_concurrent_advances_have_one_winner(db: Database, expected: int | None) -> None:
    store = Store(db)
    await add_totp(store)
    if expected is not None:
        assert await store.advance_totp_step("fct_1", expected=None, new=expected)
    # Twenty nodes accept the same fresh code at once: one may save it, the rest saw a replay.
    new = 58 if expected is not None else 1
    results = await asyncio.gather(
        *(store.advance_totp_step("fct_1", expected=expected, new=new) for _ in range(20))
    )
    assert results.count(True) == 1
    got = await store.get_factor("fct_1")
    assert got is not None and got.last_step == new


async def test_concurrent_advances_on_separate_connections(database_url: str) -> None:
    # Separate engines, as separate nodes have: the CAS must hold across them too.
    dbs = [Database.open(database_url) for _ in range(4)]
    try:
        await dbs[0].upgrade()
        stores = [Store(d) for d in dbs]
        await add_totp(stores[0])
        results = await asyncio.gather(
            *(
                stores[i % 4].advance_totp_step("fct_1", expected=None, new=7 + (i % 3))
                for i in range(20)
            )
        )
        assert results.count(True) == 1
    finally:
        for d in dbs:
            await d.close()


async def test_failures_are_counted_atomically(db: Database) -> None:
    store = Store(db)
    await add_totp(store)
    at = T0 + timedelta(minutes=3)
    counts = await asyncio.gather(
        *(store.record_factor_failure("fct_1", now=at) for _ in range(50))
    )
    assert sorted(counts) == list(range(1, 51))
    got = await store.get_factor("fct_1")
    assert got is not None and got.failures == 50 and got.last_failure_at == at
    with pytest.raises(NotFound):
        await store.record_factor_failure("fct_missing", now=at)


async def test_reset_failures(db: Database) -> None:
    store = Store(db)
    await add_totp(store)
    await store.record_factor_failure("fct_1", now=T0)
    await store.record_factor_failure("fct_1", now=T0)
    assert await store.reset_factor_failures("fct_1") is True
    got = await store.get_factor("fct_1")
    assert got is not None and got.failures == 0 and got.last_failure_at is None
    assert await store.record_factor_failure("fct_1", now=T0) == 1
    assert await store.reset_factor_failures("fct_missing") is False


async def test_replace_factor_data_is_compare_and_set(db: Database) -> None:
    store = Store(db)
    hashes: list[str | None] = ["h0", "h1", "h2"]
    await store.add_factor(
        id="fct_r", subject_id="alice", kind="recovery", now=T0, data={"hashes": hashes}
    )
    before = {"hashes": hashes}
    spend_1 = {"hashes": ["h0", None, "h2"]}
    spend_2 = {"hashes": ["h0", "h1", None]}
    # Two requests spend different codes from the same snapshot: one wins, the other re-reads.
    results = await asyncio.gather(
        store.replace_factor_data("fct_r", expected_data=before, new_data=spend_1),
        store.replace_factor_data("fct_r", expected_data=before, new_data=spend_2),
    )
    assert sorted(results) == [False, True]
    got = await store.get_factor("fct_r")
    assert got is not None
    winner = spend_1 if results[0] else spend_2
    assert got.data == winner
    # The loser retries from what is stored now.
    assert await store.replace_factor_data(
        "fct_r", expected_data=got.data, new_data={"hashes": ["h0", None, None]}
    )
    got = await store.get_factor("fct_r")
    assert got is not None and got.data == {"hashes": ["h0", None, None]}
    assert not await store.replace_factor_data("fct_missing", expected_data={}, new_data={})


async def test_the_same_code_is_spent_once_under_concurrency(db: Database) -> None:
    store = Store(db)
    data = {"hashes": ["h0", "h1"]}
    await store.add_factor(id="fct_r", subject_id="alice", kind="recovery", now=T0, data=data)
    results = await asyncio.gather(
        *(
            store.replace_factor_data(
                "fct_r", expected_data=data, new_data={"hashes": [None, "h1"]}
            )
            for _ in range(20)
        )
    )
    assert results.count(True) == 1


async def test_delete_factor(db: Database) -> None:
    store = Store(db)
    await add_totp(store)
    assert await store.delete_factor("fct_1") is True
    assert await store.get_factor("fct_1") is None
    assert await store.delete_factor("fct_1") is False


async def test_a_credential_id_belongs_to_one_factor_of_any_subject(db: Database) -> None:
    store = Store(db)
    webauthn = {"kind": "webauthn", "secret": None, "data": {"credential_id": "Y3JlZA"}}
    await add_totp(store, "fct_a", **webauthn, credential_id="Y3JlZA")
    with pytest.raises(AlreadyExists):
        await add_totp(store, "fct_b", subject_id="bob", **webauthn, credential_id="Y3JlZA")
    with pytest.raises(AlreadyExists):
        await add_totp(store, "fct_c", **webauthn, credential_id="Y3JlZA")
    # Factors without a credential id never collide.
    await add_totp(store, "fct_d")
    await add_totp(store, "fct_e", subject_id="bob")
    assert [f.id for f in await store.list_factors("bob")] == ["fct_e"]


async def test_the_migration_moves_existing_credential_ids_into_the_column(db: Database) -> None:
    from alembic import command
    from sqlalchemy import insert, select, text

    from piigate.store.db import alembic_config
    from piigate.store.tables import factors

    async with db.begin(immediate=True) as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0003"))
    rows = [
        ("fct_old", "alice", "webauthn", {"credential_id": "c2FtZQ"}, T0),
        ("fct_dup", "bob", "webauthn", {"credential_id": "c2FtZQ"}, T0 + timedelta(days=1)),
        ("fct_own", "bob", "webauthn", {"credential_id": "b3du"}, T0),
        ("fct_totp", "bob", "totp", {"digits": 6}, T0),
    ]
    async with db.begin() as conn:
        for id, subject, kind, data, at in rows:
            await conn.execute(
                text(
                    "INSERT INTO factors (id, subject_id, kind, label, state, failures, "
                    "created_at, data) VALUES (:id, :s, :k, '', 'active', 0, :at, :data)"
                ),
                {"id": id, "s": subject, "k": kind, "at": at, "data": json.dumps(data)},
            )
    await db.upgrade()
    async with db.connect() as conn:
        found = dict((await conn.execute(select(factors.c.id, factors.c.credential_id))).all())
    # The oldest registration keeps a duplicated credential; the later one still works for
    # its subject (the data is untouched) but no longer blocks a registration.
    assert found == {"fct_old": "c2FtZQ", "fct_dup": None, "fct_own": "b3du", "fct_totp": None}
    async with db.begin() as conn:
        with pytest.raises(exc.IntegrityError):
            await conn.execute(
                insert(factors).values(
                    id="fct_new",
                    subject_id="carol",
                    kind="webauthn",
                    label="",
                    state="active",
                    failures=0,
                    created_at=T0,
                    data={},
                    credential_id="b3du",
                )
            )
