"""``piigate risk ...``: measure the risk engine on login histories.

``risk eval`` replays a login history (the public RBA data set's CSV format) through the
engine's scoring and prints its metrics; ``risk synth`` writes a labelled synthetic history in
that format, so anyone can reproduce the numbers of docs/RISK.md.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from piigate.cli.common import fail, run

if TYPE_CHECKING:
    from piigate.policy.compiled import CompiledPolicy
    from piigate.risk.evaluation.rba import LoginRecord
    from piigate.risk.evaluation.replay import Replayed

__all__ = ["risk_app"]

risk_app = typer.Typer(help="Measure the risk engine on login histories.", no_args_is_help=True)


@risk_app.command("eval")
def risk_eval(
    logins: Annotated[str, typer.Option("--logins", help="Login history (CSV).")],
    format_: Annotated[str, typer.Option("--format", help="The file's format (only rba).")] = "rba",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    threshold: Annotated[
        int, typer.Option(min=0, max=100, help="The score that steps up (the policy's).")
    ] = 60,
    policy: Annotated[
        str | None, typer.Option(help="Policy file whose risk weights to use.")
    ] = None,
    ignore_devices: Annotated[
        bool, typer.Option(help="Ignore the Device ID column (as if no cookie were presented).")
    ] = False,
) -> None:
    """Replay a login history through the risk engine and print its metrics."""
    from piigate.risk.evaluation.report import render, report

    if format_ != "rba":
        fail(f"unknown format {format_!r} (expected rba)")
    compiled = _policy(policy)
    records = _read(logins)
    progress = None if as_json else _progress_bar(len(records))
    try:
        replayed = run(_replay(records, compiled, ignore_devices, progress))
    finally:
        if progress is not None:
            progress(-1)
    data = report(replayed, threshold=threshold)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for line in render(data):
        typer.echo(line)


@risk_app.command("synth")
def risk_synth(
    out: Annotated[str, typer.Option("--out", help="Where to write the CSV.")],
    users: Annotated[int, typer.Option(min=1, max=1_000_000, help="Legitimate users.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same file.")] = 1,
    days: Annotated[int, typer.Option(min=15, max=3650, help="Days of history.")] = 182,
) -> None:
    """Write a labelled synthetic login history (RBA format, with attackers)."""
    from piigate.risk.evaluation.synth import synthesize

    rows = 0
    try:
        with open(out, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            for row in synthesize(users=users, seed=seed, days=days):
                writer.writerow(row)
                rows += 1
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"{out}: {rows - 1} login attempts of {users} users (seed {seed})")


def _policy(path: str | None) -> CompiledPolicy | None:
    """The policy whose risk weights to use (None: the defaults); its errors, one per line."""
    from piigate.errors import PolicyError
    from piigate.policy import compile_policy, load_policy

    if path is None:
        return None
    try:
        return compile_policy(load_policy(path))
    except PolicyError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None


def _read(path: str) -> list[LoginRecord]:
    from piigate.risk.evaluation.rba import RbaFormatError, read_rba

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(read_rba(handle, source=path))
    except RbaFormatError as exc:
        fail(exc.detail)
    except UnicodeDecodeError:
        fail(f"{path}: not UTF-8 text")
    except csv.Error as exc:
        fail(f"{path}: not CSV ({exc})")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")


async def _replay(
    records: list[LoginRecord],
    compiled: CompiledPolicy | None,
    ignore_devices: bool,
    progress: Callable[[int], None] | None,
) -> Replayed:
    """The live engine (``ContextRisk`` over ``MemoryHistory`` and in-memory counters) first,
    then the baselines, on one replay."""
    from piigate.crypto.secret import Secret
    from piigate.policy.holder import PolicyHolder
    from piigate.risk.behaviour import Behaviour
    from piigate.risk.clients import ClientParser
    from piigate.risk.engine import ContextRisk
    from piigate.risk.evaluation.observe import RecordObserver
    from piigate.risk.evaluation.replay import Scorer, replay
    from piigate.risk.evaluation.scorers import (
        Always,
        EngineScorer,
        Freeman,
        Never,
        NewCountryOrBrowser,
    )
    from piigate.risk.geo_settings import DEFAULT_HOSTING_ASNS
    from piigate.risk.memory_history import MemoryHistory
    from piigate.store.memory_counters import MemoryCounters

    # A key of this run only: the replay's hashes never leave the process.
    key = secrets.token_bytes(32)
    observer = RecordObserver(
        key=key,
        clients=ClientParser().parse,
        hosting_asns=DEFAULT_HOSTING_ASNS,
        devices=not ignore_devices,
    )
    memory = MemoryHistory()
    # No audit trail: a replay's early warnings would go nowhere.
    behaviour = Behaviour(MemoryCounters(), None, key=Secret(key))
    engine = ContextRisk(history=memory, behaviour=behaviour, policy=PolicyHolder(compiled))
    scorers: list[Scorer] = [
        EngineScorer(engine),
        Never(),
        Always(),
        NewCountryOrBrowser(),
        Freeman(),
    ]
    return await replay(
        records,
        observer.observe,
        scorers,
        memory=memory,
        learn=engine.remember_observation,
        progress=progress,
    )


def _progress_bar(total: int) -> Callable[[int], None] | None:
    """A progress bar on stderr when it is a terminal (``-1`` closes it), else None."""
    if not sys.stderr.isatty() or os.environ.get("TERM") == "dumb":
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task("replaying", total=total)
    bar.start()

    def advance(done: int) -> None:
        if done < 0:
            bar.stop()
        else:
            bar.update(task, completed=done)

    return advance
