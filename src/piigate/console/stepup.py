"""The step-up page: ``GET /stepup/{challenge}`` (README "The step-up page").

It says what is being approved (``api.routes.challenges.challenge_view``, the API's own view,
in words: ``stepup_view.py``) and offers the challenge's methods the person has enrolled.
Codes (TOTP, SMS, recovery) are plain forms posted to ``POST /stepup/{id}/verify``, which
verifies through the API's own function (``api.routes.verify.verify_own``: the one
``Verifier``, the risk engine told, the device cookie renewed); ``static/stepup.js`` posts
the same handler as JSON (WebAuthn too), sends SMS codes and pushes through ``/v1``, and
polls ``GET /stepup/{id}/status`` (which collects a push's grant).

Who may open it: the challenge's subject signed in to the console, or the person mid-login
whose ``piigate_login_ticket`` cookie is for this very challenge. Anyone else gets one "not
found or not yours" page, whether the challenge exists or not; without a session or ticket the
browser is sent to sign in first.

On success the grant goes into the ``piigate_grant`` cookie (``HttpOnly``, ``SameSite=Lax``,
``Secure`` on https, for the grant's lifetime), which the HTTP gateway reads, and the browser
goes back to ``return_to``: a path here, or a URL on an origin of
``service.console.return_to_origins``; anything else is ``/``. The token is never in a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, RedirectResponse, Response

from piigate.api.auth import GRANT_COOKIE, LOGIN_TICKET_COOKIE
from piigate.api.devices import presented_device
from piigate.api.routes.challenges import challenge_view, visible_challenge
from piigate.api.routes.verify import renew_device, verify_own
from piigate.api.schemas import VerifyIn
from piigate.api.services import Services, get_services
from piigate.callers import Caller
from piigate.console.csrf import CSRF_FIELD, check_csrf
from piigate.console.forms import form_fields
from piigate.console.stepup_view import step_up_view
from piigate.console.web import NotSignedIn, Viewer, page, safe_return_to, viewer_of
from piigate.errors import BadRequest, Conflict, NotFound, ServiceUnavailable, TooManyRequests
from piigate.factors.fresh import Purpose
from piigate.identity.tickets import MAX_TICKET_LENGTH
from piigate.jsontext import loads
from piigate.model import Action, Challenge, ChallengeState, Method
from piigate.stepup.grants import grant_of_approval
from piigate.stepup.verdicts import (
    IssuedGrant,
    VerificationFailure,
    VerificationRejected,
    VerificationThrottled,
)

__all__ = ["CODE_FAILED", "PROOF_FAILED", "router"]

router = APIRouter(include_in_schema=False)

# One message for any refused proof: which part was wrong is the audit log's to know.
CODE_FAILED: Final = "That code did not work. Try again."
PROOF_FAILED: Final = "That did not work. Try again."
# Refusals that say nothing of the proof: the page shows the challenge's state instead.
_NOT_A_PROOF: Final = frozenset({VerificationFailure.EXPIRED, VerificationFailure.NOT_PENDING})
_MAX_CODE: Final = 128
_NO_STORE: Final = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class Opened:
    """A challenge the person at this browser may answer, and as whom."""

    caller: Caller
    challenge: Challenge
    viewer: Viewer | None


async def _callers(
    request: Request, services: Services, challenge_id: str
) -> tuple[Viewer | None, list[Caller]]:
    """The console session's person and the login ticket's, each if present and valid."""
    viewer = await viewer_of(request)
    callers = [viewer.caller] if viewer is not None else []
    ticket = request.cookies.get(LOGIN_TICKET_COOKIE)
    if ticket and len(ticket) <= MAX_TICKET_LENGTH:
        mid_login = await services.login.ticket_caller(ticket, challenge_id)
        if mid_login is not None:
            callers.append(mid_login)
    return viewer, callers


async def _open(
    request: Request, services: Services, challenge_id: str, *, sign_in: bool = False
) -> tuple[Viewer | None, Opened | None]:
    """The challenge, if one of this browser's people may answer it (None otherwise: unknown,
    someone else's, or only readable as an admin). ``sign_in``: with no one signed in or
    mid-login, :class:`NotSignedIn` (to the sign-in page, and back)."""
    viewer, callers = await _callers(request, services, challenge_id)
    if not callers and sign_in:
        raise NotSignedIn
    for caller in callers:
        try:
            challenge = await visible_challenge(services, challenge_id, caller)
        except NotFound:
            continue
        if caller.may_answer(challenge):
            return viewer, Opened(caller, challenge, viewer)
    return viewer, None


def _return_to(services: Services, target: str | None) -> str:
    settings = services.settings
    return safe_return_to(
        target, public_url=settings.public_url, allowed=settings.return_to_origins
    )


async def _asked_by(services: Services, challenge: Challenge) -> str:
    """Who asked for the step-up, in words: the app (by its key's name), or the person."""
    if challenge.action is Action.LOGIN:
        return "Your sign-in"
    if challenge.resource.type in {p.value for p in Purpose}:
        return "You (your own step-up)"
    if challenge.requested_by is None:
        return "You"
    key = await services.store.api_key_by_id(challenge.requested_by)
    return f"The app {key.name!r}" if key is not None else "An app"


async def _from_here(services: Services, request: Request, challenge: Challenge) -> bool | None:
    """Whether the request came from this browser's device (None: the challenge names none)."""
    if challenge.device_id is None:
        return None
    here = await services.devices.resolve(presented_device(request.cookies, request.headers))
    return here == challenge.device_id


def _grant_until(services: Services, challenge: Challenge) -> datetime | None:
    """Until when an approved challenge's grant lasts (the grant the approval yields)."""
    compiled = services.policy.current
    if challenge.approval is None or compiled is None:
        return None
    ttl = compiled.policy.stepup.grant_ttl
    return grant_of_approval(challenge, challenge.approval, grant_id="-", ttl=ttl).expires_at


async def _page(
    request: Request,
    services: Services,
    opened: Opened,
    *,
    return_to: str,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    focus: str | None = None,
) -> Response:
    """The page for ``opened``, as it is now."""
    challenge = opened.challenge
    shown = step_up_view(
        await challenge_view(services, challenge, opened.caller),
        factors=await services.enrollment.list(challenge.subject_id),
        asked_by=await _asked_by(services, challenge),
        from_here=await _from_here(services, request, challenge),
        grant_until=_grant_until(services, challenge),
    )
    values = {
        "step": shown,
        "return_to": return_to,
        "error": error,
        "notice": notice,
        "focus": focus,
    }
    return page(request, "stepup.html", values, viewer=opened.viewer, status_code=status)


def _not_found(request: Request, viewer: Viewer | None, *, as_json: bool = False) -> Response:
    """The one answer for a challenge that does not exist and one that is not the viewer's."""
    if as_json:
        return JSONResponse({"error": "not_found"}, status_code=404, headers=_NO_STORE)
    return page(request, "stepup_missing.html", viewer=viewer, status_code=404)


def _keep_grant(services: Services, response: Response, issued: IssuedGrant) -> None:
    """The grant as the ``piigate_grant`` cookie, for as long as it lasts."""
    left = issued.grant.expires_at.timestamp() - services.clock.now().timestamp()
    response.set_cookie(
        GRANT_COOKIE,
        issued.token,
        max_age=max(0, int(left)),
        httponly=True,
        secure=services.settings.public_url.startswith("https://"),
        samesite="lax",
        path="/",
    )


@router.get("/stepup/{challenge_id}")
async def step_up_page(
    request: Request, challenge_id: str, return_to: str | None = None
) -> Response:
    services = get_services(request)
    viewer, opened = await _open(request, services, challenge_id, sign_in=True)
    if opened is None:
        return _not_found(request, viewer)
    return await _page(request, services, opened, return_to=_return_to(services, return_to))


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json"


async def _proof(request: Request, services: Services) -> tuple[VerifyIn, str | None]:
    """The proof posted (a form, or JSON from the page's script) and its ``return_to``, the
    CSRF token checked first."""
    if _is_json(request):
        await check_csrf(request, services, None)
        try:
            proof = VerifyIn.model_validate(loads(await request.body()))
        except (ValidationError, ValueError):
            raise BadRequest('send {"method", "code"} or {"method", "credential"}') from None
        return proof, request.query_params.get("return_to")
    fields = await form_fields(request)
    await check_csrf(request, services, fields.get(CSRF_FIELD))
    code = "".join(fields.get("code", "").split())[:_MAX_CODE]
    method = fields.get("method", "")[:32]
    if not method:
        raise BadRequest("the form names no method")
    return VerifyIn(method=method, code=code), fields.get("return_to")


@router.post("/stepup/{challenge_id}/verify")
async def verify_proof(request: Request, challenge_id: str) -> Response:
    """A code from the page's forms, or a proof from its script (JSON: the answer is JSON
    too). Success: the grant cookie, and back to ``return_to``."""
    services = get_services(request)
    as_json = _is_json(request)
    proof, target = await _proof(request, services)
    return_to = _return_to(services, target)
    viewer, opened = await _open(request, services, challenge_id)
    if opened is None:
        return _not_found(request, viewer, as_json=as_json)
    try:
        issued, device = await verify_own(services, request, challenge_id, proof, opened.caller)
    except VerificationRejected as refused:
        failed = None if refused.reason in _NOT_A_PROOF else _failed(proof.method)
        return await _refused(request, services, opened, proof, return_to, failed, 401, as_json)
    except VerificationThrottled as throttled:
        wait = f"Too many tries. Wait {_seconds(throttled.retry_after)}, then try again."
        answer = await _refused(request, services, opened, proof, return_to, wait, 429, as_json)
        answer.headers.update(throttled.headers())
        return answer
    except NotFound:
        return _not_found(request, viewer, as_json=as_json)
    response: Response
    if as_json:
        expires = int(issued.grant.expires_at.timestamp())
        body = {"state": "approved", "grant_expires_at": expires, "return_to": return_to}
        response = JSONResponse(body, headers=_NO_STORE)
    else:
        response = RedirectResponse(return_to, status_code=303)
    renew_device(services, response, device)
    _keep_grant(services, response, issued)
    return response


def _seconds(count: int) -> str:
    return "1 second" if count == 1 else f"{count} seconds"


def _failed(method: str) -> str:
    codes = {Method.TOTP.value, Method.SMS.value, Method.RECOVERY.value}
    return CODE_FAILED if method in codes else PROOF_FAILED


async def _refused(
    request: Request,
    services: Services,
    opened: Opened,
    proof: VerifyIn,
    return_to: str,
    message: str | None,
    status: int,
    as_json: bool,
) -> Response:
    """The page (or JSON) after a refused proof: the challenge as it is now (expired, denied
    after its last attempt, or still pending with ``message``)."""
    _, again = await _open(request, services, opened.challenge.id)
    current = again or opened
    state = current.challenge.state.value
    message = message if state == ChallengeState.PENDING else None
    if as_json:
        return JSONResponse({"state": state, "error": message}, status, headers=_NO_STORE)
    return await _page(
        request,
        services,
        current,
        return_to=return_to,
        status=status,
        error=message,
        focus=proof.method,
    )


@router.get("/stepup/{challenge_id}/status")
async def step_up_status(
    request: Request, challenge_id: str, return_to: str | None = None
) -> Response:
    """For the page's script: the challenge's state; once approved out of band (a push,
    another person), the grant is collected here, once, into the cookie."""
    services = get_services(request)
    await check_csrf(request, services, None)
    viewer, opened = await _open(request, services, challenge_id)
    if opened is None:
        return _not_found(request, viewer, as_json=True)
    challenge = opened.challenge
    body: dict[str, Any] = {"state": challenge.state.value}
    issued = await services.verifier.collect(challenge)
    if issued is not None:
        body["grant_expires_at"] = int(issued.grant.expires_at.timestamp())
    if challenge.state is ChallengeState.APPROVED:
        body["return_to"] = _return_to(services, return_to)
    response = JSONResponse(body, headers=_NO_STORE)
    if issued is not None:
        _keep_grant(services, response, issued)
    return response


@router.post("/stepup/{challenge_id}/sms")
async def send_sms_code(request: Request, challenge_id: str) -> Response:
    """The SMS form without the page's script: send (or send again) the code, then the page
    with where it went."""
    services = get_services(request)
    fields = await form_fields(request)
    await check_csrf(request, services, fields.get(CSRF_FIELD))
    return_to = _return_to(services, fields.get("return_to"))
    viewer, opened = await _open(request, services, challenge_id)
    if opened is None:
        return _not_found(request, viewer)
    try:
        sent = await services.sms.send(challenge_id, caller=opened.caller)
    except TooManyRequests as refused:
        wait = f"Too many codes were sent. Wait {_seconds(refused.retry_after)}, then try again."
        return await _page(request, services, opened, return_to=return_to, status=429, error=wait)
    except Conflict:
        cannot = "A code cannot be sent for this request."
        return await _page(request, services, opened, return_to=return_to, status=409, error=cannot)
    except ServiceUnavailable:
        later = "The code could not be sent. Try again in a moment."
        return await _page(request, services, opened, return_to=return_to, status=503, error=later)
    notice = f"We sent a code to {sent.hint}."
    return await _page(
        request, services, opened, return_to=return_to, notice=notice, focus=Method.SMS.value
    )
