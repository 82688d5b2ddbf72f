"""Matching requests to routes, and the engine's request a routed request makes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from gateway_support import GATEWAY, policy

from piigate.errors import BadRequest
from piigate.gateway.http.config import HttpGatewayConfig, load_gateway_config_text
from piigate.gateway.http.masking import mask_document
from piigate.gateway.http.paths import Param, PathTemplate, TemplateError, split_path
from piigate.gateway.http.routes import Body, RouteMatch, route_request
from piigate.model import AccessRequest, Action, Outcome, Resource, RiskAssessment, Subject
from piigate.policy import compile_policy, evaluate
from piigate.stepup.binding import binding_digest


@pytest.fixture(scope="module")
def config() -> HttpGatewayConfig:
    return load_gateway_config_text(GATEWAY, policy(), source="gateway.yaml")


# --- path templates -------------------------------------------------------------------------


def test_templates_read_literals_and_parameters() -> None:
    template = PathTemplate.parse("/Customers/{id}/notes/{note_id}")
    assert template.segments == ("customers", Param("id"), "notes", Param("note_id"))
    assert template.params == ("id", "note_id")
    assert PathTemplate.parse("/").segments == ()


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("customers", 0, "starts with /"),
        ("/customers/", 10, "trailing /"),
        ("/a//b", 3, "empty segment"),
        ("/a/{id}/{id}", 8, "appears twice"),
        ("/a/x{id}", 3, "whole segment"),
        ("/a/{1d}", 3, "whole segment"),
        ("/a/{id", 3, "whole segment"),
        ("/a/b?c", 4, "'?' is not allowed"),
        ("/a/%2F", 3, "'%' is not allowed"),
        ("/a/..", 3, "not a path segment"),
        ("/a/ b", 3, "not a path segment"),
        ("/a\\b", 2, "'\\\\' is not allowed"),
        ("/a;v=1/b", 2, "';' is not allowed"),
    ],
)
def test_bad_templates_say_what_and_where(text: str, offset: int, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        PathTemplate.parse(text)
    assert fragment in str(info.value)
    assert info.value.offset == offset


def test_a_template_is_never_a_pattern() -> None:
    template = PathTemplate.parse("/a/.*")
    assert template.match(split_path("/a/.*")) == {}
    assert template.match(split_path("/a/anything")) is None


@pytest.mark.parametrize(
    ("target", "segments"),
    [
        ("/", ()),
        ("/customers/42", ("customers", "42")),
        ("/customers/42/", ("customers", "42")),
        ("/customers/42?expand=ssn", ("customers", "42")),
        ("/customers/42#frag", ("customers", "42")),
        ("/customers/ab%20c%C3%A9", ("customers", "ab cé")),
        ("/customers/%34%32", ("customers", "42")),
        ("/?x=1", ()),
    ],
)
def test_request_paths_are_split_then_decoded(target: str, segments: tuple[str, ...]) -> None:
    assert split_path(target) == segments


@pytest.mark.parametrize(
    "target",
    [
        "customers/42",
        "",
        "//customers/42",
        "/customers//42",
        "/customers/42//",
        "/customers/../admin",
        "/customers/./42",
        "/customers/%2e%2e/admin",
        "/customers/%2E",
        "/customers/42%2F..%2Fadmin",
        "/customers/42%5c..",
        "/customers/a\\b",
        "/customers/%00",
        "/customers/%0a",
        "/customers/%zz",
        "/customers/%4",
        "/customers/%ff",
        "/customers/%C3",
        "/customers;jsessionid=1/42",  # /customers/42 to a servlet container
        "/customers/42;x",
        "/customers%3b/42",
    ],
)
def test_ambiguous_paths_are_refused(target: str) -> None:
    with pytest.raises(BadRequest) as info:
        split_path(target)
    assert info.value.extra == {"field": "path"}


def test_a_refused_path_is_never_echoed() -> None:
    for target in ("/customers/123-45-6789%zz", "/customers/123-45-6789/../x", "123-45-6789"):
        with pytest.raises(BadRequest) as info:
            split_path(target)
        assert "6789" not in str(info.value.problem())


# --- matching -------------------------------------------------------------------------------


def _match(config: HttpGatewayConfig, method: str, target: str) -> RouteMatch:
    found = config.match(method, target)
    assert found is not None, (method, target)
    return found


def test_routes_match_by_method_and_path_in_order(config: HttpGatewayConfig) -> None:
    assert _match(config, "GET", "/customers/42").route.action is Action.READ
    assert _match(config, "PUT", "/customers/42").route.action is Action.UPDATE
    assert _match(config, "patch", "/customers/42").route.action is Action.UPDATE
    assert _match(config, "DELETE", "/customers/42").route.action is Action.DELETE
    assert _match(config, "POST", "/transfers").route.action is Action.TRANSACT
    assert _match(config, "GET", "/customers/42").params == {"id": "42"}
    assert config.match("POST", "/customers/42") is None
    assert config.match("GET", "/customers") is None
    assert config.match("GET", "/customers/42/notes") is None


def test_head_takes_the_get_route(config: HttpGatewayConfig) -> None:
    assert _match(config, "HEAD", "/customers/42").route.action is Action.READ


def test_literals_match_in_any_case_and_parameters_keep_theirs(config: HttpGatewayConfig) -> None:
    found = _match(config, "GET", "/CUSTOMERS/AbC%20d/")
    assert found.route.action is Action.READ and found.params == {"id": "AbC d"}


def test_a_format_suffix_takes_the_route_it_extends() -> None:
    """Rails routes ``/customers.json`` to ``/customers`` (and Spring did): unmatched as sent,
    it would go through unguarded under ``default: pass``."""
    text = GATEWAY.replace(
        "    routes:\n",
        "    routes:\n"
        '      - match: {method: GET, path: "/customers/export.csv"}\n        action: delete\n'
        '      - match: {method: GET, path: "/customers/export"}\n        action: read\n',
    )
    config = load_gateway_config_text(text, policy(), source="gateway.yaml")
    assert _match(config, "POST", "/transfers.json").route.action is Action.TRANSACT
    assert _match(config, "POST", "/Transfers.tar.gz/").route.action is Action.TRANSACT
    assert _match(config, "GET", "/customers/export.JSON").route.index == 1
    assert _match(config, "GET", "/customers/export.csv").route.index == 0  # as sent first
    assert _match(config, "GET", "/customers/42.json").params == {"id": "42.json"}
    for unmatched in ("/transfersx", "/transfers-json", "/transfers.json/1", "/x/transfers.json"):
        assert config.match("POST", unmatched) is None, unmatched
    assert config.match("GET", "/transfers.json") is None  # the method still counts


def test_literals_that_are_not_ascii_compare_in_nfkc_form(config: HttpGatewayConfig) -> None:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "CUSTOMERS")
    assert _match(config, "GET", f"/{fullwidth}/42").route.action is Action.READ
    assert _match(config, "POST", "/transfer%EF%BD%93").route.action is Action.TRANSACT


def test_the_first_matching_route_wins() -> None:
    text = GATEWAY.replace(
        "    routes:\n",
        '    routes:\n      - match: {method: GET, path: "/customers/me"}\n        action: read\n',
    )
    config = load_gateway_config_text(text, policy(), source="gateway.yaml")
    assert _match(config, "GET", "/customers/me").route.index == 0
    assert _match(config, "GET", "/customers/42").route.index == 1


# --- the engine's request -------------------------------------------------------------------


def test_a_read_touches_the_response_classes(config: HttpGatewayConfig) -> None:
    routed = route_request(_match(config, "GET", "/customers/42"))
    assert routed.action is Action.READ
    assert routed.resource == Resource("customer", "42")
    assert routed.pii == {"ssn", "passport", "bank_account", "phone", "mailing_address"}
    assert routed.transaction is None


@pytest.mark.parametrize(
    ("body", "classes"),
    [
        ({"ssn": "123-45-6789", "name": "Ada"}, {"ssn"}),
        ({"ssn": None}, {"ssn"}),  # erasing a value writes it too
        ({"phone": "+1 555 0100", "address": {"city": "X"}}, {"phone", "mailing_address"}),
        ({"name": "Ada"}, set()),
        ({"ssn": {"nested": 1}}, {"ssn"}),
        (["ssn"], set()),
        ("ssn", set()),
        (Body.ABSENT, set()),
        (Body.UNREADABLE, {"ssn", "phone", "mailing_address"}),  # fail closed
    ],
)
def test_a_write_touches_the_request_fields_present(
    config: HttpGatewayConfig, body: object, classes: set[str]
) -> None:
    routed = route_request(_match(config, "PUT", "/customers/7"), body)
    assert routed.pii == classes
    assert routed.resource == Resource("customer", "7")


def test_explicit_pii_is_always_touched(config: HttpGatewayConfig) -> None:
    routed = route_request(_match(config, "DELETE", "/customers/7"))
    assert routed.pii == {"ssn", "passport", "bank_account", "phone", "mailing_address"}
    assert routed.resource == Resource()


def test_a_resource_id_is_rendered_from_the_path() -> None:
    text = GATEWAY.replace('id: "{id}"}', 'id: "cus-{id}"}', 1)
    config = load_gateway_config_text(text, policy(), source="gateway.yaml")
    routed = route_request(_match(config, "GET", "/customers/42"))
    assert routed.resource == Resource("customer", "cus-42")
    with pytest.raises(BadRequest) as info:
        route_request(_match(config, "GET", "/customers/" + "9" * 300))
    assert "999" not in str(info.value.problem())


@pytest.mark.parametrize(
    ("body", "amount", "currency", "payee"),
    [
        (
            {"amount": "12000.50", "currency": "EUR", "to_account": "DE89"},
            "12000.50",
            "EUR",
            "DE89",
        ),
        ({"amount": 12000, "currency": "eur", "to_account": 12345}, "12000", "EUR", "12345"),
        ({"amount": Decimal("0.000001")}, "0.000001", None, None),
        ({"amount": 99.5, "currency": None}, "99.5", None, None),
        ({"amount": "0"}, "0", None, None),
        ({"amount": Decimal("-0")}, "0", None, None),
        ({"amount": "99999999999999.999999"}, "99999999999999.999999", None, None),
    ],
)
def test_a_transfer_carries_its_transaction(
    config: HttpGatewayConfig, body: object, amount: str, currency: str | None, payee: str | None
) -> None:
    routed = route_request(_match(config, "POST", "/transfers"), body)
    assert routed.transaction is not None
    assert str(routed.transaction.amount) == amount
    assert (routed.transaction.currency, routed.transaction.payee) == (currency, payee)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currency": "EUR"}, "$.amount"),
        ({"amount": None}, "$.amount"),
        ({"amount": "-5"}, "$.amount"),
        ({"amount": -5}, "$.amount"),
        ({"amount": "1e3"}, "$.amount"),
        ({"amount": "12,00"}, "$.amount"),
        ({"amount": " 12"}, "$.amount"),
        ({"amount": "12."}, "$.amount"),
        ({"amount": True}, "$.amount"),
        ({"amount": {"value": 1}}, "$.amount"),
        ({"amount": float("nan")}, "$.amount"),
        ({"amount": float("inf")}, "$.amount"),
        ({"amount": "1.0000001"}, "$.amount"),
        ({"amount": "123456789012345"}, "$.amount"),
        ({"amount": 10**21}, "$.amount"),
        ({"amount": "5", "currency": "EURO"}, "$.currency"),
        ({"amount": "5", "currency": 978}, "$.currency"),
        ({"amount": "5", "to_account": "x" * 256}, "$.to_account"),
        ({"amount": "5", "to_account": ["DE89"]}, "$.to_account"),
        ("not an object", "$.amount"),
    ],
)
def test_a_bad_transaction_is_refused_naming_the_field_not_the_value(
    config: HttpGatewayConfig, body: object, field: str
) -> None:
    with pytest.raises(BadRequest) as info:
        route_request(_match(config, "POST", "/transfers"), body)
    assert info.value.extra == {"field": field}
    problem = str(info.value.problem())
    assert "12,00" not in problem and "EURO" not in problem and "1e3" not in problem


@pytest.mark.parametrize("body", [Body.ABSENT, Body.UNREADABLE])
def test_a_transfer_needs_a_json_body(config: HttpGatewayConfig, body: Body) -> None:
    with pytest.raises(BadRequest) as info:
        route_request(_match(config, "POST", "/transfers"), body)
    assert info.value.extra == {"field": "body"}


def _request(config: HttpGatewayConfig, method: str, target: str, body: object) -> AccessRequest:
    routed = route_request(_match(config, method, target), body)
    return routed.access_request(
        subject=Subject("u1"), binding_fields={"method": method, "path": target}
    )


def test_the_transaction_binds_a_step_up_to_one_transfer(config: HttpGatewayConfig) -> None:
    body = {"amount": "15000.00", "currency": "EUR", "to_account": "DE89"}
    one = _request(config, "POST", "/transfers", body)
    assert one.action is Action.TRANSACT and one.subject == Subject("u1")
    same = _request(config, "POST", "/transfers", dict(body))
    assert binding_digest(one) == binding_digest(same)
    for change in ({"amount": "15000.01"}, {"to_account": "DE90"}, {"currency": "USD"}):
        other = _request(config, "POST", "/transfers", {**body, **change})
        assert binding_digest(other) != binding_digest(one)


def test_the_engine_decides_on_what_the_route_builds(config: HttpGatewayConfig) -> None:
    """Route → AccessRequest → the policy → the mask → the masked response, all pure."""
    compiled = compile_policy(policy())
    now = datetime(2026, 5, 4, tzinfo=UTC)

    def decide(request: AccessRequest) -> tuple[Outcome, frozenset[str]]:
        result = evaluate(compiled, request, RiskAssessment(), (), now=now, binding="b")
        return result.outcome, result.mask

    read = _request(config, "GET", "/customers/42", Body.ABSENT)
    outcome, mask = decide(read)
    assert (outcome, mask) == (Outcome.ALLOW, {"ssn", "passport", "bank_account"})
    route = _match(config, "GET", "/customers/42").route
    upstream = {"ssn": "123-45-6789", "phone": "+1 555 0100", "bank": {"account": "DE8937"}}
    masked, present = mask_document(upstream, route.response_fields, mask, config.masks)
    assert masked == {"ssn": "***-**-6789", "phone": "+1 555 0100", "bank": {"account": "***937"}}
    assert present == {"ssn", "bank_account"}
    assert decide(_request(config, "PUT", "/customers/42", {"ssn": "1"}))[0] is Outcome.STEP_UP
    assert decide(_request(config, "PUT", "/customers/42", {"name": "A"}))[0] is Outcome.ALLOW
    assert decide(_request(config, "DELETE", "/customers/42", Body.ABSENT))[0] is Outcome.STEP_UP
    big = {"amount": "10000.01", "currency": "EUR", "to_account": "x"}
    assert decide(_request(config, "POST", "/transfers", big))[0] is Outcome.STEP_UP
    small = {"amount": "10000", "currency": "EUR", "to_account": "x"}
    assert decide(_request(config, "POST", "/transfers", small))[0] is Outcome.ALLOW


def test_a_write_answers_with_a_read_of_its_response_fields() -> None:
    """A write's own decision covers what it writes; the PII its answer brings back is a read,
    decided apart (so an update that echoes the record cannot reveal what a read would mask)."""
    text = GATEWAY.replace(
        'request_fields: {"$.ssn": ssn, "$.address": mailing_address, "$.phone": phone}',
        'request_fields: {"$.ssn": ssn, "$.address": mailing_address, "$.phone": phone}\n'
        '        response_fields: {"$.ssn": ssn, "$.bank.account": bank_account}',
    )
    config = load_gateway_config_text(text, policy(), source="gateway.yaml")
    routed = route_request(_match(config, "PUT", "/customers/7"), {"phone": "+1 555 0100"})
    assert routed.pii == {"phone"}
    request = routed.access_request(subject=Subject("u1"), grants=("g",))
    reading = routed.answer_reading(request)
    assert reading is not None
    assert reading.action is Action.READ and reading.pii == {"ssn", "bank_account"}
    assert (reading.subject, reading.resource, reading.grants) == (
        request.subject,
        Resource("customer", "7"),
        ("g",),
    )
    read = route_request(_match(config, "GET", "/customers/7"))
    assert read.answer_reading(read.access_request(subject=Subject("u1"))) is None
    bare = route_request(_match(config, "DELETE", "/customers/7"))
    assert bare.answer_reading(bare.access_request(subject=Subject("u1"))) is None
