"""The ``piigate`` command line (CONTRACT §1).

Every command prints one clear line on stderr and exits non-zero on bad input — never a
traceback. Commands that touch the store open it through the same configuration as the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.exceptions import TyperException

from piigate import __version__
from piigate.cli.sms import sms_app
from piigate.config import Settings, load_settings
from piigate.errors import PiigateError, PolicyError
from piigate_authenticator import authenticator_app

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
app.add_typer(sms_app, name="sms")
app.add_typer(authenticator_app, name="authenticator")

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="YAML configuration or policy file.")
]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"piigate: error: {message}", err=True)
    raise typer.Exit(code)


def _settings(config: str | None) -> Settings:
    from sqlalchemy.exc import ArgumentError

    from piigate.store.db import normalize_url

    settings = load_settings(config)
    # A wrong URL is bad input: one line here, not a traceback from deep inside the store.
    try:
        normalize_url(settings.store_url)
    except (ValueError, ArgumentError) as exc:
        fail(f"invalid database URL: {exc}")
    return settings


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
            # explain_request reports a bad request as "request: ..."; name the file instead.
            if line.startswith("request: "):
                line = f"piigate: error: {request}: {line.removeprefix('request: ')}"
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2, sort_keys=False))


# -- service --------------------------------------------------------------------------------------
@app.command("serve")
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8080).")] = None,
) -> None:
    """Run the service: the decision API (and, later, the console)."""
    import dataclasses
    import gc

    import uvicorn

    from piigate.api.app import create_app
    from piigate.logs import configure_logging

    settings = _settings(config)
    if host is not None:
        settings = dataclasses.replace(settings, host=host)
    if port is not None:
        settings = dataclasses.replace(settings, port=port)
    if settings.policy_path is None:
        fail("no policy: pass --config FILE (a policy or configuration file) or set PIIGATE_POLICY")
    configure_logging(settings.log_format)
    # Refuse to start on a bad policy, before binding the port.
    from piigate.policy.holder import PolicyHolder

    holder = PolicyHolder.from_file(settings.policy_path)

    async def run() -> None:
        import signal

        from piigate.api.services import Services

        services = Services(settings, policy=holder)
        try:
            await services.start()
        except PiigateError as exc:
            fail(f"cannot start: {exc.detail}")
        application = create_app(settings, services=services, started=True)
        server = uvicorn.Server(
            uvicorn.Config(
                application,
                host=settings.host,
                port=settings.port,
                log_level="warning",
                access_log=False,
                proxy_headers=False,
                lifespan="on",
            )
        )
        loop = asyncio.get_running_loop()
        # SIGHUP reloads the policy where the platform has it (not on Windows, nor off the main
        # thread); the policy file is also polled for changes, so a reload never depends on it.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, services.request_reload)
        typer.echo(
            f"piigate {__version__} serving on http://{settings.host}:{settings.port}", err=True
        )
        # Everything loaded so far (modules, the app, the policy) lives as long as the process.
        # Frozen, the cyclic GC stops re-scanning it: a full collection took ~80 ms here, all
        # requests stalled behind it, and it set the p99 latency.
        gc.collect()
        gc.freeze()
        try:
            await server.serve()
        finally:
            if not server.started:
                await services.stop()
        if not server.started:
            fail(f"could not listen on {settings.host}:{settings.port}")

    _run_server(run())


def _run_server(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (uvicorn[standard] brings it), as uvicorn itself would."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional in principle
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


# -- store ----------------------------------------------------------------------------------------
async def _with_store(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from piigate.store import Database, Store

    db = Database.open(settings.store_url)
    try:
        await db.upgrade()
        return await work(Store(db))
    finally:
        await db.close()


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the schema migrations (serve also does this on start)."""
    from piigate.store import Database

    settings = _settings(config)

    async def work() -> str | None:
        db = Database.open(settings.store_url)
        try:
            await db.upgrade()
            return await db.current_revision()
        finally:
            await db.close()

    revision = _run(work())
    typer.echo(f"database at revision {revision}")


@audit_app.command("verify")
def audit_verify(config: ConfigOpt = None) -> None:
    """Verify the audit hash chain: exit 0 'ok N events', or exit 1 naming the first bad seq."""
    from piigate.audit.log import AuditLog
    from piigate.clock import SystemClock

    settings = _settings(config)
    if settings.database_url is None and not (settings.data_dir / "piigate.db").exists():
        # Verifying must not create an empty store and call it intact.
        fail(f"no piigate database under {settings.data_dir} (set PIIGATE_DATA_DIR or --config)")

    async def work(store: Any) -> Any:
        return await AuditLog(store.db, SystemClock()).verify()

    report = _run(_with_store(settings, work))
    if report.ok:
        typer.echo(f"ok {report.count} events")
        return
    where = f"seq {report.first_bad_seq}" if report.first_bad_seq is not None else "the chain head"
    fail(f"audit chain broken at {where}: {report.reason} ({report.count} events checked)")


async def _audit(
    settings: Settings, type: str, subject: str | None, data: dict[str, object]
) -> None:
    from piigate.audit.log import AuditLog
    from piigate.clock import SystemClock

    async def work(store: Any) -> None:
        audit = AuditLog(store.db, SystemClock())
        try:
            await audit.record(type, subject_id=subject, data=data)
        finally:
            await audit.stop()

    await _with_store(settings, work)


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

    settings = _settings(config)
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

    async def work(store: Any) -> None:
        await store.add_user(name, digest, roles, SystemClock().now())

    _run(_with_store(settings, work))
    _run(_audit(settings, "user_added", name, {"roles": roles}))
    typer.echo(f"user {name} added" + (f" with roles {', '.join(roles)}" if roles else ""))


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

    settings = _settings(config)
    key_id, secret, digest = generate_api_key()
    roles, scopes = sorted(set(role or [])), sorted(set(scope or []))

    async def work(store: Any) -> None:
        await store.create_api_key(key_id, name, digest, roles, scopes, SystemClock().now())

    _run(_with_store(settings, work))
    _run(
        _audit(
            settings, "api_key_created", key_id, {"name": name, "scopes": scopes, "roles": roles}
        )
    )
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
    """Rotate keyring keys; old keys are kept, so existing tokens and secrets stay readable."""
    from piigate.crypto.keyring import Keyring

    settings = _settings(config)
    if not signing and not data:
        fail("nothing to rotate: --no-signing and --no-data leave no key")
    # The same directory as Services.start; rotation holds the keyring's own file lock.
    keyring = Keyring.open(settings.data_dir / "keyring")
    signing_kid = keyring.rotate_signing_key() if signing else None
    data_kid = keyring.rotate_data_key() if data else None
    rewrapped, failed = 0, list[str]()
    if data_kid is not None:
        rewrapped, failed = _run(_with_store(settings, lambda store: _rewrap(store, keyring)))
    event: dict[str, object] = {"rewrapped": rewrapped}
    if signing_kid is not None:
        event["signing_kid"] = signing_kid
    if data_kid is not None:
        event["data_kid"] = data_kid
    if failed:
        event["failed"] = failed
    _run(_audit(settings, "keys_rotated", None, event))
    rotated = " and ".join(
        f"{what} key {kid}"
        for what, kid in (("signing", signing_kid), ("data", data_kid))
        if kid is not None
    )
    suffix = f"; {rewrapped} secrets re-wrapped" if data_kid is not None else ""
    typer.echo(f"rotated {rotated}{suffix}")
    if failed:
        fail(f"{len(failed)} factor secrets could not be re-wrapped: {', '.join(failed)}")


async def _rewrap(store: Any, keyring: Any) -> tuple[int, list[str]]:
    """Move every factor secret to the current data key, each with a compare-and-set.

    A service may write secrets meanwhile (under the old key, which stays in the keyring): a
    lost compare-and-set re-reads the row and tries again, so no newer secret is overwritten.
    """
    from sqlalchemy import select

    from piigate.crypto.keyring import DecryptionError
    from piigate.factors.ports import factor_aad
    from piigate.store.tables import factors

    stmt = select(factors.c.id).where(factors.c.secret.is_not(None)).order_by(factors.c.id)
    ids = await store.db.read(lambda conn: conn.execute(stmt).scalars().all())
    current = f".{keyring.data_kid}."
    rewrapped, failed = 0, list[str]()
    for factor_id in ids:
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


def main() -> None:
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
