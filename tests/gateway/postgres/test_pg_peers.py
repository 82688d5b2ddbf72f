"""The workers' hand-over of cancel requests (``gateway/postgres/peers.py``), over real Unix
sockets: the keys name their worker, a cancel reaches the worker it names, once, whole however
it is written, and a malformed hand-over cancels nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.peers import CancelPeers


@contextlib.asynccontextmanager
async def listening(
    directory: Path, count: int, *indexes: int
) -> AsyncIterator[tuple[list[CancelPeers], dict[int, list[fe.CancelRequest]]]]:
    """Workers ``indexes`` of ``count`` taking hand-overs; what each was handed."""
    workers = [CancelPeers(i, count, directory) for i in indexes]
    got: dict[int, list[fe.CancelRequest]] = {i: [] for i in indexes}
    for peers in workers:

        async def cancel(message: fe.CancelRequest, index: int = peers.index) -> None:
            got[index].append(message)

        await peers.start(cancel)
    try:
        yield workers, got
    finally:
        for peers in workers:
            await peers.aclose()


async def handed(got: list[fe.CancelRequest]) -> None:
    for _ in range(100):
        if got:
            return
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("count", [2, 3, 7])
def test_a_key_names_its_worker(tmp_path: Path, count: int) -> None:
    for index in range(count):
        peers = CancelPeers(index, count, tmp_path)
        for _ in range(200):
            process_id, secret = peers.new_key()
            assert 0 <= process_id < 2**31 and len(secret) == 4
            assert peers.owner(process_id) == index


async def test_a_cancel_goes_to_the_worker_its_key_names(tmp_path: Path) -> None:
    async with listening(tmp_path, 3, 0, 1, 2) as (workers, got):
        process_id, secret = workers[2].new_key()
        await workers[0].forward(fe.CancelRequest(process_id, secret))
        await handed(got[2])
        assert got == {0: [], 1: [], 2: [fe.CancelRequest(process_id, secret)]}


async def test_a_hand_over_in_pieces_is_read_to_its_end(tmp_path: Path) -> None:
    async with listening(tmp_path, 2, 0) as (_, got):
        wire = fe.CancelRequest(4, b"\x01\x02\x03\x04").encode()
        _, writer = await asyncio.open_unix_connection(str(tmp_path / "cancel-0.sock"))
        writer.write(wire[:7])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(wire[7:])
        writer.close()
        await handed(got[0])
        assert got[0] == [fe.CancelRequest(4, b"\x01\x02\x03\x04")]


async def test_a_worker_that_is_gone_or_a_bad_hand_over_cancels_nothing(tmp_path: Path) -> None:
    async with listening(tmp_path, 2, 0) as (workers, got):
        await workers[0].forward(fe.CancelRequest(1, b"\x00" * 4))  # worker 1 never started
        _, writer = await asyncio.open_unix_connection(str(tmp_path / "cancel-0.sock"))
        writer.write(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # an SSLRequest, not a cancel
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.1)
        assert got[0] == []
