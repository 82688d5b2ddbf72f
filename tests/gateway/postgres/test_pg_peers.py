"""The workers' hand-over of cancel requests (``gateway/postgres/peers.py``), over real Unix
sockets: the keys name their worker, a cancel reaches the worker it names, once, and a
malformed hand-over cancels nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.peers import CancelPeers


@pytest.mark.parametrize("count", [2, 3, 7])
def test_a_key_names_its_worker(tmp_path: Path, count: int) -> None:
    for index in range(count):
        peers = CancelPeers(index, count, tmp_path)
        for _ in range(200):
            process_id, secret = peers.new_key()
            assert 0 <= process_id < 2**31 and len(secret) == 4
            assert peers.owner(process_id) == index


async def test_a_cancel_goes_to_the_worker_its_key_names(tmp_path: Path) -> None:
    workers = [CancelPeers(i, 3, tmp_path) for i in range(3)]
    got: dict[int, list[fe.CancelRequest]] = {i: [] for i in range(3)}
    for peers in workers:

        async def cancel(message: fe.CancelRequest, index: int = peers.index) -> None:
            got[index].append(message)

        await peers.start(cancel)
    try:
        process_id, secret = workers[2].new_key()
        await workers[0].forward(fe.CancelRequest(process_id, secret))
        for _ in range(100):
            if got[2]:
                break
            await asyncio.sleep(0.01)
        assert got == {0: [], 1: [], 2: [fe.CancelRequest(process_id, secret)]}
    finally:
        for peers in workers:
            await peers.aclose()


async def test_a_worker_that_is_gone_or_a_bad_hand_over_cancels_nothing(tmp_path: Path) -> None:
    got: list[fe.CancelRequest] = []

    async def cancel(message: fe.CancelRequest) -> None:
        got.append(message)

    alive = CancelPeers(0, 2, tmp_path)
    await alive.start(cancel)
    try:
        await alive.forward(fe.CancelRequest(1, b"\x00" * 4))  # worker 1 never started
        _, writer = await asyncio.open_unix_connection(str(tmp_path / "cancel-0.sock"))
        writer.write(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # an SSLRequest, not a cancel
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.1)
        assert got == []
    finally:
        await alive.aclose()


async def test_a_hand_over_in_pieces_is_read_to_its_end(tmp_path: Path) -> None:
    got: list[fe.CancelRequest] = []

    async def cancel(message: fe.CancelRequest) -> None:
        got.append(message)

    peers = CancelPeers(0, 2, tmp_path)
    await peers.start(cancel)
    try:
        wire = fe.CancelRequest(4, b"\x01\x02\x03\x04").encode()
        _, writer = await asyncio.open_unix_connection(str(tmp_path / "cancel-0.sock"))
        writer.write(wire[:7])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(wire[7:])
        writer.close()
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [fe.CancelRequest(4, b"\x01\x02\x03\x04")]
    finally:
        await peers.aclose()
