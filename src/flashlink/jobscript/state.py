"""The job directory a running script maintains, and how to read it back.

The script writes (and replaces atomically) small JSON records while it runs, so a backend or
the plugin can report live states and logs by reading files, locally or after a transfer::

    job.log                      the script's own log (what it set up, why it stopped)
    pod.json                     {"uid", "phase": Running|Succeeded|Failed, "startedAt",
                                  "reason", "exitCode", "finishedAt"}
    containers/NAME/state.json   {"name", "state": waiting|running|terminated, "reason",
                                  "startedAt", "finishedAt", "exitCode", "message"}
    containers/NAME/log          stdout+stderr (RFC 3339 prefixes with timestamp_logs)
    volumes/VOLUME.log           output of a fuse.vk.io mount script

Reasons written by the script: waiting ``PodInitializing``, ``ContainerCreating``; terminated
``Completed``, ``Error``, ``InitContainerFailed`` (a previous init container failed: never run),
``Terminated`` (the job got SIGTERM/SIGINT/SIGHUP), ``DeadlineExceeded``
(activeDeadlineSeconds), ``FailedMount`` and ``ErrImagePull`` and ``ContainerCannotRun``
(exit code 128: the container could not be started).
"""

from __future__ import annotations

__all__ = [
    "CONTAINERS_DIR",
    "JOB_LOG",
    "POD_RECORD",
    "PodRecord",
    "container_log",
    "container_state",
    "parse_pod_record",
    "parse_state",
]

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flashlink.jobscript.errors import JobScriptError
from flashlink.kube import (
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
)

JOB_LOG = "job.log"
POD_RECORD = "pod.json"
CONTAINERS_DIR = "containers"


def container_state(name: str) -> str:
    """Path of a container's state record, relative to the job directory."""
    return f"{CONTAINERS_DIR}/{name}/state.json"


def container_log(name: str) -> str:
    """Path of a container's log, relative to the job directory."""
    return f"{CONTAINERS_DIR}/{name}/log"


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str
    state: str
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = Field(default=None, alias="exitCode")
    started_at: datetime | None = Field(default=None, alias="startedAt")
    finished_at: datetime | None = Field(default=None, alias="finishedAt")


class PodRecord(BaseModel):
    """``pod.json``: the script's own view of the Pod."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    uid: str = ""
    phase: str
    reason: str | None = None
    exit_code: int | None = Field(default=None, alias="exitCode")
    started_at: datetime | None = Field(default=None, alias="startedAt")
    finished_at: datetime | None = Field(default=None, alias="finishedAt")


def _load(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobScriptError(what, f"is not a JSON record ({exc}): {text[:200]!r}") from exc


def parse_state(text: str) -> ContainerStatus:
    """A ``state.json`` record as the ``v1.ContainerStatus`` interLink expects."""
    try:
        record = _Record.model_validate(_load(text, "state.json"))
    except ValidationError as exc:
        raise JobScriptError("state.json", f"is not a state record: {exc}") from exc
    state = ContainerState()
    if record.state == "running":
        state.running = ContainerStateRunning(started_at=record.started_at)
    elif record.state == "terminated":
        state.terminated = ContainerStateTerminated(
            exit_code=record.exit_code if record.exit_code is not None else 1,
            reason=record.reason,
            message=record.message,
            started_at=record.started_at,
            finished_at=record.finished_at,
        )
    elif record.state == "waiting":
        state.waiting = ContainerStateWaiting(reason=record.reason, message=record.message)
    else:
        raise JobScriptError(
            "state.json", f"state {record.state!r} is not one of waiting, running, terminated"
        )
    return ContainerStatus(
        name=record.name,
        state=state,
        ready=record.state == "running",
        started=record.state == "running",
    )


def parse_pod_record(text: str) -> PodRecord:
    """A ``pod.json`` record."""
    try:
        return PodRecord.model_validate(_load(text, "pod.json"))
    except ValidationError as exc:
        raise JobScriptError("pod.json", f"is not a pod record: {exc}") from exc
