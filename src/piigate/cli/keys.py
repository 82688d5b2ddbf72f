"""``piigate keys ...``: API keys, and rotating the deployment's signing and data keys (kept in
the store, sealed by the master key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer

from piigate.cli.common import (
    ConfigOpt,
    fail,
    open_keys,
    record_audit,
    run,
    settings_from,
    with_store,
)

if TYPE_CHECKING:
    from piigate.crypto.keyring import Keyring, OpenedKeyring
    from piigate.store import Store

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="API keys for services, apps and database clients.", no_args_is_help=True
)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (the app or service).")],
    role: Annotated[list[str] | None, typer.Option("--role", help="A role (repeatable).")] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="A scope, e.g. decisions (repeatable).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create an API key; it is printed once and stored only as a SHA-256 digest."""
    from piigate.clock import SystemClock
    from piigate.identity import generate_api_key

    settings = settings_from(config)
    key_id, secret, digest = generate_api_key()
    roles, scopes = sorted(set(role or [])), sorted(set(scope or []))

    async def work(store: Store) -> None:
        await store.create_api_key(key_id, name, digest, roles, scopes, SystemClock().now())

    run(with_store(settings, work))
    event: dict[str, object] = {"name": name, "scopes": scopes, "roles": roles}
    run(record_audit(settings, "api_key_created", key_id, event))
    typer.echo(f"# API key {key_id} ({name}); shown once, store it now:", err=True)
    typer.echo(secret.reveal())


@keys_app.command("rotate")
def keys_rotate(
    signing: Annotated[
        bool, typer.Option("--signing/--no-signing", help="Rotate the grant signing key.")
    ] = True,
    data: Annotated[
        bool,
        typer.Option("--data/--no-data", help="Rotate the data key and re-wrap factor secrets."),
    ] = True,
    config: ConfigOpt = None,
) -> None:
    """Rotate the deployment's keys in the store; old keys are kept, so existing tokens and
    secrets stay readable. Running nodes pick the new keys up without a restart."""
    settings = settings_from(config)
    if not signing and not data:
        fail("nothing to rotate: --no-signing and --no-data leave no key")

    async def rotate(store: Store) -> _Rotation:
        opened = await open_keys(settings, store, write=True)
        keyring = opened.keyring
        signing_kid = await keyring.rotate_signing_key() if signing else None
        data_kid = await keyring.rotate_data_key() if data else None
        rewrapped, failed = await _rewrap(store, keyring) if data_kid else (0, [])
        return _Rotation(opened, signing_kid, data_kid, rewrapped, failed)

    opened, signing_kid, data_kid, rewrapped, failed = run(with_store(settings, rotate))
    if opened.created:
        run(record_audit(settings, "keyring_created", None, {"kids": list(opened.created)}))
    if opened.imported:
        run(record_audit(settings, "keyring_imported", None, {"kids": list(opened.imported)}))
    event: dict[str, object] = {"rewrapped": rewrapped}
    if signing_kid is not None:
        event["signing_kid"] = signing_kid
    if data_kid is not None:
        event["data_kid"] = data_kid
    if failed:
        event["failed"] = failed
    run(record_audit(settings, "keys_rotated", None, event))
    rotated = " and ".join(
        f"{what} key {kid}"
        for what, kid in (("signing", signing_kid), ("data", data_kid))
        if kid is not None
    )
    suffix = f"; {rewrapped} secrets re-wrapped" if data_kid is not None else ""
    typer.echo(f"rotated {rotated}{suffix}")
    if failed:
        fail(f"{len(failed)} factor secrets could not be re-wrapped: {', '.join(failed)}")


class _Rotation(NamedTuple):
    opened: OpenedKeyring
    signing_kid: str | None
    data_kid: str | None
    rewrapped: int
    failed: list[str]


async def _rewrap(store: Store, keyring: Keyring) -> tuple[int, list[str]]:
    """Move every factor secret to the current data key, each with a compare-and-set.

    A service may write secrets meanwhile (under the old key, which stays in the keyring): a
    lost compare-and-set re-reads the row and tries again, so no newer secret is overwritten.
    """
    from piigate.crypto.keyring import DecryptionError
    from piigate.factors.ports import factor_aad

    current = f".{keyring.data_kid}."
    rewrapped, failed = 0, list[str]()
    for factor_id in await store.factor_ids_with_secret():
        for _ in range(5):
            row = await store.get_factor(factor_id)
            token = None if row is None else row.secret
            if token is None or current in token:
                break  # deleted, or already under the new key
            try:
                new = keyring.rewrap(token, aad=factor_aad(factor_id))
            except DecryptionError:
                failed.append(factor_id)
                break
            if await store.replace_factor_secret(factor_id, expected=token, new=new):
                rewrapped += 1
                break
        else:
            failed.append(factor_id)
    return rewrapped, failed
