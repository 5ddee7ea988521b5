"""Container runtimes, one module each; :func:`runtime_for` picks the configured one."""

from __future__ import annotations

__all__ = ["ApptainerRuntime", "PodmanRuntime", "Runtime", "runtime_for"]

from flashlink.jobscript.config import RenderConfig
from flashlink.jobscript.runtimes._base import Runtime
from flashlink.jobscript.runtimes.apptainer import ApptainerRuntime
from flashlink.jobscript.runtimes.podman import PodmanRuntime


def runtime_for(config: RenderConfig) -> Runtime:
    """The runtime named by ``config.runtime``."""
    if config.runtime == "podman":
        return PodmanRuntime(config)
    return ApptainerRuntime(config)
