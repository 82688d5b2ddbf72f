"""The layers of docs/ARCHITECTURE.md, enforced on the imports of every module.

- The domain is pure: policy/, risk/ (but its declared adapters, ``RISK_ADAPTERS``), the
  vocabulary and each factor kind's protocol code import no framework, no database driver, no
  HTTP client, and nothing with I/O from this package.
- Only store/ speaks SQL: nothing else imports SQLAlchemy or a database driver.
- Only the edges (api/, cli/, console/, gateway/, integrations/, demo/) import the edges. The HTTP
  gateway's core (``GATEWAY_CORE``: its configuration, routes, selectors, masking and rate
  limits) lives in gateway/ but is pure, so that the reverse proxy, forward-auth (api/) and the
  app middleware (integrations/) share it: it is held to the domain's rules, and importing it is
  not importing an edge.
- The engine (stepup/) talks to ports: it imports no store, no factor ceremony and no adapter,
  only the factor kinds' shared vocabulary (``piigate.factors``, ``factors.lockout``,
  ``factors.ports``) and their pure protocol code.
- Factor ceremonies reach the outside through ports; only the adapters open HTTP connections.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "piigate"
FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "httpx", "aiohttp", "typer")
DRIVERS = ("sqlalchemy", "alembic", "asyncpg", "psycopg", "aiosqlite", "sqlite3", "redis")
EDGES = (
    "piigate.api",
    "piigate.cli",
    "piigate.console",
    "piigate.gateway",
    # An app's own HTTP (client, FastAPI dependency, ASGI middleware) around the gateway's gate.
    "piigate.integrations",
    # The demo's sample customer API: a program of its own, on Starlette.
    "piigate.demo",
)
EDGE_DIRS = tuple(f"{edge.removeprefix('piigate.')}/" for edge in EDGES)

# The gateways' pure cores, inside the gateway/ edge (the rest of gateway/ is edge code).
# ratelimit.py reaches its counters through ports.RateCounters: store/ opens them.
GATEWAY_CORE = [
    "gateway/__init__.py",
    "gateway/http/__init__.py",
    "gateway/http/config.py",
    "gateway/http/sections.py",
    "gateway/http/route_config.py",
    "gateway/http/routes.py",
    "gateway/http/paths.py",
    "gateway/http/selectors.py",
    "gateway/http/fieldmap.py",
    "gateway/http/masking.py",
    "gateway/http/verdict.py",
    "gateway/http/ratelimit.py",
    # The PostgreSQL gateway's protocol layer: socket-free codecs and SCRAM.
    "gateway/postgres/__init__.py",
    "gateway/postgres/wire.py",
    "gateway/postgres/messages.py",
    "gateway/postgres/frontend.py",
    "gateway/postgres/backend.py",
    "gateway/postgres/auth.py",
    "gateway/postgres/protocol.py",
    "gateway/postgres/scram.py",
    "gateway/postgres/catalog.py",
    "gateway/postgres/plan.py",
    "gateway/postgres/plan_text.py",
    "gateway/postgres/catalog_file.py",
    "gateway/postgres/detect.py",
    "gateway/postgres/config.py",
    "gateway/postgres/rows.py",
    "gateway/postgres/scrub.py",
    "gateway/postgres/pending.py",
    "gateway/postgres/replies.py",
    "gateway/postgres/judge.py",
    "gateway/postgres/startup.py",
    "gateway/postgres/cursors.py",
    # The SQL analysis: lexer, sqlglot walk, built-ins.
    "gateway/postgres/touch.py",
    "gateway/postgres/builtins.py",
    "gateway/postgres/sqltext.py",
    "gateway/postgres/sqlscope.py",
    "gateway/postgres/sqlquery.py",
    "gateway/postgres/sqldml.py",
    "gateway/postgres/analysis.py",
]
# Pure modules: no framework, no driver, and from this package only other pure modules.
DOMAIN = [
    "policy",
    "risk",
    "model.py",
    "callers.py",
    "decision_request.py",
    "clock.py",
    "errors.py",
    "ids.py",
    "jsontext.py",
    "memo.py",
    "origins.py",
    "ports.py",
    "audit/alerts.py",
    "stepup/binding.py",
    "factors/lockout.py",
    "factors/totp/protocol.py",
    "factors/recovery/protocol.py",
    "factors/push/protocol.py",
    "factors/webauthn/protocol.py",
    "factors/webauthn/responses.py",
    "factors/sms/phone.py",
    "factors/sms/text.py",
    *GATEWAY_CORE,
]
# risk/ is pure but for its adapters, which the engine reaches through protocols (``GeoLocator``,
# ``Observer``, ``HistoryStore``) and ``api/services.py`` wires: module → why it is not pure.
RISK_ADAPTERS = {
    "risk/geo.py": "reads the MaxMind DB files (memory-mapped) with maxminddb",
    "risk/clients.py": "parses user agents with ua-parser's native (Rust) resolver",
    "risk/observer.py": "locates and parses a request's context through the two above",
    "risk/keys.py": "opens the deployment's risk key from the store with the keyring",
}
# What pure code may import from this package besides other pure modules.
PURE_SUPPORT = ("piigate.crypto.secret", "piigate.identity.passwords", "piigate.factors")
# Factor modules that talk to the outside world over HTTP.
ADAPTERS = {"factors/sms/twilio.py", "factors/sms/webhook.py", "factors/push/relay.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _files(entry: str) -> list[Path]:
    target = SRC / entry
    if target.is_dir():
        return sorted(target.rglob("*.py"))
    return [target] if target.exists() else []


def _pure_files(entry: str) -> list[Path]:
    return [p for p in _files(entry) if _rel(p) not in RISK_ADAPTERS]


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _module(rel: str) -> str:
    parts = rel.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["piigate", *parts])


PURE_MODULES = {_module(_rel(p)) for entry in DOMAIN for p in _pure_files(entry)}


@pytest.mark.parametrize("entry", DOMAIN)
def test_domain_is_pure(entry: str) -> None:
    files = _pure_files(entry)
    assert files, entry
    for path in files:
        imports = _imports(path)
        bad = {m for m in imports if m.split(".")[0] in FRAMEWORKS + DRIVERS}
        assert not bad, f"{_rel(path)} imports {sorted(bad)}"
        impure = {
            m
            for m in imports
            if m.startswith("piigate.") and m not in PURE_MODULES and m not in PURE_SUPPORT
        }
        assert not impure, f"{_rel(path)} (pure) imports {sorted(impure)}"


def test_risk_adapters_exist() -> None:
    for rel in RISK_ADAPTERS:
        assert (SRC / rel).is_file(), rel


def test_only_the_store_speaks_sql() -> None:
    for path in SRC.rglob("*.py"):
        rel = _rel(path)
        if rel.startswith("store/"):
            continue
        bad = {m for m in _imports(path) if m.split(".")[0] in DRIVERS}
        assert not bad, f"{rel} speaks SQL ({sorted(bad)}); only store/ does"


def test_only_edges_import_edges() -> None:
    for path in SRC.rglob("*.py"):
        rel = _rel(path)
        if rel.startswith(EDGE_DIRS) or rel == "explain.py":
            continue
        bad = {m for m in _imports(path) if m.startswith(EDGES) and m not in PURE_MODULES}
        assert not bad, f"{rel} imports the edge modules {sorted(bad)}"


def test_engine_talks_to_ports_not_the_store_or_the_factor_ceremonies() -> None:
    allowed = {"piigate.factors", "piigate.factors.lockout", "piigate.factors.ports"}
    for path in _files("stepup"):
        for m in _imports(path):
            assert not m.startswith(("piigate.store", "sqlalchemy")), f"{_rel(path)} imports {m}"
            if m.startswith("piigate.factors"):
                assert m in allowed or m in PURE_MODULES, f"{_rel(path)} imports {m}"


def test_factor_ceremonies_reach_the_outside_through_ports() -> None:
    for path in _files("factors"):
        rel = _rel(path)
        bad = {m for m in _imports(path) if m.split(".")[0] in ("fastapi", "starlette")}
        assert not bad, f"{rel} imports {sorted(bad)}"
        if rel not in ADAPTERS:
            http = {m for m in _imports(path) if m.split(".")[0] in ("httpx", "aiohttp")}
            assert not http, f"{rel} opens HTTP connections; only adapters do"
