"""``piigate risk eval`` and ``piigate risk synth`` as a user runs them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cli_support import run_main, run_piigate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "risk"))
from rba_support import SAMPLE, Login, csv_text

KEYS = ["logins", "attacks", "auc", "stepup_rate_legit", "detection_rate", "by_threshold"]


def test_eval_reads_the_public_sample(tmp_path: Path) -> None:
    result = run_main("risk", "eval", "--logins", SAMPLE, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data)[: len(KEYS)] == KEYS
    assert data["logins"] == 19 and data["attacks"] == 2
    assert all(set(row) == {"score", "stepup_rate_legit", "detection_rate"}
               for row in data["by_threshold"])  # fmt: skip
    assert set(data["baselines"]) == {"never", "always", "new_country_or_browser", "freeman"}
    assert result.stderr == ""


def test_eval_of_a_tiny_history_with_a_known_auc(tmp_path: Path) -> None:
    home = [Login(f"2025-01-{day:02d} 10:00:00") for day in range(1, 15)]
    attacks = [
        Login("2025-01-15 09:00:00", ip="203.0.113.9", country="US", city="Ashburn",
              asn="16509", device="evil", lat="39.04", lon="-77.49", label="attack", kind="vpn"),
        Login("2025-01-15 09:30:00", device="evil-2", label="attack", kind="replay"),
    ]  # fmt: skip
    path = tmp_path / "tiny.csv"
    path.write_text(csv_text([*home, *attacks, Login("2025-01-15 12:00:00", device="dev-2")]))
    data = json.loads(run_main("risk", "eval", "--logins", str(path), "--json").stdout)
    assert data["auc"] == 29.5 / 30
    assert (data["detection_rate"], data["stepup_rate_legit"]) == (0.5, 0.0)
    low = json.loads(
        run_main("risk", "eval", "--logins", str(path), "--json", "--threshold", "25").stdout
    )
    assert (low["detection_rate"], low["stepup_rate_legit"]) == (1.0, 1 / 15)
    table = run_main("risk", "eval", "--logins", str(path))
    assert table.returncode == 0
    assert "AUC 0.9833" in table.stdout and "replay" in table.stdout
    assert table.stderr == ""  # no progress bar without a terminal


def test_a_malformed_row_is_one_line_naming_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(csv_text([Login("2025-01-01 10:00:00"), Login("2025-01-01 10:00:00", ip="x")]))
    result = run_piigate("risk", "eval", "--logins", str(path))
    assert result.returncode == 1
    assert result.stderr == f"piigate: error: {path}:3: column 'IP Address': not an IP address\n"
    assert result.stdout == ""


def test_eval_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    missing = run_main("risk", "eval", "--logins", str(tmp_path / "none.csv"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert "not UTF-8" in run_main("risk", "eval", "--logins", str(binary)).stderr
    other = run_main("risk", "eval", "--logins", SAMPLE, "--format", "csv")
    assert other.returncode == 1 and "unknown format 'csv'" in other.stderr
    threshold = run_main("risk", "eval", "--logins", SAMPLE, "--threshold", "101")
    assert threshold.returncode == 2


def test_eval_with_a_policy_uses_its_weights(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nlevels: {aal1: {acr: a}}\nrules: []\nrisk: {no_history: 77}\n")
    path = tmp_path / "one.csv"
    path.write_text(csv_text([Login("2025-01-01 10:00:00")]))
    args = ("risk", "eval", "--logins", str(path), "--json", "--threshold", "70")
    assert json.loads(run_main(*args).stdout)["stepup_rate_legit"] == 0.0
    assert json.loads(run_main(*args, "--policy", str(policy)).stdout)["stepup_rate_legit"] == 1.0
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nrisk: {nope: 1}\n")
    result = run_main("risk", "eval", "--logins", str(path), "--policy", str(broken))
    assert result.returncode == 1 and f"{broken}:" in result.stderr


def test_synth_is_deterministic_per_seed_and_eval_reads_it(tmp_path: Path) -> None:
    first, again, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    for path, seed in ((first, "3"), (again, "3"), (other, "4")):
        result = run_main("risk", "synth", "--out", str(path), "--users", "15", "--seed", seed,
                          "--days", "40")  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "login attempts of 15 users (seed" in result.stdout
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    data = json.loads(run_main("risk", "eval", "--logins", str(first), "--json").stdout)
    assert data["attacks"] > 0 and data["auc"] > 0.5
    assert set(data["by_attack_type"]) <= {
        "naive", "vpn", "targeted", "travel", "stuffing", "replay"
    }  # fmt: skip


def test_synth_reports_an_unwritable_file(tmp_path: Path) -> None:
    result = run_main("risk", "synth", "--out", str(tmp_path / "no" / "x.csv"), "--users", "1")
    assert result.returncode == 1 and "cannot write" in result.stderr
