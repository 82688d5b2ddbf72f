"""Sending SMS one-time codes — for a challenge, or to confirm a phone being enrolled — and
confirming an enrolled phone. Codes themselves (made, sealed, matched) and the step-up check are
:mod:`piigate.factors.sms.codes`.

Every code sent is a ceremony (``piigate.store.ceremonies``) — purpose ``sms_code`` (a challenge)
or ``sms_enroll`` (a pending factor) — whose ``secret`` is the keyring ciphertext of the code,
with associated data naming the ceremony. A code lives at most :data:`MAX_CODE_LIFETIME` seconds
(less when the policy's ``code_lifetime`` says so) and is accepted once. Only the newest code of
a challenge counts; a resend voids the older one but leaves the factor's failure count alone, so
resending cannot buy an attacker fresh guesses (CONTRACT §5.3).

Sending is rate limited per subject and per number (:class:`SmsLimits`), in the shared counters,
before anything is sent; a number is counted under its keyed digest, never in clear. A provider
failure voids the code just opened and answers 503. Numbers are stored only as keyring
ciphertext (factor ``secret``, associated data ``factor:<id>``), with a masked hint in ``data``.
Neither a code nor a number ever reaches a log line or an audit event.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from piigate.clock import Clock
from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, TooManyRequests
from piigate.factors import CeremonyPurpose, CeremonyState, FactorState
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.ports import (
    AuditRecorder,
    CeremonyRepo,
    FactorRecord,
    FactorRepo,
    RateCounters,
    factor_aad,
)
from piigate.factors.sms import (
    PhoneNumber,
    SmsDeliveryError,
    SmsMessage,
    SmsSender,
    approval_text,
    enrollment_text,
    parse_phone,
)
from piigate.factors.sms.codes import (
    CEREMONY_SCAN,
    code_aad,
    code_mismatch,
    new_code,
    newest_code,
    normalised_code,
)
from piigate.factors.steps import (
    MAX_ID_LENGTH,
    factor_settings,
    require_pending,
    seconds_left,
    subject_counter_key,
    usable_factors,
)
from piigate.ids import new_id
from piigate.model import Caller, Method
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorSettings
from piigate.stepup.verdicts import VerificationFailure
from piigate.stepup.verification import Verifier

__all__ = [
    "MAX_CODE_LIFETIME",
    "SentCode",
    "SmsCeremony",
    "SmsLimits",
    "SmsStore",
]

log = structlog.get_logger("piigate.factors.sms")

# NIST SP 800-63B-4 and the PSD2 RTS (Art. 4(3)(d)) both bound out-of-band codes; 5 minutes is
# the stricter. A policy may shorten it (factors.sms.code_lifetime), never lengthen it.
MAX_CODE_LIFETIME = 300


@dataclass(frozen=True, slots=True)
class SmsLimits:
    """How many codes may be sent: per subject (``per_subject`` in ``subject_window`` seconds)
    and per destination number (``per_number`` in ``number_window``), whatever the purpose.

    The per-number limit stops a caller with many accounts from flooding one victim's phone
    (or a premium range) with codes; the per-subject one bounds resends of one person.
    """

    per_subject: int = 3
    subject_window: int = 600
    per_number: int = 10
    number_window: int = 3600


# -- ports --------------------------------------------------------------------------------------


class SmsStore(FactorRepo, CeremonyRepo, Protocol):
    """Factors and ceremonies: what ``piigate.store.Store`` is."""


class NumberDigester(Protocol):
    """A keyed digest of a number, for counting without the number (``sms.numbers``)."""

    async def digest(self, phone: PhoneNumber) -> str: ...


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentCode:
    """A code on its way: which ceremony holds it, where it went (the hint), until when."""

    ceremony_id: str
    factor: FactorRecord
    hint: str
    expires_at: datetime


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
        self.counters = counters
        self.digests = digests
        self.sender = sender
        self.keyring = keyring
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.verifier = verifier
        self.enrollment = enrollment
        self.limits = limits or SmsLimits()
        self.ids = ids

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
        phone = self._number(factor)
        await self._throttle(
            challenge.subject_id, phone, purpose=CeremonyPurpose.SMS_CODE, challenge_id=challenge.id
        )
        await self.store.close_open_ceremonies(
            challenge_id=challenge.id,
            purposes=[CeremonyPurpose.SMS_CODE],
            new=CeremonyState.EXPIRED,
            now=now,
        )
        return await self._send(
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
        await self._throttle(subject_id, phone, purpose=CeremonyPurpose.SMS_ENROLL)
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
            sent = await self._send(
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
            data={"factor_id": factor_id, "kind": Method.SMS.value, "state": "pending"},
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
        await enrollment.charge_confirmation(subject_id, factor_id, Method.SMS, now)
        given = normalised_code(code)
        if given is None:
            await enrollment.refuse_confirmation(
                subject_id, factor_id, VerificationFailure.MALFORMED
            )
        sent = await self.store.list_ceremonies(
            factor_id=factor_id, purposes=[CeremonyPurpose.SMS_ENROLL], limit=CEREMONY_SCAN
        )
        ceremony = newest_code(sent)
        reason = code_mismatch(self.keyring, ceremony, given, now)
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

    def _number(self, factor: FactorRecord) -> PhoneNumber:
        """The factor's number, decrypted; 503 when the keyring cannot read it (fail closed)."""
        if factor.secret is None:
            raise ServiceUnavailable("the SMS factor has no number")
        try:
            e164 = self.keyring.decrypt(factor.secret, aad=factor_aad(factor.id)).decode("ascii")
        except (DecryptionError, UnicodeDecodeError):
            log.warning("sms_number_unreadable", factor_id=factor.id)
            raise ServiceUnavailable("the SMS factor cannot be read") from None
        return parse_phone(e164)

    async def _throttle(self, subject_id: str, phone: PhoneNumber, **context: object) -> None:
        """Count this send against the subject's and the number's limits; 429 when over."""
        now = self.clock.now()
        subject_key = subject_counter_key("sms:subject", subject_id)
        number_key = "sms:number:" + await self.digests.digest(phone)
        limits = self.limits
        for scope, key, limit, window in (
            ("subject", subject_key, limits.per_subject, limits.subject_window),
            ("number", number_key, limits.per_number, limits.number_window),
        ):
            if await self.counters.hit(key, window_seconds=window, now=now) <= limit:
                continue
            until = await self.counters.active_until(key, now)
            retry = window if until is None else (until - now).total_seconds()
            await self.audit.record(
                "sms_throttled", subject_id=subject_id, data={"scope": scope, **context}
            )
            raise TooManyRequests(
                math.ceil(retry), "too many SMS codes were sent; retry later or use another factor"
            )

    async def _send(
        self,
        *,
        subject_id: str,
        purpose: str,
        factor: FactorRecord,
        phone: PhoneNumber,
        text: Callable[[str], str],
        lifetime: int,
        challenge_id: str | None = None,
    ) -> SentCode:
        """Open the code's ceremony, then hand the message to the provider. On a provider
        failure the ceremony is voided (the code never works) and the answer is 503."""
        now = self.clock.now()
        ceremony_id = self.ids("cer")
        code = new_code()
        expires_at = now + timedelta(seconds=lifetime)
        sealed = self.keyring.encrypt(code.reveal().encode("ascii"), aad=code_aad(ceremony_id))
        await self.store.open_ceremony(
            id=ceremony_id,
            subject_id=subject_id,
            purpose=purpose,
            now=now,
            expires_at=expires_at,
            challenge_id=challenge_id,
            factor_id=factor.id,
            secret=sealed,
            data={"hint": phone.hint},
        )
        context: dict[str, object] = {
            "purpose": purpose,
            "factor_id": factor.id,
            "ceremony_id": ceremony_id,
            "provider": self.sender.name,
        }
        if challenge_id is not None:
            context["challenge_id"] = challenge_id
        try:
            await self.sender.send(SmsMessage(ceremony_id, phone, Secret(text(code.reveal()))))
        except SmsDeliveryError as failed:
            await self.store.close_ceremony(
                ceremony_id,
                new=CeremonyState.EXPIRED,
                now=now,
                data={"hint": phone.hint, "void": "undelivered"},
            )
            log.warning("sms_delivery_failed", provider=failed.provider, reason=failed.reason)
            await self.audit.record(
                "sms_failed", subject_id=subject_id, data={**context, "reason": failed.reason}
            )
            raise ServiceUnavailable(
                "the SMS could not be sent; try again later or use another factor"
            ) from None
        await self.audit.record(
            "sms_sent",
            subject_id=subject_id,
            data={**context, "expires_at": int(expires_at.timestamp())},
        )
        return SentCode(ceremony_id, factor, phone.hint, expires_at)
