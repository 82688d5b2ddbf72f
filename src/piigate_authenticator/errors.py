"""The one error the reference authenticator raises."""

from __future__ import annotations

__all__ = ["AuthenticatorError"]


class AuthenticatorError(Exception):
    """A one-line reason the command failed (never a key, token or number).

    ``code``: the server's problem code (RFC 9457 ``code``), when the server refused.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
