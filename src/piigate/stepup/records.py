"""A decision's audit event: what was asked, by whom, what was decided and why.

Names, ids and settings only (the audit log's contract): the rules, PII classes, the resource's
type and id, the risk with its signals, the requirement, the challenge named, the proofs used
and the reasons presented grants were refused -- never a token, a value or a code.
"""

from __future__ import annotations

from datetime import datetime

from piigate.callers import Caller
from piigate.model import AccessRequest, AuditEvent, Decision
from piigate.policy.compiled import CompiledPolicy
from piigate.risk.port import audit_json

__all__ = ["decision_event"]


def decision_event(
    decision: Decision,
    request: AccessRequest,
    caller: Caller | None,
    *,
    compiled: CompiledPolicy | None,
    now: datetime,
    rejected: tuple[str, ...] = (),
) -> AuditEvent:
    """The ``decision`` event of ``decision`` on ``request``, asked by ``caller``."""
    data: dict[str, object] = {
        "decision_id": decision.id,
        "outcome": decision.outcome.value,
        "rules": list(decision.rules),
        "action": request.action.value,
        "pii": sorted(request.pii),
        "mask": sorted(decision.mask),
        "resource": {"type": request.resource.type, "id": request.resource.id},
        "risk": audit_json(decision.risk),
        "policy": compiled.digest if compiled else None,
    }
    if decision.required is not None:
        data["required"] = {
            "level": decision.required.level,
            "max_age": decision.required.max_age,
        }
    if decision.challenge is not None:
        data["challenge_id"] = decision.challenge.id
    if decision.reason:
        data["reason"] = decision.reason
    if decision.used:
        data["proofs"] = [
            {"source": p.source, "level": p.level, "grant_id": p.grant_id} for p in decision.used
        ]
    if rejected:
        data["rejected_grants"] = list(rejected)
    if decision.expr_errors:
        data["expr_errors"] = list(decision.expr_errors)
    if request.session.id:
        data["session_id"] = request.session.id
    if caller is not None:
        data["caller"] = _caller_json(caller)
    return AuditEvent("decision", now, request.subject.id, data)


def _caller_json(caller: Caller) -> dict[str, str]:
    """Who asked for a decision: ``api_key`` and the key's id (never the key), or
    ``session``/``jwt`` and the person's subject id, with their session's id."""
    who = {"kind": caller.kind.value, "id": caller.id}
    if not caller.is_app and caller.session.id:
        who["session_id"] = caller.session.id
    return who
