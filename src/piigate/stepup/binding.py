"""The binding digest: what a ``max_age: 0`` step-up (and its single-use grant) is bound to.

It covers the subject, what they do, to which record, touching which PII classes, with which
transaction (amount, currency, payee — PSD2 RTS Art. 5 dynamic linking), the requester that asked
for the decision (``Caller.audience``: the same request from another app is another request),
plus whatever the edge adds to identify the one request (method, path, body field digests).
Values are hashed, never stored, so the digest can travel in audit events and grants without
leaking PII.
"""

from __future__ import annotations

import hashlib
import json

from piigate.model import AccessRequest

__all__ = ["LazyBinding", "binding_digest"]


def binding_digest(request: AccessRequest, *, audience: str | None = None) -> str:
    """The digest of ``request`` as asked for by ``audience`` (None: no requester named)."""
    txn = request.transaction
    payload = {
        "aud": audience,
        "sub": request.subject.id,
        "act": request.action.value,
        "res": [request.resource.type, request.resource.id],
        "pii": sorted(request.pii),
        "txn": [str(txn.amount.normalize()), txn.currency, txn.payee] if txn else None,
        "req": dict(sorted(request.binding_fields.items())),
    }
    return "sha256:" + hashlib.sha256(_ENCODER.encode(payload).encode()).hexdigest()


# json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False), built once:
# the engine computes a digest for every decision.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class LazyBinding:
    """:func:`binding_digest` of one request, computed the first time it is asked for.

    The engine passes this to the evaluation of every decision, but only a rule bound to its
    request (``max_age: 0``) or a bound grant ever reads it, so most decisions never pay for the
    canonical JSON and its hash.
    """

    __slots__ = ("_audience", "_digest", "_request")

    def __init__(self, request: AccessRequest, *, audience: str | None = None) -> None:
        self._request = request
        self._audience = audience
        self._digest: str | None = None

    def __call__(self) -> str:
        if self._digest is None:
            self._digest = binding_digest(self._request, audience=self._audience)
        return self._digest
