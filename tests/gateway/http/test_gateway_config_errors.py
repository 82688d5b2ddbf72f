"""Every problem in a ``gateway.http`` configuration, reported as ``FILE:LINE:COL: message``,
all at once, and nothing of a bad file used."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support import GATEWAY, POLICY, policy

from piigate.errors import PolicyError
from piigate.gateway.http.config import (
    GatewayConfigError,
    load_gateway_config,
    load_gateway_config_text,
)
from piigate.policy import load_policy
from piigate.policy.yamlnodes import MAX_FILE_BYTES
from position_support import locate


def errors_of(tmp_path: Path, text: str) -> tuple[str, list[str]]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(GatewayConfigError) as info:
        load_gateway_config(str(path), policy())
    assert isinstance(info.value, PolicyError)  # rendered and exited on like a policy's
    return str(path), info.value.errors


def assert_error(errors: list[str], prefix: str, fragment: str) -> None:
    hits = [e for e in errors if e.startswith(prefix + ": ") and fragment in e]
    assert hits, f"no error {prefix}: ...{fragment}... in:\n" + "\n".join(errors)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        GATEWAY.replace("upstream: http://", "upstream: ftp://")
        .replace("action: read", "action: browse")
        .replace('"$.phone": phone\n', '"$.phone": fone\n', 1)
    )
    path, errors = errors_of(tmp_path, text)
    assert len(errors) == 3, errors
    for needle, fragment in [
        ("upstream: ^ftp", "upstream must be"),
        ("action: ^browse", "unknown action"),
        ("^fone", "unknown PII class 'fone'"),
    ]:
        line, column = locate(text, needle)
        assert_error(errors, f"{path}:{line}:{column}", fragment)


# (what is changed, into what, where the error is, what it says)
CASES: list[tuple[str, str, str, str]] = [
    # the file and its sections
    ("gateway:\n", "polcy: x\ngateway:\n", "^polcy", "unknown key 'polcy'"),
    (GATEWAY, "service: {}\n", "^service", "no 'gateway' section"),
    (GATEWAY, "gateway: [1]\n", "gateway: ^[1]", "gateway must be a mapping"),
    (GATEWAY, "gateway:\n  postgres: {}\n", "^postgres", "no 'http' section"),
    (GATEWAY, "gateway:\n  https: {}\n", "^https", "unknown key 'https'"),
    ("    listen:", "    upstreem: x\n    listen:", "^upstreem", "unknown key 'upstreem'"),
    ("    upstream: http://127.0.0.1:9000\n", "", "^listen", "needs an 'upstream'"),
    ("upstream: http://127", "upstream: ftp://127", "upstream: ^ftp", "http:// or https://"),
    ("upstream: http://127", "upstream: http://u:p@127", "upstream: ^http", "credentials"),
    (":9000\n", ":9000/?a=1\n", "upstream: ^http", "no query"),
    (":9000\n", ":99999\n", "upstream: ^http", "URL with a host"),
    ("upstream: http://127.0.0.1:9000", "upstream: [x]", "upstream: ^[x]", "must be a string"),
    ("listen: 127.0.0.1:8081", "listen: 8081", "listen: ^8081", "HOST:PORT"),
    ("listen: 127.0.0.1:8081", "listen: '::1:8081'", "listen: ^'::1", "HOST:PORT"),
    ("listen: 127.0.0.1:8081", "listen: h:0", "listen: ^h:0", "HOST:PORT"),
    ("jwks_url: https://idp.example/jwks", "jwks: x", "^jwks: x", "unknown key 'jwks'"),
    ("      jwks_url: https://idp.example/jwks\n", "", "^issuer", "identity needs jwks_url"),
    ("issuer: https://idp.example\n", "issuer: idp.example\n", "issuer: ^idp", "issuer must be"),
    ("audience: customers-api", "audience: ''", "^issuer", "must not be empty"),
    ("per_subject: 120/m", "per_subject: 120", "per_subject: ^120", "COUNT/WINDOW"),
    ("per_ip: 600/m", "per_ip: 0/m", "per_ip: ^0/m", "count of at least 1"),
    ("per_ip: 600/m", "per_ip: 5/2d", "per_ip: ^5/2d", "window of 1s to 1d"),
    ("per_ip: 600/m", "per_ip: 5/fortnight", "per_ip: ^5/", "bad window 'fortnight'"),
    ("per_ip: 600/m", "per_user: 5/m", "^per_user", "unknown key 'per_user'"),
    ("per_ip: 600/m", "store: http://r:6379", "store: ^http", "redis:// or rediss://"),
    ("    routes:\n", "    default: maybe\n    routes:\n", "default: ^maybe", "pass or deny"),
    ("    routes:\n", "    headers: {subject: 'A B'}\n    routes:\n", "^'A B'", "not a header"),
    (
        "    routes:\n",
        "    headers: {level: Authorization}\n    routes:\n",
        "^Authorization",
        "sets or strips itself",
    ),
    (
        "    routes:\n",
        "    headers: {subject: PIIGate-Level}\n    routes:\n",
        "headers: ^{",
        "must differ",
    ),
    ("    routes:\n", "    headers: {user: X}\n    routes:\n", "^user", "unknown key 'user'"),
    ("    routes:\n", "    masking: {sin: whole}\n    routes:\n", "^sin", "unknown PII class"),
    ("    routes:\n", "    masking: {ssn: half}\n    routes:\n", "ssn: ^half", "whole, {replace"),
    (
        "    routes:\n",
        "    masking: {ssn: {keep_last: 2, replace: x}}\n    routes:\n",
        "ssn: ^{",
        "exactly one of replace or keep_last",
    ),
    ("    routes:\n", "    masking: {ssn: {}}\n    routes:\n", "ssn: ^{}", "exactly one"),
    (
        "    routes:\n",
        "    masking: {ssn: {keep_last: 17}}\n    routes:\n",
        "keep_last: ^17",
        "between 0 and 16",
    ),
    (
        "    routes:\n",
        "    masking: {ssn: {keep_last: 4, fixed_width: 0}}\n    routes:\n",
        "fixed_width: ^0",
        "between 1 and 64",
    ),
    (
        "    routes:\n",
        "    masking: {ssn: {replace: x, fixed_width: 4}}\n    routes:\n",
        "^fixed_width",
        "goes with keep_last",
    ),
    (
        "    routes:\n",
        "    masking: {ssn: {replace: ''}}\n    routes:\n",
        "replace: ^''",
        "1 to 64 characters",
    ),
    ("    routes:\n", "    masking: {ssn: {hide: 1}}\n    routes:\n", "^hide", "unknown key"),
    (
        "    routes:\n",
        "    forward_auth: {trusted_proxies: [10.0.0.1/8]}\n    routes:\n",
        "^10.0.0.1/8",
        "not an IP address or network",
    ),
    (
        "    routes:\n",
        "    forward_auth: {trusted: [10.0.0.1]}\n    routes:\n",
        "^trusted",
        "unknown key 'trusted'",
    ),
    # the upstream's timeouts, the largest body read
    ("    routes:\n", "    timeouts: 5s\n    routes:\n", "timeouts: ^5s", "must be a mapping"),
    ("    routes:\n", "    timeouts: {write: 5s}\n    routes:\n", "^write", "unknown key"),
    ("    routes:\n", "    timeouts: {connect: 0}\n    routes:\n", "connect: ^0", "1s to 1h"),
    ("    routes:\n", "    timeouts: {read: 2h}\n    routes:\n", "read: ^2h", "1s to 1h"),
    (
        "    routes:\n",
        "    timeouts: {read: soon}\n    routes:\n",
        "read: ^soon",
        "timeouts read: bad duration 'soon'",
    ),
    ("    routes:\n", "    max_body: 1GiB\n    routes:\n", "max_body: ^1GiB", "KiB or MiB"),
    ("    routes:\n", "    max_body: 65MiB\n    routes:\n", "^65MiB", "1 byte to 64MiB"),
    ("    routes:\n", "    max_body: 0\n    routes:\n", "max_body: ^0", "1 byte to 64MiB"),
    # routes
    (
        "    routes:\n      - match",
        "    routes: {}\n    old:\n      - match",
        "routes: ^{}",
        "list",
    ),
    (
        "      - match: {method: DELETE",
        "      - [x]\n      - match: {method: DELETE",
        "^[x]",
        "a route must be a mapping",
    ),
    (
        "        action: read\n",
        "        action: read\n        verb: x\n",
        "^verb",
        "unknown key 'verb'",
    ),
    ("        action: read\n", "", "^match: {method: GET", "a route needs 'action'"),
    (
        '      - match: {method: POST, path: "/transfers"}\n',
        "      - \n",
        "^action: transact",
        "a route needs 'match'",
    ),
    (
        '{method: GET, path: "/customers/{id}"}',
        "{method: GET}",
        "match: ^{method: GET}",
        "needs a 'path'",
    ),
    ("{method: GET, path:", "{verb: GET, path:", "^verb", "unknown key 'verb'"),
    ("{method: GET,", "{method: 'GE T',", "^'GE T'", "not an HTTP method"),
    ("{method: [PUT, PATCH],", "{method: [PUT, put],", "^put", "listed twice"),
    ("{method: [PUT, PATCH],", "{method: [],", "method: ^[]", "must not be empty"),
    (
        'path: "/transfers"',
        'path: "/transfers/"',
        'path: ^"/transfers/"',
        "bad path template '/transfers/': no trailing / (a request's trailing / is ignored) "
        "(at character 11)",
    ),
    ('path: "/transfers"', 'path: "/a/{x}/{x}"', 'path: ^"/a/{x}', "appears twice"),
    ("action: read", "action: browse", "action: ^browse", "unknown action 'browse'"),
    (
        '"$.phone": phone\n',
        '"$.phone": fone\n',
        "^fone",
        "'fone' in response_fields",
    ),
    (
        '"$.address": mailing_address, "$.phone"',
        '"$.address": addr, "$.phone"',
        "^addr, ",
        "in request_fields",
    ),
    (
        "pii: [ssn, passport,",
        "pii: [ssn, passprt,",
        "^passprt",
        "unknown PII class 'passprt' in pii",
    ),
    (
        '"$.ssn": ssn\n',
        '"$...ssn": ssn\n',
        '^"$...ssn"',
        "expected a member name, [ ] or * after '..' (at character 4)",
    ),
    (
        '"$.phone": phone\n',
        "\"$['ssn']\": phone\n",
        "^\"$['ssn']\"",
        "selects the same field as '$.ssn'",
    ),
    (
        '"$.phone": phone\n',
        '"$.ssn": phone\n',
        '^"$.ssn": phone',
        "duplicate key '$.ssn'",
    ),
    (
        'resource: {type: customer, id: "{id}"}',
        "resource: {type: customer, key: x}",
        "^key",
        "unknown key 'key'",
    ),
    (
        'resource: {type: customer, id: "{id}"}',
        'resource: {id: "{cid}"}',
        'id: ^"{cid}"',
        "not a parameter of '/customers/{id}'",
    ),
    (
        'resource: {type: customer, id: "{id}"}',
        'resource: {id: "{id"}',
        'id: ^"{id"',
        "a placeholder is {name}",
    ),
    ('amount: "$.amount", ', "", "transaction: ^{", "needs an 'amount'"),
    (
        'amount: "$.amount"',
        'amount: "$.items[*].amount"',
        'amount: ^"$.items',
        "must select one value",
    ),
    ('amount: "$.amount"', 'amount: "$..amount"', 'amount: ^"$..amount', "must select one value"),
    (
        'amount: "$.amount"',
        'amount: "amount"',
        'amount: ^"amount"',
        "bad selector 'amount' in transaction amount",
    ),
    ('amount: "$.amount"', 'amount: "$.amount", fee: "$.fee"', "^fee", "unknown key 'fee'"),
    ("action: transact", "action: create", "^transaction: {amount", "only for action: transact"),
    (
        '        transaction: {amount: "$.amount", currency: "$.currency", payee: "$.to_account"}'
        "\n",
        "",
        '^match: {method: POST, path: "/transfers"}',
        "a transact route needs a 'transaction'",
    ),
    (
        'match: {method: POST, path: "/transfers"}',
        'match: "POST /transfers"',
        'match: ^"POST',
        "match must be a mapping",
    ),
    (
        "        transaction: {amount",
        "        pii: [ssn]\n        x: {amount",
        "^x: {amount",
        "unknown key 'x'",
    ),
    (
        "        pii: [ssn, passport",
        "        action: transact\n        pii: [ssn, passport",
        "^action: transact\n        pii",
        "duplicate key 'action'",
    ),
    # the order of routes
    (
        '      - match: {method: DELETE, path: "/customers/{id}"}',
        '      - match: {method: HEAD, path: "/CUSTOMERS/{other}"}\n        action: read\n'
        '      - match: {method: DELETE, path: "/customers/{id}"}',
        "^match: {method: HEAD",
        "this route can never match: route 1 (GET,HEAD /customers/{id}, line 11) takes all",
    ),
    (
        '      - match: {method: POST, path: "/transfers"}',
        '      - match: {method: "*", path: "/{any}"}\n        action: read\n'
        '      - match: {path: "/transfers"}\n        action: read\n'
        '      - match: {method: POST, path: "/transfers"}',
        '^match: {path: "/transfers"}',
        "takes all its requests",
    ),
    (  # /transfers takes /transfers.csv too (a format suffix)
        '      - match: {method: POST, path: "/transfers"}',
        '      - match: {method: POST, path: "/transfers"}\n        action: read\n'
        '      - match: {method: POST, path: "/Transfers.csv"}',
        '^match: {method: POST, path: "/Transfers.csv"}',
        "this route can never match: route 4 (POST /transfers, line 27) takes all",
    ),
    # workers
    ("    routes:\n", "    workers: 0\n    routes:\n", "^0\n    routes", "between 1 and 64"),
    ("    routes:\n", "    workers: two\n    routes:\n", "^two", "workers must be an integer"),
    (
        "    routes:\n",
        "    workers: 2\n    routes:\n",
        "^2\n    routes",
        "workers: 2 needs the rate limits counted in Redis",
    ),
    # YAML itself
    ("    routes:\n", "    routes: [\n", "^- match: {method: GET", "YAML syntax error"),
]


@pytest.mark.parametrize(("old", "new", "needle", "fragment"), CASES)
def test_every_config_error_has_its_position(
    tmp_path: Path, old: str, new: str, needle: str, fragment: str
) -> None:
    assert old in GATEWAY
    text = GATEWAY.replace(old, new, 1)
    path, errors = errors_of(tmp_path, text)
    line, column = locate(text, needle)
    assert_error(errors, f"{path}:{line}:{column}", fragment)


def test_a_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    text = GATEWAY + "#" * MAX_FILE_BYTES
    path, errors = errors_of(tmp_path, text)
    assert errors == [f"{path}: too large ({len(text)} bytes; the limit is {MAX_FILE_BYTES})"]


def test_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GATEWAY.replace("customer,", "cliént,").encode("latin-1"))
    with pytest.raises(GatewayConfigError) as info:
        load_gateway_config(str(path), policy())
    assert info.value.errors == [f"{path}:1:1: the file is not UTF-8 text"]
    missing = tmp_path / "missing.yaml"
    with pytest.raises(GatewayConfigError) as info:
        load_gateway_config(str(missing), policy())
    assert info.value.errors[0].startswith(f"{missing}:1:1: cannot read file")
    with pytest.raises(GatewayConfigError) as info:
        load_gateway_config_text("", policy(), source="empty.yaml")
    assert info.value.errors == ["empty.yaml:1:1: the file is empty"]


def test_the_configuration_is_checked_against_the_policy_it_is_given(tmp_path: Path) -> None:
    without = POLICY.replace("  passport: {sensitivity: high}\n", "").replace("passport, ", "")
    smaller = load_policy(str(_write(tmp_path, "p.yaml", without)))
    path = _write(tmp_path, "gateway.yaml", GATEWAY)
    with pytest.raises(GatewayConfigError) as info:
        load_gateway_config(str(path), smaller)
    unknown = [e for e in info.value.errors if "unknown PII class 'passport'" in e]
    assert len(unknown) == 2  # the read route's field and the delete route's pii


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
