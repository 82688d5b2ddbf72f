"""Masking PII values and documents (CONTRACT §7): what is hidden, what is kept, what passes."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from gateway_support import policy
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from piigate.gateway.http.masking import (
    SEPARATORS,
    WHOLE,
    KeepLast,
    MaskRule,
    Replace,
    default_masks,
    default_rule,
    mask_document,
    mask_value,
    strictest,
)
from piigate.gateway.http.selectors import FieldMap, compile_selector


@pytest.mark.parametrize(
    ("value", "rule", "masked"),
    [
        ("123-45-6789", KeepLast(4), "***-**-6789"),
        ("123456789", KeepLast(4), "*****6789"),
        ("X1234567", KeepLast(4), "****4567"),
        ("DE89 3704 0044 0532 0130 00", KeepLast(4), "**** **** **** **** **30 00"),
        ("+1 (555) 123-4567", KeepLast(2), "+* (***) ***-**67"),
        ("555.123.4567", KeepLast(2), "***.***.**67"),
        # Short values keep fewer, so that at least half stays hidden.
        ("1234", KeepLast(4), "**34"),
        ("12-3", KeepLast(4), "**-3"),
        ("12", KeepLast(4), "*2"),
        ("1", KeepLast(4), "*"),
        ("", KeepLast(4), ""),
        ("---", KeepLast(4), "---"),
        # Not ASCII: still masked character by character.
        ("ÄÖÜ-ßéè-1234", KeepLast(4), "***-***-1234"),
        ("a*b*c-d", KeepLast(1), "*****-d"),
        # Fixed width: the length does not show.
        ("123-45-6789", KeepLast(4, fixed_width=6), "******6789"),
        ("12-345-678-9012", KeepLast(4, fixed_width=6), "******9012"),
        ("+1 (555) 123-4567", KeepLast(2, fixed_width=4), "****67"),
        ("", KeepLast(4, fixed_width=3), "***"),
        ("123-45-6789", KeepLast(0), "***-**-****"),
        # Whole replacement.
        ("1 Main St, Springfield", Replace(), WHOLE),
        ("1 Main St", Replace("[address]"), "[address]"),
    ],
)
def test_strings_are_masked_by_their_rule(value: str, rule: MaskRule, masked: str) -> None:
    assert mask_value(value, rule) == masked


@pytest.mark.parametrize(
    ("value", "rule", "masked"),
    [
        (123456789, KeepLast(4), "*****6789"),
        (1234567890123456, KeepLast(4, fixed_width=4), "****3456"),
        (Decimal("12345.678"), KeepLast(2), "*****.*78"),
        (1234.5, KeepLast(2), "***4.5"),
        (42, Replace(), WHOLE),
    ],
)
def test_numbers_are_masked_as_their_digits(value: object, rule: MaskRule, masked: str) -> None:
    assert mask_value(value, rule) == masked


@pytest.mark.parametrize(
    "value",
    [
        {"street": "1 Main St", "city": "Springfield"},
        ["123-45-6789"],
        True,
        False,
        float("nan"),
        float("inf"),
        Decimal("NaN"),
        object(),
    ],
)
def test_what_is_not_a_scalar_pii_value_is_masked_whole(value: object) -> None:
    assert mask_value(value, KeepLast(4)) == WHOLE
    assert mask_value(value, KeepLast(4, fixed_width=5)) == "*****"
    assert mask_value(value, Replace("[x]")) == "[x]"


def test_null_stays_null() -> None:
    for rule in (KeepLast(4), KeepLast(2, 6), Replace()):
        assert mask_value(None, rule) is None


def test_a_rule_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        KeepLast(-1)
    with pytest.raises(ValueError):
        KeepLast(4, fixed_width=0)


def test_defaults_come_from_the_policy_classes_by_name() -> None:
    masks = default_masks(policy())
    assert masks == {
        "ssn": KeepLast(4),
        "passport": KeepLast(4),
        "bank_account": KeepLast(4),
        "phone": KeepLast(2),
        "mailing_address": Replace(),
        "shoe_size": Replace(),  # an unknown class reveals nothing, whatever its sensitivity
    }
    assert default_rule("iban") == KeepLast(4) and default_rule("tax_id") == KeepLast(4)


def test_the_strictest_rule_wins() -> None:
    assert strictest([KeepLast(4), Replace("x"), KeepLast(2)]) == Replace("x")
    assert strictest([KeepLast(2), KeepLast(4, 6)]) == KeepLast(4, 6)
    assert strictest([KeepLast(4), KeepLast(2)]) == KeepLast(2)
    assert strictest([]) == Replace()


FIELDS = FieldMap(
    (compile_selector(s), c)
    for s, c in {
        "$.ssn": "ssn",
        "$.passport_number": "passport",
        "$.bank.account": "bank_account",
        "$.phone": "phone",
        "$.address": "mailing_address",
        "$.contacts[*].phone": "phone",
    }.items()
)
RULES = default_masks(policy())
CUSTOMER: dict[str, Any] = {
    "id": "cus_42",
    "name": "Ada Lovelace",
    "ssn": "123-45-6789",
    "passport_number": None,
    "phone": "+1 (555) 123-4567",
    "address": {"street": "1 Main St", "city": "Springfield"},
    "bank": {"account": "DE89370400440532013000", "bic": "COBADEFFXXX"},
    "contacts": [{"name": "Home", "phone": "555 0100"}, {"name": "Work"}],
}


def test_mask_document_masks_the_masked_classes_and_names_them() -> None:
    before = copy.deepcopy(CUSTOMER)
    out, present = mask_document(CUSTOMER, FIELDS, {"ssn", "passport", "bank_account"}, RULES)
    assert before == CUSTOMER
    assert present == {"ssn", "bank_account"}  # the passport is null: nothing was hidden
    assert isinstance(out, dict)
    assert out["ssn"] == "***-**-6789"
    assert out["passport_number"] is None
    assert out["bank"] == {"account": "******************3000", "bic": "COBADEFFXXX"}
    # Unmasked classes and fields no route names pass untouched.
    for key in ("id", "name", "phone", "address", "contacts"):
        assert out[key] == CUSTOMER[key]


def test_mask_document_over_arrays_and_whole_objects() -> None:
    out, present = mask_document(CUSTOMER, FIELDS, {"phone", "mailing_address"}, RULES)
    assert present == {"phone", "mailing_address"}
    assert isinstance(out, dict)
    assert out["phone"] == "+* (***) ***-**67"
    assert out["contacts"] == [{"name": "Home", "phone": "*** **00"}, {"name": "Work"}]
    assert out["address"] == WHOLE
    assert out["ssn"] == CUSTOMER["ssn"]


def test_nothing_to_mask_returns_the_document_itself() -> None:
    assert mask_document(CUSTOMER, FIELDS, set(), RULES) == (CUSTOMER, frozenset())
    assert mask_document(CUSTOMER, FIELDS, {"shoe_size"}, RULES)[0] is CUSTOMER


def test_a_class_without_a_rule_is_replaced_whole() -> None:
    out, _ = mask_document({"ssn": "123-45-6789"}, FIELDS, {"ssn"}, {})
    assert out == {"ssn": WHOLE}


def test_without_rules_each_class_takes_its_default() -> None:
    doc = {"ssn": "123-45-6789", "address": "x"}
    out, _ = mask_document(doc, FIELDS, {"ssn", "mailing_address"})
    assert out == {"ssn": "***-**-6789", "address": WHOLE}


def test_two_classes_on_one_field_take_the_strictest_rule() -> None:
    fields = FieldMap(
        [(compile_selector("$.x"), "ssn"), (compile_selector("$['x']"), "mailing_address")]
    )
    out, present = mask_document({"x": "123-45-6789"}, fields, {"ssn", "mailing_address"}, RULES)
    assert out == {"x": WHOLE} and present == {"ssn", "mailing_address"}


def test_an_upstream_that_sends_another_shape_gets_it_masked_whole() -> None:
    doc = {"ssn": {"number": "123-45-6789"}, "phone": ["+1 555 0100"]}
    out, present = mask_document(doc, FIELDS, {"ssn", "phone"}, RULES)
    assert out == {"ssn": WHOLE, "phone": WHOLE}
    assert "6789" not in json.dumps(out) and "0100" not in json.dumps(out)
    assert present == {"ssn", "phone"}


# --- properties -----------------------------------------------------------------------------

_text = st.text(alphabet=st.sampled_from("0123456789abcXYZé*" + "".join(SEPARATORS)), max_size=30)
_keep = st.builds(KeepLast, st.integers(0, 8), st.none() | st.integers(1, 12))


def _hidden(text: str, rule: KeepLast) -> list[int]:
    significant = [i for i, c in enumerate(text) if c not in SEPARATORS]
    keep = min(rule.last, len(significant) // 2)
    return significant[: len(significant) - keep]


@settings(max_examples=500, deadline=None)
@given(text=_text, rule=_keep)
def test_keep_last_shows_no_hidden_character(text: str, rule: KeepLast) -> None:
    masked = mask_value(text, rule)
    assert isinstance(masked, str)
    hidden = _hidden(text, rule)
    significant = [i for i, c in enumerate(text) if c not in SEPARATORS]
    kept = significant[len(hidden) :]
    assert len(kept) <= len(significant) // 2  # at least half is hidden
    if rule.fixed_width is None:
        assert len(masked) == len(text)
        for i, char in enumerate(text):
            expected = "*" if i in hidden else char
            assert masked[i] == expected
    else:
        assert masked == "*" * rule.fixed_width + "".join(text[i] for i in kept)


@settings(max_examples=300, deadline=None)
@given(text=_text, rule=_keep, data=st.data())
def test_keep_last_output_does_not_depend_on_hidden_characters(
    text: str, rule: KeepLast, data: st.DataObject
) -> None:
    hidden = _hidden(text, rule)
    assume(hidden)
    chars = list(text)
    for i in hidden:
        chars[i] = data.draw(st.sampled_from("0123456789XYZ"))
    assert mask_value("".join(chars), rule) == mask_value(text, rule)


@settings(max_examples=200, deadline=None)
@given(text=_text, other=_text, width=st.integers(1, 12), last=st.integers(0, 4))
def test_fixed_width_hides_the_length(text: str, other: str, width: int, last: int) -> None:
    rule = KeepLast(last, width)
    significant = len([c for c in text if c not in SEPARATORS])
    others = len([c for c in other if c not in SEPARATORS])
    assume(significant >= 2 * last and others >= 2 * last)
    assert len(str(mask_value(text, rule))) == len(str(mask_value(other, rule)))


_digits = (
    st.integers(0, 999_999_999).map(lambda n: f"{n:09d}").map(lambda d: f"{d[:3]}-{d[3:5]}-{d[5:]}")
)
_phone = (
    st.integers(0, 9_999_999_999)
    .map(lambda n: f"{n:010d}")
    .map(lambda d: f"+1 {d[:3]} {d[3:6]} {d[6:]}")
)


@settings(max_examples=200, deadline=None)
@given(
    ssn=_digits,
    phones=st.lists(_phone, max_size=3),
    street=st.text(min_size=1, max_size=20),
    masked=st.sets(st.sampled_from(sorted(RULES))),
)
def test_masked_classes_are_hidden_and_the_others_untouched(
    ssn: str, phones: list[str], street: str, masked: set[str]
) -> None:
    doc = {
        "ssn": ssn,
        "phone": phones[0] if phones else None,
        "address": {"street": street},
        "contacts": [{"phone": p} for p in phones],
        "bank": {"account": "DE" + ssn.replace("-", "")},
    }
    before = copy.deepcopy(doc)
    out, present = mask_document(doc, FIELDS, masked, RULES)
    assert doc == before
    assert isinstance(out, dict)
    assert present <= masked
    if "ssn" in masked:
        assert out["ssn"] == "***-**-" + ssn[-4:]
    else:
        assert out["ssn"] == ssn
    if "mailing_address" in masked:
        assert out["address"] == WHOLE
    else:
        assert out["address"] is doc["address"]
    for i, phone in enumerate(phones):
        got = out["contacts"][i]["phone"]
        if "phone" in masked:
            assert got == "+* *** *** **" + phone[-2:]
        else:
            assert got == phone
    if "bank_account" in masked:
        assert out["bank"]["account"] != doc["bank"]["account"]
    else:
        assert out["bank"] is doc["bank"]
