"""The approvals queue (``/security/approvals``): step-ups another person approves (method
``approval``), for the security team.

The page lists what ``GET /v1/approvals`` lists for the viewer (``factors.approval.Approvals``:
pending, unexpired, allowing ``approval``, not the viewer's own) with what each asks: who, the
app that asked, the action, PII classes, record, a transaction's amount and payee, when, and the
risk the decision saw (from its audit event). Approve and deny are forms that call
``Approvals.decide``, as ``POST /v1/approvals/{id}`` does, so the same refusals apply: the
requester never approves itself, and an approver whose session does not prove the approval's
level needs their own fresh step-up. Then the browser goes to the step-up page for the
approver's own challenge, which comes back here with the grant in the ``piigate_grant`` cookie;
the page then asks the approver to confirm (a click, never the return alone, answers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from piigate.api.auth import GRANT_COOKIE, presented_grant
from piigate.api.services import Services, get_services
from piigate.console.csrf import CSRF_FIELD, check_csrf
from piigate.console.forms import form_fields
from piigate.console.web import SecurityTeam, Viewer, page
from piigate.console.when import ago, utc_text
from piigate.errors import Conflict, Forbidden, NotFound, StepUpRequired
from piigate.factors.approval.ceremony import APPROVAL
from piigate.ids import MAX_ID_LENGTH
from piigate.model import Challenge, Method
from piigate.stepup.grants import GrantRejected

__all__ = ["QUEUE_PATH", "Waiting", "router"]

router = APIRouter(include_in_schema=False)

QUEUE_PATH: Final = "/security/approvals"
_DECISIONS: Final = ("approve", "deny")
# How many of a requester's latest decisions are searched for a challenge's risk.
_RISK_LOOKBACK: Final = 200


@dataclass(frozen=True, slots=True)
class Waiting:
    """One step-up in the queue, as the page shows it (no PII value: names, ids, amounts)."""

    id: str
    subject: str
    requested_by: str | None
    action: str
    pii: tuple[str, ...]
    resource: str
    transaction: str | None
    level: str
    bound: bool
    asked: str
    asked_ago: str
    expires_in: str
    risk_score: int | None
    risk_signals: tuple[str, ...]


@router.get(QUEUE_PATH)
async def approvals(
    request: Request,
    viewer: SecurityTeam,
    finish: str | None = None,
    decision: str | None = None,
    answered: str | None = None,
) -> Response:
    """The queue; ``finish``/``decision``: the answer to confirm after the approver's own
    step-up; ``answered``: the step-up just answered (its state now)."""
    services = get_services(request)
    notice = await _answered(services, answered) if answered else None
    resume = (finish, decision) if finish and decision in _DECISIONS else None
    return await _queue_page(request, viewer, resume=resume, notice=notice)


@router.post(QUEUE_PATH + "/{challenge_id}")
async def answer(challenge_id: str, request: Request, viewer: SecurityTeam) -> Response:
    """Approve or deny ``challenge_id`` as the viewer (``Approvals.decide``)."""
    services = get_services(request)
    fields = await form_fields(request)
    await check_csrf(request, services, fields.get(CSRF_FIELD))
    decision = fields.get("decision", "")
    if decision not in _DECISIONS:
        return await _queue_page(request, viewer, error="Choose approve or deny.", status=400)
    caller = viewer.caller
    try:
        await services.approvals.decide(
            challenge_id,
            caller.subject,
            caller.session,
            approve=decision == "approve",
            grant=presented_grant(request),
        )
    except StepUpRequired as step_up:
        if step_up.challenge is None:  # no factor of the policy proves the approval's level
            message = "No factor of the policy can prove your own step-up for approving."
            return await _queue_page(request, viewer, error=message, status=409)
        return _to_own_step_up(step_up.challenge, challenge_id, decision)
    except GrantRejected:
        response = await _queue_page(
            request,
            viewer,
            error="Your step-up could not be used (it may have expired). Answer again.",
            status=401,
        )
        response.delete_cookie(GRANT_COOKIE, path="/")
        return response
    except NotFound:
        message = "That step-up is not waiting for your approval."
        return await _queue_page(request, viewer, error=message, status=404)
    except Forbidden:
        message = "You asked for that step-up yourself: another approver must answer it."
        return await _queue_page(request, viewer, error=message, status=403)
    except Conflict:
        message = "That step-up was already answered, or it has expired."
        return await _queue_page(request, viewer, error=message, status=409)
    return RedirectResponse(f"{QUEUE_PATH}?answered={quote(challenge_id, safe='')}", 303)


def _to_own_step_up(own: Challenge, challenge_id: str, decision: str) -> Response:
    """To the step-up page for the approver's own challenge, coming back here to confirm."""
    back = f"{QUEUE_PATH}?finish={quote(challenge_id, safe='')}&decision={decision}"
    target = f"/stepup/{quote(own.id, safe='')}?return_to={quote(back, safe='')}"
    return RedirectResponse(target, status_code=303)


async def _queue_page(
    request: Request,
    viewer: Viewer,
    *,
    resume: tuple[str, str] | None = None,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    services = get_services(request)
    pending = await services.approvals.pending_for(viewer.caller.subject)
    waiting = [_waiting(c, services, risk) for c, risk in await _with_risk(services, pending)]
    settings = services.policy.current
    factor = settings.policy.factors.get(Method.APPROVAL) if settings else None
    approvers = tuple(factor.approvers) if factor is not None else ()
    confirm = None
    if resume is not None:
        confirm = next((w for w in waiting if w.id == resume[0]), None)
    context: dict[str, Any] = {
        "waiting": [w for w in waiting if confirm is None or w.id != confirm.id],
        "confirm": confirm,
        "confirm_decision": resume[1] if resume is not None else None,
        "resume_gone": resume is not None and confirm is None,
        "approvers": approvers,
        "is_approver": bool(viewer.roles & set(approvers)),
        "notice": notice,
        "error": error,
    }
    return page(request, "approvals.html", context, viewer=viewer, status_code=status)


async def _answered(services: Services, challenge_id: str) -> str | None:
    """What became of the step-up just answered, as the store has it now."""
    if len(challenge_id) > MAX_ID_LENGTH:
        return None
    found = await services.challenges.get(challenge_id)
    if found is None or APPROVAL not in found.requirement.methods:
        return None
    return f"The step-up of {found.subject_id} ({found.id}) is now {found.state.value}."


async def _with_risk(
    services: Services, pending: Sequence[Challenge]
) -> list[tuple[Challenge, Mapping[str, Any] | None]]:
    """Each challenge with the risk its decision's audit event recorded (None when it is not
    among the requester's latest decisions)."""
    risks: dict[str, Mapping[str, Any]] = {}
    for subject in dict.fromkeys(c.subject_id for c in pending if c.decision_id):
        events = await services.audit.latest_events(
            types=("decision",), subject_id=subject, limit=_RISK_LOOKBACK
        )
        for event in events:
            decision_id, risk = event.data.get("decision_id"), event.data.get("risk")
            if isinstance(decision_id, str) and isinstance(risk, Mapping):
                risks.setdefault(decision_id, risk)
    return [(c, risks.get(c.decision_id) if c.decision_id else None) for c in pending]


def _waiting(challenge: Challenge, services: Services, risk: Mapping[str, Any] | None) -> Waiting:
    now: datetime = services.clock.now()
    txn = challenge.transaction
    transaction = None
    if txn is not None:
        parts = [str(txn.amount), txn.currency or "", f"to {txn.payee}" if txn.payee else ""]
        transaction = " ".join(p for p in parts if p)
    resource = " ".join(p for p in (challenge.resource.type, challenge.resource.id) if p)
    score = risk.get("score") if risk is not None else None
    return Waiting(
        id=challenge.id,
        subject=challenge.subject_id,
        requested_by=challenge.requested_by,
        action=challenge.action.value,
        pii=tuple(sorted(challenge.pii)),
        resource=resource or "—",
        transaction=transaction,
        level=challenge.requirement.level,
        bound=challenge.requirement.binding is not None,
        asked=utc_text(challenge.created_at),
        asked_ago=ago(challenge.created_at, now),
        expires_in=ago(challenge.expires_at, now),
        risk_score=score if isinstance(score, int) else None,
        risk_signals=_signal_names(risk.get("signals", ()) if risk is not None else ()),
    )


def _signal_names(signals: Iterable[Any]) -> tuple[str, ...]:
    return tuple(
        f"{s['name']} +{s.get('weight', 0)}"
        for s in signals
        if isinstance(s, Mapping) and isinstance(s.get("name"), str)
    )
