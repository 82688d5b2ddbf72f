"""WebAuthn (W3C Web Authentication Level 2): the relying party, challenges and ceremony options.

Pure: no I/O and no clock. py_webauthn builds the options; this module adds what a step-up needs
on top of it (the responses are verified in :mod:`piigate.factors.webauthn.responses`):

- the relying party derived from the one public URL (:func:`relying_party`);
- step-up challenges *derived* from the piigate challenge and its binding digest
  (:func:`stepup_challenge`), so the authenticator's signature itself names the request it
  approves (PSD2 RTS Art. 5 dynamic linking);
- a ceremony id computed from the WebAuthn challenge bytes (:func:`ceremony_id`), so the answer
  finds its single-use ceremony row without carrying an id of its own;
- the stored form of a registered credential (:class:`StoredCredential`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn.authentication.generate_authentication_options import (
    generate_authentication_options,
)
from webauthn.helpers import (
    options_to_json_dict,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.generate_registration_options import generate_registration_options

from piigate.jsontext import loads
from piigate.origins import web_origin

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "RelyingParty",
    "StoredCredential",
    "authentication_options",
    "b64url",
    "b64url_decode",
    "ceremony_id",
    "client_challenge",
    "credential_id_of",
    "registration_options",
    "relying_party",
    "stepup_challenge",
]

# ES256 first: what every platform and roaming authenticator offers; EdDSA and RS256 (Windows
# Hello) after it. WebAuthn §5.4.1: the RP lists the algorithms it accepts, most preferred first.
SUPPORTED_ALGORITHMS = (
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
)
_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
# Domain separation of the two derivations (never the same bytes for two purposes).
_STEPUP_CONTEXT = b"piigate/webauthn/step-up/v1"
_CEREMONY_CONTEXT = b"piigate/webauthn/ceremony/v1"
_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


def b64url(data: bytes) -> str:
    """Base64url without padding (WebAuthn's JSON encoding of binary fields)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: object) -> bytes | None:
    """Strict base64url: None for anything but a string of the alphabet (no silent skipping of
    foreign characters, unlike ``base64.urlsafe_b64decode``)."""
    if not isinstance(text, str) or not _B64URL.match(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


# -- the relying party ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who the credentials are scoped to: ``id`` is the host name (WebAuthn §5.1.3: RP ID is a
    registrable domain suffix of the origin's effective domain; we use the host itself) and
    ``origin`` the one origin ceremonies may run on."""

    id: str
    origin: str
    name: str = "piigate"


def relying_party(public_url: str, *, name: str = "piigate") -> RelyingParty:
    """The relying party of ``PIIGATE_PUBLIC_URL``: RP id = its host name, origin =
    ``scheme://host[:port]`` (the default port omitted, as browsers serialise origins).

    Browsers only run WebAuthn on https origins or on ``http://localhost``; an IP address is
    never a valid RP id, so a deployment answers WebAuthn only under a domain name.
    """
    origin = web_origin(public_url)
    host = urlsplit(public_url.strip()).hostname or ""
    return RelyingParty(id=host, origin=origin, name=name)


# -- challenges and ceremonies ---------------------------------------------------------------------


def _field(value: bytes) -> bytes:
    # Length-prefixed, so no two different field lists hash the same concatenation.
    return len(value).to_bytes(4, "big") + value


def stepup_challenge(*, challenge_id: str, binding: str | None, nonce: bytes) -> bytes:
    """The WebAuthn challenge of one authentication ceremony for a piigate challenge:
    ``SHA-256(context ‖ challenge id ‖ binding digest ‖ nonce)``, each field length-prefixed.

    The authenticator signs ``authenticatorData ‖ SHA-256(clientDataJSON)`` and clientDataJSON
    carries this challenge, so a valid signature proves that the user approved *this* challenge
    and, for a ``max_age: 0`` step-up, this very request (its binding digest covers the subject,
    action, resource, PII classes and transaction). The nonce (16 random bytes, stored with the
    ceremony) makes every ceremony's challenge fresh (WebAuthn §13.4.3).
    """
    data = b"".join(
        (
            _field(_STEPUP_CONTEXT),
            _field(challenge_id.encode()),
            _field((binding or "").encode()),
            _field(nonce),
        )
    )
    return hashlib.sha256(data).digest()


def ceremony_id(webauthn_challenge: bytes) -> str:
    """The id of the ceremony row that issued ``webauthn_challenge`` (a function of the bytes
    alone, so an answer finds its ceremony by primary key)."""
    digest = hashlib.sha256(_field(_CEREMONY_CONTEXT) + webauthn_challenge).digest()
    return "cer_wa_" + b64url(digest[:18])


def client_challenge(credential: Mapping[str, Any]) -> bytes | None:
    """The challenge a PublicKeyCredential's clientDataJSON claims to answer (not verified yet:
    only used to find the ceremony whose expected challenge it is then verified against)."""
    response = credential.get("response")
    if not isinstance(response, Mapping):
        return None
    raw = b64url_decode(response.get("clientDataJSON"))
    if raw is None:
        return None
    try:
        client_data = loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(client_data, dict):
        return None
    return b64url_decode(client_data.get("challenge"))


def credential_id_of(credential: Mapping[str, Any]) -> bytes | None:
    """The credential id a PublicKeyCredential names (``rawId``)."""
    return b64url_decode(credential.get("rawId"))


# -- stored credentials ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A registered credential as kept in a ``webauthn`` factor's ``data`` (nothing secret: the
    public key is public)."""

    credential_id: bytes
    public_key: bytes  # COSE_Key
    sign_count: int
    transports: tuple[str, ...] = ()
    user_handle: bytes | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StoredCredential | None:
        """Read a factor's data; None when it is not a well-formed credential (fail closed)."""
        credential_id = b64url_decode(data.get("credential_id"))
        public_key = b64url_decode(data.get("public_key"))
        count = data.get("sign_count")
        if not credential_id or not public_key or type(count) is not int or count < 0:
            return None
        transports = data.get("transports")
        handle = data.get("user_handle")
        return cls(
            credential_id=credential_id,
            public_key=public_key,
            sign_count=count,
            transports=tuple(t for t in transports if t in _TRANSPORTS)
            if isinstance(transports, list)
            else (),
            user_handle=b64url_decode(handle) if handle is not None else None,
        )


# -- options ---------------------------------------------------------------------------------------


def _descriptors(credentials: Sequence[StoredCredential]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=c.credential_id,
            transports=[AuthenticatorTransport(t) for t in c.transports] or None,
        )
        for c in credentials
    ]


def registration_options(
    rp: RelyingParty,
    *,
    challenge: bytes,
    user_handle: bytes,
    user_name: str,
    exclude: Sequence[StoredCredential],
    user_verification: str,
    timeout_ms: int,
) -> dict[str, Any]:
    """``PublicKeyCredentialCreationOptions`` as JSON (binary fields base64url). Attestation
    ``none``: piigate trusts the registration because a signed-in user made it, not because of
    the authenticator's vendor. ``exclude`` keeps an authenticator from registering twice."""
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=user_handle,
        user_name=user_name,
        challenge=challenge,
        timeout=timeout_ms,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement(user_verification),
        ),
        exclude_credentials=_descriptors(exclude),
        supported_pub_key_algs=list(SUPPORTED_ALGORITHMS),
    )
    return options_to_json_dict(options)


def authentication_options(
    rp: RelyingParty,
    *,
    challenge: bytes,
    credentials: Sequence[StoredCredential],
    user_verification: str,
    timeout_ms: int,
) -> dict[str, Any]:
    """``PublicKeyCredentialRequestOptions`` as JSON, limited to ``credentials``."""
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=timeout_ms,
        allow_credentials=_descriptors(credentials),
        user_verification=UserVerificationRequirement(user_verification),
    )
    return options_to_json_dict(options)
