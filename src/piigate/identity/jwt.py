"""Bearer JWTs from the configured identity provider (RFC 7519, RFC 8725, RFC 9068, RFC 9470).

One pipeline of named steps: parse the header → check ``alg`` against the allowlist → find the
key (:class:`~piigate.identity.jwks.JwksCache`) → verify the signature → check the registered
claims against the caller's ``now`` → read the subject and how the session was authenticated
(``acr``, ``amr``, ``auth_time``) for step-up decisions.

Every rejection is :class:`InvalidToken` with the same vague message for the client and an exact
:class:`TokenRejection` for audit; the token never appears in an error.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import httpx
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key
from joserfc.jws import CompactSignature, JWSRegistry, extract_compact, validate_compact
from joserfc.jwt import JWTClaimsRegistry

from piigate.identity.errors import IdpUnavailable, InvalidToken, TokenRejection
from piigate.identity.jwks import JwksCache
from piigate.jsontext import loads
from piigate.model import SessionAuth, Subject

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "IdpUnavailable",
    "InvalidToken",
    "JwtValidator",
    "LevelResolver",
    "TokenRejection",
    "ValidatedToken",
]

DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA", "PS256")
# What may ever be allowed: public-key signatures only. "none" and the HMAC family are refused
# at construction — with a JWKS the "secret" of an HS256 token would be the public key itself
# (RFC 8725 §2.1, §3.1).
ASYMMETRIC_ALGORITHMS = frozenset(
    {
        *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
        *("ES256", "ES384", "ES512", "EdDSA", "Ed25519", "Ed448"),
    }
)
MAX_TOKEN_LENGTH = 16 * 1024

LevelResolver = Callable[[str | None], str | None]


def _no_level(acr: str | None) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class ValidatedToken:
    subject: Subject
    session: SessionAuth
    expires_at: datetime
    token_id: str | None = None  # "jti"
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class _AllowlistRegistry(JWSRegistry):
    """``JWSRegistry`` that allows exactly the configured algorithms and stays quiet about it.

    joserfc warns (``SecurityWarning``) on every use of ``EdDSA``, which RFC 9864 deprecates in
    favour of the fully specified ``Ed25519``. IdPs still issue ``EdDSA``; allowing it is the
    operator's explicit choice, and one warning per request would drown the logs.
    """

    # joserfc's 512-byte header limit is smaller than some IdPs' headers (an "x5c" chain);
    # MAX_TOKEN_LENGTH bounds the whole token anyway. 2 KiB of signature fits RSA-8192.
    max_header_length = 8 * 1024
    max_signature_length = 2 * 1024

    def get_alg(self, name: str) -> JWSAlgModel:
        if self.allowed is None or name not in self.allowed or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


class JwtValidator:
    """Validates access tokens of one issuer for one audience.

    ``level_resolver`` maps the token's ``acr`` to a policy level name (aliases included);
    ``roles_claim`` names the claim holding roles (a dotted path such as
    ``realm_access.roles`` reaches into nested objects).
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: int = 60,
        cache_ttl: float = 600.0,
        min_refresh_interval: float = 30.0,
        level_resolver: LevelResolver = _no_level,
        roles_claim: str = "roles",
        timer: Callable[[], float] = time.monotonic,
        verified_ttl: float = 30.0,
        verified_size: int = 4096,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        refused = set(algorithms) - ASYMMETRIC_ALGORITHMS
        if refused or not algorithms:
            raise ValueError(f"algorithms must be public-key signatures; refused: {refused}")
        if leeway < 0:
            raise ValueError("leeway must be >= 0")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self._level_resolver = level_resolver
        self._roles_path = tuple(roles_claim.split("."))
        self._roles_claim = roles_claim
        # Unknown header parameters are ignored unless listed in "crit" (RFC 7515 §4), so IdPs
        # that add their own (x5t, nonce...) still work.
        self._registry = _AllowlistRegistry(algorithms=self.algorithms, strict_check_header=False)
        self.jwks = JwksCache(
            jwks_url,
            http=http,
            cache_ttl=cache_ttl,
            min_refresh_interval=min_refresh_interval,
            timer=timer,
        )
        self._verified = _VerifiedTokens(verified_ttl, verified_size, timer)

    async def aclose(self) -> None:
        await self.jwks.aclose()

    async def validate(self, token: str, *, now: datetime) -> ValidatedToken:
        """The subject and session behind ``token``, or :class:`InvalidToken`.

        Raises :class:`IdpUnavailable` when the key set cannot be fetched and no cached key
        fits the token.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        known = self._verified.get(token)
        if known is not None:
            if (now - known.expires_at).total_seconds() > self.leeway:
                raise InvalidToken(TokenRejection.EXPIRED)
            # The level as the policy in force reads the acr (it may have been reloaded).
            level = self._level_resolver(known.session.acr)
            if level == known.session.level:
                return known
            session = replace(known.session, level=level)
            return replace(known, session=session)
        obj = self._parse(token)
        header = obj.headers()
        keys = await self._candidate_keys(header)
        self._verify_signature(obj, keys)
        claims = self._check_claims(obj.payload, now)
        validated = self._read(claims, now)
        self._verified.put(token, validated)
        return validated

    def _parse(self, token: str) -> CompactSignature:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(TokenRejection.MALFORMED)
        try:
            obj = extract_compact(token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError, TypeError) as error:
            raise InvalidToken(TokenRejection.MALFORMED) from error
        header = obj.headers()
        if not isinstance(header, dict):
            raise InvalidToken(TokenRejection.MALFORMED)
        try:
            # "crit" and the registered parameters' types, checked before any key lookup so a
            # malformed header cannot trigger a key set refresh.
            self._registry.check_header(header)
        except (JoseError, ValueError, TypeError) as error:
            raise InvalidToken(TokenRejection.MALFORMED) from error
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken(TokenRejection.ALGORITHM)
        # A JWT's payload is always base64url-encoded JSON (RFC 7519 §3): refuse RFC 7797's
        # unencoded payloads outright.
        if "b64" in header:
            raise InvalidToken(TokenRejection.MALFORMED)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken(TokenRejection.MALFORMED)
        return obj

    async def _candidate_keys(self, header: Mapping[str, Any]) -> tuple[Key, ...]:
        kid: str | None = header.get("kid")
        alg: str = header["alg"]
        keys = await self.jwks.keys_for(kid)
        if kid is None and len(keys) > 1:
            # Trying every key would multiply verification cost and blur which key signed.
            raise InvalidToken(TokenRejection.KEY_ID_REQUIRED)
        algorithm = self._registry.get_alg(alg)
        usable = []
        for key in keys:
            # RFC 7517 §4.4: a key that names its algorithm is used with that one only.
            if key.alg is not None and key.alg != alg:
                continue
            try:
                algorithm.check_key(key)  # key type (and curve) must fit the algorithm
            except JoseError:
                continue
            usable.append(key)
        if not usable:
            raise InvalidToken(TokenRejection.UNKNOWN_KEY)
        return tuple(usable)

    def _verify_signature(self, obj: CompactSignature, keys: tuple[Key, ...]) -> None:
        for key in keys:
            try:
                if validate_compact(obj, key, registry=self._registry):
                    return
            except (JoseError, ValueError):
                continue
        raise InvalidToken(TokenRejection.SIGNATURE)

    def _check_claims(self, payload: bytes, now: datetime) -> dict[str, Any]:
        try:
            claims = loads(payload)
        except ValueError as error:
            raise InvalidToken(TokenRejection.MALFORMED) from error
        if not isinstance(claims, dict):
            raise InvalidToken(TokenRejection.MALFORMED)
        registry = JWTClaimsRegistry(
            now=int(now.timestamp()),
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as error:
            raise InvalidToken(TokenRejection.EXPIRED) from error
        except InvalidClaimError as error:
            raise InvalidToken(_CLAIM_REJECTIONS.get(error.claim, TokenRejection.CLAIMS)) from error
        except (MissingClaimError, JoseError) as error:
            raise InvalidToken(TokenRejection.CLAIMS) from error
        return claims

    def _read(self, claims: dict[str, Any], now: datetime) -> ValidatedToken:
        roles = _strings(_dig(claims, self._roles_path, self._roles_claim))
        scopes = _strings(claims.get("scope")) | _strings(claims.get("scp"))
        sid = _optional_str(claims.get("sid"))
        acr = _optional_str(claims.get("acr"))
        jti = _optional_str(claims.get("jti"))
        amr = claims.get("amr", [])
        if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
            raise InvalidToken(TokenRejection.CLAIMS)
        auth_time = _timestamp(claims.get("auth_time", claims.get("iat")))
        # auth_time feeds max_age checks (RFC 9470 §4): one from the future would look fresh
        # for as long as it stays in the future.
        if auth_time is not None and (auth_time - now).total_seconds() > self.leeway:
            raise InvalidToken(TokenRejection.CLAIMS)
        expires_at = _timestamp(claims["exp"])
        assert expires_at is not None
        return ValidatedToken(
            subject=Subject(id=claims["sub"], roles=roles, scopes=scopes),
            session=SessionAuth(
                id=sid,
                acr=acr,
                level=self._level_resolver(acr),
                amr=tuple(amr),
                auth_time=auth_time,
            ),
            expires_at=expires_at,
            token_id=jti,
            claims=MappingProxyType(claims),
        )


_CLAIM_REJECTIONS = {
    "iss": TokenRejection.ISSUER,
    "aud": TokenRejection.AUDIENCE,
    "nbf": TokenRejection.NOT_YET_VALID,
}


def _dig(claims: Mapping[str, Any], path: tuple[str, ...], name: str) -> object:
    if name in claims:
        return claims[name]
    value: object = claims
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _strings(value: object) -> frozenset[str]:
    """A space-separated string (RFC 8693 §4.2 ``scope``) or a list of strings, as a set.

    Anything else is refused, not ignored: roles and scopes can trigger deny rules, and
    silently dropping a malformed claim could lift a restriction.
    """
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise InvalidToken(TokenRejection.CLAIMS)


def _optional_str(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidToken(TokenRejection.CLAIMS)


def _timestamp(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(TokenRejection.CLAIMS)
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as error:
        raise InvalidToken(TokenRejection.CLAIMS) from error


class _VerifiedTokens:
    """Tokens whose signature and claims were checked, for ``ttl`` seconds at most (and never
    past their expiry, which :meth:`JwtValidator.validate` checks on every use): a client
    sends the same token with every request, and parsing and verifying it is the largest cost
    of a gateway's request. At most ``size`` tokens, the least recently used dropped first.
    A key the IdP withdraws stops working for its cached tokens within ``ttl``."""

    def __init__(self, ttl: float, size: int, timer: Callable[[], float]) -> None:
        self._ttl = ttl
        self._size = size
        self._timer = timer
        self._entries: OrderedDict[str, tuple[float, ValidatedToken]] = OrderedDict()

    def get(self, token: str) -> ValidatedToken | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry[0] <= self._timer():
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return entry[1]

    def put(self, token: str, validated: ValidatedToken) -> None:
        if self._ttl <= 0 or self._size <= 0:
            return
        self._entries[token] = (self._timer() + self._ttl, validated)
        self._entries.move_to_end(token)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
