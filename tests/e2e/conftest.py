"""Fixtures of the end-to-end tests: the real OpenID provider (see idp_support)."""

from __future__ import annotations

from idp_support import oidc_idp

__all__ = ["oidc_idp"]
