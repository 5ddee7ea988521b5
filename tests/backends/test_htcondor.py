"""The HTCondor backend: pure builders and the job wrapper, then the real pool of
ci/services/htcondor.sh (HTCondor 23.x in a trixie root, the 25.x bindings on the host)."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import htcondor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flashlink.backends import (
    BackendUnavailableError,
    BatchJob,
    JobPhase,
    SubmitError,
)
from flashlink.backends._htcondor_states import PROJECTION, ad_to_dict
from flashlink.backends._htcondor_submit import (
    DEFAULT_ALLOWED_COMMANDS,
    EXECUTABLE,
    PROGRESS_FILE,
    SCRIPT,
    SUBMIT_ANNOTATION,
    CapacityConfig,
    HTCondorConfig,
    job_commands,
    parse_submit_commands,
    static_commands,
    submit_groups,
    wrapper_script,
)
from flashlink.backends.htcondor import HTCondorBackend, _extract
from flashlink.jobscript import Resources
from servicekit import Service
from servicekit._service import REPO

from ._jobs import SMALL, fake_job, read_job_dir, wait
from .conftest import condor_config

UID = "6e3c0f6a-1b2d-4c5e-8f70-9a1b2c3d4e5f"


def _job(**kw: Any) -> BatchJob:
    data: dict[str, Any] = {
        "key": UID,
        "name": "default/hello",
        "script": "#!/bin/bash\necho hi\n",
        "job_dir": Path("/srv/jobs/x"),
        **kw,
    }
    return BatchJob(**data)


# --- submit commands ---------------------------------------------------------------------------


def test_job_commands_carry_the_pods_resources_and_identity() -> None:
    job = _job(
        resources=Resources(
            cpu=Decimal("1.5"),
            memory_bytes=3 * 1024**3,
            ephemeral_storage_bytes=2 * 1024**3,
            gpus={"nvidia.com/gpu": 1},
            walltime_seconds=600,
        ),
        contains_secrets=True,
    )
    assert job_commands(job, HTCondorConfig()) == {
        "executable": f"/srv/jobs/x/{EXECUTABLE}",
        "transfer_input_files": f"/srv/jobs/x/{SCRIPT}",
        "initialdir": "/srv/jobs/x",
        "request_cpus": "2",
        "request_memory": "3072",
        "request_gpus": "1",
        "request_disk": str(2 * 1024**2),
        "MY.FlashlinkDeadline": "660",
        "periodic_hold": (
            "JobStatus == 2 && time() - JobCurrentStartExecutingDate > FlashlinkDeadline"
        ),
        "periodic_hold_reason": (
            '"flashlink: the Pod ran past its activeDeadlineSeconds (plus the site margin)"'
        ),
        "periodic_hold_subcode": "4747",
        "+JobBatchName": '"default/hello"',
        "MY.FlashlinkKey": f'"{UID}"',
        "MY.FlashlinkSecretScript": "true",
    }


def test_a_pod_without_requests_gets_the_site_defaults() -> None:
    commands = job_commands(_job(name='ns/we"ird $(x)'), HTCondorConfig())
    assert (commands["request_cpus"], commands["request_memory"]) == ("1", "2048")
    assert "periodic_hold" not in commands
    assert commands["+JobBatchName"] == '"ns/we-ird-x-"'


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("job_dir", Path("/srv/a b"), "absolute path"),
        ("job_dir", Path("/srv/$(x)"), "absolute path"),
        ("key", 'a"b', "job key"),
    ],
)
def test_unsafe_paths_and_keys_are_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(SubmitError, match=message):
        job_commands(_job(**{field: value}), HTCondorConfig())


def test_accepted_submit_commands() -> None:
    text = """
        # a comment, then blank lines

        requirements = (TARGET.Arch == "X86_64") && (TARGET.Cpus >= 2)
        +JobFlavour = "espresso"
        MY.Campaign = 42
        request_disk = 4GB
        Max_Retries = 3
    """
    assert parse_submit_commands(text) == {
        "requirements": '(TARGET.Arch == "X86_64") && (TARGET.Cpus >= 2)',
        "MY.JobFlavour": '"espresso"',
        "MY.Campaign": "42",
        "request_disk": "4GB",
        "max_retries": "3",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("executable = /bin/sh", "'executable' may not be set"),
        ("transfer_output_files = /etc", "may not be set"),
        ("accounting_group = rich", "may not be set"),
        ("periodic_hold = true", "may not be set"),
        ("request_cpus = 64", "may not be set"),
        ("environment = A=1", "may not be set"),
        ('+Owner = "root"', "set by flashlink or HTCondor"),
        ('MY.FlashlinkKey = "x"', "set by flashlink or HTCondor"),
        ("+RequestCpus = 64", "set by flashlink or HTCondor"),
        ('+JobBatchName = "x"', "set by flashlink or HTCondor"),
        ('+Foo = "$ENV(AWS_SECRET_ACCESS_KEY)"', "may not contain '$'"),
        ("requirements = $(Cluster) > 0", "may not contain '$'"),
        ("requirements = (", "not a ClassAd expression"),
        ("+Foo = bar baz", "not a ClassAd expression"),
        ("+Foo", "not 'command = value'"),
        ("rank =", "empty value"),
        ("+Foo = 1\nx", "line 2"),
        ("-Foo = 1", "may not be set"),
    ],
)
def test_refused_submit_commands(text: str, message: str) -> None:
    with pytest.raises(SubmitError, match=re.escape(message)) as info:
        parse_submit_commands(text)
    assert SUBMIT_ANNOTATION in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_any_annotation_yields_only_checked_commands(text: str) -> None:
    # Whatever a Pod writes, what reaches the submit description is allow-listed commands or
    # unprotected custom attributes, one line each, with no macro that the submitting host
    # would expand ($ENV(...) could read the plugin's environment).
    refusal = ""
    commands: dict[str, str] = {}
    try:
        commands = parse_submit_commands(text)
    except SubmitError as exc:
        refusal = str(exc)
    assert not refusal or refusal.startswith(f"annotation {SUBMIT_ANNOTATION}")
    for key, value in commands.items():
        assert key in DEFAULT_ALLOWED_COMMANDS or key.startswith("MY.")
        assert not key.lower().startswith(("my.flashlink", "my.owner", "my.request"))
        assert "$" not in value
        assert not any(ord(c) < 32 and c != "\t" for c in value)
        assert value.strip() == value != ""


def test_a_site_can_forbid_custom_attributes() -> None:
    with pytest.raises(SubmitError, match="does not let Pods set job attributes"):
        parse_submit_commands('+JobFlavour = "x"', custom_attributes=False)


def test_jobs_with_the_same_keys_share_one_description() -> None:
    config = HTCondorConfig()
    jobs = [_job(key=f"k{i}", job_dir=Path(f"/srv/j{i}")) for i in range(3)]
    jobs.append(_job(key="k3", options={SUBMIT_ANNOTATION: '+JobFlavour = "espresso"'}))
    groups = submit_groups([job_commands(j, config) for j in jobs], static_commands(config))
    assert [g.indexes for g in groups] == [(0, 1, 2), (3,)]
    first = groups[0]
    assert first.description["universe"] == "vanilla"
    assert first.description["transfer_output_files"] == "out/"
    assert first.description["initialdir"].startswith("$(flv")
    assert [item[first.description["initialdir"][2:-1]] for item in first.items] == [
        "/srv/j0",
        "/srv/j1",
        "/srv/j2",
    ]
    assert "MY.JobFlavour" in groups[1].description


def test_site_settings() -> None:
    config = HTCondorConfig(
        transfer_interval_seconds=30,
        submit_commands={"+AccountingGroup": '"group_cms.prod"'},
        environment={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    static = static_commands(config)
    assert static["+WantIOProxy"] == "true"
    assert static["+AccountingGroup"] == '"group_cms.prod"'
    assert static["environment"] == '"PATH=/usr/bin:/bin LANG=C.UTF-8"'


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"spool": True, "transfer_interval_seconds": 30}, "needs spool = false"),
        ({"transfer_interval_seconds": 1}, "greater than or equal to 5"),
        ({"environment": {"A": "b c"}}, "no spaces"),
        ({"submit_commands": {"+A": "1\nqueue 100"}}, "one line"),
        ({"colector": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_site_settings_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HTCondorConfig.model_validate(data)


# --- the wrapper, run here with a stand-in for condor_chirp ---------------------------------------


def _fake_chirp(tmp_path: Path) -> Path:
    chirp = tmp_path / "chirp"
    calls = tmp_path / "calls"
    remote = tmp_path / "remote"
    remote.mkdir()
    chirp.write_text(
        "#!/bin/bash\n"
        f'echo "$*" >>{calls}\n'
        f'case $1 in put) cp "$2" {remote}/"$3" ;; remove) rm -f {remote}/"$2" ;; esac\n'
    )
    chirp.chmod(0o755)
    return chirp


def _run_wrapper(tmp_path: Path, body: str, interval: int | None) -> subprocess.Popen[str]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / SCRIPT).write_text(body)
    (scratch / EXECUTABLE).write_text(wrapper_script(interval, str(_fake_chirp(tmp_path))))
    return subprocess.Popen(["bash", EXECUTABLE], cwd=scratch, text=True, start_new_session=True)


def test_wrapper_is_valid_bash() -> None:
    subprocess.run(["bash", "-n"], input=wrapper_script(30, "/x/chirp"), text=True, check=True)
    with pytest.raises(SubmitError, match="absolute path"):
        wrapper_script(30, "condor chirp")


def test_wrapper_runs_the_script_with_its_job_directory_in_out(tmp_path: Path) -> None:
    body = '#!/bin/bash\necho "$FLASHLINK_JOB_DIR" >"$FLASHLINK_JOB_DIR/where"\nexit 5\n'
    proc = _run_wrapper(tmp_path, body, None)
    assert proc.wait(timeout=30) == 5
    assert (tmp_path / "scratch/out/where").read_text().strip() == str(tmp_path / "scratch/out")
    assert not (tmp_path / "calls").exists()  # no chirp without an interval


def test_wrapper_pushes_snapshots_and_removes_the_last_one_on_exit(tmp_path: Path) -> None:
    body = (
        "#!/bin/bash\nfor i in 1 2 3 4; do\n"
        '  echo "line $i" >>"$FLASHLINK_JOB_DIR/log"; sleep 1\ndone\n'
    )
    proc = _run_wrapper(tmp_path, body, 2)
    snapshot = tmp_path / "remote" / PROGRESS_FILE
    deadline = time.monotonic() + 20
    while not snapshot.exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(0.3)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(snapshot.read_bytes()))) as archive:
        log = archive.extractfile("./log")
        assert log is not None
        assert log.read().decode().startswith("line 1\n")
    assert proc.wait(timeout=30) == 0
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == f".fl-progress.tmp {PROGRESS_FILE}".join(["put ", ""])
    assert calls[-1] == f"remove {PROGRESS_FILE}"
    assert not snapshot.exists()  # the output transfer brings the final directory


def test_wrapper_forwards_sigterm_and_pushes_a_final_snapshot(tmp_path: Path) -> None:
    body = (
        "#!/bin/bash\n"
        "trap 'echo terminated >\"$FLASHLINK_JOB_DIR/end\"; exit 143' TERM\n"
        'echo started >"$FLASHLINK_JOB_DIR/end"\n'
        "sleep 300 & wait\n"
    )
    proc = _run_wrapper(tmp_path, body, 30)
    end = tmp_path / "scratch/out/end"
    deadline = time.monotonic() + 20
    while not end.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)  # what the starter sends on condor_rm
    assert proc.wait(timeout=30) == 143
    os.killpg(proc.pid, signal.SIGKILL)  # the leftover `sleep 300`
    assert end.read_text() == "terminated\n"
    # no output transfer follows a removal: the final state travels as a snapshot
    snapshot = tmp_path / "remote" / PROGRESS_FILE
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(snapshot.read_bytes()))) as archive:
        member = archive.extractfile("./end")
        assert member is not None
        assert member.read() == b"terminated\n"


def test_snapshots_are_unpacked_safely(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("./containers/main/log", b"ok\n"), ("../evil", b"x"), ("/abs", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    target = tmp_path / "job"
    target.mkdir()
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue())) as archive:
        _extract(archive, target)
    assert (target / "containers/main/log").read_text() == "ok\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["containers", "job", "log", "main"]


# --- the real pool -------------------------------------------------------------------------------


def _ads(backend: HTCondorBackend, cluster: str, projection: list[str]) -> list[Any]:
    ads: list[Any] = backend._call(
        "test query", lambda s: s.query(constraint=f"ClusterId == {cluster}", projection=projection)
    )
    return ads


@pytest.mark.htcondor
def test_a_batch_is_one_cluster_and_its_job_directories_come_back(
    htcondor: Service, condor_backend: HTCondorBackend, shared_tmp: Path
) -> None:
    keys = [str(uuid.uuid4()) for _ in range(3)]
    jobs = [
        fake_job(shared_tmp / "ok", keys[0], 0, lines=["hello", "world"]),
        fake_job(shared_tmp / "bad", keys[1], 3),
        BatchJob(
            keys[2], "default/killed", "#!/bin/bash\nkill -9 $$\n", shared_tmp / "kill", SMALL
        ),
    ]
    before = condor_backend.commands
    ids = condor_backend.submit(jobs)
    # locating the schedd, one query for already queued keys, one submit for all three
    assert condor_backend.commands - before == 3
    clusters = {i.split(".")[0] for i in ids}
    assert len(clusters) == 1
    assert [i.split(".")[1] for i in ids] == ["0", "1", "2"]
    (cluster,) = clusters
    ads = _ads(
        condor_backend,
        cluster,
        ["ProcId", "JobBatchName", "FlashlinkKey", "Owner", "RequestCpus", "RequestMemory"],
    )
    by_proc = {ad["ProcId"]: ad for ad in ads}
    assert by_proc[0]["JobBatchName"] == f"default/pod-{keys[0][:8]}"
    assert by_proc[1]["FlashlinkKey"] == keys[1]
    assert by_proc[0]["Owner"] == htcondor["HTCONDOR_SUBMIT_USER"]
    assert (by_proc[0]["RequestCpus"], by_proc[0]["RequestMemory"]) == (1, 64)

    states = wait(condor_backend, ids, timeout=180)
    ok, bad, killed = (states[i] for i in ids)
    assert (ok.phase, ok.reason, ok.exit_code) == (JobPhase.SUCCEEDED, "Completed", 0)
    assert (bad.phase, bad.reason, bad.exit_code) == (JobPhase.FAILED, "Error", 3)
    assert (killed.phase, killed.exit_code) == (JobPhase.FAILED, 137)
    assert ok.started_at is not None
    assert ok.finished_at is not None

    # the job ran in its own scratch directory: these files came back by output transfer
    pod, main, log = read_job_dir(condor_backend.fetch(ids[0]))
    assert pod.phase == "Succeeded"
    assert main.state.terminated is not None
    assert main.state.terminated.exit_code == 0
    assert log == "hello\nworld\n"
    assert (shared_tmp / "ok" / "pod.json").stat().st_uid != 0  # written by the job's user

    before = condor_backend.commands
    condor_backend.poll(ids)  # all left the queue: one queue query + one history query
    assert condor_backend.commands - before == 2


@pytest.mark.htcondor
def test_a_held_job_shows_its_hold_reason_and_is_removed_on_cancel(
    condor_backend: HTCondorBackend, shared_tmp: Path
) -> None:
    (job_id,) = condor_backend.submit([fake_job(shared_tmp, str(uuid.uuid4()))])
    (shared_tmp / SCRIPT).unlink()  # the input transfer will fail: a real hold
    state = wait(condor_backend, [job_id], until=lambda s: s.reason == "Held", timeout=120)
    assert state[job_id].phase is JobPhase.PENDING
    message = state[job_id].message or ""
    assert "held" in message
    assert SCRIPT in message
    assert "HoldReasonCode 13" in message

    condor_backend.cancel(job_id)
    state = wait(condor_backend, [job_id])
    assert (state[job_id].phase, state[job_id].reason) == (JobPhase.FAILED, "Removed")
    assert state[job_id].message == f"HTCondor job {job_id} was removed"
    condor_backend.cancel(job_id)  # already gone: not an error


@pytest.mark.htcondor
def test_a_held_job_fails_after_the_configured_time(htcondor: Service, shared_tmp: Path) -> None:
    backend = HTCondorBackend("htc", condor_config(htcondor, fail_held_after_seconds=1))
    (job_id,) = backend.submit([fake_job(shared_tmp, str(uuid.uuid4()))])
    (shared_tmp / SCRIPT).unlink()
    state = wait(backend, [job_id], timeout=120)[job_id]
    assert (state.phase, state.reason) == (JobPhase.FAILED, "Held")
    backend.cancel(job_id)


@pytest.mark.htcondor
def test_the_queue_is_asked_for_known_keys_once_and_a_removed_job_is_not_adopted(
    htcondor: Service, shared_tmp: Path
) -> None:
    config = condor_config(htcondor, submit_commands={"hold": "true"})
    old = fake_job(shared_tmp / "old", str(uuid.uuid4()))
    (old_id,) = HTCondorBackend("htc", config).submit([old])
    # a new plugin process (after a crash): its first submit queries the queue, then only
    # Schedd.submit
    backend = HTCondorBackend("htc", config)
    backend.poll([old_id])  # locate the schedd first: one collector query more
    new = [fake_job(shared_tmp / f"n{i}", str(uuid.uuid4())) for i in range(2)]
    before = backend.commands
    ids = backend.submit([old, new[0]])
    assert ids[0] == old_id
    assert backend.commands - before == 2  # query + one transaction
    before = backend.commands
    assert backend.submit([new[1]]) != ids[1:]
    assert backend.submit([new[0]]) == ids[1:]  # known: the same job, no call at all
    assert backend.commands - before == 1
    backend.cancel(old_id)
    again = backend.submit([old])
    assert again != [old_id]
    # nor does a new process adopt the removed job
    assert HTCondorBackend("htc", config).submit([old]) == again
    for jid in [*ids, *again]:
        backend.cancel(jid)


def _queued_ad(backend: HTCondorBackend, job_id: str) -> dict[str, Any]:
    """The job's ad straight from the schedd's queue: no poll, so no deadline hold by it."""
    cluster, proc = job_id.split(".")
    constraint = f"ClusterId == {cluster} && ProcId == {proc}"
    ads = backend._call(
        "the test's query", lambda s: s.query(constraint=constraint, projection=list(PROJECTION))
    )
    assert len(ads) == 1, ads
    return ad_to_dict(ads[0])


def _watch(backend: HTCondorBackend, job_id: str, until: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not until(ad := _queued_ad(backend, job_id)):
        assert time.monotonic() < deadline, ad
        time.sleep(0.5)
    return ad


@pytest.mark.htcondor
def test_the_periodic_hold_backstop_holds_a_job_past_its_deadline_without_the_plugin(
    htcondor: Service, shared_tmp: Path
) -> None:
    # activeDeadlineSeconds 2, no margin, and no poll while the job runs (a poll would hold
    # it itself): the shadow's periodic_hold holds it (measured ~6 s after the start on this
    # pool, where the starter updates the shadow every 5 s); the poll then reads the hold
    backend = HTCondorBackend("htc", condor_config(htcondor, walltime_margin_seconds=0))
    resources = Resources(cpu=Decimal(1), memory_bytes=64 * 1024**2, walltime_seconds=2)
    job = fake_job(shared_tmp, str(uuid.uuid4()), sleep=300, resources=resources)
    (job_id,) = backend.submit([job])
    ad = _watch(backend, job_id, lambda ad: ad.get("HoldReasonCode") is not None, 120)
    assert (ad["HoldReasonCode"], ad["HoldReasonSubCode"]) == (3, 4747), ad
    before = backend.commands
    state = backend.poll([job_id])[job_id]
    assert backend.commands - before == 1  # held already: the query only, no hold
    assert (state.phase, state.reason) == (JobPhase.FAILED, "DeadlineExceeded")
    assert "ran past its activeDeadlineSeconds" in (state.message or "")
    assert "HoldReasonCode 3, subcode 4747" in (state.message or "")
    backend.cancel(job_id)


@pytest.mark.htcondor
def test_a_poll_holds_a_running_job_past_its_deadline_once(
    htcondor: Service, shared_tmp: Path
) -> None:
    backend = HTCondorBackend("htc", condor_config(htcondor, walltime_margin_seconds=0))
    # 10 minutes: the periodic_hold backstop stays out of reach
    resources = Resources(cpu=Decimal(1), memory_bytes=64 * 1024**2, walltime_seconds=600)
    job = fake_job(shared_tmp, str(uuid.uuid4()), sleep=300, resources=resources)
    (job_id,) = backend.submit([job])
    ad = _watch(backend, job_id, lambda ad: ad.get("JobCurrentStartExecutingDate"), 120)
    # The limit as the schedd's ad gives it, shortened: the shadow evaluates periodic_hold on
    # its own copy of the ad, which this edit does not reach (measured: no hold within 25 s),
    # so only the poll can hold the job. A poll before the limit holds nothing.
    assert backend.poll([job_id])[job_id].phase is JobPhase.RUNNING
    backend._call("the edit", lambda s: s.edit([job_id], "FlashlinkDeadline", "1"))
    ad = _watch(
        backend,
        job_id,
        lambda ad: ad["ServerTime"] - ad["JobCurrentStartExecutingDate"] > 1,
        30,
    )
    assert (ad["JobStatus"], ad["HoldReasonCode"]) == (2, None), ad
    before = backend.commands
    state = backend.poll([job_id])[job_id]
    assert backend.commands - before == 2  # the query and one hold
    assert (state.phase, state.reason) == (JobPhase.FAILED, "DeadlineExceeded")
    message = state.message or ""
    assert "ran past its activeDeadlineSeconds" in message
    assert "HoldReasonCode 1, subcode 4747" in message
    ad = _queued_ad(backend, job_id)
    assert (ad["JobStatus"], ad["HoldReasonCode"], ad["HoldReasonSubCode"]) == (5, 1, 4747)
    assert "ran past its activeDeadlineSeconds" in ad["HoldReason"]
    # idempotent: the next poll reads the hold and holds nothing again
    before = backend.commands
    again = backend.poll([job_id])[job_id]
    assert backend.commands - before == 1
    assert (again.phase, again.reason) == (JobPhase.FAILED, "DeadlineExceeded")
    assert "HoldReasonCode 1, subcode 4747" in (again.message or "")
    backend.cancel(job_id)


@pytest.mark.htcondor
def test_a_running_job_pushes_snapshots_and_its_secret_script_goes_at_the_end(
    htcondor: Service, shared_tmp: Path
) -> None:
    backend = HTCondorBackend("htc", condor_config(htcondor, transfer_interval_seconds=5))
    lines = [f"line {i}" for i in range(1, 5)]
    job = fake_job(shared_tmp, str(uuid.uuid4()), lines=lines, sleep=12, contains_secrets=True)
    assert (shared_tmp / SCRIPT).exists() is False
    (job_id,) = backend.submit([job])
    assert (shared_tmp / SCRIPT).stat().st_mode & 0o777 == 0o700
    wait(backend, [job_id], until=lambda s: s.phase is JobPhase.RUNNING, timeout=120)
    deadline = time.monotonic() + 30
    while True:  # the first snapshot arrives after 5 s
        job_dir = backend.fetch(job_id)
        if (job_dir / "containers/main/log").exists():
            break
        assert time.monotonic() < deadline
        time.sleep(1)
    pod, main, log = read_job_dir(job_dir)
    assert pod.phase == "Running"
    assert main.state.running is not None
    assert log == "".join(f"{line}\n" for line in lines)

    state = wait(backend, [job_id], timeout=120)[job_id]
    assert state.phase is JobPhase.SUCCEEDED
    pod, main, _ = read_job_dir(backend.fetch(job_id))
    assert pod.phase == "Succeeded"
    assert not (shared_tmp / PROGRESS_FILE).exists()
    assert not (shared_tmp / SCRIPT).exists()  # it held Secrets: gone with the job


@pytest.mark.htcondor
def test_spool_mode_needs_no_shared_directory(htcondor: Service, tmp_path: Path) -> None:
    # tmp_path is root's and mode 0700: the job's user cannot even look into it, as on a
    # remote CE; inputs travel with Schedd.spool and outputs come back with retrieve.
    assert tmp_path.stat().st_mode & 0o077 == 0
    backend = HTCondorBackend("ce", condor_config(htcondor, spool=True, job_user=None))
    job = fake_job(tmp_path / "job", str(uuid.uuid4()), 4, contains_secrets=True)
    (job_id,) = backend.submit([job])
    assert not (tmp_path / "job" / SCRIPT).exists()  # in the schedd's spool now, not here
    state = wait(backend, [job_id], timeout=180)[job_id]
    assert (state.phase, state.exit_code) == (JobPhase.FAILED, 4)
    assert not (tmp_path / "job" / "pod.json").exists()  # still on the schedd
    before = backend.commands
    pod, main, _ = read_job_dir(backend.fetch(job_id))
    assert backend.commands - before == 1  # one retrieve
    assert pod.phase == "Failed"
    assert main.state.terminated is not None
    assert main.state.terminated.exit_code == 4
    backend.fetch(job_id)  # a second fetch retrieves nothing more
    assert backend.commands - before == 1


@pytest.mark.htcondor
def test_a_schedd_named_through_its_collector(htcondor: Service) -> None:
    HTCondorBackend("htc", condor_config(htcondor))  # loads the pool's CONDOR_CONFIG
    collector = htcondor["HTCONDOR_COLLECTOR"]
    (ad,) = htcondor2.Collector(collector).query(htcondor2.AdType.Schedd, projection=["Name"])
    named = HTCondorBackend(
        "htc", condor_config(htcondor, collector=collector, schedd_name=ad["Name"])
    )
    assert named.poll(["999999.0"]) == {}  # answered; unknown ids wait out the grace
    wrong = HTCondorBackend(
        "htc", condor_config(htcondor, collector=collector, schedd_name="nosuch@nowhere")
    )
    with pytest.raises(BackendUnavailableError, match="no schedd named 'nosuch@nowhere'"):
        wrong.poll(["1.0"])


@pytest.mark.htcondor
def test_unknown_ids_become_lost_and_a_dead_collector_is_unavailable(htcondor: Service) -> None:
    backend = HTCondorBackend("htc", condor_config(htcondor, lost_after_seconds=0))
    state = backend.poll(["999999.0", "garbage"])
    assert list(state) == ["999999.0"]
    assert (state["999999.0"].phase, state["999999.0"].reason) == (JobPhase.UNKNOWN, "Lost")
    dead = HTCondorBackend("htc", condor_config(htcondor, collector="127.0.0.1:9"))
    with pytest.raises(BackendUnavailableError):
        dead.poll(["1.0"])


@pytest.mark.htcondor
def test_a_client_without_a_usable_token_is_refused_as_unavailable(
    htcondor: Service, tmp_path: Path, shared_tmp: Path
) -> None:
    # In a fresh process: a security session made by an earlier test would be reused.
    code = f"""
import json, sys
sys.path.insert(0, {str(REPO / "tests")!r})
from backends._jobs import fake_job
from flashlink.backends import BackendError
from flashlink.backends.htcondor import HTCondorBackend, HTCondorConfig
backend = HTCondorBackend("htc", HTCondorConfig(
    condor_config={htcondor["CONDOR_CONFIG"]!r}, token_dir={str(tmp_path)!r}))
try:
    backend.submit([fake_job(__import__("pathlib").Path({str(shared_tmp)!r}), "k1")])
except BackendError as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    kind, message = json.loads(proc.stdout)
    assert kind == "BackendUnavailableError"
    assert "IDTOKENS" in message


@pytest.mark.htcondor
def test_capacity_sums_the_pools_slots(condor_backend: HTCondorBackend) -> None:
    capacity = condor_backend.capacity()
    assert capacity.cpu >= 1
    assert capacity.memory_bytes > 100 * 1024**2
    fixed = HTCondorConfig(capacity=CapacityConfig(cpu=640, memory_bytes=2 * 1024**4, gpus=8))
    assert HTCondorBackend("ce", fixed).capacity().accelerators == {"nvidia.com/gpu": 8}
