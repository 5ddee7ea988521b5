from __future__ import annotations

import importlib
import pkgutil

import pytest

import flashlink


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(flashlink.__path__, "flashlink."))


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions and the rest.
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


@pytest.mark.parametrize("name", ["flashlink", *_modules()])
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    assert list(exported) == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which is missing"


def test_errors_share_one_root() -> None:
    assert issubclass(flashlink.FlashlinkError, Exception)
