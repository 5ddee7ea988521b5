"""Errors of productions::

FlashlinkError
└── ProductionError            a production cannot run or continue
    ├── RequestError           the request file is invalid (each bad field named)
    └── PluginCallError        the plugin HTTP API refused or did not answer
"""

from __future__ import annotations

__all__ = ["PluginCallError", "ProductionError", "RequestError"]

from flashlink.errors import FlashlinkError


class ProductionError(FlashlinkError):
    """A production cannot run or continue; the message says what to do next."""


class RequestError(ProductionError):
    """The production request is invalid: one line per bad field, by its path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid production request {source}:\n{lines}")


class PluginCallError(ProductionError):
    """The interLink plugin answered an error or could not be reached."""
