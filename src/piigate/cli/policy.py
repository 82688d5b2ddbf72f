"""``piigate policy ...``: check, test and explain policy files (CONTRACT §2).

Policy errors are printed as they come, one ``FILE:LINE:COL: message`` line each.
"""

from __future__ import annotations

import json
from typing import Annotated, NoReturn

import typer

from piigate.cli.common import fail, run
from piigate.errors import PolicyError

__all__ = ["policy_app"]

policy_app = typer.Typer(help="Check, test and explain policy files.", no_args_is_help=True)


def _exit_with(error: PolicyError) -> NoReturn:
    for line in error.errors:
        typer.echo(line, err=True)
    raise typer.Exit(1) from None


@policy_app.command("check")
def policy_check(file: Annotated[str, typer.Argument(help="Policy file.")]) -> None:
    """Validate a policy file: exit 0, or exit 1 with FILE:LINE:COL: message lines."""
    from piigate.policy import compile_policy, load_policy

    try:
        policy = load_policy(file)
        compile_policy(policy)
    except PolicyError as exc:
        _exit_with(exc)
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
        _exit_with(exc)
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
    from piigate.policy.yamlnodes import FileTooLarge, read_limited

    try:
        data = json.loads(read_limited(request).decode("utf-8"))
    except FileTooLarge as exc:
        fail(f"{request}: {exc}")
    except OSError as exc:
        fail(f"{request}: cannot read: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{request}: the file is not UTF-8 text")
    except json.JSONDecodeError as exc:
        fail(f"{request}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")
    try:
        result = run(explain_request(file, data))
    except PolicyError as exc:
        for line in exc.errors:
            # explain_request reports a bad request as "request: ..."; name the file instead.
            if line.startswith("request: "):
                line = f"piigate: error: {request}: {line.removeprefix('request: ')}"
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2, sort_keys=False))
