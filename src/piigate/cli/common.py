"""What the ``piigate`` commands share: ``--config``, the settings, the one-line error exit, and a
store opened for one command (CONTRACT §1: bad input is one line on stderr and a non-zero exit,
never a traceback)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from piigate.config import Settings, load_settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from piigate.cli.workers import Slot
    from piigate.crypto.keyring import OpenedKeyring
    from piigate.policy.holder import PolicyHolder
    from piigate.store import Store

__all__ = [
    "ConfigOpt",
    "MetricsOpt",
    "fail",
    "gateway_start",
    "metrics_address",
    "open_keys",
    "record_audit",
    "run",
    "serve_metrics",
    "settings_from",
    "with_store",
    "worker_listener",
]

T = TypeVar("T")

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="YAML configuration or policy file.")
]


MetricsOpt = Annotated[
    str | None,
    typer.Option("--metrics", help="HOST:PORT to serve Prometheus metrics on (GET /metrics)."),
]


def metrics_address(text: str | None) -> tuple[str, int] | None:
    """``--metrics HOST:PORT`` read (a bad one is a one-line error and exit 1)."""
    if text is None:
        return None
    from piigate.origins import parse_listen

    try:
        return parse_listen(text, default_host="127.0.0.1")
    except ValueError as exc:
        fail(f"--metrics: {exc}")


def serve_metrics(
    registry: CollectorRegistry, at: tuple[str, int]
) -> Callable[[], Awaitable[None]]:
    """``GET /metrics`` of ``registry`` on ``at`` (a thread of its own); returns its stop."""
    from prometheus_client import start_http_server

    host, port = at
    try:
        server, thread = start_http_server(port, host, registry=registry)
    except OSError as exc:
        fail(f"--metrics: cannot listen on {host}:{port} ({type(exc).__name__})")

    async def stop() -> None:
        server.shutdown()
        server.server_close()
        await asyncio.to_thread(thread.join, 5)

    return stop


def on_signal(number: int, callback: Callable[[], None]) -> None:
    """Call ``callback`` on signal ``number`` where the platform has it (not on Windows, nor
    off the main thread)."""
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(number, callback)


async def until_stopped() -> None:
    """Wait for SIGTERM or SIGINT."""
    stop = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        on_signal(number, stop.set)
    await stop.wait()


def check_workers(settings: Settings, count: int, *, engine_here: bool = True) -> None:
    """Several workers with the engine in process share what the engine counts: on SQLite its
    behaviour counters are each process's own (``api/risk.py``) unless a Redis is given."""
    sqlite = settings.store_url.startswith("sqlite")
    if count > 1 and engine_here and settings.redis_url is None and sqlite:
        fail(
            f"workers: {count} with the engine in process on SQLite needs service.redis_url "
            "(PIIGATE_REDIS_URL): each worker would count the risk signals alone"
        )


def supervise(count: int, where: tuple[str, int], what: str) -> NoReturn:
    """Run ``count`` workers of this command sharing ``where`` (``cli/workers.py``) until
    stopped, then exit with the supervisor's status. ``what`` is the start-up line's subject,
    with ``{}`` for the address served."""
    from piigate import __version__
    from piigate.cli.workers import Supervisor

    host, port = where
    try:
        supervisor = Supervisor(count, host, port)
    except OSError as exc:
        fail(f"could not listen on {host}:{port} ({exc.strerror or exc})")
    served = what.format(f"{host}:{supervisor.port}")
    typer.echo(f"piigate {__version__} {served}: {count} workers", err=True)
    raise typer.Exit(supervisor.run())


def worker_listener(slot: Slot, host: str) -> socket.socket:
    """A worker's own listening socket on its supervisor's port (``cli/workers.py``), the
    worker set to stop when the supervisor does; a one-line error if it cannot listen."""
    from piigate.cli.workers import reuse_port_socket, stop_with_supervisor

    stop_with_supervisor()
    try:
        return reuse_port_socket(host, slot.port)
    except OSError as exc:
        fail(f"could not listen on {host}:{slot.port} ({exc.strerror or exc})")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``piigate: error: <message>`` on stderr and exit with ``code``."""
    typer.echo(f"piigate: error: {message}", err=True)
    raise typer.Exit(code)


def settings_from(config: str | None) -> Settings:
    """The service's settings (``--config`` file, ``PIIGATE_*``), with a usable store URL."""
    from piigate.store.urls import check_url

    loaded = load_settings(config)
    # A wrong URL is bad input: one line here, not a traceback from deep inside the store.
    try:
        check_url(loaded.store_url)
    except ValueError as exc:
        fail(f"invalid database URL: {exc}")
    return loaded


def gateway_start(config: str | None, section: str) -> tuple[str, Settings, PolicyHolder]:
    """What a gateway command starts from: the ``--config`` file (which must be given, with a
    ``gateway.<section>``), its settings, logging configured, and the policy it names, loaded."""
    from piigate.logs import configure_logging
    from piigate.policy.holder import PolicyHolder

    if config is None:
        fail(f"the gateway needs --config FILE (with a gateway: {{{section}: ...}} section)")
    settings = settings_from(config)
    if settings.policy_path is None:
        fail("no policy: the configuration file must hold the policy or name it")
    configure_logging(settings.log_format)
    return config, settings, PolicyHolder.from_file(settings.policy_path)


def run(coro: Awaitable[T]) -> T:
    """Run one coroutine to completion on a new event loop."""

    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


async def with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store (migrated to the current schema), run ``work`` on it, close it. A store
    that cannot be reached is one line naming it (without its password) and why."""
    from piigate.store import Database, Store
    from piigate.store.db import StoreUnavailable
    from piigate.store.urls import display_url, unavailable_reason

    db = Database.open(settings.store_url)
    try:
        await db.upgrade()
        return await work(Store(db))
    except StoreUnavailable as error:
        reason = unavailable_reason(error)
        shown = f"the store {display_url(settings.store_url)} is unavailable"
        fail(f"{shown}: {reason}" if reason else shown)
    finally:
        await db.close()


async def open_keys(settings: Settings, store: Store, *, write: bool) -> OpenedKeyring:
    """The deployment's keyring from ``store``, opened with the master key ``piigate serve``
    uses. With ``write``, as the service opens it (created in a store without keys, this node's
    file keyring of an earlier version moved in); without, a store without keys is one line:
    commands that only read change no keys."""
    from piigate.clock import SystemClock
    from piigate.crypto.keyring import open_keyring

    if not write and not await store.keyring_keys():
        fail("no keyring in the store yet: `piigate serve` creates it on its first start")
    return await open_keyring(
        store,
        settings.master_key_spec(),
        legacy_dir=settings.data_dir / "keyring" if write else None,
        clock=SystemClock(),
    )


async def record_audit(
    settings: Settings, type: str, subject: str | None, data: dict[str, object]
) -> None:
    """Append one event to the audit trail (what an administrator's command changed)."""
    from piigate.audit.log import AuditLog
    from piigate.clock import SystemClock

    async def work(store: Store) -> None:
        audit = AuditLog(store.db, SystemClock())
        try:
            await audit.record(type, subject_id=subject, data=data)
        finally:
            await audit.stop()

    await with_store(settings, work)
