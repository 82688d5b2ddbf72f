"""One console sign-in at the identity provider, from the redirect to the callback: the PKCE
verifier (RFC 7636), ``state`` (RFC 6749 §10.12) and ``nonce`` (OpenID Connect Core §3.1.2.1),
and the authorization request that carries them.

The browser keeps the flow in a short-lived cookie, sealed with the deployment's data key
(AES-256-GCM under ``Keyring.encrypt``, its purpose bound into the associated data): another
site can neither read the verifier and nonce nor forge a flow, and any node can open it. The
callback accepts its ``state`` only when it is the sealed flow's, so a code injected into
another person's browser is refused, and the ID token only when its ``nonce`` is the flow's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from piigate.crypto.keyring import DecryptionError, Keyring

__all__ = [
    "FLOW_LIFETIME",
    "SignInFlow",
    "authorization_url",
    "s256_challenge",
]

# How long a sign-in may take at the identity provider (the cookie's lifetime too).
FLOW_LIFETIME: Final = timedelta(minutes=10)
_AAD: Final = b"piigate:console-oidc-flow"
_MAX_SEALED: Final = 4096
# Nodes' clocks may disagree by this much: a flow another node started "later" is still good.
_SKEW: Final = timedelta(seconds=60)


def s256_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: ``BASE64URL(SHA256(ASCII(code_verifier)))``, without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class SignInFlow:
    """What the callback checks its answer against, and where the browser goes afterwards."""

    state: str
    nonce: str
    verifier: str
    return_to: str
    started_at: datetime

    @classmethod
    def start(cls, return_to: str, *, now: datetime) -> SignInFlow:
        """A new flow: 256 random bits each of state and nonce, and a 64-character verifier
        (RFC 7636 §4.1 asks for 43 to 128 characters of ``[A-Za-z0-9-._~]``)."""
        return cls(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(48),
            return_to=return_to,
            started_at=now.replace(microsecond=0),
        )

    @property
    def code_challenge(self) -> str:
        return s256_challenge(self.verifier)

    def answers(self, state: str) -> bool:
        """The callback's ``state`` is this flow's (compared in constant time)."""
        return hmac.compare_digest(state.encode(), self.state.encode())

    def seal(self, keyring: Keyring) -> str:
        """The cookie's value: the flow encrypted under the current data key."""
        body = {
            "s": self.state,
            "n": self.nonce,
            "v": self.verifier,
            "r": self.return_to,
            "t": int(self.started_at.timestamp()),
        }
        return keyring.encrypt(json.dumps(body, separators=(",", ":")).encode(), aad=_AAD)

    @classmethod
    async def unseal(cls, sealed: str, keyring: Keyring, *, now: datetime) -> SignInFlow | None:
        """The flow a cookie holds; None when it was not sealed here, is malformed, or is older
        than :data:`FLOW_LIFETIME` (or from the future)."""
        if not sealed or len(sealed) > _MAX_SEALED:
            return None
        try:
            body = json.loads(await keyring.adecrypt(sealed, aad=_AAD))
        except (DecryptionError, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        texts = [body.get(key) for key in ("s", "n", "v", "r")]
        started = body.get("t")
        if not all(isinstance(text, str) and text for text in texts) or type(started) is not int:
            return None
        begun = datetime.fromtimestamp(started, tz=UTC)
        if not -_SKEW <= now - begun <= FLOW_LIFETIME:
            return None
        state, nonce, verifier, return_to = (str(text) for text in texts)
        return cls(state, nonce, verifier, return_to, begun)


def authorization_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: tuple[str, ...],
    flow: SignInFlow,
) -> str:
    """The authorization request (OpenID Connect Core §3.1.2.1, RFC 7636 §4.3) at
    ``endpoint``, keeping any query the provider's endpoint already has."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": flow.state,
        "nonce": flow.nonce,
        "code_challenge": flow.code_challenge,
        "code_challenge_method": "S256",
    }
    parts = urlsplit(endpoint)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
