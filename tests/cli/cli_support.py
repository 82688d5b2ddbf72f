"""Helpers of the command-line tests (imported by name: ``tests/cli`` is on ``sys.path``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text

from piigate.store.db import Database

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
POLICY = EXAMPLES / "policy.yaml"
CASES = EXAMPLES / "policy-tests.yaml"

_SCRIPT = Path(sys.executable).with_name("piigate")
PIIGATE = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "from piigate.cli import main; main()"]
)


def run_piigate(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real console script, as a user runs it (so ``main``'s error handling is in play)."""
    return subprocess.run(
        [*PIIGATE, *args],
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_main(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``piigate.cli.main`` in this process (its own error handling included), for speed."""
    import contextlib
    import io

    from piigate.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    saved = sys.argv, sys.stdin
    sys.argv, sys.stdin = ["piigate", *args], io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exit:
        code = exit.code
    finally:
        sys.argv, sys.stdin = saved
    returncode = code if isinstance(code, int) else 1
    return subprocess.CompletedProcess(list(args), returncode, out.getvalue(), err.getvalue())


def sql(database_url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run one statement against the store the CLI used; rows for a SELECT."""

    async def work() -> list[tuple[Any, ...]]:
        db = Database.open(database_url)
        try:
            async with db.begin() as conn:
                result = await conn.execute(text(statement), params)
                return [tuple(row) for row in result.all()] if result.returns_rows else []
        finally:
            await db.close()

    return asyncio.run(work())
