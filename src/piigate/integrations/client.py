"""``PiigateClient``: a piigate service's decision and challenge endpoints, typed, for an app.

The app authenticates with its API key (scope ``decisions``). A decision names the challenge it
opened; the app relays its user's proof (``verify``), sends the SMS code or the push
(``send_sms``, ``send_push``), fetches WebAuthn options, or polls ``status`` for an out-of-band
approval, and then asks again with the grant. Grants obtained this way are for this app (their
``aud`` is its API key), so another app cannot use them.

Errors:

- the service answers with an error → :class:`PiigateProblem` (its RFC 9457 problem: status,
  ``code``, ``detail``; ``retry_after`` on a 429). Its message holds the status, the code and the
  service's detail, which never carries a code, token or PII value; nothing sent is repeated.
- the service cannot be reached, or does not answer in time → :class:`PiigateNetworkError`.
- it answers something else than the endpoint's document → :class:`PiigateBadAnswer`.

All three are :class:`PiigateClientError`. An app deciding with the client must treat any of
them as "not allowed" (``require_pii`` and the middleware answer 503).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from piigate.errors import ServiceUnavailable
from piigate.gateway.http.deciders import decision_body
from piigate.gateway.http.verdict import Verdict, verdict_from_json
from piigate.integrations.answers import (
    ChallengeInfo,
    ChallengeStatus,
    Granted,
    PushSent,
    SmsSent,
    WebAuthnOptions,
)
from piigate.jsontext import loads
from piigate.model import AccessRequest

__all__ = [
    "PiigateBadAnswer",
    "PiigateClient",
    "PiigateClientError",
    "PiigateNetworkError",
    "PiigateProblem",
]

DEFAULT_TIMEOUT: Final = 5.0
_A = TypeVar("_A", bound=BaseModel)


class PiigateClientError(Exception):
    """What the client raises."""


class PiigateProblem(PiigateClientError):
    """An error answer: ``status``, the problem's ``code`` (``http_<status>`` for an answer that
    is no problem document), ``detail``; ``problem`` is the whole document (a 401 step-up's
    holds the ``challenge``)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        problem: Mapping[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"piigate answered {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.problem: Mapping[str, Any] = problem or {}
        self.retry_after = retry_after


class PiigateNetworkError(PiigateClientError):
    """The service could not be reached, or did not answer in time."""


class PiigateBadAnswer(PiigateClientError):
    """The service answered, but not with what the endpoint returns."""


class PiigateClient:
    """``base_url``: the piigate service (``https://piigate.internal``); ``api_key``: the app's
    key (``pgk_...``, scope ``decisions``). ``http``: an ``httpx.AsyncClient`` to send through
    (its own base URL is not used; closing it is then yours); ``timeout`` in seconds."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {api_key}", "accept": "application/json"}
        self._owned = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        self._timeout = httpx.Timeout(timeout)

    def __repr__(self) -> str:  # never the API key
        return f"PiigateClient({self.base_url!r})"

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the endpoints ----------------------------------------------------------------------

    async def decide(self, request: AccessRequest) -> Verdict:
        """``POST /v1/decisions``: allow (with the classes to ``mask``), step_up (with the
        ``challenge`` opened, and its ``url`` and ``verify_url``) or deny."""
        body = await self._call("POST", "/v1/decisions", decision_body(request))
        try:
            return verdict_from_json(body, self.base_url)
        except ServiceUnavailable:
            raise PiigateBadAnswer("the decision service's answer is not a decision") from None

    async def challenge(self, challenge_id: str) -> ChallengeInfo:
        """``GET /v1/challenges/{id}``: what it asks to approve (to show the user)."""
        body = await self._call("GET", _path(challenge_id))
        return _read(ChallengeInfo, body)

    async def status(self, challenge_id: str) -> ChallengeStatus:
        """``GET /v1/challenges/{id}/status``; after a push or another person's approval, the
        first read carries the grant."""
        body = await self._call("GET", _path(challenge_id, "status"))
        return _read(ChallengeStatus, body)

    async def verify(
        self,
        challenge_id: str,
        method: str,
        *,
        code: str | None = None,
        credential: Mapping[str, Any] | None = None,
    ) -> Granted:
        """``POST /v1/challenges/{id}/verify``: the user's ``code`` (``totp``, ``sms``,
        ``recovery``) or WebAuthn ``credential`` (the assertion's JSON) → the grant. A refused
        proof is a :class:`PiigateProblem` 401 ``factor_rejected`` (429 while backed off)."""
        if (code is None) == (credential is None):
            raise ValueError("verify takes a code or a credential, one of them")
        proof: dict[str, Any] = {"method": str(method)}
        if code is not None:
            proof["code"] = code
        else:
            proof["credential"] = dict(credential or {})
        body = await self._call("POST", _path(challenge_id, "verify"), proof)
        return _read(Granted, body)

    async def send_sms(self, challenge_id: str, *, factor_id: str | None = None) -> SmsSent:
        """``POST /v1/challenges/{id}/sms``: text the code to the user's phone (a resend voids
        the older code)."""
        body = await self._call("POST", _path(challenge_id, "sms"), _factor(factor_id))
        return _read(SmsSent, body)

    async def send_push(self, challenge_id: str, *, factor_id: str | None = None) -> PushSent:
        """``POST /v1/challenges/{id}/push``: push it to the user's devices; show them the
        number. The grant then comes from ``status``."""
        body = await self._call("POST", _path(challenge_id, "push"), _factor(factor_id))
        return _read(PushSent, body)

    async def webauthn_options(self, challenge_id: str) -> WebAuthnOptions:
        """``GET /v1/challenges/{id}/webauthn``: the options for the user's browser."""
        body = await self._call("GET", _path(challenge_id, "webauthn"))
        return _read(WebAuthnOptions, body)

    # -- the wire ---------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: object = None) -> object:
        try:
            response = await self._http.request(
                method,
                self.base_url + path,
                json=body,
                headers=self._headers,
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise PiigateNetworkError(
                f"cannot reach the piigate service at {self.base_url} ({type(exc).__name__})"
            ) from exc
        if not response.is_success:
            raise _problem(response)
        try:
            return loads(response.content)
        except ValueError:
            raise PiigateBadAnswer(f"{method} {_shape(path)}: the answer is not JSON") from None


def _path(challenge_id: str, action: str | None = None) -> str:
    if not challenge_id:
        raise ValueError("a challenge id is required")
    path = f"/v1/challenges/{quote(challenge_id, safe='')}"
    return path if action is None else f"{path}/{action}"


def _shape(path: str) -> str:
    """The endpoint, without the challenge's id."""
    parts = path.split("/")
    if len(parts) > 3 and parts[2] == "challenges":
        parts[3] = "{id}"
    return "/".join(parts)


def _factor(factor_id: str | None) -> dict[str, str] | None:
    return None if factor_id is None else {"factor_id": factor_id}


def _read(model: type[_A], body: object) -> _A:
    try:
        return model.model_validate(body)
    except ValidationError:  # its text would quote the answer, a grant's token included
        raise PiigateBadAnswer(f"the answer is not a {model.__name__}") from None


def _problem(response: httpx.Response) -> PiigateProblem:
    status = response.status_code
    problem: dict[str, Any] = {}
    if "json" in response.headers.get("content-type", ""):
        try:
            parsed = loads(response.content)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            problem = parsed
    code = problem.get("code")
    detail = problem.get("detail")
    retry = response.headers.get("retry-after", "")
    return PiigateProblem(
        status,
        code if isinstance(code, str) and code else f"http_{status}",
        detail if isinstance(detail, str) and detail else response.reason_phrase,
        problem=problem,
        retry_after=int(retry) if retry.isdigit() else None,
    )
