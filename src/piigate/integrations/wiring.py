"""How ``require_pii`` and ``PiigateMiddleware`` get their gate, the same way for both and the
same way as the reverse proxy and forward-auth (``gateway/http/assemble.py``):

- the engine: ``engine=`` (a decider in this process: ``EngineDecider``, e.g. from
  ``assemble.in_process(services)``) or ``client=`` (a
  :class:`~piigate.integrations.client.PiigateClient`: a piigate service's engine);
- who calls: the bearer tokens of ``identity=`` (a ``JwtValidator``; a ``gateway.http.identity``
  section names its own instead) and, with ``api_keys=``, piigate API keys;
- the rate limits of ``rate_limit``, counted in memory or in its Redis (closed with the gate).

A wrong combination is a ``ValueError`` when the app is set up, never a request let through.
"""

from __future__ import annotations

import structlog

from piigate.callers import Caller
from piigate.clock import Clock, SystemClock
from piigate.errors import ServiceUnavailable
from piigate.gateway.http.assemble import AssembledGate, assemble_gate
from piigate.gateway.http.config import HttpGatewayConfig
from piigate.gateway.http.gate import ApiKeyLookup, Decider
from piigate.gateway.http.verdict import Audited, Verdict, already_audited
from piigate.identity import JwtValidator
from piigate.integrations.client import PiigateClient, PiigateClientError, PiigateProblem
from piigate.model import AccessRequest
from piigate.policy.holder import PolicyHolder

__all__ = ["ClientDecider", "app_gate"]

log = structlog.get_logger("piigate.integrations")


class ClientDecider:
    """The engine of a piigate service, asked through ``client`` with the app's API key. Any
    failure (unreachable, an error answer, an unreadable one) is a 503: fail closed."""

    def __init__(self, client: PiigateClient) -> None:
        self.client = client

    async def decide(self, request: AccessRequest, caller: Caller) -> Verdict:
        try:
            return await self.client.decide(request)
        except PiigateClientError as exc:
            status = exc.status if isinstance(exc, PiigateProblem) else None
            log.warning("piigate_decision_failed", error=type(exc).__name__, status=status)
            raise ServiceUnavailable("the decision service cannot decide right now") from None

    async def decide_early(self, request: AccessRequest, caller: Caller) -> tuple[Verdict, Audited]:
        """The service answers once its decision is audited: nothing left to await."""
        return already_audited(await self.decide(request, caller))


def app_gate(
    config: HttpGatewayConfig,
    *,
    engine: Decider | None,
    client: PiigateClient | None,
    identity: JwtValidator | None,
    api_keys: ApiKeyLookup | None,
    clock: Clock | None,
) -> AssembledGate:
    """The gate of ``config`` for an app (see the module's doc)."""
    if (engine is None) == (client is None):
        raise ValueError("pass engine= (in this process) or client= (a piigate service), one")
    if identity is None and api_keys is None and config.identity is None:
        raise ValueError(
            "who calls? pass identity=JwtValidator(issuer, audience, jwks_url) (your identity "
            "provider's bearer tokens) and/or api_keys= (piigate API keys)"
        )
    if engine is None:
        assert client is not None
        engine = ClientDecider(client)
    # The policy turns a token's acr into a level; the engine does it too when none is given.
    return assemble_gate(
        config,
        decider=engine,
        api_keys=api_keys,
        policy=PolicyHolder(),
        clock=clock or SystemClock(),
        jwt=identity,
    )
