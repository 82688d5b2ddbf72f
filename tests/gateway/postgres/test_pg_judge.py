"""The judge (``judge``): the parser's and the plan's readings merged, never to less than either
says, and the engine's answers per action combined into one ruling (deny, step-up, or run with
masks), with a fake decide function and hand-built decisions."""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from piigate.callers import Caller
from piigate.gateway.postgres.analysis import Statement, Touch, Use
from piigate.gateway.postgres.catalog import Catalog, CatalogColumn, TableName
from piigate.gateway.postgres.judge import (
    Ruling,
    Touches,
    every_class,
    merge,
    nothing_to_ask,
    rule,
    statement_digest,
)
from piigate.gateway.postgres.plan import PlanFacts
from piigate.model import (
    AccessRequest,
    Action,
    Challenge,
    Context,
    Decision,
    Outcome,
    Requirement,
    Resource,
)

CUSTOMERS = TableName("public", "customers")
ACCOUNTS = TableName("bank", "accounts")
NOTES = TableName("public", "notes")
SSN = CatalogColumn(CUSTOMERS, "ssn", "ssn")
PHONE = CatalogColumn(CUSTOMERS, "phone", "phone")
IBAN = CatalogColumn(ACCOUNTS, "iban", "bank_account")
CATALOG = Catalog({CUSTOMERS: {"ssn": SSN, "phone": PHONE}, ACCOUNTS: {"iban": IBAN}})
ALL = frozenset({"ssn", "phone", "bank_account"})
NONE: frozenset[str] = frozenset()


def _select(*touches: Touch, outputs: tuple[frozenset[str], ...] | None = ()) -> Statement:
    return Statement(
        "SELECT ...",
        "select",
        touches=frozenset(touches),
        outputs=outputs,
        tables=frozenset({CUSTOMERS}),
    )


def _facts(**given: object) -> PlanFacts:
    facts = PlanFacts(
        relations=frozenset({CUSTOMERS}),
        reads=frozenset(),
        filters=frozenset(),
        outputs=None,
        functions=frozenset(),
        whole_rows=frozenset(),
        modified=None,
        operation=None,
        rows=None,
    )
    return replace(facts, **given)  # type: ignore[arg-type]


# -- merge -----------------------------------------------------------------------------------------


def test_the_parsers_reading_alone() -> None:
    statement = _select(
        Touch(SSN, Use.OUTPUT), Touch(PHONE, Use.FILTER), outputs=(frozenset({"ssn"}), NONE)
    )
    touches = merge(statement, None, CATALOG)
    assert touches.reads == {"ssn", "phone"} and touches.unmaskable == {"phone"}
    assert touches.outputs == (frozenset({"ssn"}), NONE)
    assert touches.tables == (CUSTOMERS,) and touches.fail_closed is None
    assert not (touches.writes or touches.deletes or touches.exports)


def test_writes_deletes_exports_and_flows() -> None:
    statement = Statement(
        "COPY ...",
        "copy_to",
        touches=frozenset({Touch(SSN, Use.EXPORT), Touch(PHONE, Use.FLOW), Touch(IBAN, Use.WRITE)}),
    )
    touches = merge(statement, None, CATALOG)
    assert touches.exports == {"ssn"} and touches.writes == {"bank_account"}
    assert touches.unmaskable == {"ssn", "phone"} and touches.reads == {"phone"}
    delete = Statement("DELETE ...", "delete", touches=frozenset({Touch(SSN, Use.DELETE)}))
    assert merge(delete, None, CATALOG).deletes == {"ssn"}


def test_refused_and_failed_statements() -> None:
    refused = merge(Statement("SET x", "set", refuse="no"), _facts(), CATALOG)
    assert refused == Touches("set", refuse="no")
    failed = merge(Statement("DO ...", "other", fail_closed="a DO block"), None, CATALOG)
    assert failed == every_class("other", CATALOG, "a DO block")


def test_every_class() -> None:
    touches = every_class("copy_to", CATALOG, "why")
    assert touches.reads == touches.unmaskable == touches.exports == ALL
    assert touches.outputs is None and touches.fail_closed == "why" and touches.changes_session
    assert touches.tables == (ACCOUNTS, CUSTOMERS)
    assert every_class("select", CATALOG, "why").exports == NONE


@pytest.mark.parametrize(
    "table",
    [
        TableName("pg_catalog", "pg_statistic"),
        TableName("", "pg_stats"),
        TableName("", "pg_largeobject"),
        TableName("pg_catalog", "pg_stat_activity"),
    ],
)
def test_statistics_large_objects_and_statement_texts_touch_every_class(table: TableName) -> None:
    statement = replace(_select(), tables=frozenset({table}))
    why = "reads statistics, large objects or statement texts"
    assert merge(statement, None, CATALOG).fail_closed == why
    via_plan = merge(_select(), _facts(relations=frozenset({table})), CATALOG)
    assert via_plan.reads == ALL and via_plan.unmaskable == ALL


def test_a_function_in_the_plan_touches_every_class() -> None:
    statement = replace(_select(Touch(SSN, Use.OUTPUT)), changes_session=True)
    touches = merge(statement, _facts(functions=frozenset({"public.f", "g"})), CATALOG)
    assert touches.reads == touches.unmaskable == ALL and touches.outputs is None
    assert touches.fail_closed == "calls g, public.f" and touches.changes_session


def test_the_plans_reads_filters_whole_rows_and_relations_are_added() -> None:
    facts = _facts(
        relations=frozenset({CUSTOMERS, NOTES}),
        reads=frozenset({PHONE}),
        filters=frozenset({SSN}),
        whole_rows=frozenset({ACCOUNTS}),
    )
    touches = merge(_select(Touch(SSN, Use.OUTPUT)), facts, CATALOG)
    assert touches.reads == ALL and touches.unmaskable == {"ssn"}
    assert touches.tables == (CUSTOMERS, NOTES)


@pytest.mark.parametrize(
    ("parser", "plan", "joined"),
    [
        (None, (frozenset({"ssn"}),), (frozenset({"ssn"}),)),
        ((frozenset({"ssn"}), NONE), None, (frozenset({"ssn"}), NONE)),
        (None, None, None),
        (
            (frozenset({"ssn"}), NONE),
            (NONE, frozenset({"phone"}), frozenset({"bank_account"})),  # a hidden sort key
            (frozenset({"ssn"}), frozenset({"phone"})),
        ),
        ((frozenset({"ssn"}), NONE), (frozenset({"ssn"}),), None),  # they disagree
    ],
)
def test_outputs_are_joined_column_by_column(
    parser: tuple[frozenset[str], ...] | None,
    plan: tuple[frozenset[str], ...] | None,
    joined: tuple[frozenset[str], ...] | None,
) -> None:
    statement = _select(outputs=parser)
    assert merge(statement, _facts(outputs=plan), CATALOG).outputs == joined


def test_a_row_change_reads_its_tables_classes() -> None:
    update = Statement("UPDATE customers SET note = 'x'", "update", tables=frozenset({CUSTOMERS}))
    touches = merge(update, None, CATALOG)
    assert touches.reads == {"ssn", "phone"} and touches.unmaskable == NONE
    # The plan's modified table counts too, whatever the parser named.
    blind = Statement("UPDATE v SET note = 'x'", "update", tables=frozenset({NOTES}))
    facts = _facts(relations=frozenset({NOTES}), modified=ACCOUNTS)
    assert merge(blind, facts, CATALOG).reads == {"bank_account"}
    insert = Statement("INSERT ...", "insert", tables=frozenset({CUSTOMERS}))
    assert merge(insert, None, CATALOG).reads == NONE


# -- rule --------------------------------------------------------------------------------------

CALLER = Caller.person("alice")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _challenge() -> Challenge:
    return Challenge(
        "ch-1",
        "alice",
        Requirement("aal2"),
        Action.READ,
        frozenset({"ssn"}),
        Resource("table"),
        NOW,
        NOW,
    )


def _decision(
    outcome: Outcome, mask: frozenset[str] = NONE, *, challenge: bool = False
) -> Decision:
    return Decision(
        f"d-{outcome}-{len(mask)}",
        outcome,
        mask=mask,
        challenge=_challenge() if challenge else None,
    )


class Engine:
    """Answers each action with a given decision (allow when not given) and keeps the asks."""

    def __init__(self, answers: dict[Action, Decision] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[AccessRequest] = []

    async def __call__(self, request: AccessRequest, caller: Caller) -> Decision:
        assert caller is CALLER
        self.asked.append(request)
        return self.answers.get(request.action, _decision(Outcome.ALLOW))


async def _rule(touches: list[Touches], engine: Engine, *, unmask: bool = False) -> Ruling:
    return await rule(
        touches,
        engine,
        caller=CALLER,
        context=Context(ip="10.0.0.1"),
        grants=("grant-token",),
        binding={"protocol": "postgres", "statement": "abc"},
        unmask=unmask,
    )


READ_SSN = Touches("select", reads=frozenset({"ssn"}), tables=(CUSTOMERS,))
FILTER_SSN = replace(READ_SSN, unmaskable=frozenset({"ssn"}))


async def test_one_request_per_action_with_its_classes() -> None:
    engine = Engine()
    touches = [
        Touches("delete", deletes=frozenset({"ssn"}), tables=(CUSTOMERS,)),
        Touches("insert", writes=frozenset({"bank_account"}), tables=(ACCOUNTS,)),
        Touches("update", writes=frozenset({"phone"})),
        Touches("copy_to", exports=frozenset({"phone"}), reads=frozenset({"phone", "ssn"})),
        READ_SSN,
        Touches("select", reads=frozenset({"bank_account"}), tables=(ACCOUNTS,)),
    ]
    ruling = await _rule(touches, engine)
    assert ruling.outcome is Outcome.ALLOW and ruling.masked == NONE
    asked = [(r.action, r.pii, r.resource) for r in engine.asked]
    assert asked == [  # the reads first, the deletes (often bound grants) last
        (Action.READ, ALL - {"phone"}, Resource("table", None)),  # phone: exported
        (Action.EXPORT, frozenset({"phone"}), Resource("table", None)),
        (Action.CREATE, frozenset({"bank_account"}), Resource("table", str(ACCOUNTS))),
        (Action.UPDATE, frozenset({"phone"}), Resource("table", None)),
        (Action.DELETE, frozenset({"ssn"}), Resource("table", str(CUSTOMERS))),
    ]
    for request in engine.asked:
        assert request.subject == CALLER.subject and request.session == CALLER.session
        assert request.context == Context(ip="10.0.0.1") and request.grants == ("grant-token",)
        assert request.binding_fields == {
            "protocol": "postgres",
            "statement": "abc",
            "action": request.action.value,
        }
    assert ruling.decisions == tuple(d.id for d in [_decision(Outcome.ALLOW)] * 5)


async def test_nothing_touched_asks_nothing() -> None:
    engine = Engine()
    ruling = await _rule([Touches("select"), Touches("set")], engine)
    assert ruling.outcome is Outcome.ALLOW and engine.asked == []


@pytest.mark.parametrize(
    "touches",
    [[Touches("select"), Touches("set")], [READ_SSN], [Touches("set", refuse="no")], [FILTER_SSN]],
)
async def test_nothing_to_ask_is_what_rule_allows_without_asking(touches: list[Touches]) -> None:
    engine = Engine()
    ruling = await _rule(touches, engine)
    assert nothing_to_ask(touches) == (ruling == Ruling(Outcome.ALLOW) and engine.asked == [])


async def test_a_refused_statement_is_denied_without_asking() -> None:
    engine = Engine()
    ruling = await _rule([READ_SSN, Touches("set", refuse="not through the gateway")], engine)
    assert ruling.outcome is Outcome.DENY and ruling.what == "not through the gateway"
    assert engine.asked == []


async def test_the_first_action_that_does_not_allow_ends_the_asking() -> None:
    # A later allow could spend a grant bound to this statement, which then would not run.
    deny = _decision(Outcome.DENY)
    engine = Engine({Action.UPDATE: _decision(Outcome.STEP_UP), Action.READ: deny})
    touches = [Touches("update", writes=frozenset({"phone"}), tables=(CUSTOMERS,)), READ_SSN]
    ruling = await _rule(touches, engine)
    assert ruling.outcome is Outcome.DENY and ruling.decision is deny
    assert ruling.what == f"read {CUSTOMERS} (ssn)"
    assert len(ruling.decisions) == 1
    step_up = _decision(Outcome.STEP_UP, challenge=True)
    engine = Engine({Action.READ: step_up, Action.DELETE: _decision(Outcome.ALLOW)})
    touches = [Touches("delete", deletes=frozenset({"ssn"}), tables=(CUSTOMERS,)), READ_SSN]
    ruling = await _rule(touches, engine)
    assert ruling.outcome is Outcome.STEP_UP and [r.action for r in engine.asked] == [Action.READ]


async def test_a_step_up_is_chosen_over_masks() -> None:
    step_up = _decision(Outcome.STEP_UP, challenge=True)
    engine = Engine(
        {Action.EXPORT: step_up, Action.READ: _decision(Outcome.ALLOW, frozenset({"ssn"}))}
    )
    touches = [Touches("copy_to", exports=frozenset({"phone"}), tables=(CUSTOMERS,)), READ_SSN]
    ruling = await _rule(touches, engine)
    assert ruling.outcome is Outcome.STEP_UP and ruling.decision is step_up
    assert ruling.what == f"export {CUSTOMERS} (phone)"


async def test_a_mask_on_result_rows_lets_the_statement_run() -> None:
    engine = Engine({Action.READ: _decision(Outcome.ALLOW, frozenset({"ssn"}), challenge=True)})
    ruling = await _rule([READ_SSN], engine)
    assert ruling.outcome is Outcome.ALLOW and ruling.masked == {"ssn"}


@pytest.mark.parametrize(
    "touches",
    [
        FILTER_SSN,
        replace(READ_SSN, unmaskable=frozenset({"ssn"}), kind="insert"),  # a flow
        Touches("copy_to", reads=frozenset({"ssn"}), exports=frozenset({"ssn"})),
    ],
    ids=["filter", "flow", "export"],
)
async def test_a_masked_class_used_beyond_the_rows_needs_the_step_up(touches: Touches) -> None:
    masking = _decision(Outcome.ALLOW, frozenset({"ssn"}), challenge=True)
    engine = Engine({Action.READ: masking, Action.EXPORT: masking})
    ruling = await _rule([touches], engine)
    assert ruling.outcome is Outcome.STEP_UP and ruling.decision is masking
    assert ruling.decision.challenge is not None and "(ssn)" in ruling.what
    # The same without a challenge to offer: denied.
    bare = _decision(Outcome.ALLOW, frozenset({"ssn"}))
    ruling = await _rule([touches], Engine({Action.READ: bare, Action.EXPORT: bare}))
    assert ruling.outcome is Outcome.DENY and ruling.decision is bare


async def test_a_mask_on_a_write_needs_the_step_up() -> None:
    masking = _decision(Outcome.ALLOW, frozenset({"phone"}), challenge=True)
    touches = [Touches("update", writes=frozenset({"phone"}), tables=(CUSTOMERS,))]
    ruling = await _rule(touches, Engine({Action.UPDATE: masking}))
    assert ruling.outcome is Outcome.STEP_UP and ruling.what == f"update {CUSTOMERS} (phone)"


async def test_a_mask_of_another_class_does_not_block_a_filter() -> None:
    engine = Engine({Action.READ: _decision(Outcome.ALLOW, frozenset({"phone"}))})
    touches = [replace(FILTER_SSN, reads=frozenset({"ssn", "phone"}))]
    ruling = await _rule(touches, engine)
    assert ruling.outcome is Outcome.ALLOW and ruling.masked == {"phone"}


async def test_unmask_turns_every_mask_into_a_step_up() -> None:
    masking = _decision(Outcome.ALLOW, frozenset({"ssn"}), challenge=True)
    ruling = await _rule([READ_SSN], Engine({Action.READ: masking}), unmask=True)
    assert ruling.outcome is Outcome.STEP_UP and ruling.decision is masking
    bare = _decision(Outcome.ALLOW, frozenset({"ssn"}))
    ruling = await _rule([READ_SSN], Engine({Action.READ: bare}), unmask=True)
    assert ruling.outcome is Outcome.DENY
    nothing_masked = await _rule([READ_SSN], Engine(), unmask=True)
    assert nothing_masked.outcome is Outcome.ALLOW


# -- statement_digest ----------------------------------------------------------------------------


def test_the_digest_binds_text_and_parameters_without_holding_them() -> None:
    sql = "SELECT * FROM customers WHERE ssn = $1"
    values = [
        statement_digest(sql),
        statement_digest(sql, (b"219-09-9999",)),
        statement_digest(sql, (b"219-09-9998",)),
        statement_digest(sql, (None,)),
        statement_digest(sql, (b"",)),
        statement_digest(sql, (b"ab", b"c")),
        statement_digest(sql, (b"a", b"bc")),
        statement_digest(sql + " ", (b"219-09-9999",)),
    ]
    assert len(set(values)) == len(values)
    assert statement_digest(sql, (b"219-09-9999",)) == values[1]
    for digest in values:  # a SHA-256 in hex: nothing of the text or the values can show
        assert len(digest) == 64 and set(digest) <= set(string.hexdigits.lower())


@pytest.mark.parametrize("use", ["reads", "writes", "deletes", "exports"])
def test_any_follows_what_is_touched_however_it_is_made(use: str) -> None:
    touched = Touches("select", **{use: frozenset({"ssn"})})  # type: ignore[arg-type]
    assert touched.any and not Touches("select").any
    assert not replace(touched, **{use: frozenset()}).any
    assert replace(Touches("select"), **{use: frozenset({"ssn"})}).any
    assert Touches("select") == replace(touched, **{use: frozenset()})  # not compared
