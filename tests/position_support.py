"""Where a piece of a YAML text is, as error messages say it (imported by name: ``tests/`` is on
``sys.path``)."""

from __future__ import annotations

__all__ = ["locate"]


def locate(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based line and column of the ``nth`` occurrence of ``needle`` (independent of YAML).

    A ``^`` in the needle marks the character meant, after some context: ``"max_age: ^5x"``.
    """
    offset = max(needle.find("^"), 0)
    needle = needle.replace("^", "")
    start = -1
    for _ in range(nth):
        start = text.index(needle, start + 1)
    start += offset
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    return line, column
