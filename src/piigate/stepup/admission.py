"""Whether a challenge may be answered: by this caller, now, with this method (CONTRACT §4.3).

Pure rules, no I/O: the ``Verifier`` (``stepup.verification``) applies them before anything is
charged, and turns a refusal into its audit event and the vague 401 (``stepup.refusals``).

- *who*: the challenge's subject, or the app that asked for it; anyone else learns nothing
  (404, as if the challenge did not exist);
- *when*: the challenge is still pending and not past its expiry;
- *how*: the method is one the challenge allows, that this node can verify (a check, or an
  out-of-band answer), and that the current policy still counts at the level required (the
  policy may have been reloaded since the challenge was opened).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from piigate.callers import Caller
from piigate.errors import NotFound
from piigate.model import Challenge, ChallengeState, Method
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.model import FactorSettings
from piigate.stepup.verdicts import VerificationFailure

__all__ = ["OUT_OF_BAND", "admission", "visible"]

# Methods proven outside ``Verifier.verify``: a signed push answer (``answer``), another person
# (``approve``).
OUT_OF_BAND = frozenset({Method.PUSH.value, Method.APPROVAL.value})


def visible(challenge: Challenge | None, caller: Caller) -> Challenge:
    """The challenge, if ``caller`` may answer it: its subject, or the app that asked for it.
    Anyone else learns nothing: ``NotFound``, as if absent."""
    if challenge is None or not caller.may_answer(challenge):
        raise NotFound("no such challenge")
    return challenge


def admission(
    compiled: CompiledPolicy,
    challenge: Challenge,
    method: str,
    now: datetime,
    *,
    checked: Collection[str],
) -> FactorSettings | VerificationFailure:
    """``method``'s settings when ``challenge`` can be answered with it at ``now``; else why
    not (``EXPIRED``: the caller marks the challenge expired). ``checked``: the methods with a
    check on this node."""
    settings = _settings(compiled, challenge, method, checked)
    if challenge.state is not ChallengeState.PENDING:
        return VerificationFailure.NOT_PENDING
    if challenge.expires_at <= now:
        return VerificationFailure.EXPIRED
    if settings is None:
        return VerificationFailure.METHOD_NOT_ALLOWED
    return settings


def _settings(
    compiled: CompiledPolicy, challenge: Challenge, method: str, checked: Collection[str]
) -> FactorSettings | None:
    if method not in checked and method not in OUT_OF_BAND:
        return None
    if method not in challenge.requirement.methods:
        return None
    return compiled.proving(method, challenge.requirement.level)
