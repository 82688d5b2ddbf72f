"""WebAuthn ceremonies: registering a credential (CONTRACT §4.4) and answering a step-up with
one (§4.3), on top of the pure :mod:`piigate.factors.webauthn.protocol`.

Every WebAuthn challenge is single use and lives in a ``ceremonies`` row (purpose
``webauthn_register`` or ``webauthn_auth``) whose id is computed from the challenge bytes
(:func:`~piigate.factors.webauthn.protocol.ceremony_id`). An answer finds its ceremony from the
challenge in its clientDataJSON and spends it, whatever the outcome, with a compare-and-set on its
state (open → used): a refused answer closes it at once, a verified one returns the spend for the
``Verifier`` to save with the approval. Of two requests carrying the same response (or two
responses to the same options) at most one is accepted, on any node. An expired ceremony is
refused.

For a step-up the challenge is not random: it is ``SHA-256(context ‖ piigate challenge id ‖ binding
digest ‖ nonce)`` (:func:`~piigate.factors.webauthn.protocol.stepup_challenge`). The check
recomputes it from the challenge being answered, so an assertion made for another challenge —
another request's binding — does not verify, and the authenticator's signature is itself the proof
of which request was approved.

Credentials are ``webauthn`` factors whose ``data`` holds the credential id, COSE public key,
sign count, transports, AAGUID and flags; there is no secret. A successful assertion's new sign
count is saved in the same transaction, judged again on the row under its lock
(``ReviseFactorData``).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NoReturn, Protocol

from piigate.clock import Clock
from piigate.errors import Conflict, TooManyRequests
from piigate.factors import FactorKind, FactorState
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.ports import (
    AuditRecorder,
    CeremonyRecord,
    CeremonyRepo,
    FactorRecord,
    FactorRepo,
    ReviseFactorData,
    Spend,
    SpendCeremony,
)
from piigate.factors.steps import factor_settings, require_pending, seconds_left
from piigate.factors.webauthn.protocol import (
    Assertion,
    RelyingParty,
    StoredCredential,
    WebAuthnRejected,
    authentication_options,
    b64url,
    b64url_decode,
    ceremony_id,
    client_challenge,
    credential_id_of,
    registration_options,
    sign_count_advances,
    stepup_challenge,
    verify_assertion,
    verify_attestation,
    webauthn_amr,
)
from piigate.ids import new_id
from piigate.model import Challenge
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorKind as PolicyFactor
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorCheck,
    Proof,
    VerificationFailure,
    VerificationRejected,
    Verified,
)

__all__ = [
    "AUTH_PURPOSE",
    "CEREMONY_SECONDS",
    "REGISTER_PURPOSE",
    "CeremonyOptions",
    "WebAuthnCeremonies",
    "WebAuthnCheck",
    "WebAuthnStore",
]

REGISTER_PURPOSE = "webauthn_register"
AUTH_PURPOSE = "webauthn_auth"
# How long a ceremony's options stay answerable (and the browser's timeout hint).
CEREMONY_SECONDS = 300
# Registration options a subject may request per window; authentication options per challenge.
REGISTRATIONS_PER_WINDOW = 10
REGISTRATION_WINDOW_SECONDS = 600
CEREMONIES_PER_CHALLENGE = 10
# WebAuthn §13.4.3: challenges of at least 16 random bytes.
_CHALLENGE_BYTES = 32
_NONCE_BYTES = 16
_USER_HANDLE_BYTES = 32


# -- ports -----------------------------------------------------------------------------------------


class WebAuthnStore(FactorRepo, CeremonyRepo, Protocol):
    """Factors and ceremonies: what ``piigate.store.Store`` is."""


@dataclass(frozen=True, slots=True)
class CeremonyOptions:
    """Options for ``navigator.credentials.create/get({publicKey})`` and their ceremony."""

    ceremony_id: str
    public_key: dict[str, Any]
    expires_at: datetime


# -- shared steps ----------------------------------------------------------------------------------


def _user_verification(policy: PolicyHolder) -> str:
    """The policy's ``factors.webauthn.user_verification`` (``required`` when not declared)."""
    settings = factor_settings(policy, PolicyFactor.WEBAUTHN)
    return settings.user_verification if settings is not None else "required"


def _credentials(factors: Iterable[FactorRecord]) -> list[tuple[FactorRecord, StoredCredential]]:
    found = []
    for factor in factors:
        stored = StoredCredential.from_data(factor.data)
        if stored is not None:
            found.append((factor, stored))
    return found


async def _spend(
    store: CeremonyRepo, ceremony: CeremonyRecord, now: datetime
) -> VerificationFailure | None:
    """Close the ceremony (open → used) before its answer is checked; the reason it cannot be
    spent, or None when this caller spent it."""
    if ceremony.state != "open":
        return VerificationFailure.REPLAYED
    if ceremony.expires_at <= now:
        await store.close_ceremony(ceremony.id, new="expired", now=now)
        return VerificationFailure.EXPIRED
    if not await store.close_ceremony(ceremony.id, new="used", now=now):
        return VerificationFailure.REPLAYED  # a parallel request spent it first
    return None


def _counted(new_count: int, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """A credential's ``data`` with ``new_count`` as its sign count, or None when the count
    does not advance (WebAuthn §6.1.1: a possibly cloned authenticator)."""
    stored = StoredCredential.from_data(data)
    if stored is None or not sign_count_advances(stored=stored.sign_count, new=new_count):
        return None
    return {**data, "sign_count": new_count}


# -- the step-up check -----------------------------------------------------------------------------


class WebAuthnCheck(FactorCheck):
    """Checks ``{"method": "webauthn", "credential": {...}}`` proofs for the ``Verifier``.

    Order: find the ceremony from the clientDataJSON challenge → it must belong to this
    challenge and its challenge must equal the derivation from this challenge's binding → spend
    it → pick the factor by credential id → verify the assertion (signature, origin, RP id,
    user verification, counter) → save the sign count (compare-and-set).
    """

    amr = ("hwk", "user")

    def __init__(self, store: WebAuthnStore, policy: PolicyHolder, rp: RelyingParty) -> None:
        self.store = store
        self.policy = policy
        self.rp = rp

    async def check(
        self,
        challenge: Challenge,
        proof: Proof,
        factors: Sequence[FactorRecord],
        now: datetime,
    ) -> Verified:
        first = factors[0].id if factors else None
        credential = proof.credential
        sent = client_challenge(credential) if credential is not None else None
        if credential is None or sent is None:
            raise CheckFailed(VerificationFailure.MALFORMED, first)
        ceremony = await self.store.get_ceremony(ceremony_id(sent))
        if (
            ceremony is None
            or ceremony.purpose != AUTH_PURPOSE
            or ceremony.challenge_id != challenge.id
            or ceremony.subject_id != challenge.subject_id
            or not hmac.compare_digest(self._expected(challenge, ceremony), sent)
        ):
            # Options of another challenge (another request's binding), or made up.
            raise CheckFailed(VerificationFailure.BAD_ASSERTION, first)
        if ceremony.state != "open":
            raise CheckFailed(VerificationFailure.REPLAYED, first)
        if ceremony.expires_at <= now:
            await self.store.close_ceremony(ceremony.id, new="expired", now=now)
            raise CheckFailed(VerificationFailure.EXPIRED, first)
        try:
            factor, assertion = self._assertion(credential, factors, sent)
        except CheckFailed:
            # A ceremony is single use whatever the outcome: a refused answer spends it too.
            await self.store.close_ceremony(ceremony.id, new="used", now=now)
            raise
        amr = webauthn_amr(
            user_verified=assertion.user_verified, backup_eligible=assertion.backup_eligible
        )
        detail = {"sign_count": assertion.sign_count, "user_verified": assertion.user_verified}
        # Saved by the Verifier with the approval, in this order: the ceremony closed open →
        # used (a parallel request with the same answer: REPLAYED), then the sign count, judged
        # on the row under its lock (a clone's counter that got there first: regressed).
        spends = (
            SpendCeremony(ceremony.id),
            ReviseFactorData(factor.id, partial(_counted, assertion.sign_count)),
        )
        return Verified(factor, amr, detail, spends=spends)

    def refusal(self, spend: Spend) -> VerificationFailure:
        if isinstance(spend, ReviseFactorData):
            return VerificationFailure.SIGN_COUNT_REGRESSED
        return VerificationFailure.REPLAYED

    def _assertion(
        self, credential: Mapping[str, Any], factors: Sequence[FactorRecord], sent: bytes
    ) -> tuple[FactorRecord, Assertion]:
        """The factor named by the credential id, and its assertion checked (signature,
        origin, RP id, user verification, counter against the stored one)."""
        first = factors[0].id if factors else None
        named = credential_id_of(credential)
        match = next(((f, s) for f, s in _credentials(factors) if s.credential_id == named), None)
        if match is None:
            raise CheckFailed(VerificationFailure.BAD_ASSERTION, first)
        factor, stored = match
        try:
            assertion = verify_assertion(
                credential,
                stored=stored,
                expected_challenge=sent,
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
                require_user_verification=_user_verification(self.policy) == "required",
            )
        except WebAuthnRejected as rejected:
            raise CheckFailed(VerificationFailure(rejected.reason.value), factor.id) from None
        return factor, assertion

    @staticmethod
    def _expected(challenge: Challenge, ceremony: CeremonyRecord) -> bytes:
        nonce = b64url_decode(ceremony.data.get("nonce"))
        if nonce is None or len(nonce) != _NONCE_BYTES:
            return b""
        return stepup_challenge(
            challenge_id=challenge.id, binding=challenge.requirement.binding, nonce=nonce
        )


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
        await self.enrollment.authorise_addition(subject_id, FactorKind.WEBAUTHN, grant, now)
        recent = await self.store.count_ceremonies(
            since=now - timedelta(seconds=REGISTRATION_WINDOW_SECONDS),
            subject_id=subject_id,
            purposes=[REGISTER_PURPOSE],
        )
        if recent >= REGISTRATIONS_PER_WINDOW:
            raise TooManyRequests(
                REGISTRATION_WINDOW_SECONDS, "too many WebAuthn registrations; retry later"
            )
        existing = _credentials(
            await self.store.list_factors(subject_id, kinds=[FactorKind.WEBAUTHN.value])
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
            user_verification=_user_verification(self.policy),
            timeout_ms=CEREMONY_SECONDS * 1000,
        )
        opened = await self.store.open_ceremony(
            id=ceremony_id(challenge),
            subject_id=subject_id,
            purpose=REGISTER_PURPOSE,
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
        await self.enrollment.authorise_addition(subject_id, FactorKind.WEBAUTHN, grant, now)
        sent = client_challenge(credential)
        if sent is None:
            await self._refused(subject_id, VerificationFailure.MALFORMED)
        ceremony = await self.store.get_ceremony(ceremony_id(sent))
        expected = b64url_decode(ceremony.data.get("challenge")) if ceremony else None
        if (
            ceremony is None
            or ceremony.purpose != REGISTER_PURPOSE
            or ceremony.subject_id != subject_id
            or expected is None
            or not hmac.compare_digest(expected, sent)
        ):
            await self._refused(subject_id, VerificationFailure.BAD_ASSERTION)
        spent = await _spend(self.store, ceremony, now)
        if spent is not None:
            await self._refused(subject_id, spent, ceremony_id=ceremony.id)
        try:
            new = verify_attestation(
                credential,
                expected_challenge=sent,
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
                require_user_verification=_user_verification(self.policy) == "required",
            )
        except WebAuthnRejected as rejected:
            await self._refused(
                subject_id, VerificationFailure(rejected.reason.value), ceremony_id=ceremony.id
            )
        handle = b64url_decode(ceremony.data.get("user_handle")) or b""
        factor_id = self.ids("fct")
        data = new.to_data(user_handle=handle)
        try:
            factor = await self.store.add_factor(
                id=factor_id,
                subject_id=subject_id,
                kind=FactorKind.WEBAUTHN.value,
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
        await self.audit.record(
            "factor_enrolled",
            subject_id=subject_id,
            data={
                "factor_id": factor_id,
                "kind": FactorKind.WEBAUTHN.value,
                "state": FactorState.ACTIVE.value,
                "ceremony_id": ceremony.id,
                "aaguid": new.aaguid,
                "attestation": new.attestation,
                "user_verified": new.user_verified,
                "backup_eligible": new.backup_eligible,
            },
        )
        return factor

    # -- step-up (CONTRACT §4.3) ----------------------------------------------------------------
    async def authentication_options(self, challenge: Challenge) -> CeremonyOptions:
        """Request options for answering ``challenge`` (its visibility to the caller is the
        route's to check): the subject's active credentials, the policy's user verification,
        and a challenge derived from the piigate challenge and its binding."""
        now = self.clock.now()
        require_pending(challenge, now)
        if FactorKind.WEBAUTHN.value not in challenge.requirement.methods:
            raise Conflict("the challenge cannot be answered with webauthn")
        active = _credentials(
            await self.store.list_factors(
                challenge.subject_id,
                kinds=[FactorKind.WEBAUTHN.value],
                states=[FactorState.ACTIVE.value],
            )
        )
        if not active:
            raise Conflict("no WebAuthn credential is registered for the challenge's subject")
        issued = await self.store.list_ceremonies(
            challenge_id=challenge.id, purposes=[AUTH_PURPOSE], limit=CEREMONIES_PER_CHALLENGE
        )
        if len(issued) >= CEREMONIES_PER_CHALLENGE:
            raise TooManyRequests(
                seconds_left(challenge, now), "too many WebAuthn ceremonies for this challenge"
            )
        nonce = secrets.token_bytes(_NONCE_BYTES)
        derived = stepup_challenge(
            challenge_id=challenge.id, binding=challenge.requirement.binding, nonce=nonce
        )
        expires_at = min(now + timedelta(seconds=CEREMONY_SECONDS), challenge.expires_at)
        timeout_ms = max(1, int((expires_at - now).total_seconds())) * 1000
        options = authentication_options(
            self.rp,
            challenge=derived,
            credentials=[s for _, s in active],
            user_verification=_user_verification(self.policy),
            timeout_ms=timeout_ms,
        )
        opened = await self.store.open_ceremony(
            id=ceremony_id(derived),
            subject_id=challenge.subject_id,
            purpose=AUTH_PURPOSE,
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
        data: dict[str, object] = {"kind": FactorKind.WEBAUTHN.value, "reason": reason.value}
        if ceremony_id is not None:
            data["ceremony_id"] = ceremony_id
        await self.audit.record("factor_confirmation_failed", subject_id=subject_id, data=data)
        raise VerificationRejected(reason)
