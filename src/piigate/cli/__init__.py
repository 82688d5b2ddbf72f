"""The ``piigate`` command line (CONTRACT §1): one module per command group.

Every command prints one clear line on stderr and exits non-zero on bad input — never a
traceback. Commands that touch the store open it through the same configuration as the service.
Each group imports what it needs when it runs, so ``piigate policy check`` starts without the
web stack or the database drivers.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from piigate.cli.audit import audit_app
from piigate.cli.authenticator import authenticator_app
from piigate.cli.db import db_app
from piigate.cli.demo import demo_app
from piigate.cli.gateway import gateway_app
from piigate.cli.keys import keys_app
from piigate.cli.login import login
from piigate.cli.policy import policy_app
from piigate.cli.risk import risk_app
from piigate.cli.scan import scan_app
from piigate.cli.serve import serve
from piigate.cli.sms import sms_app
from piigate.cli.users import users_app
from piigate.errors import PiigateError

__all__ = ["app", "main"]

app = typer.Typer(
    name="piigate",
    help="Step-up authentication around personally identifiable information.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(sms_app, name="sms")
app.add_typer(authenticator_app, name="authenticator")
app.add_typer(gateway_app, name="gateway")
app.add_typer(risk_app, name="risk")
app.add_typer(scan_app, name="scan")
app.add_typer(demo_app, name="demo")
app.command("serve")(serve)
app.command("login")(login)


def main() -> None:
    """The console script: usage and domain errors become one ``piigate: error:`` line."""
    try:
        # Not standalone: usage errors come back to us, to be printed as one plain line.
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except TyperException as exc:  # usage errors: unknown command, missing argument, bad option
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        if message:  # empty when the help was shown instead (no arguments at all)
            typer.echo(f"piigate: error: {message} (see --help)", err=True)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except PiigateError as exc:
        errors = getattr(exc, "errors", None)
        if errors:
            for line in errors:
                typer.echo(line, err=True)
            sys.exit(1)
        typer.echo(f"piigate: error: {exc.detail}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
