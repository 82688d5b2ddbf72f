"""The outbox adapter and ``piigate sms outbox`` (SQLite and PostgreSQL): messages kept
encrypted in the store, readable by the CLI; and the keyed digest numbers are counted under."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sms_support import run_cli
from sqlalchemy import text

from piigate.clock import FixedClock
from piigate.crypto.keyring import Keyring, open_keyring
from piigate.crypto.masterkey import MasterKeySpec
from piigate.crypto.secret import Secret
from piigate.factors.sms import SmsMessage, parse_phone
from piigate.factors.sms.numbers import NumberDigests
from piigate.factors.sms.outbox import RETENTION_SECONDS, OutboxSender
from piigate.store import Database, Store

NUMBER = "+33612345678"
OTHER = "+4915123456789"


def message(n: int, number: str = NUMBER) -> SmsMessage:
    return SmsMessage(f"cer_{n}", parse_phone(number), Secret(f"piigate: {n:06d} is your code."))


async def raw_ceremonies(db: Database) -> str:
    async with db.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM ceremonies"))).all()
    return json.dumps([list(map(str, row)) for row in rows])


async def test_outbox_keeps_messages_encrypted_newest_first(db: Database, tmp_path: Path) -> None:
    keyring = Keyring.ephemeral()
    clock = FixedClock()
    outbox = OutboxSender(db, keyring, clock)
    for n in range(3):
        await outbox.send(message(n + 1))
        clock.advance(1)
    latest = await outbox.latest(2)
    assert [m.message_id for m in latest] == ["cer_3", "cer_2"]
    assert latest[0].text == Secret("piigate: 000003 is your code.")
    assert latest[0].to == Secret(NUMBER) and latest[0].hint == "+33 • •• •• •• 78"
    stored = await raw_ceremonies(db)
    assert NUMBER not in stored and "612345678" not in stored and "000003" not in stored


async def test_outbox_drops_old_messages(db: Database, tmp_path: Path) -> None:
    keyring = Keyring.ephemeral()
    clock = FixedClock()
    outbox = OutboxSender(db, keyring, clock)
    await outbox.send(message(1))
    clock.advance(RETENTION_SECONDS + 1)
    await outbox.send(message(2))
    assert [m.message_id for m in await outbox.latest(10)] == ["cer_2"]


async def test_a_row_another_keyring_wrote_is_shown_unreadable(
    db: Database, tmp_path: Path
) -> None:
    await OutboxSender(db, Keyring.ephemeral(), FixedClock()).send(message(1))
    [shown] = await OutboxSender(db, Keyring.ephemeral(), FixedClock()).latest()
    assert shown.text is None and shown.to is None and shown.hint


async def test_piigate_sms_outbox_prints_the_latest_messages(
    db: Database, migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deployment's keys, as a node with data dir tmp_path (and so the CLI) opens them.
    master = MasterKeySpec(default_file=tmp_path / "master.key")
    opened = await open_keyring(Store(db), master, legacy_dir=None, clock=FixedClock())
    keyring = opened.keyring
    clock = FixedClock()
    outbox = OutboxSender(db, keyring, clock)
    await outbox.send(message(1))
    clock.advance(1)
    await outbox.send(message(2, OTHER))
    monkeypatch.setenv("PIIGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PIIGATE_DATABASE_URL", migrated_url)

    code, out, err = await asyncio.to_thread(run_cli, "sms", "outbox")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert "piigate: 000002 is your code." in lines[0] and "+49 ••••" in lines[0]
    assert "piigate: 000001 is your code." in lines[1]
    assert NUMBER not in out and OTHER not in out  # hints unless asked

    code, out, _ = await asyncio.to_thread(
        run_cli, "sms", "outbox", "-n", "1", "--json", "--show-numbers"
    )
    assert code == 0
    [line] = out.splitlines()
    assert json.loads(line) | {"at": None} == {
        "id": "cer_2",
        "at": None,
        "to": OTHER,
        "text": "piigate: 000002 is your code.",
    }


def test_piigate_sms_outbox_without_a_keyring_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIIGATE_DATA_DIR", str(tmp_path / "empty"))
    code, out, err = run_cli("sms", "outbox")
    assert code == 1 and out == ""
    assert err.strip().startswith("piigate: error: no keyring") and len(err.splitlines()) == 1


async def test_number_digests_agree_across_nodes_and_hide_the_number(
    db: Database, tmp_path: Path
) -> None:
    keyring = Keyring.ephemeral()
    store = Store(db)
    # Two nodes start at once: one creates the shared key, the other reads it back.
    one, two = (
        NumberDigests(store, keyring, FixedClock()),
        NumberDigests(store, keyring, FixedClock()),
    )
    phone, other = parse_phone(NUMBER), parse_phone(OTHER)
    first, second = await asyncio.gather(one.digest(phone), two.digest(phone))
    assert first == second and len(first) == 32
    assert await one.digest(other) != first
    assert NUMBER.lstrip("+") not in first
    stored = await raw_ceremonies(db)
    assert first not in stored  # the digest is not stored; the key only as ciphertext
    # A node with another keyring cannot read the key: it refuses rather than count wrongly.
    from piigate.errors import ServiceUnavailable

    with pytest.raises(ServiceUnavailable):
        await NumberDigests(store, Keyring.ephemeral(), FixedClock()).digest(phone)
