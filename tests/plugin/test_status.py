"""The status rules, on plain inputs: every (job phase x record) combination gives a status that
reads back as interLink's ``PodStatus``, reports every container, and never leaves an ended job's
pod without a final phase."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from flashlink.backends import JobPhase, JobState
from flashlink.jobscript import parse_state
from flashlink.kube import ContainerStatus, PodStatus
from flashlink.plugin.status import (
    PodInfo,
    phase_of,
    pod_status,
    rejected_status,
    status_json,
    waiting_status,
)

INFO = PodInfo(
    uid="u-1",
    name="p",
    namespace="ns",
    init=[("init", "img:1")],
    main=[("a", "img:2"), ("b", "img:3")],
    jid="42",
)
T0 = "2026-11-22T10:00:00Z"
T1 = "2026-11-22T10:05:00Z"


def _rec(name: str, state: str, **fields: object) -> ContainerStatus:
    return parse_state(json.dumps({"name": name, "state": state, **fields}))


RECORDS = {
    "none": {},
    "init-done-a-running": {
        "init": _rec(
            "init", "terminated", exitCode=0, reason="Completed", startedAt=T0, finishedAt=T0
        ),
        "a": _rec("a", "running", startedAt=T0),
    },
    "all-done": {
        "init": _rec("init", "terminated", exitCode=0, reason="Completed", finishedAt=T0),
        "a": _rec("a", "terminated", exitCode=0, reason="Completed", finishedAt=T1),
        "b": _rec("b", "terminated", exitCode=2, reason="Error", finishedAt=T1),
    },
}
FINISHED = datetime(2026, 11, 22, 10, 6, tzinfo=UTC)
JOBS = {
    "pending": JobState("42", JobPhase.PENDING, reason="Held", message="held by the admin"),
    "running": JobState("42", JobPhase.RUNNING),
    "succeeded": JobState("42", JobPhase.SUCCEEDED, exit_code=0, finished_at=FINISHED),
    "failed": JobState(
        "42", JobPhase.FAILED, reason="TIMEOUT", exit_code=137, finished_at=FINISHED
    ),
    "lost": JobState("42", JobPhase.UNKNOWN, reason="Lost", message="gone"),
}


@pytest.mark.parametrize("records", list(RECORDS))
@pytest.mark.parametrize("job", list(JOBS))
def test_every_combination_is_a_valid_complete_status(job: str, records: str) -> None:
    status = pod_status(INFO, JOBS[job], RECORDS[records])
    model = PodStatus.model_validate(json.loads(status_json(status)))
    assert (model.name, model.uid, model.namespace, model.jid) == ("p", "u-1", "ns", "42")
    assert [c.name for c in model.init_containers] == ["init"]
    assert [c.name for c in model.containers] == ["a", "b"]
    images = [c.image for c in model.init_containers + model.containers]
    assert images == ["img:1", "img:2", "img:3"]
    for c in model.init_containers + model.containers:
        states = [c.state.waiting, c.state.running, c.state.terminated]
        assert sum(s is not None for s in states) == 1, c
    phase = phase_of(status)
    if job == "pending":
        assert phase == "Pending"
        assert all(c.state.waiting and c.state.waiting.reason == "Held" for c in model.containers)
    elif job in ("succeeded", "failed", "lost"):
        assert phase in ("Succeeded", "Failed")  # an ended job always ends its pod
    if job == "succeeded" and records != "all-done":
        assert phase == "Succeeded"
    if job == "failed" and records == "none":
        terminated = model.containers[0].state.terminated
        assert terminated is not None
        assert (terminated.exit_code, terminated.reason) == (137, "TIMEOUT")
        assert terminated.finished_at == FINISHED
    if records == "all-done" and job != "pending":
        assert phase == "Failed"  # b exited 2
        b = model.containers[1].state.terminated
        assert b is not None
        assert b.exit_code == 2


def test_a_running_job_reports_each_container_as_recorded() -> None:
    status = pod_status(INFO, JOBS["running"], RECORDS["init-done-a-running"])
    assert phase_of(status) == "Running"
    a, b = status["containers"]
    assert a["state"] == {"running": {"startedAt": T0}}
    assert (a["ready"], a["started"]) == (True, True)
    assert b["state"] == {"waiting": {"reason": "ContainerCreating"}}
    lost = pod_status(INFO, JOBS["lost"], RECORDS["init-done-a-running"])
    a = lost["containers"][0]["state"]["terminated"]
    assert (a["reason"], a["message"], a["startedAt"]) == ("Lost", "gone", T0)


def test_waiting_and_rejected_statuses() -> None:
    waiting = waiting_status(INFO, "Submitted", "to site x")
    assert phase_of(waiting) == "Pending"
    assert {c["state"]["waiting"]["reason"] for c in waiting["containers"]} == {"Submitted"}
    rejected = rejected_status(INFO, "SubmitFailed", "quota exceeded")
    assert phase_of(rejected) == "Failed"
    for c in rejected["initContainers"] + rejected["containers"]:
        assert c["state"]["terminated"]["exitCode"] == 1
        assert c["state"]["terminated"]["message"] == "quota exceeded"
    PodStatus.model_validate(json.loads(status_json(rejected)))


def test_a_pod_past_its_deadline_never_reads_succeeded() -> None:
    # the records of containers that exited 0 after the scheduler's limit (an HTCondor deadline
    # hold, Slurm TIMEOUT) beside the scheduler's verdict
    done = {
        name: _rec(name, "terminated", exitCode=0, reason="Completed", finishedAt=T1)
        for name in ("init", "a", "b")
    }
    job = JobState(
        "42", JobPhase.FAILED, reason="DeadlineExceeded", message="held: ran past", exit_code=None
    )
    status = pod_status(INFO, job, done)
    assert phase_of(status) == "Failed"
    assert status["initContainers"][0]["state"]["terminated"]["reason"] == "Completed"
    for c in status["containers"]:
        term = c["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (1, "DeadlineExceeded")
        assert term["message"] == "held: ran past; the container itself exited 0 after that"
        assert term["finishedAt"] == T1
    # a pod that already reads Failed keeps every record as it is
    failed = {**done, "b": _rec("b", "terminated", exitCode=2, reason="Error", finishedAt=T1)}
    status = pod_status(INFO, job, failed)
    a, b = (c["state"]["terminated"] for c in status["containers"])
    assert (a["exitCode"], a["reason"], b["exitCode"]) == (0, "Completed", 2)
    # any other failure of the job leaves successful records alone
    other = JobState("42", JobPhase.FAILED, reason="Cancelled")
    assert phase_of(pod_status(INFO, other, done)) == "Succeeded"
