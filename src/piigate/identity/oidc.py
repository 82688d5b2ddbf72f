"""The console as an OpenID Connect relying party of the configured identity provider:
authorization code flow with PKCE (OpenID Connect Core 1.0 §3.1, RFC 7636).

- Discovery (OpenID Connect Discovery 1.0 §4): ``{issuer}/.well-known/openid-configuration``,
  fetched at run time, cached for ``discovery_ttl``; a failed fetch keeps the document held
  (stale-if-error) and is not retried for ``retry_interval``. The document must name the
  configured issuer exactly, and its endpoints must be https (http only on loopback).
- The code is exchanged at the token endpoint with the flow's verifier (RFC 6749 §4.1.3), the
  client authenticated by ``client_secret_basic`` (or ``_post``) when it has a secret.
- The ID token (Core §3.1.3.7) is checked by :class:`~piigate.identity.jwt.JwtValidator`
  against the provider's JWKS (signature, ``iss``, ``aud`` = the client id, ``exp``), then here:
  the flow's ``nonce``, ``azp`` when several audiences are named, ``iat`` within the flow.

Every refusal is :class:`OidcRefused` with a fixed ``reason`` for the audit log; an unreachable
provider is :class:`~piigate.identity.errors.IdpUnavailable`. Neither holds a code or a token.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote_plus

import httpx
import structlog

from piigate.identity.errors import IdpUnavailable, InvalidToken
from piigate.identity.federation import MAX_SUBJECT_LENGTH, FederatedLogin
from piigate.identity.jwt import (
    ASYMMETRIC_ALGORITHMS,
    DEFAULT_ALGORITHMS,
    JwtValidator,
    LevelResolver,
)
from piigate.identity.oidc_flow import SignInFlow, authorization_url
from piigate.oidc_settings import OidcClientSettings, idp_url_problem

if TYPE_CHECKING:
    from piigate.config import IdentitySettings

__all__ = ["OAUTH_ERRORS", "OidcClient", "OidcRefused", "ProviderMetadata", "idp_clients"]

log = structlog.get_logger("piigate.oidc")

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
_MAX_DOCUMENT: Final = 256 * 1024
_ENDPOINTS: Final = ("authorization_endpoint", "token_endpoint", "jwks_uri")
# The error codes of RFC 6749 §4.1.2.1 and §5.2 and OpenID Connect Core §3.1.2.6: only these
# are ever repeated (in an audit reason), never a provider's free text.
OAUTH_ERRORS: Final = frozenset(
    {
        *("invalid_request", "unauthorized_client", "access_denied", "invalid_scope"),
        *("unsupported_response_type", "server_error", "temporarily_unavailable"),
        *("invalid_client", "invalid_grant", "unsupported_grant_type"),
        *("interaction_required", "login_required", "account_selection_required"),
        *("consent_required", "invalid_request_uri", "invalid_request_object"),
        *("request_not_supported", "request_uri_not_supported", "registration_not_supported"),
    }
)


class OidcRefused(Exception):
    """The provider's answer is not accepted as a sign-in. ``reason`` is for the audit log."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the sign-in was refused ({reason})")
        self.reason = reason


class _BadDocument(Exception):
    """A discovery document or token answer that cannot be used (the text says why)."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the console uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...] = ()
    id_token_algorithms: tuple[str, ...] = ()


def read_metadata(document: Mapping[str, Any], *, expected_issuer: str) -> ProviderMetadata:
    """The metadata of a discovery document, or :class:`_BadDocument`."""
    if document.get("issuer") != expected_issuer:
        raise _BadDocument("the document names another issuer")
    urls: dict[str, str] = {}
    for name in _ENDPOINTS:
        value = document.get(name)
        if not isinstance(value, str) or idp_url_problem(value) is not None:
            raise _BadDocument(f"{name} is missing or not an https URL")
        urls[name] = value
    methods = _names(document.get("token_endpoint_auth_methods_supported"))
    algorithms = _names(document.get("id_token_signing_alg_values_supported"))
    return ProviderMetadata(
        issuer=expected_issuer,
        token_auth_methods=methods,
        id_token_algorithms=algorithms,
        **urls,
    )


def _names(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


class OidcClient:
    """Signs people in to the console at the identity provider ``issuer`` (see the module)."""

    def __init__(
        self,
        *,
        issuer: str,
        settings: OidcClientSettings,
        redirect_uri: str,
        roles_claim: str,
        http: httpx.AsyncClient | None = None,
        discovery_ttl: float = 3600.0,
        retry_interval: float = 5.0,
        leeway: int = 60,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.settings = settings
        self.redirect_uri = redirect_uri
        self.roles_claim = settings.roles_claim or roles_claim
        self.leeway = leeway
        self._http = http or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self._owns_http = http is None
        self._ttl = discovery_ttl
        self._retry = retry_interval
        self._timer = timer
        self._lock = asyncio.Lock()
        self._held: tuple[ProviderMetadata, float] | None = None
        self._failed_at: float | None = None
        self._validator: JwtValidator | None = None

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def authorization_url(self, flow: SignInFlow) -> str:
        """Where to send the browser to sign in for ``flow``."""
        metadata = await self.metadata()
        return authorization_url(
            metadata.authorization_endpoint,
            client_id=self.settings.client_id,
            redirect_uri=self.redirect_uri,
            scopes=self.settings.scopes,
            flow=flow,
        )

    async def sign_in(self, *, code: str, flow: SignInFlow, now: datetime) -> FederatedLogin:
        """The person the provider vouches for with ``code``, the answer to ``flow``: the code
        exchanged, the ID token checked. :class:`OidcRefused` or :class:`IdpUnavailable`."""
        metadata = await self.metadata()
        id_token = await self._exchange(metadata, code, flow)
        return await self._identity(metadata, id_token, flow, now)

    # -- discovery ----------------------------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        """The provider's metadata, from the cache while it is fresh."""
        held = self._held
        if held is not None and self._timer() - held[1] < self._ttl:
            return held[0]
        async with self._lock:
            held = self._held
            if held is not None and self._timer() - held[1] < self._ttl:
                return held[0]
            failed = self._failed_at
            if failed is None or self._timer() - failed >= self._retry:
                try:
                    document = await self._get_json(self.issuer.rstrip("/") + DISCOVERY_PATH)
                    fresh = read_metadata(document, expected_issuer=self.issuer)
                except (httpx.HTTPError, _BadDocument) as exc:
                    self._failed_at = self._timer()
                    log.warning("oidc_discovery_failed", reason=_why(exc))
                else:
                    self._failed_at = None
                    self._held = held = (fresh, self._timer())
            if held is None:
                raise IdpUnavailable()
            return held[0]

    async def _get_json(self, url: str) -> dict[str, Any]:
        async with self._http.stream("GET", url, headers={"Accept": "application/json"}) as answer:
            if answer.status_code != httpx.codes.OK:
                raise _BadDocument(f"HTTP {answer.status_code}")
            return await _json_body(answer)

    # -- the code and the ID token -------------------------------------------------------------

    async def _exchange(self, metadata: ProviderMetadata, code: str, flow: SignInFlow) -> str:
        """The ID token the token endpoint gives for ``code`` and the flow's verifier."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": flow.verifier,
        }
        headers = {"Accept": "application/json"}
        self._authenticate(metadata, form, headers)
        body: dict[str, Any] | None = None
        try:
            async with self._http.stream(
                "POST", metadata.token_endpoint, data=form, headers=headers
            ) as answer:
                status = answer.status_code
                if status < 500:
                    body = await _json_body(answer)
        except _BadDocument:
            pass  # an answer that is not a JSON object: refused below
        except httpx.HTTPError as exc:
            log.warning("oidc_token_request_failed", reason=_why(exc))
            raise IdpUnavailable() from None
        if status >= 500:
            log.warning("oidc_token_request_failed", reason=f"HTTP {status}")
            raise IdpUnavailable()
        if body is None:
            raise OidcRefused("token_answer_unreadable")
        if status != httpx.codes.OK:
            error = body.get("error")
            raise OidcRefused(f"token_{error}" if error in OAUTH_ERRORS else "token_refused")
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcRefused("token_without_id_token")
        return id_token

    def _authenticate(
        self, metadata: ProviderMetadata, form: dict[str, str], headers: dict[str, str]
    ) -> None:
        """The client's credentials (RFC 6749 §2.3.1): HTTP Basic unless the provider takes
        only ``client_secret_post``; a public client names itself only."""
        client_id, secret = self.settings.client_id, self.settings.client_secret
        methods = metadata.token_auth_methods
        if secret is None:
            form["client_id"] = client_id
        elif "client_secret_post" in methods and "client_secret_basic" not in methods:
            form["client_id"] = client_id
            form["client_secret"] = secret.reveal()
        else:
            pair = f"{quote_plus(client_id)}:{quote_plus(secret.reveal())}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")

    async def _identity(
        self, metadata: ProviderMetadata, id_token: str, flow: SignInFlow, now: datetime
    ) -> FederatedLogin:
        try:
            token = await self._validator_for(metadata).validate(id_token, now=now)
        except InvalidToken as error:
            raise OidcRefused(f"id_token_{error.reason.value}") from None
        claims = token.claims
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode(), flow.nonce.encode()
        ):
            raise OidcRefused("nonce_mismatch")
        self._check_party(claims)
        self._check_issued(claims, flow, now)
        subject = claims.get(self.settings.subject_claim)
        if (
            not isinstance(subject, str)
            or not 0 < len(subject) <= MAX_SUBJECT_LENGTH
            or not subject.isprintable()
        ):
            raise OidcRefused("subject_claim")
        return FederatedLogin(
            issuer=self.issuer,
            subject_id=subject,
            roles=token.subject.roles,
            acr=token.session.acr,
            amr=token.session.amr,
            auth_time=token.session.auth_time or now,
        )

    def _check_party(self, claims: Mapping[str, Any]) -> None:
        """Core §3.1.3.7 (4, 5): a token for several audiences names this client as ``azp``."""
        audience, party = claims.get("aud"), claims.get("azp")
        several = isinstance(audience, list) and len(audience) > 1
        if (several or party is not None) and party != self.settings.client_id:
            raise OidcRefused("id_token_azp")

    def _check_issued(self, claims: Mapping[str, Any], flow: SignInFlow, now: datetime) -> None:
        """``iat`` is required (Core §2): an ID token issued before this sign-in began, or in
        the future, is not its answer."""
        issued = claims.get("iat")
        if isinstance(issued, bool) or not isinstance(issued, int | float):
            raise OidcRefused("id_token_iat")
        leeway = timedelta(seconds=self.leeway)
        earliest, latest = flow.started_at - leeway, now + leeway
        if not earliest.timestamp() <= issued <= latest.timestamp():
            raise OidcRefused("id_token_iat")

    def _validator_for(self, metadata: ProviderMetadata) -> JwtValidator:
        """The ID tokens' validator: the provider's keys at ``jwks_uri``, the client as the
        audience; made again when discovery names other keys."""
        validator = self._validator
        if validator is None or validator.jwks.url != metadata.jwks_uri:
            offered = [a for a in metadata.id_token_algorithms if a in ASYMMETRIC_ALGORITHMS]
            validator = JwtValidator(
                self.issuer,
                self.settings.client_id,
                metadata.jwks_uri,
                http=self._http,
                algorithms=offered or DEFAULT_ALGORITHMS,
                leeway=self.leeway,
                roles_claim=self.roles_claim,
                verified_ttl=0,
            )
            self._validator = validator
        return validator


def idp_clients(
    identity: IdentitySettings | None, public_url: str, level_resolver: LevelResolver
) -> tuple[JwtValidator | None, OidcClient | None]:
    """What a node uses of the configured identity provider: the validator of bearer JWTs,
    and the console's sign-in there when ``identity.console`` configures a client."""
    if identity is None:
        return None, None
    bearer = JwtValidator(
        identity.issuer,
        identity.audience,
        identity.jwks_url,
        level_resolver=level_resolver,
        roles_claim=identity.roles_claim,
    )
    console = identity.console
    if console is None:
        return bearer, None
    sign_in = OidcClient(
        issuer=identity.issuer,
        settings=console,
        redirect_uri=public_url.rstrip("/") + console.redirect_path,
        roles_claim=identity.roles_claim,
    )
    return bearer, sign_in


async def _json_body(answer: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, read up to :data:`_MAX_DOCUMENT` bytes."""
    body = bytearray()
    async for chunk in answer.aiter_bytes():
        body += chunk
        if len(body) > _MAX_DOCUMENT:
            raise _BadDocument("the answer is too large")
    try:
        document = json.loads(body)
    except ValueError:
        raise _BadDocument("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise _BadDocument("the answer is not a JSON object")
    return document


def _why(exc: Exception) -> str:
    """A log line's reason: the document's fault, or the HTTP error's class (never a URL with
    a code in it, never a body)."""
    return str(exc) if isinstance(exc, _BadDocument) else type(exc).__name__
