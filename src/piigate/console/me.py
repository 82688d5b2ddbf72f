"""My security: a signed-in person's own factors and activity (README "My security").

Every form here posts with the page's CSRF token, checked before anything else, and calls the
same services as the API's ``/v1/factors`` routes: TOTP (the QR code and the secret, shown
once, then the first code), a phone for SMS codes, a push device (its enrolment link as a QR
code and as the ``piigate authenticator enroll`` command), recovery codes (shown once),
removing a factor. Passkeys are added by ``static/me.js`` through the API itself, since
``navigator.credentials.create`` needs a script.

Once a person has an active factor, every change needs a recent step-up of their own
(``factors.fresh``). The service then answers with a challenge: the browser goes to the step-up
page (``/stepup/{challenge}``), which returns to ``/me?resume=...`` with the grant in the
``piigate_grant`` cookie. That page only offers the change again, as a form: a GET never
changes a factor.

"This wasn't me" on an event of the person's own records a report (``risk.reports``): an
``alert`` event for the security team, and the ``reported_activity`` risk signal.
"""

from __future__ import annotations

import base64
import shlex
from typing import Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from piigate.api.auth import GRANT_COOKIE, presented_grant
from piigate.api.routes.sms import RESTRICTED_NOTICE
from piigate.api.services import Services, get_services
from piigate.console.csrf import CSRF_FIELD, check_csrf
from piigate.console.forms import form_fields
from piigate.console.me_activity import when
from piigate.console.me_view import render_me, sms_restricted
from piigate.console.web import SignedIn, Viewer, page
from piigate.crypto.secret import Secret
from piigate.errors import FactorRejected, NotFound, PiigateError, StepUpRequired
from piigate.stepup.grants import GrantRejected

__all__ = ["DONE", "router"]

router = APIRouter(include_in_schema=False)

# What ``/me?done=...`` says after a change (fixed texts: nothing from the URL is shown).
DONE: Final = {
    "totp": "Your authenticator app is set up.",
    "sms": "Your phone now receives sign-in codes.",
    "webauthn": "Your passkey is set up.",
    "removed": "The factor was removed.",
    "reported": (
        "Thank you. Your report went to the security team, and for the next day piigate "
        "treats requests made as you as riskier."
    ),
    "already_reported": "You had already reported that event.",
}
_LABEL_MAX = 64
_CODE_MAX = 128
_PHONE_MAX = 64
_MAX_SEQ = 2**63 - 1
_WRONG_CODE = "That code was not accepted. Enter the code your app or phone shows now."


def _sequence(text: str | None) -> int | None:
    """An audit event's sequence number as a URL gives it; None unless it is one."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if 0 < number <= _MAX_SEQ else None


def _label(fields: dict[str, str]) -> str:
    return fields.get("label", "").strip()[:_LABEL_MAX]


def _code(fields: dict[str, str]) -> Secret[str]:
    """The code a confirmation form posted, trimmed and bounded, kept wrapped."""
    return Secret(fields.get("code", "").strip()[:_CODE_MAX])


def _done(what: str, *, anchor: str = "") -> RedirectResponse:
    """Back to My security, which then says :data:`DONE`'s ``what``."""
    return RedirectResponse(f"/me?done={what}{anchor}", status_code=303)


async def _checked_form(request: Request, services: Services) -> dict[str, str]:
    """The form's fields, once its CSRF token is checked."""
    fields = await form_fields(request)
    await check_csrf(request, services, fields.get(CSRF_FIELD))
    return fields


def _to_step_up(challenge_id: str, resume: str) -> RedirectResponse:
    back = "/me?resume=" + quote(resume, safe=":")
    target = f"/stepup/{quote(challenge_id, safe='')}?return_to={quote(back, safe='')}"
    return RedirectResponse(target, status_code=303)


async def _refused(request: Request, viewer: Viewer, error: PiigateError, resume: str) -> Response:
    """A change the service refused: to the step-up page when it asks for one, else the page
    again with the reason (the service's messages never carry a value or secret)."""
    if isinstance(error, StepUpRequired):
        if error.challenge is not None:
            return _to_step_up(error.challenge.id, resume)
        message = "This change needs a step-up, and none of your factors can give it."
        return await render_me(request, viewer, error=message, status_code=409)
    if isinstance(error, GrantRejected):
        response = await render_me(
            request,
            viewer,
            error="Your last step-up could not be used here. Please try again.",
            status_code=error.status,
        )
        response.delete_cookie(GRANT_COOKIE, path="/")
        return response
    message = _WRONG_CODE if isinstance(error, FactorRejected) else error.detail
    response = await render_me(request, viewer, error=message, status_code=error.status)
    response.headers.update(error.headers())
    return response


@router.get("/me")
async def my_security(
    request: Request,
    viewer: SignedIn,
    resume: str | None = None,
    done: str | None = None,
    before: str | None = None,
) -> Response:
    return await render_me(
        request, viewer, notice=DONE.get(done or ""), resume=resume, before=_sequence(before)
    )


@router.post("/me/totp")
async def start_totp(request: Request, viewer: SignedIn) -> Response:
    services = get_services(request)
    fields = await _checked_form(request, services)
    try:
        started = await services.enrollment.start_totp(
            viewer.subject_id, label=_label(fields), grant=presented_grant(request)
        )
    except PiigateError as error:
        return await _refused(request, viewer, error, "totp")
    return page(
        request,
        "me_totp.html",
        {
            "factor_id": started.factor.id,
            "secret": started.secret.reveal(),
            "qr": _svg_data_uri(started.qr_svg),
            "error": None,
        },
        viewer=viewer,
    )


@router.post("/me/totp/{factor_id}/confirm")
async def confirm_totp(factor_id: str, request: Request, viewer: SignedIn) -> Response:
    services = get_services(request)
    fields = await _checked_form(request, services)
    try:
        await services.enrollment.confirm_totp(viewer.subject_id, factor_id, _code(fields))
    except FactorRejected:
        context = {"factor_id": factor_id, "secret": None, "qr": None, "error": _WRONG_CODE}
        return page(request, "me_totp.html", context, viewer=viewer, status_code=401)
    except PiigateError as error:
        return await _refused(request, viewer, error, "totp")
    return _done("totp")


@router.post("/me/sms")
async def start_sms(request: Request, viewer: SignedIn) -> Response:
    services = get_services(request)
    fields = await _checked_form(request, services)
    try:
        sent = await services.sms.enroll(
            viewer.subject_id,
            fields.get("phone", "").strip()[:_PHONE_MAX],
            label=_label(fields),
            grant=presented_grant(request),
        )
    except PiigateError as error:
        return await _refused(request, viewer, error, "sms")
    return _sms_page(request, viewer, sent.factor.id, sent.hint, expires=when(sent.expires_at))


def _sms_page(
    request: Request,
    viewer: Viewer,
    factor_id: str,
    hint: str,
    *,
    expires: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    restricted = sms_restricted(get_services(request))
    context = {
        "factor_id": factor_id,
        "hint": hint,
        "expires": expires,
        "notice": RESTRICTED_NOTICE if restricted else None,
        "error": error,
    }
    return page(request, "me_sms.html", context, viewer=viewer, status_code=status_code)


@router.post("/me/sms/{factor_id}/confirm")
async def confirm_sms(factor_id: str, request: Request, viewer: SignedIn) -> Response:
    services = get_services(request)
    fields = await _checked_form(request, services)
    try:
        await services.sms.confirm(viewer.subject_id, factor_id, _code(fields))
    except FactorRejected:
        mine = [f for f in await services.enrollment.list(viewer.subject_id) if f.id == factor_id]
        hint = str(mine[0].data.get("hint") or "") if mine else ""
        return _sms_page(request, viewer, factor_id, hint, error=_WRONG_CODE, status_code=401)
    except PiigateError as error:
        return await _refused(request, viewer, error, "sms")
    return _done("sms")


@router.post("/me/push")
async def start_push(request: Request, viewer: SignedIn) -> Response:
    services = get_services(request)
    fields = await _checked_form(request, services)
    label = _label(fields)
    try:
        started = await services.push.devices.start_enrollment(
            viewer.subject_id, label=label, grant=presented_grant(request)
        )
    except PiigateError as error:
        return await _refused(request, viewer, error, "push")
    uri = started.uri.reveal()
    command = shlex.join(["piigate", "authenticator", "enroll", uri, "--name", label or "device"])
    context = {
        "uri": uri,
        "qr": _svg_data_uri(started.qr_svg),
        "command": command,
        "expires": when(started.expires_at),
    }
    return page(request, "me_push.html", context, viewer=viewer)


@router.post("/me/recovery")
async def new_recovery_codes(request: Request, viewer: SignedIn) -> Response:
    services = get_services(request)
    await _checked_form(request, services)
    try:
        created = await services.enrollment.new_recovery_codes(
            viewer.subject_id, grant=presented_grant(request)
        )
    except PiigateError as error:
        return await _refused(request, viewer, error, "recovery")
    codes = [code.reveal() for code in created.codes]
    return page(request, "me_recovery.html", {"codes": codes}, viewer=viewer)


@router.post("/me/factors/{factor_id}/remove")
async def remove_factor(factor_id: str, request: Request, viewer: SignedIn) -> Response:
    services = get_services(request)
    await _checked_form(request, services)
    try:
        await services.enrollment.remove(
            viewer.subject_id, factor_id, grant=presented_grant(request)
        )
    except PiigateError as error:
        return await _refused(request, viewer, error, f"remove:{factor_id}")
    return _done("removed")


@router.post("/me/activity/{seq}/report")
async def report_activity(seq: str, request: Request, viewer: SignedIn) -> Response:
    """ "This wasn't me" on one of the person's own events."""
    services = get_services(request)
    await _checked_form(request, services)
    number = _sequence(seq)
    event = await services.audit.get_event(number) if number is not None else None
    try:
        if event is None:
            raise NotFound("no such event")
        new = await services.reports.report(
            event, subject_id=viewer.subject_id, now=services.clock.now()
        )
    except PiigateError as error:
        return await _refused(request, viewer, error, "")
    done = "reported" if new else "already_reported"
    return _done(done, anchor="#activity")


def _svg_data_uri(svg: str) -> str:
    """Our own QR code SVG as an image URL (``img-src data:`` is allowed; it runs no script)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
