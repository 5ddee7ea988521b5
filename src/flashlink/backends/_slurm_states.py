"""Slurm job states -> :class:`~flashlink.backends.base.JobState`: pure parsing and mapping.

Two sources, read with one call each per poll (see :mod:`flashlink.backends.slurm`):

- ``squeue --json``: every job slurmctld still holds (pending, running, and finished ones for
  ``MinJobAge`` seconds, 300 by default). Slurm 22.05 (openapi v0.0.38) gives ``job_state`` as
  one string, a flag winning over the base state (``COMPLETING``, ``CONFIGURING``, ...), and
  ``exit_code`` as the raw wait status (measured here: ``1792`` for ``exit 7``, ``9`` for a
  ``kill -9``); newer releases give lists and ``{"return_code", "signal"}`` objects. Both are
  read. Measured too: 22.05 ignores ``-j`` with ``--json`` and lists every job, so the caller
  filters by id.
- ``sacct --parsable2`` for jobs that already left slurmctld, **not** ``sacct --json``: 22.05's
  JSON reports ``exit_code`` 0 for a batch job that exited 7, while ``--parsable2`` says
  ``FAILED|7:0`` (measured here).

Mapping rules (the existing interLink Slurm plugin got several wrong): a ``COMPLETING`` job is
still running (its epilog runs), not failed; pending reasons become waiting reasons; held and
requeued jobs are pending; every terminal state keeps Slurm's name in the message and gets a
Kubernetes-like reason (``DeadlineExceeded`` for ``TIMEOUT``, ``OOMKilled`` for
``OUT_OF_MEMORY``, ...). A state this module does not know stays pending, with its name as the
reason: reporting a job failed that may still run would be worse.
"""

from __future__ import annotations

__all__ = [
    "SACCT_FIELDS",
    "SlurmRecord",
    "json_errors",
    "parse_sacct",
    "parse_squeue_json",
    "to_job_state",
]

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flashlink.backends.base import JobPhase, JobState
from flashlink.backends.errors import BackendError, BackendUnavailableError

#: sacct columns, in order; WorkDir last so a ``|`` in it cannot shift the others.
SACCT_FIELDS = ("JobIDRaw", "State", "ExitCode", "Reason", "Start", "End", "WorkDir")


@dataclass(frozen=True)
class SlurmRecord:
    """One job as squeue or sacct describes it, before mapping."""

    job_id: str
    states: frozenset[str]
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    work_dir: str | None = None
    comment: str | None = None
    source: str = "squeue"


# --- parsing ---------------------------------------------------------------------------------


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, dict):  # newer openapi: {"set": true, "infinite": false, "number": N}
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():  # sacct: "Unknown", "None"
            return None
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def _number(value: Any) -> int | None:
    if isinstance(value, dict):
        if not value.get("set", True):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _exit(value: Any) -> tuple[int | None, int | None]:
    """(exit status, signal) from squeue's ``exit_code`` in either generation's shape."""
    if isinstance(value, dict):
        code = _number(value.get("return_code"))
        sig = value.get("signal")
        signal = _number(sig.get("id")) if isinstance(sig, dict) else _number(sig)
        return code, signal or None
    number = _number(value)
    if number is None:
        return None, None
    # a wait(2) status, as slurmctld stores it: low 7 bits = terminating signal
    if number & 0x7F:
        return None, number & 0x7F
    return (number >> 8) & 0xFF, None


def _states(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        names = [value]
    elif isinstance(value, list):
        names = [v for v in value if isinstance(v, str)]
    else:
        names = []
    return frozenset(n.strip().upper() for n in names if n.strip())


def _reason(value: Any) -> str | None:
    if not isinstance(value, str) or value.strip() in ("", "None"):
        return None
    return value.strip()


def json_errors(errors: Any) -> str:
    """The ``errors`` list of a Slurm ``--json`` answer, as one line."""
    items = errors if isinstance(errors, list) else [errors]
    shown = []
    for item in items:
        if isinstance(item, dict):
            parts = [str(item.get(k)) for k in ("source", "description", "error") if item.get(k)]
            shown.append(": ".join(parts))
        else:
            shown.append(str(item))
    return "; ".join(shown)


def parse_squeue_json(text: str) -> dict[str, SlurmRecord]:
    """``squeue --json`` output -> records by job id (as a string)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackendError(f"squeue --json printed something that is not JSON ({exc})") from exc
    errors = data.get("errors") if isinstance(data, dict) else None
    if errors:
        # Measured on 22.05 with slurmctld unreachable: exit 0 after ~9 s of retries, an empty
        # job list and errors [{"description": "Failed while looking for jobs", "source":
        # "slurm_load_jobs", ...}]. Taking that list as the truth would make every job Lost.
        raise BackendUnavailableError(f"squeue could not list the jobs: {json_errors(errors)}")
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, list):
        raise BackendError("squeue --json printed no 'jobs' list; is this Slurm 21.08 or newer?")
    records: dict[str, SlurmRecord] = {}
    for job in jobs:
        if not isinstance(job, dict) or _number(job.get("job_id")) is None:
            continue
        code, signal = _exit(job.get("exit_code"))
        record = SlurmRecord(
            job_id=str(_number(job["job_id"])),
            states=_states(job.get("job_state")),
            reason=_reason(job.get("state_reason")),
            exit_code=code,
            signal=signal,
            start=_epoch(job.get("start_time")),
            end=_epoch(job.get("end_time")),
            work_dir=job.get("current_working_directory") or None,
            comment=job.get("comment") if isinstance(job.get("comment"), str) else None,
            source="squeue",
        )
        records[record.job_id] = record
    return records


def parse_sacct(text: str) -> dict[str, SlurmRecord]:
    """``sacct -X -n --parsable2 -o <SACCT_FIELDS>`` (times as epochs) -> records by job id."""
    records: dict[str, SlurmRecord] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", len(SACCT_FIELDS) - 1)
        if len(parts) != len(SACCT_FIELDS):
            raise BackendError(
                f"sacct printed a line with {len(parts)} fields, expected "
                f"{len(SACCT_FIELDS)} ({', '.join(SACCT_FIELDS)}): {line[:200]!r}"
            )
        job_id, state, exit_code, reason, start, end, work_dir = parts
        code: int | None = None
        signal: int | None = None
        status, _, sig = exit_code.partition(":")
        if status.isdigit():
            code = int(status)
        if sig.isdigit() and int(sig):
            signal = int(sig)
        records[job_id] = SlurmRecord(
            job_id=job_id,
            # "CANCELLED by 2000" -> CANCELLED
            states=frozenset({state.split()[0].upper()} if state.strip() else ()),
            reason=_reason(reason),
            exit_code=code,
            signal=signal,
            start=_epoch(start),
            end=_epoch(end),
            work_dir=work_dir or None,
            source="sacct",
        )
    return records


# --- mapping ---------------------------------------------------------------------------------

#: Pending reasons worth a sentence; the others are shown as Slurm names them.
_PENDING_HELP = {
    "Priority": "waiting behind higher-priority jobs",
    "Resources": "waiting for resources to become free",
    "Dependency": "waiting for the jobs it depends on",
    "DependencyNeverSatisfied": "its dependencies can never be satisfied; it will not start",
    "BeginTime": "waiting for its begin time",
    "JobHeldUser": "held by its user; release it with scontrol release",
    "JobHeldAdmin": "held by an administrator",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionTimeLimit": "its time limit exceeds the partition's; it will not start",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "ReqNodeNotAvail": "a node it needs is not available",
    "BadConstraints": "its constraints cannot be met by any node; it will not start",
    "InvalidAccount": "its account is invalid",
    "InvalidQOS": "its QOS is invalid",
    "Reservation": "waiting for its reservation",
    "Licenses": "waiting for licenses",
    "NodeDown": "a node it needs is down",
}

#: Terminal base states -> (phase, reason).
_TERMINAL = {
    "COMPLETED": (JobPhase.SUCCEEDED, "Completed"),
    "FAILED": (JobPhase.FAILED, "Error"),
    "CANCELLED": (JobPhase.FAILED, "Cancelled"),
    "TIMEOUT": (JobPhase.FAILED, "DeadlineExceeded"),
    "DEADLINE": (JobPhase.FAILED, "DeadlineExceeded"),
    "OUT_OF_MEMORY": (JobPhase.FAILED, "OOMKilled"),
    "NODE_FAIL": (JobPhase.FAILED, "NodeFail"),
    "PREEMPTED": (JobPhase.FAILED, "Preempted"),
    "BOOT_FAIL": (JobPhase.FAILED, "BootFail"),
    "REVOKED": (JobPhase.FAILED, "Revoked"),
}

#: Flags/states of a job that is back in the queue (or held there) -> reason.
_REQUEUED = {
    "REQUEUE_HOLD": "Held",
    "SPECIAL_EXIT": "Held",
    "RESV_DEL_HOLD": "Held",
    "REQUEUED": "Requeued",
    "REQUEUE_FED": "Requeued",
    "LAUNCH_FAILED": "Requeued",
}

#: Flags of a job whose script has started or ended but that has not left its nodes.
_ACTIVE_FLAGS = {
    "COMPLETING": "Completing",
    "STAGE_OUT": "StageOut",
    "SIGNALING": "Signaling",
    "STOPPED": "Stopped",
    "RESIZING": "Resizing",
    "UPDATE_DB": "UpdateDb",
}

#: Flags of a job that has nodes but whose script has not started.
_STARTING_FLAGS = {"CONFIGURING": "Configuring", "POWER_UP_NODE": "PowerUpNode"}


def _exit_of(record: SlurmRecord) -> int | None:
    if record.signal:
        return 128 + record.signal  # the shell's convention, as Kubernetes reports it
    return record.exit_code


def _end_message(record: SlurmRecord, base: str) -> str:
    parts = [f"Slurm job {record.job_id} ended {base}"]
    if record.signal:
        parts.append(f"killed by signal {record.signal}")
    elif record.exit_code:
        parts.append(f"exit code {record.exit_code}")
    if record.reason and record.reason not in ("NonZeroExitCode",):
        parts.append(f"reason {record.reason}")
    return ", ".join(parts)


def _flagged(record: SlurmRecord) -> JobState | None:
    """Requeued/held, starting, or still-active (e.g. COMPLETING) jobs, from their flags."""
    jid, states = record.job_id, record.states
    for flag, reason in _REQUEUED.items():
        if flag in states:
            why = f" ({record.reason})" if record.reason else ""
            return JobState(jid, JobPhase.PENDING, reason, f"Slurm job {jid} is {flag}{why}")
    for flag, reason in _STARTING_FLAGS.items():
        if flag in states:
            return JobState(jid, JobPhase.PENDING, reason, f"Slurm job {jid} is {flag}")
    for flag, reason in _ACTIVE_FLAGS.items():
        if flag in states:
            message = f"Slurm job {jid} is {flag}"
            return JobState(jid, JobPhase.RUNNING, reason, message, started_at=record.start)
    return None


def _terminal(record: SlurmRecord) -> JobState | None:
    for base, (phase, reason) in _TERMINAL.items():
        if base not in record.states:
            continue
        code = _exit_of(record)
        if phase is JobPhase.SUCCEEDED and code:
            phase_, reason_ = JobPhase.FAILED, "Error"
        else:
            phase_, reason_ = phase, reason
        return JobState(
            record.job_id,
            phase_,
            reason_,
            _end_message(record, base),
            exit_code=0 if phase_ is JobPhase.SUCCEEDED else code,
            started_at=record.start,
            finished_at=record.end,
        )
    return None


def _pending(record: SlurmRecord) -> JobState:
    raw = record.reason or "Queued"
    key = raw.split(",")[0].strip()  # "ReqNodeNotAvail, UnavailableNodes:n1" -> key
    reason = "Held" if key in ("JobHeldUser", "JobHeldAdmin") else key
    help_text = _PENDING_HELP.get(key)
    if help_text is None and key.startswith(("QOS", "Assoc")):
        help_text = "a QOS or association limit is reached"
    message = f"Slurm job {record.job_id} is pending: {raw}"
    return JobState(
        record.job_id, JobPhase.PENDING, reason, message + (f" ({help_text})" if help_text else "")
    )


def to_job_state(record: SlurmRecord) -> JobState:
    """The backend-neutral state of one Slurm job."""
    jid, states = record.job_id, record.states
    state = _flagged(record) or _terminal(record)
    if state is not None:
        return state
    if "RUNNING" in states:
        return JobState(jid, JobPhase.RUNNING, None, None, started_at=record.start)
    if "SUSPENDED" in states:
        message = f"Slurm job {jid} is SUSPENDED"
        return JobState(jid, JobPhase.RUNNING, "Suspended", message, started_at=record.start)
    if "PENDING" in states:
        return _pending(record)
    shown = "|".join(sorted(states)) or "no state"
    return JobState(
        jid,
        JobPhase.PENDING,
        shown.title().replace("_", "") if states else "Unknown",
        f"Slurm job {jid} is in state {shown}, which flashlink does not know; "
        "treating it as not finished",
    )
