"""Helpers of the security team's page tests (imported by name: ``tests/console`` is on
``sys.path``): signing in as the security team, and reading the pages' charts and feed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter

import httpx
from api_support import Node
from console_support import sign_in

__all__ = ["PASSWORD", "bar_counts", "bar_tips", "chart", "feed_seqs", "sign_in_as"]

PASSWORD = "correct horse battery staple"
_SVG = "{http://www.w3.org/2000/svg}"
_FEED_ITEM = re.compile(r'<li class="event" data-seq="(\d+)">')


async def sign_in_as(node: Node, name: str, roles: tuple[str, ...] = ("admin",)) -> None:
    """A user with ``roles``, signed in to the console (``node.client`` keeps the cookie)."""
    await node.user(name, PASSWORD, roles)
    answer = await sign_in(node, name, PASSWORD)
    assert answer.status_code == 303, answer.text


def chart(page: httpx.Response, chart_id: str) -> ET.Element:
    """The SVG chart whose ``<desc>`` id starts with ``chart_id``, parsed."""
    start = page.text.rindex("<svg ", 0, page.text.index(f'id="{chart_id}-desc"'))
    end = page.text.index("</svg>", start) + len("</svg>")
    return ET.fromstring(page.text[start:end])


def bar_counts(svg: ET.Element) -> Counter[str]:
    """The events each series' bars count, over all buckets."""
    counts: Counter[str] = Counter()
    for rect in svg.iter(f"{_SVG}rect"):
        if "data-count" in rect.attrib:
            counts[rect.attrib["data-series"]] += int(rect.attrib["data-count"])
    return counts


def bar_tips(svg: ET.Element) -> list[str]:
    """Each bar segment's tooltip (``10:00 to 11:00 UTC: 3 allowed``)."""
    return [
        rect.findtext(f"{_SVG}title") or ""
        for rect in svg.iter(f"{_SVG}rect")
        if "data-count" in rect.attrib
    ]


def feed_seqs(page: httpx.Response) -> list[int]:
    """The seqs of the event lines of a page, in page order."""
    return [int(seq) for seq in _FEED_ITEM.findall(page.text)]
