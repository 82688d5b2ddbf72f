"""``piigate demo``: every part of piigate in one process, on the embedded store.

On ports P to P+3 of 127.0.0.1 (P = ``--port``, default 8080):

- P: the service and console (``piigate serve``'s app) on a node of its own (SQLite and the
  master key in the data directory), its public URL ``http://localhost:P`` (WebAuthn needs a
  host name, and allows plain http on localhost);
- P+1: the sample customer API (``demo/customers.py``) with the demo's identity provider under
  ``/idp`` (``demo/idp.py``), which the service and both gateways trust for bearer tokens;
- P+2: the HTTP gateway (``gateway.http`` of ``demo/demo.yaml``) in front of that API;
- P+3: the PostgreSQL gateway in front of the demo database, when a server is reachable
  (``demo/postgres.py``).

The gateways ask the node's engine in process, so one set of counters sees every request. The
first start makes the demo's users and keys (``demo/accounts.py``); later starts reuse them.
SIGINT or SIGTERM stops the servers, the gateway's connections and the node (its audit writer
process with it); a second one stops without waiting for open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from piigate.api.app import create_app
from piigate.api.services import Services
from piigate.config import IdentitySettings, Settings
from piigate.demo.accounts import DemoSetupError, demo_accounts
from piigate.demo.customers import create_customers_app
from piigate.demo.idp import DemoIdp
from piigate.demo.postgres import DEFAULT_DATABASE, POSTGRES_DB_ENV, start_postgres_side
from piigate.demo.walkthrough import DemoPlaces, banner, browser_steps, curl_walkthrough
from piigate.errors import PiigateError
from piigate.files import private_directory, private_file
from piigate.gateway.http.assemble import assemble_gate, in_process
from piigate.gateway.http.config import load_gateway_config
from piigate.gateway.http.proxy import HttpGateway
from piigate.gateway.http.server import gateway_server
from piigate.gateway.http.upstream import Upstream
from piigate.logs import configure_logging
from piigate.policy.holder import PolicyHolder

__all__ = ["DEMO_CONFIG", "DemoOptions", "run_demo"]

DEMO_CONFIG: Final = Path(__file__).with_name("demo.yaml")
IDP_AUDIENCE: Final = "piigate-demo"
# Marks a directory as the demo's, so --reset deletes nothing else.
MARKER: Final = ".piigate-demo"
_HOST: Final = "127.0.0.1"
_GRACE_SECONDS: Final = 2

Closer = Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    port: int
    data_dir: Path
    reset: bool
    piigate: str  # the command the walkthrough runs for `piigate demo code`
    python: str
    env: dict[str, str] = field(default_factory=dict)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the demo: several share one event loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class _Running:
    """The servers started so far (the service's first) and what to close with them."""

    servers: list[tuple[_Server, asyncio.Task[None]]] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)

    async def serve(self, server: _Server, sock: socket.socket) -> None:
        task = asyncio.create_task(server.serve([sock]))
        self.servers.append((server, task))
        while not server.started:
            if task.done():
                task.result()
                raise DemoSetupError(f"could not serve on {sock.getsockname()}")
            await asyncio.sleep(0.02)

    def force(self) -> None:
        for server, _ in self.servers:
            server.force_exit = True

    async def stop(self) -> None:
        """The servers newest first, then what they used; the service's server last (its
        lifespan stops the node)."""
        first, rest = self.servers[:1], self.servers[1:]
        for server, task in reversed(rest):
            await _stopped(server, task)
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()
        for server, task in first:
            await _stopped(server, task)
        self.servers.clear()
        self.closers.clear()


async def _stopped(server: _Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


def prepare_data_dir(path: Path, *, reset: bool) -> None:
    """The demo's data directory (0700), emptied first with ``reset`` if it is the demo's."""
    if reset and path.exists():
        if not (path / MARKER).exists() and any(path.iterdir()):
            raise DemoSetupError(f"{path} is not the demo's data directory: not deleting it")
        shutil.rmtree(path)
    private_directory(path)
    private_file(path / MARKER)


def listening(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:``port`` (taken now, so the demo fails at once, in one
    line, when a port is in use)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((_HOST, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise DemoSetupError(
            f"cannot listen on {_HOST}:{port} ({exc.strerror or exc}): the demo uses ports "
            "P to P+3; pick another P with --port"
        ) from None
    return sock


def demo_settings(options: DemoOptions, idp: DemoIdp) -> Settings:
    """The node's settings: the demo's data directory, policy and identity provider only (the
    environment's ``PIIGATE_*`` settings are for a real deployment, not the demo)."""
    return Settings(
        policy_path=str(DEMO_CONFIG),
        config_path=str(DEMO_CONFIG),
        data_dir=options.data_dir,
        public_url=f"http://localhost:{options.port}",
        public_url_configured=True,
        host=_HOST,
        port=options.port,
        identity=IdentitySettings(idp.issuer, idp.audience, idp.jwks_url),
        log_format="console",
    )


async def run_demo(options: DemoOptions, say: Callable[[str], None]) -> None:
    """Start everything, print where it is, and run until SIGINT or SIGTERM."""
    port = options.port
    with contextlib.ExitStack() as sockets:
        taken = [sockets.enter_context(listening(p)) for p in (port, port + 1, port + 2)]
        listening(port + 3).close()  # the PostgreSQL gateway binds it itself
        configure_logging("console", logging.WARNING)
        prepare_data_dir(options.data_dir, reset=options.reset)
        holder = PolicyHolder.from_file(str(DEMO_CONFIG))
        idp = DemoIdp(f"http://{_HOST}:{port + 1}/idp", IDP_AUDIENCE, {})
        services = Services(demo_settings(options, idp), policy=holder, forward_auth=False)
        try:
            await services.start()
        except PiigateError as exc:
            raise DemoSetupError(f"cannot start: {exc.detail}") from None
        running = _Running()
        with _Signals(running) as stop:  # a second signal while stopping forces it
            try:
                await _unless_stopped(_start(options, services, idp, taken, running, say), stop)
                await stop.wait()
            finally:
                owned = not running.servers  # the service's lifespan never ran: ours to stop
                await running.stop()
                if owned:
                    await services.stop()


async def _start(
    options: DemoOptions,
    services: Services,
    idp: DemoIdp,
    sockets: list[socket.socket],
    running: _Running,
    say: Callable[[str], None],
) -> None:
    port = options.port
    accounts = await demo_accounts(services, options.data_dir)
    idp.users = {user.name: user for user in accounts.users}
    # The service first: from then on its lifespan stops the node.
    service = create_app(services.settings, services=services, started=True)
    await running.serve(_server(service, port, lifespan="on"), sockets[0])
    company = Starlette(routes=[Mount("/idp", idp.app()), Mount("/", create_customers_app())])
    await running.serve(_server(company, port + 1), sockets[1])
    gateway = await _http_gateway(services, f"http://{_HOST}:{port + 1}", port + 2, running)
    await running.serve(_Server(gateway_server(gateway, _HOST, port + 2).config), sockets[2])
    side = await start_postgres_side(
        services, str(DEMO_CONFIG), port=port + 3, reset=options.reset, env=options.env
    )
    if side.gateway is not None:
        running.closers.append(side.gateway.aclose)
    places = DemoPlaces(
        service=services.settings.public_url,
        api=f"http://{_HOST}:{port + 1}",
        gateway=f"http://{_HOST}:{port + 2}",
        data_dir=options.data_dir,
        piigate=options.piigate,
        python=options.python,
        postgres_port=side.port,
        postgres_database=options.env.get(POSTGRES_DB_ENV) or DEFAULT_DATABASE,
    )
    walkthrough = curl_walkthrough(places, accounts)
    script = options.data_dir / "walkthrough.sh"
    private_file(script)
    script.write_text(walkthrough + "\n")
    say(banner(places, accounts, side.note))
    say(f"\nThe walkthrough, to paste into another shell (also in {script}):\n")
    say(walkthrough)
    say("\n" + browser_steps(places))


async def _http_gateway(
    services: Services, upstream_url: str, port: int, running: _Running
) -> HttpGateway:
    """The HTTP gateway of ``gateway.http`` in front of ``upstream_url``, on the node's
    engine, API keys and identity provider (as ``piigate gateway http`` runs it)."""
    compiled = services.policy.current
    assert compiled is not None  # loaded before the node started
    config = load_gateway_config(str(DEMO_CONFIG), compiled)
    config = replace(config, listen_host=_HOST, listen_port=port, upstream=upstream_url)
    decider, api_keys = in_process(services)
    assembled = assemble_gate(
        config,
        decider=decider,
        api_keys=api_keys,
        policy=services.policy,
        clock=services.clock,
        jwt=services.jwt,
    )
    running.closers.append(assembled.aclose)
    upstream = Upstream(
        config.upstream,
        connect_timeout=config.timeouts.connect,
        read_timeout=config.timeouts.read,
    )
    running.closers.append(upstream.aclose)
    return HttpGateway(assembled.gate, upstream)


def _server(app: Any, port: int, *, lifespan: Literal["on", "off"] = "off") -> _Server:
    return _Server(
        uvicorn.Config(
            app,
            host=_HOST,
            port=port,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            lifespan=lifespan,
            timeout_graceful_shutdown=_GRACE_SECONDS,
        )
    )


async def _unless_stopped(work: Awaitable[None], stop: asyncio.Event) -> None:
    """``work`` (raising what it raises), cancelled if ``stop`` is set first."""
    working = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if working.done():
            working.result()
    finally:
        for task in (working, stopping):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class _Signals:
    """SIGINT and SIGTERM while the demo runs: the first sets the event it yields, the next
    ones stop the servers without waiting for open connections."""

    def __init__(self, running: _Running) -> None:
        self.running = running
        self.stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.numbers = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> asyncio.Event:
        self._handle(self._first)
        return self.stop

    def __exit__(self, *exc: object) -> None:
        for number in self.numbers:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.loop.remove_signal_handler(number)

    def _first(self) -> None:
        self.stop.set()
        self._handle(self.running.force)

    def _handle(self, callback: Callable[[], None]) -> None:
        for number in self.numbers:
            # Not on Windows: Ctrl-C is then a KeyboardInterrupt, which stops the demo too.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.loop.add_signal_handler(number, callback)
