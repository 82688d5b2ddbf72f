"""The gateway's remote engine: ``POST /v1/decisions`` of a real node, read into a verdict."""

from __future__ import annotations

import pytest
from api_support import Node

from loopback_support import free_port, serve_uvicorn
from piigate.callers import Caller
from piigate.errors import ServiceUnavailable
from piigate.gateway.http.deciders import RemoteDecider
from piigate.model import (
    AccessRequest,
    Action,
    Resource,
    Subject,
)


def _update_ssn(subject: str = "alice") -> AccessRequest:
    return AccessRequest(
        subject=Subject(subject),
        action=Action.UPDATE,
        pii=frozenset({"ssn"}),
        resource=Resource("customer", "42"),
        binding_fields={"method": "PUT", "target": "0" * 64},
    )


async def test_a_remote_decision_is_the_engine_s(node: Node, api_key: str) -> None:
    async with serve_uvicorn(node.app) as base:
        decider = RemoteDecider(base, api_key)
        try:
            verdict = await decider.decide(_update_ssn(), Caller.person("alice"))
        finally:
            await decider.aclose()
    assert verdict.outcome.value == "step_up"
    assert verdict.acr_values == ("urn:piigate:aal2",)
    assert verdict.max_age == 300
    assert verdict.challenge is not None
    cid = verdict.challenge["id"]
    assert verdict.challenge["verify_url"] == f"{base}/v1/challenges/{cid}/verify"
    stored = await node.services.challenges.get(cid)
    assert stored is not None and stored.subject_id == "alice"


async def test_a_refused_key_or_an_unreachable_engine_fails_closed(node: Node) -> None:
    async with serve_uvicorn(node.app) as base:
        decider = RemoteDecider(base, "pgk_wrong")
        gone = RemoteDecider(f"http://127.0.0.1:{free_port()}", "pgk_x", timeout=1)
        try:
            for each in (decider, gone):
                with pytest.raises(ServiceUnavailable):
                    await each.decide(_update_ssn(), Caller.person("alice"))
        finally:
            await decider.aclose()
            await gone.aclose()
