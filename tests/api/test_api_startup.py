"""What a node checks and says when it starts: a data directory or database that others may
read is named in a warning; ``piigate serve --host/--port`` is the public URL unless one is
configured, with a warning when that address is not loopback."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import structlog
from api_support import StartNode

from loopback_support import free_port
from serve_support import run_piigate, serving

PASSWORD = "correct horse battery staple"


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


def _env(tmp_path: Path) -> dict[str, str]:
    """A SQLite node in ``tmp_path``, with no public URL configured."""
    unset = ("PIIGATE_PUBLIC_URL", "PIIGATE_DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    return {**env, "PIIGATE_DATA_DIR": str(tmp_path / "data"), "PIIGATE_LOG_FORMAT": "json"}


@pytest.mark.slow
def test_serve_on_another_port_puts_that_port_in_push_enrolment_links(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_piigate(env, "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with serving(env, port, log), httpx.Client(base_url=base, headers={"Origin": base}) as alice:
        login = alice.post("/v1/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        enrolled = alice.post("/v1/factors/push")
        assert enrolled.status_code == 201, enrolled.text
    uri = urlsplit(enrolled.json()["enroll_uri"])
    assert parse_qs(uri.query)["url"] == [base]
    assert "public_url_not_set" not in log.read_text()  # loopback: the derived URL is right


@pytest.mark.slow
def test_serve_on_a_public_address_without_a_public_url_warns(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = _env(tmp_path)
    with serving(env, port, log, "--host", "0.0.0.0"):
        pass
    (line,) = [line for line in log.read_text().splitlines() if "public_url_not_set" in line]
    assert f'"public_url": "http://0.0.0.0:{port}"' in line
    assert "PIIGATE_PUBLIC_URL" in line
