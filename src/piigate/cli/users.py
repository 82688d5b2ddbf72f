"""``piigate users ...``: local users (the embedded identity)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from piigate.cli.common import ConfigOpt, fail, record_audit, run, settings_from, with_store

if TYPE_CHECKING:
    from piigate.store import Store

__all__ = ["users_app"]

users_app = typer.Typer(help="Local users (the embedded identity).", no_args_is_help=True)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    role: Annotated[list[str] | None, typer.Option("--role", help="A role (repeatable).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a local user (argon2id password hash)."""
    from piigate.clock import SystemClock
    from piigate.crypto.secret import Secret
    from piigate.identity import hash_password

    settings = settings_from(config)
    if not name.strip() or len(name) > 255:
        fail("the user name must be 1 to 255 characters")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        fail("the password must have at least 8 characters")
    digest = hash_password(Secret(password))
    roles = sorted(set(role or []))

    async def work(store: Store) -> None:
        await store.add_user(name, digest, roles, SystemClock().now())

    run(with_store(settings, work))
    run(record_audit(settings, "user_added", name, {"roles": roles}))
    typer.echo(f"user {name} added" + (f" with roles {', '.join(roles)}" if roles else ""))
