"""Enrolled factors, and the atomic updates that make their verification safe across nodes.

Encryption is the caller's: ``secret`` is stored exactly as given and must already be a keyring
ciphertext token (``Keyring.encrypt(..., aad=<factor id>)``), never a plaintext secret. Every
change that verification depends on is one conditional statement (compare-and-set) or one
locked transaction, so two nodes verifying the same code at the same moment cannot both win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, exc, select, update

from piigate.errors import NotFound
from piigate.factors import FactorState
from piigate.store._sql import Repo, utc
from piigate.store.db import AlreadyExists
from piigate.store.tables import factors

__all__ = ["FACTOR_STATES", "FactorRow", "FactorStore", "factor_row"]

FACTOR_STATES = frozenset(FactorState)


@dataclass(frozen=True, slots=True)
class FactorRow:
    id: str
    subject_id: str
    kind: str
    label: str
    state: str
    created_at: datetime
    # A keyring ciphertext token (None for kinds without a shared secret, e.g. recovery codes).
    secret: str | None = field(default=None, repr=False)
    last_step: int | None = None
    failures: int = 0
    last_failure_at: datetime | None = None
    confirmed_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)


def factor_row(found: Row[Any] | Mapping[str, Any]) -> FactorRow:
    """A ``factors`` row (a SQLAlchemy row, or a mapping of its columns) as the dataclass."""
    values = dict(found._asdict() if isinstance(found, Row) else found)
    values.pop("credential_id", None)  # a unique index over what data holds (WebAuthn)
    values["data"] = dict(values["data"] or {})
    if values["last_step"] is not None:
        values["last_step"] = int(values["last_step"])
    return FactorRow(**values)


def _check_state(state: str) -> None:
    if state not in FACTOR_STATES:
        raise ValueError(f"unknown factor state {state!r}")


class FactorStore(Repo):
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
    ) -> FactorRow:
        """Store a new factor (``id`` like ``fct_...``). ``secret`` must already be encrypted.

        ``credential_id`` (WebAuthn, base64url) is unique across every subject:
        ``AlreadyExists`` if any factor has it already."""
        _check_state(state)
        at = utc(now)
        row = FactorRow(
            id=id,
            subject_id=subject_id,
            kind=str(kind),
            label=label,
            state=str(state),
            created_at=at,
            secret=secret,
            confirmed_at=at if state == FactorState.ACTIVE else None,
            data=dict(data or {}),
        )
        try:
            await self._write(
                factors.insert().values(
                    id=row.id,
                    subject_id=row.subject_id,
                    kind=row.kind,
                    label=row.label,
                    state=row.state,
                    secret=row.secret,
                    last_step=None,
                    failures=0,
                    created_at=row.created_at,
                    confirmed_at=row.confirmed_at,
                    data=row.data,
                    credential_id=credential_id,
                )
            )
        except exc.IntegrityError as error:
            if credential_id is None:
                raise  # the id (ids are random: a bug, not a user's doing)
            raise AlreadyExists("a factor with this credential exists") from error
        return row

    async def get_factor(self, factor_id: str) -> FactorRow | None:
        found = await self._first(select(factors).where(factors.c.id == factor_id))
        return None if found is None else factor_row(found)

    async def list_factors(
        self,
        subject_id: str,
        *,
        kinds: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
    ) -> list[FactorRow]:
        """The subject's factors, oldest first; ``kinds``/``states`` filter when given."""
        stmt = select(factors).where(factors.c.subject_id == subject_id)
        if kinds is not None:
            stmt = stmt.where(factors.c.kind.in_([str(k) for k in kinds]))
        if states is not None:
            stmt = stmt.where(factors.c.state.in_([str(s) for s in states]))
        stmt = stmt.order_by(factors.c.created_at, factors.c.id)
        return [factor_row(r) for r in await self._all(stmt)]

    async def activate_factor(
        self, factor_id: str, *, now: datetime, label: str | None = None
    ) -> bool:
        """``pending`` → ``active`` (recording ``confirmed_at``, and ``label`` when given); True
        for exactly one caller."""
        values: dict[str, Any] = {"state": FactorState.ACTIVE, "confirmed_at": utc(now)}
        if label is not None:
            values["label"] = label
        stmt = (
            update(factors)
            .where(factors.c.id == factor_id, factors.c.state == FactorState.PENDING)
            .values(**values)
        )
        return await self._changed(stmt)

    async def advance_totp_step(self, factor_id: str, *, expected: int | None, new: int) -> bool:
        """Record ``new`` as the last accepted TOTP step, if it still is ``expected``.

        Compare-and-set: of any number of callers that read the same ``expected`` (None: no code
        accepted yet), exactly one gets True; the others lost a race with the same or an older
        code and must treat it as a replay (RFC 6238 §5.2). ``new`` must exceed ``expected``.
        """
        if expected is not None and new <= expected:
            return False
        condition = (
            factors.c.last_step.is_(None) if expected is None else factors.c.last_step == expected
        )
        stmt = update(factors).where(factors.c.id == factor_id, condition).values(last_step=new)
        return await self._changed(stmt)

    async def record_factor_failure(
        self, factor_id: str, *, now: datetime, limit: int | None = None
    ) -> int:
        """Count one failed verification and return the new count, atomically.

        Concurrent calls each get a distinct count (one ``UPDATE ... RETURNING``), so comparing
        it with the policy's cap lets no burst of guesses slip past. Raises ``NotFound`` when
        there is no such factor.

        With ``limit``, the increment is conditional (``WHERE failures < limit``): a factor
        already at the cap is not counted again, and the call returns ``failures + 1`` (more
        than ``limit``) without writing. The column then never exceeds the cap, however many
        guesses race (PostgreSQL re-checks the condition on the row it waited for).
        """
        stmt = update(factors).where(factors.c.id == factor_id)
        if limit is not None:
            stmt = stmt.where(factors.c.failures < limit)
        stmt = stmt.values(failures=factors.c.failures + 1, last_failure_at=utc(now)).returning(
            factors.c.failures
        )

        def work(conn: Connection) -> int | None:
            failures = conn.execute(stmt).scalar_one_or_none()
            if failures is None and limit is not None:
                current = conn.execute(
                    select(factors.c.failures).where(factors.c.id == factor_id)
                ).scalar_one_or_none()
                return None if current is None else int(current) + 1
            return None if failures is None else int(failures)

        counted = await self.db.write(work)
        if counted is None:
            raise NotFound("no such factor")
        return counted

    async def reset_factor_failures(self, factor_id: str) -> bool:
        """Back to zero failures (after a success, a recovery or an administrator's unlock)."""
        stmt = (
            update(factors)
            .where(factors.c.id == factor_id)
            .values(failures=0, last_failure_at=None)
        )
        return await self._changed(stmt)

    async def replace_factor_data(
        self,
        factor_id: str,
        *,
        expected_data: Mapping[str, Any],
        new_data: Mapping[str, Any],
    ) -> bool:
        """Replace ``data`` if it still equals ``expected_data`` (compare-and-set).

        Used to spend a recovery code: of two requests spending codes from the same snapshot,
        one gets False and must re-read the factor (its own code may still be unspent). JSON
        columns cannot be compared in SQL portably, so the row is locked (``FOR UPDATE``, or
        SQLite's write lock) and compared in Python within one transaction.
        """
        select_stmt = select(factors.c.data).where(factors.c.id == factor_id).with_for_update()
        update_stmt = update(factors).where(factors.c.id == factor_id).values(data=dict(new_data))

        def work(conn: Connection) -> bool:
            current = conn.execute(select_stmt).scalar_one_or_none()
            if current is None or dict(current) != dict(expected_data):
                return False
            conn.execute(update_stmt)
            return True

        return await self.db.write(work)

    async def replace_factor_secret(self, factor_id: str, *, expected: str, new: str) -> bool:
        """Compare-and-set the secret token (re-wrapping under a new data key).

        False when the row is gone or its secret is no longer ``expected`` (re-enrolled
        meanwhile): the caller re-reads it rather than overwrite a newer secret.
        """
        stmt = (
            update(factors)
            .where(factors.c.id == factor_id, factors.c.secret == expected)
            .values(secret=new)
        )
        return await self._changed(stmt)

    async def factor_ids_with_secret(self) -> list[str]:
        """The ids of every factor that holds a secret, in id order: what a data-key rotation
        re-wraps."""
        stmt = select(factors.c.id).where(factors.c.secret.is_not(None)).order_by(factors.c.id)
        return list(await self.db.read(lambda conn: conn.execute(stmt).scalars().all()))

    async def delete_factor(self, factor_id: str) -> bool:
        return await self._changed(delete(factors).where(factors.c.id == factor_id))
