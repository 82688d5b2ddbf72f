"""The bypass corpus, part one: the case model, and SSNs READ through value expressions.

Each case is one way a client could get the catalogued ``customers.ssn`` value (or a
reversible transform of it) back without naming the column plainly. Here: expressions, casts,
JSON and XML builders, arrays and whole-row references. ``bypass_queries`` has query shapes
(views, functions, CTEs, set operations, subqueries, windows, spellings, the extended protocol,
cursors), ``bypass_flows`` the data flows (temporary objects, settings, notifications, notices,
errors, COPY); ``bypass_corpus`` joins them with the schema and the observer.

A case names the needle row explicitly (``WHERE id = 2``) when the result would otherwise be
a transform of several rows. ``@schema@`` and ``@database@`` in any statement are replaced by
the observer (the schema under test and the connection's database).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["EXPRESSIONS", "SSN", "Bypass", "Fetch", "Protocol", "case"]

SSN: Final = "219-09-9999"
"""The SSN of customer 2: what every case must bring back (maybe transformed, see ``needle``)."""

Protocol = Literal["simple", "extended"]
Fetch = Literal["rows", "notice", "error", "notify", "copy", "setting", "then"]


@dataclass(frozen=True, slots=True)
class Bypass:
    """One statement that carries the SSN to the client, and how the client sees it.

    ``setup`` runs first and ``then`` after, on the same connection (simple protocol);
    ``sql`` is the statement under test, sent with ``protocol`` (``extended`` = Parse/Bind/
    Execute: a named server-side prepared statement unless ``prepare`` is false, ``binary``
    results if asked, ``params`` bound as ``%s``). ``fetch``
    says where the value shows: result rows, a notice, an error, a notification, COPY data, a
    reported setting (ParameterStatus), or the rows of a ``then`` statement that reads a data
    flow back.
    """

    category: str
    name: str
    sql: str
    setup: tuple[str, ...] = ()
    then: tuple[str, ...] = ()
    protocol: Protocol = "simple"
    binary: bool = False
    prepare: bool = True
    params: tuple[object, ...] = ()
    needle: str = SSN
    fetch: Fetch = "rows"

    @property
    def id(self) -> str:
        return f"{self.category}-{self.name}"


def case(category: str, name: str, sql: str, **options: object) -> Bypass:
    """A case with keyword options (``setup=``, ``then=``, ...); tuples kept as given."""
    return Bypass(category, name, sql, **options)  # type: ignore[arg-type]


_DIGITS: Final = SSN.replace("-", "")

_EXPRESSIONS = (
    case("expr", "plain", "SELECT ssn FROM customers"),
    case("expr", "concat", "SELECT name || ':' || ssn FROM customers"),
    case("expr", "upper", "SELECT upper(ssn) FROM customers"),
    case("expr", "lower", "SELECT lower(ssn) FROM customers"),
    case("expr", "substr", "SELECT substr(ssn, 1) FROM customers"),
    case("expr", "replace", "SELECT replace(ssn, '-', '') FROM customers", needle=_DIGITS),
    case("expr", "reverse", "SELECT reverse(ssn) FROM customers", needle=SSN[::-1]),
    case("expr", "format", "SELECT format('%s/%s', name, ssn) FROM customers"),
    case("expr", "concat-ws", "SELECT concat_ws(',', name, ssn) FROM customers"),
    case("expr", "left-right", "SELECT left(ssn, 3) || right(ssn, 8) FROM customers"),
    case(
        "expr",
        "split-part",
        "SELECT concat(split_part(ssn, '-', 1), split_part(ssn, '-', 2), "
        "split_part(ssn, '-', 3)) FROM customers",
        needle=_DIGITS,
    ),
    case(
        "expr",
        "translate",
        "SELECT translate(ssn, '0123456789', 'abcdefghij') FROM customers",
        needle="cbj-aj-jjjj",
    ),
    case(
        "expr",
        "regexp-replace",
        "SELECT regexp_replace(ssn, '-', '.', 'g') FROM customers",
        needle="219.09.9999",
    ),
    case(
        "expr",
        "overlay",
        "SELECT overlay(ssn placing '/' from 4 for 1) FROM customers",
        needle="219/09-9999",
    ),
    case(
        "expr", "case-coalesce", "SELECT CASE WHEN id > 0 THEN coalesce(ssn, '') END FROM customers"
    ),
    case("expr", "textcat-function", "SELECT pg_catalog.textcat(ssn, '') FROM customers"),
    case("expr", "operator-syntax", "SELECT ssn OPERATOR(pg_catalog.||) '' FROM customers"),
    case("expr", "lpad", "SELECT lpad(ssn, 15, '*') FROM customers"),
    case("expr", "quote-literal", "SELECT quote_literal(ssn) FROM customers"),
    case(
        "expr",
        "base64",
        "SELECT encode(convert_to(ssn, 'UTF8'), 'base64') FROM customers",
        needle="MjE5LTA5LTk5OTk=",
    ),
    case(
        "expr",
        "hex",
        "SELECT encode(ssn::bytea, 'hex') FROM customers",
        needle=SSN.encode().hex(),
    ),
    case(
        "expr",
        "char-by-char",
        "SELECT string_agg(substr(c.ssn, g, 1), '' ORDER BY g) "
        "FROM customers c, generate_series(1, length(c.ssn)) g WHERE c.id = 2",
    ),
)

_CASTS = (
    case("cast", "bytea", "SELECT ssn::bytea FROM customers"),
    case("cast", "varchar", "SELECT ssn::varchar(20) FROM customers"),
    case("cast", "char", "SELECT CAST(ssn AS char(11)) FROM customers"),
    case("cast", "bytea-text", "SELECT ssn::bytea::text FROM customers", needle=SSN.encode().hex()),
    case("cast", "name", "SELECT ssn::name FROM customers"),
    case("cast", "xml", "SELECT ssn::xml FROM customers"),
    case("cast", "jsonb", "SELECT to_jsonb(ssn) FROM customers"),
)

_DOCUMENTS = (
    case("json", "row-to-json", "SELECT row_to_json(c) FROM customers c"),
    case("json", "to-jsonb", "SELECT to_jsonb(c) FROM customers c"),
    case("json", "json-agg", "SELECT json_agg(c) FROM customers c"),
    case("json", "build-object", "SELECT jsonb_build_object('k', ssn) FROM customers"),
    case("json", "object-agg", "SELECT json_object_agg(id, ssn) FROM customers"),
    case("json", "path-query", "SELECT jsonb_path_query(to_jsonb(c), '$.ssn') FROM customers c"),
    case(
        "json",
        "populate-record",
        "SELECT r.ssn FROM customers c, json_populate_record(NULL::customers, row_to_json(c)) r",
    ),
    case(
        "json",
        "each-text",
        "SELECT e.value FROM customers c, jsonb_each_text(to_jsonb(c)) e",
    ),
    case(
        "json",
        "to-record",
        "SELECT r.x FROM customers c, jsonb_to_record(jsonb_build_object('x', c.ssn)) AS r(x text)",
    ),
    case("xml", "element", "SELECT xmlelement(name s, ssn) FROM customers"),
    case("xml", "forest", "SELECT xmlforest(name, ssn) FROM customers"),
    case("xml", "agg", "SELECT xmlagg(xmlelement(name s, ssn)) FROM customers"),
    case(
        "xml",
        "query-to-xml",
        "SELECT query_to_xml('select ss' || 'n from customers', true, false, '')",
    ),
    case("xml", "table-to-xml", "SELECT table_to_xml('customers', true, false, '')"),
)

_ARRAYS = (
    case("array", "array-agg", "SELECT array_agg(ssn) FROM customers"),
    case("array", "string-agg", "SELECT string_agg(ssn, ',') FROM customers"),
    case("array", "constructor", "SELECT ARRAY[name, ssn] FROM customers"),
    case("array", "subquery", "SELECT ARRAY(SELECT ssn FROM customers)"),
    case("array", "unnest", "SELECT x FROM unnest(ARRAY(SELECT ssn FROM customers)) AS x"),
)

_WHOLE_ROWS = (
    case("row", "alias", "SELECT c FROM customers c"),
    case("row", "text-cast", "SELECT c::text FROM customers c"),
    case("row", "field", "SELECT (c).ssn FROM customers c"),
    case("row", "table-star", "SELECT customers.* FROM customers"),
    case("row", "star", "SELECT * FROM customers"),
    case("row", "table-statement", "TABLE customers"),
    case("row", "column-aliases", "SELECT x FROM customers AS c(i, n, x)"),
    case("row", "row-constructor", "SELECT ROW(c.*) FROM customers c"),
    case("row", "concat", "SELECT 'row: ' || c FROM customers c"),
    case("row", "format", "SELECT format('%s', c) FROM customers c"),
    case("row", "record", "SELECT (c.id, c.ssn) FROM customers c"),
)

EXPRESSIONS: Final[tuple[Bypass, ...]] = (
    *_EXPRESSIONS,
    *_CASTS,
    *_DOCUMENTS,
    *_ARRAYS,
    *_WHOLE_ROWS,
)
