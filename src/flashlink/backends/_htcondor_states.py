"""HTCondor job ClassAds -> :class:`~flashlink.backends.base.JobState`: pure mapping.

A job ad comes from the schedd's queue (``Schedd.query``) or, once the job has left it, from
its history (``Schedd.history``); both carry ``JobStatus`` (HTCondor manual, "Job ClassAd
Attributes": 1 Idle, 2 Running, 3 Removed, 4 Completed, 5 Held, 6 Transferring Output,
7 Suspended). Rules the landerlini plugin got wrong: a held job is reported with its
``HoldReason``, not as a silent pending job; a removed job is failed, not unknown; a completed
job is failed when its exit code is non-zero or it died by a signal.

Deadlines: a job past its ``FlashlinkDeadline`` is held, by the plugin's poll as soon as it
sees it (:func:`past_deadline`, then :func:`deadline_held` for the ad the schedd records after
that hold), or by the ``periodic_hold`` backstop in the shadow. Measured on 23.9: when the
shadow decides a hold, the schedd's ad gets HoldReasonCode/SubCode/HoldReason at once but keeps
``JobStatus`` 2 until the job's processes exit, which a job ignoring SIGTERM delays to its
end or its vacate time (10 minutes by default); such a job already reads failed
``DeadlineExceeded``, as a hold by the plugin (``JobStatus`` 5 at once) does. Otherwise the
running pod's records would decide alone, and a container exiting 0 after its deadline made
the pod read Succeeded before the hold showed.
"""

from __future__ import annotations

__all__ = [
    "PROJECTION",
    "ad_to_dict",
    "deadline_held",
    "job_id",
    "past_deadline",
    "to_job_state",
]

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flashlink.backends._htcondor_submit import DEADLINE_HOLD_REASON, DEADLINE_HOLD_SUBCODE
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
    "JobCurrentStartExecutingDate",
    "JobStartDate",
    "CompletionDate",
    "EnteredCurrentStatus",
    "NumJobStarts",
    "StageOutFinish",
    "Iwd",
    "FlashlinkKey",
    "FlashlinkSecretScript",
    "FlashlinkDeadline",
    "ServerTime",  # the schedd's clock, which its periodic_hold reads too (queue ads only)
)

_IDLE, _RUNNING, _REMOVED, _COMPLETED, _HELD, _TRANSFERRING, _SUSPENDED = range(1, 8)
#: HoldReasonCode values of a job whose walltime ran out: 47 measured here for
#: allowed_execute_duration ("The job exceeded allowed execute duration of 00:05"), 46 is
#: allowed_job_duration's; flashlink's own deadline hold is code 3 (job policy: the
#: periodic_hold backstop) or 1 (user request: the plugin's hold) with DEADLINE_HOLD_SUBCODE.
_TIME_LIMIT_CODES = frozenset({46, 47})
_USER_REQUEST, _POLICY = 1, 3
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


def _is_deadline_hold(ad: Mapping[str, Any]) -> bool:
    code = _int(ad.get("HoldReasonCode"))
    sub = _int(ad.get("HoldReasonSubCode"))
    return code in _TIME_LIMIT_CODES or (
        code in (_USER_REQUEST, _POLICY) and sub == DEADLINE_HOLD_SUBCODE
    )


def _hold_text(ad: Mapping[str, Any]) -> str:
    code = _int(ad.get("HoldReasonCode"))
    sub = _int(ad.get("HoldReasonSubCode"))
    text = ad.get("HoldReason") or "no reason given"
    return f"{text} (HoldReasonCode {code}, subcode {sub})"


def _deadline(jid: str, ad: Mapping[str, Any], message: str, finished: Any) -> JobState:
    return JobState(
        jid,
        JobPhase.FAILED,
        "DeadlineExceeded",
        message,
        started_at=_time(ad.get("JobCurrentStartDate")),
        finished_at=_time(finished),
    )


def past_deadline(ad: Mapping[str, Any], now: float) -> bool:
    """Whether the plugin must hold this job now: the test of flashlink's ``periodic_hold``
    (``JobStatus == 2 && time() - JobCurrentStartExecutingDate > FlashlinkDeadline``), on the
    schedd's clock when the ad carries it, for a job no deadline hold is under way for.

    A start older than ``JobCurrentStartDate`` belongs to an earlier run: measured, a job
    released and started again keeps its previous JobCurrentStartExecutingDate for a moment.
    """
    if ad.get("JobStatus") != _RUNNING or _is_deadline_hold(ad):
        return False
    limit = _int(ad.get("FlashlinkDeadline"))
    started = _int(ad.get("JobCurrentStartExecutingDate"))
    if limit is None or started is None:
        return False
    current = _int(ad.get("JobCurrentStartDate"))
    if current is not None and started < current:
        return False
    clock = _int(ad.get("ServerTime"))
    return (clock if clock is not None else now) - started > limit


def deadline_held(ad: Mapping[str, Any], now: float) -> dict[str, Any]:
    """``ad`` as the schedd records it once the plugin has held the job for its deadline
    (measured: JobStatus 5 at once, HoldReasonCode 1, the subcode given, and the reason
    followed by " (by user NAME)")."""
    clock = _int(ad.get("ServerTime"))
    return {
        **ad,
        "JobStatus": _HELD,
        "HoldReason": DEADLINE_HOLD_REASON,
        "HoldReasonCode": _USER_REQUEST,
        "HoldReasonSubCode": DEADLINE_HOLD_SUBCODE,
        "EnteredCurrentStatus": clock if clock is not None else int(now),
    }


def _held(jid: str, ad: Mapping[str, Any], now: float, fail_after: float | None) -> JobState:
    code = _int(ad.get("HoldReasonCode"))
    text = ad.get("HoldReason") or "no reason given"
    if code == _SPOOLING_INPUT:
        return JobState(jid, JobPhase.PENDING, "SpoolingInput", f"HTCondor job {jid}: {text}")
    message = f"HTCondor job {jid} is held: {_hold_text(ad)}"
    if _is_deadline_hold(ad):
        return _deadline(jid, ad, message, ad.get("EnteredCurrentStatus"))
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


def _active(jid: str, status: Any, ad: Mapping[str, Any], now: float) -> JobState | None:
    """Idle, running, transferring or suspended jobs; None for the others."""
    started = _time(ad.get("JobCurrentStartDate"))
    if status in (_RUNNING, _TRANSFERRING, _SUSPENDED) and _is_deadline_hold(ad):
        # the shadow is holding it (see the module docstring): the hold is decided
        message = f"HTCondor job {jid} is being held, its processes stopping: {_hold_text(ad)}"
        return _deadline(jid, ad, message, ad.get("ServerTime") or int(now))
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
    state = _active(jid, status, ad, now)
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
