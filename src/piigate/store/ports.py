"""The engine's ports (``stepup.ports``) implemented over the SQL store.

Challenges are stored as their columns plus a JSON body of names and ids; the one value in a
challenge that can identify a person — a transaction's payee — is encrypted under the keyring's
data key with the challenge id as associated data. A payee sealed under a data key this node
has not loaded yet (another node's rotation) is read once the key is learned; one that cannot be
read is a 503, never a challenge without its payee.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from piigate.crypto.keyring import DecryptionError, Keyring, UnknownKey
from piigate.errors import ServiceUnavailable
from piigate.model import (
    Action,
    Approval,
    Challenge,
    ChallengeState,
    Requirement,
    Resource,
    Transaction,
)
from piigate.store import Store
from piigate.store.challenges import ChallengeRow
from piigate.store.factors import FactorRow
from piigate.store.tables import challenges as challenges_table

__all__ = ["SqlChallenges", "SqlGrantLedger", "challenge_from_row"]


class RowWriter(Protocol):
    async def write_rows(self, table: str, *rows: Mapping[str, Any]) -> None: ...


class SqlChallenges:
    """Challenges in SQL. With a ``writer`` (the audit log), a new challenge is inserted in the
    same group-commit transaction as the decision's audit event, not in one of its own."""

    def __init__(self, store: Store, keyring: Keyring, writer: RowWriter | None = None) -> None:
        self.store = store
        self.keyring = keyring
        self.writer = writer

    async def create(self, challenge: Challenge) -> None:
        row = {
            "id": challenge.id,
            "subject_id": challenge.subject_id,
            "state": challenge.state.value,
            "created_at": challenge.created_at,
            "expires_at": challenge.expires_at,
            "attempts": challenge.attempts,
            "max_attempts": challenge.max_attempts,
            "decision_id": challenge.decision_id,
            "requested_by": challenge.requested_by,
            "body": self._body(challenge),
        }
        if self.writer is not None:
            await self.writer.write_rows(challenges_table.name, row)
        else:
            await self.store.insert_challenge(row)

    async def get(self, challenge_id: str) -> Challenge | None:
        row = await self.store.get_challenge(challenge_id)
        return None if row is None else await self._challenge(row)

    async def get_with_factors(
        self, challenge_id: str, *, kind: str | None
    ) -> tuple[Challenge, list[FactorRow]] | None:
        """The challenge and its subject's active factors of ``kind``, in one read."""
        found = await self.store.read_verification(challenge_id, kind=kind)
        if found is None:
            return None
        row, factors = found
        return await self._challenge(row), factors

    async def pending(self, *, created_after: datetime, limit: int = 200) -> list[Challenge]:
        """Pending challenges opened after ``created_after``, newest first (expired included:
        the caller compares ``expires_at`` with its clock)."""
        rows = await self.store.list_challenges(
            state=ChallengeState.PENDING.value, created_after=created_after, limit=limit
        )
        return [await self._challenge(row) for row in rows]

    async def _challenge(self, row: ChallengeRow) -> Challenge:
        try:
            try:
                return challenge_from_row(row, self.keyring)
            except UnknownKey as unknown:
                if not await self.keyring.learn(unknown.kid):
                    raise
            return challenge_from_row(row, self.keyring)
        except DecryptionError:
            raise ServiceUnavailable("the challenge's transaction cannot be read") from None

    def _body(self, challenge: Challenge) -> dict[str, Any]:
        req = challenge.requirement
        body: dict[str, Any] = {
            "requirement": {
                "level": req.level,
                "acr_values": list(req.acr_values),
                "max_age": req.max_age,
                "methods": list(req.methods),
                "binding": req.binding,
                "scope": list(req.scope),
            },
            "action": challenge.action.value,
            "pii": sorted(challenge.pii),
            "resource": {"type": challenge.resource.type, "id": challenge.resource.id},
            "session_id": challenge.session_id,
            "device_id": challenge.device_id,
            "audience": challenge.audience,
        }
        txn = challenge.transaction
        if txn is not None:
            payee = None
            if txn.payee is not None:
                payee = self.keyring.encrypt(txn.payee.encode(), aad=_aad(challenge.id))
            body["transaction"] = {
                "amount": str(txn.amount),
                "currency": txn.currency,
                "payee": payee,
            }
        return body


def challenge_from_row(row: ChallengeRow, keyring: Keyring) -> Challenge:
    body = row.body
    req = body["requirement"]
    transaction = None
    if body.get("transaction"):
        txn = body["transaction"]
        payee = None
        if txn.get("payee"):
            payee = keyring.decrypt(txn["payee"], aad=_aad(row.id)).decode()
        transaction = Transaction(Decimal(txn["amount"]), txn.get("currency"), payee)
    return Challenge(
        id=row.id,
        subject_id=row.subject_id,
        requirement=Requirement(
            level=req["level"],
            acr_values=tuple(req["acr_values"]),
            max_age=req["max_age"],
            methods=tuple(req["methods"]),
            binding=req["binding"],
            scope=tuple(req.get("scope", ())),
        ),
        action=Action(body["action"]),
        pii=frozenset(body["pii"]),
        resource=Resource(body["resource"]["type"], body["resource"]["id"]),
        created_at=row.created_at,
        expires_at=row.expires_at,
        transaction=transaction,
        session_id=body.get("session_id"),
        device_id=body.get("device_id"),
        decision_id=row.decision_id,
        requested_by=row.requested_by,
        audience=body.get("audience"),
        state=ChallengeState(row.state),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        approval=None if row.approval is None else Approval.from_data(row.approval),
        grant_collected=row.grant_collected_at is not None,
    )


class SqlGrantLedger:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def consume(self, grant_id: str, *, expires_at: datetime, now: datetime) -> bool:
        return await self.store.consume_grant(grant_id, expires_at=expires_at, now=now)


def _aad(challenge_id: str) -> bytes:
    return f"challenge:{challenge_id}:payee".encode()
