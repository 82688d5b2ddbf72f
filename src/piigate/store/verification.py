"""The units of work of a verification (``stepup.verification.Verifier.verify``): one read and
two writes, each one transaction.

1. :meth:`VerificationStore.read_verification`: the challenge and its subject's factors of the
   method being answered (their lockout state is in the rows);
2. :meth:`VerificationStore.charge_attempt`: the attempt counted on the challenge and each
   factor charged one failure, before the proof is looked at (CONTRACT §5.3). Both are
   conditional updates with ``RETURNING``, so parallel guesses each get a distinct count and
   none slips past a cap; factor rows are updated in id order, so two transactions charging the
   same factors lock them in the same order;
3. :meth:`VerificationStore.settle_verification`, for a proof that held: what it spends (a TOTP
   step, a ceremony, a factor's data) by compare-and-set, the failures cleared and the challenge
   approved by compare-and-set (its grant handed out, or left for the requester to collect).
   Two nodes accepting the same code at the same moment cannot both win: the second finds the
   step saved or the ceremony closed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, or_, select, update

from piigate.errors import NotFound
from piigate.factors import CeremonyState, FactorState
from piigate.factors.ports import (
    AdvanceTotpStep,
    AttemptCharge,
    ReviseFactorData,
    Settlement,
    Spend,
    SpendCeremony,
)
from piigate.model import ChallengeState
from piigate.store._sql import Repo, utc
from piigate.store.challenges import ChallengeRow
from piigate.store.driver import DriverStatement, DriverTransaction
from piigate.store.factors import FactorRow, factor_row
from piigate.store.tables import TS, ceremonies, challenges, factors

__all__ = ["VerificationStore"]

# Each statement is written once in Core and run at the driver level (store/driver.py), in
# units of work at the driver level: a verification is a handful of statements, and
# SQLAlchemy's per-execution and per-transaction work would cost more CPU than the database's.
_CHALLENGE = DriverStatement(select(challenges).where(challenges.c.id == bindparam("challenge_id")))
_FACTORS = DriverStatement(
    select(factors)
    .where(
        factors.c.subject_id == bindparam("subject_id"),
        factors.c.kind == bindparam("kind"),
        factors.c.state == bindparam("state"),
    )
    .order_by(factors.c.created_at, factors.c.id)
)
_ATTEMPT = DriverStatement(
    update(challenges)
    .where(challenges.c.id == bindparam("challenge_id"))
    .values(attempts=challenges.c.attempts + 1, last_attempt_at=bindparam("at", type_=TS))
    .returning(challenges.c.attempts)
)
_APPROVE = DriverStatement(
    update(challenges)
    .where(
        challenges.c.id == bindparam("challenge_id"), challenges.c.state == ChallengeState.PENDING
    )
    .values(
        state=ChallengeState.APPROVED,
        approval=bindparam("approval", type_=challenges.c.approval.type),
        grant_collected_at=bindparam("at", type_=TS),
    )
)
_CHARGE = DriverStatement(
    update(factors)
    .where(factors.c.id == bindparam("factor_id"), factors.c.failures < bindparam("limit"))
    .values(failures=factors.c.failures + 1, last_failure_at=bindparam("at", type_=TS))
    .returning(factors.c.failures)
)
_FAILURES = DriverStatement(
    select(factors.c.failures).where(factors.c.id == bindparam("factor_id"))
)
_RESET = DriverStatement(
    update(factors)
    .where(factors.c.id == bindparam("factor_id"))
    .values(failures=0, last_failure_at=None)
)
# The step is saved and the factor's failures cleared in one statement (the success clears them
# anyway, see ``settle_verification``).
_ADVANCE = DriverStatement(
    update(factors)
    .where(
        factors.c.id == bindparam("factor_id"),
        or_(factors.c.last_step.is_(None), factors.c.last_step < bindparam("later_than")),
    )
    .values(
        last_step=bindparam("step", type_=factors.c.last_step.type),
        failures=0,
        last_failure_at=None,
    )
)
_CLOSE_WHERE = (
    update(ceremonies)
    .where(ceremonies.c.id == bindparam("ceremony_id"), ceremonies.c.state == CeremonyState.OPEN)
    .values(state=bindparam("state"), closed_at=bindparam("at", type_=TS))
)
_CLOSE = DriverStatement(_CLOSE_WHERE)
_CLOSE_WITH_DATA = DriverStatement(
    _CLOSE_WHERE.values(data=bindparam("data", type_=ceremonies.c.data.type))
)
_DATA = DriverStatement(
    select(factors.c.data).where(factors.c.id == bindparam("factor_id")).with_for_update()
)
_NEW_DATA = DriverStatement(
    update(factors)
    .where(factors.c.id == bindparam("factor_id"))
    .values(data=bindparam("data", type_=factors.c.data.type))
)
# PostgreSQL's row locks for a settlement, taken one row at a time in a fixed order.
_LOCK_CHALLENGE = DriverStatement(
    select(challenges.c.id).where(challenges.c.id == bindparam("challenge_id")).with_for_update()
)
_LOCK_FACTOR = DriverStatement(
    select(factors.c.id).where(factors.c.id == bindparam("factor_id")).with_for_update()
)


class VerificationStore(Repo):
    async def read_verification(
        self, challenge_id: str, *, kind: str | None, state: str = FactorState.ACTIVE
    ) -> tuple[ChallengeRow, list[FactorRow]] | None:
        """The challenge and its subject's factors of ``kind`` in ``state``, oldest first (no
        factors when ``kind`` is None); None when there is no such challenge."""

        def work(conn: DriverTransaction) -> tuple[ChallengeRow, list[FactorRow]] | None:
            found = _CHALLENGE.execute(conn, {"challenge_id": challenge_id}).rows
            if not found:
                return None
            row = ChallengeRow(**found[0])
            if kind is None:
                return row, []
            wanted = {"subject_id": row.subject_id, "kind": kind, "state": state}
            return row, [factor_row(r) for r in _FACTORS.execute(conn, wanted).rows]

        return await self.db.read(work, driver=True)

    async def charge_attempt(
        self,
        challenge_id: str,
        factor_ids: Sequence[str],
        *,
        now: datetime,
        max_attempts: int,
        limit: int,
    ) -> AttemptCharge:
        """Count one attempt on the challenge; while the count is within ``max_attempts``,
        charge each factor one failure, conditionally (``WHERE failures < limit``: the count
        never passes the cap, and a factor at the cap comes back as ``limit + 1``). One
        transaction; ``NotFound`` when there is no such challenge."""
        at = utc(now)

        def work(conn: DriverTransaction) -> AttemptCharge | None:
            attempts = _ATTEMPT.execute(conn, {"challenge_id": challenge_id, "at": at}).scalar()
            if attempts is None:
                return None
            failures: dict[str, int] = {}
            if attempts <= max_attempts:
                for factor_id in sorted(set(factor_ids)):
                    count = _charge(conn, factor_id, at, limit)
                    if count is not None:  # None: removed meanwhile
                        failures[factor_id] = count
            return AttemptCharge(int(attempts), failures)

        charged = await self.db.write(work, driver=True)
        if charged is None:
            raise NotFound("no such challenge")
        return charged

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
        """Save a verified proof in one transaction: each spend by compare-and-set, in order,
        stopping at the first refused one (those before it stay written: a WebAuthn ceremony is
        spent whatever the outcome); then ``reset``'s failures back to zero and the challenge
        pending → approved with ``approval``, its grant handed out at ``now`` -- or, when not
        ``grant_collected`` (an out-of-band answer), left for the requester to collect."""
        at = utc(now)
        approval_values = {
            "challenge_id": challenge_id,
            "approval": dict(approval),
            "at": at if grant_collected else None,
        }

        def work(conn: DriverTransaction) -> Settlement:
            if conn.dialect.name == "postgresql":
                _lock_rows(conn, challenge_id, {*reset, *_factor_ids(spends)})
            for spend in spends:
                if not _spent(conn, spend, at):
                    return Settlement(refused=spend, approved=False)
            for factor_id in sorted(set(reset) - _cleared(spends)):
                _RESET.execute(conn, {"factor_id": factor_id})
            approved = _APPROVE.execute(conn, approval_values).rowcount == 1
            return Settlement(refused=None, approved=approved)

        return await self.db.write(work, driver=True)

    async def refund_charge(
        self,
        challenge_id: str,
        factors_before: Mapping[str, datetime | None],
        *,
        charged_at: datetime,
        attempt: bool,
    ) -> None:
        """Take back what :meth:`charge_attempt` (at ``charged_at``) counted for a proof that
        could not be checked (a server fault): one failure of each factor of ``factors_before``
        (never below zero), with the last failure's time it had before (mapped) unless a later
        failure has been counted since; and the attempt when ``attempt``. The rows in
        :meth:`charge_attempt`'s order. Rare: the statements are built per call."""
        at = utc(charged_at)
        left = factors.c.failures - 1
        refund = (
            update(factors)
            .where(factors.c.id == bindparam("factor_id"), factors.c.failures > 0)
            .values(
                failures=left,
                last_failure_at=case(
                    (left == 0, None),
                    (factors.c.last_failure_at == at, bindparam("before", type_=TS)),
                    else_=factors.c.last_failure_at,
                ),
            )
        )
        uncount = (
            update(challenges)
            .where(challenges.c.id == challenge_id, challenges.c.attempts > 0)
            .values(attempts=challenges.c.attempts - 1)
        )

        def work(conn: Connection) -> None:
            if attempt:
                conn.execute(uncount)
            for factor_id in sorted(factors_before):
                before = factors_before[factor_id]
                conn.execute(refund, {"factor_id": factor_id, "before": before})

        await self.db.write(work)


def _factor_ids(spends: Sequence[Spend]) -> set[str]:
    return {s.factor_id for s in spends if isinstance(s, AdvanceTotpStep | ReviseFactorData)}


def _cleared(spends: Sequence[Spend]) -> set[str]:
    """The factors whose failures their spend's statement cleared already."""
    return {s.factor_id for s in spends if isinstance(s, AdvanceTotpStep)}


def _lock_rows(conn: DriverTransaction, challenge_id: str, factor_ids: set[str]) -> None:
    """Lock the rows in the order :meth:`VerificationStore.charge_attempt` updates them -- the
    challenge, then the factors by id -- so that settling one challenge while another of the
    same subject is charged cannot deadlock (PostgreSQL; SQLite has one writer at a time)."""
    _LOCK_CHALLENGE.execute(conn, {"challenge_id": challenge_id})
    for factor_id in sorted(factor_ids):
        _LOCK_FACTOR.execute(conn, {"factor_id": factor_id})


def _charge(conn: DriverTransaction, factor_id: str, at: datetime, limit: int) -> int | None:
    """One more failure on the factor unless it is at ``limit`` already; the count, ``limit +
    1`` when it was at the cap, None when the factor is gone."""
    values = {"factor_id": factor_id, "limit": limit, "at": at}
    failures = _CHARGE.execute(conn, values).scalar()
    if failures is not None:
        return int(failures)
    current = _FAILURES.execute(conn, values).scalar()
    return None if current is None else int(current) + 1


def _spent(conn: DriverTransaction, spend: Spend, at: datetime) -> bool:
    """Run one spend's compare-and-set: True when this transaction spent it."""
    if isinstance(spend, AdvanceTotpStep):
        # Later than the saved step, judged on the row itself: of parallel requests with the
        # same code one wins, and one with an older code never overwrites a newer step.
        values = {"factor_id": spend.factor_id, "later_than": spend.step, "step": spend.step}
        return _ADVANCE.execute(conn, values).rowcount == 1
    if isinstance(spend, SpendCeremony):
        return _closed(conn, spend, at)
    return _revised(conn, spend)


def _closed(conn: DriverTransaction, spend: SpendCeremony, at: datetime) -> bool:
    """Close the ceremony open → ``spend.new``, with its new data if any."""
    values: dict[str, Any] = {"ceremony_id": spend.ceremony_id, "state": spend.new, "at": at}
    if spend.data is None:
        return _CLOSE.execute(conn, values).rowcount == 1
    values["data"] = dict(spend.data)
    return _CLOSE_WITH_DATA.execute(conn, values).rowcount == 1


def _revised(conn: DriverTransaction, spend: ReviseFactorData) -> bool:
    # JSON cannot be compared in SQL portably: lock the row (FOR UPDATE, or SQLite's write
    # lock), judge it in Python, write it back -- all in this transaction.
    current = _DATA.execute(conn, {"factor_id": spend.factor_id}).scalar()
    if current is None:
        return False
    data = dict(current)
    revised = spend.revise(data)
    if revised is None:
        return False
    if dict(revised) != data:
        _NEW_DATA.execute(conn, {"factor_id": spend.factor_id, "data": dict(revised)})
    return True
