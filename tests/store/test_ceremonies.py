"""Ceremonies: opened once, closed once (compare-and-set), counted and purged; both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from piigate.store import Database, Store
from store_support import is_open

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def open_one(store: Store, id: str, **kw: object) -> None:
    values: dict[str, object] = {
        "subject_id": "alice",
        "purpose": "sms_code",
        "now": T0,
        "expires_at": T0 + timedelta(minutes=5),
        **kw,
    }
    await store.open_ceremony(id=id, **values)  # type: ignore[arg-type]


async def test_open_read_and_list(db: Database) -> None:
    store = Store(db)
    await open_one(
        store, "cer_1", challenge_id="chl_1", factor_id="fct_1", secret="v1.x", data={"n": 1}
    )
    await open_one(store, "cer_2", purpose="push", now=T0 + timedelta(seconds=1))
    row = await store.get_ceremony("cer_1")
    assert row is not None and row.state == "open" and row.data == {"n": 1}
    assert row.secret == "v1.x" and "v1.x" not in repr(row)
    assert is_open(row, T0) and not is_open(row, T0 + timedelta(minutes=5))
    assert await store.get_ceremony("cer_missing") is None
    assert [r.id for r in await store.list_ceremonies(subject_id="alice")] == ["cer_1", "cer_2"]
    assert [r.id for r in await store.list_ceremonies(challenge_id="chl_1")] == ["cer_1"]
    assert [r.id for r in await store.list_ceremonies(purposes=["push"])] == ["cer_2"]
    assert await store.count_ceremonies(since=T0, subject_id="alice") == 2
    assert await store.count_ceremonies(since=T0 + timedelta(seconds=1)) == 1
    assert await store.count_ceremonies(since=T0, purposes=["sms_code"], states=["used"]) == 0


async def test_a_ceremony_closes_once_under_parallel_answers(db: Database) -> None:
    store = Store(db)
    await open_one(store, "cer_1")
    wins = await asyncio.gather(
        *(store.close_ceremony("cer_1", new="used", now=T0) for _ in range(10))
    )
    assert wins.count(True) == 1
    assert not await store.close_ceremony("cer_1", new="denied", now=T0)
    row = await store.get_ceremony("cer_1")
    assert row is not None and row.state == "used" and row.closed_at == T0
    with pytest.raises(ValueError, match="unknown ceremony state"):
        await store.close_ceremony("cer_1", new="finished", now=T0)


async def test_closing_can_record_the_answer(db: Database) -> None:
    store = Store(db)
    await open_one(store, "cer_1", data={"number": "x"})
    assert await store.close_ceremony("cer_1", new="denied", now=T0, data={"by": "dev_1"})
    row = await store.get_ceremony("cer_1")
    assert row is not None and row.data == {"by": "dev_1"}


async def test_a_resend_voids_the_open_codes_of_its_challenge_only(db: Database) -> None:
    store = Store(db)
    await open_one(store, "cer_1", challenge_id="chl_1")
    await open_one(store, "cer_2", challenge_id="chl_1")
    await open_one(store, "cer_3", challenge_id="chl_2")
    await open_one(store, "cer_4", challenge_id="chl_1", purpose="push")
    closed = await store.close_open_ceremonies(
        challenge_id="chl_1", purposes=["sms_code"], new="expired", now=T0
    )
    assert closed == 2
    states = {r.id: r.state for r in await store.list_ceremonies(subject_id="alice")}
    assert states == {"cer_1": "expired", "cer_2": "expired", "cer_3": "open", "cer_4": "open"}


async def test_purge_drops_only_long_expired_ceremonies(db: Database) -> None:
    store = Store(db)
    await open_one(store, "cer_old", expires_at=T0 - timedelta(days=2))
    await open_one(store, "cer_new", expires_at=T0 + timedelta(minutes=5))
    assert await store.purge_ceremonies(expired_before=T0 - timedelta(days=1)) == 1
    assert [r.id for r in await store.list_ceremonies(subject_id="alice")] == ["cer_new"]


async def test_a_shared_ceremony_is_created_once_under_parallel_openers(db: Database) -> None:
    store = Store(db)
    rows = await asyncio.gather(
        *(
            store.open_ceremony_once(
                id="cer_shared",
                subject_id="",
                purpose="sms_number_key",
                now=T0,
                expires_at=T0 + timedelta(days=1),
                secret=f"v1.{n}",
            )
            for n in range(10)
        )
    )
    assert len({row.secret for row in rows}) == 1
    stored = await store.get_ceremony("cer_shared")
    assert stored is not None and stored.secret == rows[0].secret


async def test_recent_ceremonies_reads_each_purpose_since_its_time_in_one_query(
    db: Database,
) -> None:
    store = Store(db)
    minutes = [0, 10, 20, 30]
    for m in minutes:
        at = T0 + timedelta(minutes=m)
        await open_one(store, f"cer_p{m}", purpose="push", now=at, data={"m": m})
        await open_one(
            store, f"cer_r{m}", purpose="reported_activity", now=T0 + timedelta(minutes=m)
        )
        await open_one(store, f"cer_s{m}", now=T0 + timedelta(minutes=m))  # sms_code: not asked
    assert await store.close_ceremony("cer_p20", new="denied", now=T0)
    assert await store.close_ceremony("cer_p30", new="denied", now=T0)
    since = {"push": T0 + timedelta(minutes=5), "reported_activity": T0 + timedelta(minutes=20)}

    async def ids(**kw: object) -> list[str]:
        return [r.id for r in await store.recent_ceremonies(since=since, **kw)]  # type: ignore[arg-type]

    assert sorted(await ids()) == ["cer_p10", "cer_p20", "cer_p30", "cer_r20", "cer_r30"]
    # States for a purpose that names them; any state for the others.
    denied = {"push": ["denied"]}
    assert sorted(await ids(states=denied)) == ["cer_p20", "cer_p30", "cer_r20", "cer_r30"]
    # At most ``limit`` of each purpose, the oldest first.
    assert sorted(await ids(limit=1)) == ["cer_p10", "cer_r20"]
    assert await store.recent_ceremonies(since={}) == []
    only = await store.recent_ceremonies(since={"push": T0 + timedelta(minutes=25)})
    assert [(r.id, r.purpose, r.state, r.data) for r in only] == [
        ("cer_p30", "push", "denied", {"m": 30})
    ]
    assert only[0].created_at == T0 + timedelta(minutes=30)
