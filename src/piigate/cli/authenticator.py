"""``piigate authenticator ...``: the reference push authenticator from a terminal.

``enroll URI`` creates a device key pair and completes the enrollment the link was made for;
``pending`` shows the pushes waiting (who, what, how much to whom — never the number);
``approve ID NUMBER`` answers with the number the step-up page shows; ``deny ID`` answers
"this wasn't me". The device itself is :mod:`piigate_authenticator`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from piigate.cli.common import fail
from piigate.factors.push.protocol import DeviceAlgorithm, parse_enroll_uri
from piigate_authenticator import (
    DEFAULT_FILE,
    FILE_ENV,
    MAX_WAIT,
    Authenticator,
    AuthenticatorError,
    KeyFile,
    describe_push,
    is_push_id,
)

__all__ = ["authenticator_app"]

authenticator_app = typer.Typer(
    help="The reference push authenticator (a device key in a local file).",
    no_args_is_help=True,
)

FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        envvar=FILE_ENV,
        help=f"The key file (default {DEFAULT_FILE}).",
        show_default=False,
    ),
]


def _authenticator(file: Path | None) -> Authenticator:
    return Authenticator(KeyFile(file or DEFAULT_FILE))


def _enroll_uri(value: str) -> str:
    try:
        parse_enroll_uri(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _push_id(value: str) -> str:
    if not is_push_id(value):
        raise typer.BadParameter("not a push id (see: piigate authenticator pending)")
    return value


@authenticator_app.command("enroll")
def enroll(
    uri: Annotated[
        str,
        typer.Argument(
            metavar="URI", callback=_enroll_uri, help="The piigate-push://enroll?... link."
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="A name for this device: the factor's label (unless the link was made with "
            "one), shown in GET /v1/factors.",
        ),
    ] = "piigate authenticator",
    alg: Annotated[
        DeviceAlgorithm, typer.Option("--alg", help="Key type: ES256 (P-256) or EdDSA (Ed25519).")
    ] = DeviceAlgorithm.ES256,
    file: FileOpt = None,
) -> None:
    """Enrol this device with the link from POST /v1/factors/push."""
    if not 1 <= len(name) <= 64:
        raise typer.BadParameter("must be 1 to 64 characters", param_hint="--name")
    try:
        entry = _authenticator(file).enroll(uri, name=name, alg=alg)
    except AuthenticatorError as exc:
        fail(str(exc))
    typer.echo(f"enrolled device {entry.device_id} for {entry.subject} at {entry.server}")


@authenticator_app.command("pending")
def pending(
    wait: Annotated[
        int, typer.Option("--wait", min=0, max=MAX_WAIT, help="Wait up to N seconds for one.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    file: FileOpt = None,
) -> None:
    """Show the pushes waiting for approval (type the number the step-up page shows)."""
    try:
        found = _authenticator(file).pending(wait=wait)
    except AuthenticatorError as exc:
        fail(str(exc))
    if not found and not as_json:
        typer.echo("no pushes waiting", err=True)
    for entry, push in found:
        if as_json:
            typer.echo(json.dumps({**push, "device_id": entry.device_id}, sort_keys=True))
        else:
            typer.echo(describe_push(push))


@authenticator_app.command("approve")
def approve(
    push_id: Annotated[
        str,
        typer.Argument(metavar="ID", callback=_push_id, help="The push id (from pending)."),
    ],
    number: Annotated[
        int, typer.Argument(metavar="NUMBER", min=10, max=99, help="The number on the page.")
    ],
    file: FileOpt = None,
) -> None:
    """Approve a push with the number the step-up page shows."""
    try:
        state = _authenticator(file).answer(push_id, approve=True, number=number)
    except AuthenticatorError as exc:
        fail(str(exc))
    typer.echo(f"{push_id}: {state}")


@authenticator_app.command("deny")
def deny(
    push_id: Annotated[
        str,
        typer.Argument(metavar="ID", callback=_push_id, help="The push id (from pending)."),
    ],
    file: FileOpt = None,
) -> None:
    """Deny a push you did not start ("this wasn't me"): the step-up fails and is reported."""
    try:
        state = _authenticator(file).answer(push_id, approve=False)
    except AuthenticatorError as exc:
        fail(str(exc))
    typer.echo(f"{push_id}: {state}")
