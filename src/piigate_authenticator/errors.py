"""The one error the reference authenticator raises."""

from __future__ import annotations

__all__ = ["AuthenticatorError"]


class AuthenticatorError(Exception):
    """A one-line reason the command failed (never a key, token or number)."""
