"""The server-drawn SVG charts (``console/charts.py``): the bars' positions and heights, stacking,
the axis, the legend, what a screen reader is told, empty data and a single bucket."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from piigate.console.charts import HEIGHT, PLOT, WIDTH, Bucket, Series, axis_top, stacked_bars

SVG = "{http://www.w3.org/2000/svg}"
SERIES = (Series("allow", "Allowed"), Series("deny", "Denied"))


def draw(counts: dict[tuple[int, str], int], buckets: int = 4) -> ET.Element:
    markup = stacked_bars(
        chart_id="c",
        title="Decisions <by> outcome",
        series=SERIES,
        buckets=[Bucket(f"b{i}", f"span {i}") for i in range(buckets)],
        counts=counts,
        empty_text="Nothing here",
    )
    return ET.fromstring(markup)


def bars(svg: ET.Element) -> list[dict[str, str]]:
    return [dict(r.attrib) for r in svg.iter(f"{SVG}rect") if "data-count" in r.attrib]


@pytest.mark.parametrize(
    ("largest", "top", "step"),
    [(0, 1, 1), (1, 1, 1), (3, 3, 1), (7, 8, 2), (10, 10, 2), (23, 25, 5), (100, 100, 20)],
)
def test_the_axis_ends_on_a_round_number_in_at_most_five_steps(
    largest: int, top: int, step: int
) -> None:
    assert axis_top(largest) == (top, step)
    assert top >= largest and top // step <= 5


def test_bars_stand_in_their_bucket_and_scale_to_the_axis() -> None:
    svg = draw({(0, "allow"): 4, (2, "allow"): 2, (2, "deny"): 2, (3, "deny"): 1})
    found = bars(svg)
    assert [(b["data-series"], b["data-count"]) for b in found] == [
        ("allow", "4"),
        ("allow", "2"),
        ("deny", "2"),
        ("deny", "1"),
    ]
    band = PLOT.width / 4
    first, low, high, last = found
    # The axis tops at 4: a bar of 4 fills the plot's height, from the baseline up.
    assert float(first["y"]) == pytest.approx(PLOT.top)
    assert float(first["height"]) == pytest.approx(PLOT.height)
    # Bucket 2: the denied stack on the allowed, which stands on the baseline.
    assert float(low["y"]) + float(low["height"]) == pytest.approx(PLOT.bottom)
    assert float(high["y"]) + float(high["height"]) == pytest.approx(float(low["y"]))
    assert float(low["height"]) == pytest.approx(float(high["height"]))
    for bar, bucket in ((first, 0), (low, 2), (high, 2), (last, 3)):
        x = float(bar["x"])
        assert PLOT.left + band * bucket < x
        assert x + float(bar["width"]) < PLOT.left + band * (bucket + 1)
    assert float(last["height"]) == pytest.approx(PLOT.height / 4)
    assert svg.attrib["class"] == "chart-svg" and "style" not in svg.attrib
    assert svg.attrib["viewBox"] == f"0 0 {WIDTH} {HEIGHT}"


def test_what_a_screen_reader_and_a_pointer_are_told() -> None:
    svg = draw({(1, "allow"): 3, (1, "deny"): 1})
    assert svg.attrib["role"] == "img"
    assert svg.attrib["aria-label"] == "Decisions <by> outcome"
    title = svg.find(f"{SVG}title")
    desc = svg.find(f"{SVG}desc")
    assert title is not None and title.text == "Decisions <by> outcome"
    assert desc is not None and desc.attrib["id"] == svg.attrib["aria-describedby"]
    assert desc.text == "Decisions <by> outcome: 3 allowed, 1 denied."
    tips = [r.findtext(f"{SVG}title") for r in svg.iter(f"{SVG}rect") if "data-count" in r.attrib]
    assert tips == ["span 1: 3 allowed", "span 1: 1 denied"]
    legend = [t.text for t in svg.iter(f"{SVG}text") if t.attrib.get("class") == "chart-legend"]
    assert legend == ["Allowed (3)", "Denied (1)"]
    swatches = [r.attrib["class"] for r in svg.iter(f"{SVG}rect") if "data-legend" in r.attrib]
    assert swatches == ["series-allow", "series-deny"]


def test_no_data_draws_an_empty_chart_that_says_so() -> None:
    svg = draw({})
    assert bars(svg) == []
    texts = {t.attrib.get("class"): t.text for t in svg.iter(f"{SVG}text")}
    assert texts["chart-empty"] == "Nothing here"
    grid = [line for line in svg.iter(f"{SVG}line") if line.attrib["class"] == "chart-grid"]
    assert len(grid) == 2  # 0 and 1
    desc = svg.find(f"{SVG}desc")
    assert desc is not None and desc.text == "Decisions <by> outcome: 0 allowed, 0 denied."


def test_one_bucket_is_one_centred_bar() -> None:
    svg = draw({(0, "deny"): 5, (7, "deny"): 9, (0, "other"): 9}, buckets=1)
    [bar] = bars(svg)  # what lies outside the buckets or the series is not drawn
    x, width = float(bar["x"]), float(bar["width"])
    assert x - PLOT.left == pytest.approx(PLOT.right - (x + width))
    assert float(bar["height"]) == pytest.approx(PLOT.height)
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.attrib.get("class") == "chart-label"]
    assert "b0" in labels


def test_labels_thin_out_when_buckets_are_many() -> None:
    markup = stacked_bars(
        chart_id="m",
        title="Per minute",
        series=SERIES,
        buckets=[Bucket(f"m{i}", f"minute {i}") for i in range(60)],
        counts={(59, "allow"): 1},
    )
    svg = ET.fromstring(markup)
    under = [
        t.text
        for t in svg.iter(f"{SVG}text")
        if t.attrib.get("class") == "chart-label" and t.text and t.text.startswith("m")
    ]
    assert under == [f"m{i}" for i in range(0, 60, 5)]
    [bar] = bars(svg)
    assert float(bar["x"]) > PLOT.left + PLOT.width * 59 / 60
