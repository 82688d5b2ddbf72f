"""What the console's pages cost to serve: each page's server time against ``/healthz`` (the
smallest answer of the same app) in the same rounds.

Run: ``.venv/bin/python bench/console.py [--quick]``. One JSON object per line on stdout
(progress on stderr); see docs/BENCHMARKS.md. Nothing here asserts on time.

What runs, in this process on one event loop: one node (``create_app`` with its lifespan, the
example policy, SQLite in a temporary directory, the audit group commit in a thread) called over
ASGI with httpx (no sockets, so the time is the app's: routing, the session lookup, the store's
reads, the template, the security headers). A person signed in through ``/login`` (role
``admin``), 200 decisions made first so that the feed, the ranking and the charts have rows, and
one open challenge for the step-up page. Pages: ``/login`` (signed out), ``/stepup/{id}``,
``/me``, ``/security`` (the charts and the newest 50 events), ``/security/subjects``,
``/security/policy``; the baseline ``/healthz``. Rounds alternate the pages; each page's p50
over the rounds is reported with its ratio to the baseline's p50 of the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from _common import emit, logs_to_stderr, note
from piigate.api.app import create_app
from piigate.config import Settings
from piigate.crypto.secret import Secret
from piigate.identity import generate_api_key, hash_password

BENCH = "console"
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench password, not a secret"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _timed(client: httpx.AsyncClient, path: str, cookies: Any) -> float:
    client.cookies = cookies
    started = time.perf_counter()
    answer = await client.get(path)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"{path}: HTTP {answer.status_code}")
    return elapsed


async def _prepare(client: httpx.AsyncClient, services: Any, origin: str) -> tuple[Any, str]:
    """Sign in as an admin, make decisions, open a challenge: the session's cookies and the
    challenge id."""
    now = services.clock.now()
    await services.store.add_user("sam", hash_password(Secret(PASSWORD)), ["admin"], now)
    key_id, secret, digest = generate_api_key()
    await services.store.create_api_key(key_id, "bench", digest, [], ["decisions"], now)
    secret_text = secret.reveal()
    form = await client.get("/login")
    token = _TOKEN.search(form.text)
    assert token is not None
    fields = {"csrf_token": token.group(1), "username": "sam", "password": PASSWORD}
    signed = await client.post("/login", data=fields, headers={"Origin": origin})
    if signed.status_code != 303:
        raise SystemExit(f"sign-in: HTTP {signed.status_code}")
    bearer = {"Authorization": f"Bearer {secret_text}"}
    for n in range(200):
        body = {
            "subject": {"id": f"user-{n % 40}", "roles": ["support"]},
            "action": "update" if n % 3 == 0 else "read",
            "pii": ["ssn"],
            "resource": {"type": "customer", "id": str(n)},
        }
        await client.post("/v1/decisions", json=body, headers=bearer)
    step = {"subject": {"id": "sam"}, "action": "update", "pii": ["ssn"]}
    answer = (await client.post("/v1/decisions", json=step, headers=bearer)).json()
    return client.cookies, answer["challenge"]["id"]


async def run(rounds: int, per_round: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            policy_path=str(ROOT / "examples" / "policy.yaml"),
            data_dir=Path(tmp),
            audit_writer="thread",
        )
        app = create_app(settings)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(app.router.lifespan_context(app))
            origin = settings.public_url.rstrip("/")
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=origin)
            )
            cookies, challenge = await _prepare(client, app.state.services, origin)
            signed_out = httpx.Cookies()
            pages: dict[str, tuple[str, Any]] = {
                "healthz": ("/healthz", signed_out),
                "login": ("/login", signed_out),
                "stepup": (f"/stepup/{challenge}", cookies),
                "me": ("/me", cookies),
                "security": ("/security", cookies),
                "subjects": ("/security/subjects", cookies),
                "policy": ("/security/policy", cookies),
            }
            times: dict[str, list[float]] = {name: [] for name in pages}
            for path, jar in pages.values():  # warm-up
                for _ in range(5):
                    await _timed(client, path, jar)
            for n in range(rounds):
                order = list(pages)[n % len(pages) :] + list(pages)[: n % len(pages)]
                for name in order:
                    path, jar = pages[name]
                    for _ in range(per_round):
                        times[name].append(await _timed(client, path, jar))
                note(f"round {n + 1}/{rounds}")
    base = statistics.median(times["healthz"]) * 1e6
    for name, found in times.items():
        if name == "healthz":
            continue
        emit(
            BENCH,
            f"{name}_p50",
            statistics.median(found) * 1e6,
            "us",
            base,
            baseline_is="GET /healthz p50 of the same rounds",
            samples=len(found),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    logs_to_stderr()
    rounds, per_round = (4, 10) if args.quick else (10, 30)
    asyncio.run(run(rounds, per_round))


if __name__ == "__main__":
    sys.exit(main())
