"""Every RFC 9457 problem body comes from ``piigate.errors.problem_details`` (STYLE.md §8).

A dict literal with the problem members ``type``, ``title`` and ``status`` anywhere else would be
a second builder, free to drift from the first (another base URI, a missing ``code``).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
BUILDER = SRC / "piigate" / "errors.py"
MEMBERS = {"type", "title", "status"}


def _problem_literals(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if keys >= MEMBERS:
                lines.append(node.lineno)
    return lines


def test_problem_bodies_have_one_builder() -> None:
    found = {
        f"{path.relative_to(SRC)}:{line}"
        for path in SRC.rglob("*.py")
        if path != BUILDER
        for line in _problem_literals(path)
    }
    assert not found, f"problem bodies built outside errors.problem_details: {sorted(found)}"
    assert _problem_literals(BUILDER), "the builder itself is found"
