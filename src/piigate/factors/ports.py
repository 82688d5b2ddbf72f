"""The ports of factor enrollment and verification: narrow protocols that the SQL store
(``piigate.store.Store``) satisfies as it is, plus the one rule both sides must share, the
associated data under which a factor's secret is encrypted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeAlias

from piigate.factors import CeremonyState, FactorState
from piigate.model import Challenge

__all__ = [
    "AdvanceTotpStep",
    "AttemptCharge",
    "AttemptLedger",
    "CeremonyRecord",
    "CeremonyRepo",
    "ChallengeReader",
    "FactorRecord",
    "FactorRepo",
    "ReviseFactorData",
    "Settlement",
    "Spend",
    "SpendCeremony",
    "VerifierStore",
    "factor_aad",
    "totp_parameters",
]


def factor_aad(factor_id: str) -> bytes:
    """The AES-GCM associated data of a factor's secret: binds the ciphertext to its row, so a
    secret copied onto another factor does not decrypt (used by enrollment and verification)."""
    return f"factor:{factor_id}".encode()


def totp_parameters(data: Mapping[str, Any]) -> dict[str, Any]:
    """``digits``/``period``/``algorithm`` as enrolled (RFC 6238 defaults when absent)."""
    return {
        "digits": int(data.get("digits", 6)),
        "period": int(data.get("period", 30)),
        "algorithm": str(data.get("algorithm", "sha1")),
    }


class FactorRecord(Protocol):
    """One enrolled factor as the store returns it (``store.FactorRow``)."""

    @property
    def id(self) -> str: ...
    @property
    def subject_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def confirmed_at(self) -> datetime | None: ...
    @property
    def secret(self) -> str | None: ...
    @property
    def last_step(self) -> int | None: ...
    @property
    def failures(self) -> int: ...
    @property
    def last_failure_at(self) -> datetime | None: ...
    @property
    def data(self) -> dict[str, Any]: ...


class FactorRepo(Protocol):
    """The factor rows and their atomic updates (``store.FactorStore``)."""

    async def add_factor(
        self,
        *,
        id: str,
        subject_id: str,
        kind: str,
        now: datetime,
        label: str = "",
        secret: str | None = None,
        state: str = FactorState.PENDING,
        data: Mapping[str, Any] | None = None,
        credential_id: str | None = None,
    ) -> FactorRecord:
        """``Conflict`` when ``credential_id`` is any factor's already."""
        ...

    async def get_factor(self, factor_id: str) -> FactorRecord | None: ...

    async def list_factors(
        self,
        subject_id: str,
        *,
        kinds: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
    ) -> Sequence[FactorRecord]: ...

    async def activate_factor(
        self, factor_id: str, *, now: datetime, label: str | None = None
    ) -> bool: ...

    async def delete_factor(self, factor_id: str) -> bool: ...

    async def advance_totp_step(
        self, factor_id: str, *, expected: int | None, new: int
    ) -> bool: ...

    async def record_factor_failure(
        self, factor_id: str, *, now: datetime, limit: int | None = None
    ) -> int: ...

    async def reset_factor_failures(self, factor_id: str) -> bool: ...

    async def replace_factor_data(
        self,
        factor_id: str,
        *,
        expected_data: Mapping[str, Any],
        new_data: Mapping[str, Any],
    ) -> bool: ...


# -- what a verification spends, and what its units of work return ------------------------------


@dataclass(frozen=True, slots=True)
class AdvanceTotpStep:
    """Save ``step`` as the factor's last accepted TOTP step, only if it is later than the
    saved one (RFC 6238 §5.2: a step at or before the last accepted one is a replay)."""

    factor_id: str
    step: int


@dataclass(frozen=True, slots=True)
class SpendCeremony:
    """Close an open ceremony as ``new`` -- ``used`` for an SMS code or a WebAuthn challenge,
    ``approved`` for a push answer -- once, by compare-and-set on its state; ``data``, when
    given, replaces the ceremony's data in the same statement (what the answer was)."""

    ceremony_id: str
    new: CeremonyState = CeremonyState.USED
    data: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ReviseFactorData:
    """Replace the factor's ``data`` with ``revise(current)``, judged on the row as it is
    under the row lock; ``revise`` returns None to refuse (a WebAuthn sign count that did not
    advance). It must be pure: it runs inside the store's transaction."""

    factor_id: str
    revise: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] = field(compare=False)


Spend: TypeAlias = AdvanceTotpStep | SpendCeremony | ReviseFactorData


@dataclass(frozen=True, slots=True)
class AttemptCharge:
    """An attempt counted on a challenge: its number, and each charged factor's failure count
    (a count above the cap means the factor was at the cap already; a factor that no longer
    exists is absent; none are charged once ``attempts`` passes the challenge's cap)."""

    attempts: int
    failures: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a verified proof was saved: ``refused`` names the spend that lost its
    compare-and-set (the spends before it stay written, nothing after it is: no failures
    cleared, no approval); otherwise ``approved`` says whether the challenge was pending."""

    refused: Spend | None
    approved: bool


class AttemptLedger(Protocol):
    """A challenge's attempt counter and state (``store.ChallengeStore``)."""

    async def record_attempt(self, challenge_id: str, *, now: datetime) -> int: ...

    async def set_challenge_state(
        self,
        challenge_id: str,
        *,
        expected: str,
        new: str,
        approval: Mapping[str, Any] | None = None,
        collected_at: datetime | None = None,
    ) -> bool: ...

    async def collect_challenge_grant(self, challenge_id: str, *, now: datetime) -> bool: ...


class VerifierStore(FactorRepo, AttemptLedger, Protocol):
    """Both of the above, the two write units of a verification, and closing the ceremony of
    an answer that denies (``store.Store``)."""

    async def charge_attempt(
        self,
        challenge_id: str,
        factor_ids: Sequence[str],
        *,
        now: datetime,
        max_attempts: int,
        limit: int,
    ) -> AttemptCharge:
        """Count an attempt on the challenge and, while within ``max_attempts``, charge each
        factor one failure up to ``limit`` -- one transaction. ``NotFound``: no challenge."""
        ...

    async def refund_charge(
        self,
        challenge_id: str,
        factors_before: Mapping[str, datetime | None],
        *,
        charged_at: datetime,
        attempt: bool,
    ) -> None:
        """Take back the failure charged at ``charged_at`` to each factor of ``factors_before``
        (never below zero; its last failure's time back to the one mapped, unless a later
        failure was counted since), and the attempt when ``attempt`` -- one transaction."""
        ...

    async def settle_verification(
        self,
        challenge_id: str,
        *,
        spends: Sequence[Spend],
        reset: Sequence[str],
        approval: Mapping[str, Any],
        now: datetime,
        grant_collected: bool = True,
    ) -> Settlement:
        """In one transaction: each spend's compare-and-set in order (stopping at the first
        refused), then the failures of ``reset`` cleared and the challenge moved pending →
        approved with ``approval``; its grant collected at ``now`` when ``grant_collected``
        (the verifying request receives it), else left for the requester to collect."""
        ...

    async def close_ceremony(
        self,
        ceremony_id: str,
        *,
        new: str,
        now: datetime,
        expected: str = CeremonyState.OPEN,
        data: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move the ceremony ``expected`` → ``new`` by compare-and-set (an out-of-band answer
        that denies its challenge), ``data`` replacing its data."""
        ...


class CeremonyRecord(Protocol):
    """One ceremony as the store returns it (``store.CeremonyRow``): an SMS code, a push, a
    WebAuthn challenge or an enrollment token, open until closed once by compare-and-set."""

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
    @property
    def closed_at(self) -> datetime | None: ...


class CeremonyRepo(Protocol):
    """Single-use ceremony state shared by the nodes (``store.CeremonyStore``)."""

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
        since: datetime | None = None,
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
        expected: str = CeremonyState.OPEN,
        data: Mapping[str, Any] | None = None,
    ) -> bool: ...

    async def close_open_ceremonies(
        self, *, challenge_id: str, purposes: Iterable[str], new: str, now: datetime
    ) -> int: ...


class ChallengeReader(Protocol):
    """Challenges as the engine stored them (``store.ports.SqlChallenges``)."""

    async def get(self, challenge_id: str) -> Challenge | None: ...

    async def get_with_factors(
        self, challenge_id: str, *, kind: str | None
    ) -> tuple[Challenge, Sequence[FactorRecord]] | None:
        """The challenge and its subject's active factors of ``kind`` (none when None), read
        in one transaction."""
        ...
