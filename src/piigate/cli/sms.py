"""``piigate sms ...``: the SMS outbox, for development with the embedded provider.

``piigate sms outbox`` prints the latest messages the ``outbox`` provider kept in the store,
codes included, so a developer can step up without a phone. It reads the store and the keyring
the service uses (``--config`` / ``PIIGATE_*``); numbers are shown as hints unless
``--show-numbers`` is given.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from piigate.cli.common import ConfigOpt, open_keys, run, settings_from, with_store

if TYPE_CHECKING:
    from piigate.factors.sms.outbox import OutboxMessage
    from piigate.store import Store

__all__ = ["sms_app"]

sms_app = typer.Typer(help="SMS codes (the development outbox).", no_args_is_help=True)


@sms_app.command("outbox")
def outbox(
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="How many messages.")
    ] = 10,
    show_numbers: Annotated[
        bool, typer.Option("--show-numbers", help="Print full numbers instead of hints.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print the latest messages of the SMS outbox, newest first."""
    from piigate.clock import SystemClock
    from piigate.factors.sms.outbox import OutboxSender
    from piigate.factors.sms.settings import SmsProvider

    settings = settings_from(config)

    async def read(store: Store) -> list[OutboxMessage]:
        keyring = (await open_keys(settings, store, write=False)).keyring
        return await OutboxSender(store.db, keyring, SystemClock()).latest(limit)

    messages = run(with_store(settings, read))
    if settings.sms.provider is not SmsProvider.OUTBOX:
        typer.echo(
            f"note: the SMS provider is {settings.sms.provider.value}; the outbox holds only "
            "what was sent while it was the provider",
            err=True,
        )
    if not messages and not as_json:
        typer.echo("the outbox is empty", err=True)
    for message in messages:
        to = message.to.reveal() if show_numbers and message.to is not None else message.hint
        text = message.text.reveal() if message.text is not None else "(unreadable)"
        if as_json:
            line = {"id": message.message_id, "at": message.at.isoformat(), "to": to, "text": text}
            typer.echo(json.dumps(line, ensure_ascii=False))
        else:
            typer.echo(f"{message.at.isoformat(timespec='seconds')}  {to}  {text}")
