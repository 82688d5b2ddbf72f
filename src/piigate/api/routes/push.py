"""Push approval over HTTP (CONTRACT §4.3, §4.4): the user's side and the device's side.

The user (or the app that asked for the decision):

- ``POST /v1/factors/push`` → ``{"id", "enroll_uri", "qr_svg", "expires_at"}``: a pending push
  factor and a one-time link (``piigate-push://enroll?url=...&token=...``) for the device;
- ``POST /v1/challenges/{id}/push`` → 202 ``{"number", "expires_at", ...}``: push the challenge
  to the subject's devices; the step-up page shows the number (also in
  ``GET /v1/challenges/{id}`` under ``push``), the device never receives it.

The device, every request signed with its key (:mod:`piigate.factors.push.protocol` documents the
canonical string; headers ``PIIGate-Device-Id``, ``PIIGate-Timestamp``, ``PIIGate-Nonce``,
``PIIGate-Signature``):

- ``POST /v1/devices`` ``{"token", "public_key", "alg", "name"}`` — complete the enrollment
  (signed with the new key, without a device id);
- ``GET /v1/devices/pending?wait=N`` — the pushes waiting for it, held open up to N seconds
  (long poll) until one arrives; ``GET /v1/devices/stream`` — the same as Server-Sent Events;
- ``POST /v1/devices/pushes/{id}`` ``{"decision": "approve", "number": NN}`` or
  ``{"decision": "deny"}``.

The device channel is the one place a transaction's payee goes out: the subject's own device
shows it, so the user approves what they see (dynamic linking).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from piigate.api.auth import ChallengeCaller, Person, presented_grant
from piigate.api.jsonbody import JsonRoute
from piigate.api.services import Services, get_services
from piigate.audit.bus import SubscriberLagged, Subscription, SubscriptionClosed
from piigate.crypto.secret import Secret
from piigate.factors.ports import FactorRecord
from piigate.factors.push.ceremony import PendingPush, PushCeremony, PushDecision
from piigate.factors.push.devices import SignedRequest
from piigate.factors.push.protocol import (
    DEVICE_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)

router = APIRouter(tags=["push"], route_class=JsonRoute)

NO_STORE = "no-store"
# A long poll is held at most this long; devices poll again (proxies cut idle requests ~30 s).
MAX_WAIT_SECONDS = 30
# How often a waiting request looks at the store for pushes sent from other nodes.
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
# A stream ends after this long; the device reconnects with a fresh signature.
STREAM_SECONDS = 300.0
_WAKE_TYPES = ("push_sent",)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PushEnrollIn(_In):
    label: Annotated[str, Field(max_length=64)] = ""


class DeviceEnrollIn(_In):
    token: Annotated[str, Field(min_length=1, max_length=256)]
    # A JWK object, or an SPKI as PEM or base64 (checked by factors.push.parse_public_key).
    public_key: Annotated[str, Field(min_length=1, max_length=4096)] | dict[str, Any]
    alg: Annotated[str, Field(min_length=1, max_length=16)]
    name: Annotated[str, Field(min_length=1, max_length=64)] = "device"


class PushSendIn(_In):
    factor_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class PushAnswerIn(_In):
    decision: PushDecision
    # Not range-checked here: a wrong number is a failed verification (counted), not a 422.
    number: Annotated[int, Field(ge=-(10**6), le=10**6)] | None = None


def _push(request: Request) -> PushCeremony:
    return get_services(request).push


async def signed_request(request: Request) -> SignedRequest:
    """What a device signed: method, the path and query exactly as sent, the body, and the
    signature headers (empty when absent: the ceremony then refuses the request)."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    # Some servers put the query into raw_path, others do not: take the path part only.
    path = bytes(raw_path).split(b"?", 1)[0].decode("latin-1")
    query = bytes(request.scope.get("query_string", b"")).decode("latin-1")
    headers = request.headers
    return SignedRequest(
        device_id=headers.get(DEVICE_ID_HEADER, ""),
        method=request.method,
        target=f"{path}?{query}" if query else path,
        timestamp=headers.get(TIMESTAMP_HEADER, ""),
        nonce=headers.get(NONCE_HEADER, ""),
        signature=headers.get(SIGNATURE_HEADER, ""),
        body=await request.body(),
    )


async def require_device(request: Request) -> FactorRecord:
    """The push factor whose key signed this request (401 ``device_unauthorized`` otherwise)."""
    return await _push(request).devices.authenticate(await signed_request(request))


Device = Annotated[FactorRecord, Depends(require_device)]


def pending_json(push: PendingPush) -> dict[str, Any]:
    """What the device shows: who, what, how much to whom, from where — never the number."""
    challenge = push.challenge
    body: dict[str, Any] = {
        "id": push.id,
        "challenge_id": challenge.id,
        "created_at": int(push.created_at.timestamp()),
        "expires_at": int(push.expires_at.timestamp()),
        "subject": challenge.subject_id,
        "action": challenge.action.value,
        "pii": sorted(challenge.pii),
        "resource": {"type": challenge.resource.type, "id": challenge.resource.id},
        "level": challenge.requirement.level,
        # Where from: what the challenge keeps (no IP or user agent is stored with it).
        "context": {"requested_by": challenge.requested_by, "device_id": challenge.device_id},
        "transaction": None,
    }
    if challenge.transaction is not None:
        txn = challenge.transaction
        body["transaction"] = {
            "amount": str(txn.amount),
            "currency": txn.currency,
            "payee": txn.payee,
        }
    return body


# -- the user's side ----------------------------------------------------------------------------
@router.post(
    "/v1/factors/push",
    status_code=201,
    tags=["factors"],
    summary="Start a push enrollment: a one-time link for the device",
)
async def enroll_push(
    request: Request, response: Response, user: Person, body: PushEnrollIn | None = None
) -> dict[str, Any]:
    started = await _push(request).devices.start_enrollment(
        user.id, label=body.label if body else "", grant=presented_grant(request)
    )
    response.headers["Cache-Control"] = NO_STORE
    return {
        "id": started.factor.id,
        "enroll_uri": started.uri.reveal(),
        "qr_svg": started.qr_svg,
        "expires_at": int(started.expires_at.timestamp()),
        "state": started.factor.state,
    }


@router.post(
    "/v1/challenges/{challenge_id}/push",
    status_code=202,
    tags=["challenges"],
    summary="Push the challenge to the subject's devices; the number to show",
)
async def send_push(
    challenge_id: str,
    request: Request,
    response: Response,
    caller: ChallengeCaller,
    body: PushSendIn | None = None,
) -> dict[str, Any]:
    """The challenge's subject, or the app that asked for the decision (its API key), may send
    it. While a push is open, asking again returns it (same number) and sends nothing."""
    sent = await _push(request).send(
        challenge_id, caller=caller, factor_id=body.factor_id if body else None
    )
    response.headers["Cache-Control"] = NO_STORE
    return {
        "number": sent.number,
        "expires_at": int(sent.expires_at.timestamp()),
        "devices": len(sent.devices),
        "sent": sent.sent,
    }


# -- the device's side --------------------------------------------------------------------------
@router.post("/v1/devices", status_code=201, summary="Complete a push enrollment (the device)")
async def enroll_device(body: DeviceEnrollIn, request: Request) -> dict[str, Any]:
    factor = await _push(request).devices.complete_enrollment(
        await signed_request(request),
        token=Secret(body.token),
        public_key=body.public_key,
        alg=body.alg,
        name=body.name,
    )
    return {"device_id": factor.id, "factor_id": factor.id, "subject": factor.subject_id}


@router.get("/v1/devices/pending", summary="Pushes waiting for this device (long poll)")
async def list_pending(
    request: Request,
    device: Device,
    wait: Annotated[int, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
) -> dict[str, Any]:
    services = get_services(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    subscription = services.bus.subscribe(types=_WAKE_TYPES)
    try:
        while True:
            pushes = await services.push.pending(device)
            left = deadline - loop.time()
            if pushes or left <= 0 or await request.is_disconnected():
                break
            subscription = await _wait(services, subscription, min(POLL_SECONDS, left))
    except SubscriptionClosed:  # the node is stopping: answer with what there is
        pushes = []
    finally:
        subscription.close()
    return {"pushes": [pending_json(p) for p in pushes]}


async def _wait(services: Services, subscription: Subscription, seconds: float) -> Subscription:
    """Sleep until a push is sent on this node or ``seconds`` pass (other nodes' pushes are
    found by the next look at the store). A lagged subscription is renewed."""
    with contextlib.suppress(TimeoutError, SubscriberLagged):
        await asyncio.wait_for(subscription.get(), seconds)
    if subscription.lagged:
        subscription.close()
        return services.bus.subscribe(types=_WAKE_TYPES)
    return subscription


@router.get(
    "/v1/devices/stream",
    summary="Pushes for this device (text/event-stream)",
    response_class=StreamingResponse,
)
async def stream_pending(request: Request, device: Device) -> StreamingResponse:
    services = get_services(request)
    return StreamingResponse(
        _sse(services, request, device),
        media_type="text/event-stream",
        headers={"Cache-Control": NO_STORE, "X-Accel-Buffering": "no"},
    )


async def _sse(services: Services, request: Request, device: FactorRecord) -> AsyncIterator[str]:
    """Each push once, as ``event: push`` (``id`` = push id), then heartbeats; the stream ends
    after :data:`STREAM_SECONDS` so the device signs a fresh request."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    last_sent = loop.time()
    shown: set[str] = set()
    subscription = services.bus.subscribe(types=_WAKE_TYPES)
    yield "retry: 2000\n\n"
    try:
        while loop.time() < ends and not await request.is_disconnected():
            for push in await services.push.pending(device):
                if push.id in shown:
                    continue
                shown.add(push.id)
                payload = json.dumps(pending_json(push), separators=(",", ":"))
                yield f"id: {push.id}\nevent: push\ndata: {payload}\n\n"
                last_sent = loop.time()
            if loop.time() - last_sent > HEARTBEAT_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = loop.time()
            subscription = await _wait(services, subscription, POLL_SECONDS)
    except SubscriptionClosed:
        return
    finally:
        subscription.close()


@router.post("/v1/devices/pushes/{push_id}", summary="Answer a push (the device)")
async def answer_push(
    push_id: str, body: PushAnswerIn, request: Request, device: Device
) -> dict[str, Any]:
    """Approve with the number the step-up page shows, or deny ("this wasn't me"). A wrong
    number: the vague 401 ``factor_rejected``; a push already answered, expired or closed: 409
    ``push_closed``, saying which."""
    state = await _push(request).answers.answer(device, push_id, body.decision, body.number)
    return {"id": push_id, "state": state.value}
