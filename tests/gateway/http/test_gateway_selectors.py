"""Field selectors (the JSONPath subset of gateway routes) and the walk of many at once."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piigate.gateway.http.selectors import (
    WILDCARD,
    Descendant,
    FieldMap,
    SelectorError,
    compile_selector,
)


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("$", ()),
        ("$.ssn", ("ssn",)),
        ("$.bank.account", ("bank", "account")),
        ("$.customers[*].ssn", ("customers", WILDCARD, "ssn")),
        ("$[*].x", (WILDCARD, "x")),
        ("$.a.*", ("a", WILDCARD)),
        ("$.a[0]", ("a", 0)),
        ("$.a[-1]", ("a", -1)),
        ("$['a b']", ("a b",)),
        ('$["a b"].c', ("a b", "c")),
        ("$[ 'x' ][ 2 ]", ("x", 2)),
        ("$['it\\'s']", ("it's",)),
        ('$["say \\"hi\\""]', ('say "hi"',)),
        ("$['a\\\\b\\/c\\n']", ("a\\b/c\n",)),
        ("$['\\u00e9t\\u00E9']", ("été",)),
        ("$['\\ud83d\\ude00']", ("\U0001f600",)),
        ("$.été_1", ("été_1",)),
        ("$._x9", ("_x9",)),
        ("$..ssn", (Descendant("ssn"),)),
        ("$.a..b", ("a", Descendant("b"))),
        ("$..*", (Descendant(WILDCARD),)),
        ("$..[*].x", (Descendant(WILDCARD), "x")),
        ("$..[0]", (Descendant(0),)),
        ("$..['x y']..z", (Descendant("x y"), Descendant("z"))),
    ],
)
def test_selectors_compile(text: str, steps: tuple[object, ...]) -> None:
    selector = compile_selector(text)
    assert selector.steps == steps
    assert str(selector) == text


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("ssn", 0, "starts with $"),
        ("", 0, "starts with $"),
        ("$..", 3, "member name"),
        ("$...a", 3, "after '..'"),
        ("$..[?x]", 4, "filters"),
        ("$.", 2, "member name"),
        ("$.1a", 2, "member name"),
        ("$.a b", 3, "expected '.' or '['"),
        ("$ssn", 1, "expected '.' or '['"),
        ("$[?(@.x)]", 2, "filters"),
        ("$[1:2]", 3, "expected ']'"),
        ("$[:2]", 2, "slices"),
        ("$['a','b']", 5, "unions"),
        ("$[01]", 3, "expected ']'"),
        ("$[-0]", 2, "expected a quoted name"),
        ("$[9007199254740992]", 2, "out of range"),
        ("$['abc", 6, "unterminated"),
        ("$['a\\q']", 4, "unknown escape"),
        ("$['\\u12']", 3, "four hexadecimal"),
        ("$['\\ud83d']", 3, "surrogate"),
        ("$['\\ude00']", 3, "lone low surrogate"),
        ("$['a\nb']", 4, "control characters"),
        ("$[", 2, "expected a quoted name"),
        ("$[*", 3, "expected ']'"),
    ],
)
def test_bad_selectors_say_what_and_where(text: str, offset: int, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        compile_selector(text)
    assert fragment in str(info.value)
    assert info.value.offset == offset


def test_spellings_of_one_selector_normalize_alike() -> None:
    a, b = compile_selector("$.a[0].b"), compile_selector("$['a'][ 0 ][\"b\"]")
    assert a.normalized == b.normalized == "$['a'][0]['b']"
    assert compile_selector("$['it\\'s'][*]").normalized == "$['it\\'s'][*]"
    assert compile_selector("$.a").single and not compile_selector("$.a[*]").single


DOC: dict[str, Any] = {
    "ssn": "123-45-6789",
    "gone": None,
    "bank": {"account": "DE89370400440532013000"},
    "contacts": [{"phone": "+1 555 0100"}, {"phone": {"home": "+1 555 0101"}}, "a string", 7],
    "tags": {"a": {"phone": "1"}, "b": {"phone": "2"}},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$.ssn", [(("ssn",), "123-45-6789")]),
        ("$.gone", [(("gone",), None)]),  # present, with null
        ("$.missing", []),
        ("$.bank.account", [(("bank", "account"), "DE89370400440532013000")]),
        ("$.ssn.first", []),  # a member of a string: absent, not an error
        ("$.bank[0]", []),  # an index into an object
        ("$.contacts.phone", []),  # a member of an array
        ("$.ssn[*]", []),  # every element of a string
        (
            "$.contacts[*].phone",
            [
                (("contacts", 0, "phone"), "+1 555 0100"),
                (("contacts", 1, "phone"), {"home": "+1 555 0101"}),
            ],
        ),
        ("$.contacts[-1]", [(("contacts", 3), 7)]),
        ("$.contacts[4]", []),
        ("$.contacts[-5]", []),
        ("$.tags[*].phone", [(("tags", "a", "phone"), "1"), (("tags", "b", "phone"), "2")]),
        ("$", [((), DOC)]),
    ],
)
def test_find_gives_present_values_and_where_they_are(text: str, expected: list[Any]) -> None:
    found = compile_selector(text).find(DOC)
    assert [(f.location, f.value) for f in found] == expected


def test_find_on_shapes_that_are_not_objects() -> None:
    for doc in ("text", 12, None, True, [], {}):
        assert compile_selector("$.a").find(doc) == []
    assert [f.value for f in compile_selector("$[*].x").find([{"x": 1}, {"y": 2}, {"x": 3}])] == [
        1,
        3,
    ]


def test_replace_makes_a_new_document_and_leaves_the_input_alone() -> None:
    before = copy.deepcopy(DOC)
    out = compile_selector("$.contacts[*].phone").replace(DOC, lambda v: "X")
    assert before == DOC
    assert out["contacts"][:2] == [{"phone": "X"}, {"phone": "X"}]
    assert out["contacts"][2:] == ["a string", 7]
    assert out["bank"] is DOC["bank"]  # untouched parts are shared, not copied
    assert out is not DOC and out["contacts"] is not DOC["contacts"]


def test_replace_with_nothing_selected_returns_the_same_document() -> None:
    assert compile_selector("$.nowhere[*].x").replace(DOC, lambda v: "X") is DOC
    assert FieldMap(()).replace(DOC, lambda v, labels: "X") is DOC


def test_replace_the_root() -> None:
    assert compile_selector("$").replace({"a": 1}, lambda v: "X") == "X"


def _map(*pairs: tuple[str, str]) -> FieldMap[str]:
    return FieldMap((compile_selector(s), label) for s, label in pairs)


def test_overlapping_selectors_give_a_value_every_label() -> None:
    fields = _map(("$.a[*]", "wild"), ("$.a[0]", "first"), ("$.a[-1]", "last"), ("$.b", "b"))
    doc = {"a": ["x"], "b": 1}
    labels = {f.location: set(ls) for f, ls in fields.find(doc)}
    assert labels == {("a", 0): {"wild", "first", "last"}, ("b",): {"b"}}
    doc2 = {"a": ["x", "y", "z"]}
    labels2 = {f.location: set(ls) for f, ls in fields.find(doc2)}
    assert labels2 == {("a", 0): {"wild", "first"}, ("a", 1): {"wild"}, ("a", 2): {"wild", "last"}}
    assert fields.labels == {"wild", "first", "last", "b"}


def test_a_wildcard_and_a_name_over_one_object() -> None:
    fields = _map(("$.o[*].v", "any"), ("$.o.k.v", "k"), ("$.o.k.w", "w"))
    doc = {"o": {"k": {"v": 1, "w": 2}, "j": {"v": 3, "w": 4}}}
    got = {f.location: set(ls) for f, ls in fields.find(doc)}
    assert got == {("o", "k", "v"): {"any", "k"}, ("o", "k", "w"): {"w"}, ("o", "j", "v"): {"any"}}


def test_an_outer_field_is_replaced_whole() -> None:
    fields = _map(("$.a", "outer"), ("$.a.b", "inner"))
    seen: list[tuple[object, tuple[str, ...]]] = []

    def fn(value: object, labels: tuple[str, ...]) -> object:
        seen.append((value, labels))
        return "X"

    assert fields.replace({"a": {"b": 1}}, fn) == {"a": "X"}
    assert seen == [({"b": 1}, ("outer",))]
    # Without the outer label wanted, the walk goes on to the inner field.
    seen.clear()
    assert fields.replace({"a": {"b": 1}}, fn, only={"inner"}) == {"a": {"b": "X"}}
    assert seen == [(1, ("inner",))]


def test_only_the_wanted_labels_are_replaced() -> None:
    fields = _map(("$.ssn", "ssn"), ("$.phone", "phone"), ("$.x[*].ssn", "ssn"))
    doc = {"ssn": "1", "phone": "2", "x": [{"ssn": "3", "phone": "4"}]}
    out = fields.replace(doc, lambda v, labels: f"<{labels[0]}>", only={"ssn"})
    assert out == {"ssn": "<ssn>", "phone": "2", "x": [{"ssn": "<ssn>", "phone": "4"}]}
    assert fields.replace(doc, lambda v, labels: "X", only={"email"}) is doc


# --- properties: the walk against a naive reading of the same selectors --------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["a", "b", "x y"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "x y"]), inner, max_size=4)
    ),
    max_leaves=25,
)
_step = st.sampled_from(["a", "b", "c", "x y", 0, 1, -1, 3, WILDCARD])


def _text(steps: list[object]) -> str:
    parts = ["$"]
    for step in steps:
        if step is WILDCARD:
            parts.append("[*]")
        elif isinstance(step, int):
            parts.append(f"[{step}]")
        else:
            parts.append(f"[{json.dumps(step)}]")
    return "".join(parts)


def _naive(
    doc: object, steps: list[object], at: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    if not steps:
        return [at]
    step, rest = steps[0], steps[1:]
    out: list[tuple[object, ...]] = []
    if isinstance(doc, dict):
        keys = list(doc) if step is WILDCARD else [step] if step in doc else []
        for key in keys:
            out += _naive(doc[key], rest, (*at, key))
    elif isinstance(doc, list):
        if step is WILDCARD:
            positions = list(range(len(doc)))
        elif isinstance(step, int) and -len(doc) <= step < len(doc):
            positions = [step % len(doc)]
        else:
            positions = []
        for position in positions:
            out += _naive(doc[position], rest, (*at, position))
    return out


@settings(max_examples=300, deadline=None)
@given(doc=_json, steps=st.lists(_step, max_size=4))
def test_find_agrees_with_a_naive_reading(doc: object, steps: list[object]) -> None:
    selector = compile_selector(_text(steps))
    assert [f.location for f in selector.find(doc)] == _naive(doc, steps)


@settings(max_examples=300, deadline=None)
@given(doc=_json, steps=st.lists(_step, max_size=4))
def test_replace_changes_exactly_the_selected_values(doc: object, steps: list[object]) -> None:
    before = json.dumps(doc)
    selector = compile_selector(_text(steps))
    out = selector.replace(doc, lambda v: ["replaced"])
    assert json.dumps(doc) == before  # the input is never changed
    assert out == _replaced(doc, _naive(doc, steps))


def _replaced(doc: object, locations: Iterable[tuple[object, ...]]) -> object:
    """A copy of ``doc`` with ``["replaced"]`` at each location, the outermost first (what is
    inside a value replaced whole is gone with it)."""
    expected = copy.deepcopy(doc)
    done: list[tuple[object, ...]] = []
    for location in sorted(set(locations), key=len):
        if any(location[: len(outer)] == outer for outer in done):
            continue
        done.append(location)
        if not location:
            expected = ["replaced"]
            continue
        target = expected
        for key in location[:-1]:
            target = target[key]  # type: ignore[index]
        target[location[-1]] = ["replaced"]  # type: ignore[index]
    return expected


def _labels_alone(
    doc: object,
    selectors: list[list[object]],
    naive: Callable[[object, list[object]], Iterable[tuple[object, ...]]],
) -> dict[tuple[object, ...], set[int]]:
    """Each location any of ``selectors`` finds alone (by ``naive``), with their indexes."""
    alone: dict[tuple[object, ...], set[int]] = {}
    for i, steps in enumerate(selectors):
        for location in naive(doc, steps):
            alone.setdefault(location, set()).add(i)
    return alone


# --- descendants (..): the walk against a naive search of every value ------------------------

_deep_step = _step | st.builds(Descendant, _step)


def _deep_text(steps: list[object]) -> str:
    text = "$"
    for step in steps:
        if isinstance(step, Descendant):
            text += ".." + _text([step.step])[1:]  # $..[...]
        else:
            text += _text([step])[1:]
    return text


def _every_value(doc: object, at: tuple[object, ...]) -> list[tuple[object, tuple[object, ...]]]:
    """``doc`` and every value below it, with where each is."""
    out = [(doc, at)]
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        out += _every_value(value, (*at, key))
    return out


def _naive_deep(
    doc: object, steps: list[object], at: tuple[object, ...] = ()
) -> set[tuple[object, ...]]:
    if not steps:
        return {at}
    step, rest = steps[0], steps[1:]
    if isinstance(step, Descendant):
        found: set[tuple[object, ...]] = set()
        for value, where in _every_value(doc, at):
            found |= _naive_deep(value, [step.step, *rest], where)
        return found
    found = set()
    for location in _naive(doc, [step], at):
        value = doc
        for key in location[len(at) :]:
            value = value[key]  # type: ignore[index]
        found |= _naive_deep(value, rest, location)
    return found


@settings(max_examples=400, deadline=None)
@given(doc=_json, steps=st.lists(_deep_step, max_size=4))
def test_descendants_find_what_a_naive_search_finds_once_each(
    doc: object, steps: list[object]
) -> None:
    locations = [f.location for f in compile_selector(_deep_text(steps)).find(doc)]
    assert set(locations) == _naive_deep(doc, steps)
    assert len(locations) == len(set(locations))


@settings(max_examples=400, deadline=None)
@given(doc=_json, steps=st.lists(_deep_step, max_size=4))
def test_descendants_replace_the_outermost_of_what_they_select(
    doc: object, steps: list[object]
) -> None:
    before = json.dumps(doc)
    out = compile_selector(_deep_text(steps)).replace(doc, lambda v: ["replaced"])
    assert json.dumps(doc) == before
    assert out == _replaced(doc, _naive_deep(doc, steps))


@pytest.mark.parametrize("deep", [False, True], ids=["plain", "descendants"])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_many_selectors_find_what_each_finds_alone(deep: bool, data: st.DataObject) -> None:
    step, text, naive = (_deep_step, _deep_text, _naive_deep) if deep else (_step, _text, _naive)
    doc = data.draw(_json)
    selectors = data.draw(st.lists(st.lists(step, max_size=3), min_size=1, max_size=4))
    fields = FieldMap((compile_selector(text(s)), i) for i, s in enumerate(selectors))
    together = {f.location: set(labels) for f, labels in fields.find(doc)}
    assert together == _labels_alone(doc, selectors, naive)


def test_every_ssn_anywhere() -> None:
    fields = FieldMap([(compile_selector("$..ssn"), "ssn")])
    doc = {"ssn": "1", "a": [{"ssn": "2", "b": {"ssn": {"ssn": "3"}}}], "c": "ssn"}
    assert {f.location for f, _ in fields.find(doc)} == {
        ("ssn",),
        ("a", 0, "ssn"),
        ("a", 0, "b", "ssn"),
        ("a", 0, "b", "ssn", "ssn"),
    }
    masked = fields.replace(doc, lambda v, labels: "***")
    assert masked == {"ssn": "***", "a": [{"ssn": "***", "b": {"ssn": "***"}}], "c": "ssn"}
    selector = compile_selector("$..ssn")
    assert selector.normalized == "$..['ssn']" and not selector.single
