"""Shared by the benchmarks: the generated 50-rule policy, the rotating request mix, output.

Everything here is deterministic (a fixed seed), so two runs measure the same work. The
benchmarks are scripts, not tests: nothing here asserts on time.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

SEED = 20260504

LEVELS = {
    "aal1": {"acr": "urn:piigate:aal1"},
    "aal2": {"acr": "urn:piigate:aal2", "aliases": ["2"]},
    "aal3": {"acr": "urn:piigate:aal3", "phishing_resistant": True},
}
PII = {
    "ssn": "high",
    "passport": "high",
    "bank_account": "high",
    "tax_id": "high",
    "phone": "medium",
    "mailing_address": "medium",
    "date_of_birth": "medium",
    "email": "low",
}
HIGH = [name for name, sensitivity in PII.items() if sensitivity == "high"]
ROLES = ["agent", "support", "hr", "finance", "contractor", "auditor", "admin"]
RESOURCES = ["customer", "employee", "account", "document", "payroll"]


def _rules() -> list[dict[str, Any]]:
    """50 rules: per-class read/edit/export rules, role, resource, amount, risk, 3 deny, 1 CEL."""
    rules: list[dict[str, Any]] = [
        {"name": "too-risky", "when": {"risk_at_least": 90}, "deny": "risk too high"},
        {
            "name": "support-cannot-export",
            "when": {"action": ["export"], "roles": ["support"]},
            "deny": "support staff cannot export PII",
        },
        {
            "name": "contractors-cannot-delete-pii",
            "when": {"action": ["delete"], "roles": ["contractor"], "pii": "any"},
            "deny": "contractors cannot delete PII",
        },
        {"name": "risky-context", "when": {"risk_at_least": 60}, "require": {"level": "aal3"}},
        {
            "name": "elevated-risk-pii",
            "when": {"pii": "any", "risk_at_least": 40},
            "require": {"level": "aal2", "max_age": "10m"},
        },
        {
            "name": "high-value-transfer",
            "when": {"action": ["transact"], "amount_over": 10000},
            "require": {"level": "aal3", "max_age": 0, "methods": ["webauthn", "push"]},
        },
        {
            "name": "medium-transfer",
            "when": {"action": ["transact"], "amount_over": 1000},
            "require": {"level": "aal2", "max_age": "15m"},
        },
        {
            "name": "finance-large-transfer",
            "when": {"action": ["transact"], "roles": ["finance"], "amount_over": 50000},
            "require": {"level": "aal3", "max_age": "5m"},
        },
        {
            "name": "self-service-bank-change",
            "when": {
                "action": ["update"],
                "expr": "request.subject.id == request.resource.id"
                ' && "bank_account" in request.pii',
            },
            "require": {"level": "aal2", "max_age": 0},
        },
        {
            "name": "delete-pii-records",
            "when": {"pii": "any", "action": ["delete"]},
            "require": {"level": "aal3", "max_age": 0},
        },
        {
            "name": "admin-login",
            "when": {"action": ["login"], "roles": ["admin"]},
            "require": {"level": "aal2"},
        },
        {
            "name": "contractor-login",
            "when": {"action": ["login"], "roles": ["contractor"]},
            "require": {"level": "aal2", "max_age": "8h"},
        },
        {
            "name": "payroll-pii",
            "when": {"resource": ["payroll"], "pii": "any"},
            "require": {"level": "aal2", "max_age": "10m"},
        },
        {
            "name": "auditor-reads-pii",
            "when": {"action": ["read"], "roles": ["auditor"], "pii": "any"},
            "require": {"level": "aal2", "max_age": "1h"},
            "otherwise": "mask",
        },
        {
            "name": "contractor-touches-pii",
            "when": {"roles": ["contractor"], "pii": "any"},
            "require": {"level": "aal2", "max_age": "5m"},
        },
        {
            "name": "export-needs-scope",
            "when": {"action": ["export"], "pii": "any"},
            "require": {"level": "aal2", "scope": ["pii:export"]},
        },
        {
            "name": "new-device-pii",
            "when": {"signals": ["new_device"], "pii": "any"},
            "require": {"level": "aal2", "max_age": "15m"},
        },
        {
            "name": "hr-reads-employee-records",
            "when": {"action": ["read"], "roles": ["hr"], "resource": ["employee"], "pii": "any"},
            "require": {"level": "aal2", "max_age": "1h"},
            "otherwise": "mask",
        },
    ]
    for cls, sensitivity in PII.items():
        slug = cls.replace("_", "-")
        if sensitivity == "high":
            read = {"level": "aal2", "max_age": "5m"}
            edit = {"level": "aal2", "max_age": "5m"}
            export = {"level": "aal3", "max_age": "5m"}
        elif sensitivity == "medium":
            read = {"level": "aal2", "max_age": "30m"}
            edit = {"level": "aal2", "max_age": "15m"}
            export = {"level": "aal2", "max_age": "5m"}
        else:
            read = {"level": "aal1"}
            edit = {"level": "aal2", "max_age": "1h"}
            export = {"level": "aal2", "max_age": "15m"}
        rules.append(
            {
                "name": f"read-{slug}",
                "when": {"pii": [cls], "action": ["read"]},
                "require": read,
                "otherwise": "mask",
            }
        )
        rules.append(
            {
                "name": f"edit-{slug}",
                "when": {"pii": [cls], "action": ["update", "create"]},
                "require": edit,
            }
        )
        rules.append(
            {
                "name": f"export-{slug}",
                "when": {"pii": [cls], "action": ["export"]},
                "require": export,
            }
        )
    for role in ("agent", "hr", "finance", "support"):
        rules.append(
            {
                "name": f"{role}-reads-identity-numbers",
                "when": {"action": ["read"], "roles": [role], "pii": HIGH[:3]},
                "require": {"level": "aal2", "max_age": "30m"},
                "otherwise": "mask",
            }
        )
    for resource in ("employee", "account", "document", "customer"):
        rules.append(
            {
                "name": f"edit-{resource}-records",
                "when": {"action": ["update", "create"], "resource": [resource], "pii": "any"},
                "require": {"level": "aal2", "max_age": "30m"},
            }
        )
    assert len(rules) == 50, len(rules)
    return rules


def policy_text() -> str:
    """The benchmark policy as YAML text (what ``load_policy_text`` reads)."""
    doc = {
        "version": 1,
        "levels": LEVELS,
        "pii": {name: {"sensitivity": s} for name, s in PII.items()},
        "factors": {
            "totp": {"level": "aal2"},
            "sms": {"level": "aal2", "restricted": True},
            "push": {"level": "aal2", "number_matching": True},
            "webauthn": {"level": "aal3", "user_verification": "required"},
            "recovery": {"level": "aal2"},
        },
        "rules": _rules(),
        "profile": "nist-800-63b-4",
    }
    return yaml.safe_dump(doc, sort_keys=False, width=120)


def request_bodies(now_epoch: int, count: int = 100) -> list[tuple[dict[str, Any], int]]:
    """``count`` decision requests (CONTRACT §4.2 JSON) with the risk score each carries.

    The API has no way to carry risk (its risk engine is ``CarriedRisk`` fed by nothing), so the
    score is only used in-process by ``bench/decide.py``.
    """
    rnd = random.Random(SEED)
    actions = ["read", "update", "create", "delete", "export", "transact", "login"]
    weights = [45, 14, 5, 5, 8, 15, 8]
    out: list[tuple[dict[str, Any], int]] = []
    for i in range(count):
        subject = f"u{rnd.randrange(1000)}"
        roles = rnd.sample(ROLES, k=rnd.choice([0, 1, 1, 1, 2]))
        action = rnd.choices(actions, weights)[0]
        if action == "login":
            pii: list[str] = []
        elif action == "transact":
            pii = rnd.choice([[], ["bank_account"]])
        else:
            pii = rnd.sample(list(PII), k=rnd.choice([0, 1, 1, 1, 2, 2, 3]))
        resource_type = rnd.choice(RESOURCES)
        resource_id = subject if rnd.random() < 0.15 else str(rnd.randrange(10_000))
        body: dict[str, Any] = {
            "subject": {
                "id": subject,
                "roles": roles,
                "scopes": rnd.choice([["pii:read"], ["pii:read", "pii:export"]]),
            },
            "action": action,
            "resource": {"type": resource_type, "id": resource_id},
            "pii": pii,
            "context": {
                "ip": f"10.{i % 7}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}",
                "user_agent": "bench/1.0",
                "device_id": f"dev-{rnd.randrange(500)}",
            },
            "binding": {"method": "POST", "path": f"/{resource_type}/{resource_id}"},
        }
        session = rnd.choices(
            ["none", "aal1", "aal2-recent", "aal2-old", "aal3-recent"], [25, 20, 35, 12, 8]
        )[0]
        if session != "none":
            level, _, age = session.partition("-")
            body["session"] = {
                "id": f"s-{i}",
                "acr": LEVELS[level]["acr"],
                "amr": ["hwk"] if level == "aal3" else ["pwd", "otp"],
                "auth_time": now_epoch - (120 if age == "recent" else 7200),
            }
        if action == "transact":
            amount = rnd.choice(["50.00", "500.00", "2500.00", "15000.00", "80000.00"])
            body["transaction"] = {"amount": amount, "currency": "EUR", "payee": "ACME"}
        score = rnd.choices([0, 45, 65, 95], [72, 14, 10, 4])[0]
        out.append((body, score))
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def summary(samples: Sequence[int]) -> dict[str, float]:
    """p50, p99 and mean of nanosecond ``samples``, in microseconds, and their count."""
    values = sorted(samples)
    return {
        "p50": percentile(values, 50) / 1000,
        "p99": percentile(values, 99) / 1000,
        "mean": statistics.fmean(values) / 1000,
        "n": len(values),
    }


def emit(
    bench: str,
    metric: str,
    value: float,
    unit: str,
    baseline: float,
    *,
    baseline_is: str,
    **extra: Any,
) -> None:
    """One JSON line on stdout. ``ratio`` is always value/baseline (``ratio_def`` says so)."""
    ratio = round(value / baseline, 3) if baseline else None  # JSON has no NaN
    line: dict[str, Any] = {
        "bench": bench,
        "metric": metric,
        "value": round(value, 3),
        "unit": unit,
        "baseline": round(baseline, 3),
        "ratio": ratio,
        "ratio_def": "value/baseline",
        "baseline_is": baseline_is,
    }
    line.update(extra)
    print(json.dumps(line), flush=True)


def note(message: str) -> None:
    """Human-readable progress on stderr (stdout carries only the JSON lines)."""
    print(message, file=sys.stderr, flush=True)


def logs_to_stderr() -> None:
    """piigate's log lines (warnings and up) on stderr, so stdout carries only the JSON lines."""
    import logging

    from piigate.logs import configure_logging

    configure_logging("console", logging.WARNING)


def wait_listening(
    port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


def wait_workers(log: Path, count: int, timeout: float = 60) -> None:
    """Wait until a gateway of ``count`` workers (``workers: N``) has every worker serving:
    each prints ``(worker I of N)`` in ``log`` once it listens."""
    deadline = time.monotonic() + timeout
    while count > 1 and log.read_text(errors="replace").count(f" of {count})") < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every gateway worker started: see {log}")
        time.sleep(0.1)
