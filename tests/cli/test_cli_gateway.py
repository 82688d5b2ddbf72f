"""``piigate gateway http``: what it refuses before it starts, in one clear line (or one
``FILE:LINE:COL`` line per problem of its configuration), never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

from cli_support import POLICY, run_main

ONE_LINE = re.compile(r"^piigate: error: .+$")


def _config(tmp_path: Path, gateway: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"policy: {POLICY}\n{gateway}", encoding="utf-8")
    return path


def test_the_gateway_needs_a_configuration() -> None:
    result = run_main("gateway", "http")
    assert result.returncode == 1
    assert ONE_LINE.match(result.stderr.strip()), result.stderr
    assert "--config" in result.stderr


def test_a_bad_gateway_section_is_reported_at_its_position(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "gateway:\n  http:\n    upstream: ftp://x\n    routes:\n      - match: {path: /a}\n"
        "        action: rread\n",
    )
    result = run_main("gateway", "http", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert all(line.startswith(f"{config}:") for line in lines), lines
    assert any(":4:15: " in line for line in lines), lines  # the upstream's scheme
    assert any("rread" in line for line in lines), lines


def test_a_remote_engine_needs_the_gateway_s_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PIIGATE_ENGINE_KEY", raising=False)
    config = _config(tmp_path, "gateway:\n  http:\n    upstream: http://127.0.0.1:9\n")
    result = run_main("gateway", "http", "--config", str(config), "--engine", "http://x")
    assert result.returncode == 1
    assert ONE_LINE.match(result.stderr.strip()), result.stderr
    assert "PIIGATE_ENGINE_KEY" in result.stderr


def test_workers_on_sqlite_need_a_redis_for_the_engine_s_counters(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("PIIGATE_REDIS_URL", raising=False)
    monkeypatch.delenv("PIIGATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("PIIGATE_DATA_DIR", str(tmp_path / "data"))
    config = _config(
        tmp_path, "gateway:\n  http:\n    upstream: http://127.0.0.1:9\n    workers: 2\n"
    )
    result = run_main("gateway", "http", "--config", str(config))
    assert result.returncode == 1
    assert ONE_LINE.match(result.stderr.strip().splitlines()[-1]), result.stderr  # after a warning
    assert "workers: 2 with the engine in process on SQLite needs service.redis_url" in (
        result.stderr
    )
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_the_postgres_gateway_needs_a_configuration() -> None:
    result = run_main("gateway", "postgres")
    assert result.returncode == 1
    assert ONE_LINE.match(result.stderr.strip()), result.stderr
    assert "gateway: {postgres: ...}" in result.stderr


def test_a_bad_postgres_section_is_reported_at_its_position(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "gateway:\n  postgres:\n    upstream: postgresql://u:secret-pw@127.0.0.1/db\n"
        "    approval_wait: 1h\n    catalog: {public.t: {x: nosuch}}\n",
    )
    result = run_main("gateway", "postgres", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(f"{config}:") for line in lines), lines
    assert any(":5:20: approval_wait" in line for line in lines), lines
    assert any("nosuch" in line for line in lines), lines
    assert "secret-pw" not in result.stderr
