from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["piigate.audit", "piigate.store"])
def test_all_names_exist(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(set(mod.__all__))
    for name in mod.__all__:
        assert hasattr(mod, name), name
