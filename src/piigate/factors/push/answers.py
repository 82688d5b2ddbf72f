"""A device's answer to a push: number matching, checked through the ``Verifier``'s pipeline.

An answer is single use: the push is closed ``open`` → ``approved``/``denied`` by
compare-and-set. A right number (:class:`NumberMatch`, the push's
:class:`~piigate.stepup.verdicts.FactorCheck`) approves the challenge through
:meth:`Verifier.answer <piigate.stepup.verification.Verifier.answer>` with ``amr`` ``mca`` +
``pop`` (RFC 8176): like a code, the attempt is counted on the challenge and on the device
factor before the number is compared, with the Verifier's back-off and cap, and the push is
closed ``approved`` in the same transaction as the approval. The requester collects the grant
once from ``/status``. "This wasn't me" denies the challenge
(:meth:`~piigate.stepup.verification.Verifier.deny`), appends an ``alert`` event and feeds the
``denied_push`` risk signal (:mod:`piigate.risk.recorded`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog

from piigate.clock import Clock
from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.errors import Conflict, NotFound, ServiceUnavailable
from piigate.factors import CeremonyPurpose, CeremonyState
from piigate.factors.ports import (
    CeremonyRecord,
    CeremonyRepo,
    ChallengeReader,
    FactorRecord,
    SpendCeremony,
)
from piigate.factors.push.protocol import numbers_match
from piigate.ids import MAX_ID_LENGTH
from piigate.model import Challenge, ChallengeState, Method
from piigate.ports import AuditRecorder
from piigate.stepup.verdicts import (
    CheckFailed,
    FactorCheck,
    FactorUnreadable,
    Proof,
    VerificationFailure,
    VerificationRejected,
    Verified,
)
from piigate.stepup.verification import Verifier

__all__ = [
    "PUSH_AMR",
    "NumberMatch",
    "PushAnswers",
    "PushClosed",
    "PushDecision",
    "number_aad",
    "read_number",
]

log = structlog.get_logger("piigate.push")

PUSH = Method.PUSH.value

# RFC 8176 §2: "mca" (multiple-channel authentication: the answer comes over the device's own
# channel) and "pop" (proof of possession of the device key). The engine maps "mca" to push.
PUSH_AMR = ("mca", "pop")


class PushDecision(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


def number_aad(push_id: str) -> bytes:
    """Binds a number's ciphertext to its push: a number copied onto another row fails."""
    return f"push:{push_id}".encode()


async def read_number(keyring: Keyring, push: CeremonyRecord) -> int:
    """The two-digit number of ``push``, decrypted (503 when it cannot be read)."""
    if push.secret is None:
        raise ServiceUnavailable("the push cannot be read")
    try:
        return int(await keyring.adecrypt(push.secret, aad=number_aad(push.id)))
    except (DecryptionError, ValueError):
        log.warning("push_number_unreadable", push_id=push.id)
        raise ServiceUnavailable("the push cannot be read") from None


class NumberMatch(FactorCheck):
    """The check of one push answer: the number typed on the device is the one the step-up
    page shows (constant time, ``WRONG_NUMBER`` otherwise). A success spends the push, closed
    ``open`` → ``approved`` with ``answered`` (who answered); when the challenge runs out of
    attempts the push closes with it (``expired``)."""

    amr = PUSH_AMR

    def __init__(
        self,
        *,
        store: CeremonyRepo,
        keyring: Keyring,
        push: CeremonyRecord,
        answered: Mapping[str, Any],
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.push = push
        self.answered = answered

    async def check(
        self,
        challenge: Challenge,
        proof: Proof,
        factors: Sequence[FactorRecord],
        now: datetime,
    ) -> Verified:
        device = factors[0]  # the one device that answered, charged
        try:
            expected = await read_number(self.keyring, self.push)
        except ServiceUnavailable:  # a server fault: not counted against the device
            raise FactorUnreadable([device.id]) from None
        given = None if proof.code is None else int(proof.code.reveal())
        if not numbers_match(expected, given):
            raise CheckFailed(VerificationFailure.WRONG_NUMBER, device.id)
        spend = SpendCeremony(self.push.id, new=CeremonyState.APPROVED, data=self.answered)
        return Verified(device, PUSH_AMR, spends=(spend,))

    async def out_of_attempts(self, challenge: Challenge, now: datetime) -> None:
        await self.store.close_ceremony(self.push.id, new=CeremonyState.EXPIRED, now=now)


class PushClosed(Conflict):
    """The push can no longer be answered. Its device may know why: whether a push is still open
    is what ``GET /v1/devices/pending`` shows it anyway, and it says nothing about the number."""

    code = "push_closed"
    title = "Push no longer open"


# What the device is told when its answer comes too late (the audit keeps the exact reason).
_CLOSED = {
    VerificationFailure.REPLAYED: "this request was already answered",
    VerificationFailure.EXPIRED: "this request has expired",
    VerificationFailure.NOT_PENDING: "this request is already closed",
}


class PushAnswers:
    """Answers from devices (``POST /v1/devices/pushes/{id}``)."""

    def __init__(
        self,
        *,
        store: CeremonyRepo,
        challenges: ChallengeReader,
        keyring: Keyring,
        audit: AuditRecorder,
        clock: Clock,
        verifier: Verifier,
    ) -> None:
        self.store = store
        self.challenges = challenges
        self.keyring = keyring
        self.audit = audit
        self.clock = clock
        self.verifier = verifier

    async def answer(
        self, device: FactorRecord, push_id: str, decision: PushDecision, number: int | None
    ) -> ChallengeState:
        """The device's answer to a push: the challenge's new state, or raises.

        404 when the push is not this device's; 409 :class:`PushClosed` when the push or its
        challenge can no longer be answered (already answered, expired, closed), saying which;
        the vague 401 ``factor_rejected`` for a wrong number (or a device that may not answer
        now); 429 during the failure back-off. Every refusal is audited with its exact reason.
        """
        try:
            return await self._answer(device, push_id, decision, number)
        except VerificationRejected as refused:
            closed = _CLOSED.get(refused.reason)
            if closed is None:
                raise
            raise PushClosed(closed) from None

    async def _answer(
        self, device: FactorRecord, push_id: str, decision: PushDecision, number: int | None
    ) -> ChallengeState:
        now = self.clock.now()
        push, challenge = await self._push_of(device, push_id)
        # Refused before anything is charged: the answer cannot be the right one any more.
        if push.state != CeremonyState.OPEN:
            closed = (
                VerificationFailure.EXPIRED
                if push.state == CeremonyState.EXPIRED
                else VerificationFailure.REPLAYED
            )
            await self.verifier.refuse(challenge, PUSH, closed, factor_id=device.id)
        if push.expires_at <= now:
            await self.store.close_ceremony(push.id, new=CeremonyState.EXPIRED, now=now)
            await self.verifier.refuse(
                challenge, PUSH, VerificationFailure.EXPIRED, factor_id=device.id
            )
        answered = {**push.data, "answered_by": device.id}
        if decision is PushDecision.DENY:
            await self._deny(challenge, push, device, answered)
            return ChallengeState.DENIED
        check = NumberMatch(store=self.store, keyring=self.keyring, push=push, answered=answered)
        proof = Proof(PUSH, code=None if number is None else Secret(str(number)))
        await self.verifier.answer(challenge, proof, check=check, factor=device)
        return ChallengeState.APPROVED

    async def _push_of(
        self, device: FactorRecord, push_id: str
    ) -> tuple[CeremonyRecord, Challenge]:
        """The push ``push_id`` sent to ``device``, and its challenge; 404 otherwise."""
        push = await self.store.get_ceremony(push_id) if 0 < len(push_id) <= MAX_ID_LENGTH else None
        if (
            push is None
            or push.purpose != CeremonyPurpose.PUSH
            or push.subject_id != device.subject_id
            or device.id not in push.data.get("devices", [])
        ):
            raise NotFound("no such push")
        challenge = await self.challenges.get(push.challenge_id or "")
        if challenge is None:
            raise NotFound("no such push")
        return push, challenge

    async def _deny(
        self,
        challenge: Challenge,
        push: CeremonyRecord,
        device: FactorRecord,
        answered: Mapping[str, Any],
    ) -> None:
        await self.verifier.deny(
            challenge,
            PUSH,
            VerificationFailure.DENIED,
            answer=SpendCeremony(push.id, new=CeremonyState.DENIED, data=answered),
            push_id=push.id,
            factor_id=device.id,
        )
        # "This wasn't me": someone holding the user's first factor may be trying to step up.
        await self.audit.record(
            "alert",
            subject_id=challenge.subject_id,
            data={
                "kind": "push_denied",
                "challenge_id": challenge.id,
                "decision_id": challenge.decision_id,
                "push_id": push.id,
                "factor_id": device.id,
            },
        )
