"""The local backend runs real job scripts (real Apptainer/Podman containers) on this machine.

Contract checks: live states while a job runs, exit codes, a bounded number of running jobs with
the rest queued, idempotent submission, cancellation of queued and running jobs, and a restart
of the backend that adopts running jobs, keeps queued ones, and reports a job that died unseen
as Lost. A few scheduler-level tests run plain bash scripts: a job script is just a script to
this backend, and killing one with SIGKILL must not leave a container behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flashlink.backends import (
    BatchJob,
    InvalidSiteConfigError,
    JobNotFoundError,
    JobPhase,
    JobState,
    SubmitError,
)
from flashlink.backends.local import LocalBackend, LocalConfig
from flashlink.backends.registry import backend_classes, create_backend, kinds
from flashlink.jobscript import RenderConfig, Resources, parse_config, parse_state, render
from flashlink.kube import parse_pod
from servicekit import Service

IMAGE = "busybox:1.36"


def _runtime_params() -> list[Any]:
    return [pytest.param(n, marks=getattr(pytest.mark, n), id=n) for n in ("apptainer", "podman")]


@pytest.fixture(params=_runtime_params())
def render_config(request: pytest.FixtureRequest) -> RenderConfig:
    """Job scripts that run the test image with the runtime of the parameter."""
    svc = request.getfixturevalue(request.param)
    assert isinstance(svc, Service)
    if svc.name == "apptainer":
        return parse_config(
            {
                "runtime": "apptainer",
                "apptainer": {"executable": svc["APPTAINER"]},
                "images": {"overrides": {IMAGE: svc["TEST_IMAGE_SIF"]}},
                "timestamp_logs": True,
            }
        )
    return parse_config(
        {
            "runtime": "podman",
            "podman": {"executable": svc["PODMAN"]},
            "images": {"overrides": {IMAGE: svc["TEST_IMAGE_PODMAN"]}},
            "timestamp_logs": True,
        }
    )


def _pod(
    uid: str,
    containers: dict[str, str],
    init: dict[str, str] | None = None,
    cpu: str | None = None,
) -> dict[str, Any]:
    def spec(name: str, script: str) -> dict[str, Any]:
        c: dict[str, Any] = {"name": name, "image": IMAGE, "command": ["sh", "-c", script]}
        if cpu is not None:
            c["resources"] = {"requests": {"cpu": cpu}}
        return c

    return {
        "metadata": {"name": f"pod-{uid[:8]}", "namespace": "default", "uid": uid},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "initContainers": [spec(n, s) for n, s in (init or {}).items()],
            "containers": [spec(n, s) for n, s in containers.items()],
        },
    }


def _job(tmp: Path, config: RenderConfig, pod: dict[str, Any]) -> BatchJob:
    script = render(parse_pod(pod), config)
    uid = pod["metadata"]["uid"]
    return BatchJob(
        key=uid,
        name=pod["metadata"]["name"],
        script=script.text,
        job_dir=tmp / "jobs" / uid,
        resources=script.resources,
    )


def _raw_job(tmp: Path, key: str, body: str) -> BatchJob:
    return BatchJob(key=key, name=key, script=f"#!/bin/bash\n{body}\n", job_dir=tmp / "jobs" / key)


def _uid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-000000000000"


Factory = Callable[..., LocalBackend]


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Factory]:
    """Make backends on one state directory; at the end no job of theirs is left running."""
    made: list[LocalBackend] = []

    def make(**options: Any) -> LocalBackend:
        options.setdefault("state_dir", tmp_path / "state")
        options.setdefault("kill_after_seconds", 5)
        backend = LocalBackend("test", LocalConfig(**options))
        made.append(backend)
        return backend

    yield make
    if made:
        last = made[-1]
        for job_id, record in last.records().items():
            if record["status"] in ("queued", "running"):
                last.cancel(job_id)
        _wait(
            last,
            list(last.records()),
            lambda s: s.phase not in (JobPhase.PENDING, JobPhase.RUNNING),
            30,
        )
    for backend in made:
        backend.close()


def _wait(
    backend: LocalBackend,
    ids: list[str],
    done: Callable[[JobState], bool],
    timeout: float = 60,
) -> dict[str, JobState]:
    deadline = time.monotonic() + timeout
    while True:
        states = backend.poll(ids)
        if all(i in states and done(states[i]) for i in ids):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs did not get there in {timeout} s: {states}")
        time.sleep(0.1)


def _ended(state: JobState) -> bool:
    return state.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.UNKNOWN)


def _running(pid: int) -> bool:
    """The process exists and has not exited (a zombie has: only its parent has to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _record(job_dir: Path, name: str) -> dict[str, Any]:
    status = parse_state((job_dir / "containers" / name / "state.json").read_text())
    return status.state.model_dump(exclude_none=True)


def test_a_job_runs_with_live_states_and_logs(
    backends: Factory, render_config: RenderConfig, tmp_path: Path
) -> None:
    pod = _pod(
        _uid(1),
        {"main": "echo first; sleep 2; echo second"},
        init={"prepare": "echo preparing"},
    )
    job = _job(tmp_path, render_config, pod)
    backend = backends()
    [job_id] = backend.submit([job])
    _wait(backend, [job_id], lambda s: s.phase is JobPhase.RUNNING)
    # while the job runs, its directory already says what happened so far
    deadline = time.monotonic() + 30
    while "running" not in _record(job.job_dir, "main"):
        assert time.monotonic() < deadline, _record(job.job_dir, "main")
        time.sleep(0.1)
    assert _record(job.job_dir, "prepare")["terminated"]["exit_code"] == 0
    while b"first" not in (job.job_dir / "containers/main/log").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert b"second" not in (job.job_dir / "containers/main/log").read_bytes()
    state = _wait(backend, [job_id], _ended)[job_id]
    assert (state.phase, state.exit_code) == (JobPhase.SUCCEEDED, 0)
    assert state.started_at is not None
    assert state.finished_at is not None
    assert state.finished_at >= state.started_at
    assert _record(job.job_dir, "main")["terminated"]["reason"] == "Completed"
    assert backend.fetch(job_id) == job.job_dir


def test_a_failing_container_fails_the_job_with_its_exit_code(
    backends: Factory, render_config: RenderConfig, tmp_path: Path
) -> None:
    backend = backends()
    [job_id] = backend.submit([_job(tmp_path, render_config, _pod(_uid(2), {"main": "exit 3"}))])
    state = _wait(backend, [job_id], _ended)[job_id]
    assert (state.phase, state.exit_code, state.reason) == (JobPhase.FAILED, 3, "Error")


@pytest.mark.podman
def test_jobs_beyond_the_cpus_wait_in_order(
    backends: Factory, podman: Service, tmp_path: Path
) -> None:
    config = parse_config(
        {"runtime": "podman", "images": {"overrides": {IMAGE: podman["TEST_IMAGE_PODMAN"]}}}
    )
    backend = backends(cpus=2)
    jobs = [
        _job(tmp_path, config, _pod(_uid(10 + i), {"main": "sleep 1"}, cpu="1500m"))
        for i in range(3)
    ]
    ids = backend.submit(jobs)
    starts: dict[str, float] = {}
    deadline = time.monotonic() + 90
    while len(starts) < 3 or not all(_ended(s) for s in backend.poll(ids).values()):
        states = backend.poll(ids)
        running = [i for i, s in states.items() if s.phase is JobPhase.RUNNING]
        assert len(running) <= 1, states  # 1.5 + 1.5 CPUs do not fit in 2
        for i in running:
            starts.setdefault(i, time.monotonic())
        queued = [s for s in states.values() if s.phase is JobPhase.PENDING]
        for s in queued:
            assert s.reason == "Queued"
            assert s.message is not None
            assert "queue of local site 'test'" in s.message
        assert time.monotonic() < deadline, states
        time.sleep(0.05)
    assert sorted(starts, key=starts.__getitem__) == ids  # submission order
    assert all(s.phase is JobPhase.SUCCEEDED for s in backend.poll(ids).values())


def test_max_running_bounds_jobs_that_request_nothing(backends: Factory, tmp_path: Path) -> None:
    backend = backends(max_running=1)
    ids = backend.submit([_raw_job(tmp_path, f"k{i}", "sleep 0.5") for i in range(2)])
    states = backend.poll(ids)
    assert [s.phase for s in states.values()].count(JobPhase.PENDING) >= 1
    _wait(backend, ids, _ended)
    records = backend.records()
    first, second = (records[i] for i in ids)
    assert second["started_at"] >= first["finished_at"]


def test_submit_is_idempotent_on_the_key(backends: Factory, tmp_path: Path) -> None:
    backend = backends()
    job = _raw_job(tmp_path, "same", "sleep 0.2")
    [first] = backend.submit([job])
    [again, other] = backend.submit([job, _raw_job(tmp_path, "other", "true")])
    assert again == first
    assert other != first
    assert backend.find("same") == first
    assert len(backend.records()) == 2


def test_requests_beyond_the_site_are_refused_with_the_numbers(
    backends: Factory, tmp_path: Path
) -> None:
    backend = backends(cpus=2, memory="1Gi")
    big = BatchJob(
        key="big",
        name="big",
        script="true",
        job_dir=tmp_path / "big",
        resources=Resources(cpu=Decimal(4)),
    )
    with pytest.raises(SubmitError, match=r"requests 4 CPUs but site 'test' lends 2"):
        backend.submit([_raw_job(tmp_path, "fine", "true"), big])
    assert backend.records() == {}  # all or nothing
    fat = BatchJob(
        key="fat",
        name="fat",
        script="true",
        job_dir=tmp_path / "fat",
        resources=Resources(memory_bytes=2 * 1024**3),
    )
    with pytest.raises(SubmitError, match="memory"):
        backend.submit([fat])
    gpu = BatchJob(
        key="gpu",
        name="gpu",
        script="true",
        job_dir=tmp_path / "gpu",
        resources=Resources(gpus={"nvidia.com/gpu": 1}),
    )
    with pytest.raises(SubmitError, match=r"1 nvidia.com/gpu but site 'test' lends 0"):
        backend.submit([gpu])


def test_cancel_stops_a_running_pod_and_its_containers(
    backends: Factory, render_config: RenderConfig, tmp_path: Path
) -> None:
    backend = backends()
    job = _job(tmp_path, render_config, _pod(_uid(3), {"main": "echo up; sleep 300"}))
    [job_id] = backend.submit([job])
    deadline = time.monotonic() + 60
    state_file = job.job_dir / "containers/main/state.json"
    while not state_file.exists() or "running" not in _record(job.job_dir, "main"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    t0 = time.monotonic()
    backend.cancel(job_id)
    backend.cancel(job_id)  # a second cancel is harmless
    state = _wait(backend, [job_id], _ended, timeout=30)[job_id]
    assert time.monotonic() - t0 < 15  # grace 2 s, not the 300 s sleep
    assert (state.phase, state.reason) == (JobPhase.FAILED, "Cancelled")
    main = _record(job.job_dir, "main")["terminated"]
    assert main["reason"] == "Terminated"
    assert main["exit_code"] != 0


def test_cancel_of_a_queued_job_never_starts_it(backends: Factory, tmp_path: Path) -> None:
    backend = backends(max_running=1)
    ids = backend.submit(
        [_raw_job(tmp_path, "busy", "sleep 30"), _raw_job(tmp_path, "later", "touch ran")]
    )
    backend.cancel(ids[1])
    state = backend.poll(ids)[ids[1]]
    assert (state.phase, state.reason) == (JobPhase.FAILED, "Cancelled")
    backend.cancel(ids[0])
    _wait(backend, ids, _ended)
    assert backend.records()[ids[1]]["pid"] is None
    assert not (tmp_path / "jobs/later/ran").exists()


def test_unknown_ids_are_omitted_and_cannot_be_cancelled(backends: Factory) -> None:
    backend = backends()
    assert backend.poll(["nope"]) == {}
    with pytest.raises(JobNotFoundError, match="nope"):
        backend.cancel("nope")
    with pytest.raises(JobNotFoundError):
        backend.fetch("nope")


def test_a_restarted_backend_adopts_running_and_queued_jobs(
    backends: Factory, render_config: RenderConfig, tmp_path: Path
) -> None:
    first = backends(max_running=1)
    jobs = [
        _job(tmp_path, render_config, _pod(_uid(20), {"main": "sleep 3; echo done"})),
        _job(tmp_path, render_config, _pod(_uid(21), {"main": "echo second"})),
    ]
    ids = first.submit(jobs)
    _wait(first, ids[:1], lambda s: s.phase is JobPhase.RUNNING)
    pid = first.records()[ids[0]]["pid"]
    first.close()  # the plugin stops: the job keeps running
    assert os.path.exists(f"/proc/{pid}")

    second = backends(max_running=1)
    states = second.poll(ids)
    assert states[ids[0]].phase is JobPhase.RUNNING
    assert states[ids[1]].phase is JobPhase.PENDING
    assert second.submit(jobs[:1]) == ids[:1]  # still known: not submitted twice
    states = _wait(second, ids, _ended)
    assert [(s.phase, s.exit_code) for s in states.values()] == [(JobPhase.SUCCEEDED, 0)] * 2
    assert b"done" in (jobs[0].job_dir / "containers/main/log").read_bytes()
    assert second.records()[ids[0]]["pid"] == pid  # the same process, adopted, not re-run


_SUBMIT_AND_LEAVE = """
import sys, time
from pathlib import Path
from flashlink.backends import BatchJob, JobPhase
from flashlink.backends.local import LocalBackend, LocalConfig
state_dir, job_dir = Path(sys.argv[1]), Path(sys.argv[2])
backend = LocalBackend("test", LocalConfig(state_dir=state_dir))
[job_id] = backend.submit([BatchJob("doomed", "doomed", "sleep 60\\n", job_dir)])
while backend.poll([job_id])[job_id].phase is not JobPhase.RUNNING:
    time.sleep(0.05)
backend.close()
print(job_id)
"""


def test_a_job_that_died_unseen_is_reported_lost(backends: Factory, tmp_path: Path) -> None:
    # The job is started by another process (a plugin that has since exited), so nobody here
    # can wait for it: only the records and /proc tell what happened.
    out = subprocess.run(
        [sys.executable, "-c", _SUBMIT_AND_LEAVE, str(tmp_path / "state"), str(tmp_path / "job")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    job_id = out.stdout.strip()
    second = backends()
    assert second.poll([job_id])[job_id].phase is JobPhase.RUNNING  # adopted
    pid = second.records()[job_id]["pid"]
    second.close()
    os.killpg(pid, signal.SIGKILL)  # e.g. the OOM killer, while no plugin was watching
    deadline = time.monotonic() + 10
    while _running(pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    third = backends()
    state = third.poll([job_id])[job_id]
    assert (state.phase, state.reason) == (JobPhase.FAILED, "Lost")
    assert state.message is not None
    assert "without its script recording the end" in state.message


def test_a_job_script_killed_under_our_eyes_says_so(backends: Factory, tmp_path: Path) -> None:
    backend = backends()
    [job_id] = backend.submit([_raw_job(tmp_path, "victim", "sleep 60")])
    _wait(backend, [job_id], lambda s: s.phase is JobPhase.RUNNING)
    os.kill(backend.records()[job_id]["pid"], signal.SIGKILL)
    state = _wait(backend, [job_id], _ended)[job_id]
    assert (state.phase, state.exit_code, state.reason) == (JobPhase.FAILED, 137, "Killed")
    assert state.message is not None
    assert "SIGKILL" in state.message
    # the script's `sleep 60` child did not outlive it
    pgid = backend.records()[job_id]["pid"]
    deadline = time.monotonic() + 10
    while _group_members(pgid):
        assert time.monotonic() < deadline, _group_members(pgid)
        time.sleep(0.05)


def test_registry_builds_a_local_site_and_names_bad_keys(tmp_path: Path) -> None:
    assert kinds() == ("htcondor", "local", "slurm")
    assert backend_classes("local") == (LocalBackend, LocalConfig)
    backend = create_backend("local", "here", {"cpus": 1}, state_dir=tmp_path / "s")
    try:
        assert isinstance(backend, LocalBackend)
        assert backend.capacity().cpu == 1
        assert (tmp_path / "s" / "jobs").is_dir()  # the state_dir given was used
    finally:
        backend.close()
    with pytest.raises(InvalidSiteConfigError, match=r"sites\.here\.backend\.memory: .*lots"):
        create_backend("local", "here", {"memory": "lots"}, state_dir=tmp_path / "s")
    with pytest.raises(InvalidSiteConfigError, match=r"valid keys of a local site: .*cpus"):
        create_backend("local", "here", {"cpu": 2}, state_dir=tmp_path / "s")
    with pytest.raises(
        InvalidSiteConfigError,
        match=r"unknown site kind 'pbs'; valid kinds: htcondor, local, slurm",
    ):
        create_backend("pbs", "here", {})
