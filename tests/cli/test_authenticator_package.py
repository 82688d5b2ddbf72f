"""The reference authenticator is a device, not the server: from ``piigate`` it imports only the
pure device protocol, and none of the server's stack (web framework, database, CLI)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "piigate_authenticator"
ALLOWED_FROM_PIIGATE = {"piigate.factors.push.protocol"}
SERVER_STACK = (
    "fastapi",
    "starlette",
    "uvicorn",
    "typer",
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "psycopg",
    "aiosqlite",
    "redis",
)
MODULES = sorted(PACKAGE.rglob("*.py"))


def _imported(tree: ast.AST) -> set[str]:
    """What a file imports: ``import a.b`` as ``a.b``, ``from a.b import c`` as ``a.b.c`` (``c``
    may be a module: ``from piigate.factors.push import ceremony``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _forbidden_piigate(imported: set[str]) -> set[str]:
    """The imports from ``piigate`` that are neither an allowed module nor a name in one."""
    return {
        m
        for m in imported
        if m.split(".")[0] == "piigate"
        and not any(m == ok or m.startswith(f"{ok}.") for ok in ALLOWED_FROM_PIIGATE)
    }


def test_the_package_has_modules() -> None:
    assert {p.name for p in MODULES} >= {"__init__.py", "keyfile.py", "client.py", "device.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_from_piigate_only_the_device_protocol(path: Path) -> None:
    imported = _imported(ast.parse(path.read_text(encoding="utf-8")))
    bad = _forbidden_piigate(imported)
    assert not bad, f"{path.name} imports {sorted(bad)} from piigate"
    stack = {m for m in imported if m.split(".")[0] in SERVER_STACK}
    assert not stack, f"{path.name} imports the server's {sorted(stack)}"


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("from piigate.factors.push.protocol import sign_request", set()),
        ("import piigate.factors.push.protocol", set()),
        ("from piigate.factors.push import protocol", set()),
        ("from piigate.factors.push import ceremony", {"piigate.factors.push.ceremony"}),
        ("import piigate.store", {"piigate.store"}),
        ("from piigate import errors", {"piigate.errors"}),
        ("from piigate.factors import FactorKind", {"piigate.factors.FactorKind"}),
        ("import piigate", {"piigate"}),
    ],
)
def test_the_rule_sees_every_import_form(source: str, bad: set[str]) -> None:
    assert _forbidden_piigate(_imported(ast.parse(source))) == bad
