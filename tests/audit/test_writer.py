"""The audit writer process (SQLite and PostgreSQL): the same chain and durability as in
process, restarted after a crash, in process when it cannot start, never outliving its server,
and never showing the store's URL on its command line."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

import piigate.audit.writer as writer_module
from piigate.audit import AuditLog, EventBus
from piigate.audit.log import _item
from piigate.audit.writer import ProcessWriter
from piigate.clock import FixedClock
from piigate.model import AuditEvent
from piigate.store import Database, StoreUnavailable
from piigate.store.tables import used_grants

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def audit(db: Database) -> AsyncIterator[AuditLog]:
    log = AuditLog(db, FixedClock(T0), EventBus(), writer_process=True)
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


def event(n: int) -> AuditEvent:
    return AuditEvent(
        type="decision",
        at=T0 + timedelta(milliseconds=n),
        subject_id="alice",
        data={"n": n, "pii": ["ssn"], "outcome": "allow"},
    )


def writer_pid(log: AuditLog) -> int:
    process = log._process
    assert process is not None, "the log writes from a thread"
    pid = process.pid
    assert pid is not None
    return pid


async def append_after_loss(log: AuditLog, first: AuditEvent) -> list[AuditEvent | None]:
    """Three appends after the writer was lost: each committed event, or None for a batch
    that was not acknowledged. At most the lost child's batch fails, and the chain holds
    every acknowledged event as it was acknowledged."""
    outcomes: list[AuditEvent | None] = []
    for n in range(2, 5):
        try:
            outcomes.append(await log.append(event(n)))
        except StoreUnavailable:
            outcomes.append(None)  # the batch the dead child held: not acknowledged
    assert outcomes.count(None) <= 1
    assert outcomes[-1] is not None
    report = await log.verify()
    assert report.ok, report
    acknowledged = [e for e in [first, *outcomes] if e is not None]
    stored = {e.seq: e.hash for e in await log.list_events()}
    assert all(stored[e.seq] == e.hash for e in acknowledged if e.seq is not None)
    return outcomes


async def test_concurrent_appends_chain_in_the_child_process(audit: AuditLog) -> None:
    pid = writer_pid(audit)
    assert pid != os.getpid()
    results = await asyncio.gather(*(audit.append(event(i)) for i in range(300)))
    assert sorted(e.seq for e in results if e.seq) == list(range(1, 301))
    assert audit.stats.batches < 30, audit.stats  # group commit still batches
    stored = await audit.list_events(limit=1000)
    assert {e.seq: (e.prev_hash, e.hash) for e in stored} == {
        e.seq: (e.prev_hash, e.hash) for e in results
    }
    assert [e.data for e in sorted(results, key=lambda e: e.seq or 0)] == [e.data for e in stored]
    report = await audit.verify()
    assert (report.ok, report.count) == (True, 300)
    assert writer_pid(audit) == pid  # one child served every batch


async def test_an_append_while_nothing_is_in_flight_leaves_at_once(audit: AuditLog) -> None:
    """The first append queued while the writer is idle is sent to the child in its caller's
    turn of the event loop, a batch of its own; those queued behind it share the next one."""
    await audit.append(event(0))
    batches = audit.stats.batches
    results = await asyncio.gather(*(audit.append(event(i)) for i in range(1, 11)))
    assert [e.seq for e in results] == list(range(2, 12))
    assert audit.stats.batches == batches + 2
    report = await audit.verify()
    assert report.ok and report.count == 11, report


async def test_a_shipped_batch_is_answered_by_the_next_write(db: Database) -> None:
    """ProcessWriter.ship sends a batch at once (one at a time); write then reads its answer.
    A shipped batch abandoned unread takes its child with it: the next batch starts another."""
    log = AuditLog(db, FixedClock(T0))
    items = [_item(event(1))[0]]
    process = ProcessWriter(db.url)
    await process.start()
    try:
        assert process.ship(items)
        assert not process.ship(items)  # one batch in flight
        links = await process.write(items)
        assert [link[0] for link in links if isinstance(link, tuple)] == [1]
        assert process.ship([_item(event(2))[0]])
        first = process.pid
        process.abandon()
        links = await process.write([_item(event(3))[0]])
        assert process.pid not in (None, first)
        assert [link[0] for link in links if isinstance(link, tuple)] in ([2], [3])
    finally:
        await process.stop()
    assert (await log.verify()).ok


async def test_rows_commit_with_the_events(audit: AuditLog, db: Database) -> None:
    row = {"grant_id": "gr_1", "used_at": T0, "expires_at": T0 + timedelta(minutes=5)}
    rows_done = asyncio.ensure_future(audit.write_rows(used_grants.name, row))
    appended = await audit.append(event(1))
    await rows_done
    assert appended.seq == 1
    async with db.connect() as conn:
        stored = (await conn.execute(select(used_grants))).one()
    assert (stored.grant_id, stored.expires_at) == ("gr_1", T0 + timedelta(minutes=5))


async def test_a_killed_child_fails_at_most_its_batch_and_is_replaced(audit: AuditLog) -> None:
    first = await audit.append(event(1))
    old = writer_pid(audit)
    os.kill(old, signal.SIGKILL)
    await append_after_loss(audit, first)
    assert writer_pid(audit) != old


@pytest.mark.parametrize(
    "command",
    [["/nonexistent/python"], [sys.executable, "-c", "import sys; sys.exit(3)"]],
    ids=["cannot-exec", "exits-at-once"],
)
async def test_a_child_that_cannot_be_replaced_leaves_the_log_on_a_thread(
    audit: AuditLog,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    command: list[str],
) -> None:
    first = await audit.append(event(1))
    os.kill(writer_pid(audit), signal.SIGKILL)
    monkeypatch.setattr(writer_module, "child_command", lambda: command)
    # At most the dead child's batch is lost; the next one is written from a thread.
    await append_after_loss(audit, first)
    assert audit._process is None
    assert "writing from a thread" in caplog.text


async def test_a_child_that_reports_a_store_failure_is_not_replaced_by_a_thread(
    audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store the child cannot open is the store's failure: the batch fails (no thread would
    do better), and the log keeps to its process for when the store is back."""
    await audit.append(event(1))
    os.kill(writer_pid(audit), signal.SIGKILL)
    reports = [sys.executable, "-c", _REPORTS_AN_ERROR]
    monkeypatch.setattr(writer_module, "child_command", lambda: reports)
    for n in range(2, 4):
        with pytest.raises(StoreUnavailable):
            await audit.append(event(n))
    assert audit._process is not None
    monkeypatch.undo()
    assert (await audit.append(event(4))).seq is not None
    assert writer_pid(audit) > 0


# A child that starts but reports that it cannot open the store, as main() does.
_REPORTS_AN_ERROR = (
    "import pickle, struct, sys; "
    "p = pickle.dumps(('error', 'OperationalError')); "
    "sys.stdout.buffer.write(struct.pack('>I', len(p)) + p); sys.stdout.flush()"
)


async def test_the_child_ignores_interrupts_meant_for_its_server(audit: AuditLog) -> None:
    pid = writer_pid(audit)
    os.kill(pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    os.kill(pid, signal.SIGTERM)
    await asyncio.sleep(0.2)
    appended = await audit.append(event(1))
    assert appended.seq == 1
    assert writer_pid(audit) == pid


async def test_stop_commits_everything_queued_and_ends_the_child(db: Database) -> None:
    log = AuditLog(db, FixedClock(T0), writer_process=True)
    await log.start()
    process = log._process
    assert process is not None and process._proc is not None
    child = process._proc
    pending = [asyncio.ensure_future(log.append(event(i))) for i in range(50)]
    await asyncio.sleep(0)
    await log.stop()
    assert all(task.done() and task.exception() is None for task in pending)
    assert child.returncode == 0
    again = AuditLog(db, FixedClock(T0))
    report = await again.verify()
    assert (report.ok, report.count) == (True, 50)


async def test_a_child_that_cannot_start_leaves_the_log_on_a_thread(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writer_module, "child_command", lambda: ["/nonexistent/python"])
    log = AuditLog(db, FixedClock(T0), writer_process=True)
    await log.start()
    try:
        assert log._process is None
        assert "writing from a thread" in caplog.text
        assert (await log.append(event(1))).seq == 1
    finally:
        await log.stop()


async def test_a_child_that_exits_before_ready_is_store_unavailable(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exits = [sys.executable, "-c", "import sys; sys.exit(3)"]
    monkeypatch.setattr(writer_module, "child_command", lambda: exits)
    with pytest.raises(StoreUnavailable, match="did not start"):
        await ProcessWriter(sqlite_url).start()


async def test_a_store_the_child_cannot_open_is_reported_not_hidden(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    writer = ProcessWriter(f"sqlite+aiosqlite:///{blocked}/piigate.db", start_timeout=30)
    with pytest.raises(
        StoreUnavailable, match=r"did not start \((FileExistsError|OperationalError)\)"
    ):
        await writer.start()


@pytest.mark.postgres
async def test_a_postgres_database_the_child_cannot_open_is_reported(pg_admin_url: str) -> None:
    from sqlalchemy import make_url

    missing = make_url(pg_admin_url).set(database="piigate_no_such_database")
    writer = ProcessWriter(missing.render_as_string(hide_password=False), start_timeout=30)
    with pytest.raises(StoreUnavailable, match=r"did not start \(StoreUnavailable\)"):
        await writer.start()


async def test_the_store_url_never_shows_on_the_childs_command_line(
    audit: AuditLog, db: Database
) -> None:
    cmdline = Path(f"/proc/{writer_pid(audit)}/cmdline").read_bytes()  # noqa: ASYNC240
    arguments = cmdline.decode().split("\0")
    assert "piigate.audit.writer" in " ".join(arguments)
    assert not any(db.url in arg or str(db.engine.url.database) in arg for arg in arguments)


def test_an_item_crosses_the_pipe_unchanged() -> None:
    """What the child rebuilds from the wire is the item: the same instants, in UTC, to the
    microsecond (they are hashed into the chain), whatever zone they were given in."""
    at = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)
    elsewhere = at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    item, _ = _item(event(1))
    for when in (at, elsewhere):
        sent = item._replace(
            event=AuditEvent("decision", when, "alice", {}), if_open=("chl_1", when)
        )
        back = writer_module._from_wire(pickle.loads(pickle.dumps(writer_module._to_wire(sent))))
        assert back.event is not None and back.if_open is not None
        assert back.event.at == at and back.event.at.tzinfo is UTC
        assert back.if_open == ("chl_1", at) and back.if_open[1].tzinfo is UTC
        assert (back.text, back.rows, back.event.type, back.event.subject_id) == (
            sent.text,
            sent.rows,
            "decision",
            "alice",
        )
