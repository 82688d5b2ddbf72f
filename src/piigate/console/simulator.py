"""The policy simulator's form: what a person fills in, read into the request
``piigate policy explain --request`` takes (CONTRACT §4.2, with the test cases' ``risk``
stand-in), and the explanation's problems told by the form's own field names.

The session's level and auth age become the level's ``acr`` and an ``auth_time`` that long
before now, the methods it was proven with their RFC 8176 ``amr`` values, as an identity
provider's token would carry them. Problems name the field and the rule broken, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from starlette.datastructures import UploadFile
from starlette.requests import Request

from piigate.errors import BadRequest
from piigate.model import Action
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.durations import parse_duration
from piigate.stepup.engine import AMR_METHODS

__all__ = [
    "ACTIONS",
    "LABELS",
    "METHOD_AMR",
    "Simulation",
    "field_problem",
    "read_simulation",
    "simulator_fields",
]

ACTIONS: Final = tuple(a.value for a in Action)
# Each factor kind → the ``amr`` value an identity provider reports for it.
METHOD_AMR: Final = {method.value: amr for amr, method in reversed(AMR_METHODS.items())}
_MAX_FIELDS: Final = 512
_LIST_SPLIT: Final = re.compile(r"[\s,]+")
# The request's fields (as explain's problems name them) → the form's labels.
LABELS: Final = {
    "subject.id": "Subject id",
    "subject.roles": "Roles",
    "subject.scopes": "Scopes",
    "action": "Action",
    "resource.type": "Resource type",
    "resource.id": "Resource id",
    "pii": "PII classes",
    "session": "Session",
    "session.amr": "Proven with",
    "transaction": "Amount",
    "transaction.amount": "Amount",
    "transaction.currency": "Currency",
    "transaction.payee": "Payee",
    "rows": "Rows",
    "rows.estimate": "Rows",
    "risk.score": "Risk score",
    "risk.signals": "Risk signals",
}


@dataclass(slots=True)
class Simulation:
    """The form as filled (``values``, ``chosen``: to show it again), and either the request
    for ``explain`` or the problems, each ``(label, message)``."""

    values: dict[str, str] = field(default_factory=dict)
    chosen: dict[str, frozenset[str]] = field(default_factory=dict)
    request: dict[str, Any] | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)


async def simulator_fields(request: Request) -> dict[str, list[str]]:
    """The posted form, every value of each field (checkboxes repeat their name)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("send the form as application/x-www-form-urlencoded")
    form = await request.form(max_files=0, max_fields=_MAX_FIELDS)
    fields: dict[str, list[str]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            raise BadRequest("files are not accepted here")
        fields.setdefault(name, []).append(value)
    return fields


def read_simulation(
    fields: Mapping[str, Sequence[str]], compiled: CompiledPolicy, *, now: datetime
) -> Simulation:
    """The form's request for ``explain``, or its problems."""
    sim = Simulation()
    for name in (
        "subject_id", "roles", "scopes", "action", "resource_type", "resource_id", "level",
        "auth_age", "amount", "currency", "payee", "risk_score", "rows",
    ):  # fmt: skip
        sim.values[name] = (fields.get(name) or [""])[-1].strip()
    sim.values["rows_unbounded"] = "on" if fields.get("rows_unbounded") else ""
    policy = compiled.policy
    sim.chosen = {
        "pii": _chosen(sim, fields, "pii", "PII classes", policy.pii),
        "method": _chosen(sim, fields, "method", "Proven with", METHOD_AMR),
        "signal": _chosen(sim, fields, "signal", "Risk signals", policy.risk.signals),
    }
    v = sim.values
    subject = {"id": v["subject_id"], "roles": _names(v["roles"]), "scopes": _names(v["scopes"])}
    body: dict[str, Any] = {"subject": subject, "action": v["action"]}
    body["pii"] = sorted(sim.chosen["pii"])
    if not v["subject_id"]:
        sim.problems.append(("Subject id", "required"))
    if v["action"] not in ACTIONS:
        sim.problems.append(("Action", "choose one of " + ", ".join(ACTIONS)))
    resource = {k: v[f"resource_{k}"] for k in ("type", "id") if v[f"resource_{k}"]}
    if resource:
        body["resource"] = resource
    _session(sim, body, compiled, now)
    _transaction(sim, body)
    _rows(sim, body)
    _risk(sim, body)
    if not sim.problems:
        sim.request = body
    return sim


def field_problem(line: str) -> tuple[str, str]:
    """One of ``explain``'s problem lines (``request: FIELD: message``) told by the form's
    label for the field."""
    text = line.removeprefix("request: ")
    where, sep, message = text.partition(": ")
    if not sep:
        return "Request", text
    key = ".".join(part for part in where.split(".") if not part.isdigit())
    return LABELS.get(key, where), message


def _chosen(
    sim: Simulation, fields: Mapping[str, Sequence[str]], name: str, label: str, known: Any
) -> frozenset[str]:
    picked = frozenset(fields.get(name, ()))
    if any(value not in known for value in picked):
        sim.problems.append((label, "not one of the policy's"))
    return frozenset(value for value in picked if value in known)


def _names(text: str) -> list[str]:
    return [name for name in _LIST_SPLIT.split(text) if name]


def _whole(sim: Simulation, name: str, label: str, *, high: int | None = None) -> int | None:
    text = sim.values[name]
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or (high is not None and int(text) > high):
        limit = f" from 0 to {high}" if high is not None else ""
        sim.problems.append((label, f"a whole number{limit}"))
        return None
    return int(text)


def _session(
    sim: Simulation, body: dict[str, Any], compiled: CompiledPolicy, now: datetime
) -> None:
    level = sim.values["level"]
    if not level:
        if sim.chosen["method"]:
            sim.problems.append(("Proven with", "choose the session's level too"))
        return
    if level not in compiled.levels:
        sim.problems.append(("Session level", "not one of the policy's levels"))
        return
    age = 0
    if sim.values["auth_age"]:
        try:
            age = parse_duration(sim.values["auth_age"])
        except ValueError:
            sim.problems.append(("Auth age", "seconds, or a duration such as 30s, 5m, 12h"))
            return
    body["session"] = {
        "acr": compiled.levels[level].acr,
        "amr": sorted(METHOD_AMR[m] for m in sim.chosen["method"]),
        "auth_time": max(0, int(now.timestamp()) - age),
    }


def _transaction(sim: Simulation, body: dict[str, Any]) -> None:
    v = sim.values
    if not v["amount"]:
        if v["action"] == Action.TRANSACT.value:
            sim.problems.append(("Amount", "a transact request needs an amount"))
        elif v["currency"] or v["payee"]:
            sim.problems.append(("Amount", "a transaction needs an amount"))
        return
    try:
        amount = Decimal(v["amount"])
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0:
        sim.problems.append(("Amount", "a number of at least 0, such as 12000.50"))
        return
    txn: dict[str, Any] = {"amount": str(amount)}
    if v["currency"]:
        if not re.fullmatch(r"[A-Za-z]{3}", v["currency"]):
            sim.problems.append(("Currency", "three letters, such as EUR"))
            return
        txn["currency"] = v["currency"].upper()
    if v["payee"]:
        txn["payee"] = v["payee"]
    body["transaction"] = txn


def _rows(sim: Simulation, body: dict[str, Any]) -> None:
    rows = _whole(sim, "rows", "Rows")
    if rows is not None:
        body["rows"] = {"estimate": rows, "bounded": not sim.values["rows_unbounded"]}
    elif sim.values["rows_unbounded"] and not sim.values["rows"]:
        sim.problems.append(("Rows", "give the estimate for a statement without WHERE"))


def _risk(sim: Simulation, body: dict[str, Any]) -> None:
    score = _whole(sim, "risk_score", "Risk score", high=100)
    signals = sorted(sim.chosen["signal"])
    if score is not None or signals:
        body["risk"] = {"score": score or 0, "signals": signals}
