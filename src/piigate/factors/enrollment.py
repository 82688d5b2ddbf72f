"""Enrollment: a subject's own factors — TOTP, recovery codes — added, listed and removed
(CONTRACT §4.4).

Secrets leave this module exactly once, in the enrollment response, and are kept only as what
verification needs: a TOTP secret encrypted under the keyring's data key (associated data
:func:`~piigate.stepup.verification.factor_aad`), recovery codes as argon2id hashes.

Changing factors is itself a step-up (CONTRACT §4.4): once a subject has an active factor,
adding another, replacing the recovery codes or removing an active factor needs a grant of the
subject's own of at least the factor's level, proven within
:data:`~piigate.factors.fresh.FRESH_GRANT_SECONDS` (``factors.fresh``). Otherwise a stolen
session could enrol the thief's own authenticator and step up with it. The first factor is
enrolled with the session alone: there is nothing stronger to ask for yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from piigate.clock import Clock
from piigate.crypto.keyring import Keyring
from piigate.crypto.secret import Secret
from piigate.errors import Conflict, NotFound, ServiceUnavailable
from piigate.factors import FactorState
from piigate.factors.fresh import FreshGrants, Purpose
from piigate.factors.ports import FactorRecord, FactorRepo, factor_aad, totp_parameters
from piigate.factors.recovery.protocol import (
    generate_recovery_codes,
    hash_recovery_code,
    recovery_code_tag,
)
from piigate.factors.totp.ceremony import decrypt_factor_secret
from piigate.factors.totp.protocol import (
    TotpRejected,
    new_totp_secret,
    provisioning_uri,
    qr_svg,
    verify_totp,
)
from piigate.ids import MAX_ID_LENGTH, new_id
from piigate.model import Challenge, Grant, Method
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.holder import PolicyHolder
from piigate.ports import AuditRecorder
from piigate.stepup.verdicts import FactorUnreadable, VerificationFailure, VerificationRejected

__all__ = [
    "RECOVERY_CODE_COUNT",
    "FactorEnrollment",
    "RecoveryCodes",
    "TotpEnrollment",
]

RECOVERY_CODE_COUNT = 10
# RFC 6238 defaults: what every authenticator app understands.
_DIGITS, _PERIOD, _ALGORITHM = 6, 30, "sha1"
_TOTP_DATA = {"digits": _DIGITS, "period": _PERIOD, "algorithm": _ALGORITHM}
# Failures a pending factor tolerates when the policy does not declare its kind (psd2's cap).
_DEFAULT_CAP = 5


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    """A pending TOTP factor and what the user's authenticator needs, shown once."""

    factor: FactorRecord
    secret: Secret[str]
    uri: Secret[str]
    qr_svg: str = field(repr=False)  # encodes the URI, hence the secret


@dataclass(frozen=True, slots=True)
class RecoveryCodes:
    """A new set of recovery codes, shown once; the store keeps only their hashes."""

    factor: FactorRecord
    codes: tuple[Secret[str], ...]


class FactorEnrollment:
    def __init__(
        self,
        *,
        store: FactorRepo,
        keyring: Keyring,
        policy: PolicyHolder,
        audit: AuditRecorder,
        clock: Clock,
        fresh: FreshGrants,
        display_name: str = "piigate",
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.fresh = fresh  # the subject's own recent step-up a change asks for
        self.display_name = display_name  # the issuer shown by authenticator apps
        self.ids = ids
        self._hashing = asyncio.Semaphore(1)

    async def list(self, subject_id: str) -> Sequence[FactorRecord]:
        return await self.store.list_factors(subject_id)

    async def start_totp(
        self, subject_id: str, *, label: str = "", grant: str | None = None
    ) -> TotpEnrollment:
        """A new pending TOTP factor; it becomes active with :meth:`confirm_totp`."""
        now = self.clock.now()
        await self.authorise_addition(subject_id, Method.TOTP, grant, now)
        factor_id = self.ids("fct")
        secret = new_totp_secret()
        sealed = self.keyring.encrypt(secret.reveal().encode("ascii"), aad=factor_aad(factor_id))
        factor = await self.store.add_factor(
            id=factor_id,
            subject_id=subject_id,
            kind=Method.TOTP.value,
            now=now,
            label=label,
            secret=sealed,
            state=FactorState.PENDING.value,
            data=_TOTP_DATA,
        )
        uri = provisioning_uri(
            secret,
            account=subject_id,
            issuer=self.display_name,
            digits=_DIGITS,
            period=_PERIOD,
            algorithm=_ALGORITHM,
        )
        await self.audit.record(
            "factor_enrolled",
            subject_id=subject_id,
            data={"factor_id": factor_id, "kind": Method.TOTP.value, "state": FactorState.PENDING},
        )
        return TotpEnrollment(factor, secret, Secret(uri), qr_svg(uri))

    async def confirm_totp(
        self, subject_id: str, factor_id: str, code: Secret[str]
    ) -> FactorRecord:
        """Activate a pending TOTP factor with its first code; that code's step is then spent.

        Failures are counted on the factor like any verification, so a pending factor cannot be
        confirmed by guessing either.
        """
        now = self.clock.now()
        factor = await self._own(subject_id, factor_id)
        if (
            factor.kind != Method.TOTP
            or factor.state != FactorState.PENDING
            or factor.secret is None
        ):
            raise Conflict("the factor is not a pending TOTP factor")
        # Opened before anything is counted: a secret the keyring cannot open is a 503.
        secret = await decrypt_factor_secret(self.keyring, factor)
        if secret is None:
            raise FactorUnreadable([factor_id])
        await self.charge_confirmation(subject_id, factor_id, Method.TOTP, now)
        try:
            match = verify_totp(
                secret, code.reveal(), at=now, last_step=None, **totp_parameters(factor.data)
            )
        except TotpRejected as rejected:
            reason = VerificationFailure(rejected.reason.value)
            await self.refuse_confirmation(subject_id, factor_id, reason)
        if not await self.store.advance_totp_step(factor_id, expected=None, new=match.step):
            await self.refuse_confirmation(subject_id, factor_id, VerificationFailure.REPLAYED)
        return await self.activate(subject_id, factor_id, Method.TOTP, now)

    async def new_recovery_codes(
        self, subject_id: str, *, grant: str | None = None
    ) -> RecoveryCodes:
        """Ten new codes; the subject's earlier recovery codes stop working."""
        now = self.clock.now()
        await self.authorise_addition(subject_id, Method.RECOVERY, grant, now)
        # The set being replaced is read before the new one exists, so two parallel requests
        # never delete each other's codes (both sets then stay valid).
        previous = await self.store.list_factors(subject_id, kinds=[Method.RECOVERY.value])
        codes = generate_recovery_codes(RECOVERY_CODE_COUNT)
        async with self._hashing:
            hashes = await asyncio.to_thread(lambda: [hash_recovery_code(c) for c in codes])
        factor_id = self.ids("fct")
        factor = await self.store.add_factor(
            id=factor_id,
            subject_id=subject_id,
            kind=Method.RECOVERY.value,
            now=now,
            label="recovery codes",
            state=FactorState.ACTIVE.value,
            # Each code's tag beside its hash: a verification runs argon2 on one code, not ten.
            data={"hashes": hashes, "tags": [recovery_code_tag(c) for c in codes]},
        )
        for old in previous:
            await self.store.delete_factor(old.id)
        await self.audit.record(
            "recovery_codes_generated",
            subject_id=subject_id,
            data={
                "factor_id": factor_id,
                "count": len(codes),
                "replaced": [old.id for old in previous],
            },
        )
        return RecoveryCodes(factor, tuple(codes))

    async def remove(self, subject_id: str, factor_id: str, *, grant: str | None = None) -> None:
        """Delete a factor. A pending one goes freely; an active one needs a fresh grant of its
        level, and the last active factor other than recovery codes cannot go (409)."""
        now = self.clock.now()
        factor = await self._own(subject_id, factor_id)
        proof: Grant | None = None
        if factor.state == FactorState.ACTIVE:
            proof = await self.fresh.require(
                grant, subject_id=subject_id, level=self._level(factor.kind), now=now
            )
            if factor.kind != Method.RECOVERY:
                active = await self.store.list_factors(
                    subject_id, states=[FactorState.ACTIVE.value]
                )
                others = [f for f in active if f.kind != Method.RECOVERY and f.id != factor_id]
                if not others:
                    raise Conflict("the last active factor cannot be removed; enrol another first")
        if not await self.store.delete_factor(factor_id):
            raise NotFound("no such factor")
        await self.audit.record(
            "factor_removed",
            subject_id=subject_id,
            data={
                "factor_id": factor_id,
                "kind": factor.kind,
                "state": factor.state,
                "grant_id": proof.id if proof else None,
            },
        )

    async def step_up(self, subject_id: str) -> Challenge:
        """The subject's own challenge for changing factors (``POST /v1/challenges``), at the
        level every change accepts: the strongest the subject's active factors prove. 409 with
        no active factor (the first one needs no step-up) or no factor to prove that level."""
        active = await self.store.list_factors(subject_id, states=[FactorState.ACTIVE.value])
        if not active:
            raise Conflict("no active factor: the first one is enrolled with the session alone")
        level = self._strongest(active)
        challenge = await self.fresh.open(subject_id, level=level, purpose=Purpose.MANAGE_FACTORS)
        if challenge is None:
            raise Conflict(f"no factor of the policy can prove {level}")
        return challenge

    # -- helpers --------------------------------------------------------------------------------
    async def authorise_addition(
        self, subject_id: str, kind: Method, grant: str | None, now: datetime
    ) -> None:
        """Allow adding a factor of ``kind``: freely while the subject has no active factor,
        otherwise only with a fresh grant (``FreshGrants.require``) of the kind's level — or
        of the strongest level the subject's active factors can prove, when that is lower: a
        user with only TOTP (aal2) can add a security key (aal3) by proving TOTP, while a
        stolen session still has to prove the user's strongest factor."""
        active = await self.store.list_factors(subject_id, states=[FactorState.ACTIVE.value])
        if not active:
            return
        ranks = self._compiled().ranks
        level = min(self._level(kind), self._strongest(active), key=lambda name: ranks[name])
        await self.fresh.require(grant, subject_id=subject_id, level=level, now=now)

    def _strongest(self, active: Sequence[FactorRecord]) -> str:
        """The strongest level the subject's active factors prove: no change asks for more."""
        ranks = self._compiled().ranks
        return max((self._level(f.kind) for f in active), key=lambda name: ranks[name])

    async def _own(self, subject_id: str, factor_id: str) -> FactorRecord:
        factor = await self.store.get_factor(factor_id) if len(factor_id) <= MAX_ID_LENGTH else None
        if factor is None or factor.subject_id != subject_id:
            raise NotFound("no such factor")
        return factor

    def _compiled(self) -> CompiledPolicy:
        compiled = self.policy.current
        if compiled is None:
            raise ServiceUnavailable("no policy is loaded")
        return compiled

    def _level(self, kind: str) -> str:
        """The level a factor kind proves; the strongest level when the policy omits the kind
        (changing an authenticator the policy no longer knows still needs the most)."""
        compiled = self._compiled()
        try:
            settings = compiled.policy.factors.get(Method(kind))
        except ValueError:
            settings = None
        if settings is not None:
            return settings.level
        return max(compiled.ranks, key=lambda name: compiled.ranks[name])

    # -- confirming a pending factor (TOTP here, SMS in factors.sms) ------------------------------
    async def charge_confirmation(
        self, subject_id: str, factor_id: str, kind: Method, now: datetime
    ) -> None:
        """Count a failure on a pending factor *before* its first code is checked, never past
        the policy's cap (as ``Refusals.charge`` does), so a pending factor cannot be confirmed
        by guessing either; refused (``locked``) once the cap is reached."""
        settings = self._compiled().policy.factors.get(kind)
        cap = settings.max_failures if settings is not None else _DEFAULT_CAP
        if await self.store.record_factor_failure(factor_id, now=now, limit=cap) > cap:
            await self.refuse_confirmation(subject_id, factor_id, VerificationFailure.LOCKED)

    async def activate(
        self, subject_id: str, factor_id: str, kind: Method, now: datetime
    ) -> FactorRecord:
        """The pending factor whose first code held becomes active: its failures are cleared
        and ``factor_confirmed`` is audited. 409 if it is no longer pending."""
        if not await self.store.activate_factor(factor_id, now=now):
            raise Conflict("the factor is not pending")
        await self.store.reset_factor_failures(factor_id)
        await self.audit.record(
            "factor_confirmed",
            subject_id=subject_id,
            data={"factor_id": factor_id, "kind": kind.value},
        )
        confirmed = await self.store.get_factor(factor_id)
        if confirmed is None:
            raise NotFound("no such factor")
        return confirmed

    async def refuse_confirmation(
        self, subject_id: str, factor_id: str, reason: VerificationFailure
    ) -> NoReturn:
        """Audit why a pending factor's code was refused; the client gets the vague 401."""
        await self.audit.record(
            "factor_confirmation_failed",
            subject_id=subject_id,
            data={"factor_id": factor_id, "reason": reason.value},
        )
        raise VerificationRejected(reason)
