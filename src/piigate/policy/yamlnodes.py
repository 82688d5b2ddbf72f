"""Reading YAML with positions, so every error names ``FILE:LINE:COL``.

PyYAML's composer gives a node tree whose nodes carry start marks; we walk it ourselves instead
of constructing plain Python objects, so duplicate keys, wrong types and unknown keys are reported
at the line they are on. Errors are collected (not raised one at a time) so an author sees all of
them in one ``piigate policy check`` run. A file over ``MAX_FILE_BYTES`` is refused unread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, TypeVar

import yaml

from piigate.policy.model import Position

__all__ = [
    "MAX_FILE_BYTES",
    "FileTooLarge",
    "NodeReader",
    "YamlErrors",
    "compose_file",
    "compose_text",
    "read_limited",
    "read_text",
]

T = TypeVar("T")
E = TypeVar("E", bound=Enum)

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"

# The largest policy, test-case, configuration or request file read. Parsing costs seconds and
# over a hundred megabytes of memory per megabyte of YAML, and a served policy is re-read on
# every edit; real policies are a few kilobytes.
MAX_FILE_BYTES: Final = 1024 * 1024

try:  # the C loader is much faster on large catalogs; fall back to pure Python.
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment,unused-ignore]
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


@dataclass
class YamlErrors:
    file: str
    messages: list[str] = field(default_factory=list)

    def at(self, node: yaml.Node | None, message: str) -> None:
        self.messages.append(f"{self.position(node)}: {message}")

    def position(self, node: yaml.Node | None) -> Position:
        if node is None:
            return Position(self.file, 1, 1)
        mark = node.start_mark
        return Position(self.file, mark.line + 1, mark.column + 1)

    def __bool__(self) -> bool:
        return bool(self.messages)


def compose_text(text: str, errors: YamlErrors) -> yaml.Node | None:
    """Parse ``text`` into a node tree; syntax errors are recorded with their position."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        errors.messages.append(f"{errors.file}:{line}:{col}: YAML syntax error: {problem}")
        return None
    except yaml.YAMLError as exc:
        errors.messages.append(f"{errors.file}:1:1: YAML error: {exc}")
        return None
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
        errors.messages.append(f"{errors.file}:1:1: the file is empty")
        return None
    return node


class FileTooLarge(Exception):
    """A file is over the size limit; the message says by how much (``too large (...)``)."""


def read_limited(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, refused past ``limit`` with :class:`FileTooLarge` before anything is
    parsed; OSError when it cannot be read.

    At most ``limit + 1`` bytes are read, whatever the file claims to be (a size checked first
    could change before the read, and a pipe or device has none).
    """
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
        if len(data) > limit:
            size = os.fstat(fh.fileno()).st_size
            shown = f"{size} bytes" if size > limit else f"more than {limit} bytes"
            raise FileTooLarge(f"too large ({shown}; the limit is {limit})")
    return data


def read_text(path: str, errors: YamlErrors) -> str | None:
    """The file's UTF-8 text, or None with the reason recorded in ``errors``."""
    try:
        return read_limited(path).decode("utf-8")
    except FileTooLarge as exc:
        errors.messages.append(f"{path}: {exc}")
    except OSError as exc:
        errors.messages.append(f"{path}:1:1: cannot read file: {exc.strerror or exc}")
    except UnicodeDecodeError:
        errors.messages.append(f"{path}:1:1: the file is not UTF-8 text")
    return None


def compose_file(path: str, errors: YamlErrors) -> yaml.Node | None:
    text = read_text(path, errors)
    return None if text is None else compose_text(text, errors)


class NodeReader:
    """Typed accessors over a node tree that record errors and return None on a mismatch."""

    def __init__(self, errors: YamlErrors) -> None:
        self.errors = errors

    # -- structure ------------------------------------------------------------------------
    def mapping(
        self, node: yaml.Node, what: str, allowed: frozenset[str] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """Key name → (key node, value node); reports duplicates and unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            self.errors.at(node, f"{what} must be a mapping")
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.errors.at(key_node, f"keys of {what} must be plain names")
                continue
            key = str(key_node.value)
            if key in out:
                self.errors.at(key_node, f"duplicate key {key!r} in {what}")
                continue
            if allowed is not None and key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.errors.at(key_node, f"unknown key {key!r} in {what} (expected one of: {hint})")
                continue
            out[key] = (key_node, value_node)
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.errors.at(node, f"{what} must be a list")
            return None
        return list(node.value)

    def items(self, node: yaml.Node, what: str) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
        mapping = self.mapping(node, what)
        for key, (key_node, value_node) in (mapping or {}).items():
            yield key, key_node, value_node

    # -- scalars --------------------------------------------------------------------------
    def string(self, node: yaml.Node, what: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag in (_STR, _INT, _FLOAT):
            return str(node.value)
        self.errors.at(node, f"{what} must be a string")
        return None

    def choice(self, node: yaml.Node, what: str, choices: type[E], noun: str) -> E | None:
        """A string that names a member of the enum ``choices``; else an error listing them."""
        name = self.string(node, what)
        if name is None:
            return None
        try:
            return choices(name)
        except ValueError:
            known = ", ".join(str(c.value) for c in choices)
            self.errors.at(node, f"unknown {noun} {name!r} (expected one of: {known})")
            return None

    def integer(
        self, node: yaml.Node, what: str, *, low: int = 0, high: int | None = None
    ) -> int | None:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _INT):
            self.errors.at(node, f"{what} must be an integer")
            return None
        try:
            value = int(str(node.value).replace("_", ""), 0)
        except ValueError:
            self.errors.at(node, f"{what} must be an integer")
            return None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.errors.at(node, f"{what} must be {bound}")
            return None
        return value

    def number(self, node: yaml.Node, what: str) -> str | None:
        """A decimal number as its source text (the caller converts it exactly)."""
        if isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT):
            return str(node.value).replace("_", "")
        self.errors.at(node, f"{what} must be a number")
        return None

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            return str(node.value).lower() in ("true", "yes", "on")
        self.errors.at(node, f"{what} must be true or false")
        return None

    def scalar_value(self, node: yaml.Node) -> object:
        """The plain Python value of a scalar (for durations that may be ints or strings)."""
        if not isinstance(node, yaml.ScalarNode):
            return node
        if node.tag == _INT:
            try:
                return int(str(node.value).replace("_", ""), 0)
            except ValueError:
                return node.value
        if node.tag == _BOOL:
            return str(node.value).lower() in ("true", "yes", "on")
        return node.value

    def string_list(
        self, node: yaml.Node, what: str, *, nonempty: bool = False
    ) -> list[tuple[str, yaml.Node]] | None:
        """A list of strings; a single string is accepted as a one-item list."""
        if isinstance(node, yaml.ScalarNode):
            value = self.string(node, what)
            return None if value is None else [(value, node)]
        items = self.sequence(node, what)
        if items is None:
            return None
        if nonempty and not items:
            self.errors.at(node, f"{what} must not be empty (the rule would never match)")
            return None
        out: list[tuple[str, yaml.Node]] = []
        for item in items:
            value = self.string(item, f"each item of {what}")
            if value is not None:
                out.append((value, item))
        return out

    def convert(self, node: yaml.Node, what: str, fn: Callable[[object], T]) -> T | None:
        try:
            return fn(self.scalar_value(node))
        except ValueError as exc:
            self.errors.at(node, f"{what}: {exc}")
            return None
