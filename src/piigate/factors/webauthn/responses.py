"""WebAuthn responses: verifying a registration (attestation) or an assertion, over py_webauthn.

Pure: no I/O and no clock. py_webauthn checks signatures, origins, RP id hashes and attestation
statements; the exact failure reasons for the audit (:class:`WebAuthnFailure`) and the
signature-counter rule (:func:`sign_count_advances`) are judged here, once the signature has held,
so a forged response can never be reported as anything but ``bad_assertion``. The caller saves
what comes back (the new credential, the new sign count) with compare-and-set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from webauthn import verify_authentication_response, verify_registration_response
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AttestationFormat,
    CredentialDeviceType,
)

from piigate.errors import FactorRejected
from piigate.factors.webauthn.protocol import SUPPORTED_ALGORITHMS, StoredCredential, b64url
from piigate.jsontext import loads

__all__ = [
    "Assertion",
    "NewCredential",
    "WebAuthnFailure",
    "WebAuthnRejected",
    "sign_count_advances",
    "verify_assertion",
    "verify_attestation",
    "webauthn_amr",
]


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


def _cross_origin(client_data_json: bytes) -> bool:
    # py_webauthn does not look at crossOrigin. piigate's pages are never meant to run inside
    # another site's frame: a ceremony from one is refused (WebAuthn §7.1 step 10, §7.2 step 12).
    try:
        return bool(loads(client_data_json).get("crossOrigin", False))
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
