"""The risk key: made once, shared by every node through the store, never readable without the
deployment's keyring."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from piigate.crypto.keyring import Keyring
from piigate.errors import ServiceUnavailable
from piigate.risk.keys import RISK_KEY_ID, load_risk_key
from piigate.store import Database, Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def test_every_node_reads_the_same_key(sqlite_db: Database) -> None:
    store, keyring = Store(sqlite_db), Keyring.ephemeral()
    keys = await asyncio.gather(*(load_risk_key(store, keyring, now=T0) for _ in range(4)))
    assert len({k.reveal() for k in keys}) == 1 and len(keys[0].reveal()) == 32
    assert await load_risk_key(store, keyring, now=T0) == keys[0]
    row = await store.get_ceremony(RISK_KEY_ID)
    assert row is not None and row.secret is not None
    assert keys[0].reveal().hex() not in row.secret and "***" in repr(keys[0])


async def test_another_keyring_cannot_open_it(sqlite_db: Database) -> None:
    store = Store(sqlite_db)
    await load_risk_key(store, Keyring.ephemeral(), now=T0)
    with pytest.raises(ServiceUnavailable):
        await load_risk_key(store, Keyring.ephemeral(), now=T0)
