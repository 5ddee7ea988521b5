"""What ``/status`` says about a pod: the backend's job state and the job directory's records.

Pure functions (the reconciler does the I/O). interLink's virtual kubelet derives the pod phase
from the container states we report (``pkg/virtualkubelet/execute.go``), so the rules here are
written for it:

- every container and init container is always reported (an empty list would read as
  "all terminated", i.e. Succeeded);
- a job the scheduler still queues: every container ``waiting``, with the scheduler's reason
  (``Queued``, ``Priority``, ``Held``...) and message;
- a running job: each container as its state record says (``waiting``/``ContainerCreating``
  until the script has written one);
- an ended job: the records, and every container without a ``terminated`` record is reported
  terminated with the job's exit code and reason (killed, cancelled, lost), never left running
  or waiting, so the pod always reaches Succeeded or Failed.
"""

from __future__ import annotations

__all__ = [
    "PodInfo",
    "phase_of",
    "pod_status",
    "rejected_status",
    "status_json",
    "waiting_status",
]

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flashlink.backends import JobPhase, JobState
from flashlink.kube import (
    ContainerState,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    PodStatus,
)


@dataclass(frozen=True)
class PodInfo:
    """The identity and containers of a pod, as /status reports them."""

    uid: str
    name: str
    namespace: str
    init: Sequence[tuple[str, str]] = ()  # (name, image), in spec order
    main: Sequence[tuple[str, str]] = ()
    jid: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


def _waiting(name: str, image: str, reason: str, message: str | None) -> ContainerStatus:
    state = ContainerState(waiting=ContainerStateWaiting(reason=reason, message=message))
    return ContainerStatus(name=name, image=image, state=state)


def _terminated(
    name: str,
    image: str,
    *,
    exit_code: int,
    reason: str,
    message: str | None,
    previous: ContainerStatus | None,
    job: JobState | None,
) -> ContainerStatus:
    started = None
    if previous is not None and previous.state.running is not None:
        started = previous.state.running.started_at
    terminated = ContainerStateTerminated(
        exit_code=exit_code,
        reason=reason,
        message=message,
        started_at=started,
        finished_at=job.finished_at if job is not None else None,
    )
    return ContainerStatus(name=name, image=image, state=ContainerState(terminated=terminated))


def _status(info: PodInfo, make: dict[str, ContainerStatus]) -> PodStatus:
    return PodStatus(
        name=info.name,
        UID=info.uid,
        namespace=info.namespace,
        JID=info.jid,
        containers=[make[name] for name, _ in info.main],
        initContainers=[make[name] for name, _ in info.init],
    )


def waiting_status(info: PodInfo, reason: str, message: str | None = None) -> PodStatus:
    """Every container waiting for the same reason (submitted, queued, site unreachable)."""
    make = {
        name: _waiting(name, image, reason, message) for name, image in (*info.init, *info.main)
    }
    return _status(info, make)


def rejected_status(info: PodInfo, reason: str, message: str) -> PodStatus:
    """Every container terminated: the pod never ran (the backend refused or was down)."""
    make = {
        name: _terminated(
            name, image, exit_code=1, reason=reason, message=message, previous=None, job=None
        )
        for name, image in (*info.init, *info.main)
    }
    return _status(info, make)


def pod_status(info: PodInfo, job: JobState, records: Mapping[str, ContainerStatus]) -> PodStatus:
    """The status of a submitted pod (see the module docstring for the rules)."""
    make: dict[str, ContainerStatus] = {}
    phase = job.phase
    for name, image in (*info.init, *info.main):
        record = records.get(name)
        if record is not None:
            record = record.model_copy(update={"image": image})
        if phase is JobPhase.PENDING:
            make[name] = _waiting(name, image, job.reason or "Pending", job.message)
        elif phase is JobPhase.RUNNING:
            make[name] = record or _waiting(name, image, "ContainerCreating", None)
        elif record is not None and record.state.terminated is not None:
            make[name] = record
        elif phase is JobPhase.SUCCEEDED:
            make[name] = _terminated(
                name,
                image,
                exit_code=0,
                reason="Completed",
                message="the job ended before this container's record was written",
                previous=record,
                job=job,
            )
        else:
            code = job.exit_code if job.exit_code is not None and job.exit_code != 0 else 1
            default = "Lost" if phase is JobPhase.UNKNOWN else "Error"
            make[name] = _terminated(
                name,
                image,
                exit_code=code,
                reason=job.reason or default,
                message=job.message,
                previous=record,
                job=job,
            )
    return _status(info, make)


def phase_of(status: PodStatus) -> str:
    """The pod phase interLink's virtual kubelet derives from ``status``."""
    every = [*status.init_containers, *status.containers]
    if every and all(c.state.terminated is not None for c in every):
        ok = all(
            c.state.terminated is not None and c.state.terminated.exit_code == 0 for c in every
        )
        return "Succeeded" if ok else "Failed"
    if any(c.state.running is not None for c in status.containers):
        return "Running"
    return "Pending"


def status_json(status: PodStatus) -> str:
    """The compact wire JSON of one ``PodStatus`` (what the store keeps)."""
    return json.dumps(status.to_wire(), separators=(",", ":"), ensure_ascii=False)
