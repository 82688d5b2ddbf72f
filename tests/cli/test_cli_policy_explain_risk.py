"""``piigate policy explain`` with the test cases' stand-in for the risk engine (``risk``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cli_support import POLICY
from typer.testing import CliRunner

from piigate.cli import app


def explain(runner: CliRunner, tmp_path: Path, body: dict[str, Any]) -> Any:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body))
    return runner.invoke(app, ["policy", "explain", str(POLICY), "--request", str(request)])


def test_named_signals_count_with_the_policys_weights(runner: CliRunner, tmp_path: Path) -> None:
    body = {"subject": {"id": "ann"}, "action": "read", "pii": ["phone"]}
    result = explain(runner, tmp_path, {**body, "risk": {"signals": ["new_device", "new_country"]}})
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    given = "given in the request"
    assert decision["risk"] == {
        "score": 70,
        "signals": [
            {"name": "new_device", "weight": 30, "detail": given},
            {"name": "new_country", "weight": 40, "detail": given},
        ],
    }
    assert (decision["outcome"], decision["rules"]) == ("step_up", ["risky-context"])
    # The score is at least the one given, and a name the policy does not weigh counts 0.
    result = explain(runner, tmp_path, {**body, "risk": {"score": 95, "signals": ["other"]}})
    decision = json.loads(result.stdout)
    assert decision["risk"]["score"] == 95 and decision["outcome"] == "deny"
    assert decision["risk"]["signals"] == [{"name": "other", "weight": 0, "detail": given}]


def test_a_bad_risk_stand_in_is_named(runner: CliRunner, tmp_path: Path) -> None:
    body = {"subject": {"id": "ann"}, "action": "read", "risk": {"score": 101}}
    result = explain(runner, tmp_path, body)
    assert result.exit_code == 1
    assert "request.json: risk.score: Input should be less than or equal to 100" in result.stderr
    result = explain(runner, tmp_path, {**body, "risk": "high"})
    assert result.exit_code == 1 and "risk: Input should be" in result.stderr
