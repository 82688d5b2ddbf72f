"""What the My security page shows: the person's factors (never a secret), what they may add,
where a step-up brought them back to, and their recent activity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse

from piigate.api.services import Services, get_services
from piigate.console.me_activity import KIND_NAMES, Activity, describe_all, when
from piigate.console.web import Viewer, page
from piigate.factors import FactorState
from piigate.factors.ports import FactorRecord
from piigate.model import Method

__all__ = [
    "ACTIVITY_PAGE",
    "ADDABLE",
    "FactorView",
    "Resume",
    "factor_views",
    "render_me",
    "resume_of",
    "sms_restricted",
]

# Events shown per page of recent activity.
ACTIVITY_PAGE: Final = 50
# Verifications read back to say when each factor was last used.
_USES_READ: Final = 200
# What a person may add from the page, in the order shown.
ADDABLE: Final = (Method.TOTP, Method.WEBAUTHN, Method.SMS, Method.PUSH, Method.RECOVERY)
# What a step-up may bring the person back to (``/me?resume=...``), besides ``remove:<id>``.
_RESUMABLE: Final = frozenset(m.value for m in ADDABLE)
_REMOVE: Final = "remove:"


@dataclass(frozen=True, slots=True)
class FactorView:
    """One factor as the page lists it."""

    id: str
    kind: str
    kind_name: str
    label: str
    state: str
    enrolled: str
    last_used: str
    detail: str
    confirmable: bool  # pending, and finished with a code on this page (TOTP, SMS)


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a step-up brought the person back to: adding a ``kind``, or removing ``factor``."""

    kind: str
    factor: FactorView | None = None


def _detail(factor: FactorRecord) -> str:
    data = factor.data
    if factor.kind == Method.SMS:
        return str(data.get("hint") or "")
    if factor.kind == Method.PUSH:
        name = data.get("device_name")
        return f"device “{name}”" if name else "waiting for the device to enrol"
    if factor.kind == Method.WEBAUTHN:
        synced = "synced passkey" if data.get("backup_eligible") else "device-bound"
        transports = ", ".join(str(t) for t in data.get("transports") or [])
        return f"{synced}{' · ' + transports if transports else ''}"
    if factor.kind == Method.RECOVERY:
        hashes = data.get("hashes")
        left = sum(1 for h in hashes if h) if isinstance(hashes, list) else 0
        total = len(hashes) if isinstance(hashes, list) else 0
        return f"{left} of {total} codes left"
    return ""


def factor_views(
    factors: Sequence[FactorRecord], last_used: Mapping[str, datetime]
) -> list[FactorView]:
    """The factors as listed, active ones first, each kind together, oldest first."""
    order = {FactorState.ACTIVE.value: 0, FactorState.PENDING.value: 1}
    ranked = sorted(factors, key=lambda f: (order.get(f.state, 2), f.kind, f.created_at))
    views = []
    for factor in ranked:
        used = last_used.get(factor.id)
        views.append(
            FactorView(
                id=factor.id,
                kind=factor.kind,
                kind_name=KIND_NAMES.get(factor.kind, factor.kind),
                label=factor.label,
                state=factor.state,
                enrolled=when(factor.confirmed_at or factor.created_at),
                last_used=when(used) if used else "",
                detail=_detail(factor),
                confirmable=factor.state == FactorState.PENDING
                and factor.kind in (Method.TOTP, Method.SMS),
            )
        )
    return views


async def _last_used(services: Services, subject_id: str) -> dict[str, datetime]:
    """When each factor last verified a step-up (of the subject's latest verifications)."""
    found: dict[str, datetime] = {}
    uses = await services.audit.latest_events(
        subject_id=subject_id, types=["challenge_verified"], limit=_USES_READ
    )
    for event in uses:  # newest first: the first seen is the latest
        factor_id = event.data.get("factor_id")
        if isinstance(factor_id, str):
            found.setdefault(factor_id, event.at)
    return found


def resume_of(value: str | None, factors: Sequence[FactorView]) -> Resume | None:
    """What ``?resume=`` names: an addition the page offers, or removing one of ``factors``;
    anything else is ignored."""
    if not value:
        return None
    if value in _RESUMABLE:
        return Resume(value)
    if value.startswith(_REMOVE):
        wanted = value.removeprefix(_REMOVE)
        for factor in factors:
            if factor.id == wanted:
                return Resume("remove", factor)
    return None


def _addable(services: Services) -> list[str]:
    """The kinds the policy enables, that a person enrols themselves."""
    compiled = services.policy.current
    if compiled is None:
        return []
    return [m.value for m in ADDABLE if m in compiled.policy.factors]


def sms_restricted(services: Services) -> bool:
    """Whether the policy declares SMS a restricted authenticator (its notice is shown)."""
    compiled = services.policy.current
    settings = compiled.policy.factors.get(Method.SMS) if compiled else None
    return bool(settings is not None and settings.restricted)


async def _activity(
    services: Services, subject_id: str, before: int | None
) -> tuple[list[Activity], int | None]:
    """A page of the subject's events, newest first, and the ``before`` of the next page."""
    events = await services.audit.latest_events(
        subject_id=subject_id, before=before, limit=ACTIVITY_PAGE + 1
    )
    shown = events[:ACTIVITY_PAGE]
    more = len(events) > ACTIVITY_PAGE and shown[-1].seq is not None
    return describe_all(shown), shown[-1].seq if more else None


async def render_me(
    request: Request,
    viewer: Viewer,
    *,
    notice: str | None = None,
    error: str | None = None,
    resume: str | None = None,
    before: int | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The My security page."""
    services = get_services(request)
    subject = viewer.subject_id
    factors = factor_views(
        await services.enrollment.list(subject), await _last_used(services, subject)
    )
    activity, older = await _activity(services, subject, before)
    context: dict[str, Any] = {
        "factors": factors,
        "addable": _addable(services),
        "sms_restricted": sms_restricted(services),
        "has_active": any(f.state == FactorState.ACTIVE for f in factors),
        "resume": resume_of(resume, factors),
        "activity": activity,
        "older": older,
        "paged": before is not None,
        "notice": notice,
        "error": error,
    }
    return page(request, "me.html", context, viewer=viewer, status_code=status_code)
