"""Backends: where a job script runs (local, Slurm, HTCondor), behind one protocol."""

from __future__ import annotations

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "BatchJob",
    "Capacity",
    "InvalidSiteConfigError",
    "JobNotFoundError",
    "JobPhase",
    "JobState",
    "SubmitError",
]

from flashlink.backends.base import Backend, BatchJob, Capacity, JobPhase, JobState
from flashlink.backends.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidSiteConfigError,
    JobNotFoundError,
    SubmitError,
)
