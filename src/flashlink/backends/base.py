"""The ``Backend`` protocol: where a rendered job script runs.

DESIGN.md's contract: ``submit(jobs) -> ids`` (many jobs at once, one scheduler transaction where
the scheduler has one), ``poll(ids) -> states`` (**one** scheduler query per call, however many
ids), ``cancel(id)``, ``fetch(id)`` (the job directory as the submit side sees it) and
``capacity()``. Backends are synchronous and thread-safe; the plugin calls them from its
reconciler thread, never in a request path.

Each backend keeps a job's **job directory** (the directory where the job script writes its
per-container logs and state records, see ``flashlink.jobscript.state``) under the
``BatchJob.job_dir`` the caller chose: the local and Slurm backends run the script there
(shared filesystem); HTCondor transfers it back into it at the end, and periodically when
configured.
"""

from __future__ import annotations

__all__ = ["Backend", "BatchJob", "Capacity", "JobPhase", "JobState"]

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from flashlink.jobscript import Resources


@dataclass(frozen=True)
class BatchJob:
    """One job to submit: a rendered script plus what the scheduler needs to know about it.

    ``key`` is the caller's stable identity for the job (the Pod UID): backends put it in the
    scheduler's job record (Slurm comment, HTCondor job attribute) so a job can be found again
    after a restart. ``options`` are backend-specific, user-supplied settings taken from Pod
    annotations (e.g. ``slurm-job.vk.io/flags``); each backend validates the ones it reads.
    """

    key: str
    name: str
    script: str
    job_dir: Path
    resources: Resources = field(default_factory=Resources)
    options: Mapping[str, str] = field(default_factory=dict)
    contains_secrets: bool = False


class JobPhase(enum.StrEnum):
    """Where a batch job is, as the scheduler tells it."""

    PENDING = "pending"  # queued, held, or not started yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # left the scheduler with exit code 0
    FAILED = "failed"  # left with a non-zero exit, was killed, timed out, or was removed
    UNKNOWN = "unknown"  # the scheduler no longer knows the job and nothing recorded its end


@dataclass(frozen=True)
class JobState:
    """A scheduler's view of one job. ``reason`` is short and machine-like (``Priority``,
    ``Held``, ``TIMEOUT``); ``message`` is for humans (e.g. HTCondor's HoldReason)."""

    backend_id: str
    phase: JobPhase
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Capacity:
    """What a site offers, reported to Kubernetes as the virtual node's allocatable resources."""

    cpu: float
    memory_bytes: int
    pods: int
    accelerators: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """A batch system that runs job scripts."""

    @property
    def kind(self) -> str:
        """``local``, ``slurm`` or ``htcondor``."""

    def submit(self, jobs: Sequence[BatchJob]) -> list[str]:
        """Submit the jobs; return their backend ids, in order. All or nothing where possible."""

    def poll(self, ids: Sequence[str]) -> dict[str, JobState]:
        """The state of each known id, from one scheduler query; unknown ids are omitted."""

    def cancel(self, backend_id: str) -> None:
        """Remove the job; a job that already ended is not an error."""

    def fetch(self, backend_id: str) -> Path:
        """The submit-side job directory, with whatever of it has come back so far."""

    def capacity(self) -> Capacity:
        """The resources this site offers."""

    def close(self) -> None:
        """Release connections and threads."""
