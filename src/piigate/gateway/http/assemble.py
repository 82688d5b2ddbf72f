"""A gate put together from its parts: the engine it asks, who may call, the rate limits.

One place for every edge that runs a :class:`~piigate.gateway.http.gate.Gate`: the reverse proxy
(``piigate gateway http``, ``cli/gateway.py``), forward-auth (``piigate serve``,
``api/services.py``) and an app's own middleware and FastAPI dependency
(``integrations/wiring.py``), so that they accept the same callers and count the same limits.

- Bearer JWTs: the IdP of ``gateway.http.identity`` when it is set (a validator of its own,
  closed with the gate); otherwise the one given (``piigate serve``'s ``service.identity``), or
  none (JWTs refused with a 401).
- API keys: the service's own (:func:`in_process`), or none (a remote engine's gateway).
- Rate limits: counted in memory or in the Redis of ``rate_limit.store``, when any is set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from piigate.api.auth import api_key_caller
from piigate.callers import Caller
from piigate.clock import Clock
from piigate.gateway.http.config import HttpGatewayConfig, IdentityConfig, RateLimits
from piigate.gateway.http.deciders import EngineDecider
from piigate.gateway.http.gate import ApiKeyLookup, Decider, Gate, GatewayCallers
from piigate.gateway.http.ratelimit import RateLimiter
from piigate.identity import JwtValidator
from piigate.policy.holder import PolicyHolder
from piigate.store.memory_counters import open_counters

if TYPE_CHECKING:
    from piigate.api.services import Services

__all__ = ["AssembledGate", "assemble_gate", "idp_validator", "in_process"]

Closer = Callable[[], Awaitable[Any]]


@dataclass
class AssembledGate:
    """A gate and what to close when it stops (its own JWT validator and counters)."""

    gate: Gate
    closers: list[Closer] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            await close()
        self.closers.clear()


def assemble_gate(
    config: HttpGatewayConfig,
    *,
    decider: Decider,
    api_keys: ApiKeyLookup | None,
    policy: PolicyHolder,
    clock: Clock,
    jwt: JwtValidator | None = None,
) -> AssembledGate:
    """The gate of ``config`` (see the module's doc for who may call and how limits count)."""
    closers: list[Closer] = []
    if config.identity is not None:
        jwt = idp_validator(config.identity, policy)
        closers.append(jwt.aclose)
    limiter = None
    if _any_limit(config.rate_limit):
        counters = open_counters(config.rate_limit.store)
        closers.append(counters.aclose)
        limiter = RateLimiter(config.rate_limit, counters, clock)
    callers = GatewayCallers(jwt=jwt, api_keys=api_keys, clock=clock)
    gate = Gate(config, callers=callers, decider=decider, limiter=limiter)
    return AssembledGate(gate, closers)


def idp_validator(identity: IdentityConfig, policy: PolicyHolder) -> JwtValidator:
    """A validator of ``identity``'s bearer JWTs, their ``acr`` read by the policy in force."""
    return JwtValidator(
        identity.issuer,
        identity.audience,
        identity.jwks_url,
        level_resolver=policy.level_for_acr,
        roles_claim=identity.roles_claim,
    )


def in_process(services: Services) -> tuple[EngineDecider, ApiKeyLookup]:
    """The engine of a started node, and its API keys: challenges link to its public URL."""

    async def api_keys(credential: str) -> Caller:
        return await api_key_caller(services, credential)

    decider = EngineDecider(services.engine, services.settings.public_url, services.devices)
    return decider, api_keys


def _any_limit(limits: RateLimits) -> bool:
    return any((limits.per_subject, limits.per_ip, limits.per_api_key, limits.per_route))
