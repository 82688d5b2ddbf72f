"""Who is calling: local passwords and the logins and sessions they open, API keys, IdP-issued
JWTs, and login throttling."""

from __future__ import annotations

from piigate.identity.apikeys import (
    ApiKeyCache,
    ApiKeyLoader,
    ApiKeyPrincipal,
    api_key_id,
    generate_api_key,
    hash_api_key,
    looks_like_api_key,
)
from piigate.identity.errors import IdpUnavailable, InvalidToken, TokenRejection
from piigate.identity.jwks import JwksCache, JwksError, parse_jwks
from piigate.identity.jwt import JwtValidator, LevelResolver, ValidatedToken
from piigate.identity.login import LoginOutcome, Logins, LoginSession
from piigate.identity.passwords import (
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
    verify_password_or_dummy,
)
from piigate.identity.throttle import (
    FailureCount,
    ThrottlePolicy,
    ThrottleVerdict,
    login_verdict,
    throttle_keys,
)

__all__ = [
    "ApiKeyCache",
    "ApiKeyLoader",
    "ApiKeyPrincipal",
    "FailureCount",
    "IdpUnavailable",
    "InvalidToken",
    "JwksCache",
    "JwksError",
    "JwtValidator",
    "LevelResolver",
    "LoginOutcome",
    "LoginSession",
    "Logins",
    "ThrottlePolicy",
    "ThrottleVerdict",
    "TokenRejection",
    "ValidatedToken",
    "api_key_id",
    "dummy_hash",
    "generate_api_key",
    "hash_api_key",
    "hash_password",
    "login_verdict",
    "looks_like_api_key",
    "needs_rehash",
    "parse_jwks",
    "throttle_keys",
    "verify_password",
    "verify_password_or_dummy",
]
