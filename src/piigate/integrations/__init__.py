"""piigate in your Python app: a typed client, a FastAPI dependency and an ASGI middleware.

- :class:`PiigateClient`: the decision and challenge endpoints of a piigate service, typed
  (``client.py``, its answers in ``answers.py``).
- :func:`configure`, :func:`require_pii`, :func:`mask` (``fastapi.py``): an endpoint declares
  the PII it touches and gets the gateway's answers (401 step-up with the challenge, 403, 503)
  or, on allow, the verdict with the classes to mask.
- :class:`PiigateMiddleware` (``middleware.py``): the HTTP gateway's routes configuration in
  front of an app's own endpoints, in process, masking JSON answers as the proxy does.

The engine is in this process (``engine=EngineDecider(...)``: ``in_process(services)`` gives a
started node's, with its API keys) or a piigate service's (``client=PiigateClient(url, key)``);
callers are identified by your identity provider's bearer tokens (``identity=JwtValidator(...)``)
and, with ``api_keys=``, by piigate API keys.
An edge: it builds the engine's requests from HTTP and renders its verdicts, with no policy
logic of its own (the gate, masking and verdicts are ``gateway/http/``'s).
"""

from __future__ import annotations

from piigate.gateway.http.assemble import in_process
from piigate.gateway.http.deciders import EngineDecider
from piigate.gateway.http.verdict import Verdict
from piigate.integrations.answers import (
    ChallengeInfo,
    ChallengeStatus,
    Granted,
    PushSent,
    SmsSent,
    WebAuthnOptions,
)
from piigate.integrations.client import (
    PiigateBadAnswer,
    PiigateClient,
    PiigateClientError,
    PiigateNetworkError,
    PiigateProblem,
)
from piigate.integrations.fastapi import (
    PiigateRefusal,
    configure,
    mask,
    refusal_response,
    require_pii,
)
from piigate.integrations.middleware import AnswerNotMaskable, PiigateMiddleware
from piigate.model import (
    AccessRequest,
    Action,
    Context,
    Outcome,
    Resource,
    SessionAuth,
    Subject,
    Transaction,
)

__all__ = [
    "AccessRequest",
    "Action",
    "AnswerNotMaskable",
    "ChallengeInfo",
    "ChallengeStatus",
    "Context",
    "EngineDecider",
    "Granted",
    "Outcome",
    "PiigateBadAnswer",
    "PiigateClient",
    "PiigateClientError",
    "PiigateMiddleware",
    "PiigateNetworkError",
    "PiigateProblem",
    "PiigateRefusal",
    "PushSent",
    "Resource",
    "SessionAuth",
    "SmsSent",
    "Subject",
    "Transaction",
    "Verdict",
    "WebAuthnOptions",
    "configure",
    "in_process",
    "mask",
    "refusal_response",
    "require_pii",
]
