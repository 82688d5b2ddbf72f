"""Local login (CONTRACT §4.1): ``POST /v1/login`` sets the session cookie; ``/v1/logout``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from piigate.api.auth import SESSION_COOKIE
from piigate.api.jsonbody import JsonRoute
from piigate.api.schemas import LoginIn
from piigate.api.services import get_services
from piigate.crypto.secret import Secret

router = APIRouter(tags=["sessions"], route_class=JsonRoute)

LOGIN_PATH = "/v1/login"
LOGOUT_PATH = "/v1/logout"
# Checked for cross-site use even without a session cookie (api.middleware.CrossSiteGuard).
ENTRY_PATHS = (LOGIN_PATH, LOGOUT_PATH)


@router.post(LOGIN_PATH, summary="Log in with a local username and password")
async def login(body: LoginIn, request: Request, response: Response) -> dict[str, Any]:
    services = get_services(request)
    ip = request.client.host if request.client else None
    result = await services.logins.login(body.username, Secret(body.password), ip)
    assert result.token is not None
    response.set_cookie(
        SESSION_COOKIE,
        result.token,
        max_age=services.settings.session_ttl,
        httponly=True,
        secure=services.settings.public_url.startswith("https://"),
        samesite="lax",
        path="/",
    )
    return {
        "subject": result.subject.id,
        "roles": sorted(result.subject.roles),
        "level": result.session.level,
        "session_id": result.session.id,
    }


@router.post(LOGOUT_PATH, status_code=204, summary="End the console session")
async def logout(request: Request, response: Response) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await get_services(request).logins.logout(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
