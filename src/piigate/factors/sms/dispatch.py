"""Sending one SMS code: counted against the rate limits first, sealed in its ceremony, handed
to the provider, audited. The same for a challenge's code and a phone's confirmation code.

Sending is rate limited per subject and per number (:class:`SmsLimits`), in the shared counters,
before anything is sent; a number is counted under its keyed digest, never in clear. A provider
failure voids the code just opened and answers 503. Neither a code nor a number ever reaches a
log line or an audit event.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.crypto.secret import Secret
from piigate.errors import ServiceUnavailable, TooManyRequests
from piigate.factors import CeremonyState
from piigate.factors.ports import CeremonyRepo, FactorRecord
from piigate.factors.sms.codes import code_aad, new_code
from piigate.factors.sms.phone import PhoneNumber
from piigate.factors.sms.port import SmsDeliveryError, SmsMessage, SmsSender
from piigate.factors.steps import subject_counter_key
from piigate.ids import new_id
from piigate.ports import AuditRecorder, RateCounters

__all__ = ["MAX_CODE_LIFETIME", "CodeDispatch", "NumberDigester", "SentCode", "SmsLimits"]

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


class CodeDispatch:
    """Sends codes: :meth:`throttle` before anything is opened, then :meth:`send`."""

    def __init__(
        self,
        *,
        store: CeremonyRepo,
        counters: RateCounters,
        digests: NumberDigester,
        sender: SmsSender,
        keyring: Keyring,
        audit: AuditRecorder,
        clock: Clock,
        limits: SmsLimits,
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self.store = store
        self.counters = counters
        self.digests = digests
        self.sender = sender
        self.keyring = keyring
        self.audit = audit
        self.clock = clock
        self.limits = limits
        self.ids = ids

    async def throttle(self, subject_id: str, phone: PhoneNumber, **context: object) -> None:
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

    async def send(
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
