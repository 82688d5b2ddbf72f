"""The vocabulary of verifying a challenge: what a client presents, why a proof is refused,
and the :class:`FactorCheck` each factor kind implements (``factors.totp``,
``factors.webauthn``, ``factors.sms``, ...). :class:`~piigate.stepup.verification.Verifier` runs the
pipeline around them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from piigate.crypto.secret import Secret
from piigate.errors import FactorRejected, ServiceUnavailable, TooManyRequests
from piigate.factors.ports import FactorRecord, Spend
from piigate.model import Approval, Challenge, Grant

__all__ = [
    "CheckFailed",
    "FactorCheck",
    "FactorUnreadable",
    "IssuedGrant",
    "Proof",
    "VerificationFailure",
    "VerificationRejected",
    "VerificationThrottled",
    "Verified",
    "most_telling",
    "verified_data",
]

# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proof:
    """What a client presents to a challenge: the factor kind and its answer — a code (TOTP,
    SMS, recovery) or a WebAuthn ``PublicKeyCredential`` JSON."""

    method: str
    code: Secret[str] | None = None
    # Not a secret (a signature over a single-use challenge), but kept out of reprs all the same.
    credential: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class IssuedGrant:
    """The signed grant token and the grant it carries."""

    token: str = field(repr=False)
    grant: Grant


class VerificationFailure(StrEnum):
    """Why a verification was refused: for the audit log, never for the client."""

    WRONG_CODE = "wrong_code"
    MALFORMED = "malformed"
    REPLAYED = "replayed"
    EXPIRED = "expired"
    NOT_PENDING = "not_pending"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NO_FACTOR = "no_factor"
    LOCKED = "locked"
    THROTTLED = "throttled"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    FACTOR_UNREADABLE = "factor_unreadable"
    # WebAuthn: the signature, origin, RP id, user verification or counter did not hold.
    BAD_ASSERTION = "bad_assertion"
    NO_USER_VERIFICATION = "no_user_verification"
    SIGN_COUNT_REGRESSED = "sign_count_regressed"
    # Push and approval by another person.
    WRONG_NUMBER = "wrong_number"
    DENIED = "denied"
    SELF_APPROVAL = "self_approval"
    NOT_APPROVER = "not_approver"


class VerificationRejected(FactorRejected):
    """Renders as the vague ``factor_rejected`` 401; ``reason`` is exact, for the audit.
    ``out_of_attempts``: the challenge was denied with this refusal, its attempts used up."""

    def __init__(self, reason: VerificationFailure, *, out_of_attempts: bool = False) -> None:
        super().__init__()
        self.reason = reason
        self.out_of_attempts = out_of_attempts

    def __repr__(self) -> str:
        return f"VerificationRejected({self.reason.value!r})"


class VerificationThrottled(TooManyRequests):
    """Every usable factor is in its failure back-off: 429 with ``Retry-After``, code unchecked."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after, "too many failed verifications; retry later")
        self.reason = VerificationFailure.THROTTLED


class FactorUnreadable(ServiceUnavailable):
    """The proof could not be checked against ``factor_ids``: the keyring cannot open what
    it needs (a factor's secret, a code sent). A server fault (503), not a wrong proof: the
    ``Verifier`` takes back the failure it charged those factors, and the attempt when no
    factor could be checked at all."""

    code = "factor_unreadable"
    title = "Factor unreadable"

    def __init__(self, factor_ids: Sequence[str]) -> None:
        super().__init__("the factor cannot be checked right now; nothing was counted against it")
        self.factor_ids = tuple(factor_ids)


class CheckFailed(Exception):
    """A factor check failed: becomes an audit event with ``reason`` and a vague 401."""

    def __init__(self, reason: VerificationFailure, factor_id: str | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.factor_id = factor_id


@dataclass(frozen=True, slots=True)
class Verified:
    """A factor that proved itself: which one, its RFC 8176 ``amr`` values, audit detail
    (never a secret: a TOTP drift, the recovery codes left, a WebAuthn sign count), and what
    the success spends -- saved by the ``Verifier`` in the same transaction as the approval."""

    factor: FactorRecord
    amr: tuple[str, ...]
    detail: Mapping[str, object] = field(default_factory=dict)
    spends: tuple[Spend, ...] = ()


class FactorCheck(ABC):
    """How one kind of factor checks a proof (``factors.totp.ceremony``, ``factors.sms.codes``).

    ``check`` gets the subject's active factors of its kind, each already charged one failure;
    it returns the factor that matched, with what the success spends (``Verified.spends``), or
    raises :class:`CheckFailed`. It reads what it needs but writes nothing on success: the
    ``Verifier`` saves the spends, clears the failures and approves the challenge in one
    transaction. ``refusal`` names the failure when a spend loses its compare-and-set;
    ``succeeded`` runs once the proof is saved; ``out_of_attempts`` once the challenge was
    denied for running out of attempts.
    """

    amr: tuple[str, ...] = ()

    @abstractmethod
    async def check(
        self,
        challenge: Challenge,
        proof: Proof,
        factors: Sequence[FactorRecord],
        now: datetime,
    ) -> Verified: ...

    def refusal(self, spend: Spend) -> VerificationFailure:
        """Why a proof whose ``spend`` lost its compare-and-set is refused: spent first by a
        parallel request with the same proof."""
        return VerificationFailure.REPLAYED

    async def succeeded(self, challenge: Challenge, verified: Verified) -> None:
        return None

    async def out_of_attempts(self, challenge: Challenge, now: datetime) -> None:
        """Close what ends with the challenge (a push, ``factors.push``); nothing by default."""
        return None


# When several factors were tried, the audit names the most telling reason.
_REASON_ORDER = (
    VerificationFailure.REPLAYED,
    VerificationFailure.SIGN_COUNT_REGRESSED,
    VerificationFailure.NO_USER_VERIFICATION,
    VerificationFailure.BAD_ASSERTION,
    VerificationFailure.WRONG_CODE,
    VerificationFailure.MALFORMED,
    VerificationFailure.FACTOR_UNREADABLE,
)


def most_telling(
    reasons: Sequence[tuple[VerificationFailure, str]],
) -> tuple[VerificationFailure, str | None]:
    """Of the reasons several factors failed for, the one the audit should name."""
    for wanted in _REASON_ORDER:
        for reason, factor_id in reasons:
            if reason is wanted:
                return reason, factor_id
    if reasons:
        return reasons[0]
    return VerificationFailure.WRONG_CODE, None


# What of a check's detail goes into ``challenge_verified`` (numbers and flags only).
_AUDITED_DETAIL = frozenset({"drift", "remaining", "sign_count", "user_verified", "number"})


def verified_data(
    challenge: Challenge,
    approval: Approval,
    detail: Mapping[str, object],
    grant: Grant | None = None,
) -> dict[str, object]:
    """The data of a ``challenge_verified`` event: how the challenge was approved, the numbers
    and flags of the check's ``detail`` (never a secret), and the grant when one was issued."""
    data: dict[str, object] = {
        "challenge_id": challenge.id,
        "decision_id": challenge.decision_id,
        "method": approval.method.value,
        "factor_id": approval.factor_id,
        "level": approval.level,
        "amr": list(approval.amr),
        "bound": challenge.requirement.binding is not None,
        **{k: v for k, v in detail.items() if k in _AUDITED_DETAIL},
    }
    if approval.approver is not None:
        data["approver"] = approval.approver
    if grant is not None:
        data["grant_id"] = grant.id
        data["expires_at"] = int(grant.expires_at.timestamp())
    return data
