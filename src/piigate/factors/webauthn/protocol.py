"""WebAuthn (W3C Web Authentication Level 2): ceremony options and their verification.

Pure: no I/O and no clock. py_webauthn checks the signatures, origins, RP id hashes and
attestation statements; this module adds what a step-up needs on top of it:

- the relying party derived from the one public URL (:func:`relying_party`);
- step-up challenges *derived* from the piigate challenge and its binding digest
  (:func:`stepup_challenge`), so the authenticator's signature itself names the request it
  approves (PSD2 RTS Art. 5 dynamic linking);
- a ceremony id computed from the WebAuthn challenge bytes (:func:`ceremony_id`), so the answer
  finds its single-use ceremony row without carrying an id of its own;
- exact failure reasons for the audit (:class:`WebAuthnFailure`) and the signature-counter rule
  (:func:`sign_count_advances`), checked only once the signature has held, so a forged assertion
  can never be reported as anything but ``bad_assertion``.

The caller saves what comes back (the new credential, the new sign count) with compare-and-set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from webauthn import verify_authentication_response, verify_registration_response
from webauthn.authentication.generate_authentication_options import (
    generate_authentication_options,
)
from webauthn.helpers import (
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.generate_registration_options import generate_registration_options

from piigate.errors import FactorRejected

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "Assertion",
    "NewCredential",
    "RelyingParty",
    "StoredCredential",
    "WebAuthnFailure",
    "WebAuthnRejected",
    "authentication_options",
    "b64url",
    "b64url_decode",
    "ceremony_id",
    "client_challenge",
    "credential_id_of",
    "registration_options",
    "relying_party",
    "sign_count_advances",
    "stepup_challenge",
    "verify_assertion",
    "verify_attestation",
    "webauthn_amr",
]

# ES256 first: what every platform and roaming authenticator offers; EdDSA and RS256 (Windows
# Hello) after it. WebAuthn §5.4.1: the RP lists the algorithms it accepts, most preferred first.
SUPPORTED_ALGORITHMS = (
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
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
    parts = urlsplit(public_url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("public_url must be an http:// or https:// URL")
    host = parts.hostname
    if not host:
        raise ValueError("public_url has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("public_url has an invalid port") from None
    shown = f"[{host}]" if ":" in host else host
    origin = f"{scheme}://{shown}"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        origin += f":{port}"
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
        client_data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(client_data, dict):
        return None
    return b64url_decode(client_data.get("challenge"))


def credential_id_of(credential: Mapping[str, Any]) -> bytes | None:
    """The credential id a PublicKeyCredential names (``rawId``)."""
    return b64url_decode(credential.get("rawId"))


def sign_count_advances(*, stored: int, new: int) -> bool:
    """WebAuthn §6.1.1: a counter that did not grow signals a cloned authenticator or a replay.
    Authenticators without a counter report 0 every time, which is accepted while both are 0."""
    if stored == 0 and new == 0:
        return True
    return new > stored


def webauthn_amr(*, user_verified: bool, backup_eligible: bool) -> tuple[str, ...]:
    """RFC 8176 ``amr`` of a WebAuthn proof.

    ``hwk`` (hardware-secured key) for device-bound credentials; ``swk`` (software-secured key)
    for backup-eligible ones (the BE flag: a synced passkey, whose key can leave the device).
    ``user`` is added when the authenticator verified the user (the UV flag: PIN or biometric;
    which one it was the authenticator does not say, so neither ``pin`` nor ``fpt`` is claimed).
    """
    amr = ("swk",) if backup_eligible else ("hwk",)
    return (*amr, "user") if user_verified else amr


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


@dataclass(frozen=True, slots=True)
class NewCredential:
    """What a verified registration yields, to be stored as the factor's data."""

    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str
    attestation: str
    transports: tuple[str, ...]
    user_verified: bool
    backup_eligible: bool
    backed_up: bool

    def to_data(self, *, user_handle: bytes) -> dict[str, Any]:
        return {
            "credential_id": b64url(self.credential_id),
            "public_key": b64url(self.public_key),
            "sign_count": self.sign_count,
            "transports": list(self.transports),
            "aaguid": self.aaguid,
            "attestation": self.attestation,
            "user_handle": b64url(user_handle),
            "user_verified": self.user_verified,
            "backup_eligible": self.backup_eligible,
            "backed_up": self.backed_up,
        }


@dataclass(frozen=True, slots=True)
class Assertion:
    """What a verified assertion yields: the counter to save and the flags for the ``amr``."""

    credential_id: bytes
    sign_count: int
    user_verified: bool
    backup_eligible: bool
    backed_up: bool


class WebAuthnFailure(StrEnum):
    """Why a WebAuthn response was refused: for the audit log, never for the client."""

    MALFORMED = "malformed"
    # The signature, challenge, origin, RP id, type or attestation did not hold.
    BAD_ASSERTION = "bad_assertion"
    NO_USER_VERIFICATION = "no_user_verification"
    SIGN_COUNT_REGRESSED = "sign_count_regressed"


class WebAuthnRejected(FactorRejected):
    """Renders as the vague ``factor_rejected`` 401 (STYLE.md §9); ``reason`` is exact."""

    def __init__(self, reason: WebAuthnFailure) -> None:
        super().__init__()
        self.reason = reason

    def __repr__(self) -> str:
        return f"WebAuthnRejected({self.reason.value!r})"


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


# -- verification ----------------------------------------------------------------------------------


def _cross_origin(client_data_json: bytes) -> bool:
    # py_webauthn does not look at crossOrigin. piigate's pages are never meant to run inside
    # another site's frame: a ceremony from one is refused (WebAuthn §7.1 step 10, §7.2 step 12).
    try:
        return bool(json.loads(client_data_json).get("crossOrigin", False))
    except (ValueError, AttributeError):
        return True


def verify_attestation(
    credential: Mapping[str, Any],
    *,
    expected_challenge: bytes,
    expected_rp_id: str,
    expected_origin: str,
    require_user_verification: bool,
) -> NewCredential:
    """Verify a ``navigator.credentials.create()`` response (WebAuthn §7.1); raises
    :class:`WebAuthnRejected`. The UV flag is checked after everything else held."""
    try:
        parsed = parse_registration_credential_json(dict(credential))
    except Exception:
        raise WebAuthnRejected(WebAuthnFailure.MALFORMED) from None
    if _cross_origin(parsed.response.client_data_json):
        raise WebAuthnRejected(WebAuthnFailure.BAD_ASSERTION)
    try:
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=expected_rp_id,
            expected_origin=expected_origin,
            require_user_presence=True,
            require_user_verification=False,  # checked below, for an exact reason
            supported_pub_key_algs=list(SUPPORTED_ALGORITHMS),
        )
    except Exception:
        # InvalidRegistrationResponse, and whatever a hostile CBOR structure raises on the way:
        # fail closed, with no detail for the client.
        raise WebAuthnRejected(WebAuthnFailure.BAD_ASSERTION) from None
    if require_user_verification and not verified.user_verified:
        raise WebAuthnRejected(WebAuthnFailure.NO_USER_VERIFICATION)
    transports = parsed.response.transports or []
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        attestation=AttestationFormat(verified.fmt).value,  # the parser leaves a plain str
        transports=tuple(str(t.value) for t in transports),
        user_verified=verified.user_verified,
        backup_eligible=verified.credential_device_type is CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
    )


def verify_assertion(
    credential: Mapping[str, Any],
    *,
    stored: StoredCredential,
    expected_challenge: bytes,
    expected_rp_id: str,
    expected_origin: str,
    require_user_verification: bool,
) -> Assertion:
    """Verify a ``navigator.credentials.get()`` response (WebAuthn §7.2) against ``stored``;
    raises :class:`WebAuthnRejected`.

    py_webauthn checks type, challenge, origin, RP id hash, user presence and the signature.
    It runs with the counter at 0 and without the UV demand so that both are judged here, after
    the signature held: only a genuine assertion earns ``no_user_verification`` or
    ``sign_count_regressed`` in the audit log.
    """
    try:
        parsed = parse_authentication_credential_json(dict(credential))
    except Exception:
        raise WebAuthnRejected(WebAuthnFailure.MALFORMED) from None
    if parsed.raw_id != stored.credential_id or _cross_origin(parsed.response.client_data_json):
        raise WebAuthnRejected(WebAuthnFailure.BAD_ASSERTION)
    handle = parsed.response.user_handle
    if handle and stored.user_handle is not None and handle != stored.user_handle:
        raise WebAuthnRejected(WebAuthnFailure.BAD_ASSERTION)
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=expected_rp_id,
            expected_origin=expected_origin,
            credential_public_key=stored.public_key,
            credential_current_sign_count=0,  # judged below by sign_count_advances
            require_user_verification=False,  # judged below, for an exact reason
        )
    except Exception:
        raise WebAuthnRejected(WebAuthnFailure.BAD_ASSERTION) from None
    if require_user_verification and not verified.user_verified:
        raise WebAuthnRejected(WebAuthnFailure.NO_USER_VERIFICATION)
    if not sign_count_advances(stored=stored.sign_count, new=verified.new_sign_count):
        raise WebAuthnRejected(WebAuthnFailure.SIGN_COUNT_REGRESSED)
    return Assertion(
        credential_id=verified.credential_id,
        sign_count=verified.new_sign_count,
        user_verified=verified.user_verified,
        backup_eligible=verified.credential_device_type is CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
    )
