"""Reading ``gateway.http`` (CONTRACT §7): what a configuration gives, its defaults, its
warnings; its errors are in ``test_gateway_config_errors.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support import GATEWAY, POLICY, policy

from piigate.gateway.http.config import (
    GatewayConfigError,
    HttpGatewayConfig,
    find_gateway_config,
    load_gateway_config,
    load_gateway_config_text,
)
from piigate.gateway.http.masking import KeepLast, Replace
from piigate.gateway.http.sections import (
    Default,
    ForwardHeaders,
    IdentityConfig,
    Rate,
    RateLimits,
    Timeouts,
    parse_rate,
    parse_size,
)
from piigate.model import Action
from piigate.policy import compile_policy, load_policy
from position_support import locate


def load(tmp_path: Path, text: str, name: str = "gateway.yaml") -> HttpGatewayConfig:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_gateway_config(str(path), policy())


def test_the_contract_example_loads(tmp_path: Path) -> None:
    config = load(tmp_path, GATEWAY)
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8081)
    assert config.upstream == "http://127.0.0.1:9000"
    assert config.identity == IdentityConfig(
        "https://idp.example", "customers-api", "https://idp.example/jwks"
    )
    assert config.rate_limit == RateLimits(per_subject=Rate(120, 60), per_ip=Rate(600, 60))
    assert config.default is Default.PASS
    assert config.headers == ForwardHeaders("PIIGate-Subject", "PIIGate-Level")
    assert config.warnings == ()
    read, update, delete, transfer = config.routes
    assert read.methods == {"GET", "HEAD"} and read.action is Action.READ
    assert read.path.text == "/customers/{id}" and read.resource_type == "customer"
    assert [s.text for s, _ in read.response_fields.selectors] == [
        "$.ssn",
        "$.passport_number",
        "$.bank.account",
        "$.phone",
        "$.address",
    ]
    assert update.methods == {"PUT", "PATCH"} and update.request_fields.labels == {
        "ssn",
        "mailing_address",
        "phone",
    }
    assert delete.pii == {"ssn", "passport", "bank_account", "phone", "mailing_address"}
    assert transfer.transaction is not None and transfer.transaction.payee is not None
    assert transfer.transaction.payee.text == "$.to_account"
    assert read.position is not None and (read.position.line, read.position.column) == (11, 9)
    assert config.masks["ssn"] == KeepLast(4) and config.masks["mailing_address"] == Replace()


def test_the_section_can_share_the_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY + GATEWAY, encoding="utf-8")
    loaded = load_policy(str(path))  # the policy loader leaves the gateway section alone
    config = load_gateway_config(str(path), loaded)
    assert len(config.routes) == 4 and config.source == str(path)
    compiled = load_gateway_config(str(path), compile_policy(loaded))  # or the one in force
    assert [r.label for r in compiled.routes] == [r.label for r in config.routes]


def test_a_file_may_have_no_gateway_section(tmp_path: Path) -> None:
    # piigate serve's configuration file: forward-auth has routes only when it has the section.
    path = tmp_path / "piigate.yaml"
    for text in ("policy: p.yaml\n", "service: {}\ngateway:\n  postgres: {}\n", POLICY):
        path.write_text(text, encoding="utf-8")
        assert find_gateway_config(str(path), policy()) is None
    path.write_text(GATEWAY, encoding="utf-8")
    found = find_gateway_config(str(path), policy())
    assert found is not None and len(found.routes) == 4
    path.write_text(GATEWAY.replace("upstream: http://", "upstream: ftp://"), encoding="utf-8")
    with pytest.raises(GatewayConfigError):  # a section that is there must be right
        find_gateway_config(str(path), policy())


@pytest.mark.parametrize(
    ("old", "new", "needle", "fragment"),
    [
        (
            '      - match: {method: POST, path: "/transfers"}',
            '      - match: {method: GET, path: "/customers/{id}/notes"}\n        action: read\n'
            '      - match: {method: GET, path: "/{kind}/42/notes"}\n        action: read\n'
            '      - match: {method: POST, path: "/transfers"}',
            '^match: {method: GET, path: "/{kind}',
            "requests such as /customers/42/notes go to route 4",
        ),
        (
            '{method: [PUT, PATCH], path: "/customers/{id}"}',
            '{method: [GET], path: "/customers/{id}/x"}',
            "^request_fields",
            "request_fields on a GET route",
        ),
        (
            "    routes:\n      - match",
            "    old:\n      - match",
            "^listen",
            "no routes: every request passes",
        ),
    ],
)
def test_warnings_have_positions_and_do_not_stop_loading(
    tmp_path: Path, old: str, new: str, needle: str, fragment: str
) -> None:
    text = GATEWAY.replace(old, new, 1)
    if "old:" in new:  # a key the section does not know: drop the routes altogether
        text = text[: text.index("    old:")]
    config = load(tmp_path, text)
    line, column = locate(text, needle)
    prefix = f"{tmp_path / 'gateway.yaml'}:{line}:{column}: warning: "
    assert any(w.startswith(prefix) and fragment in w for w in config.warnings), config.warnings


def test_specific_routes_before_general_ones_are_not_warned_about(tmp_path: Path) -> None:
    text = GATEWAY.replace(
        "    routes:\n",
        '    routes:\n      - match: {method: GET, path: "/customers/me"}\n        action: read\n',
    )
    assert load(tmp_path, text).warnings == ()


def test_the_optional_settings(tmp_path: Path) -> None:
    extra = (
        "    listen: '[::1]:9443'\n"
        "    default: deny\n"
        "    headers: {subject: X-User, level: X-Acr}\n"
        "    forward_auth: {trusted_proxies: [127.0.0.1, 'fd00::/8', 10.0.0.0/8]}\n"
        "    timeouts: {connect: 2s, read: 1m}\n"
        "    max_body: 64KiB\n"
        "    workers: 4\n"
        "    rate_limit: {per_api_key: 50/10s, per_route: 1000/h, store: rediss://cache:6380/1}\n"
        "    masking:\n"
        "      ssn: {keep_last: 4, fixed_width: 6}\n"
        "      phone: whole\n"
        '      passport: {replace: "[hidden]"}\n'
        "      shoe_size: {keep_last: 0}\n"
    )
    text = GATEWAY.replace("    listen: 127.0.0.1:8081\n", "").replace(
        "    rate_limit: {per_subject: 120/m, per_ip: 600/m}", extra.rstrip("\n")
    )
    config = load(tmp_path, text)
    assert (config.listen_host, config.listen_port) == ("::1", 9443)
    assert config.default is Default.DENY
    assert config.headers == ForwardHeaders("X-User", "X-Acr")
    trusts = config.forward_auth.trusts
    assert trusts("127.0.0.1") and trusts("10.200.0.9") and trusts("fd12::1")
    assert not trusts("127.0.0.2") and not trusts("192.0.2.1") and not trusts("unix:x")
    assert config.timeouts == Timeouts(connect=2, read=60)
    assert config.max_body == 64 * 1024
    assert config.workers == 4
    assert config.rate_limit == RateLimits(
        per_api_key=Rate(50, 10), per_route=Rate(1000, 3600), store="rediss://cache:6380/1"
    )
    assert config.masks == {
        "ssn": KeepLast(4, 6),
        "phone": Replace(),
        "passport": Replace("[hidden]"),
        "shoe_size": KeepLast(0),
        "bank_account": KeepLast(4),
        "mailing_address": Replace(),
    }


def test_defaults_when_left_out(tmp_path: Path) -> None:
    text = "gateway:\n  http:\n    upstream: https://api.internal/v1/\n    routes: []\n"
    config = load(tmp_path, text)
    assert config.upstream == "https://api.internal/v1"
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8081)
    assert config.identity is None and config.rate_limit == RateLimits()
    assert config.default is Default.PASS and config.routes == ()
    assert not config.forward_auth.trusts("127.0.0.1")  # nobody's X-Forwarded-For counts
    assert config.timeouts == Timeouts(connect=5, read=30) and config.max_body == 1024 * 1024
    assert config.workers == 1
    several = text.replace("    routes: []\n", "    workers: 2\n")  # no rate limits to count
    assert load(tmp_path, several).workers == 2
    partial = text.replace("    routes: []\n", "    timeouts: {read: 5}\n")
    assert load(tmp_path, partial).timeouts == Timeouts(connect=5, read=5)
    memory = text.replace("    routes: []\n", "    rate_limit: {store: memory}\n")
    assert load(tmp_path, memory).rate_limit.store is None


def test_an_app_guarding_itself_needs_no_upstream(tmp_path: Path) -> None:
    text = GATEWAY.replace("    upstream: http://127.0.0.1:9000\n", "")
    assert text != GATEWAY
    path = tmp_path / "app.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(GatewayConfigError, match="needs an 'upstream'"):
        load_gateway_config(str(path), policy())
    config = load_gateway_config(str(path), policy(), upstream=False)
    assert config.upstream == "" and config.routes
    named = load_gateway_config_text(GATEWAY, policy(), upstream=False)
    assert named.upstream == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("120/m", Rate(120, 60)),
        ("1/s", Rate(1, 1)),
        ("600/h", Rate(600, 3600)),
        ("5/d", Rate(5, 86400)),
        ("50/10s", Rate(50, 10)),
        ("100/15m", Rate(100, 900)),
        ("30/60", Rate(30, 60)),
        (" 7 / 2h ", Rate(7, 7200)),
    ],
)
def test_rates(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["120", "/m", "m/120", "-1/m", "1.5/m", "0/m", "1/0", "1/2d", 5])
def test_bad_rates(text: object) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@pytest.mark.parametrize(
    ("value", "size"),
    [(65536, 65536), ("65536", 65536), ("64KiB", 65536), ("1MiB", 1048576), (" 3 B ", 3)],
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "value", ["1GiB", "1 kib", "1.5MiB", "-1", "0", 0, "65MiB", 64 * 1024 * 1024 + 1, True, 1.5]
)
def test_bad_sizes(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)
