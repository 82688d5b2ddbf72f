"""Every module that declares ``__all__`` exports exactly names that exist (STYLE.md §13)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import piigate
import piigate_authenticator


def _modules() -> list[str]:
    names = ["piigate", "piigate_authenticator"]
    for package in (piigate, piigate_authenticator):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" in info.name:
                continue
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    assert len(exported) == len(set(exported)), f"{name}: duplicate names in __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"


def test_core_packages_declare_their_api() -> None:
    for name in (
        "piigate.model",
        "piigate.policy",
        "piigate.errors",
        "piigate.store",
        "piigate.audit",
    ):
        assert getattr(importlib.import_module(name), "__all__", None), name
