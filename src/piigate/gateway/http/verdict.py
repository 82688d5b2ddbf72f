"""What the gateway makes of a decision, and the answers it gives a client itself.

A :class:`Verdict` is a decision as the gateway needs it, whether the engine runs in this
process (built from the engine's ``Decision``) or in a piigate service asked over
``POST /v1/decisions`` (read from the JSON answer by :func:`verdict_from_json`, which refuses an
answer it cannot read: the gateway then fails closed). :func:`refusal` renders a verdict that
stops the request, exactly as clients of every edge (proxy, forward-auth, middleware) see it:

- ``step_up`` → 401, ``WWW-Authenticate: Bearer error="insufficient_user_authentication",
  acr_values="...", max_age=N`` (RFC 9470) and a problem carrying the challenge opened for the
  caller (its id, expiry and the URLs to answer it);
- ``deny`` → 403 problem; a rule's missing OAuth scope → 403 ``insufficient_scope`` with
  ``WWW-Authenticate: Bearer error="insufficient_scope", scope="..."`` (RFC 6750 §3.1).

An allow with ``mask`` goes on, and :func:`unlock_headers` says what was hidden and what would
unlock it (``PIIGate-Masked``, ``PIIGate-Unlock``). An edge that cannot mask the answer
(forward-auth, which never sees it) answers such an allow with :func:`unlock_refusal` instead:
the step-up that would unlock it, so that PII never goes out unmasked.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from piigate.errors import (
    Forbidden,
    InsufficientScope,
    PiigateError,
    ServiceUnavailable,
    StepUpRequired,
)
from piigate.model import Outcome

__all__ = [
    "MASKED_HEADER",
    "PROBLEM_TYPE",
    "UNLOCK_HEADER",
    "Answer",
    "Audited",
    "Verdict",
    "already_audited",
    "answer_masks",
    "challenge_links",
    "problem_answer",
    "refusal",
    "unlock_headers",
    "unlock_refusal",
    "verdict_from_json",
]

PROBLEM_TYPE: Final = "application/problem+json"
MASKED_HEADER: Final = "PIIGate-Masked"
UNLOCK_HEADER: Final = "PIIGate-Unlock"


@dataclass(frozen=True, slots=True)
class Verdict:
    decision_id: str
    outcome: Outcome
    mask: frozenset[str] = frozenset()
    # The strongest level the caller proved for the request (an allow), for the upstream.
    level: str | None = None
    # What would satisfy the policy (step_up, or unlock a masked allow).
    required_level: str | None = None
    acr_values: tuple[str, ...] = ()
    max_age: int | None = None
    methods: tuple[str, ...] = ()
    # The challenge opened for the caller, as the decision API renders it, with its links.
    challenge: Mapping[str, Any] | None = None
    reason: str | None = None
    missing_scope: tuple[str, ...] = ()


# A decider's second answer (``decide_early``): the verdict as audited, once its audit event is
# durable; it raises when the event could not be made so.
Audited = Callable[[], Awaitable[Verdict]]


def already_audited(verdict: Verdict) -> tuple[Verdict, Audited]:
    """``decide_early`` of a decider whose verdicts arrive audited (a remote engine)."""

    async def audited() -> Verdict:
        return verdict

    return verdict, audited


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer the gateway gives without the upstream."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def challenge_links(challenge: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """``challenge`` with the URLs a client answers it at, on the piigate service at
    ``base_url``: ``url`` (the step-up page) and ``verify_url`` (``POST`` a proof)."""
    base = base_url.rstrip("/")
    cid = challenge["id"]
    return {
        **challenge,
        "url": f"{base}/stepup/{cid}",
        "verify_url": f"{base}/v1/challenges/{cid}/verify",
    }


def problem_answer(exc: PiigateError, instance: str | None = None) -> Answer:
    """``exc`` as a problem+json answer with its headers."""
    return _answer(exc.status, exc.problem(instance), exc.headers())


def refusal(verdict: Verdict, instance: str | None = None) -> Answer | None:
    """The answer that stops a request on ``verdict``; None when it goes on (allow)."""
    if verdict.outcome is Outcome.ALLOW:
        return None
    if verdict.outcome is Outcome.STEP_UP:
        return _step_up(verdict, instance)
    if verdict.missing_scope:
        return problem_answer(InsufficientScope(list(verdict.missing_scope)), instance)
    forbidden = Forbidden(verdict.reason or "the policy denies this request")
    forbidden.extra["decision_id"] = verdict.decision_id
    return problem_answer(forbidden, instance)


def answer_masks(verdict: Verdict, classes: Iterable[str]) -> Verdict:
    """``verdict`` on reading a write's answer, whose PII is ``classes``, as the mask to apply:
    an allow as it is; a step-up or a denial masks every one of ``classes`` (the write has
    been allowed and its answer goes out, without what the caller may not read), a step-up
    naming what would unlock them."""
    if verdict.outcome is Outcome.ALLOW:
        return verdict
    return replace(verdict, mask=frozenset(classes))


def unlock_refusal(verdict: Verdict, instance: str | None = None) -> Answer:
    """An allow with ``mask``, for an edge that cannot mask the answer: 401 with the step-up
    that unlocks the masked classes (as :func:`refusal` renders a ``step_up``, plus ``masked``);
    403 when the verdict names no step-up. Fail closed either way: nothing goes through."""
    masked = sorted(verdict.mask)
    if verdict.required_level is None:
        forbidden = Forbidden(
            "the policy would mask this answer, and this edge cannot mask it",
            decision_id=verdict.decision_id,
            masked=masked,
        )
        return problem_answer(forbidden, instance)
    detail = (
        f"the policy masks {', '.join(masked)} without a step-up, and this edge cannot mask "
        "the answer: step up to read it"
    )
    return _step_up(verdict, instance, detail=detail, masked=masked)


def _step_up(
    verdict: Verdict,
    instance: str | None,
    *,
    detail: str | None = None,
    masked: list[str] | None = None,
) -> Answer:
    exc = StepUpRequired(acr_values=verdict.acr_values, max_age=verdict.max_age, detail=detail)
    body = exc.problem(instance)
    if masked is not None:
        body["masked"] = masked
    body["decision_id"] = verdict.decision_id
    body["required"] = {
        "level": verdict.required_level,
        "acr_values": list(verdict.acr_values),
        "max_age": verdict.max_age,
        "methods": list(verdict.methods),
    }
    if verdict.challenge is not None:
        body["challenge"] = dict(verdict.challenge)
    return _answer(exc.status, body, exc.headers())


def unlock_headers(verdict: Verdict, masked: Sequence[str]) -> list[tuple[str, str]]:
    """``PIIGate-Masked`` (the classes hidden) and ``PIIGate-Unlock`` (the step-up that would
    release them, in the ``WWW-Authenticate`` parameters' syntax, with the challenge's id)."""
    if not masked:
        return []
    headers = [(MASKED_HEADER, ", ".join(sorted(masked)))]
    params = []
    if verdict.acr_values:
        params.append(f'acr_values="{" ".join(verdict.acr_values)}"')
    if verdict.max_age is not None:
        params.append(f"max_age={verdict.max_age}")
    if verdict.challenge is not None:
        params.append(f'challenge="{verdict.challenge["id"]}"')
    if params:
        headers.append((UNLOCK_HEADER, ", ".join(params)))
    return headers


def _answer(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> Answer:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Answer(status, (("content-type", PROBLEM_TYPE), *headers.items()), data)


# -- a remote engine's answer ---------------------------------------------------------------


def verdict_from_json(body: object, base_url: str) -> Verdict:
    """The verdict in a ``POST /v1/decisions`` answer of the service at ``base_url``;
    ``ServiceUnavailable`` (fail closed) when it is not one."""
    try:
        return _read_verdict(body, base_url)
    except (KeyError, TypeError, ValueError) as exc:
        raise ServiceUnavailable("the decision service gave an unreadable answer") from exc


def _read_verdict(body: object, base_url: str) -> Verdict:
    if not isinstance(body, dict):
        raise TypeError("not an object")
    outcome = Outcome(_text(body["outcome"]))
    required = body.get("required") or {}
    if not isinstance(required, dict):
        raise TypeError("required")
    max_age = required.get("max_age")
    if max_age is not None and (not isinstance(max_age, int) or isinstance(max_age, bool)):
        raise TypeError("max_age")
    challenge = body.get("challenge")
    if challenge is not None:
        if not isinstance(challenge, dict):
            raise TypeError("challenge")
        _text(challenge["id"])
        challenge = challenge_links(challenge, base_url)
    level = body.get("level")
    return Verdict(
        decision_id=_text(body["decision_id"]),
        outcome=outcome,
        mask=frozenset(_texts(body.get("mask", []))),
        level=None if level is None else _text(level),
        required_level=None if not required else _text(required["level"]),
        acr_values=_texts(required.get("acr_values", [])),
        max_age=max_age,
        methods=_texts(required.get("methods", [])),
        challenge=challenge,
        reason=_optional_text(body.get("reason")),
        missing_scope=_texts(body.get("missing_scope", [])),
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    # A value that goes into a header must not be able to split it.
    if any(c in value for c in '"\r\n\x00'):
        raise ValueError("not a header-safe string")
    return value


def _optional_text(value: object) -> str | None:
    """A message for a problem body (JSON-escaped there), never for a header."""
    if value is not None and not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return tuple(_text(v) for v in value)
