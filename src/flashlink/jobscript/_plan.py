"""The plain data the renderer passes between its steps (no logic, no I/O)."""

from __future__ import annotations

__all__ = ["Bind", "ContainerRun", "VolumePlan"]

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from flashlink.jobscript._shell import Word


@dataclass(frozen=True)
class VolumePlan:
    """How one Pod volume exists on the node while the job runs.

    ``source`` is the host path (a shell word: it may start with the job's scratch directory);
    ``setup`` are the script lines that create or check it, run once before any container;
    ``files`` lists the relative paths a file-based volume (ConfigMap, Secret, projected)
    holds, so a ``subPath`` into it is checked when rendering; ``writable`` volumes get missing
    ``subPath`` directories created at run time, as the kubelet does.
    """

    name: str
    kind: str
    source: Word
    setup: tuple[str, ...]
    read_only: bool = False
    writable: bool = False
    files: frozenset[str] | None = None
    memory: bool = False


@dataclass(frozen=True)
class Bind:
    """A host path (shell word) bound at ``target`` inside a container."""

    source: Word
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerRun:
    """Everything a runtime needs to start one container; values are final (already expanded)."""

    index: int
    name: str
    init: bool
    image: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    env: tuple[tuple[str, str], ...]
    working_dir: str | None
    binds: tuple[Bind, ...]
    cpu_limit: Decimal | None = None
    memory_limit: int | None = None
    gpus: Mapping[str, int] = field(default_factory=dict)
    run_as_user: int | None = None
    run_as_group: int | None = None
    read_only_root: bool = False
    pull_policy: str | None = None
