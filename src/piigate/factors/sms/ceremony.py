"""Sending SMS one-time codes — for a challenge, or to confirm a phone being enrolled — and
confirming an enrolled phone. Codes themselves (made, sealed, matched) and the step-up check are
:mod:`piigate.factors.sms.codes`.

Every code sent is a ceremony (``piigate.store.ceremonies``) — purpose ``sms_code`` (a challenge)
or ``sms_enroll`` (a pending factor) — whose ``secret`` is the keyring ciphertext of the code,
with associated data naming the ceremony. A code lives at most 300 seconds
(less when the policy's ``code_lifetime`` says so) and is accepted once. Only the newest code of
a challenge counts; a resend voids the older one but leaves the factor's failure count alone, so
resending cannot buy an attacker fresh guesses (CONTRACT §5.3).

Sending (rate limits, the sealed code's ceremony, the provider, the audit) is
:mod:`piigate.factors.sms.dispatch`. Numbers are stored only as keyring ciphertext (factor
``secret``, associated data ``factor:<id>``), with a masked hint in ``data``. Neither a code nor a
number ever reaches a log line or an audit event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

from piigate.callers import Caller
from piigate.clock import Clock
from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from piigate.factors import CeremonyPurpose, CeremonyState, FactorState
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.ports import CeremonyRepo, FactorRecord, FactorRepo, factor_aad
from piigate.factors.sms import (
    PhoneNumber,
    SmsSender,
    approval_text,
    enrollment_text,
    parse_phone,
)
from piigate.factors.sms.codes import (
    CEREMONY_SCAN,
    code_mismatch,
    newest_code,
    normalised_code,
    sent_code,
)
from piigate.factors.sms.dispatch import (
    MAX_CODE_LIFETIME,
    CodeDispatch,
    NumberDigester,
    SentCode,
    SmsLimits,
)
from piigate.factors.steps import factor_settings, require_pending, seconds_left, usable_factors
from piigate.ids import MAX_ID_LENGTH, new_id
from piigate.model import Method
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorSettings
from piigate.ports import AuditRecorder, RateCounters
from piigate.stepup.verdicts import VerificationFailure
from piigate.stepup.verification import Verifier

__all__ = ["SmsCeremony", "SmsStore"]

log = structlog.get_logger("piigate.factors.sms")

# -- ports --------------------------------------------------------------------------------------


class SmsStore(FactorRepo, CeremonyRepo, Protocol):
    """Factors and ceremonies: what ``piigate.store.Store`` is."""


# -- sending ------------------------------------------------------------------------------------


class SmsCeremony:
    """Sends codes and confirms phones: ``POST /v1/challenges/{id}/sms`` (CONTRACT §4.3),
    ``POST /v1/factors/sms`` and ``POST /v1/factors/sms/{id}/confirm`` (§4.4)."""

    def __init__(
        self,
        *,
        store: SmsStore,
        counters: RateCounters,
        digests: NumberDigester,
        sender: SmsSender,
        keyring: Keyring,
        policy: PolicyHolder,
        audit: AuditRecorder,
        clock: Clock,
        verifier: Verifier,
        enrollment: FactorEnrollment,
        limits: SmsLimits | None = None,
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.verifier = verifier
        self.enrollment = enrollment
        self.ids = ids
        self.dispatch = CodeDispatch(
            store=store,
            counters=counters,
            digests=digests,
            sender=sender,
            keyring=keyring,
            audit=audit,
            clock=clock,
            limits=limits or SmsLimits(),
            ids=ids,
        )

    # -- a challenge's code ---------------------------------------------------------------------
    async def send(
        self,
        challenge_id: str,
        *,
        caller: Caller,
        factor_id: str | None = None,
    ) -> SentCode:
        """Send a fresh code for the challenge to its subject's active SMS factor (``factor_id``,
        or the most recently confirmed one), voiding any code sent before.

        404 unless the caller is the challenge's subject or the app that asked; 409 when the
        challenge is no longer pending, does not allow SMS, or the subject has no usable SMS
        factor; 429 over the rate limits; 503 when the provider fails.
        """
        now = self.clock.now()
        challenge = await self.verifier.load(challenge_id, caller)
        settings = self._settings()
        require_pending(challenge, now)
        if settings is None or Method.SMS.value not in challenge.requirement.methods:
            raise Conflict("this challenge cannot be answered with an SMS code")
        factor = await self._active_factor(challenge.subject_id, factor_id, settings)
        phone = await self._number(factor)
        await self.dispatch.throttle(
            challenge.subject_id, phone, purpose=CeremonyPurpose.SMS_CODE, challenge_id=challenge.id
        )
        await self.store.close_open_ceremonies(
            challenge_id=challenge.id,
            purposes=[CeremonyPurpose.SMS_CODE],
            new=CeremonyState.EXPIRED,
            now=now,
        )
        return await self.dispatch.send(
            subject_id=challenge.subject_id,
            purpose=CeremonyPurpose.SMS_CODE,
            factor=factor,
            phone=phone,
            text=lambda code: approval_text(
                code, action=challenge.action, pii=challenge.pii, transaction=challenge.transaction
            ),
            lifetime=min(self._lifetime(settings), seconds_left(challenge, now)),
            challenge_id=challenge.id,
        )

    # -- enrollment -----------------------------------------------------------------------------
    async def enroll(
        self,
        subject_id: str,
        phone_text: str,
        *,
        region: str | None = None,
        label: str = "",
        grant: str | None = None,
    ) -> SentCode:
        """A pending SMS factor for the number, and a confirmation code sent to it.

        Raises ``InvalidPhoneNumber`` (422), ``StepUpRequired`` once another factor is active
        and no fresh grant is presented, 403 when the policy has no ``sms`` factor, 429 over the
        rate limits, 503 when the provider fails (the pending factor is then removed).
        """
        now = self.clock.now()
        settings = self._settings()
        if settings is None:
            raise Forbidden("the policy does not enable SMS factors")
        phone = parse_phone(phone_text, region=region)
        await self.enrollment.authorise_addition(subject_id, Method.SMS, grant, now)
        await self.dispatch.throttle(subject_id, phone, purpose=CeremonyPurpose.SMS_ENROLL)
        factor_id = self.ids("fct")
        factor = await self.store.add_factor(
            id=factor_id,
            subject_id=subject_id,
            kind=Method.SMS.value,
            now=now,
            label=label,
            secret=self.keyring.encrypt(phone.e164.encode("ascii"), aad=factor_aad(factor_id)),
            state=FactorState.PENDING.value,
            data={"hint": phone.hint},
        )
        try:
            sent = await self.dispatch.send(
                subject_id=subject_id,
                purpose=CeremonyPurpose.SMS_ENROLL,
                factor=factor,
                phone=phone,
                text=enrollment_text,
                lifetime=self._lifetime(settings),
            )
        except ServiceUnavailable:
            await self.store.delete_factor(factor_id)
            raise
        await self.audit.record(
            "factor_enrolled",
            subject_id=subject_id,
            data={"factor_id": factor_id, "kind": Method.SMS.value, "state": FactorState.PENDING},
        )
        return sent

    async def confirm(self, subject_id: str, factor_id: str, code: Secret[str]) -> FactorRecord:
        """Activate a pending SMS factor with the code sent to its number. Failures are counted
        on the factor before the check and capped, as in any verification."""
        now = self.clock.now()
        factor = await self.store.get_factor(factor_id) if len(factor_id) <= MAX_ID_LENGTH else None
        if factor is None or factor.subject_id != subject_id or factor.kind != Method.SMS:
            raise NotFound("no such factor")
        if factor.state != FactorState.PENDING:
            raise Conflict("the factor is not a pending SMS factor")
        enrollment = self.enrollment
        sent = await self.store.list_ceremonies(
            factor_id=factor_id, purposes=[CeremonyPurpose.SMS_ENROLL], limit=CEREMONY_SCAN
        )
        ceremony = newest_code(sent)
        # Opened before anything is counted: a code the keyring cannot open is a 503, not a
        # failure of the factor.
        expected = await sent_code(self.keyring, ceremony)
        await enrollment.charge_confirmation(subject_id, factor_id, Method.SMS, now)
        given = normalised_code(code)
        if given is None:
            await enrollment.refuse_confirmation(
                subject_id, factor_id, VerificationFailure.MALFORMED
            )
        reason = code_mismatch(ceremony, expected, given, now)
        if reason is not None:
            await enrollment.refuse_confirmation(subject_id, factor_id, reason)
        assert ceremony is not None
        if not await self.store.close_ceremony(ceremony.id, new=CeremonyState.USED, now=now):
            await enrollment.refuse_confirmation(
                subject_id, factor_id, VerificationFailure.REPLAYED
            )
        return await enrollment.activate(subject_id, factor_id, Method.SMS, now)

    # -- steps ----------------------------------------------------------------------------------
    def _settings(self) -> FactorSettings | None:
        return factor_settings(self.policy, Method.SMS)

    @staticmethod
    def _lifetime(settings: FactorSettings) -> int:
        return max(1, min(settings.code_lifetime, MAX_CODE_LIFETIME))

    async def _active_factor(
        self, subject_id: str, factor_id: str | None, settings: FactorSettings
    ) -> FactorRecord:
        """The factor a code goes to: the one named, else the most recently confirmed. A
        locked one is refused (its code could not be checked anyway; a recovery code unlocks
        it)."""
        usable = await usable_factors(
            self.store,
            subject_id,
            kind=Method.SMS.value,
            factor_id=factor_id,
            max_failures=settings.max_failures,
            none_active="no active SMS factor to send the code to",
            all_locked="the SMS factor is locked after too many failures",
        )
        return usable[0]

    async def _number(self, factor: FactorRecord) -> PhoneNumber:
        """The factor's number, decrypted; 503 when the keyring cannot read it (fail closed)."""
        if factor.secret is None:
            raise ServiceUnavailable("the SMS factor has no number")
        try:
            number = await self.keyring.adecrypt(factor.secret, aad=factor_aad(factor.id))
            e164 = number.decode("ascii")
        except (DecryptionError, UnicodeDecodeError):
            log.warning("sms_number_unreadable", factor_id=factor.id)
            raise ServiceUnavailable("the SMS factor cannot be read") from None
        return parse_phone(e164)
