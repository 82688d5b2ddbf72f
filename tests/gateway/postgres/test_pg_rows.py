"""Row masking (``rows``): a masked text column shows its class's mask in either format, a
masked column of any other type becomes NULL, and the rewritten DataRow is a valid message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.gateway.http.masking import KeepLast, MaskRule, Replace
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres.protocol import BackendParser, ProtocolViolation
from piigate.gateway.postgres.rows import TEXT_TYPES, RowMask, row_mask

TEXT, VARCHAR, BPCHAR, NAME = 25, 1043, 1042, 19
INT8, NUMERIC, JSONB, RECORD = 20, 1700, 3802, 2249
RULES: dict[str, MaskRule] = {
    "ssn": KeepLast(4),
    "phone": KeepLast(2),
    "mailing_address": Replace(),
    "secret": Replace("[hidden]"),
}
SSN = "219-09-9999"
NOTHING: frozenset[str] = frozenset()


def _field(name: str, type_oid: int, fmt: int = 0) -> be.FieldDescription:
    return be.FieldDescription(name, 16384, 1, type_oid, -1, -1, fmt)


def _one(type_oid: int, pii: str, value: bytes | None, fmt: int = 0) -> bytes | None:
    """``value`` in a one-column row of ``type_oid`` carrying ``pii``, masked."""
    mask = row_mask(
        [_field("c", type_oid, fmt)],
        [frozenset({pii})],
        frozenset({pii}),
        RULES,
        [frozenset({pii})],
    )
    assert mask is not None
    return mask.apply(be.DataRow((value,))).values[0]


def test_text_oids_are_the_ones_whose_binary_form_is_the_text() -> None:
    assert {TEXT, VARCHAR, BPCHAR, NAME} <= TEXT_TYPES
    assert not {INT8, NUMERIC, JSONB, RECORD} & TEXT_TYPES


@pytest.mark.parametrize("type_oid", [TEXT, VARCHAR, BPCHAR, NAME])
@pytest.mark.parametrize(
    ("pii", "value", "shown"),
    [
        ("ssn", SSN, "***-**-9999"),
        ("ssn", "219099999", "*****9999"),
        ("phone", "+1 (555) 123-4567", "+* (***) ***-**67"),
        ("mailing_address", "12 Main Street", "***"),
        ("secret", "anything", "[hidden]"),
        ("ssn", "ßé-ü-12345678", "**-*-****5678"),
    ],
)
def test_a_text_column_shows_its_class_mask_in_text_and_binary_alike(
    type_oid: int, pii: str, value: str, shown: str
) -> None:
    data = value.encode()
    text = _one(type_oid, pii, data, fmt=0)
    binary = _one(type_oid, pii, data, fmt=1)
    assert text == binary == shown.encode()


def test_a_padded_char_column_keeps_its_padding_and_hides_the_rest() -> None:
    masked = _one(BPCHAR, "ssn", (SSN + "   ").encode())
    assert masked == b"***-**-9999   "


@pytest.mark.parametrize(
    ("type_oid", "value"),
    [
        (INT8, b"219099999"),
        (INT8, b"\x00\x00\x00\x00\x0d\x0e\x5a\x1f"),  # binary int8
        (NUMERIC, b"219099999"),
        (JSONB, b'{"ssn": "219-09-9999"}'),
        (JSONB, b'\x01{"ssn": "219-09-9999"}'),  # binary jsonb: version byte then the text
        (RECORD, b"(1,219-09-9999)"),
    ],
)
@pytest.mark.parametrize("fmt", [0, 1])
def test_a_column_of_another_type_is_masked_to_null(type_oid: int, value: bytes, fmt: int) -> None:
    assert _one(type_oid, "ssn", value, fmt) is None


@pytest.mark.parametrize("type_oid", [TEXT, INT8, RECORD])
def test_null_stays_null(type_oid: int) -> None:
    assert _one(type_oid, "ssn", None) is None


@pytest.mark.parametrize("value", [b"\xff\xfe219-09-9999", b"219-09-\xc3", b"\xed\xa0\x80"])
def test_a_text_value_that_is_not_utf8_becomes_null(value: bytes) -> None:
    assert _one(TEXT, "ssn", value) is None


def test_no_mask_when_no_column_carries_a_masked_class() -> None:
    fields = [_field("id", INT8), _field("ssn", TEXT), _field("phone", TEXT)]
    carried = [NOTHING, frozenset({"ssn"}), frozenset({"phone"})]
    assert row_mask(fields, carried, NOTHING, RULES) is None
    assert row_mask(fields, carried, frozenset({"bank_account"}), RULES) is None
    assert row_mask([], [], frozenset({"ssn"}), RULES) is None


def test_only_the_columns_carrying_a_masked_class_change() -> None:
    fields = [_field("id", INT8), _field("ssn", TEXT), _field("phone", TEXT)]
    carried = [NOTHING, frozenset({"ssn"}), frozenset({"phone"})]
    mask = row_mask(fields, carried, frozenset({"ssn"}), RULES, carried)
    assert mask is not None
    row = be.DataRow((b"7", SSN.encode(), b"555-0100"))
    assert mask.apply(row) == be.DataRow((b"7", b"***-**-9999", b"555-0100"))


def test_a_column_of_two_classes_gets_the_strictest_rule() -> None:
    fields = [_field("x", TEXT)]
    both = [frozenset({"ssn", "phone"})]
    mask = row_mask(fields, both, frozenset({"ssn", "phone"}), RULES, both)
    assert mask is not None
    assert mask.apply(be.DataRow((b"555-123-4567",))).values[0] == b"***-***-**67"  # phone: 2
    with_replace = [frozenset({"ssn", "mailing_address"})]
    mask = row_mask(
        fields, with_replace, frozenset({"ssn", "mailing_address"}), RULES, with_replace
    )
    assert mask is not None
    assert mask.apply(be.DataRow((SSN.encode(),))).values[0] == b"***"
    # Only the masked class's rule counts: the other class is shown in the clear.
    mask = row_mask(fields, with_replace, frozenset({"ssn"}), RULES, with_replace)
    assert mask is not None
    assert mask.apply(be.DataRow((SSN.encode(),))).values[0] == b"***-**-9999"


@pytest.mark.parametrize(
    "value",
    [b"9999-90-912", b"9-09-9", b"******************************2b8b"],  # reverse, substr, md5
)
def test_a_value_computed_from_a_catalogued_column_is_replaced_whole(value: bytes) -> None:
    """Only the catalogued column itself shows its last digits: of ``reverse(ssn)``,
    ``substr(ssn, 3, 6)`` or ``md5(ssn)`` the same rule would show other digits, or bits of a
    hash a search over every SSN can match."""
    fields = [_field("c", TEXT), _field("ssn", TEXT)]
    carried = [frozenset({"ssn"}), frozenset({"ssn"})]
    mask = row_mask(fields, carried, frozenset({"ssn"}), RULES, [NOTHING, frozenset({"ssn"})])
    assert mask is not None
    row = mask.apply(be.DataRow((value, SSN.encode())))
    assert row == be.DataRow((b"***", b"***-**-9999"))
    # A column stored as one class that carries another too is computed as well.
    both = [frozenset({"ssn", "phone"})]
    mask = row_mask(fields[:1], both, frozenset({"ssn", "phone"}), RULES, [frozenset({"ssn"})])
    assert mask is not None and mask.apply(be.DataRow((SSN.encode(),))).values[0] == b"***"


def test_a_class_without_a_rule_is_replaced_whole() -> None:
    mask = row_mask(
        [_field("x", TEXT)],
        [frozenset({"tax_id"})],
        frozenset({"tax_id"}),
        {},
        [frozenset({"tax_id"})],
    )
    assert mask is not None
    assert mask.apply(be.DataRow((b"12-3456789",))).values[0] == b"***"


def test_columns_beyond_what_is_known_count_as_carrying_every_masked_class() -> None:
    fields = [_field("a", TEXT), _field("b", TEXT), _field("c", INT8)]
    mask = row_mask(fields, [NOTHING], frozenset({"ssn"}), RULES)
    assert mask is not None
    row = mask.apply(be.DataRow((b"plain", SSN.encode(), b"42")))
    assert row == be.DataRow((b"plain", b"***", None))  # not known as the stored column


def test_a_row_shorter_than_the_mask_is_masked_as_far_as_it_goes() -> None:
    mask = RowMask(((True, KeepLast(4)), (True, None)))
    assert mask.apply(be.DataRow((SSN.encode(),))) == be.DataRow((b"***-**-9999",))


def test_the_masked_row_encodes_with_valid_lengths() -> None:
    fields = [
        _field("id", INT8, 1),
        _field("ssn", TEXT),
        _field("address", VARCHAR, 1),
        _field("doc", JSONB),
        _field("note", TEXT),
    ]
    carried = [
        NOTHING,
        frozenset({"ssn"}),
        frozenset({"mailing_address"}),
        frozenset({"ssn"}),
        frozenset({"ssn"}),
    ]
    mask = row_mask(fields, carried, frozenset({"ssn", "mailing_address"}), RULES, carried)
    assert mask is not None
    row = be.DataRow(
        (
            b"\x00" * 7 + b"\x01",
            "é219-09-9999".encode(),
            "1 Rue de l'Église, 75001 Paris".encode(),
            b'{"a": 1}',
            None,
        )
    )
    masked = mask.apply(row)
    data = masked.encode()
    parser = BackendParser()
    # Two rows back to back: the first's length must end exactly where the second starts.
    assert parser.feed(data + be.DataRow((b"x",)).encode()) == [masked, be.DataRow((b"x",))]
    assert masked.values == (b"\x00" * 7 + b"\x01", b"****-**-9999", b"***", None, None)
    assert "é".encode() not in data and b"219" not in data


@given(st.lists(st.one_of(st.none(), st.binary(max_size=24), st.just(SSN.encode())), max_size=6))
def test_masking_the_servers_bytes_is_masking_the_decoded_row(values: list[bytes | None]) -> None:
    mask = RowMask(((False, None), (True, KeepLast(4)), (True, None), (True, Replace())))
    row = be.DataRow(tuple(values))
    assert mask.apply_message(row.encode()[5:]) == mask.apply(row).encode()


def test_a_malformed_row_from_the_server_is_refused() -> None:
    mask = RowMask(((True, KeepLast(4)),))
    with pytest.raises(ProtocolViolation):
        mask.apply_message(be.DataRow((SSN.encode(),)).encode()[5:-1])  # one byte short


def _reference(value: bytes, rule: MaskRule) -> bytes | None:
    """What the HTTP gateway's rule makes of ``value`` as text (None: not UTF-8, so NULL)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    shown = rule.mask(text)
    assert isinstance(shown, str)
    return shown.encode("utf-8")


_RULES_TRIED: list[MaskRule] = [
    KeepLast(0),
    KeepLast(1),
    KeepLast(2),
    KeepLast(4),
    KeepLast(7),
    KeepLast(4, fixed_width=8),
    KeepLast(0, fixed_width=3),
    Replace(),
    Replace("[hidden]"),
]
_VALUE_TEXT = st.text(alphabet="0123456789abcXYZ -./()+*_#é€\u00a0", max_size=20)


@given(
    st.one_of(_VALUE_TEXT.map(str.encode), st.binary(max_size=20)),
    st.sampled_from(_RULES_TRIED),
)
def test_a_value_is_masked_on_its_bytes_as_the_rule_masks_its_text(
    value: bytes, rule: MaskRule
) -> None:
    mask = RowMask(((True, rule),))
    assert mask.apply(be.DataRow((value,))).values[0] == _reference(value, rule)
    masked_rows, _ = mask.mask_rows(be.DataRow((value,)).encode(), 0, 1 << 20)
    assert masked_rows == [be.DataRow((_reference(value, rule),)).encode()]


@given(st.lists(st.one_of(st.none(), st.binary(max_size=24), st.just(SSN.encode())), max_size=6))
def test_masking_rows_in_a_run_is_masking_each_row(values: list[bytes | None]) -> None:
    mask = RowMask(((False, None), (True, KeepLast(4)), (True, None), (True, Replace())))
    rows = [be.DataRow(tuple(values)), be.DataRow(tuple(values[:2])), be.DataRow((b"x",) * 7)]
    after = be.CommandComplete("SELECT 3").encode()
    stream = b"C-" + b"".join(r.encode() for r in rows) + after
    masked, pos = mask.mask_rows(stream, 2, 1 << 20)
    assert masked == [mask.apply(r).encode() for r in rows]
    assert stream[pos:] == after  # the first message that is not a row is the caller's


def test_a_run_of_rows_stops_before_a_row_not_yet_received_whole() -> None:
    mask = RowMask(((True, KeepLast(4)),))
    row = be.DataRow((SSN.encode(),)).encode()
    masked, pos = mask.mask_rows(row + row[:-3], 0, 1 << 20)
    assert masked == [be.DataRow((b"***-**-9999",)).encode()]
    assert pos == len(row)
    assert mask.mask_rows(row, 0, len(row) - 2) == ([], 0)  # over the limit: the caller's


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xff",  # a negative count
        b"\x00\x01\x00\x00\x00\x0b219-09-999",  # a value past the message's end
        b"\x00\x01\xff\xff\xff\xfe",  # a negative length other than NULL's
        b"\x00\x01\x00\x00\x00\x01xy",  # a byte after the last value
        b"\x00\x02\x00\x00\x00\x01x",  # fewer values than counted
    ],
)
def test_a_malformed_row_in_a_run_is_refused(body: bytes) -> None:
    mask = RowMask(((True, KeepLast(4)), (True, KeepLast(4))))
    good = be.DataRow((SSN.encode(), None)).encode()
    with pytest.raises(ProtocolViolation):
        mask.mask_rows(good + b"D" + (len(body) + 4).to_bytes(4, "big") + body, 0, 1 << 20)
