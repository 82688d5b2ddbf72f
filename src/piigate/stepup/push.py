"""Push approval with number matching: enrolling devices, sending pushes, answering them.

The wire protocol (key types, the canonical string every device request is signed over) is
:mod:`piigate.factors.push`; this module keeps its state, in the store's ceremonies:

- ``push_enroll`` — a one-time enrollment token (``<ceremony id>.<random>``), stored only as its
  SHA-256, valid :attr:`PushLimits.enroll_lifetime` seconds, spent by compare-and-set. It
  belongs to a *pending* push factor; the device completes it with its public key and a
  signature made with the private one (proof of possession), and the factor becomes active.
- ``push`` — one push for a challenge, to all of the subject's active push devices (or one
  named): ``data.devices`` lists them, ``secret`` is the keyring ciphertext of the two-digit
  number. The number is shown on the step-up page (``GET /v1/challenges/{id}``), never sent to
  the device: the user types it there (number matching). At most one push per challenge is
  open: asking again returns the open one (same number, nothing new is sent).

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

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn, Protocol

import httpx
import structlog

from piigate.clock import Clock
from piigate.crypto.keyring import DecryptionError, Keyring
from piigate.crypto.secret import Secret
from piigate.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from piigate.factors import FactorKind, FactorState, FailurePolicy, lockout_state
from piigate.factors.push import (
    CLOCK_SKEW_SECONDS,
    DeviceKey,
    DeviceKeyError,
    DeviceSignatureError,
    canonical_request,
    enroll_qr_svg,
    enroll_uri,
    new_push_number,
    numbers_match,
    parse_public_key,
    timestamp_fresh,
    valid_nonce,
    verify_signature,
)
from piigate.model import Challenge, ChallengeState
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorKind as PolicyFactor
from piigate.policy.model import FactorSettings
from piigate.stepup.engine import new_id
from piigate.stepup.enrollment import FactorEnrollment
from piigate.stepup.factor_ports import AuditRecorder, ChallengeReader, FactorRecord, VerifierStore
from piigate.stepup.verification import (
    VerificationFailure,
    VerificationThrottled,
    Verified,
    Verifier,
)

__all__ = [
    "ENROLL_PURPOSE",
    "PUSH_AMR",
    "PUSH_PURPOSE",
    "DeviceRejected",
    "EnrollmentRejected",
    "PendingPush",
    "PushCeremony",
    "PushDecision",
    "PushEnrollment",
    "PushLimits",
    "PushRelay",
    "SentPush",
    "ShownPush",
    "SignedRequest",
    "WebhookRelay",
]

log = structlog.get_logger("piigate.push")

PUSH_PURPOSE = "push"
ENROLL_PURPOSE = "push_enroll"
PUSH = FactorKind.PUSH.value
# RFC 8176 §2: "mca" (multiple-channel authentication: the answer comes over the device's own
# channel) and "pop" (proof of possession of the device key). The engine maps "mca" to push.
PUSH_AMR = ("mca", "pop")
# States of a push that count against fatigue: sent and not approved.
_UNANSWERED = ("open", "expired", "denied")
# How long one node holds a subject's send lock (if it dies holding it, the lock lapses).
_SEND_LOCK_SECONDS = 10
_MAX_ID = 64


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


class DeviceRejected(Unauthorized):
    """A device request that does not authenticate: vague outside, ``reason`` for the audit."""

    code = "device_unauthorized"
    title = "Device authentication failed"

    def __init__(self, reason: str) -> None:
        super().__init__("the device signature, timestamp or nonce was not accepted")
        self.reason = reason

    def headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": 'PIIGate-Device realm="piigate"'}


class EnrollmentRejected(Unauthorized):
    """An enrollment token that is unknown, already used or expired (one answer for all)."""

    code = "enrollment_rejected"
    title = "Enrollment refused"

    def __init__(self) -> None:
        super().__init__("the enrollment link is invalid, already used or expired")


# -- ports --------------------------------------------------------------------------------------


class CeremonyRecord(Protocol):
    """One ceremony as the store returns it (``store.CeremonyRow``)."""

    @property
    def id(self) -> str: ...
    @property
    def subject_id(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime: ...
    @property
    def challenge_id(self) -> str | None: ...
    @property
    def factor_id(self) -> str | None: ...
    @property
    def secret(self) -> str | None: ...
    @property
    def data(self) -> dict[str, Any]: ...


class PushStore(VerifierStore, Protocol):
    """Factors, challenge attempts and ceremonies: what ``piigate.store.Store`` is."""

    async def open_ceremony(
        self,
        *,
        id: str,
        subject_id: str,
        purpose: str,
        now: datetime,
        expires_at: datetime,
        challenge_id: str | None = None,
        factor_id: str | None = None,
        secret: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> CeremonyRecord: ...

    async def get_ceremony(self, ceremony_id: str) -> CeremonyRecord | None: ...

    async def list_ceremonies(
        self,
        *,
        subject_id: str | None = None,
        challenge_id: str | None = None,
        factor_id: str | None = None,
        purposes: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
        limit: int = 100,
    ) -> Sequence[CeremonyRecord]: ...

    async def count_ceremonies(
        self,
        *,
        since: datetime,
        subject_id: str | None = None,
        factor_id: str | None = None,
        purposes: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
    ) -> int: ...

    async def close_ceremony(
        self,
        ceremony_id: str,
        *,
        new: str,
        now: datetime,
        expected: str = "open",
        data: Mapping[str, Any] | None = None,
    ) -> bool: ...


class LockCounters(Protocol):
    """Fixed-window counters shared by the nodes (``store.counters.Counters``): nonces seen,
    and the per-subject send lock."""

    async def hit(
        self, key: str, *, window_seconds: float, now: datetime, amount: int = 1
    ) -> int: ...

    async def reset(self, key: str) -> None: ...


class PushRelay(Protocol):
    """Wakes a device that a push waits for it (a mobile push service, via a relay). Carries
    ids only; the device fetches the details over its own signed channel."""

    name: str

    async def notify(self, *, device_id: str, push_id: str) -> bool: ...


class WebhookRelay:
    """POSTs ``{"device_id", "push_id"}`` to the relay URL (``push_relay_url``). Best effort:
    devices poll anyway, so a relay failure is logged and the push stays valid."""

    name = "webhook"

    def __init__(self, url: str, *, timeout: float = 3.0) -> None:
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def notify(self, *, device_id: str, push_id: str) -> bool:
        try:
            response = await self._client.post(
                self.url, json={"device_id": device_id, "push_id": push_id}
            )
        except httpx.HTTPError as exc:
            log.warning("push_relay_failed", push_id=push_id, error=type(exc).__name__)
            return False
        if response.is_success:
            return True
        log.warning("push_relay_failed", push_id=push_id, status=response.status_code)
        return False

    async def aclose(self) -> None:
        await self._client.aclose()


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A device request as the edge received it: what the signature covers, and the headers
    that carry it (the device id is empty while enrolling)."""

    device_id: str
    method: str
    target: str  # path[?query], exactly as sent
    timestamp: str
    nonce: str
    signature: str = field(repr=False)
    body: bytes = field(default=b"", repr=False)

    def message(self) -> bytes:
        return canonical_request(
            device_id=self.device_id,
            method=self.method,
            target=self.target,
            timestamp=int(self.timestamp),
            nonce=self.nonce,
            body=self.body,
        )


@dataclass(frozen=True, slots=True)
class PushEnrollment:
    """A pending push factor and its enrollment link, shown once."""

    factor: FactorRecord
    uri: Secret[str]
    expires_at: datetime
    qr_svg: str = field(repr=False)  # encodes the URI, hence the token


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


def _token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def _number_aad(push_id: str) -> bytes:
    """Binds a number's ciphertext to its push: a number copied onto another row fails."""
    return f"push:{push_id}".encode()


def _subject_key(prefix: str, subject_id: str) -> str:
    return f"{prefix}:" + hashlib.sha256(subject_id.encode()).hexdigest()[:32]


# -- the ceremony -------------------------------------------------------------------------------


class PushCeremony:
    """Device enrollment (``POST /v1/factors/push``, ``POST /v1/devices``), device request
    authentication, sending (``POST /v1/challenges/{id}/push``), the pending list and answers
    (``GET /v1/devices/pending``, ``POST /v1/devices/pushes/{id}``)."""

    def __init__(
        self,
        *,
        store: PushStore,
        counters: LockCounters,
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
        self.store = store
        self.counters = counters
        self.challenges = challenges
        self.keyring = keyring
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.verifier = verifier
        self.enrollment = enrollment
        self.public_url = public_url.rstrip("/")
        self.relay = relay
        self.limits = limits or PushLimits()
        self.ids = ids

    # -- enrollment -----------------------------------------------------------------------------
    async def start_enrollment(
        self, subject_id: str, *, label: str = "", grant: str | None = None
    ) -> PushEnrollment:
        """A pending push factor and a one-time link for the device to complete it.

        403 when the policy has no ``push`` factor; ``StepUpRequired`` once another factor is
        active and no fresh grant is presented.
        """
        now = self.clock.now()
        if self._settings() is None:
            raise Forbidden("the policy does not enable push factors")
        await self.enrollment.authorise_addition(subject_id, FactorKind.PUSH, grant, now)
        factor_id = self.ids("fct")
        factor = await self.store.add_factor(
            id=factor_id,
            subject_id=subject_id,
            kind=PUSH,
            now=now,
            label=label,
            state=FactorState.PENDING.value,
            data={},
        )
        ceremony_id = self.ids("cer")
        token = f"{ceremony_id}.{secrets.token_urlsafe(32)}"
        expires_at = now + timedelta(seconds=self.limits.enroll_lifetime)
        await self.store.open_ceremony(
            id=ceremony_id,
            subject_id=subject_id,
            purpose=ENROLL_PURPOSE,
            now=now,
            expires_at=expires_at,
            factor_id=factor_id,
            secret=_token_hash(token),
        )
        await self.audit.record(
            "factor_enrolled",
            subject_id=subject_id,
            data={"factor_id": factor_id, "kind": PUSH, "state": "pending"},
        )
        uri = enroll_uri(self.public_url, token)
        return PushEnrollment(factor, Secret(uri), expires_at, enroll_qr_svg(uri))

    async def complete_enrollment(
        self,
        request: SignedRequest,
        *,
        token: Secret[str],
        public_key: str | Mapping[str, Any],
        alg: str,
        name: str,
    ) -> FactorRecord:
        """Activate the pending factor of ``token`` with the device's public key.

        The request must be signed with the matching private key (device id empty): the device
        proves it holds the key it enrols. 401 for an unknown, used or expired token; 400 for a
        key that cannot be a device key or a signature that does not verify with it.
        """
        now = self.clock.now()
        given = token.reveal()
        ceremony_id = given.partition(".")[0]
        ceremony = (
            await self.store.get_ceremony(ceremony_id) if 0 < len(ceremony_id) <= _MAX_ID else None
        )
        if (
            ceremony is None
            or ceremony.purpose != ENROLL_PURPOSE
            or ceremony.secret is None
            or not hmac.compare_digest(ceremony.secret.encode(), _token_hash(given).encode())
        ):
            raise EnrollmentRejected
        if ceremony.state != "open" or ceremony.expires_at <= now:
            reason = "expired" if ceremony.state in ("open", "expired") else "reused"
            await self._enrollment_refused(ceremony, reason)
        try:
            key = parse_public_key(public_key, alg)
        except DeviceKeyError as exc:
            raise BadRequest(str(exc), field="public_key") from None
        if request.device_id or not self._fresh(request, now):
            raise BadRequest("sign the enrollment with the new key (no device id, current time)")
        try:
            verify_signature(key, request.message(), signature=request.signature)
        except DeviceSignatureError:
            raise BadRequest("the signature does not verify with the public key") from None
        factor = await self.store.get_factor(ceremony.factor_id or "")
        if (
            factor is None
            or factor.subject_id != ceremony.subject_id
            or factor.kind != PUSH
            or factor.state != FactorState.PENDING
        ):
            await self._enrollment_refused(ceremony, "factor_gone")
        if not await self.store.close_ceremony(ceremony.id, new="used", now=now):
            await self._enrollment_refused(ceremony, "reused")
        data = {"public_key": key.encoded(), "alg": key.alg.value, "device_name": name}
        if not await self.store.replace_factor_data(
            factor.id, expected_data=factor.data, new_data=data
        ) or not await self.store.activate_factor(factor.id, now=now):
            raise Conflict("the factor is not pending")
        await self.audit.record(
            "factor_confirmed",
            subject_id=factor.subject_id,
            data={"factor_id": factor.id, "kind": PUSH, "alg": key.alg.value},
        )
        confirmed = await self.store.get_factor(factor.id)
        if confirmed is None:
            raise NotFound("no such factor")
        return confirmed

    async def _enrollment_refused(self, ceremony: CeremonyRecord, reason: str) -> NoReturn:
        await self.audit.record(
            "push_enrollment_refused",
            subject_id=ceremony.subject_id,
            data={"factor_id": ceremony.factor_id, "ceremony_id": ceremony.id, "reason": reason},
        )
        raise EnrollmentRejected

    # -- device authentication ------------------------------------------------------------------
    async def authenticate(self, request: SignedRequest) -> FactorRecord:
        """The active push factor that signed ``request``; raises :class:`DeviceRejected`.

        The timestamp must be within ±60 s of the server's clock and the nonce unseen among
        this device's requests of the last 120 s (shared counters, so across nodes): a captured
        request cannot be replayed, not even to read the pending pushes again.
        """
        now = self.clock.now()
        device_id = request.device_id
        factor = await self.store.get_factor(device_id) if 0 < len(device_id) <= _MAX_ID else None
        if factor is None or factor.kind != PUSH or factor.state != FactorState.ACTIVE:
            raise DeviceRejected("unknown_device")
        if not self._fresh(request, now):
            await self._device_refused(factor, "stale_or_malformed")
        try:
            key = DeviceKey.decoded(str(factor.data.get("alg")), str(factor.data.get("public_key")))
        except DeviceKeyError:
            log.warning("push_device_key_unreadable", factor_id=factor.id)
            await self._device_refused(factor, "key_unreadable")
        try:
            verify_signature(key, request.message(), signature=request.signature)
        except DeviceSignatureError:
            await self._device_refused(factor, "bad_signature")
        seen_key = f"{device_id}:{request.nonce}".encode()
        nonce_key = "push:nonce:" + hashlib.sha256(seen_key).hexdigest()
        seen = await self.counters.hit(nonce_key, window_seconds=2 * CLOCK_SKEW_SECONDS, now=now)
        if seen > 1:
            await self._device_refused(factor, "replayed_nonce")
        return factor

    @staticmethod
    def _fresh(request: SignedRequest, now: datetime) -> bool:
        return valid_nonce(request.nonce) and timestamp_fresh(request.timestamp, now=now)

    async def _device_refused(self, factor: FactorRecord, reason: str) -> NoReturn:
        await self.audit.record(
            "device_rejected",
            subject_id=factor.subject_id,
            data={"factor_id": factor.id, "reason": reason},
        )
        raise DeviceRejected(reason)

    # -- sending --------------------------------------------------------------------------------
    async def send(
        self,
        challenge_id: str,
        *,
        caller_subject: str | None,
        caller_key: str | None,
        factor_id: str | None = None,
    ) -> SentPush:
        """Push the challenge to its subject's active push devices (or the one named), or return
        the push already open for it.

        404 unless the caller is the challenge's subject or the app that asked; 409 when the
        challenge is no longer pending, does not allow push, or there is no usable device; 429
        when too many pushes went unanswered or were denied (or a send is already under way).
        """
        now = self.clock.now()
        challenge = await self.verifier.load(challenge_id, caller_subject, caller_key)
        settings = self._settings()
        if challenge.state is not ChallengeState.PENDING or challenge.expires_at <= now:
            raise Conflict("the challenge is no longer pending")
        if settings is None or PUSH not in challenge.requirement.methods:
            raise Conflict("this challenge cannot be answered with a push")
        lock = _subject_key("push:send", challenge.subject_id)
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
        devices = await self._devices(challenge.subject_id, factor_id, settings)
        await self._check_fatigue(challenge, now)
        push_id = self.ids("psh")
        number = new_push_number()
        left = max(1, int((challenge.expires_at - now).total_seconds()))
        lifetime = min(settings.code_lifetime, self.limits.max_lifetime, left)
        expires_at = now + timedelta(seconds=max(1, lifetime))
        device_ids = tuple(d.id for d in devices)
        sealed = self.keyring.encrypt(str(number).encode("ascii"), aad=_number_aad(push_id))
        await self.store.open_ceremony(
            id=push_id,
            subject_id=challenge.subject_id,
            purpose=PUSH_PURPOSE,
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

    async def _devices(
        self, subject_id: str, factor_id: str | None, settings: FactorSettings
    ) -> list[FactorRecord]:
        active = await self.store.list_factors(
            subject_id, kinds=[PUSH], states=[FactorState.ACTIVE.value]
        )
        if factor_id is not None:
            active = [f for f in active if f.id == factor_id]
        if not active:
            raise Conflict("no active push device to send to")
        usable = [f for f in active if f.failures < settings.max_failures]
        if not usable:
            raise Conflict("the push device is locked after too many failures")
        return sorted(usable, key=lambda f: (f.confirmed_at or f.created_at, f.id), reverse=True)

    async def _check_fatigue(self, challenge: Challenge, now: datetime) -> None:
        limits = self.limits
        ignored = await self.store.count_ceremonies(
            since=now - timedelta(seconds=limits.fatigue_window),
            subject_id=challenge.subject_id,
            purposes=[PUSH_PURPOSE],
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
            challenge_id=challenge_id, purposes=[PUSH_PURPOSE], states=["open"]
        )
        live = None
        for push in found:
            if push.expires_at <= now:
                await self.store.close_ceremony(push.id, new="expired", now=now)
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
            subject_id=device.subject_id, purposes=[PUSH_PURPOSE], states=["open"]
        )
        waiting: list[PendingPush] = []
        for push in found:
            if push.expires_at <= now:
                await self.store.close_ceremony(push.id, new="expired", now=now)
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
                await self.store.close_ceremony(push.id, new="used", now=now)
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
        push = await self.store.get_ceremony(push_id) if 0 < len(push_id) <= _MAX_ID else None
        if (
            push is None
            or push.purpose != PUSH_PURPOSE
            or push.subject_id != device.subject_id
            or device.id not in push.data.get("devices", [])
        ):
            raise NotFound("no such push")
        challenge = await self.challenges.get(push.challenge_id or "")
        if challenge is None:
            raise NotFound("no such push")
        if push.state != "open":
            await self.verifier.reject(
                challenge, PUSH, VerificationFailure.REPLAYED, factor_id=device.id
            )
        if push.expires_at <= now:
            await self.store.close_ceremony(push.id, new="expired", now=now)
            await self.verifier.reject(
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
        if not await self.store.close_ceremony(push.id, new="denied", now=now, data=answered):
            await self.verifier.reject(
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
        failures = FailurePolicy(
            max_failures=settings.max_failures,
            base_delay=verifier.base_delay,
            max_delay=verifier.max_delay,
        )
        state = lockout_state(device.failures, device.last_failure_at, now=now, policy=failures)
        if state.permanently_locked:
            await verifier.reject(challenge, PUSH, VerificationFailure.LOCKED, factor_id=device.id)
        if state.locked:
            await self.audit.record(
                "verification_failed",
                subject_id=challenge.subject_id,
                data={
                    "challenge_id": challenge.id,
                    "method": PUSH,
                    "reason": VerificationFailure.THROTTLED.value,
                    "factor_id": device.id,
                },
            )
            raise VerificationThrottled(state.retry_after)
        # As in Verifier.verify: count the attempt and charge the factor *before* comparing.
        attempts = await self.store.record_attempt(challenge.id, now=now)
        if attempts > challenge.max_attempts:
            await self._give_up(challenge, push, now)
            await verifier.reject(
                challenge,
                PUSH,
                VerificationFailure.TOO_MANY_ATTEMPTS,
                factor_id=device.id,
                attempts=attempts,
            )
        charged = await self.store.record_factor_failure(
            device.id, now=now, limit=settings.max_failures
        )
        if charged > settings.max_failures:
            await verifier.reject(
                challenge, PUSH, VerificationFailure.LOCKED, factor_id=device.id, attempts=attempts
            )
        if not numbers_match(self._number(push), number):
            if attempts >= challenge.max_attempts:
                await self._give_up(challenge, push, now)
            await verifier.reject(
                challenge,
                PUSH,
                VerificationFailure.WRONG_NUMBER,
                factor_id=device.id,
                attempts=attempts,
            )
        if not await self.store.close_ceremony(push.id, new="approved", now=now, data=answered):
            await verifier.reject(
                challenge, PUSH, VerificationFailure.REPLAYED, factor_id=device.id
            )
        await self.store.reset_factor_failures(device.id)
        if not await verifier.approve(challenge, PUSH, Verified(device, PUSH_AMR)):
            await verifier.reject(
                challenge, PUSH, VerificationFailure.NOT_PENDING, factor_id=device.id
            )
        return ChallengeState.APPROVED

    async def _give_up(self, challenge: Challenge, push: CeremonyRecord, now: datetime) -> None:
        """Out of attempts: the challenge is denied and its push closed."""
        await self.store.set_challenge_state(
            challenge.id, expected=ChallengeState.PENDING.value, new=ChallengeState.DENIED.value
        )
        await self.store.close_ceremony(push.id, new="expired", now=now)

    def _settings(self) -> FactorSettings | None:
        compiled = self.policy.current
        if compiled is None:
            raise ServiceUnavailable("no policy is loaded")
        return compiled.policy.factors.get(PolicyFactor.PUSH)
