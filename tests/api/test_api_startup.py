"""What a node checks and says when it starts: a data directory or database that others may
read is named in a warning."""

from __future__ import annotations

import stat
from pathlib import Path

import structlog
from api_support import StartNode


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_start_warns_about_a_data_directory_others_can_read(
    start_node: StartNode, tmp_path: Path
) -> None:
    data = tmp_path / "existing"
    data.mkdir()
    data.chmod(0o755)  # as a directory made by hand, or by an earlier piigate, often is
    with structlog.testing.capture_logs() as logs:
        await start_node(data_dir=data)
    warnings = [e for e in logs if e["event"] == "data_not_private"]
    assert warnings == [
        {"event": "data_not_private", "log_level": "warning", "path": str(data), "mode": "0755"}
    ]
    assert _mode(data) == 0o755  # named, not changed behind the operator's back


async def test_start_warns_about_a_database_file_others_can_read(
    start_node: StartNode, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "piigate.db").touch()
    (data / "piigate.db").chmod(0o644)
    with structlog.testing.capture_logs() as logs:
        await start_node(data_dir=data, database_url=None)  # SQLite in the data directory
    warnings = [(e["path"], e["mode"]) for e in logs if e["event"] == "data_not_private"]
    assert warnings == [(str(data / "piigate.db"), "0644")]


async def test_a_private_data_directory_starts_without_a_warning(
    start_node: StartNode, tmp_path: Path
) -> None:
    with structlog.testing.capture_logs() as logs:
        await start_node(data_dir=tmp_path / "new" / "data")
    assert not [e for e in logs if e["event"] == "data_not_private"]
    assert _mode(tmp_path / "new") == _mode(tmp_path / "new" / "data") == 0o700
