"""The HTTP gateway's end-to-end stack, as a deployment runs it on one host: the upstream (the
sample customer API with ``misbehaving_upstream``'s endpoints beside it), ``piigate serve`` and
``piigate gateway http`` (engine in process) sharing one configuration file and one SQLite
store, with the real OpenID provider of ``idp_support`` as the identity of both.

The policy is examples/policy.yaml with three changes the tests need: updates of identity
numbers also need the scope ``customers:write``; deletes and transfers over 10 000 need ``aal2``
for that one request (``max_age: 0``), which a TOTP step-up proves (the example asks ``aal3``,
which only WebAuthn proves). The routes are examples/gateway.yaml's, plus the test endpoints'.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from idp_support import OidcIdp

from loopback_support import free_port
from serve_support import EXAMPLE_POLICY, PIIGATE, run_piigate, running, serving, stop

__all__ = [
    "MAX_BODY",
    "Stack",
    "e2e_policy",
    "gateway_config",
    "limited_gateways",
    "started_stack",
    "worker_gateway",
]

EXAMPLES = EXAMPLE_POLICY.parent
UPSTREAM_SCRIPT = Path(__file__).resolve().with_name("misbehaving_upstream.py")
SLOW_SECONDS = 10  # the upstream's /slow, well past the gateway's read timeout below
READ_TIMEOUT = 2
MAX_BODY = 64 * 1024
_READY_SECONDS = 30

# The test endpoints' routes (misbehaving_upstream.py), after the example's.
TEST_ROUTES: list[dict[str, Any]] = [
    {
        "match": {"method": "GET", "path": "/not-json/{id}"},
        "action": "read",
        "resource": {"type": "customer", "id": "{id}"},
        "response_fields": {"$.ssn": "ssn"},
    },
    {"match": {"method": "GET", "path": "/slow"}, "action": "read"},
    {"match": {"method": "*", "path": "/echo/{what}"}, "action": "read"},
]


@dataclass(frozen=True)
class Stack:
    gateway: str  # the gateway's URL
    service: str  # piigate serve's URL (the public URL: challenges are answered there)
    upstream: str  # the upstream's own URL (the tests look behind the gateway)
    down: str  # a gateway whose upstream is not listening
    remote: str  # a gateway asking piigate serve (--engine) with its API key
    gateway_port: int
    config: Path
    env: dict[str, str]
    logs: tuple[Path, ...]

    def seen(self) -> list[dict[str, str]]:
        """Every request the upstream received so far (method, target)."""
        requests: list[dict[str, str]] = httpx.get(f"{self.upstream}/_seen").json()["requests"]
        return requests

    def finished(self) -> list[str]:
        """The targets of the ``/echo`` requests whose body the upstream received whole."""
        targets: list[str] = httpx.get(f"{self.upstream}/_seen").json()["finished"]
        return targets


def e2e_policy() -> dict[str, Any]:
    """examples/policy.yaml with the changes of the module's doc."""
    policy: dict[str, Any] = yaml.safe_load(EXAMPLE_POLICY.read_text())
    rules = {rule["name"]: rule for rule in policy["rules"]}
    rules["edit-identity-numbers"]["require"]["scope"] = ["customers:write"]
    rules["delete-pii-records"]["require"] = {"level": "aal2", "max_age": 0}
    rules["high-value-transfer"]["require"] = {"level": "aal2", "max_age": 0, "methods": ["totp"]}
    return policy


def gateway_config(idp: OidcIdp, *, listen: int, upstream: str, **more: Any) -> dict[str, Any]:
    """A ``gateway.http`` section: the example's routes and the tests', ``idp`` as identity."""
    example = yaml.safe_load((EXAMPLES / "gateway.yaml").read_text())["gateway"]["http"]
    return {
        "listen": f"127.0.0.1:{listen}",
        "upstream": upstream,
        "identity": _identity(idp),
        "default": "deny",
        "timeouts": {"connect": "2s", "read": f"{READ_TIMEOUT}s"},
        "max_body": f"{MAX_BODY // 1024}KiB",
        "routes": [*example["routes"], *TEST_ROUTES],
        **more,
    }


def _identity(idp: OidcIdp) -> dict[str, str]:
    return {"issuer": idp.issuer, "audience": idp.audience, "jwks_url": idp.jwks_url}


def stack_files(
    directory: Path, idp: OidcIdp, service_port: int, gateways: Mapping[str, dict[str, Any]]
) -> dict[str, Path]:
    """The policy and one configuration file per gateway (``policy``, ``service`` shared)."""
    policy = directory / "policy.yaml"
    if not policy.exists():  # a running service reloads a policy file that changes
        policy.write_text(yaml.safe_dump(e2e_policy(), sort_keys=False))
    service = {
        "public_url": f"http://127.0.0.1:{service_port}",
        "data_dir": "data",
        "identity": _identity(idp),
    }
    files = {}
    for name, http in gateways.items():
        path = directory / f"{name}.yaml"
        document = {"policy": "policy.yaml", "service": service, "gateway": {"http": http}}
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        files[name] = path
    return files


def process_env() -> dict[str, str]:
    """The environment of every process: this one's without ``PIIGATE_*`` (never a configured
    store or IdP), plus one master key for the shared store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIIGATE_")}
    env["PIIGATE_MASTER_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    env["PIIGATE_LOG_FORMAT"] = "json"
    return env


def gateway_command(config: Path) -> list[str]:
    return [*PIIGATE, "gateway", "http", "--config", str(config)]


def upstream_command(port: int) -> list[str]:
    return [sys.executable, str(UPSTREAM_SCRIPT), "--port", str(port), "--slow", str(SLOW_SECONDS)]


@contextlib.contextmanager
def started_stack(directory: Path, idp: OidcIdp) -> Iterator[Stack]:
    """The upstream, ``piigate serve`` (first: it creates the store's keys), then the gateway,
    a gateway in front of a port nothing listens on, and one asking the service remotely."""
    names = ("upstream", "service", "gateway", "down", "remote", "nothing")
    ports = {name: free_port() for name in names}
    upstream = f"http://127.0.0.1:{ports['upstream']}"
    files = stack_files(
        directory,
        idp,
        ports["service"],
        {
            "gateway": gateway_config(idp, listen=ports["gateway"], upstream=upstream),
            "down": gateway_config(
                idp, listen=ports["down"], upstream=f"http://127.0.0.1:{ports['nothing']}"
            ),
            "remote": gateway_config(idp, listen=ports["remote"], upstream=upstream),
        },
    )
    env = process_env()
    logs = {name: directory / f"{name}.log" for name in names[:-1]}
    up = [(upstream_command(ports["upstream"]), ports["upstream"], logs["upstream"])]
    service = f"http://127.0.0.1:{ports['service']}"
    gateways = [
        (gateway_command(files[name]), ports[name], logs[name]) for name in ("gateway", "down")
    ]
    gateways.append(
        ([*gateway_command(files["remote"]), "--engine", service], ports["remote"], logs["remote"])
    )
    with (
        running(up, env),
        serving(env, ports["service"], logs["service"], config=files["gateway"]),
    ):
        created = run_piigate(
            env,
            "keys",
            "create",
            "gateway",
            "--scope",
            "decisions",
            "--config",
            str(files["gateway"]),
        )
        # the remote gateway's key; the others, with the engine in process, do not read it
        env = {**env, "PIIGATE_ENGINE_KEY": created.strip().splitlines()[-1]}
        with running(gateways, env):
            yield Stack(
                gateway=f"http://127.0.0.1:{ports['gateway']}",
                service=service,
                upstream=upstream,
                down=f"http://127.0.0.1:{ports['down']}",
                remote=f"http://127.0.0.1:{ports['remote']}",
                gateway_port=ports["gateway"],
                config=files["gateway"],
                env=env,
                logs=tuple(logs.values()),
            )


@contextlib.contextmanager
def limited_gateways(
    stack: Stack, idp: OidcIdp, rate_limit: dict[str, str]
) -> Iterator[tuple[str, str]]:
    """Two more gateways of ``stack`` (same store, same upstream) with ``rate_limit``."""
    ports = (free_port(), free_port())
    configs = {
        f"limited{i}": gateway_config(
            idp, listen=port, upstream=stack.upstream, rate_limit=rate_limit
        )
        for i, port in enumerate(ports)
    }
    directory = stack.config.parent
    files = stack_files(directory, idp, int(stack.service.rsplit(":", 1)[1]), configs)
    commands = [
        (gateway_command(files[name]), port, directory / f"{name}.log")
        for name, port in zip(configs, ports, strict=True)
    ]
    with running(commands, stack.env):
        yield f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"


@dataclass(frozen=True)
class Workers:
    url: str  # the address they share
    metrics: tuple[str, ...]  # each worker's /metrics
    log: Path
    supervisor: subprocess.Popen[bytes]  # the process started


@contextlib.contextmanager
def worker_gateway(stack: Stack, idp: OidcIdp, count: int, redis_url: str) -> Iterator[Workers]:
    """A gateway of ``stack`` (same store, same upstream) served by ``count`` worker processes
    sharing ``redis_url`` (the rate limits: 30 an hour a subject, and the engine's counters),
    each with its metrics on a port of its own; until every worker says it serves."""
    rate_limit = {"per_subject": "30/h", "store": redis_url}
    port, metrics = free_port(), _free_ports(count)
    config = gateway_config(
        idp, listen=port, upstream=stack.upstream, rate_limit=rate_limit, workers=count
    )
    directory = stack.config.parent
    files = stack_files(directory, idp, int(stack.service.rsplit(":", 1)[1]), {"workers": config})
    log = directory / "workers.log"
    command = [*gateway_command(files["workers"]), "--metrics", f"127.0.0.1:{metrics}"]
    with log.open("wb") as out:
        env = {**stack.env, "PIIGATE_REDIS_URL": redis_url}
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _READY_SECONDS
        while log.read_text().count(f" of {count})") < count:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        metrics_urls = tuple(f"http://127.0.0.1:{metrics + i}/metrics" for i in range(count))
        yield Workers(f"http://127.0.0.1:{port}", metrics_urls, log, proc)
    finally:
        stop(proc)


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on loopback."""
    for _ in range(50):
        first = free_port()
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise AssertionError(f"no {count} consecutive free ports")
