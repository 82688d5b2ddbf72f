"""The engine: every edge (API, gateways, console) asks it, so they can never disagree.

``decide`` is one explicit pipeline of named steps: assess risk, collect what the caller has
already proven, evaluate the compiled policy, spend a bound grant if the allow relies on it,
open a challenge when a step-up is needed (an allow that masks may name again one an earlier
decision opened: ``stepup/reuse.py``), and append the audit event — in that order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from piigate.callers import Caller
from piigate.clock import Clock
from piigate.errors import ServiceUnavailable
from piigate.ids import new_id
from piigate.model import (
    AccessRequest,
    AuditEvent,
    Challenge,
    Decision,
    Grant,
    Method,
    Outcome,
    ProvenLevel,
    Requirement,
    RiskAssessment,
    Signal,
)
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.evaluate import Evaluation, evaluate
from piigate.policy.holder import PolicyHolder
from piigate.risk.port import RiskEngine
from piigate.stepup.binding import LazyBinding
from piigate.stepup.grants import GrantRejection, grant_mismatch
from piigate.stepup.ports import AuditSink, ChallengeStore, GrantLedger
from piigate.stepup.records import decision_event
from piigate.stepup.reuse import ChallengeReuse

__all__ = ["AMR_METHODS", "Engine", "GrantVerifier", "Outcome"]

log = structlog.get_logger("piigate.engine")

# RFC 8176 authentication method references → the policy factor that produces them.
AMR_METHODS: dict[str, Method] = {
    "otp": Method.TOTP,
    "sms": Method.SMS,
    "hwk": Method.WEBAUTHN,
    "swk": Method.WEBAUTHN,
    "fpt": Method.WEBAUTHN,
    "face": Method.WEBAUTHN,
    "mca": Method.PUSH,
    "kba": Method.RECOVERY,
    # Not an RFC 8176 value (none fits): approval of the step-up by another person.
    "approval": Method.APPROVAL,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class GrantVerifier(Protocol):
    def verify(self, token: str, *, now: datetime, expected_subject: str) -> Grant:
        """The grant the token carries; raises on any rejection (reason kept for the audit)."""
        ...

    async def learn(self, tokens: Sequence[str]) -> bool:
        """Learn the signing keys of ``tokens`` not known yet (another node rotated): True when
        one was learned, so that the tokens are worth verifying again."""
        ...


@dataclass(frozen=True, slots=True)
class _Collected:
    proven: tuple[ProvenLevel, ...]
    rejected: tuple[str, ...]  # rejection reasons of presented grants (never the tokens)


class Engine:
    def __init__(
        self,
        *,
        policy: PolicyHolder,
        risk: RiskEngine,
        grants: GrantVerifier | None,
        ledger: GrantLedger,
        challenges: ChallengeStore,
        audit: AuditSink,
        clock: Clock,
        ids: Callable[[str], str] = new_id,
        explain: bool = False,
    ) -> None:
        """``explain``: decisions carry the evaluation's rule-by-rule trace (``policy explain``);
        off, the hot path does not describe every rule it looks at."""
        self.policy = policy
        self.risk = risk
        self.grants = grants
        self.ledger = ledger
        self.challenges = challenges
        self.audit = audit
        self.clock = clock
        self.ids = ids
        self.explain = explain
        # An allow that masks names again the unlock challenge an earlier one opened.
        self.reuse = ChallengeReuse()

    async def decide(self, request: AccessRequest, *, caller: Caller | None = None) -> Decision:
        """The decision on ``request``, audited. ``caller`` is who asked (an app's API key, or a
        person): the decision's audit event names it, and it may answer the challenge. Grants
        are for the requester they were obtained for (``Caller.audience``): one obtained for
        another counts only for rules with ``grants_from: any_app``, and the binding digest
        covers the audience, so a grant bound to one app's request is never good for another
        app's."""
        _, audited = await self._decided(request, caller)
        return await audited

    async def decide_early(
        self, request: AccessRequest, *, caller: Caller | None = None
    ) -> tuple[Decision, asyncio.Task[Decision]]:
        """:meth:`decide` in two steps: the decision as soon as it is made, and the task that
        appends its audit event, whose result is the decision as audited (the challenge it
        names may differ: ``_commit``), or whose exception says it could not be. An edge may
        start work the decision allows (forward a safe request) meanwhile; nothing of the
        decision may reach the client before the task is done. The task has had its first turn
        when this returns: the commit is under way before the edge's own work starts."""
        decision, audited = await self._decided(request, caller)
        task = asyncio.ensure_future(audited)
        await asyncio.sleep(0)  # the task's first turn: the event handed to the audit sink
        return decision, task

    async def _decided(
        self, request: AccessRequest, caller: Caller | None
    ) -> tuple[Decision, Coroutine[Any, Any, Decision]]:
        """The decision, and the coroutine that appends its audit event (not started)."""
        audience = caller.audience if caller is not None else None
        now = self.clock.now()
        decision_id = self.ids("dec")
        compiled = self.policy.current
        if compiled is None:
            decision = Decision(decision_id, Outcome.DENY, reason="no policy loaded")
            event = decision_event(decision, request, caller, compiled=None, now=now)
            return decision, self._appended(decision, event)

        risk, collected, result = await self._evaluate(compiled, request, now, audience)
        challenge = fresh = None
        if result.required is not None and result.outcome is not Outcome.DENY:
            requested_by = caller.id if caller is not None else None
            challenge = self._challenge(
                compiled, request, result.required, decision_id, now, requested_by, audience
            )
            if result.outcome is Outcome.ALLOW:  # its unlock challenge: maybe one already open
                challenge, fresh = self._unlock(challenge, now)

        decision = Decision(
            id=decision_id,
            outcome=result.outcome,
            rules=result.rules,
            mask=result.mask,
            required=result.required,
            challenge=challenge,
            risk=risk,
            reason=result.reason,
            used=result.used,
            missing_scope=result.missing_scope,
            trace=result.trace,
            expr_errors=result.expr_errors,
            level=_strongest(compiled, result.used, collected.proven)
            if result.outcome is Outcome.ALLOW
            else None,
        )
        if result.expr_errors:
            # The rule names only: an error's message could quote a value from the request.
            log.warning("policy_expression_failed", rules=list(result.expr_errors))
        commit = self._commit(
            decision, request, caller, compiled, now, rejected=collected.rejected, fresh=fresh
        )
        return decision, commit

    # -- pipeline steps -------------------------------------------------------------------------
    async def _evaluate(
        self, compiled: CompiledPolicy, request: AccessRequest, now: datetime, audience: str | None
    ) -> tuple[RiskAssessment, _Collected, Evaluation]:
        """Risk, the proofs presented, the policy's answer, and bound grants spent."""
        risk, risk_failed = await self._assess(request, now=now)
        collected = self._collect_proofs(compiled, request, now=now, audience=audience)
        if (
            GrantRejection.UNKNOWN_KEY in collected.rejected
            and self.grants is not None
            and await self.grants.learn(request.grants)
        ):
            collected = self._collect_proofs(compiled, request, now=now, audience=audience)
        binding = LazyBinding(request, audience=audience)
        result = evaluate(
            compiled,
            request,
            risk,
            collected.proven,
            now=now,
            binding=binding,
            explain=self.explain,
        )
        result = await self._spend_bound_grants(
            compiled, request, risk, collected, result, now, binding
        )
        if risk_failed and request.pii and result.outcome is Outcome.ALLOW:
            # Fail closed: without a risk assessment PII is not released on an allow alone.
            result = Evaluation(Outcome.DENY, rules=result.rules, reason="risk engine unavailable")
        if compiled.shares_grants:  # otherwise another app's grant was refused on collection
            unused = [p for p in collected.proven if p.foreign and p not in result.used]
            if unused:  # another app's grants that no rule of this request took
                rejected = collected.rejected + ("wrong_audience",) * len(unused)
                collected = _Collected(collected.proven, rejected)
        return risk, collected, result

    def _unlock(self, opened: Challenge, now: datetime) -> tuple[Challenge, Challenge | None]:
        """The unlock challenge an allow names: one an earlier decision opened, if it binds the
        same and is young (``stepup/reuse.py``), with ``opened`` held back in case it turns out
        closed; else ``opened``, remembered from now on."""
        named = self.reuse.named(opened, now=now)
        if named is not None:
            return named, opened
        self.reuse.remember(opened)
        return opened, None

    async def _commit(
        self,
        decision: Decision,
        request: AccessRequest,
        caller: Caller | None,
        compiled: CompiledPolicy,
        now: datetime,
        *,
        rejected: tuple[str, ...],
        fresh: Challenge | None,
    ) -> Decision:
        """The decision's audit event appended, and the decision as audited. A new challenge
        is opened in the same group commit. One an earlier decision opened (``fresh`` held
        back) is named only if it can still be answered when the event commits; if not, nothing
        was appended, and the decision names ``fresh`` instead."""

        def event(audited: Decision) -> AuditEvent:
            return decision_event(
                audited, request, caller, compiled=compiled, now=now, rejected=rejected
            )

        named = decision.challenge
        if named is None:
            await self.audit.append(event(decision))
            return decision
        if fresh is not None:
            if await self.audit.append_if_open(event(decision), challenge_id=named.id, at=now):
                return decision
            self.reuse.forget(named)  # answered, spent or expired meanwhile
            self.reuse.remember(fresh)
            decision, named = replace(decision, challenge=fresh), fresh
        await asyncio.gather(self.challenges.create(named), self.audit.append(event(decision)))
        return decision

    async def _appended(self, decision: Decision, event: AuditEvent) -> Decision:
        await self.audit.append(event)
        return decision

    async def _assess(
        self, request: AccessRequest, *, now: datetime
    ) -> tuple[RiskAssessment, bool]:
        try:
            return await self.risk.assess(request, now=now), False
        except ServiceUnavailable:
            log.warning("risk_engine_unavailable")
        except Exception:
            log.exception("risk_engine_failed")
        signal = Signal("risk_unavailable", 100, "the risk engine failed; treated as highest risk")
        return RiskAssessment(100, (signal,)), True

    def _collect_proofs(
        self,
        compiled: CompiledPolicy,
        request: AccessRequest,
        *,
        now: datetime,
        audience: str | None,
    ) -> _Collected:
        proven: list[ProvenLevel] = []
        session = request.session
        level = session.level or compiled.level_for_acr(session.acr)
        if level is not None and level in compiled.ranks:
            proven.append(
                ProvenLevel(
                    level=level,
                    auth_time=session.auth_time or _EPOCH,
                    source="idp",
                    methods=frozenset(AMR_METHODS[a] for a in session.amr if a in AMR_METHODS),
                )
            )
        rejected: list[str] = []
        for token in request.grants:
            if self.grants is None:
                rejected.append("grants_disabled")
                continue
            try:
                grant = self.grants.verify(token, now=now, expected_subject=request.subject.id)
            except Exception as exc:
                rejected.append(str(getattr(exc, "reason", type(exc).__name__)))
                continue
            mismatch = grant_mismatch(grant, request)
            foreign = audience is None or grant.audience != audience
            if mismatch is None and foreign and not compiled.shares_grants:
                mismatch = "wrong_audience"  # no rule could take another app's grant
            if mismatch is not None:
                rejected.append(mismatch)
                continue
            proven.append(
                ProvenLevel(
                    level=grant.level,
                    auth_time=grant.auth_time,
                    source="grant",
                    binding=grant.binding,
                    scope=grant.scope,
                    grant_id=grant.id,
                    methods=frozenset(AMR_METHODS[a] for a in grant.amr if a in AMR_METHODS),
                    expires_at=grant.expires_at,
                    foreign=foreign,
                )
            )
        return _Collected(tuple(proven), tuple(rejected))

    async def _spend_bound_grants(
        self,
        compiled: CompiledPolicy,
        request: AccessRequest,
        risk: RiskAssessment,
        collected: _Collected,
        result: Evaluation,
        now: datetime,
        binding: LazyBinding,
    ) -> Evaluation:
        """A bound grant is single use: spend it atomically, and if it was already spent
        evaluate again without it (so a replay gets the step-up, not the allow)."""
        proven = list(collected.proven)
        while result.outcome is Outcome.ALLOW:
            bound = [p for p in result.used if p.binding is not None and p.grant_id is not None]
            if not bound:
                return result
            replayed = []
            for proof in bound:
                assert proof.grant_id is not None
                expires = proof.expires_at or now + timedelta(hours=1)
                if not await self.ledger.consume(proof.grant_id, expires_at=expires, now=now):
                    replayed.append(proof)
            if not replayed:
                return result
            proven = [p for p in proven if p not in replayed]
            result = evaluate(
                compiled, request, risk, proven, now=now, binding=binding, explain=self.explain
            )
        return result

    def _challenge(
        self,
        compiled: CompiledPolicy,
        request: AccessRequest,
        required: Requirement,
        decision_id: str,
        now: datetime,
        requested_by: str | None,
        audience: str | None,
    ) -> Challenge:
        settings = compiled.policy.stepup
        return Challenge(
            id=self.ids("chl"),
            subject_id=request.subject.id,
            requirement=required,
            action=request.action,
            pii=request.pii,
            resource=request.resource,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.challenge_ttl),
            transaction=request.transaction,
            session_id=request.session.id,
            device_id=request.context.device_id,
            decision_id=decision_id,
            requested_by=requested_by,
            audience=audience,
            max_attempts=settings.max_attempts,
        )


def _strongest(
    compiled: CompiledPolicy, used: Sequence[ProvenLevel], proven: Sequence[ProvenLevel]
) -> str | None:
    """The strongest level among the proofs an allow relied on and the session's own (which
    holds for any request of the session)."""
    levels = [p.level for p in used]
    levels.extend(p.level for p in proven if p.source == "idp")
    return max(levels, key=lambda name: compiled.ranks.get(name, -1), default=None)
