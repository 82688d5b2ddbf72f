"""Push approval with number matching: sending pushes and answering them.

Devices are enrolled and their signed requests authenticated by
:class:`~piigate.factors.push.devices.PushDevices`, which :class:`PushCeremony` extends. A push is a
``push`` ceremony for one challenge, to all of the subject's active push devices (or one named):
``data.devices`` lists them, ``secret`` is the keyring ciphertext of the two-digit number. The
number is shown on the step-up page (``GET /v1/challenges/{id}``), never sent to the device: the
user types it there (number matching). At most one push per challenge is open: asking again
returns the open one (same number, nothing new is sent).

An answer is single use: the push is closed ``open`` → ``approved``/``denied`` by
compare-and-set. A right number approves the challenge through :meth:`Verifier.approve` with
``amr`` ``mca`` + ``pop`` (RFC 8176), and the requester collects the grant once from
``/status``. A wrong number is a failed verification: counted on the challenge and on the
device factor before the check, with the Verifier's back-off and cap. "This wasn't me" denies
the challenge, appends an ``alert`` event and feeds the ``denied_push`` risk signal
(:mod:`piigate.risk.recorded`).

Fatigue (NIST SP 800-63B-4 §3.2.9 calls it out for push): after
:attr:`PushLimits.fatigue_limit` unanswered or denied pushes in
:attr:`PushLimits.fatigue_window` seconds, no push is sent (429, ``push_withheld``); the user
must step up with another factor. Number matching is always on: the policy's
``number_matching`` cannot turn it off (``nist-800-63b-4`` demands it anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog

from piigate.clock import Clock
from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.errors import Conflict, NotFound, ServiceUnavailable, TooManyRequests
from piigate.factors import CeremonyPurpose, CeremonyState
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.ports import CeremonyRecord, ChallengeReader, FactorRecord
from piigate.factors.push.devices import PushDevices, PushStore
from piigate.factors.push.protocol import new_push_number, numbers_match
from piigate.factors.push.relay import PushRelay
from piigate.factors.steps import (
    MAX_ID_LENGTH,
    require_pending,
    seconds_left,
    subject_counter_key,
    usable_factors,
)
from piigate.ids import new_id
from piigate.model import Caller, Challenge, ChallengeState, Method
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorSettings
from piigate.ports import AuditRecorder, RateCounters
from piigate.stepup.verdicts import CheckFailed, VerificationFailure, Verified
from piigate.stepup.verification import Verifier

__all__ = [
    "PUSH_AMR",
    "PendingPush",
    "PushCeremony",
    "PushDecision",
    "PushLimits",
    "SentPush",
    "ShownPush",
]

log = structlog.get_logger("piigate.push")

PUSH = Method.PUSH.value

# RFC 8176 §2: "mca" (multiple-channel authentication: the answer comes over the device's own
# channel) and "pop" (proof of possession of the device key). The engine maps "mca" to push.
PUSH_AMR = ("mca", "pop")
# States of a push that count against fatigue: sent and not approved.
_UNANSWERED = (CeremonyState.OPEN, CeremonyState.EXPIRED, CeremonyState.DENIED)
# How long one node holds a subject's send lock (if it dies holding it, the lock lapses).
_SEND_LOCK_SECONDS = 10


@dataclass(frozen=True, slots=True)
class PushLimits:
    """How long enrollment links and pushes live, and how many pushes a subject may ignore.

    A push lives at most ``max_lifetime`` seconds (less when the policy's ``code_lifetime`` or
    the challenge says so). After ``fatigue_limit`` unanswered or denied pushes within
    ``fatigue_window`` seconds, no more are sent.
    """

    enroll_lifetime: int = 600
    max_lifetime: int = 300
    fatigue_limit: int = 3
    fatigue_window: int = 600


class PushDecision(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentPush:
    """The open push of a challenge: the number to show, until when, to how many devices, and
    whether this call sent it (False: it was already open)."""

    push_id: str
    number: int
    expires_at: datetime
    devices: tuple[str, ...]
    sent: bool


@dataclass(frozen=True, slots=True)
class ShownPush:
    number: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PendingPush:
    """A push waiting for a device's answer, with the challenge it is for (payee decrypted)."""

    id: str
    challenge: Challenge
    created_at: datetime
    expires_at: datetime


def _number_aad(push_id: str) -> bytes:
    """Binds a number's ciphertext to its push: a number copied onto another row fails."""
    return f"push:{push_id}".encode()


# -- the ceremony -------------------------------------------------------------------------------


class PushCeremony(PushDevices):
    """Sending (``POST /v1/challenges/{id}/push``), the pending list and answers
    (``GET /v1/devices/pending``, ``POST /v1/devices/pushes/{id}``), on top of device enrollment
    and authentication (:class:`~piigate.factors.push.devices.PushDevices`)."""

    def __init__(
        self,
        *,
        store: PushStore,
        counters: RateCounters,
        challenges: ChallengeReader,
        keyring: Keyring,
        policy: PolicyHolder,
        audit: AuditRecorder,
        clock: Clock,
        verifier: Verifier,
        enrollment: FactorEnrollment,
        public_url: str,
        relay: PushRelay | None = None,
        limits: PushLimits | None = None,
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self.limits = limits or PushLimits()
        super().__init__(
            store=store,
            counters=counters,
            policy=policy,
            audit=audit,
            clock=clock,
            enrollment=enrollment,
            public_url=public_url,
            enroll_lifetime=self.limits.enroll_lifetime,
            ids=ids,
        )
        self.challenges = challenges
        self.keyring = keyring
        self.verifier = verifier
        self.relay = relay

    # -- sending --------------------------------------------------------------------------------
    async def send(
        self,
        challenge_id: str,
        *,
        caller: Caller,
        factor_id: str | None = None,
    ) -> SentPush:
        """Push the challenge to its subject's active push devices (or the one named), or return
        the push already open for it.

        404 unless the caller is the challenge's subject or the app that asked; 409 when the
        challenge is no longer pending, does not allow push, or there is no usable device; 429
        when too many pushes went unanswered or were denied (or a send is already under way).
        """
        now = self.clock.now()
        challenge = await self.verifier.load(challenge_id, caller)
        settings = self._settings()
        require_pending(challenge, now)
        if settings is None or PUSH not in challenge.requirement.methods:
            raise Conflict("this challenge cannot be answered with a push")
        lock = subject_counter_key("push:send", challenge.subject_id)
        if await self.counters.hit(lock, window_seconds=_SEND_LOCK_SECONDS, now=now) > 1:
            raise TooManyRequests(1, "a push is being sent; retry in a moment")
        try:
            return await self._send(challenge, settings, factor_id, now)
        finally:
            await self.counters.reset(lock)

    async def _send(
        self, challenge: Challenge, settings: FactorSettings, factor_id: str | None, now: datetime
    ) -> SentPush:
        open_push = await self._open_push(challenge.id, now)
        if open_push is not None:
            number = self._number(open_push)
            already = tuple(str(d) for d in open_push.data.get("devices", []))
            return SentPush(open_push.id, number, open_push.expires_at, already, sent=False)
        devices = await usable_factors(
            self.store,
            challenge.subject_id,
            kind=PUSH,
            factor_id=factor_id,
            max_failures=settings.max_failures,
            none_active="no active push device to send to",
            all_locked="the push device is locked after too many failures",
        )
        await self._check_fatigue(challenge, now)
        push_id = self.ids("psh")
        number = new_push_number()
        lifetime = min(
            settings.code_lifetime, self.limits.max_lifetime, seconds_left(challenge, now)
        )
        expires_at = now + timedelta(seconds=max(1, lifetime))
        device_ids = tuple(d.id for d in devices)
        sealed = self.keyring.encrypt(str(number).encode("ascii"), aad=_number_aad(push_id))
        await self.store.open_ceremony(
            id=push_id,
            subject_id=challenge.subject_id,
            purpose=CeremonyPurpose.PUSH,
            now=now,
            expires_at=expires_at,
            challenge_id=challenge.id,
            secret=sealed,
            data={"devices": list(device_ids)},
        )
        await self.audit.record(
            "push_sent",
            subject_id=challenge.subject_id,
            data={
                "challenge_id": challenge.id,
                "push_id": push_id,
                "devices": list(device_ids),
                "expires_at": int(expires_at.timestamp()),
            },
        )
        if self.relay is not None:
            for device_id in device_ids:
                await self.relay.notify(device_id=device_id, push_id=push_id)
        return SentPush(push_id, number, expires_at, device_ids, sent=True)

    async def _check_fatigue(self, challenge: Challenge, now: datetime) -> None:
        limits = self.limits
        ignored = await self.store.count_ceremonies(
            since=now - timedelta(seconds=limits.fatigue_window),
            subject_id=challenge.subject_id,
            purposes=[CeremonyPurpose.PUSH],
            states=_UNANSWERED,
        )
        if ignored < limits.fatigue_limit:
            return
        await self.audit.record(
            "push_withheld",
            subject_id=challenge.subject_id,
            data={
                "challenge_id": challenge.id,
                "unanswered": ignored,
                "window": limits.fatigue_window,
            },
        )
        raise TooManyRequests(
            limits.fatigue_window,
            "too many push requests went unanswered or were denied; "
            "use a stronger factor (a security key or an authenticator app code)",
        )

    async def _open_push(self, challenge_id: str, now: datetime) -> CeremonyRecord | None:
        """The challenge's live push, closing any that outlived their time."""
        found = await self.store.list_ceremonies(
            challenge_id=challenge_id, purposes=[CeremonyPurpose.PUSH], states=[CeremonyState.OPEN]
        )
        live = None
        for push in found:
            if push.expires_at <= now:
                await self.store.close_ceremony(push.id, new=CeremonyState.EXPIRED, now=now)
            elif live is None or push.created_at > live.created_at:
                live = push
        return live

    def _number(self, push: CeremonyRecord) -> int:
        if push.secret is None:
            raise ServiceUnavailable("the push cannot be read")
        try:
            return int(self.keyring.decrypt(push.secret, aad=_number_aad(push.id)))
        except (DecryptionError, ValueError):
            log.warning("push_number_unreadable", push_id=push.id)
            raise ServiceUnavailable("the push cannot be read") from None

    async def shown(self, challenge: Challenge) -> ShownPush | None:
        """The number the step-up page shows for the challenge's open push, if one is open."""
        now = self.clock.now()
        if challenge.state is not ChallengeState.PENDING:
            return None
        push = await self._open_push(challenge.id, now)
        if push is None:
            return None
        return ShownPush(self._number(push), push.expires_at)

    # -- the device's side ----------------------------------------------------------------------
    async def pending(self, device: FactorRecord) -> list[PendingPush]:
        """The pushes waiting for ``device``, oldest first. Pushes that expired, or whose
        challenge was settled another way, are closed on the way."""
        now = self.clock.now()
        found = await self.store.list_ceremonies(
            subject_id=device.subject_id,
            purposes=[CeremonyPurpose.PUSH],
            states=[CeremonyState.OPEN],
        )
        waiting: list[PendingPush] = []
        for push in found:
            if push.expires_at <= now:
                await self.store.close_ceremony(push.id, new=CeremonyState.EXPIRED, now=now)
                continue
            if device.id not in push.data.get("devices", []):
                continue
            challenge = await self.challenges.get(push.challenge_id or "")
            if (
                challenge is None
                or challenge.state is not ChallengeState.PENDING
                or challenge.expires_at <= now
            ):
                # Settled by another factor (or gone): nothing left to answer, not "ignored".
                await self.store.close_ceremony(push.id, new=CeremonyState.USED, now=now)
                continue
            waiting.append(PendingPush(push.id, challenge, push.created_at, push.expires_at))
        return waiting

    async def answer(
        self, device: FactorRecord, push_id: str, decision: PushDecision, number: int | None
    ) -> ChallengeState:
        """The device's answer to a push: the challenge's new state, or raises.

        404 when the push is not this device's; the vague 401 ``factor_rejected`` for a push
        already answered (a replay), expired, or approved with the wrong number; 429 during the
        failure back-off.
        """
        now = self.clock.now()
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
        if push.state != CeremonyState.OPEN:
            await self.verifier.refusals.reject(
                challenge, PUSH, VerificationFailure.REPLAYED, factor_id=device.id
            )
        if push.expires_at <= now:
            await self.store.close_ceremony(push.id, new=CeremonyState.EXPIRED, now=now)
            await self.verifier.refusals.reject(
                challenge, PUSH, VerificationFailure.EXPIRED, factor_id=device.id
            )
        _compiled, settings = await self.verifier.admit(challenge, PUSH, now)
        answered = {**push.data, "answered_by": device.id}
        if decision is PushDecision.DENY:
            return await self._deny(challenge, push, device, answered, now)
        return await self._approve(challenge, push, device, settings, number, answered, now)

    async def _deny(
        self,
        challenge: Challenge,
        push: CeremonyRecord,
        device: FactorRecord,
        answered: Mapping[str, Any],
        now: datetime,
    ) -> ChallengeState:
        if not await self.store.close_ceremony(
            push.id, new=CeremonyState.DENIED, now=now, data=answered
        ):
            await self.verifier.refusals.reject(
                challenge, PUSH, VerificationFailure.REPLAYED, factor_id=device.id
            )
        await self.verifier.deny(
            challenge, PUSH, VerificationFailure.DENIED, push_id=push.id, factor_id=device.id
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
        return ChallengeState.DENIED

    async def _approve(
        self,
        challenge: Challenge,
        push: CeremonyRecord,
        device: FactorRecord,
        settings: FactorSettings,
        number: int | None,
        answered: Mapping[str, Any],
        now: datetime,
    ) -> ChallengeState:
        verifier = self.verifier
        refusals = verifier.refusals

        async def give_up() -> None:  # out of attempts: the push closes with its challenge
            await self.store.close_ceremony(push.id, new=CeremonyState.EXPIRED, now=now)

        # As Verifier.verify does: count the attempt and charge the device *before* comparing.
        _, attempts = await refusals.charge(
            challenge, PUSH, [device], settings, now, factor_id=device.id, give_up=give_up
        )
        if not numbers_match(self._number(push), number):
            wrong = CheckFailed(VerificationFailure.WRONG_NUMBER, device.id)
            await refusals.fail(challenge, PUSH, wrong, attempts, give_up=give_up)
        if not await self.store.close_ceremony(
            push.id, new=CeremonyState.APPROVED, now=now, data=answered
        ):
            await refusals.reject(
                challenge, PUSH, VerificationFailure.REPLAYED, factor_id=device.id
            )
        await self.store.reset_factor_failures(device.id)
        if not await verifier.approve(challenge, PUSH, Verified(device, PUSH_AMR)):
            await refusals.reject(
                challenge, PUSH, VerificationFailure.NOT_PENDING, factor_id=device.id
            )
        return ChallengeState.APPROVED
