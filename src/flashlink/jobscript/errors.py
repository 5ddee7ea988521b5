"""Errors of the job-script renderer: a Pod (or a config) that cannot become a correct script.

::

    FlashlinkError
    └── JobScriptError
        ├── InvalidPodError        (the Pod breaks a rule Kubernetes or flashlink enforces)
        ├── MissingObjectError     (a ConfigMap/Secret/key the Pod needs was not supplied)
        ├── UnsupportedError       (valid Kubernetes that this node setup cannot run)
        └── InvalidConfigError     (the build configuration is wrong)

Every message names the offending field by its Pod path (``spec.containers[1].volumeMounts[0]``)
and says what would be valid, so interLink can show it to the user as the pod's failure reason.
"""

from __future__ import annotations

__all__ = [
    "InvalidConfigError",
    "InvalidPodError",
    "JobScriptError",
    "MissingObjectError",
    "UnsupportedError",
]

from flashlink.errors import FlashlinkError


class JobScriptError(FlashlinkError, ValueError):
    """Base class: the Pod and configuration cannot be rendered into a job script."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class InvalidPodError(JobScriptError):
    """The Pod is not valid (no containers, duplicate names, a path escaping its volume, ...)."""


class MissingObjectError(JobScriptError):
    """A non-optional ConfigMap, Secret or key that the Pod refers to was not supplied."""


class UnsupportedError(JobScriptError):
    """Valid Kubernetes that cannot run on a batch node as configured (e.g. an ``nfs`` volume)."""


class InvalidConfigError(JobScriptError):
    """The render configuration (build TOML) is wrong."""
