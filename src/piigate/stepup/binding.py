"""The binding digest: what a ``max_age: 0`` step-up (and its single-use grant) is bound to.

It covers who asks, what they do, to which record, touching which PII classes, with which
transaction (amount, currency, payee — PSD2 RTS Art. 5 dynamic linking), plus whatever the edge
adds to identify the one request (method, path, body field digests). Values are hashed, never
stored, so the digest can travel in audit events and grants without leaking PII.
"""

from __future__ import annotations

import hashlib
import json

from piigate.model import AccessRequest

__all__ = ["binding_digest"]


def binding_digest(request: AccessRequest) -> str:
    txn = request.transaction
    payload = {
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
