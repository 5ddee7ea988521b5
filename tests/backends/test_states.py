"""Scheduler states -> JobState: the pure mappings of the Slurm and HTCondor backends.

The inputs are what the real tools printed on this machine (Slurm 22.05.8, HTCondor 23.9.6),
cut down to the fields the mappings read, plus the newer shapes the parsers also accept.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from flashlink.backends import BackendError, BackendUnavailableError, JobPhase
from flashlink.backends._htcondor_states import (
    ad_to_dict,
    deadline_held,
    job_id,
    past_deadline,
)
from flashlink.backends._htcondor_states import to_job_state as condor_state
from flashlink.backends._slurm_states import (
    SlurmRecord,
    parse_sacct,
    parse_squeue_json,
    to_job_state,
)

# --- Slurm: parsing ------------------------------------------------------------------------


def _squeue(*jobs: dict[str, Any]) -> str:
    return json.dumps({"meta": {}, "errors": [], "jobs": list(jobs)})


def test_squeue_json_of_22_05_decodes_wait_statuses() -> None:
    # measured: `exit 7` -> 1792, `kill -9 $$` -> 9 (raw wait statuses)
    text = _squeue(
        {
            "job_id": 4,
            "job_state": "FAILED",
            "state_reason": "NonZeroExitCode",
            "exit_code": 1792,
            "start_time": 1795315002,
            "end_time": 1795315002,
            "current_working_directory": "/srv/w",
        },
        {
            "job_id": 5,
            "job_state": "FAILED",
            "state_reason": "JobLaunchFailure",
            "exit_code": 9,
            "start_time": 1795315005,
            "end_time": 1795315005,
        },
        {
            "job_id": 2,
            "job_state": "PENDING",
            "state_reason": "Resources",
            "exit_code": 0,
            "start_time": 0,
            "end_time": 0,
        },
    )
    records = parse_squeue_json(text)
    assert set(records) == {"4", "5", "2"}
    assert (records["4"].exit_code, records["4"].signal) == (7, None)
    assert (records["5"].exit_code, records["5"].signal) == (None, 9)
    assert records["4"].work_dir == "/srv/w"
    assert records["4"].start == datetime.fromtimestamp(1795315002, tz=UTC)
    assert records["2"].start is None
    assert records["2"].reason == "Resources"


def test_squeue_json_of_newer_releases_is_read_too() -> None:
    text = _squeue(
        {
            "job_id": 9,
            "job_state": ["RUNNING", "COMPLETING"],
            "exit_code": {
                "status": ["EXITED"],
                "return_code": {"set": True, "number": 3},
                "signal": {"id": {"set": False, "number": 0}},
            },
            "start_time": {"set": True, "infinite": False, "number": 1795315000},
        },
    )
    record = parse_squeue_json(text)["9"]
    assert record.states == {"RUNNING", "COMPLETING"}
    assert record.exit_code == 3
    assert record.signal is None
    assert record.start is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [("not json", "not JSON"), ('{"meta": {}}', "no 'jobs' list"), ("[]", "no 'jobs' list")],
)
def test_squeue_garbage_is_a_backend_error(text: str, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        parse_squeue_json(text)


def test_squeue_errors_mean_slurm_did_not_answer() -> None:
    # measured with slurmctld unreachable: exit 0, no jobs, and this errors list
    text = json.dumps(
        {
            "meta": {},
            "errors": [
                {
                    "description": "Failed while looking for jobs",
                    "error_number": -1,
                    "error": "Unspecified error",
                    "source": "slurm_load_jobs",
                }
            ],
            "jobs": [],
        }
    )
    with pytest.raises(BackendUnavailableError, match="slurm_load_jobs: Failed while looking"):
        parse_squeue_json(text)


def test_sacct_parsable_lines_as_measured() -> None:
    text = (
        "1|COMPLETED|0:0|None|1795314976|1795314996|/srv/a\n"
        "3|CANCELLED by 0|0:0|BeginTime|None|1795314981|/srv/b\n"
        "4|FAILED|7:0|None|1795315002|1795315002|/srv/c\n"
        "5|FAILED|0:9|None|1795315005|1795315005|/srv/d|with|pipes\n"
        "6|TIMEOUT|0:0|None|1795315008|1795315085|/srv/e\n"
        "\n"
    )
    records = parse_sacct(text)
    assert records["3"].states == {"CANCELLED"}
    assert records["3"].start is None
    assert records["3"].reason == "BeginTime"
    assert records["4"].exit_code == 7
    assert records["5"].signal == 9
    assert records["5"].work_dir == "/srv/d|with|pipes"
    assert to_job_state(records["6"]).reason == "DeadlineExceeded"


def test_sacct_line_with_missing_fields_is_an_error() -> None:
    with pytest.raises(BackendError, match="expected 7"):
        parse_sacct("12|COMPLETED|0:0\n")


# --- Slurm: mapping ------------------------------------------------------------------------


def _record(*states: str, **kw: Any) -> SlurmRecord:
    return SlurmRecord(job_id="12", states=frozenset(states), **kw)


@pytest.mark.parametrize(
    ("states", "kw", "phase", "reason", "exit_code"),
    [
        (("PENDING",), {}, JobPhase.PENDING, "Queued", None),
        (("PENDING",), {"reason": "Priority"}, JobPhase.PENDING, "Priority", None),
        (("PENDING",), {"reason": "JobHeldUser"}, JobPhase.PENDING, "Held", None),
        (("PENDING",), {"reason": "JobHeldAdmin"}, JobPhase.PENDING, "Held", None),
        (
            ("PENDING",),
            {"reason": "ReqNodeNotAvail, UnavailableNodes:n1"},
            JobPhase.PENDING,
            "ReqNodeNotAvail",
            None,
        ),
        (("CONFIGURING",), {}, JobPhase.PENDING, "Configuring", None),
        (("RUNNING", "CONFIGURING"), {}, JobPhase.PENDING, "Configuring", None),
        (("POWER_UP_NODE",), {}, JobPhase.PENDING, "PowerUpNode", None),
        (("REQUEUED",), {}, JobPhase.PENDING, "Requeued", None),
        (("REQUEUE_HOLD",), {}, JobPhase.PENDING, "Held", None),
        (("SPECIAL_EXIT",), {}, JobPhase.PENDING, "Held", None),
        (("RUNNING",), {}, JobPhase.RUNNING, None, None),
        (("SUSPENDED",), {}, JobPhase.RUNNING, "Suspended", None),
        (("STOPPED",), {}, JobPhase.RUNNING, "Stopped", None),
        # the interLink Slurm plugin reported these failed: the script has ended, the epilog
        # (or stage-out) still runs, and the end state comes next
        (("COMPLETING",), {"exit_code": 0}, JobPhase.RUNNING, "Completing", None),
        (("COMPLETED", "COMPLETING"), {"exit_code": 3}, JobPhase.RUNNING, "Completing", None),
        (("STAGE_OUT",), {}, JobPhase.RUNNING, "StageOut", None),
        (("COMPLETED",), {"exit_code": 0}, JobPhase.SUCCEEDED, "Completed", 0),
        (("COMPLETED",), {}, JobPhase.SUCCEEDED, "Completed", 0),
        (("FAILED",), {"exit_code": 7}, JobPhase.FAILED, "Error", 7),
        (("FAILED",), {"signal": 9}, JobPhase.FAILED, "Error", 137),
        (("CANCELLED",), {"signal": 15}, JobPhase.FAILED, "Cancelled", 143),
        (("CANCELLED",), {"exit_code": 0}, JobPhase.FAILED, "Cancelled", 0),
        (("TIMEOUT",), {"exit_code": 0}, JobPhase.FAILED, "DeadlineExceeded", 0),
        (("DEADLINE",), {}, JobPhase.FAILED, "DeadlineExceeded", None),
        (("OUT_OF_MEMORY",), {"exit_code": 0, "signal": 9}, JobPhase.FAILED, "OOMKilled", 137),
        (("NODE_FAIL",), {}, JobPhase.FAILED, "NodeFail", None),
        (("PREEMPTED",), {}, JobPhase.FAILED, "Preempted", None),
        (("BOOT_FAIL",), {}, JobPhase.FAILED, "BootFail", None),
        (("REVOKED",), {}, JobPhase.FAILED, "Revoked", None),
    ],
)
def test_slurm_state_mapping(
    states: tuple[str, ...],
    kw: dict[str, Any],
    phase: JobPhase,
    reason: str | None,
    exit_code: int | None,
) -> None:
    state = to_job_state(_record(*states, **kw))
    assert (state.phase, state.reason, state.exit_code) == (phase, reason, exit_code)
    assert state.backend_id == "12"
    if phase is not JobPhase.RUNNING or reason is not None:
        assert state.message
        assert "12" in state.message


def test_a_completed_state_with_a_non_zero_exit_is_failed() -> None:
    state = to_job_state(_record("COMPLETED", exit_code=2))
    assert (state.phase, state.reason, state.exit_code) == (JobPhase.FAILED, "Error", 2)


def test_pending_messages_explain_the_reason() -> None:
    assert "waiting for resources" in (
        to_job_state(_record("PENDING", reason="Resources")).message or ""
    )
    assert "limit" in (
        to_job_state(_record("PENDING", reason="QOSMaxJobsPerUserLimit")).message or ""
    )
    held = to_job_state(_record("PENDING", reason="JobHeldAdmin"))
    assert held.message == "Slurm job 12 is pending: JobHeldAdmin (held by an administrator)"


def test_times_are_kept_only_where_they_mean_something() -> None:
    t0 = datetime(2026, 11, 22, tzinfo=UTC)
    t1 = datetime(2026, 11, 22, 0, 1, tzinfo=UTC)
    running = to_job_state(_record("RUNNING", start=t0, end=t1))
    assert (running.started_at, running.finished_at) == (t0, None)
    done = to_job_state(_record("FAILED", exit_code=1, start=t0, end=t1))
    assert (done.started_at, done.finished_at) == (t0, t1)
    pending = to_job_state(_record("PENDING", start=t1))  # squeue's estimate, not a start
    assert pending.started_at is None


@pytest.mark.parametrize("states", [("WEIRD_NEW_STATE",), ()])
def test_an_unknown_slurm_state_is_not_reported_finished(states: tuple[str, ...]) -> None:
    state = to_job_state(_record(*states))
    assert state.phase is JobPhase.PENDING
    assert "does not know" in (state.message or "")


# --- HTCondor ------------------------------------------------------------------------------

NOW = 1_795_320_000


def _ad(status: int, **attrs: Any) -> dict[str, Any]:
    return {"ClusterId": 31, "ProcId": 2, "JobStatus": status, **attrs}


@pytest.mark.parametrize(
    ("ad", "phase", "reason", "exit_code"),
    [
        (_ad(1), JobPhase.PENDING, "Idle", None),
        (_ad(1, NumJobStarts=1), JobPhase.PENDING, "Requeued", None),
        (_ad(2, JobCurrentStartDate=NOW - 5), JobPhase.RUNNING, None, None),
        (_ad(6), JobPhase.RUNNING, "TransferringOutput", None),
        (_ad(7), JobPhase.RUNNING, "Suspended", None),
        (_ad(4, ExitCode=0, ExitBySignal=False), JobPhase.SUCCEEDED, "Completed", 0),
        (_ad(4, ExitCode=3, ExitBySignal=False), JobPhase.FAILED, "Error", 3),
        (_ad(4, ExitBySignal=True, ExitSignal=9), JobPhase.FAILED, "Error", 137),
        (_ad(3, RemoveReason="via condor_rm"), JobPhase.FAILED, "Removed", None),
        (
            _ad(5, HoldReason="Transfer input files failure", HoldReasonCode=13),
            JobPhase.PENDING,
            "Held",
            None,
        ),
        (
            _ad(5, HoldReason="Spooling input data files", HoldReasonCode=16),
            JobPhase.PENDING,
            "SpoolingInput",
            None,
        ),
        (
            _ad(5, HoldReason="past the deadline", HoldReasonCode=3, HoldReasonSubCode=4747),
            JobPhase.FAILED,
            "DeadlineExceeded",
            None,
        ),
        (
            _ad(5, HoldReason="held by the plugin", HoldReasonCode=1, HoldReasonSubCode=4747),
            JobPhase.FAILED,
            "DeadlineExceeded",
            None,
        ),
        (
            _ad(5, HoldReason="via condor_hold", HoldReasonCode=1, HoldReasonSubCode=0),
            JobPhase.PENDING,
            "Held",
            None,
        ),
        (
            # the shadow has decided the hold; the job ignores SIGTERM and still runs
            _ad(2, HoldReason="past the deadline", HoldReasonCode=3, HoldReasonSubCode=4747),
            JobPhase.FAILED,
            "DeadlineExceeded",
            None,
        ),
        (
            _ad(6, HoldReason="past the deadline", HoldReasonCode=3, HoldReasonSubCode=4747),
            JobPhase.FAILED,
            "DeadlineExceeded",
            None,
        ),
        (
            _ad(2, HoldReason="a user's periodic_hold", HoldReasonCode=3, HoldReasonSubCode=0),
            JobPhase.RUNNING,
            None,
            None,
        ),
        (
            _ad(5, HoldReason="a user's periodic_hold", HoldReasonCode=3, HoldReasonSubCode=0),
            JobPhase.PENDING,
            "Held",
            None,
        ),
        (
            _ad(5, HoldReason="allowed execute duration exceeded", HoldReasonCode=46),
            JobPhase.FAILED,
            "DeadlineExceeded",
            None,
        ),
        (_ad(99), JobPhase.PENDING, "Unknown", None),
    ],
)
def test_htcondor_state_mapping(
    ad: dict[str, Any], phase: JobPhase, reason: str | None, exit_code: int | None
) -> None:
    state = condor_state(ad, now=NOW)
    assert (state.phase, state.reason, state.exit_code) == (phase, reason, exit_code)
    assert state.backend_id == "31.2"


def test_hold_reason_is_surfaced_with_its_codes() -> None:
    ad = _ad(
        5,
        HoldReason="Transfer input files failure: job.sh missing",
        HoldReasonCode=13,
        HoldReasonSubCode=2,
        EnteredCurrentStatus=NOW - 10,
    )
    state = condor_state(ad, now=NOW)
    assert state.message == (
        "HTCondor job 31.2 is held: Transfer input files failure: job.sh missing "
        "(HoldReasonCode 13, subcode 2)"
    )


def test_a_job_held_too_long_fails_when_configured() -> None:
    ad = _ad(5, HoldReason="x", HoldReasonCode=13, EnteredCurrentStatus=NOW - 600)
    assert condor_state(ad, now=NOW, fail_held_after=900).phase is JobPhase.PENDING
    late = condor_state(ad, now=NOW, fail_held_after=300)
    assert (late.phase, late.reason) == (JobPhase.FAILED, "Held")
    assert "more than 300 s" in (late.message or "")


def test_completed_times_come_from_the_ad() -> None:
    ad = _ad(4, ExitCode=0, ExitBySignal=False, JobCurrentStartDate=NOW - 9, CompletionDate=NOW)
    state = condor_state(ad, now=NOW)
    assert state.started_at == datetime.fromtimestamp(NOW - 9, tz=UTC)
    assert state.finished_at == datetime.fromtimestamp(NOW, tz=UTC)


def test_undefined_classad_values_become_none() -> None:
    classad2 = pytest.importorskip("classad2")
    ad = classad2.ClassAd({"ClusterId": 4, "ProcId": 0, "JobStatus": 1})
    ad["HoldReason"] = classad2.ExprTree("undefined")
    plain = ad_to_dict(ad)
    assert plain["HoldReason"] is None
    assert plain["JobStatus"] == 1
    assert job_id(plain) == "4.0"
    assert job_id({"ClusterId": 4}) is None


# the attributes flashlink's periodic_hold reads, for a job that started executing at NOW - 10
_RUN = {
    "JobCurrentStartDate": NOW - 11,
    "JobCurrentStartExecutingDate": NOW - 10,
    "FlashlinkDeadline": 9,
}


@pytest.mark.parametrize(
    ("ad", "now", "overdue"),
    [
        (_ad(2, **_RUN), NOW, True),
        (_ad(2, **{**_RUN, "FlashlinkDeadline": 10}), NOW, False),  # not past it: equal
        (_ad(2, **{**_RUN, "FlashlinkDeadline": 11}), NOW, False),
        # the schedd's clock wins over the plugin's (a remote schedd's clock may differ)
        (_ad(2, **_RUN, ServerTime=NOW - 5), NOW, False),
        (_ad(2, **{**_RUN, "FlashlinkDeadline": 60}, ServerTime=NOW + 100), NOW, True),
        (_ad(2, **{k: v for k, v in _RUN.items() if k != "FlashlinkDeadline"}), NOW, False),
        (_ad(2, FlashlinkDeadline=9, JobCurrentStartDate=NOW - 11), NOW, False),  # not started
        # released and started again: the executing date is the previous run's for a moment
        (_ad(2, **{**_RUN, "JobCurrentStartDate": NOW - 2}), NOW, False),
        (_ad(2, **{k: v for k, v in _RUN.items() if k != "JobCurrentStartDate"}), NOW, True),
        # only running jobs, as the periodic_hold
        *((_ad(status, **_RUN), NOW, False) for status in (1, 3, 4, 5, 6, 7)),
        # a deadline hold under way (the shadow's): not held a second time
        (_ad(2, **_RUN, HoldReasonCode=3, HoldReasonSubCode=4747), NOW, False),
        (_ad(2, **_RUN, HoldReasonCode=3, HoldReasonSubCode=0), NOW, True),
    ],
)
def test_a_running_job_is_past_its_deadline_as_the_periodic_hold_says(
    ad: dict[str, Any], now: int, overdue: bool
) -> None:
    assert past_deadline(ad, now) is overdue


def test_a_job_the_plugin_held_reads_deadline_exceeded_as_the_schedd_then_records_it() -> None:
    ad = _ad(2, **_RUN, ServerTime=NOW + 1)
    held = deadline_held(ad, NOW)
    assert ad["JobStatus"] == 2  # a copy
    assert (held["JobStatus"], held["HoldReasonCode"], held["HoldReasonSubCode"]) == (5, 1, 4747)
    assert not past_deadline(held, NOW)
    state = condor_state(held, now=NOW)
    assert (state.phase, state.reason) == (JobPhase.FAILED, "DeadlineExceeded")
    assert state.message == (
        "HTCondor job 31.2 is held: flashlink: the Pod ran past its activeDeadlineSeconds "
        "(plus the site margin) (HoldReasonCode 1, subcode 4747)"
    )
    assert state.started_at == datetime.fromtimestamp(NOW - 11, tz=UTC)
    assert state.finished_at == datetime.fromtimestamp(NOW + 1, tz=UTC)
    assert deadline_held(_ad(2, **_RUN), NOW)["EnteredCurrentStatus"] == NOW


def test_a_hold_under_way_says_the_job_is_still_stopping() -> None:
    ad = _ad(2, HoldReason="ran past", HoldReasonCode=3, HoldReasonSubCode=4747, ServerTime=NOW)
    state = condor_state(ad, now=NOW + 50)
    assert state.message == (
        "HTCondor job 31.2 is being held, its processes stopping: ran past "
        "(HoldReasonCode 3, subcode 4747)"
    )
    assert state.finished_at == datetime.fromtimestamp(NOW, tz=UTC)
    assert condor_state({**ad, "ServerTime": None}, now=NOW + 50).finished_at == (
        datetime.fromtimestamp(NOW + 50, tz=UTC)
    )
