from __future__ import annotations

import importlib

import pytest

import piigate.identity

MODULES = [
    *("apikeys", "errors", "federation", "jwks", "jwt", "login", "login_store"),
    *("oidc", "oidc_flow", "passwords", "throttle"),
]


def test_package_all_is_importable_and_sorted() -> None:
    names = piigate.identity.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(piigate.identity, name), name


@pytest.mark.parametrize("module", MODULES)
def test_module_all_is_importable(module: str) -> None:
    mod = importlib.import_module(f"piigate.identity.{module}")
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_identity_does_not_import_sqlalchemy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, piigate.identity; "
        "sys.exit(any(m == 'sqlalchemy' or m.startswith('sqlalchemy.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
