"""``piigate demo``: everything in one process with a walkthrough (``demo/stack.py``), and
``piigate demo code``: a demo user's current TOTP code (``demo/codes.py``)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from piigate.cli.common import fail, open_keys, run, with_store

if TYPE_CHECKING:
    from piigate.demo.codes import TotpCode
    from piigate.store import Store

__all__ = ["demo_app"]

DEFAULT_DATA_DIR = Path(".piigate-demo")

demo_app = typer.Typer(
    help="The all-in-one demo: the service and console, both gateways, a sample API and its "
    "users. Without a command: run it until Ctrl-C, printing the URLs, the users' passwords "
    "and a walkthrough.",
    invoke_without_command=True,
)

DataDirOpt = Annotated[
    Path,
    typer.Option("--data-dir", help="The demo's data (kept between runs).", file_okay=False),
]


@demo_app.callback()
def demo(
    context: typer.Context,
    port: Annotated[
        int, typer.Option(help="The first of four ports: service P, API P+1, gateways P+2, P+3.")
    ] = 8080,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    reset: Annotated[bool, typer.Option("--reset", help="Start over with new data.")] = False,
) -> None:
    """Run the demo until Ctrl-C, printing the URLs, the users and a walkthrough."""
    if context.invoked_subcommand is not None:
        return
    from piigate.cli.serve import run_server
    from piigate.demo.stack import DemoOptions, run_demo

    if not 1024 <= port <= 65532:
        fail("--port must be between 1024 and 65532 (the demo uses P to P+3)")
    options = DemoOptions(
        port=port,
        data_dir=data_dir.absolute(),
        reset=reset,
        piigate=_piigate_command(),
        python=sys.executable,
        env=dict(os.environ),
    )
    run_server(run_demo(options, say=_say))


@demo_app.command("code")
def code(
    user: Annotated[str, typer.Option(help="The demo user (demo or admin).")] = "demo",
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Print a demo user's TOTP code.

    The code their authenticator app would show now; when this step's code was used already
    (each is accepted once), the next one, after waiting for its step to begin.
    """
    from piigate.clock import SystemClock
    from piigate.config import Settings
    from piigate.demo.codes import demo_code

    if not (data_dir / "piigate.db").exists():
        fail(f"no demo data in {data_dir}: start `piigate demo` first")
    settings = Settings(data_dir=data_dir)

    async def work(store: Store) -> TotpCode:
        opened = await open_keys(settings, store, write=False)
        return await demo_code(store, opened.keyring, user, now=SystemClock().now())

    found = run(with_store(settings, work))
    if found.wait > 0:
        typer.echo(
            f"# {user}'s code of this 30-second step was used: waiting {found.wait:.0f} s "
            "for the next one",
            err=True,
        )
        time.sleep(found.wait)
    typer.echo(found.code.reveal())


def _say(text: str) -> None:
    typer.echo(text)
    sys.stdout.flush()


def _piigate_command() -> str:
    """This ``piigate`` command, as another shell can run it."""
    invoked = Path(sys.argv[0])
    if invoked.name == "piigate" and invoked.exists():
        return str(invoked.absolute())
    beside = Path(sys.executable).with_name("piigate")
    return str(beside) if beside.exists() else "piigate"
