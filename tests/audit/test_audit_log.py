from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, insert, select, text, update

from piigate.audit import AuditLog, EventBus, canonical_json, event_hash
from piigate.clock import FixedClock
from piigate.model import AuditEvent
from piigate.store import Database, StoreUnavailable
from piigate.store.tables import audit_events, audit_head

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def audit(db: Database) -> AsyncIterator[AuditLog]:
    log = AuditLog(db, FixedClock(T0), EventBus())
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


def event(n: int, type: str = "decision", subject_id: str | None = "alice") -> AuditEvent:
    return AuditEvent(
        type=type,
        at=T0 + timedelta(milliseconds=n),
        subject_id=subject_id,
        data={"n": n, "pii": ["ssn"], "outcome": "allow"},
    )


async def fill(log: AuditLog, n: int) -> None:
    for i in range(1, n + 1):
        await log.append(event(i))


async def test_rows_for_an_unknown_table_are_refused_before_they_join_a_batch(
    audit: AuditLog,
) -> None:
    with pytest.raises(ValueError, match="no store table"):
        await audit.write_rows("no_such_table", {"id": 1})
    assert (await audit.append(event(1))).seq == 1


async def test_append_returns_the_chained_event(audit: AuditLog) -> None:
    first = await audit.append(event(1))
    second = await audit.record("login", subject_id="bob", data={"method": "pwd"})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == "0" * 64 and second.prev_hash == first.hash
    assert first.hash == event_hash(
        "0" * 64, 1, first.at, "decision", "alice", {"n": 1, "pii": ["ssn"], "outcome": "allow"}
    )
    assert second.at == T0  # record() stamps with the log's clock
    assert await audit.list_events() == [first, second]
    report = await audit.verify()
    assert (report.ok, report.count) == (True, 2)


async def test_300_concurrent_appends_make_one_valid_chain_in_few_commits(
    audit: AuditLog,
) -> None:
    results = await asyncio.gather(*(audit.append(event(i)) for i in range(300)))
    assert sorted(e.seq for e in results if e.seq) == list(range(1, 301))
    assert {e.data["n"] for e in results} == set(range(300))
    assert audit.stats.events == 300
    assert audit.stats.batches < 300 / 10, audit.stats  # group commit really batched
    report = await audit.verify(batch_size=7)
    assert (report.ok, report.count) == (True, 300)
    stored = await audit.list_events(limit=1000)
    assert [e.seq for e in stored] == list(range(1, 301))
    assert {e.seq: e.hash for e in stored} == {e.seq: e.hash for e in results}
    head = await audit.head()
    assert (head.seq, head.hash) == (300, stored[-1].hash)


async def test_list_events_filters(audit: AuditLog) -> None:
    await audit.append(event(1, "decision", "alice"))
    await audit.append(event(2, "login", "bob"))
    await audit.append(event(3, "decision", "bob"))
    assert [e.seq for e in await audit.list_events(after=1)] == [2, 3]
    assert [e.seq for e in await audit.list_events(types=["decision"])] == [1, 3]
    assert [e.seq for e in await audit.list_events(subject_id="bob")] == [2, 3]
    assert [e.seq for e in await audit.list_events(limit=1)] == [1]


async def test_committed_events_reach_the_bus_in_order(db: Database) -> None:
    bus = EventBus()
    log = AuditLog(db, FixedClock(T0), bus)
    async with bus.subscribe() as everything, bus.subscribe(types=["login"]) as logins:
        await asyncio.gather(*(log.append(event(i)) for i in range(20)))
        await log.append(event(99, "login"))
        await log.stop()
        seen = [(await everything.get()).seq for _ in range(21)]
        assert seen == list(range(1, 22))
        assert (await logins.get()).type == "login"


async def test_stop_flushes_and_later_appends_fail(db: Database) -> None:
    log = AuditLog(db, FixedClock(T0))
    tasks = [asyncio.create_task(log.append(event(i))) for i in range(50)]
    await asyncio.sleep(0)  # queued, not necessarily written
    await log.stop()
    assert all(t.done() and not t.exception() for t in tasks)
    assert (await log.verify()).count == 50
    with pytest.raises(StoreUnavailable):
        await log.append(event(51))


async def test_cancelled_writer_fails_whoever_waits(db: Database) -> None:
    log = AuditLog(db, FixedClock(T0))
    await log.start()
    await asyncio.sleep(0)  # the writer waits on its queue
    tasks = [asyncio.create_task(log.append(event(i))) for i in range(3)]
    await asyncio.sleep(0)  # the appends are queued and the writer has woken up
    assert log._writer is not None
    log._writer.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    # A dead writer is replaced on the next append.
    assert (await log.append(event(9))).seq is not None
    assert (await log.verify()).ok
    await log.stop()


async def test_bad_data_is_refused_before_it_reaches_a_batch(audit: AuditLog) -> None:
    with pytest.raises(TypeError):
        await audit.append(AuditEvent(type="x", at=T0, data={"token": b"\x00"}))
    assert (await audit.append(event(1))).seq == 1


async def test_every_waiting_caller_gets_store_unavailable_when_the_db_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = Database.open(f"postgresql://postgres@127.0.0.1:{port}/nothing")
    log = AuditLog(db, FixedClock(T0))
    try:
        results = await asyncio.gather(
            *(log.append(event(i)) for i in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert log.stats.failed_batches >= 1 and log.stats.events == 0
    finally:
        await log.stop()
        await db.close()


async def test_a_failed_batch_acknowledges_nothing(audit: AuditLog, db: Database) -> None:
    await fill(audit, 3)
    # Break the head so the next batch's transaction fails (its INSERT collides with seq 3).
    async with db.begin() as conn:
        await conn.execute(update(audit_head).values(seq=2))
    results = await asyncio.gather(
        *(audit.append(event(i)) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    async with db.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM audit_events"))).scalar()
    assert count == 3  # the whole batch rolled back


# -- tampering with the stored chain ------------------------------------------------------


async def rows(db: Database) -> dict[int, dict[str, object]]:
    async with db.connect() as conn:
        result = await conn.execute(select(audit_events).order_by(audit_events.c.seq))
        return {r.seq: r._asdict() for r in result}


async def execute(db: Database, *statements: object) -> None:
    async with db.begin() as conn:
        for statement in statements:
            await conn.execute(statement)  # type: ignore[call-overload]


async def test_edit_is_detected(audit: AuditLog, db: Database) -> None:
    await fill(audit, 10)
    await execute(db, update(audit_events).where(audit_events.c.seq == 4).values(data='{"n":4}'))
    report = await audit.verify()
    assert (report.ok, report.first_bad_seq, report.count) == (False, 4, 3)


async def test_edit_with_recomputed_hash_is_detected_by_the_next_event(
    audit: AuditLog, db: Database
) -> None:
    await fill(audit, 10)
    row = (await rows(db))[4]
    data = {"n": 4, "pii": []}
    new_hash = event_hash(str(row["prev_hash"]), 4, row["at"], "decision", "alice", data)  # type: ignore[arg-type]
    await execute(
        db,
        update(audit_events)
        .where(audit_events.c.seq == 4)
        .values(data=canonical_json(data), hash=new_hash),
    )
    report = await audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert report.reason and "event 4" in report.reason


async def test_deleted_middle_event_is_detected(audit: AuditLog, db: Database) -> None:
    await fill(audit, 10)
    await execute(db, delete(audit_events).where(audit_events.c.seq == 4))
    report = await audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 4)


async def test_deleted_tail_is_detected(audit: AuditLog, db: Database) -> None:
    await fill(audit, 10)
    await execute(db, delete(audit_events).where(audit_events.c.seq >= 9))
    report = await audit.verify()
    assert (report.ok, report.first_bad_seq, report.count) == (False, 9, 8)


async def test_inserted_event_is_detected(audit: AuditLog, db: Database) -> None:
    await fill(audit, 10)
    stored = await rows(db)
    # Make room at seq 5 (two steps: a primary key cannot pass through itself) and slip in a
    # well-formed forged event that links to event 4.
    await execute(
        db,
        update(audit_events).where(audit_events.c.seq >= 5).values(seq=audit_events.c.seq + 100),
        update(audit_events).where(audit_events.c.seq >= 105).values(seq=audit_events.c.seq - 99),
    )
    at = T0 + timedelta(milliseconds=4, microseconds=500)
    prev = str(stored[4]["hash"])
    forged = event_hash(prev, 5, at, "forged", "mallory", {})
    await execute(
        db,
        insert(audit_events).values(
            seq=5,
            at=at,
            type="forged",
            subject_id="mallory",
            data="{}",
            prev_hash=prev,
            hash=forged,
        ),
    )
    report = await audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 6)


async def test_event_added_behind_the_logs_back_is_detected(audit: AuditLog, db: Database) -> None:
    await fill(audit, 10)
    last = (await rows(db))[10]
    forged = event_hash(str(last["hash"]), 11, T0, "forged", None, {})
    await execute(
        db,
        insert(audit_events).values(
            seq=11, at=T0, type="forged", data="{}", prev_hash=last["hash"], hash=forged
        ),
    )
    report = await audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 11)


async def test_swapped_events_are_detected(audit: AuditLog, db: Database) -> None:
    await fill(audit, 10)
    stored = await rows(db)
    fields = ("at", "type", "subject_id", "data", "prev_hash", "hash")
    await execute(
        db,
        update(audit_events)
        .where(audit_events.c.seq == 4)
        .values({f: stored[5][f] for f in fields}),
        update(audit_events)
        .where(audit_events.c.seq == 5)
        .values({f: stored[4][f] for f in fields}),
    )
    report = await audit.verify()
    assert (report.ok, report.first_bad_seq) == (False, 4)


async def test_verify_sees_one_snapshot_while_appends_continue(audit: AuditLog) -> None:
    await fill(audit, 20)
    writers = asyncio.gather(*(audit.append(event(i)) for i in range(200)))
    reports = await asyncio.gather(*(audit.verify(batch_size=5) for _ in range(5)))
    await writers
    assert all(r.ok for r in reports), reports
    assert (await audit.verify()).count == 220
