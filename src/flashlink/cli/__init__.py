"""The ``flashlink`` command line; it imports the parts, no part imports it."""

from __future__ import annotations

__all__ = ["app", "main"]

from flashlink.cli._app import app, main
