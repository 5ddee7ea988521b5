"""What a container runtime provides to the renderer (a small protocol, one file each)."""

from __future__ import annotations

__all__ = ["Runtime"]

from typing import Protocol

from flashlink.jobscript._plan import ContainerRun
from flashlink.jobscript._shell import Word


class Runtime(Protocol):
    """Turns a :class:`ContainerRun` into the command that runs it, for one runtime."""

    name: str
    executable: str
    forbidden_path_chars: str
    """Characters a bind path cannot hold with this runtime's bind syntax."""

    def env_problem(self, name: str, value: str) -> str | None:
        """Why this runtime cannot set this variable to this value, or None when it can."""
        ...

    def functions(self, run_id: str) -> list[str]:
        """Lines defining ``fl_runtime_term PID``, ``fl_runtime_kill PID``, ``fl_runtime_cleanup``.

        ``run_id`` is a name-safe prefix unique to the pod (the script appends its pid).
        """
        ...

    def image_function(self, function: str, image: str, pull_policy: str | None) -> list[str]:
        """Lines defining ``function``, which sets ``FL_IMAGE`` (and returns 1 if none is found)."""
        ...

    def prepare(self, run: ContainerRun) -> list[str]:
        """Lines run just before the container starts (e.g. making its work directory)."""
        ...

    def command(self, run: ContainerRun) -> list[Word]:
        """The argv (shell words) that runs the container in the foreground."""
        ...
