"""Two ``piigate serve`` processes sharing one PostgreSQL database and keyring: a TOTP code
accepted by one is refused by the other, even when both receive it at the same moment."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pyotp
import pytest
from api_support import bearer, decision_body
from test_api_process import piigate

from loopback_support import free_port
from serve_support import run_piigate, serving

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PASSWORD = "correct horse battery staple"
PUBLIC_URL = "http://piigate.test"


async def step_up(base: str, key: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.post(
            "/v1/decisions", json=decision_body("update", ["ssn"]), headers=bearer(key)
        )
    body = response.json()
    assert body["outcome"] == "step_up", body
    challenge_id: str = body["challenge"]["id"]
    return challenge_id


def prepare(env: dict[str, str]) -> str:
    """User alice and an app's API key, made with the CLI; returns the key."""
    run_piigate(env, "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    created = piigate(env, "keys", "create", "app", "--scope", "decisions")
    assert created.returncode == 0, created.stderr
    return next(w for w in created.stdout.split() if w.startswith("pgk_"))


async def test_a_totp_code_is_accepted_by_one_process_only(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PIIGATE_DATA_DIR": str(tmp_path / "data"),  # one keyring for both processes
        "PIIGATE_DATABASE_URL": postgres_url,
        "PIIGATE_LOG_FORMAT": "json",
        "PIIGATE_PUBLIC_URL": PUBLIC_URL,  # one service behind a load balancer
    }
    key = await asyncio.to_thread(prepare, env)

    port_a, port_b = free_port(), free_port()
    with serving(env, port_a, tmp_path / "a.log"), serving(env, port_b, tmp_path / "b.log"):
        a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        async with (
            # A browser on the service's pages: its origin goes with the session cookie.
            httpx.AsyncClient(base_url=a, timeout=10, headers={"Origin": PUBLIC_URL}) as alice_a,
            httpx.AsyncClient(base_url=b, timeout=10, headers={"Origin": PUBLIC_URL}) as alice_b,
        ):
            logged_in = await alice_a.post(
                "/v1/login", json={"username": "alice", "password": PASSWORD}
            )
            assert logged_in.status_code == 200, logged_in.text
            alice_b.cookies = alice_a.cookies  # the session lives in the shared store
            started = await alice_a.post("/v1/factors/totp", json={"label": "phone"})
            assert started.status_code == 201, started.text
            factor_id, secret = started.json()["id"], started.json()["secret"]
            totp = pyotp.TOTP(secret)
            confirmed = await alice_b.post(
                f"/v1/factors/totp/{factor_id}/confirm", json={"code": totp.now()}
            )
            assert confirmed.status_code == 200, confirmed.text

            # The confirmation spent the current step; the next step's code is still within
            # the ±1 step window, so it is fresh without waiting for the clock.
            code = totp.at(time.time() + 30)
            first, second = await step_up(a, key), await step_up(b, key)
            answers = await asyncio.gather(
                alice_a.post(
                    f"/v1/challenges/{first}/verify", json={"method": "totp", "code": code}
                ),
                alice_b.post(
                    f"/v1/challenges/{second}/verify", json={"method": "totp", "code": code}
                ),
            )
            # One process accepts the code; the other refuses it: the vague 401, or the
            # back-off's 429 when it is charged while the winner's attempt is (every attempt
            # is charged as a failure before its proof is read, and refunded once it succeeds,
            # so that parallel guesses can never exceed the cap).
            statuses = sorted(r.status_code for r in answers)
            assert statuses[0] == 200 and statuses[1] in (401, 429), [r.text for r in answers]
            # Sent again later, to either process, it stays refused.
            third = await step_up(b, key)
            again = await alice_b.post(
                f"/v1/challenges/{third}/verify", json={"method": "totp", "code": code}
            )
            if again.status_code == 429:
                # The refused answer above started the factor's back-off; a quick machine gets
                # here inside it. Wait it out: the code must then be refused on its merits.
                await asyncio.sleep(int(again.headers["retry-after"]))
                again = await alice_b.post(
                    f"/v1/challenges/{third}/verify", json={"method": "totp", "code": code}
                )
            assert again.status_code == 401
    for log in ("a.log", "b.log"):
        assert code not in (tmp_path / log).read_text()
