"""What local login and its sessions need from the store (``piigate.store.Store`` satisfies
it as it is): users, and sessions known by their token's hash."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

__all__ = ["LoginStore", "SessionRecord", "UserRecord"]


class UserRecord(Protocol):
    """A local user as the store returns it (``store.UserRow``)."""

    @property
    def username(self) -> str: ...
    @property
    def password_hash(self) -> str: ...
    @property
    def roles(self) -> tuple[str, ...]: ...
    @property
    def disabled(self) -> bool: ...


class SessionRecord(Protocol):
    """A stored session (``store.SessionRow``)."""

    @property
    def token_hash(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def level(self) -> str | None: ...
    @property
    def amr(self) -> tuple[str, ...]: ...
    @property
    def auth_time(self) -> datetime: ...
    @property
    def scram_verifier(self) -> str | None: ...
    @property
    def roles(self) -> tuple[str, ...] | None: ...
    @property
    def issuer(self) -> str | None: ...


class LoginStore(Protocol):
    """Users and sessions (``piigate.store.Store`` satisfies it as it is)."""

    async def get_user(self, username: str) -> UserRecord | None: ...

    async def create_session(
        self,
        token_hash: str,
        username: str,
        level: str | None,
        amr: Iterable[str],
        auth_time: datetime,
        expires_at: datetime,
        now: datetime,
        *,
        roles: Iterable[str] | None = None,
        issuer: str | None = None,
    ) -> SessionRecord: ...

    async def get_session(self, token_hash: str, now: datetime) -> SessionRecord | None: ...

    async def get_session_by_id(self, session_id: str, now: datetime) -> SessionRecord | None: ...

    async def delete_session(self, token_hash: str) -> bool: ...
