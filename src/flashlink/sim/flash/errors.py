"""Errors of the flash models (:mod:`flashlink.sim.flash`).

::

    SimError (flashlink.sim.errors)
    ├── ModelFormatError    an exported model or model set is missing, corrupt or of another format
    └── TrainingError       a training set or training option cannot be used (names the value)

Missing optional packages (torch, zuko, onnx, mlflow) raise
:class:`flashlink.sim.errors.MissingDependencyError` with the install hint.
"""

from __future__ import annotations

__all__ = ["ModelFormatError", "TrainingError", "require"]

import importlib
from types import ModuleType

from flashlink.sim.errors import MissingDependencyError, SimError


class ModelFormatError(SimError):
    """An exported model (manifest, weights, ONNX) cannot be read or has another format."""


class TrainingError(SimError, ValueError):
    """A training set or option is unusable; the message names the value and what is valid."""


def require(module: str, extra: str = "flash") -> ModuleType:
    """Import an optional dependency or raise :class:`MissingDependencyError` with the hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is needed for this step but is not installed: "
            f"pip install 'flashlink[{extra}]'"
        ) from exc
