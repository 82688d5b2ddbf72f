"""The store's worker threads: units of work handed over from the event loop, and back.

``Database.read``/``write`` run each unit of work (a plain synchronous function) in one of a few
threads that keep the driver's blocking calls off the event loop. A hand-off is on the hot path
of every store transaction, both ways, so it is kept to the least work: the unit goes into a
``queue.SimpleQueue`` (C, no lock in Python), a worker runs it, and its result or exception is
set on the caller's asyncio future through the loop's ``call_soon_threadsafe``. That is what
``loop.run_in_executor`` with a ``ThreadPoolExecutor`` does too, less a ``concurrent.futures``
future in between (its ``threading.Condition``, its callbacks, and the copy of its state into
the asyncio future) and the executor's checks on every submission.

A unit whose caller was cancelled before a worker took it is not run (as with an executor); one
already running finishes, and its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Workers"]

T = TypeVar("T")

# One queued unit: where to answer, and what to run.
_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Workers:
    """``threads`` daemon threads named ``name_0``, ``name_1``... serving one queue."""

    def __init__(self, threads: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in a worker thread; its result, or its exception raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, work, args))
        return await future

    def shutdown(self) -> None:
        """Let the queued units finish, then stop every thread and wait for them."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, work, args = job
            if future.cancelled():  # the caller has gone: nothing waits for this unit
                continue
            try:
                result = work(*args)
            except BaseException as error:  # handed to the caller, as an executor does
                _answer(loop, _fail, future, error)
            else:
                _answer(loop, _settle, future, result)


def _answer(
    loop: asyncio.AbstractEventLoop,
    answer: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    # A loop closed meanwhile has nobody left to answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(answer, future, value)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # cancelled while the unit ran
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
