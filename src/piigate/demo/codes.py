"""``piigate demo code``: the code a demo user's authenticator app would show now.

The secret is read as the verifier reads it: the user's active TOTP factor from the store, opened
with the keyring (``decrypt_factor_secret``, associated data ``factor:<id>``). A time step's code
is accepted once (RFC 6238 §5.2), so when the current step's code was already used, the code is
that of the next step, with how long until it begins: the command waits that long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from piigate.crypto.secret import Secret
from piigate.errors import PiigateError
from piigate.factors import FactorState
from piigate.factors.ports import totp_parameters
from piigate.factors.totp.ceremony import decrypt_factor_secret
from piigate.factors.totp.protocol import hotp_code, totp_step
from piigate.model import Method

if TYPE_CHECKING:
    from piigate.crypto.keyring import Keyring
    from piigate.store import Store

__all__ = ["NoDemoCode", "TotpCode", "code_step", "demo_code"]


class NoDemoCode(PiigateError):
    code = "no_demo_code"
    title = "No TOTP code"


@dataclass(frozen=True, slots=True)
class TotpCode:
    code: Secret[str]
    wait: float  # seconds until the code's time step begins (0: it is the current one)


def code_step(now: datetime, last_step: int | None, *, period: int = 30) -> tuple[int, float]:
    """The first time step from ``now`` on whose code is still unused (after ``last_step``),
    and the seconds until it begins."""
    step = totp_step(now, period=period)
    if last_step is None or last_step < step:
        return step, 0.0
    step = last_step + 1
    return step, max(0.0, step * period - now.timestamp())


async def demo_code(store: Store, keyring: Keyring, subject: str, *, now: datetime) -> TotpCode:
    """The next unused code of ``subject``'s newest active TOTP factor."""
    found = await store.list_factors(
        subject, kinds=[Method.TOTP.value], states=[FactorState.ACTIVE.value]
    )
    if not found:
        raise NoDemoCode(f"{subject} has no TOTP factor in this demo's data")
    factor = found[-1]
    secret = await decrypt_factor_secret(keyring, factor)
    if secret is None:
        raise NoDemoCode("the TOTP secret cannot be opened with this data directory's keys")
    parameters = totp_parameters(factor.data)
    step, wait = code_step(now, factor.last_step, period=parameters["period"])
    code = hotp_code(secret, step, digits=parameters["digits"], algorithm=parameters["algorithm"])
    return TotpCode(Secret(code), wait)
