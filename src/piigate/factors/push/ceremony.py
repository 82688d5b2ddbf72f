"""Push approval with number matching: sending pushes, and the push factor's parts together.

:class:`PushCeremony` sends pushes and lists them; it holds the device side
(:class:`~piigate.factors.push.devices.PushDevices`: enrolment, signed requests) and the answers
(:class:`~piigate.factors.push.answers.PushAnswers`: number matching through the ``Verifier``'s
pipeline). A push is a ``push`` ceremony for one challenge, to all of the subject's active push
devices (or one named): ``data.devices`` lists them, ``secret`` is the keyring ciphertext of the
two-digit number. The number is shown on the step-up page (``GET /v1/challenges/{id}``), never sent
to the device: the user types it there (number matching). At most one push per challenge is open:
asking again returns the open one (same number, nothing new is sent).

Fatigue (NIST SP 800-63B-4 §3.2.9 calls it out for push): after
:attr:`PushLimits.fatigue_limit` unanswered or denied pushes in
:attr:`PushLimits.fatigue_window` seconds, no push is sent (429, ``push_withheld``); the user
must step up with another factor. Number matching is always on: the policy's
``number_matching`` cannot turn it off (``nist-800-63b-4`` demands it anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from piigate.callers import Caller
from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.errors import Conflict, TooManyRequests
from piigate.factors import CeremonyPurpose, CeremonyState
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.ports import CeremonyRecord, ChallengeReader, FactorRecord
from piigate.factors.push.answers import (
    PUSH_AMR,
    PushAnswers,
    PushDecision,
    number_aad,
    read_number,
)
from piigate.factors.push.devices import PushDevices, PushStore
from piigate.factors.push.protocol import new_push_number
from piigate.factors.push.relay import PushRelay
from piigate.factors.steps import (
    factor_settings,
    require_pending,
    seconds_left,
    subject_counter_key,
    usable_factors,
)
from piigate.ids import new_id
from piigate.model import Challenge, ChallengeState, Method
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorSettings
from piigate.ports import AuditRecorder, RateCounters
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

PUSH = Method.PUSH.value

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


# -- the ceremony -------------------------------------------------------------------------------


class PushCeremony:
    """Sending (``POST /v1/challenges/{id}/push``) and the pending list
    (``GET /v1/devices/pending``); ``devices`` enrols and authenticates the devices, ``answers``
    takes their answers (``POST /v1/devices/pushes/{id}``)."""

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
        self.store = store
        self.counters = counters
        self.challenges = challenges
        self.keyring = keyring
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.verifier = verifier
        self.relay = relay
        self.ids = ids
        self.devices = PushDevices(
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
        self.answers = PushAnswers(
            store=store,
            challenges=challenges,
            keyring=keyring,
            audit=audit,
            clock=clock,
            verifier=verifier,
        )

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
        settings = factor_settings(self.policy, Method.PUSH)
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
            number = await read_number(self.keyring, open_push)
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
        sealed = self.keyring.encrypt(str(number).encode("ascii"), aad=number_aad(push_id))
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

    async def shown(self, challenge: Challenge) -> ShownPush | None:
        """The number the step-up page shows for the challenge's open push, if one is open."""
        now = self.clock.now()
        if challenge.state is not ChallengeState.PENDING:
            return None
        push = await self._open_push(challenge.id, now)
        if push is None:
            return None
        return ShownPush(await read_number(self.keyring, push), push.expires_at)

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
