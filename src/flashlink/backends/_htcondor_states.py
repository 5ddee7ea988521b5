"""HTCondor job ClassAds -> :class:`~flashlink.backends.base.JobState`: pure mapping.

A job ad comes from the schedd's queue (``Schedd.query``) or, once the job has left it, from
its history (``Schedd.history``); both carry ``JobStatus`` (HTCondor manual, "Job ClassAd
Attributes": 1 Idle, 2 Running, 3 Removed, 4 Completed, 5 Held, 6 Transferring Output,
7 Suspended). Rules the landerlini plugin got wrong: a held job is reported with its
``HoldReason``, not as a silent pending job; a removed job is failed, not unknown; a completed
job is failed when its exit code is non-zero or it died by a signal.
"""

from __future__ import annotations

__all__ = ["PROJECTION", "ad_to_dict", "job_id", "to_job_state"]

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flashlink.backends._htcondor_submit import DEADLINE_HOLD_SUBCODE
from flashlink.backends.base import JobPhase, JobState

#: The attributes a poll asks for; nothing else travels.
PROJECTION = (
    "ClusterId",
    "ProcId",
    "JobStatus",
    "HoldReason",
    "HoldReasonCode",
    "HoldReasonSubCode",
    "RemoveReason",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "JobCurrentStartDate",
    "JobStartDate",
    "CompletionDate",
    "EnteredCurrentStatus",
    "NumJobStarts",
    "StageOutFinish",
    "Iwd",
    "FlashlinkKey",
    "FlashlinkSecretScript",
)

_IDLE, _RUNNING, _REMOVED, _COMPLETED, _HELD, _TRANSFERRING, _SUSPENDED = range(1, 8)
#: HoldReasonCode values of a job whose walltime ran out: 47 measured here for
#: allowed_execute_duration ("The job exceeded allowed execute duration of 00:05"), 46 is
#: allowed_job_duration's; flashlink's own deadline hold is code 3 (job policy) with
#: DEADLINE_HOLD_SUBCODE.
_TIME_LIMIT_CODES = frozenset({46, 47})
_POLICY = 3
_SPOOLING_INPUT = 16


def _plain(value: Any) -> Any:
    # classad2 returns Value.Undefined/Error (an IntEnum: isinstance(v, int) holds!) for
    # attributes that exist but have no value
    if isinstance(value, enum.Enum):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None


def ad_to_dict(ad: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`PROJECTION` of an ad as plain Python values (undefined -> None)."""
    return {key: _plain(ad.get(key)) for key in PROJECTION}


def job_id(ad: Mapping[str, Any]) -> str | None:
    cluster, proc = ad.get("ClusterId"), ad.get("ProcId")
    if isinstance(cluster, int) and isinstance(proc, int):
        return f"{cluster}.{proc}"
    return None


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _completed(jid: str, ad: Mapping[str, Any]) -> JobState:
    started = _time(ad.get("JobCurrentStartDate")) or _time(ad.get("JobStartDate"))
    finished = _time(ad.get("CompletionDate")) or _time(ad.get("EnteredCurrentStatus"))
    signal = _int(ad.get("ExitSignal")) if ad.get("ExitBySignal") is True else None
    code = _int(ad.get("ExitCode"))
    if signal:
        exit_code: int | None = 128 + signal
        message = f"HTCondor job {jid} was killed by signal {signal}"
    else:
        exit_code = code
        message = f"HTCondor job {jid} completed with exit code {code}"
    if exit_code == 0:
        return JobState(jid, JobPhase.SUCCEEDED, "Completed", message, 0, started, finished)
    return JobState(jid, JobPhase.FAILED, "Error", message, exit_code, started, finished)


def _held(jid: str, ad: Mapping[str, Any], now: float, fail_after: float | None) -> JobState:
    code = _int(ad.get("HoldReasonCode"))
    sub = _int(ad.get("HoldReasonSubCode"))
    text = ad.get("HoldReason") or "no reason given"
    if code == _SPOOLING_INPUT:
        return JobState(jid, JobPhase.PENDING, "SpoolingInput", f"HTCondor job {jid}: {text}")
    message = f"HTCondor job {jid} is held: {text} (HoldReasonCode {code}, subcode {sub})"
    if code in _TIME_LIMIT_CODES or (code == _POLICY and sub == DEADLINE_HOLD_SUBCODE):
        return JobState(
            jid,
            JobPhase.FAILED,
            "DeadlineExceeded",
            message,
            started_at=_time(ad.get("JobCurrentStartDate")),
            finished_at=_time(ad.get("EnteredCurrentStatus")),
        )
    since = ad.get("EnteredCurrentStatus")
    if fail_after is not None and isinstance(since, int) and now - since >= fail_after:
        return JobState(
            jid,
            JobPhase.FAILED,
            "Held",
            f"{message}; held for more than {fail_after:g} s",
            finished_at=_time(now),
        )
    return JobState(jid, JobPhase.PENDING, "Held", message)


def _active(jid: str, status: Any, ad: Mapping[str, Any]) -> JobState | None:
    """Idle, running, transferring or suspended jobs; None for the others."""
    started = _time(ad.get("JobCurrentStartDate"))
    if status == _IDLE:
        starts = _int(ad.get("NumJobStarts")) or 0
        if starts:
            again = f"HTCondor job {jid} is idle again after {starts} start(s) (evicted)"
            return JobState(jid, JobPhase.PENDING, "Requeued", again)
        return JobState(jid, JobPhase.PENDING, "Idle", f"HTCondor job {jid} is idle (queued)")
    reasons: dict[int, tuple[str | None, str | None]] = {
        _RUNNING: (None, None),
        _TRANSFERRING: ("TransferringOutput", f"HTCondor job {jid} is transferring its output"),
        _SUSPENDED: ("Suspended", f"HTCondor job {jid} is suspended"),
    }
    if status in reasons:
        reason, text = reasons[status]
        return JobState(jid, JobPhase.RUNNING, reason, text, started_at=started)
    return None


def to_job_state(
    ad: Mapping[str, Any],
    *,
    now: float,
    fail_held_after: float | None = None,
) -> JobState:
    """The backend-neutral state of one job ad (plain values, see :func:`ad_to_dict`)."""
    jid = job_id(ad) or "?"
    status = ad.get("JobStatus")
    state = _active(jid, status, ad)
    if state is not None:
        return state
    if status == _COMPLETED:
        return _completed(jid, ad)
    if status == _REMOVED:
        # measured: the 23.9 schedd records no RemoveReason for a removal by the bindings
        why = ad.get("RemoveReason")
        return JobState(
            jid,
            JobPhase.FAILED,
            "Removed",
            f"HTCondor job {jid} was removed" + (f": {why}" if why else ""),
            started_at=_time(ad.get("JobCurrentStartDate")),
            finished_at=_time(ad.get("EnteredCurrentStatus")),
        )
    if status == _HELD:
        return _held(jid, ad, now, fail_held_after)
    return JobState(
        jid,
        JobPhase.PENDING,
        "Unknown",
        f"HTCondor job {jid} has JobStatus {status!r}, which flashlink does not know; "
        "treating it as not finished",
    )
