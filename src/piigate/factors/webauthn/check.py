"""The WebAuthn step-up check (CONTRACT §4.3): a ``PublicKeyCredential`` assertion answering a
challenge, plugged into the :class:`~piigate.stepup.verification.Verifier` for ``webauthn``.

The assertion's clientDataJSON names its ceremony (the options of
:meth:`~piigate.factors.webauthn.ceremony.WebAuthnCeremonies.authentication_options`), which
must be this challenge's, open and in time, and whose challenge must equal the derivation from
this challenge's binding. A ceremony is single use whatever the outcome: a refused answer closes
it here, a verified one returns it to spend (``SpendCeremony``) with the new sign count
(``ReviseFactorData``, judged again on the row under its lock), and the ``Verifier`` saves both
with the approval, so of two requests carrying the same answer, on any node, one is accepted.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from piigate.factors import CeremonyPurpose, CeremonyState
from piigate.factors.ports import (
    CeremonyRecord,
    CeremonyRepo,
    FactorRecord,
    FactorRepo,
    ReviseFactorData,
    Spend,
    SpendCeremony,
)
from piigate.factors.steps import factor_settings
from piigate.factors.webauthn.protocol import (
    RelyingParty,
    StoredCredential,
    b64url_decode,
    ceremony_id,
    client_challenge,
    credential_id_of,
    stepup_challenge,
)
from piigate.factors.webauthn.responses import (
    Assertion,
    WebAuthnRejected,
    sign_count_advances,
    verify_assertion,
    webauthn_amr,
)
from piigate.model import Challenge, Method
from piigate.policy.holder import PolicyHolder
from piigate.stepup.verdicts import CheckFailed, FactorCheck, Proof, VerificationFailure, Verified

__all__ = [
    "NONCE_BYTES",
    "WebAuthnCheck",
    "WebAuthnStore",
    "policy_user_verification",
    "stored_credentials",
]

# The random part of a step-up challenge's derivation (WebAuthn §13.4.3: at least 16 bytes).
NONCE_BYTES = 16


class WebAuthnStore(FactorRepo, CeremonyRepo, Protocol):
    """Factors and ceremonies: what ``piigate.store.Store`` is."""


def policy_user_verification(policy: PolicyHolder) -> str:
    """The policy's ``factors.webauthn.user_verification`` (``required`` when not declared)."""
    settings = factor_settings(policy, Method.WEBAUTHN)
    return settings.user_verification if settings is not None else "required"


def stored_credentials(
    factors: Iterable[FactorRecord],
) -> list[tuple[FactorRecord, StoredCredential]]:
    """The factors that hold a WebAuthn credential, each with it."""
    found = []
    for factor in factors:
        stored = StoredCredential.from_data(factor.data)
        if stored is not None:
            found.append((factor, stored))
    return found


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
    challenge and its challenge must equal the derivation from this challenge's binding, and be
    open and in time → pick the factor by credential id → verify the assertion (signature,
    origin, RP id, user verification, counter) → return the ceremony and the sign count to spend
    (a refused answer closes the ceremony itself).
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
            or ceremony.purpose != CeremonyPurpose.WEBAUTHN_AUTH
            or ceremony.challenge_id != challenge.id
            or ceremony.subject_id != challenge.subject_id
            or not hmac.compare_digest(self._expected(challenge, ceremony), sent)
        ):
            # Options of another challenge (another request's binding), or made up.
            raise CheckFailed(VerificationFailure.BAD_ASSERTION, first)
        if ceremony.state != CeremonyState.OPEN:
            raise CheckFailed(VerificationFailure.REPLAYED, first)
        if ceremony.expires_at <= now:
            await self.store.close_ceremony(ceremony.id, new=CeremonyState.EXPIRED, now=now)
            raise CheckFailed(VerificationFailure.EXPIRED, first)
        try:
            factor, assertion = self._assertion(credential, factors, sent)
        except CheckFailed:
            # A ceremony is single use whatever the outcome: a refused answer spends it too.
            await self.store.close_ceremony(ceremony.id, new=CeremonyState.USED, now=now)
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
        held = stored_credentials(factors)
        match = next(((f, s) for f, s in held if s.credential_id == named), None)
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
                require_user_verification=policy_user_verification(self.policy) == "required",
            )
        except WebAuthnRejected as rejected:
            raise CheckFailed(VerificationFailure(rejected.reason.value), factor.id) from None
        return factor, assertion

    @staticmethod
    def _expected(challenge: Challenge, ceremony: CeremonyRecord) -> bytes:
        nonce = b64url_decode(ceremony.data.get("nonce"))
        if nonce is None or len(nonce) != NONCE_BYTES:
            return b""
        return stepup_challenge(
            challenge_id=challenge.id, binding=challenge.requirement.binding, nonce=nonce
        )
