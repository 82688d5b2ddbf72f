"""The demo's parts, in process: its identity provider's tokens as piigate reads them, the
accounts made once and kept sealed, ``piigate demo code``'s codes, the PostgreSQL side when no
server answers, the data directory, and the walkthrough's shape."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from demo_support import parse_walkthrough
from starlette.applications import Starlette
from starlette.routing import Mount

from piigate.api.services import Services
from piigate.clock import FixedClock
from piigate.config import Settings
from piigate.crypto.secret import Secret
from piigate.demo.accounts import ACCOUNTS_FILE, DemoAccounts, DemoSetupError, demo_accounts
from piigate.demo.codes import code_step, demo_code
from piigate.demo.idp import AAL1_ACR, DemoIdp, DemoUser
from piigate.demo.postgres import start_postgres_side
from piigate.demo.stack import DEMO_CONFIG, MARKER, listening, prepare_data_dir
from piigate.demo.walkthrough import DemoPlaces, curl_walkthrough
from piigate.factors.totp.protocol import totp_step, verify_totp
from piigate.identity import JwtValidator
from piigate.identity.errors import InvalidToken
from piigate.policy.holder import PolicyHolder

T0 = datetime(2026, 3, 2, 9, 0, 10, tzinfo=UTC)  # 10 s into a TOTP step
ISSUER = "http://127.0.0.1:9/idp"


def _idp(clock: FixedClock) -> DemoIdp:
    users = {"demo": DemoUser("demo", Secret("right-password"), ("support",))}
    return DemoIdp(ISSUER, "piigate-demo", users, clock=clock)


def _client(idp: DemoIdp) -> httpx.AsyncClient:
    company = Starlette(routes=[Mount("/idp", idp.app())])
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=company), base_url="http://127.0.0.1:9"
    )


async def test_idp_tokens_are_read_by_piigate_as_the_person_with_their_roles() -> None:
    clock = FixedClock(T0)
    idp = _idp(clock)
    async with _client(idp) as client:
        answer = await client.post(
            "/idp/token",
            data={"grant_type": "password", "username": "demo", "password": "right-password"},
        )
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
        token = answer.json()["access_token"]
        holder = PolicyHolder.from_file(str(DEMO_CONFIG))
        validator = JwtValidator(
            ISSUER, "piigate-demo", idp.jwks_url, http=client, level_resolver=holder.level_for_acr
        )
        read = await validator.validate(token, now=clock.now())
    assert read.subject.id == "demo" and read.subject.roles == frozenset({"support"})
    assert read.session.acr == AAL1_ACR and read.session.level == "aal1"
    assert read.session.amr == ("pwd",) and read.session.id


async def test_idp_refuses_wrong_passwords_alike_and_other_grants() -> None:
    idp = _idp(FixedClock(T0))
    async with _client(idp) as client:
        wrong = await client.post(
            "/idp/token", data={"grant_type": "password", "username": "demo", "password": "x"}
        )
        nobody = await client.post(
            "/idp/token", data={"grant_type": "password", "username": "eve", "password": "x"}
        )
        other = await client.post("/idp/token", data={"grant_type": "client_credentials"})
    assert wrong.status_code == nobody.status_code == 400
    assert wrong.json() == nobody.json() and wrong.json()["error"] == "invalid_grant"
    assert other.json()["error"] == "unsupported_grant_type"


async def test_a_token_of_another_demo_run_is_refused() -> None:
    clock = FixedClock(T0)
    earlier, now = _idp(clock), _idp(clock)  # a new key on every start
    async with _client(now) as client:
        validator = JwtValidator(ISSUER, "piigate-demo", now.jwks_url, http=client)
        with pytest.raises(InvalidToken):
            await validator.validate(earlier.token_for(earlier.users["demo"]), now=clock.now())


def test_code_step_waits_for_the_next_step_only_when_this_one_was_used() -> None:
    step = totp_step(T0)
    assert code_step(T0, None) == (step, 0.0)
    assert code_step(T0, step - 1) == (step, 0.0)
    assert code_step(T0, step) == (step + 1, 20.0)  # T0 is 10 s into its 30 s step


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """A node as the demo runs it (its policy, a data directory), audit in a thread."""
    settings = Settings(
        policy_path=str(DEMO_CONFIG),
        data_dir=tmp_path / "data",
        public_url="http://localhost:8080",
        public_url_configured=True,
        audit_writer="thread",
    )
    prepare_data_dir(settings.data_dir, reset=False)
    node = Services(settings, clock=FixedClock(T0))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def test_accounts_are_made_once_and_kept_sealed(services: Services) -> None:
    data_dir = services.settings.data_dir
    made = await demo_accounts(services, data_dir)
    again = await demo_accounts(services, data_dir)
    assert again == made
    assert {u.name for u in made.users} == {"demo", "admin"}
    assert made.user("admin").roles == ("admin", "security")
    kept = (data_dir / ACCOUNTS_FILE).read_bytes()
    for user in made.users:
        assert user.password.reveal().encode() not in kept
    assert made.events_key.reveal().encode() not in kept
    assert (data_dir / ACCOUNTS_FILE).stat().st_mode & 0o077 == 0


async def test_the_demo_code_is_the_enrolled_factors_and_is_not_reused(
    services: Services,
) -> None:
    await demo_accounts(services, services.settings.data_dir)
    [factor] = await services.store.list_factors("demo", kinds=["totp"], states=["active"])
    first = await demo_code(services.store, services.keyring, "demo", now=T0)
    assert first.wait == 0  # the enrolment confirmed the previous step's code
    secret = Secret(await _secret(services, factor.id))
    match = verify_totp(secret, first.code.reveal(), at=T0, last_step=factor.last_step)
    assert match.step == totp_step(T0)
    await services.store.advance_totp_step(factor.id, expected=factor.last_step, new=match.step)
    second = await demo_code(services.store, services.keyring, "demo", now=T0)
    assert second.wait == 20 and second.code != first.code
    later = T0 + timedelta(seconds=20)
    assert verify_totp(secret, second.code.reveal(), at=later, last_step=match.step)


async def _secret(services: Services, factor_id: str) -> str:
    from piigate.factors.ports import factor_aad

    factor = await services.store.get_factor(factor_id)
    assert factor is not None and factor.secret is not None
    return (await services.keyring.adecrypt(factor.secret, aad=factor_aad(factor_id))).decode()


async def test_without_a_postgresql_server_the_demo_says_so_and_goes_on(
    services: Services,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    env = {"PIIGATE_DEMO_POSTGRES_URL": f"postgresql://postgres:hunter2@127.0.0.1:{closed}/x"}
    side = await start_postgres_side(services, str(DEMO_CONFIG), port=1, reset=False, env=env)
    assert side.gateway is None
    assert side.note.startswith(
        f"PostgreSQL: not reachable at postgresql://postgres@127.0.0.1:{closed}/x"
    )
    assert "hunter2" not in side.note and "\n" not in side.note


def test_reset_deletes_only_the_demos_own_directory(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.db").write_text("keep me")
    with pytest.raises(DemoSetupError, match="not the demo's data directory"):
        prepare_data_dir(other, reset=True)
    assert (other / "precious.db").exists()
    mine = tmp_path / "mine"
    prepare_data_dir(mine, reset=False)
    (mine / "piigate.db").write_text("old")
    prepare_data_dir(mine, reset=True)
    assert sorted(p.name for p in mine.iterdir()) == [MARKER]
    assert mine.stat().st_mode & 0o077 == 0


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DemoSetupError) as refused:
            listening(port)
    assert f"127.0.0.1:{port}" in refused.value.detail and "--port" in refused.value.detail


def test_the_walkthrough_names_each_step_and_what_to_expect(tmp_path: Path) -> None:
    accounts = DemoAccounts(
        (
            DemoUser("demo", Secret("pw-demo"), ("support",)),
            DemoUser("admin", Secret("pw-admin"), ("admin", "security")),
        ),
        Secret("pgk_x"),
    )
    places = DemoPlaces(
        service="http://localhost:8080",
        api="http://127.0.0.1:8081",
        gateway="http://127.0.0.1:8082",
        data_dir=tmp_path / "a dir",
        piigate="/opt/piigate",
        python="/opt/python",
    )
    without = parse_walkthrough(curl_walkthrough(places, accounts))
    assert [s.key for s in without] == [
        "setup",
        "masking",
        "totp-step-up",
        "bound-transfer",
        "bulk-delete",
        "audit",
    ]
    expected = {s.key: s.expected_statuses() for s in without}
    assert expected["totp-step-up"] == [401, 200, 200]
    assert expected["bound-transfer"] == [401, 200, 401, 201, 401]
    assert f"DEMO='{tmp_path / 'a dir'}'" in without[0].text  # quoted for the shell
    places_pg = replace(places, postgres_port=8083, postgres_database="d")
    with_pg = parse_walkthrough(curl_walkthrough(places_pg, accounts))
    assert with_pg[-1].key == "postgres" and "-p 8083" in with_pg[-1].text
