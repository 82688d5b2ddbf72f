"""The policy in force is never half-applied: a bad reload keeps the old one (CONTRACT §2)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from piigate.errors import PolicyError
from piigate.policy.holder import PolicyHolder

POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: a1}
      aal2: {acr: a2}
    pii:
      ssn: {}
    rules:
      - name: read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2, max_age: 5m}
    """
)


def test_reload_keeps_the_old_policy_when_the_file_becomes_invalid(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    holder = PolicyHolder.from_file(str(path))
    first = holder.current
    assert first is not None and first.policy.rules[0].name == "read-ssn"

    path.write_text(POLICY.replace("max_age: 5m", "max_age: 5x"), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        holder.reload()
    assert holder.current is first
    assert holder.last_error == info.value.errors
    assert info.value.errors[0].startswith(f"{path}:10:")

    path.write_text("version: 1\nlevels: [\n", encoding="utf-8")  # not even YAML
    with pytest.raises(PolicyError):
        holder.reload()
    assert holder.current is first

    path.unlink()  # gone altogether
    with pytest.raises(PolicyError):
        holder.reload()
    assert holder.current is first


def test_reload_swaps_when_valid(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    holder = PolicyHolder.from_file(str(path))
    first = holder.current
    path.write_text("version: 1\n", encoding="utf-8")
    with pytest.raises(PolicyError):
        holder.reload()
    assert holder.last_error and holder.current is first
    path.write_text(POLICY.replace("max_age: 5m", "max_age: 1m"), encoding="utf-8")
    swapped = holder.reload()
    assert holder.current is swapped and swapped is not first
    assert swapped.policy.rules[0].require is not None
    assert swapped.policy.rules[0].require.max_age == 60
    assert first is not None and swapped.digest != first.digest
    assert holder.last_error == []


def test_start_refuses_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("version: 1\n", ""), encoding="utf-8")
    with pytest.raises(PolicyError):
        PolicyHolder.from_file(str(path))


def test_reload_without_a_file() -> None:
    holder = PolicyHolder()
    assert holder.current is None
    with pytest.raises(PolicyError):
        holder.reload()
    assert holder.current is None
