"""One renderer for every error: RFC 9457 ``application/problem+json``.

Validation errors name the field and the rule broken, never the value sent (it may be PII).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import Scope

from piigate.api.jsonbody import DuplicateKeyError
from piigate.api.schemas import challenge_json
from piigate.errors import BadRequest, PiigateError, StepUpRequired, problem_details
from piigate.logs import redact_text

__all__ = ["ProblemResponse", "install_problem_handlers", "instance_of", "problem_response"]

log = structlog.get_logger("piigate.api")
PROBLEM = "application/problem+json"
# RFC 3986 pchar and "/", left as they are when the path is put back together.
_PATH_SAFE = "/!$&'()*+,;=:@"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM


def route_of(request: Request) -> str | None:
    """The matched route's template (``/v1/challenges/{challenge_id}``), for log lines.

    A path can carry whatever the client put in it (an SSN where an id belongs), so log lines
    name the route instead; an unmatched path is not repeated at all.
    """
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else None


def instance_of(scope: Scope) -> str:
    """A problem's ``instance`` (RFC 9457 §3.1.5): the path the client asked for, without the
    query, with what looks like a code, a phone or identity number or a token redacted as in
    log lines (``/v1/challenges/[redacted]``, percent-encoded), since the client may have put
    one where an id belongs."""
    return quote(redact_text(str(scope.get("path", ""))), safe=_PATH_SAFE)


def problem_response(exc: PiigateError, request: Request | None = None) -> ProblemResponse:
    instance = instance_of(request.scope) if request is not None else None
    body = exc.problem(instance)
    if isinstance(exc, StepUpRequired) and exc.challenge is not None:
        # The challenge opened for the caller, as a decision answer carries it (RFC 9470's
        # WWW-Authenticate is in the headers): the client can go straight to verifying it.
        body["challenge"] = challenge_json(exc.challenge)
    return ProblemResponse(body, status_code=exc.status, headers=dict(exc.headers()))


def install_problem_handlers(app: FastAPI) -> None:
    async def on_piigate(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, PiigateError)
        if exc.status >= 500:
            log.warning("request_failed", code=exc.code, route=route_of(request))
        return problem_response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, RequestValidationError)
        errors: list[dict[str, Any]] = []
        duplicate = exc.__cause__ if isinstance(exc.__cause__, DuplicateKeyError) else None
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                if duplicate is not None:  # the key's path; its values are never repeated
                    errors.append({"field": duplicate.path, "message": "duplicate key"})
                else:
                    errors.append({"field": "body", "message": "malformed JSON"})
                continue
            loc = [str(part) for part in err.get("loc", ()) if part != "body"]
            errors.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        invalid = BadRequest(f"{first['field']}: {first['message']}", errors=errors)
        return problem_response(invalid, request)

    async def on_http(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = problem_details(
            status=exc.status_code,
            code=code,
            title=str(exc.detail) if isinstance(exc.detail, str) else "HTTP error",
            detail=str(exc.detail),
            instance=instance_of(request.scope),
        )
        return ProblemResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> ProblemResponse:
        # Log the type only: exception text may quote request data.
        log.error("unhandled_error", error=type(exc).__name__, route=route_of(request))
        return problem_response(PiigateError("internal error"), request)

    app.add_exception_handler(PiigateError, on_piigate)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
