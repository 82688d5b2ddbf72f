"""The audit page (``/security/audit``): the chain's state (events appended, its head), the
last verification (this node's, running or done, or the latest ``audit_verified`` event of any
node) and a Verify button that starts one (``audit_checks.ChainChecks``). A broken chain is shown
by where it breaks (the seq, and that event's type), never by any event's contents.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from piigate.api.services import Services, get_services
from piigate.console.audit_checks import VERIFIED_EVENT, ChainCheck, ChainChecks
from piigate.console.csrf import CSRF_FIELD, check_csrf
from piigate.console.forms import form_fields
from piigate.console.web import SecurityTeam, page
from piigate.console.when import ago, utc_text

__all__ = ["AUDIT_PATH", "chain_checks", "router"]

router = APIRouter(include_in_schema=False)

AUDIT_PATH: Final = "/security/audit"
# How long the Verify button's answer waits for the verification before showing its progress.
_SETTLE_SECONDS: Final = 1.0


def chain_checks(request: Request) -> ChainChecks:
    """The node's verifications (one per app, made on first use)."""
    state = request.app.state
    checks: ChainChecks | None = getattr(state, "chain_checks", None)
    if checks is None:
        services = get_services(request)
        checks = ChainChecks(services.audit, services.clock)
        state.chain_checks = checks
    return checks


@router.get(AUDIT_PATH)
async def audit(request: Request, viewer: SecurityTeam) -> Response:
    """The chain's state and the last verification."""
    services = get_services(request)
    head = await services.audit.head()
    check = chain_checks(request).latest
    running = check if check is not None and check.running else None
    context: dict[str, Any] = {
        "head_seq": head.seq,
        "head_hash": head.hash,
        "running": _progress(running) if running is not None else None,
        "last": None if running is not None else await _last(services, check),
    }
    return page(request, "audit.html", context, viewer=viewer)


@router.post(AUDIT_PATH + "/verify")
async def verify(request: Request, viewer: SecurityTeam) -> Response:
    """Start verifying the chain (or join the verification running), then back to the page."""
    services = get_services(request)
    fields = await form_fields(request)
    await check_csrf(request, services, fields.get(CSRF_FIELD))
    checks = chain_checks(request)
    await checks.start(viewer.subject_id)
    await checks.settle(_SETTLE_SECONDS)
    return RedirectResponse(AUDIT_PATH, status_code=303)


@router.get(AUDIT_PATH + "/progress")
async def progress(request: Request, viewer: SecurityTeam) -> Response:
    """The running verification's progress, for the page's script."""
    check = chain_checks(request).latest
    body = _progress(check) if check is not None else {"running": False}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _progress(check: ChainCheck) -> dict[str, Any]:
    return {
        "running": check.running,
        "checked": min(check.checked, check.total),
        "total": check.total,
        "by": check.by,
        "started": utc_text(check.started_at),
    }


async def _last(services: Services, local: ChainCheck | None) -> dict[str, Any] | None:
    """The latest verification: this node's when it did not make it into the audit trail (or
    could not run), else the latest ``audit_verified`` event."""
    now = services.clock.now()
    if local is not None and local.failure is not None and local.finished_at is not None:
        shown: dict[str, Any] = {
            "by": local.by,
            "at": utc_text(local.finished_at),
            "ago": ago(local.finished_at, now),
            "failure": local.failure,
            "ok": None,
        }
        if local.report is not None:
            shown.update(_verdict(local.report.ok, local.report.count, local.report.first_bad_seq))
            shown["reason"] = local.report.reason
        return await _with_broken_type(services, shown)
    events = await services.audit.latest_events(types=(VERIFIED_EVENT,), limit=1)
    if not events:
        return None
    event = events[0]
    data = event.data
    count, broken = data.get("count"), data.get("broken_at")
    shown = {
        "by": event.subject_id,
        "at": utc_text(event.at),
        "ago": ago(event.at, now),
        "seq": event.seq,
        "failure": None,
        "reason": data.get("reason") if isinstance(data.get("reason"), str) else None,
        **_verdict(
            data.get("ok") is True,
            count if isinstance(count, int) else 0,
            broken if isinstance(broken, int) else None,
        ),
    }
    return await _with_broken_type(services, shown)


def _verdict(ok: bool, count: int, broken_at: int | None) -> dict[str, Any]:
    return {"ok": ok, "count": count, "broken_at": broken_at}


async def _with_broken_type(services: Services, shown: dict[str, Any]) -> dict[str, Any]:
    """The type of the event where the chain breaks, when one is stored at that seq (a
    removed event has none). Only the type: the page shows no event's contents."""
    broken = shown.get("broken_at")
    shown["broken_type"] = None
    if isinstance(broken, int) and broken > 0:
        try:
            found = await services.audit.list_events(after=broken - 1, limit=1)
        except ValueError:  # its data is no longer JSON: the type stays unknown
            return shown
        if found and found[0].seq == broken:
            shown["broken_type"] = found[0].type
    return shown
