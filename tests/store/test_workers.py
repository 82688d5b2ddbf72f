"""The store's worker threads (``store/workers.py``): a unit of work's result or exception comes
back to its caller, units run off the event loop's thread, a unit whose caller has gone before
it started is not run, and shutdown lets the queued units finish."""

from __future__ import annotations

import asyncio
import threading

import pytest

from piigate.store.workers import Workers


class Refused(Exception):
    pass


async def test_results_and_exceptions_come_back_from_another_thread() -> None:
    workers = Workers(2, "test-workers")
    try:
        ran_in = await workers.run(lambda: threading.current_thread().name)
        assert ran_in.startswith("test-workers_")
        assert ran_in != threading.current_thread().name
        assert await workers.run(pow, 2, 10) == 1024

        def refuse() -> None:
            raise Refused("the unit's own error")

        with pytest.raises(Refused, match="the unit's own error"):
            await workers.run(refuse)
        # Concurrent callers each get their own answer.
        answers = await asyncio.gather(*(workers.run(lambda n=n: n * n) for n in range(50)))
        assert answers == [n * n for n in range(50)]
    finally:
        workers.shutdown()


async def test_a_unit_whose_caller_went_away_before_it_started_is_not_run() -> None:
    workers = Workers(1, "test-workers")
    busy, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def block() -> None:
        busy.set()
        release.wait(5)
        ran.append("first")

    try:
        first = asyncio.create_task(workers.run(block))
        await asyncio.to_thread(busy.wait, 5)
        second = asyncio.create_task(workers.run(lambda: ran.append("second")))
        await asyncio.sleep(0)  # queued behind the first
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        release.set()
        await first
        assert await workers.run(lambda: "after") == "after"
        assert ran == ["first"]
    finally:
        release.set()
        workers.shutdown()


async def test_shutdown_lets_queued_units_finish() -> None:
    workers = Workers(1, "test-workers")
    done: list[int] = []
    pending = [asyncio.ensure_future(workers.run(done.append, n)) for n in range(20)]
    await asyncio.sleep(0)  # every unit queued
    await asyncio.to_thread(workers.shutdown)
    assert done == list(range(20))
    await asyncio.gather(*pending)
