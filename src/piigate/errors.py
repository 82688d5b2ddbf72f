"""Errors that know their own protocol response (RFC 9457 problem details, RFC 9470 headers).

Messages are written for the outside: they never carry PII values, codes, secrets or tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from piigate.model import Challenge

__all__ = [
    "BadRequest",
    "Conflict",
    "FactorRejected",
    "Forbidden",
    "InsufficientScope",
    "NotFound",
    "PayloadTooLarge",
    "PiigateError",
    "PolicyError",
    "ServiceUnavailable",
    "StepUpRequired",
    "TooManyRequests",
    "Unauthorized",
    "problem_details",
    "step_up_header",
]

PROBLEM_BASE = "https://piigate.dev/problems/"


def problem_details(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An RFC 9457 problem details object: every problem body piigate sends is built here.

    ``type`` is the problem's URI under ``PROBLEM_BASE``; ``code`` repeats its last segment for
    clients that switch on a short name; ``extra`` holds extension members (RFC 9457 §3.2).
    """
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return body


class PiigateError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    def headers(self) -> Mapping[str, str]:
        return {}

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        return problem_details(
            status=self.status,
            code=self.code,
            title=self.title,
            detail=self.detail,
            instance=instance,
            extra=self.extra,
        )


class BadRequest(PiigateError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class PayloadTooLarge(PiigateError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class Unauthorized(PiigateError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"

    def headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="piigate"'}


class FactorRejected(Unauthorized):
    code = "factor_rejected"
    title = "Verification failed"


class Forbidden(PiigateError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "Insufficient scope"

    def __init__(self, scopes: Sequence[str], detail: str | None = None) -> None:
        super().__init__(detail or "the token lacks a required scope", scope=" ".join(scopes))
        self.scopes = tuple(scopes)

    def headers(self) -> Mapping[str, str]:
        scope = " ".join(self.scopes)
        return {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'}


class NotFound(PiigateError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(PiigateError):
    status = 409
    code = "conflict"
    title = "Conflict"


class TooManyRequests(PiigateError):
    status = 429
    code = "too_many_requests"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail or "too many requests; retry later")
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(PiigateError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


class PolicyError(PiigateError):
    """A policy that cannot be loaded; ``errors`` are ``FILE:LINE:COL: message`` lines."""

    code = "policy_invalid"
    title = "Invalid policy"

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors) if errors else "invalid policy")
        self.errors = list(errors)


def step_up_header(acr_values: Sequence[str], max_age: int | None) -> str:
    """The RFC 9470 §3 ``WWW-Authenticate`` challenge for insufficient user authentication."""
    parts = ['Bearer error="insufficient_user_authentication"']
    if acr_values:
        parts.append(f'acr_values="{" ".join(acr_values)}"')
    if max_age is not None:
        parts.append(f"max_age={int(max_age)}")
    return ", ".join(parts)


class StepUpRequired(PiigateError):
    """RFC 9470 insufficient user authentication. ``challenge``, when one was opened for the
    caller, is rendered into the problem body as a decision answer carries it."""

    status = 401
    code = "insufficient_user_authentication"
    title = "Step-up authentication required"

    def __init__(
        self,
        *,
        acr_values: Sequence[str],
        max_age: int | None,
        detail: str | None = None,
        challenge: Challenge | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or "a stronger or more recent authentication is required", **extra)
        self.acr_values = tuple(acr_values)
        self.max_age = max_age
        self.challenge = challenge

    def headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": step_up_header(self.acr_values, self.max_age)}
