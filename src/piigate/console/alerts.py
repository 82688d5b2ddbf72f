"""The security team's alerts page, ``/security/alerts``: open and acknowledged alerts (raised
by ``audit/desk.py``), filtered by kind and subject, each acknowledged with one button."""

from __future__ import annotations

from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from piigate.api.services import get_services
from piigate.audit.alerts import AlertKind
from piigate.console.csrf import CSRF_FIELD, check_csrf
from piigate.console.forms import form_fields
from piigate.console.web import SecurityTeam, Viewer, page
from piigate.errors import Conflict, NotFound

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

PATH: Final = "/security/alerts"
STATUSES: Final = ("open", "acknowledged", "all")
_SHOWN = 200
_MAX_FIELD = 255


def _filters(status: str, kind: str, subject: str) -> dict[str, str]:
    """The filters as they may be shown and sent back: unknown values are dropped."""
    found = {"status": status if status in STATUSES else "open"}
    if kind in {k.value for k in AlertKind}:
        found["kind"] = kind
    if subject.strip():
        found["subject"] = subject.strip()[:_MAX_FIELD]
    return found


@router.get(PATH)
async def alerts_page(
    request: Request,
    viewer: SecurityTeam,
    status: Annotated[str, Query(max_length=16)] = "open",
    kind: Annotated[str, Query(max_length=32)] = "",
    subject: Annotated[str, Query(max_length=_MAX_FIELD)] = "",
) -> Response:
    return await _render(request, viewer, _filters(status, kind, subject))


async def _render(
    request: Request,
    viewer: Viewer,
    filters: dict[str, str],
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    wanted = filters["status"]
    alerts = await get_services(request).monitoring.desk.recent(
        open_only=wanted == "open",
        acknowledged_only=wanted == "acknowledged",
        subject_id=filters.get("subject"),
        kinds=(filters["kind"],) if "kind" in filters else (),
        limit=_SHOWN,
    )
    context = {
        "alerts": alerts,
        "filters": filters,
        "statuses": STATUSES,
        "kinds": [k.value for k in AlertKind],
        "shown": _SHOWN,
        "error": error,
    }
    return page(request, "alerts.html", context, viewer=viewer, status_code=status_code)


@router.post(PATH + "/{alert_id}/acknowledge")
async def acknowledge(request: Request, viewer: SecurityTeam, alert_id: str) -> Response:
    services = get_services(request)
    fields = await form_fields(request)
    await check_csrf(request, services, fields.get(CSRF_FIELD))
    filters = _filters(
        fields.get("status", "open"), fields.get("kind", ""), fields.get("subject", "")
    )
    try:
        await services.monitoring.desk.acknowledge(alert_id[:64], viewer.subject_id)
    except NotFound:
        return await _render(request, viewer, filters, error="No such alert.", status_code=404)
    except Conflict:
        pass  # someone else was first: the list shows who
    return RedirectResponse(f"{PATH}?{urlencode(filters)}", status_code=303)
