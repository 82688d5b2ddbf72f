"""TurnBatches on its own: what one loop turn asks goes as one group, and a fault reaches every
caller of the group instead of leaving one waiting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from piigate.ports import Hit
from piigate.store.turn_batches import Asked, TurnBatches, split_counts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_fault_in_send_fails_every_caller_of_the_group_and_no_later_one() -> None:
    groups: list[int] = []

    async def send(group: list[Asked]) -> list[list[int]]:
        groups.append(len(group))
        if len(groups) == 1:
            raise ValueError("a fault")
        return [[7] * (len(asked.hits) + len(asked.peeks)) for asked in group]

    turns = TurnBatches(send, max_keys=100)
    answers = await asyncio.gather(
        *(turns.batch([Hit("k", 60)], [], now=T0) for _ in range(3)), return_exceptions=True
    )
    assert [type(answer) for answer in answers] == [ValueError] * 3
    assert await turns.batch([Hit("k", 60)], ["r"], now=T0) == ([7], [7])
    assert groups == [3, 1]


async def test_a_send_that_answers_the_wrong_number_of_batches_fails_them_all() -> None:
    async def send(group: list[Asked]) -> list[list[int]]:
        return [[1]]  # one answer, whatever the group holds

    turns = TurnBatches(send, max_keys=100)
    answers = await asyncio.wait_for(  # none left waiting
        asyncio.gather(
            turns.batch([Hit("a", 60)], [], now=T0),
            turns.batch([Hit("b", 60)], [], now=T0),
            return_exceptions=True,
        ),
        5,
    )
    assert all(isinstance(answer, RuntimeError) for answer in answers)


async def test_empty_batches_ask_nothing() -> None:
    async def send(group: list[Asked]) -> list[list[int]]:
        raise AssertionError("nothing to send")

    assert await TurnBatches(send, max_keys=10).batch([], [], now=T0) == ([], [])


def test_split_counts_cuts_a_group_by_its_batches() -> None:
    group = [Asked([Hit("a", 60)], ["b", "c"], T0), Asked([], ["d"], T0), Asked([], [], T0)]
    assert split_counts(group, [1, 2, 3, 4]) == [[1, 2, 3], [4], []]


@pytest.mark.parametrize("in_flight", [None, 1])
async def test_groups_in_flight_are_limited_when_asked(in_flight: int | None) -> None:
    """With ``in_flight=1`` what is asked while a group is out goes as one next group; without
    a limit each loop turn's group goes at once."""
    running: list[int] = []
    most = 0
    release = asyncio.Event()

    async def send(group: list[Asked]) -> list[list[int]]:
        nonlocal most
        running.append(len(group))
        most = max(most, len(running))
        await release.wait()
        running.pop()
        return [[0] for _ in group]

    turns = TurnBatches(send, max_keys=100, in_flight=in_flight)
    tasks = []
    for _ in range(4):  # four loop turns, a batch each
        tasks.append(asyncio.ensure_future(turns.batch([Hit("k", 60)], [], now=T0)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert most == (1 if in_flight == 1 else 4)
