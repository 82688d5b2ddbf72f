"""WebAuthn ceremonies: registering a credential (CONTRACT §4.4) and the request options of a
step-up (§4.3), on top of the pure :mod:`piigate.factors.webauthn.protocol`; the answer to a
step-up is checked by :class:`~piigate.factors.webauthn.check.WebAuthnCheck`.

Every WebAuthn challenge is single use and lives in a ``ceremonies`` row (purpose
``webauthn_register`` or ``webauthn_auth``) whose id is computed from the challenge bytes
(:func:`~piigate.factors.webauthn.protocol.ceremony_id`). An answer finds its ceremony from the
challenge in its clientDataJSON; a registration spends it with the compare-and-set
``close_ceremony`` *before* the attestation is checked: of two requests carrying the same response
at most one gets past that line, on any node, whatever the outcome. An expired ceremony is refused.

For a step-up the challenge is not random: it is ``SHA-256(context ‖ piigate challenge id ‖ binding
digest ‖ nonce)`` (:func:`~piigate.factors.webauthn.protocol.stepup_challenge`). The check
recomputes it from the challenge being answered, so an assertion made for another challenge —
another request's binding — does not verify, and the authenticator's signature is itself the proof
of which request was approved.

Credentials are ``webauthn`` factors whose ``data`` holds the credential id, COSE public key,
sign count, transports, AAGUID and flags; there is no secret.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from piigate.clock import Clock
from piigate.errors import Conflict, TooManyRequests
from piigate.factors import CeremonyPurpose, CeremonyState, FactorState
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.ports import CeremonyRecord, CeremonyRepo, FactorRecord
from piigate.factors.steps import require_pending, seconds_left
from piigate.factors.webauthn.check import (
    NONCE_BYTES,
    WebAuthnCheck,
    WebAuthnStore,
    policy_user_verification,
    stored_credentials,
)
from piigate.factors.webauthn.protocol import (
    RelyingParty,
    authentication_options,
    b64url,
    b64url_decode,
    ceremony_id,
    client_challenge,
    registration_options,
    stepup_challenge,
)
from piigate.factors.webauthn.responses import NewCredential, WebAuthnRejected, verify_attestation
from piigate.ids import new_id
from piigate.model import Challenge, Method
from piigate.policy.holder import PolicyHolder
from piigate.ports import AuditRecorder
from piigate.stepup.verdicts import VerificationFailure, VerificationRejected

__all__ = [
    "CEREMONY_SECONDS",
    "CeremonyOptions",
    "WebAuthnCeremonies",
    "WebAuthnCheck",
    "WebAuthnStore",
]

# How long a ceremony's options stay answerable (and the browser's timeout hint).
CEREMONY_SECONDS = 300
# Registration options a subject may request per window; authentication options per challenge.
REGISTRATIONS_PER_WINDOW = 10
REGISTRATION_WINDOW_SECONDS = 600
CEREMONIES_PER_CHALLENGE = 10
# WebAuthn §13.4.3: challenges of at least 16 random bytes.
_CHALLENGE_BYTES = 32
_USER_HANDLE_BYTES = 32


# -- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CeremonyOptions:
    """Options for ``navigator.credentials.create/get({publicKey})`` and their ceremony."""

    ceremony_id: str
    public_key: dict[str, Any]
    expires_at: datetime


# -- shared steps ----------------------------------------------------------------------------------


async def _spend(
    store: CeremonyRepo, ceremony: CeremonyRecord, now: datetime
) -> VerificationFailure | None:
    """Close the ceremony (open → used) before its answer is checked; the reason it cannot be
    spent, or None when this caller spent it."""
    if ceremony.state != CeremonyState.OPEN:
        return VerificationFailure.REPLAYED
    if ceremony.expires_at <= now:
        await store.close_ceremony(ceremony.id, new=CeremonyState.EXPIRED, now=now)
        return VerificationFailure.EXPIRED
    if not await store.close_ceremony(ceremony.id, new=CeremonyState.USED, now=now):
        return VerificationFailure.REPLAYED  # a parallel request spent it first
    return None


# -- the ceremonies --------------------------------------------------------------------------------


class WebAuthnCeremonies:
    """Registration (options → credential → active factor) and step-up request options."""

    def __init__(
        self,
        *,
        store: WebAuthnStore,
        enrollment: FactorEnrollment,
        policy: PolicyHolder,
        audit: AuditRecorder,
        clock: Clock,
        rp: RelyingParty,
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self.store = store
        self.enrollment = enrollment
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.rp = rp
        self.ids = ids

    # -- registration (CONTRACT §4.4) -----------------------------------------------------------
    async def registration_options(
        self, subject_id: str, *, grant: str | None = None
    ) -> CeremonyOptions:
        """Creation options for a new credential of ``subject_id``. Once the subject has an
        active factor this needs a fresh grant (``FactorEnrollment.authorise_addition``)."""
        now = self.clock.now()
        await self.enrollment.authorise_addition(subject_id, Method.WEBAUTHN, grant, now)
        recent = await self.store.count_ceremonies(
            since=now - timedelta(seconds=REGISTRATION_WINDOW_SECONDS),
            subject_id=subject_id,
            purposes=[CeremonyPurpose.WEBAUTHN_REGISTER],
        )
        if recent >= REGISTRATIONS_PER_WINDOW:
            raise TooManyRequests(
                REGISTRATION_WINDOW_SECONDS, "too many WebAuthn registrations; retry later"
            )
        existing = stored_credentials(
            await self.store.list_factors(subject_id, kinds=[Method.WEBAUTHN.value])
        )
        # One random user handle per subject (never the user name: WebAuthn §14.6.1), reused so
        # that an authenticator keeps one discoverable credential per account.
        handle = next(
            (s.user_handle for _, s in existing if s.user_handle is not None),
            secrets.token_bytes(_USER_HANDLE_BYTES),
        )
        challenge = secrets.token_bytes(_CHALLENGE_BYTES)
        expires_at = now + timedelta(seconds=CEREMONY_SECONDS)
        options = registration_options(
            self.rp,
            challenge=challenge,
            user_handle=handle,
            user_name=subject_id,
            exclude=[s for _, s in existing],
            user_verification=policy_user_verification(self.policy),
            timeout_ms=CEREMONY_SECONDS * 1000,
        )
        opened = await self.store.open_ceremony(
            id=ceremony_id(challenge),
            subject_id=subject_id,
            purpose=CeremonyPurpose.WEBAUTHN_REGISTER,
            now=now,
            expires_at=expires_at,
            data={"challenge": b64url(challenge), "user_handle": b64url(handle)},
        )
        return CeremonyOptions(opened.id, options, expires_at)

    async def register(
        self,
        subject_id: str,
        credential: Mapping[str, Any],
        *,
        label: str = "",
        grant: str | None = None,
    ) -> FactorRecord:
        """Verify the authenticator's response to :meth:`registration_options` and store the
        credential as an active factor: creating it proved possession. The grant rule is checked
        again here (the subject may have gained a factor since the options were issued)."""
        now = self.clock.now()
        await self.enrollment.authorise_addition(subject_id, Method.WEBAUTHN, grant, now)
        sent, ceremony = await self._registration_ceremony(subject_id, credential, now)
        try:
            new = verify_attestation(
                credential,
                expected_challenge=sent,
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
                require_user_verification=policy_user_verification(self.policy) == "required",
            )
        except WebAuthnRejected as rejected:
            await self._refused(
                subject_id, VerificationFailure(rejected.reason.value), ceremony_id=ceremony.id
            )
        handle = b64url_decode(ceremony.data.get("user_handle")) or b""
        factor = await self._add_credential(subject_id, new, handle, label, now)
        await self.audit.record(
            "factor_enrolled",
            subject_id=subject_id,
            data={
                "factor_id": factor.id,
                "kind": Method.WEBAUTHN.value,
                "state": FactorState.ACTIVE.value,
                "ceremony_id": ceremony.id,
                "aaguid": new.aaguid,
                "attestation": new.attestation,
                "user_verified": new.user_verified,
                "backup_eligible": new.backup_eligible,
            },
        )
        return factor

    async def _registration_ceremony(
        self, subject_id: str, credential: Mapping[str, Any], now: datetime
    ) -> tuple[bytes, CeremonyRecord]:
        """The challenge the response answers and its ``webauthn_register`` ceremony, spent
        before the attestation is looked at (one response, one try); refused otherwise."""
        sent = client_challenge(credential)
        if sent is None:
            await self._refused(subject_id, VerificationFailure.MALFORMED)
        ceremony = await self.store.get_ceremony(ceremony_id(sent))
        expected = b64url_decode(ceremony.data.get("challenge")) if ceremony else None
        if (
            ceremony is None
            or ceremony.purpose != CeremonyPurpose.WEBAUTHN_REGISTER
            or ceremony.subject_id != subject_id
            or expected is None
            or not hmac.compare_digest(expected, sent)
        ):
            await self._refused(subject_id, VerificationFailure.BAD_ASSERTION)
        spent = await _spend(self.store, ceremony, now)
        if spent is not None:
            await self._refused(subject_id, spent, ceremony_id=ceremony.id)
        return sent, ceremony

    async def _add_credential(
        self, subject_id: str, new: NewCredential, handle: bytes, label: str, now: datetime
    ) -> FactorRecord:
        """Store the verified credential as an active factor; 409 when any subject has it."""
        factor_id = self.ids("fct")
        data = new.to_data(user_handle=handle)
        try:
            return await self.store.add_factor(
                id=factor_id,
                subject_id=subject_id,
                kind=Method.WEBAUTHN.value,
                now=now,
                label=label,
                secret=None,  # a public key is all that is kept
                state=FactorState.ACTIVE.value,
                data=data,
                credential_id=data["credential_id"],
            )
        except Conflict as error:
            # This subject's or anyone's: the same answer, so it tells nothing about others.
            raise Conflict("this authenticator is already registered") from error

    # -- step-up (CONTRACT §4.3) ----------------------------------------------------------------
    async def authentication_options(self, challenge: Challenge) -> CeremonyOptions:
        """Request options for answering ``challenge`` (its visibility to the caller is the
        route's to check): the subject's active credentials, the policy's user verification,
        and a challenge derived from the piigate challenge and its binding."""
        now = self.clock.now()
        require_pending(challenge, now)
        if Method.WEBAUTHN.value not in challenge.requirement.methods:
            raise Conflict("the challenge cannot be answered with webauthn")
        active = stored_credentials(
            await self.store.list_factors(
                challenge.subject_id,
                kinds=[Method.WEBAUTHN.value],
                states=[FactorState.ACTIVE.value],
            )
        )
        if not active:
            raise Conflict("no WebAuthn credential is registered for the challenge's subject")
        issued = await self.store.list_ceremonies(
            challenge_id=challenge.id,
            purposes=[CeremonyPurpose.WEBAUTHN_AUTH],
            limit=CEREMONIES_PER_CHALLENGE,
        )
        if len(issued) >= CEREMONIES_PER_CHALLENGE:
            raise TooManyRequests(
                seconds_left(challenge, now), "too many WebAuthn ceremonies for this challenge"
            )
        nonce = secrets.token_bytes(NONCE_BYTES)
        derived = stepup_challenge(
            challenge_id=challenge.id, binding=challenge.requirement.binding, nonce=nonce
        )
        expires_at = min(now + timedelta(seconds=CEREMONY_SECONDS), challenge.expires_at)
        timeout_ms = max(1, int((expires_at - now).total_seconds())) * 1000
        options = authentication_options(
            self.rp,
            challenge=derived,
            credentials=[s for _, s in active],
            user_verification=policy_user_verification(self.policy),
            timeout_ms=timeout_ms,
        )
        opened = await self.store.open_ceremony(
            id=ceremony_id(derived),
            subject_id=challenge.subject_id,
            purpose=CeremonyPurpose.WEBAUTHN_AUTH,
            now=now,
            expires_at=expires_at,
            challenge_id=challenge.id,
            data={"nonce": b64url(nonce)},
        )
        return CeremonyOptions(opened.id, options, expires_at)

    async def _refused(
        self,
        subject_id: str,
        reason: VerificationFailure,
        *,
        ceremony_id: str | None = None,
    ) -> NoReturn:
        data: dict[str, object] = {"kind": Method.WEBAUTHN.value, "reason": reason.value}
        if ceremony_id is not None:
            data["ceremony_id"] = ceremony_id
        await self.audit.record("factor_confirmation_failed", subject_id=subject_id, data=data)
        raise VerificationRejected(reason)
