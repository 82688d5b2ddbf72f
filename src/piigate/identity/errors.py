"""Errors of caller authentication: vague outside, exact inside.

The client sees ``invalid_token`` and nothing more (RFC 6750 §3.1); the precise
:class:`TokenRejection` travels on the exception for logs and audit events. Neither ever holds
the token itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from piigate.errors import ServiceUnavailable, Unauthorized

__all__ = ["IdpUnavailable", "InvalidToken", "TokenRejection"]


class TokenRejection(StrEnum):
    """Why a bearer token was refused (for audit and logs only, never for the client)."""

    MALFORMED = "malformed"
    ALGORITHM = "algorithm"
    KEY_ID_REQUIRED = "key_id_required"
    UNKNOWN_KEY = "unknown_key"
    SIGNATURE = "signature"
    ISSUER = "issuer"
    AUDIENCE = "audience"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    CLAIMS = "claims"


class InvalidToken(Unauthorized):
    code = "invalid_token"
    title = "Invalid token"

    def __init__(self, reason: TokenRejection) -> None:
        super().__init__("the access token is invalid")
        # Kept off ``extra`` on purpose: ``problem()`` renders ``extra`` into the response body.
        self.reason = reason

    def headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="piigate", error="invalid_token"'}


class IdpUnavailable(ServiceUnavailable):
    """The identity provider's key set cannot be fetched and no cached key fits the token."""

    code = "idp_unavailable"
    title = "Identity provider unavailable"

    def __init__(self) -> None:
        super().__init__("the identity provider's signing keys are unavailable; retry later")
