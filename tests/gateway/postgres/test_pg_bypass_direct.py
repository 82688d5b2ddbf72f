"""Every bypass case leaks the SSN when run straight against PostgreSQL.

This is the half of the bypass suite that keeps the other half honest: the gateway tests run
the same cases through the gateway and assert that nothing leaks before a step-up, which would
pass vacuously for a case that never leaked at all.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from bypass_corpus import BYPASSES, CATALOG, SSN, Bypass, leaks, loaded_corpus, observe
from sqlalchemy import make_url

from piigate.gateway.postgres.catalog import TableName, read_catalog
from piigate.policy.loader import load_policy
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_text
from services_support import unavailable

_EXAMPLE_POLICY = Path(__file__).resolve().parents[3] / "examples" / "policy.yaml"


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def corpus_schema() -> Iterator[tuple[str, str]]:
    """(libpq DSN, schema) with the corpus loaded once per module; dropped afterwards."""
    # Module-scoped (the function-scoped ``pg_admin_url`` cannot be used), same URL and skip.
    url = os.environ.get("PIIGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    dsn = _dsn(url)
    try:
        with psycopg.connect(dsn, connect_timeout=2):
            pass
    except (psycopg.OperationalError, OSError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        unavailable(f"PostgreSQL not reachable: set PIIGATE_TEST_DATABASE_URL ({first_line})")
    with loaded_corpus(dsn) as schema:
        yield dsn, schema


@pytest.mark.postgres
@pytest.mark.parametrize("case", BYPASSES, ids=[c.id for c in BYPASSES])
def test_case_leaks_directly(case: Bypass, corpus_schema: tuple[str, str]) -> None:
    dsn, schema = corpus_schema
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        seen = observe(conn, case)
    assert leaks(seen, case), f"{case.id} did not leak; the client saw:\n{seen}"


@pytest.mark.postgres
def test_observe_keeps_going_after_an_error(corpus_schema: tuple[str, str]) -> None:
    """What a gateway's refusal looks like to ``observe``: an error in a transaction, recorded,
    rolled back, and the next statement still runs and is seen."""
    dsn, schema = corpus_schema
    failing = Bypass(
        "probe",
        "error",
        "SELECT 1 / 0",
        setup=("BEGIN",),
        then=("SELECT 'after' AS tail",),
        fetch="error",
    )
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        seen = observe(conn, failing)
        again = observe(conn, failing)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert "error 22012: division by zero" in seen
    assert seen.splitlines()[-2:] == ["tail", "after"]
    assert again == seen  # the handlers of the first run were removed


def test_the_corpus_is_large_and_well_formed() -> None:
    ids = [c.id for c in BYPASSES]
    assert len(ids) >= 70
    assert len(set(ids)) == len(ids), [i for i, n in Counter(ids).items() if n > 1]
    for case in BYPASSES:
        # The value must come from the database, never from the statement text itself.
        assert SSN not in " ".join((*case.setup, case.sql, *case.then)), case.id
        assert case.needle and case.needle not in " ".join((*case.setup, case.sql)), case.id
        assert case.protocol == "extended" or not (case.binary or case.params), case.id


def test_the_catalog_is_what_the_gateway_reads() -> None:
    """``CATALOG`` in the YAML shape of ``gateway.postgres.catalog``, read by the real reader
    against the example policy's PII classes, mixed-case names kept as quoted."""
    errors = YamlErrors("<catalog>")
    node = compose_text(yaml.safe_dump(CATALOG("bp1")), errors)
    assert node is not None
    catalog = read_catalog(NodeReader(errors), node, load_policy(str(_EXAMPLE_POLICY)))
    assert not errors, errors.messages
    assert catalog.pii_of(TableName("bp1", "customers"), "ssn") == "ssn"
    assert catalog.pii_of(TableName("bp1", "accounts"), "iban") == "bank_account"
    assert catalog.pii_of(TableName("bp1", "People"), "TaxId") == "ssn"
    assert catalog.table(TableName("bp1", "notes")) == {}
