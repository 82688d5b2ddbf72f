"""The catalog of PII columns, read through the policy's YAML reader (errors as FILE:LINE:COL)."""

from __future__ import annotations

import textwrap

from piigate.gateway.postgres.catalog import (
    Catalog,
    CatalogColumn,
    TableName,
    parse_table_name,
    read_catalog,
)
from piigate.policy.loader import load_policy_text
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_text

POLICY = load_policy_text(
    textwrap.dedent(
        """\
        version: 1
        levels:
          aal1: {acr: "urn:piigate:aal1"}
          aal2: {acr: "urn:piigate:aal2"}
        pii:
          ssn: {}
          phone: {}
        factors:
          totp: {level: aal2}
        rules:
          - name: read-ssn
            when: {pii: [ssn], action: [read]}
            require: {level: aal2, max_age: 5m}
        stepup: {challenge_ttl: 5m, max_attempts: 5, grant_ttl: 15m}
        profile: nist-800-63b-4
        """
    )
)


def _read(text: str) -> tuple[Catalog, list[str]]:
    errors = YamlErrors("catalog.yaml")
    node = compose_text(textwrap.dedent(text), errors)
    assert node is not None
    catalog = read_catalog(NodeReader(errors), node, POLICY)
    return catalog, errors.messages


def test_reads_tables_columns_and_scan_marks() -> None:
    catalog, errors = _read(
        """\
        public.customers:
          ssn: ssn
          Phone: {class: phone, confidence: 0.4, suspected: true}
        '"Sales"."Leads"':
          '"Mobile"': phone
        orders: {}
        """
    )
    assert errors == []
    customers = TableName("public", "customers")
    assert catalog.table(customers)["ssn"] == CatalogColumn(customers, "ssn", "ssn")
    assert catalog.table(customers)["phone"].suspected
    assert catalog.table(customers)["phone"].confidence == 0.4
    assert catalog.pii_of(TableName("Sales", "Leads"), "Mobile") == "phone"
    assert TableName("public", "orders") not in list(catalog.tables())  # no columns: no entry
    assert catalog.classes() == {"ssn", "phone"}


def test_errors_carry_file_line_and_column() -> None:
    _, errors = _read(
        """\
        public.customers:
          ssn: passport
          '"bad col".x': ssn
        "1table":
          ssn: ssn
        Public.Customers:
          phone: ssn
        """
    )
    assert errors[0].startswith("catalog.yaml:2:")
    assert "unknown PII class 'passport'" in errors[0]
    assert any(e.startswith("catalog.yaml:3:") and "not a column name" in e for e in errors)
    assert any("not a table name" in e for e in errors)
    assert any(e.startswith("catalog.yaml:6:") and "catalogued twice" in e for e in errors)


def test_a_column_mapping_needs_a_class_and_a_sane_confidence() -> None:
    _, errors = _read(
        """\
        customers:
          ssn: {confidence: 0.5}
          phone: {class: phone, confidence: 3}
        """
    )
    assert any("needs a class" in e for e in errors)
    assert any("confidence must be between 0 and 1" in e for e in errors)


def test_table_names_fold_like_postgresql() -> None:
    assert parse_table_name("Customers") == TableName("public", "customers")
    assert parse_table_name('"Sales"."Leads"') == TableName("Sales", "Leads")
    assert parse_table_name('a."b""c"') == TableName("a", 'b"c')
    assert parse_table_name("a.b.c") is None
    assert parse_table_name("1abc") is None
    assert str(TableName("Sales", "leads")) == '"Sales".leads'
