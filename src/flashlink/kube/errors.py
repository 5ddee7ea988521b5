"""Errors raised while reading Kubernetes objects and interLink messages.

::

    FlashlinkError
    └── KubeError
        └── InvalidObjectError   (a document that is not the object it claims to be)

pydantic's ``ValidationError`` is mapped here, at the boundary, into :class:`InvalidObjectError`
whose message lists every offending field as a dotted Kubernetes path (``spec.containers[0].name``).
"""

from __future__ import annotations

__all__ = ["InvalidObjectError", "KubeError"]

from flashlink.errors import FlashlinkError


class KubeError(FlashlinkError):
    """Base class of the wire-type errors."""


class InvalidObjectError(KubeError, ValueError):
    """A document could not be read as the expected Kubernetes object or interLink message."""

    def __init__(self, kind: str, problems: list[str]) -> None:
        self.kind = kind
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid {kind}:\n{lines}")
