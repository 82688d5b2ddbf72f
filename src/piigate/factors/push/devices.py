"""The device side of the push factor: enrolling a device and authenticating its requests.

The wire protocol (key types, the canonical string every device request is signed over) is
:mod:`piigate.factors.push.protocol`. Enrollment is a ``push_enroll`` ceremony: a one-time token
(``<ceremony id>.<random>``), stored only as its SHA-256, valid
:attr:`~piigate.factors.push.ceremony.PushLimits.enroll_lifetime` seconds, spent by
compare-and-set. It
belongs to a *pending* push factor; the device completes it with its public key and a signature
made with the private one (proof of possession), and the factor becomes active. From then on
every device request is signed, fresh (timestamp) and unique (nonce, in the shared counters).

The pushes themselves — sending, the pending list, answers, fatigue — are
:class:`~piigate.factors.push.ceremony.PushCeremony`, which holds a :class:`PushDevices`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn, Protocol

import structlog

from piigate.clock import Clock
from piigate.crypto.secret import Secret
from piigate.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from piigate.factors import CeremonyPurpose, CeremonyState, FactorState
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.ports import CeremonyRecord, CeremonyRepo, FactorRecord, VerifierStore
from piigate.factors.push.protocol import (
    CLOCK_SKEW_SECONDS,
    DeviceKey,
    DeviceKeyError,
    DeviceSignatureError,
    canonical_request,
    enroll_qr_svg,
    enroll_uri,
    parse_public_key,
    timestamp_fresh,
    valid_nonce,
    verify_signature,
)
from piigate.factors.steps import factor_settings
from piigate.ids import MAX_ID_LENGTH, new_id
from piigate.model import Method
from piigate.policy.holder import PolicyHolder
from piigate.policy.model import FactorSettings
from piigate.ports import AuditRecorder, RateCounters

__all__ = [
    "DeviceRejected",
    "EnrollmentRejected",
    "PushDevices",
    "PushEnrollment",
    "PushStore",
    "SignedRequest",
]

log = structlog.get_logger("piigate.push")

PUSH = Method.PUSH.value


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


class PushStore(VerifierStore, CeremonyRepo, Protocol):
    """Factors, challenge attempts and ceremonies: what ``piigate.store.Store`` is."""


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


def _token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


# -- the devices --------------------------------------------------------------------------------


class PushDevices:
    """Device enrollment (``POST /v1/factors/push``, ``POST /v1/devices``) and device request
    authentication (``PushCeremony.devices``)."""

    def __init__(
        self,
        *,
        store: PushStore,
        counters: RateCounters,
        policy: PolicyHolder,
        audit: AuditRecorder,
        clock: Clock,
        enrollment: FactorEnrollment,
        public_url: str,
        enroll_lifetime: int,
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self.store = store
        self.counters = counters
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.enrollment = enrollment
        self.public_url = public_url.rstrip("/")
        self.enroll_lifetime = enroll_lifetime
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
        await self.enrollment.authorise_addition(subject_id, Method.PUSH, grant, now)
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
        expires_at = now + timedelta(seconds=self.enroll_lifetime)
        await self.store.open_ceremony(
            id=ceremony_id,
            subject_id=subject_id,
            purpose=CeremonyPurpose.PUSH_ENROLL,
            now=now,
            expires_at=expires_at,
            factor_id=factor_id,
            secret=_token_hash(token),
        )
        await self.audit.record(
            "factor_enrolled",
            subject_id=subject_id,
            data={"factor_id": factor_id, "kind": PUSH, "state": FactorState.PENDING},
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
        ceremony = await self._open_enrollment(token.reveal(), now)
        key = self._enrolling_key(request, public_key, alg, now)
        factor = await self._pending_factor(ceremony)
        if not await self.store.close_ceremony(ceremony.id, new=CeremonyState.USED, now=now):
            await self._enrollment_refused(ceremony, "reused")
        data = {"public_key": key.encoded(), "alg": key.alg.value, "device_name": name}
        # The factor's label is what the user sees it as: the one given when the link was
        # made, or else the name the device gives itself.
        label = factor.label or name
        if not await self.store.replace_factor_data(
            factor.id, expected_data=factor.data, new_data=data
        ) or not await self.store.activate_factor(factor.id, now=now, label=label):
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

    async def _open_enrollment(self, given: str, now: datetime) -> CeremonyRecord:
        """The open ``push_enroll`` ceremony of the token ``<ceremony id>.<random>``; 401 for
        an unknown token, and an audited 401 for a used or expired one."""
        ceremony_id = given.partition(".")[0]
        ceremony = (
            await self.store.get_ceremony(ceremony_id)
            if 0 < len(ceremony_id) <= MAX_ID_LENGTH
            else None
        )
        if (
            ceremony is None
            or ceremony.purpose != CeremonyPurpose.PUSH_ENROLL
            or ceremony.secret is None
            or not hmac.compare_digest(ceremony.secret.encode(), _token_hash(given).encode())
        ):
            raise EnrollmentRejected
        if ceremony.state != CeremonyState.OPEN or ceremony.expires_at <= now:
            unanswered = ceremony.state in (CeremonyState.OPEN, CeremonyState.EXPIRED)
            await self._enrollment_refused(ceremony, "expired" if unanswered else "reused")
        return ceremony

    def _enrolling_key(
        self, request: SignedRequest, public_key: str | Mapping[str, Any], alg: str, now: datetime
    ) -> DeviceKey:
        """The device key being enrolled, once the request proves possession of its private
        half (signed with it, no device id yet, a current timestamp); 400 otherwise."""
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
        return key

    async def _pending_factor(self, ceremony: CeremonyRecord) -> FactorRecord:
        """The pending push factor the enrolment was opened for (audited 401 when gone)."""
        factor = await self.store.get_factor(ceremony.factor_id or "")
        if (
            factor is None
            or factor.subject_id != ceremony.subject_id
            or factor.kind != PUSH
            or factor.state != FactorState.PENDING
        ):
            await self._enrollment_refused(ceremony, "factor_gone")
        return factor

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
        factor = (
            await self.store.get_factor(device_id) if 0 < len(device_id) <= MAX_ID_LENGTH else None
        )
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

    def _settings(self) -> FactorSettings | None:
        return factor_settings(self.policy, Method.PUSH)
