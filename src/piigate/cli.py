"""The ``piigate`` command line (CONTRACT §1).

Every command prints one clear line on stderr and exits non-zero on bad input — never a
traceback. Commands that touch the store open it through the same configuration as the service.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer

from piigate.config import Settings, load_settings
from piigate.errors import PiigateError, PolicyError

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="piigate",
    help="Step-up authentication around personally identifiable information.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(help="Check, test and explain policy files.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
users_app = typer.Typer(help="Local users (the embedded identity).", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys for services, apps and database clients.", no_args_is_help=True
)
db_app = typer.Typer(
    help="The store (SQLite by default, PostgreSQL in production).", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="YAML configuration or policy file.")
]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"piigate: error: {message}", err=True)
    raise typer.Exit(code)


def _settings(config: str | None) -> Settings:
    return load_settings(config)


def _run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


# -- policy ---------------------------------------------------------------------------------------
@policy_app.command("check")
def policy_check(file: Annotated[str, typer.Argument(help="Policy file.")]) -> None:
    """Validate a policy file: exit 0, or exit 1 with FILE:LINE:COL: message lines."""
    from piigate.policy import compile_policy, load_policy

    try:
        policy = load_policy(file)
        compile_policy(policy)
    except PolicyError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{file}: ok ({len(policy.rules)} rules, {len(policy.levels)} levels, "
        f"{len(policy.pii)} PII classes, profile {policy.profile or 'none'})"
    )


@policy_app.command("test")
def policy_test(
    file: Annotated[str, typer.Argument(help="Policy file.")],
    cases: Annotated[str, typer.Argument(help="Test cases (YAML list).")],
) -> None:
    """Run policy test cases: a PASS/FAIL line per case; exit 1 if any fails."""
    from piigate.policy import compile_policy, load_policy
    from piigate.policy.cases import load_cases, run_case

    try:
        compiled = compile_policy(load_policy(file))
        loaded = load_cases(cases, compiled)
    except PolicyError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    if not loaded:
        fail(f"{cases}: no test cases")
    failed = 0
    for case in loaded:
        result = run_case(compiled, case)
        if result.passed:
            typer.echo(f"PASS  {case.name}")
        else:
            failed += 1
            typer.echo(f"FAIL  {case.name} ({case.position}): {'; '.join(result.failures)}")
    typer.echo(f"{len(loaded) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@policy_app.command("explain")
def policy_explain(
    file: Annotated[str, typer.Argument(help="Policy file.")],
    request: Annotated[str, typer.Option("--request", help="JSON file: a §4.2 decision request.")],
) -> None:
    """Print the decision for a request as JSON, with the reason for each rule."""
    from piigate.explain import explain_request

    try:
        data = json.loads(Path(request).read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"{request}: cannot read: {exc.strerror}")
    except json.JSONDecodeError as exc:
        fail(f"{request}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")
    try:
        result = _run(explain_request(file, data))
    except PolicyError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2, sort_keys=False))


def main() -> None:
    try:
        app()
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
