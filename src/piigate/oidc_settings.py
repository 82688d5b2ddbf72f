"""The console's sign-in at the identity provider (OpenID Connect, authorization code + PKCE):
the ``service.identity.console`` section and the ``PIIGATE_OIDC_CLIENT_*`` variables (read by
``piigate.config``).

```yaml
service:
  identity:
    issuer: https://login.example.com     # discovery: {issuer}/.well-known/openid-configuration
    audience: piigate-api                 # of bearer tokens; ID tokens are for client_id
    jwks_url: https://login.example.com/keys
    console:
      client_id: piigate-console
      client_secret_file: oidc-secret     # a confidential client; without one, a public client
      scopes: [openid, profile]           # openid is always asked for
      redirect_path: /login/oidc/callback # the redirect URI is public_url + this path
      subject_claim: sub                  # the ID token's claim that names the subject
      roles_claim: roles                  # default: identity.roles_claim
```

The client secret is never written in the configuration itself: ``client_secret_file`` (relative
to the configuration file), ``PIIGATE_OIDC_CLIENT_SECRET`` or ``PIIGATE_OIDC_CLIENT_SECRET_FILE``.
It is held as a :class:`~piigate.crypto.secret.Secret`. (Here rather than in ``identity/``, whose
package brings an HTTP client: reading the configuration should not.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import yaml

from piigate.crypto.secret import Secret
from piigate.origins import is_loopback
from piigate.policy.yamlnodes import FileTooLarge, NodeReader, read_limited

__all__ = [
    "CONSOLE_KEYS",
    "DEFAULT_REDIRECT_PATH",
    "OidcClientSettings",
    "idp_url_problem",
    "oidc_client_from_env",
    "oidc_client_from_yaml",
]

DEFAULT_REDIRECT_PATH: Final = "/login/oidc/callback"
CONSOLE_KEYS: Final = frozenset(
    {"client_id", "client_secret_file", "scopes", "redirect_path", "subject_claim", "roles_claim"}
)
_MAX_SECRET_BYTES: Final = 4096
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_PATH: Final = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")


@dataclass(frozen=True, slots=True)
class OidcClientSettings:
    """The console as a client of the identity provider."""

    client_id: str
    client_secret: Secret[str] | None = None
    scopes: tuple[str, ...] = ("openid",)
    redirect_path: str = DEFAULT_REDIRECT_PATH
    subject_claim: str = "sub"
    # None: the identity section's roles_claim.
    roles_claim: str | None = None


def idp_url_problem(url: str) -> str | None:
    """Why ``url`` may not be used to reach the identity provider, or None. Whoever answers
    there vouches for who signs in, so it must be https (plain http only on loopback)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return None
    return "must be an https:// URL (http:// only on a loopback address)"


def oidc_client_from_yaml(
    read: NodeReader, node: yaml.Node, base: Path
) -> OidcClientSettings | None:
    """The ``identity.console`` mapping; errors go to ``read.errors`` with their line."""
    spec = read.mapping(node, "identity.console")
    if spec is None:
        return None
    for key, (key_node, _) in spec.items():
        if key == "client_secret":
            read.errors.at(
                key_node,
                "identity.console: a client secret is never written in the configuration; "
                "use client_secret_file or PIIGATE_OIDC_CLIENT_SECRET",
            )
        elif key not in CONSOLE_KEYS:
            hint = ", ".join(sorted(CONSOLE_KEYS))
            read.errors.at(key_node, f"unknown key {key!r} in identity.console (expected: {hint})")
    if "client_id" not in spec:
        read.errors.at(node, "identity.console needs client_id")
        return None
    before = len(read.errors.messages)
    values: dict[str, object] = {}
    for key in ("client_id", "subject_claim", "roles_claim"):
        if key in spec:
            values[key] = _name(read, spec[key][1], f"identity.console.{key}")
    if "scopes" in spec:
        values["scopes"] = _scopes(read, spec["scopes"][1])
    if "redirect_path" in spec:
        values["redirect_path"] = _redirect_path(read, spec["redirect_path"][1])
    if "client_secret_file" in spec:
        values["client_secret"] = _secret_file(read, spec["client_secret_file"][1], base)
    if len(read.errors.messages) > before:
        return None
    return OidcClientSettings(**values)  # type: ignore[arg-type]


def _name(read: NodeReader, node: yaml.Node, what: str) -> str | None:
    text = read.string(node, what)
    if text is not None and not (0 < len(text) <= 255 and text.isprintable()):
        read.errors.at(node, f"{what} must be 1 to 255 printable characters")
        return None
    return text


def _scopes(read: NodeReader, node: yaml.Node) -> tuple[str, ...] | None:
    items = read.string_list(node, "identity.console.scopes")
    if items is None:
        return None
    scopes = ["openid"]
    for text, item in items:
        if not _SCOPE_TOKEN.fullmatch(text):
            read.errors.at(item, f"identity.console.scopes: {text!r} is not a scope name")
        elif text not in scopes:
            scopes.append(text)
    return tuple(scopes)


def _redirect_path(read: NodeReader, node: yaml.Node) -> str | None:
    text = read.string(node, "identity.console.redirect_path")
    if text is not None and (not _PATH.fullmatch(text) or text.startswith("//")):
        read.errors.at(
            node, "identity.console.redirect_path must be a path such as /login/oidc/callback"
        )
        return None
    return text


def _secret_file(read: NodeReader, node: yaml.Node, base: Path) -> Secret[str] | None:
    text = read.string(node, "identity.console.client_secret_file")
    if text is None:
        return None
    try:
        return _read_secret(base / text)
    except ValueError as exc:
        read.errors.at(node, f"identity.console.client_secret_file: {exc}")
        return None


def _read_secret(path: Path) -> Secret[str]:
    """The secret in ``path`` (one line; surrounding whitespace dropped); ValueError saying why
    it cannot be had, never showing the content."""
    try:
        raw = read_limited(str(path), _MAX_SECRET_BYTES)
    except FileTooLarge as exc:
        raise ValueError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not secret or not secret.isprintable():
        raise ValueError(f"{path} must hold the secret on one line")
    return Secret(secret)


def oidc_client_from_env(
    settings: OidcClientSettings | None, env: Mapping[str, str]
) -> OidcClientSettings | None:
    """``settings`` with ``PIIGATE_OIDC_CLIENT_ID`` / ``_SECRET`` / ``_SECRET_FILE`` on top.
    Raises ValueError saying what is wrong (never showing a secret)."""
    client_id = env.get("PIIGATE_OIDC_CLIENT_ID")
    secret, secret_file = (
        env.get("PIIGATE_OIDC_CLIENT_SECRET"),
        env.get("PIIGATE_OIDC_CLIENT_SECRET_FILE"),
    )
    if secret and secret_file:
        raise ValueError(
            "set PIIGATE_OIDC_CLIENT_SECRET or PIIGATE_OIDC_CLIENT_SECRET_FILE, not both"
        )
    if client_id:
        settings = (
            OidcClientSettings(client_id)
            if settings is None
            else replace(settings, client_id=client_id)
        )
    if (secret or secret_file) and settings is None:
        raise ValueError(
            "PIIGATE_OIDC_CLIENT_SECRET needs identity.console or PIIGATE_OIDC_CLIENT_ID"
        )
    if settings is not None and secret:
        settings = replace(settings, client_secret=Secret(secret.strip()))
    if settings is not None and secret_file:
        try:
            settings = replace(settings, client_secret=_read_secret(Path(secret_file)))
        except ValueError as exc:
            raise ValueError(f"PIIGATE_OIDC_CLIENT_SECRET_FILE: {exc}") from None
    return settings
