"""The demo's people and keys: made on the demo's first start, kept for the next ones.

- ``demo`` (role ``support``) and ``admin`` (roles ``admin`` and ``security``, for the security
  team's pages): local users (argon2id, as ``piigate users add`` makes them) with a random
  password each, and each with a TOTP factor enrolled and confirmed, its secret sealed by the
  keyring like any factor's (``FactorEnrollment``). ``piigate demo code`` reads it back the
  same way (``demo/codes.py``).
- An API key with scope ``events``, for the audit trail in the walkthrough.

What the demo prints on every start (the passwords, the key) is kept in ``DATA_DIR/demo.sealed``:
a keyring ciphertext (AES-GCM under the deployment's data key), never plain text on disk.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from piigate.crypto.keyring import DecryptionError
from piigate.crypto.secret import Secret
from piigate.demo.idp import DemoUser
from piigate.errors import PiigateError
from piigate.factors.totp.protocol import hotp_code, totp_step
from piigate.files import private_file
from piigate.identity import generate_api_key, hash_password
from piigate.store.db import AlreadyExists

if TYPE_CHECKING:
    from piigate.api.services import Services

__all__ = ["ACCOUNTS_FILE", "DEMO_USERS", "DemoAccounts", "DemoSetupError", "demo_accounts"]

ACCOUNTS_FILE: Final = "demo.sealed"
_AAD: Final = b"piigate-demo:accounts"
# Who the demo signs in as: name → roles.
DEMO_USERS: Final = {"demo": ("support",), "admin": ("admin", "security")}
_EVENTS_KEY_NAME: Final = "demo-auditor"


class DemoSetupError(PiigateError):
    code = "demo_setup_failed"
    title = "The demo cannot be set up"


@dataclass(frozen=True, slots=True)
class DemoAccounts:
    users: tuple[DemoUser, ...]
    events_key: Secret[str]

    def user(self, name: str) -> DemoUser:
        return next(u for u in self.users if u.name == name)


async def demo_accounts(services: Services, data_dir: Path) -> DemoAccounts:
    """The demo's accounts: those of an earlier start, or new ones (made and kept now)."""
    path = data_dir / ACCOUNTS_FILE
    if path.exists():
        return await _opened(services, path)
    accounts = await _made(services)
    _write(path, services.keyring.encrypt(_text(accounts).encode(), aad=_AAD))
    return accounts


async def _made(services: Services) -> DemoAccounts:
    users = []
    for name, roles in DEMO_USERS.items():
        user = DemoUser(name, Secret(secrets.token_urlsafe(12)), roles)
        await _add_user(services, user)
        await _enrol_totp(services, name)
        users.append(user)
    now = services.clock.now()
    key_id, secret, digest = generate_api_key()
    await services.store.create_api_key(key_id, _EVENTS_KEY_NAME, digest, [], ["events"], now)
    event = {"name": _EVENTS_KEY_NAME, "scopes": ["events"], "roles": []}
    await services.audit.record("api_key_created", subject_id=key_id, data=event)
    return DemoAccounts(tuple(users), secret)


async def _add_user(services: Services, user: DemoUser) -> None:
    digest = hash_password(user.password)
    try:
        await services.store.add_user(user.name, digest, user.roles, services.clock.now())
    except AlreadyExists:
        raise DemoSetupError(
            f"the demo's data has a user {user.name!r} but not its password: "
            "start over with `piigate demo --reset`"
        ) from None
    await services.audit.record("user_added", subject_id=user.name, data={"roles": user.roles})


async def _enrol_totp(services: Services, subject: str) -> None:
    """A TOTP factor, confirmed as a person's authenticator app would: with a code it shows.

    The demo confirms with the previous time step's code, which RFC 6238 §5.2's one step of
    tolerated skew admits, so that the current step's code is still unused when the walkthrough
    asks for it (a step's code is accepted once).
    """
    enrolled = await services.enrollment.start_totp(subject, label="demo authenticator")
    step = totp_step(services.clock.now()) - 1
    code = Secret(hotp_code(enrolled.secret, step))
    await services.enrollment.confirm_totp(subject, enrolled.factor.id, code)


async def _opened(services: Services, path: Path) -> DemoAccounts:
    try:
        data = json.loads(await services.keyring.adecrypt(_read(path), aad=_AAD))
        users = tuple(
            DemoUser(u["name"], Secret(u["password"]), tuple(u["roles"])) for u in data["users"]
        )
        return DemoAccounts(users, Secret(data["events_key"]))
    except (DecryptionError, ValueError, KeyError, TypeError):
        raise DemoSetupError(
            f"{path} cannot be read with this data directory's keys: "
            "start over with `piigate demo --reset`"
        ) from None


def _read(path: Path) -> str:
    return path.read_text().strip()


def _write(path: Path, sealed: str) -> None:
    """``sealed`` into ``path`` (mode 0600), whole or not at all."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    private_file(tmp)
    tmp.write_text(sealed)
    os.replace(tmp, path)


def _text(accounts: DemoAccounts) -> str:
    users = [
        {"name": u.name, "password": u.password.reveal(), "roles": list(u.roles)}
        for u in accounts.users
    ]
    return json.dumps({"users": users, "events_key": accounts.events_key.reveal()})
