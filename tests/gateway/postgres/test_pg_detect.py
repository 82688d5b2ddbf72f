"""The scan's detectors (pure): name rules, value validators, how they combine, and the catalog
file they produce loading back with ``read_catalog``. Values are generated, not real."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import iban, luhn
from stdnum.us import ssn

from piigate.gateway.postgres.catalog import Catalog, TableName, read_catalog
from piigate.gateway.postgres.catalog_file import ScannedTable, render_catalog
from piigate.gateway.postgres.detect import ColumnLabel, Detector, label_column, name_matches
from piigate.policy import Policy, load_policy, load_policy_text
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_text

POLICY = Path(__file__).resolve().parents[3] / "examples" / "policy.yaml"
TODAY = date(2025, 6, 1)
ALL = list(Detector)


def ssns(n: int, seed: int = 1) -> list[str]:
    rnd, out = random.Random(seed), []
    while len(out) < n:
        area = rnd.choice([a for a in range(1, 900) if a != 666])
        text = f"{area:03d}-{rnd.randint(1, 99):02d}-{rnd.randint(1, 9999):04d}"
        if ssn.is_valid(text):
            out.append(text)
    return out


def phones(n: int) -> list[str]:
    out = [f"(415) 555-{2000 + i:04d}" for i in range(n)]
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(p, "US")) for p in out)
    return out


def ibans(n: int) -> list[str]:
    out = []
    for i in range(n):
        body = f"37040044{i:010d}"
        out.append(f"DE{iban.calc_check_digits('DE00' + body)}{body}")
    assert all(iban.is_valid(x) for x in out)
    return out


def cards(n: int) -> list[str]:
    bodies = [f"4{i:014d}" for i in range(n)]
    return [b + luhn.calc_check_digit(b) for b in bodies]


def label(column: str, values: list[str] | None, detectors: list[Detector] = ALL) -> ColumnLabel:
    found = label_column(column, values, detectors=detectors, today=TODAY)
    assert found is not None, column
    return found


@pytest.mark.parametrize(
    ("column", "detector"),
    [
        ("ssn", Detector.SSN),
        ("customer_ssn", Detector.SSN),
        ("CustomerSSN", Detector.SSN),
        ("social_security_number", Detector.SSN),
        ("passport_number", Detector.PASSPORT),
        ("iban", Detector.BANK_ACCOUNT),
        ("bank_account", Detector.BANK_ACCOUNT),
        ("account_no", Detector.BANK_ACCOUNT),
        ("phone", Detector.PHONE),
        ("mobilePhone", Detector.PHONE),
        ("home_address", Detector.MAILING_ADDRESS),
        ("street", Detector.MAILING_ADDRESS),
        ("email", Detector.EMAIL),
        ("e_mail_address", Detector.EMAIL),
        ("credit_card", Detector.CREDIT_CARD),
        ("card_number", Detector.CREDIT_CARD),
        ("dob", Detector.DATE_OF_BIRTH),
        ("birth_date", Detector.DATE_OF_BIRTH),
    ],
)
def test_name_rules(column: str, detector: Detector) -> None:
    assert name_matches(column, detector)


@pytest.mark.parametrize(
    ("column", "detector"),
    [
        ("lesson", Detector.SSN),  # "ssn" inside a word is no SSN
        ("email_address", Detector.MAILING_ADDRESS),
        ("ip_address", Detector.MAILING_ADDRESS),
        ("mac_address", Detector.MAILING_ADDRESS),
        ("banned", Detector.BANK_ACCOUNT),
        ("telemetry", Detector.PHONE),
        ("discount", Detector.CREDIT_CARD),
    ],
)
def test_names_that_are_not_pii(column: str, detector: Detector) -> None:
    assert not name_matches(column, detector)


def test_name_and_values_agree() -> None:
    values = [*ssns(48), "unknown", "n/a"]
    found = label("ssn", values)
    assert (found.pii, found.suspected, found.confidence) == ("ssn", False, 0.98)
    assert found.reason == "name matches ssn; 48/50 sampled values are valid US SSNs"


@pytest.mark.parametrize(
    ("column", "values", "pii"),
    [
        ("phone", phones(30), "phone"),
        ("iban", ibans(30), "bank_account"),
        ("address", [f"{i} Main Street, Springfield" for i in range(1, 31)], "mailing_address"),
        ("email", [f"user{i}@example.com" for i in range(30)], "email"),
        ("card_number", cards(30), "credit_card"),
        ("dob", [f"19{50 + i}-0{1 + i % 9}-1{i % 9}" for i in range(30)], "date_of_birth"),
        ("passport_no", [f"X{i:08d}" for i in range(30)], "passport"),
    ],
)
def test_each_detector_confirms_its_name(column: str, values: list[str], pii: str) -> None:
    found = label(column, values)
    assert (found.pii, found.suspected) == (pii, False), found.reason


def test_values_alone_are_suspected() -> None:
    found = label("tax_id", ssns(20))
    assert (found.pii, found.suspected) == ("ssn", True)
    assert found.reason.startswith("name does not suggest ssn; 20/20")


def test_a_name_alone_is_suspected() -> None:
    assert label("ssn", None).suspected  # values not read (permission, type)
    assert label("ssn", []).suspected  # an empty table
    found = label("ssn", ["redacted"] * 20)
    assert found.suspected and found.confidence < 0.5
    assert "only 0/20" in found.reason


def test_too_few_values_leave_the_label_suspected() -> None:
    found = label("phone", phones(3))
    assert found.suspected and "too few values" in found.reason


def test_free_text_that_mentions_an_identifier_is_suspected() -> None:
    notes = ["asked about the invoice"] * 45 + [f"customer ssn {s} on file" for s in ssns(5)]
    found = label("notes", notes)
    assert (found.pii, found.suspected) == ("ssn", True)
    assert found.confidence < 0.3
    assert found.reason.startswith("5/50 sampled values contain a valid US SSN")


def test_bare_nine_digit_numbers_are_not_ssns_without_the_name() -> None:
    ids = [str(100_000_001 + i) for i in range(50)]
    assert label_column("order_ref", ids, detectors=ALL, today=TODAY) is None
    assert label("ssn", [s.replace("-", "") for s in ssns(20)]).suspected is False


def test_passport_and_birth_dates_need_the_name() -> None:
    assert (
        label_column("code", [f"X{i:08d}" for i in range(30)], detectors=ALL, today=TODAY) is None
    )
    assert label_column("created", ["2024-01-02"] * 30, detectors=ALL, today=TODAY) is None
    future = label("dob", ["2030-01-01"] * 30)  # after ``today``: not a birth date
    assert future.suspected


def test_only_enabled_detectors_run() -> None:
    emails = [f"user{i}@example.com" for i in range(30)]
    assert label_column("email", emails, detectors=[Detector.SSN], today=TODAY) is None


def test_other_columns_are_left_alone() -> None:
    for column, values in [
        ("id", [str(i) for i in range(50)]),
        ("status", ["open", "closed"] * 25),
        ("amount", ["12.50", "99.99"] * 25),
        ("created_at", ["2024-05-01 10:00:00+00"] * 50),
    ]:
        assert label_column(column, values, detectors=ALL, today=TODAY) is None, column


def test_phone_region() -> None:
    national = [f"020 7946 {i:04d}" for i in range(20)]
    uk = label_column("contact", national, detectors=ALL, region="GB", today=TODAY)
    assert uk is not None and uk.pii == "phone"
    assert label_column("contact", national, detectors=ALL, region="US", today=TODAY) is None


MARK = "QZXJ"


@given(st.lists(st.text(min_size=1, max_size=40), max_size=20), st.sampled_from(ALL))
def test_reasons_never_quote_a_value(texts: list[str], detector: Detector) -> None:
    values = [f"{MARK}{t} {s}" for t, s in zip(texts, ssns(len(texts)), strict=True)]
    for column in ("notes", "ssn", str(detector)):
        found = label_column(column, values, detectors=ALL, today=TODAY)
        assert found is None or MARK not in found.reason


# -- the catalog file --------------------------------------------------------------------------


def _policy(extra: str = "") -> Policy:
    text = POLICY.read_text(encoding="utf-8")
    if extra:
        text = text.replace("pii:", "pii:\n" + extra, 1)
    return load_policy(str(POLICY)) if not extra else load_policy_text(text, source="policy")


def _load(text: str, policy: Policy) -> Catalog:
    errors = YamlErrors("catalog.yaml")
    node = compose_text(text, errors)
    assert node is not None, errors.messages
    catalog = read_catalog(NodeReader(errors), node, policy)
    assert not errors.messages, errors.messages
    return catalog


def test_rendered_catalog_loads_back() -> None:
    table = TableName("public", "customers")
    labels = [
        ColumnLabel("ssn", "ssn", 0.98, False, "name matches ssn; 48/50 sampled values are SSNs"),
        ColumnLabel("notes", "ssn", 0.14, True, "5/50 sampled values contain a valid US SSN"),
    ]
    text = render_catalog(
        [
            ScannedTable(table, labels, 4, 50),
            ScannedTable(TableName("public", "orders"), [], 7, 200),
        ],
        header=["a header"],
    )
    assert "# name matches ssn; 48/50 sampled values are SSNs\n  ssn: {class: ssn" in text
    assert "# public.orders: no PII found (7 columns, 200 rows sampled)" in text
    catalog = _load(text, _policy())
    assert catalog.table(table)["ssn"].suspected is False
    assert catalog.table(table)["ssn"].confidence == 0.98
    assert catalog.table(table)["notes"].suspected is True
    assert list(catalog.tables()) == [table]


@pytest.mark.parametrize(
    ("schema", "name", "column"),
    [
        ("Sales", "Customers", "SSN"),
        ("public", "on", "null"),
        ("odd schema", 'we"ird', "line\nbreak"),
        ("ünï", "cöde", "yes"),
        ("a.b", "c", "d.e"),
    ],
)
def test_odd_names_survive_the_round_trip(schema: str, name: str, column: str) -> None:
    table = TableName(schema, name)
    label = ColumnLabel(column, "phone", 0.5, True, "name matches phone; values not sampled")
    text = render_catalog([ScannedTable(table, [label], 1, None, note="values not read\n(x)")])
    catalog = _load(text, _policy())
    assert catalog.pii_of(table, column) == "phone"


def test_an_empty_scan_is_an_empty_catalog() -> None:
    text = render_catalog([ScannedTable(TableName("public", "t"), [], 2, 0)], header=["h"])
    assert not _load(text, _policy())


def test_classes_the_policy_adds_load_back() -> None:
    policy = _policy("  email: {sensitivity: medium}\n")
    label = ColumnLabel("email", "email", 1.0, False, "name matches email")
    text = render_catalog([ScannedTable(TableName("public", "users"), [label], 1, 10)])
    assert _load(text, policy).pii_of(TableName("public", "users"), "email") == "email"
