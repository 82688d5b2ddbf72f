"""``piigate keys rotate`` on SQLite and PostgreSQL: new keys in the store, factor secrets
re-wrapped, and a node that is running picks the new keys up."""

from __future__ import annotations

import asyncio
import base64
import json
import re

from cli_support import run_piigate, sql
from typer.testing import CliRunner

from piigate.cli import app
from piigate.clock import SystemClock
from piigate.config import load_settings
from piigate.crypto.keyring import KeyKind, Keyring, open_keyring
from piigate.factors.ports import factor_aad
from piigate.store import Database, Store

SECRET = b"JBSWY3DPEHPK3PXP"
FACTOR_ID = "fct_rotate1"


def keys_of(env: dict[str, str]) -> Keyring:
    """The deployment's keys as a node with this environment opens them (then held in memory)."""
    settings = load_settings(environ=env)

    async def work() -> Keyring:
        db = Database.open(settings.store_url)
        try:
            await db.upgrade()
            opened = await open_keyring(
                Store(db),
                settings.master_key_spec(),
                legacy_dir=settings.data_dir / "keyring",
                clock=SystemClock(),
            )
            return opened.keyring
        finally:
            await db.close()

    return asyncio.run(work())


def _enroll(database_url: str, keyring: Keyring) -> str:
    token = keyring.encrypt(SECRET, aad=factor_aad(FACTOR_ID))

    async def work() -> None:
        db = Database.open(database_url)
        try:
            await db.upgrade()
            await Store(db).add_factor(
                id=FACTOR_ID,
                subject_id="alice",
                kind="totp",
                now=SystemClock().now(),
                secret=token,
                state="active",
            )
        finally:
            await db.close()

    asyncio.run(work())
    return token


def test_keys_rotate_rewraps_factor_secrets(
    runner: CliRunner, cli_env: dict[str, str], database_url: str
) -> None:
    keyring = keys_of(cli_env)
    old_signing, old_data = keyring.signing_kid, keyring.data_kid
    old_token = _enroll(database_url, keyring)

    result = runner.invoke(app, ["keys", "rotate"], env=cli_env)
    assert result.exit_code == 0, result.output
    match = re.fullmatch(
        r"rotated signing key (sig-\w+) and data key (dek-\w+); 1 secrets re-wrapped\n",
        result.stdout,
    )
    assert match, result.stdout
    new_signing, new_data = match[1], match[2]
    assert new_signing != old_signing and new_data != old_data

    ((token,),) = sql(database_url, "SELECT secret FROM factors WHERE id = :id", id=FACTOR_ID)
    assert token != old_token and token.split(".")[1] == new_data
    keyring = keys_of(cli_env)
    assert keyring.decrypt(token, aad=factor_aad(FACTOR_ID)) == SECRET
    assert keyring.decrypt(old_token, aad=factor_aad(FACTOR_ID)) == SECRET  # old key kept
    keys = {(k.kind, k.kid): k.current for k in keyring.list_keys()}
    assert keys == {
        (KeyKind.SIGNING, old_signing): False,
        (KeyKind.SIGNING, new_signing): True,
        (KeyKind.DATA, old_data): False,
        (KeyKind.DATA, new_data): True,
    }

    ((data,),) = sql(database_url, "SELECT data FROM audit_events WHERE type = 'keys_rotated'")
    event = json.loads(data) if isinstance(data, str) else data
    assert event == {"signing_kid": new_signing, "data_kid": new_data, "rewrapped": 1}
    state = vars(keyring)["_state"]
    material = [base64.urlsafe_b64encode(k.secret.reveal()).decode() for k in state.data.values()]
    material += [str(k.private.as_dict(private=True)["d"]) for k in state.signing.values()]
    everything = str(sql(database_url, "SELECT * FROM audit_events")) + result.output
    assert not any(m in everything for m in material)
    assert SECRET.decode() not in everything


def test_keys_rotate_signing_only_leaves_secrets_alone(
    runner: CliRunner, cli_env: dict[str, str], database_url: str
) -> None:
    keyring = keys_of(cli_env)
    old_data = keyring.data_kid
    old_token = _enroll(database_url, keyring)

    result = runner.invoke(app, ["keys", "rotate", "--no-data"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"rotated signing key sig-\w+\n", result.stdout), result.stdout
    ((token,),) = sql(database_url, "SELECT secret FROM factors WHERE id = :id", id=FACTOR_ID)
    assert token == old_token
    assert keys_of(cli_env).data_kid == old_data


def test_keys_rotate_needs_something_to_rotate(runner: CliRunner, cli_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["keys", "rotate", "--no-signing", "--no-data"], env=cli_env)
    assert result.exit_code == 1
    assert "nothing to rotate" in result.output


def test_keys_rotate_with_another_master_key_is_one_line_and_changes_nothing(
    cli_env: dict[str, str], database_url: str
) -> None:
    keys_of(cli_env)  # the deployment's keys, sealed by DATA_DIR/master.key
    before = sql(database_url, "SELECT kid, sealed FROM keyring_keys ORDER BY seq")
    wrong = {**cli_env, "PIIGATE_MASTER_KEY": base64.b64encode(b"w" * 32).decode()}

    done = run_piigate("keys", "rotate", env=wrong)

    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("piigate: error: the store's keys are sealed by master key mk-")
    assert wrong["PIIGATE_MASTER_KEY"] not in line
    assert sql(database_url, "SELECT kid, sealed FROM keyring_keys ORDER BY seq") == before
