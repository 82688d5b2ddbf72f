"""The domain stays pure: policy/, risk/, factors/ and the core model import no framework, no
database driver and no HTTP client (DESIGN.md "Layers"), and nothing below an edge imports one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "piigate"
FORBIDDEN_IN_DOMAIN = ("fastapi", "starlette", "sqlalchemy", "httpx", "uvicorn", "asyncpg", "redis")
DOMAIN = ["policy", "risk", "factors", "model.py", "clock.py", "errors.py", "stepup/binding.py"]
EDGES = ("piigate.api", "piigate.cli", "piigate.console", "piigate.gateway")


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


@pytest.mark.parametrize("entry", DOMAIN)
def test_domain_imports_no_io_framework(entry: str) -> None:
    files = _files(entry)
    if not files and entry == "factors":
        pytest.skip("factors/ does not exist yet")
    assert files, entry
    for path in files:
        bad = {m for m in _imports(path) if m.split(".")[0] in FORBIDDEN_IN_DOMAIN}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_only_edges_import_edges() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("api/", "console/", "gateway/")) or rel in ("cli.py", "explain.py"):
            continue
        bad = {m for m in _imports(path) if m.startswith(EDGES)}
        assert not bad, f"{rel} imports the edge modules {sorted(bad)}"


def test_engine_talks_to_ports_not_the_store() -> None:
    for path in _files("stepup"):
        bad = {m for m in _imports(path) if m.startswith(("piigate.store", "sqlalchemy"))}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
