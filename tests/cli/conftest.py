"""Fixtures of the command-line tests: a store per backend, reached through PIIGATE_* vars."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment that points every store command at a fresh database."""
    return {"PIIGATE_DATA_DIR": str(tmp_path / "data"), "PIIGATE_DATABASE_URL": database_url}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
