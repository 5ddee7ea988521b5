"""The Slurm backend: the pure sbatch builder, then the real cluster of ci/services/slurm.sh."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
import uuid
from decimal import Decimal
from pathlib import Path

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
from flashlink.backends._slurm_submit import (
    DEFAULT_ALLOWED_FLAGS,
    FLAGS_ANNOTATION,
    SlurmConfig,
    directives,
    job_name,
    options_of,
    parse_flags,
    submission_script,
)
from flashlink.backends.slurm import SlurmBackend
from flashlink.jobscript import Resources
from servicekit import Service

from ._jobs import SMALL, fake_job, read_job_dir, wait
from .conftest import slurm_config

SAFE_LINE = r"#SBATCH --[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:=/@%+*!&|()\[\]{}^~-]+)?"
UID = "0b6f5d2e-3c1a-4f7e-9d1b-2a4c6e8f0a1b"


def _job(**kw: object) -> BatchJob:
    data: dict[str, object] = {
        "key": UID,
        "name": "default/hello",
        "script": "#!/bin/bash\necho hi\n",
        "job_dir": Path("/srv/jobs/x"),
        **kw,
    }
    return BatchJob(**data)  # type: ignore[arg-type]


# --- the builder -----------------------------------------------------------------------------


def test_directives_carry_the_pods_resources_and_the_sites_settings() -> None:
    job = _job(
        resources=Resources(
            cpu=Decimal("1.5"),
            memory_bytes=1024**3,
            ephemeral_storage_bytes=10 * 1024**3,
            gpus={"nvidia.com/gpu": 2},
            walltime_seconds=600,
        )
    )
    config = SlurmConfig(
        partition="gpu", account="infn", qos="normal", sbatch_flags=("--exclusive",)
    )
    opts = directives(job, config, run_as=("flashci", "flashci"))
    assert opts == [
        "--job-name=default-hello-0b6f5d2e",
        f"--comment=flashlink:{UID}",
        "--chdir=/srv/jobs/x",
        "--output=/srv/jobs/x/slurm-%j.out",
        "--nodes=1",
        "--ntasks=1",
        "--export=NONE",
        "--uid=flashci",
        "--gid=flashci",
        "--cpus-per-task=2",
        "--mem=1024M",
        "--tmp=10240M",
        "--gres=gpu:2",
        "--time=11",  # 600 s + the 60 s margin, in minutes
        "--partition=gpu",
        "--account=infn",
        "--qos=normal",
        "--exclusive",
    ]


def test_a_pod_without_requests_gets_the_site_defaults_only() -> None:
    opts = directives(_job(), SlurmConfig(default_walltime_seconds=3600))
    assert "--time=60" in opts
    assert not [o for o in opts if o.startswith(("--cpus", "--mem", "--gres", "--partition"))]


def test_user_flags_come_last_so_they_refine_the_pods_request() -> None:
    job = _job(
        resources=Resources(walltime_seconds=60),
        options={FLAGS_ANNOTATION: "-p debug -t 30 --constraint='a100&ib' --exclusive"},
    )
    opts = directives(job, SlurmConfig(partition="batch", walltime_margin_seconds=0))
    assert opts[-4:] == ["--partition=debug", "--time=30", "--constraint=a100&ib", "--exclusive"]
    assert opts.index("--time=1") < opts.index("--time=30")


def test_environment_replaces_export_none() -> None:
    opts = directives(_job(), SlurmConfig(environment={"PATH": "/usr/bin:/bin", "X": "1"}))
    assert "--export=PATH=/usr/bin:/bin,X=1" in opts
    assert "--export=NONE" not in opts


def test_an_unmapped_gpu_kind_is_refused_with_the_known_ones() -> None:
    job = _job(resources=Resources(gpus={"intel.com/gpu": 1}))
    with pytest.raises(SubmitError, match=r"intel.com/gpu.*known: amd.com/gpu, nvidia.com/gpu"):
        directives(job, SlurmConfig())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("job_dir", Path("/srv/with space/x"), "absolute path"),
        ("job_dir", Path("/srv/100%/x"), "absolute path"),
        ("job_dir", Path("relative/x"), "absolute path"),
        ("key", "uid with space", "job key"),
        ("key", "", "job key"),
    ],
)
def test_unsafe_paths_and_keys_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(SubmitError, match=message):
        directives(_job(**{field: value}), SlurmConfig())


@pytest.mark.parametrize(
    ("name", "key", "expected"),
    [
        ("default/hello", UID, "default-hello-0b6f5d2e"),
        ("ns/a b;c$(x)", "abc", "ns-a-b-c-x-abc"),
        ("///", "", "pod"),
        ("x" * 300, "k", "x" * 100 + "-k"),
    ],
)
def test_job_names(name: str, key: str, expected: str) -> None:
    assert job_name(name, key) == expected


def test_directives_go_after_the_shebang_and_the_script_is_unchanged() -> None:
    body = "#!/bin/bash\n# comment\necho hi\n"
    text = submission_script(body, ["--nodes=1", "--comment=x"])
    assert text == "#!/bin/bash\n#SBATCH --nodes=1\n#SBATCH --comment=x\n# comment\necho hi\n"
    assert options_of(text) == {"--nodes": "1", "--comment": "x"}
    assert (
        submission_script("echo hi\n", ["--nodes=1"]) == "#!/bin/bash\n#SBATCH --nodes=1\necho hi\n"
    )
    with pytest.raises(SubmitError, match="single --option"):
        submission_script(body, ["--comment=a b"])


# --- the annotation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("--partition=gpu", ["--partition=gpu"]),
        (
            "-p gpu -t 30 -N1 -c=4",
            ["--partition=gpu", "--time=30", "--nodes=1", "--cpus-per-task=4"],
        ),
        ("--mem 4G --gres gpu:a100:2", ["--mem=4G", "--gres=gpu:a100:2"]),
        ('--constraint="intel&(ib|opa)"', ["--constraint=intel&(ib|opa)"]),
        ("--nodelist=n[01-04],n07 -x n02", ["--nodelist=n[01-04],n07", "--exclude=n02"]),
        ("--exclusive --requeue", ["--exclusive", "--requeue"]),
        ("--exclusive=user", ["--exclusive=user"]),
        (
            "--mail-user=a.b@infn.it --mail-type=END,FAIL",
            ["--mail-user=a.b@infn.it", "--mail-type=END,FAIL"],
        ),
        ("--time=1-00:00:00 --begin=now+1hour", ["--time=1-00:00:00", "--begin=now+1hour"]),
    ],
)
def test_flags_that_are_accepted(text: str, expected: list[str]) -> None:
    assert parse_flags(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("--uid=0", "--uid may not be set"),
        ("--export=ALL", "--export may not be set"),
        ("--output=/etc/passwd", "--output may not be set"),
        ("-o /etc/passwd", "--output may not be set"),
        ("-D /", "--chdir may not be set"),
        ("--wrap='rm -rf /'", "--wrap may not be set"),
        ("--array=1-1000", "--array may not be set"),
        ("--account=rich", "--account may not be set"),
        ("-J x", "--job-name may not be set"),
        ("-Z", "unknown short option -Z"),
        ("gpu", "'gpu' is not an option"),
        ("--time", "--time needs a value"),
        ("--time --mem=1G", "--time needs a value"),
        ("--requeue=yes", "takes no value"),
        ("--mem='4G; rm -rf /'", "may only hold"),
        ("--comment=$(id)", "--comment may not be set"),
        ("--constraint=$(id)", "may only hold"),
        ("--constraint=`id`", "may only hold"),
        ("--constraint='a\nb'", "may only hold"),
        ("--partition='gpu", "cannot split"),
        ("--Partition=gpu", "not a valid option name"),
    ],
)
def test_flags_that_are_refused(text: str, message: str) -> None:
    with pytest.raises(SubmitError, match=re.escape(message)) as info:
        parse_flags(text)
    assert FLAGS_ANNOTATION in str(info.value)


def test_the_site_chooses_what_pods_may_set() -> None:
    assert parse_flags("--account=x", allowed=("account",)) == ["--account=x"]
    with pytest.raises(SubmitError, match="allowed: time"):
        parse_flags("-p gpu", allowed=("time",))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_any_annotation_yields_only_safe_directive_lines(text: str) -> None:
    # Whatever a Pod puts in the annotation, the submission is the original script plus
    # #SBATCH lines each holding one allow-listed, whitespace-free, quote-free option; or
    # the job is refused with a message naming the annotation.
    body = "#!/bin/bash\necho body\n"
    job = _job(script=body, options={FLAGS_ANNOTATION: text})
    refusal = ""
    opts: list[str] = []
    try:
        opts = directives(job, SlurmConfig())
    except SubmitError as exc:
        refusal = str(exc)
    if refusal:
        assert refusal.startswith(f"annotation {FLAGS_ANNOTATION}")
        return
    lines = submission_script(body, opts).split("\n")
    assert lines[0] == "#!/bin/bash"
    assert "\n".join(lines[1 + len(opts) :]) == "echo body\n"
    for line in lines[1 : 1 + len(opts)]:
        assert re.fullmatch(SAFE_LINE, line)
    for option in parse_flags(text):
        assert option.removeprefix("--").split("=")[0] in DEFAULT_ALLOWED_FLAGS


@given(
    st.lists(
        st.sampled_from(
            [
                "-p",
                "--time",
                "gpu",
                "30",
                "--exclusive",
                "-t",
                "--mem=1G",
                "'",
                '"',
                ";",
                "$(x)",
                "--uid=0",
                "\n",
            ]
        ),
        max_size=8,
    )
)
def test_shell_like_annotations_never_reach_a_disallowed_option(words: list[str]) -> None:
    try:
        options = parse_flags(" ".join(words))
    except SubmitError:
        return
    for option in options:
        name = option.removeprefix("--").split("=")[0]
        assert name in DEFAULT_ALLOWED_FLAGS
        assert not set(option) & set(" \t\n'\"$`\\;")


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"partition": "a b"}, "one word"),
        ({"allowed_flags": ["--time"]}, "write 'time'"),
        ({"sbatch_flags": ["exclusive"]}, "--name=value"),
        ({"sbatch_flags": ["--constraint=a b"]}, "cannot take"),
        ({"environment": {"PATH": "/a,/b"}}, "without commas"),
        ({"environment": {"1X": "y"}}, "not an environment variable"),
        ({"partitoin": "gpu"}, "Extra inputs are not permitted"),
        ({"command_timeout_seconds": 0}, "greater than 0"),
    ],
)
def test_bad_site_settings_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SlurmConfig.model_validate(data)


# --- the real cluster -------------------------------------------------------------------------


def _scontrol(slurm: Service, job_id: str) -> str:
    env = {**os.environ, "SLURM_CONF": slurm["SLURM_CONF"]}
    return subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, env=env, check=True
    ).stdout


@pytest.mark.slurm
def test_a_batch_runs_as_the_job_user_with_exit_codes_mapped(
    slurm: Service, slurm_backend: SlurmBackend, shared_tmp: Path
) -> None:
    keys = [str(uuid.uuid4()) for _ in range(3)]
    canary = f"secret-{uuid.uuid4().hex}"
    ok_job = fake_job(shared_tmp / "ok", keys[0], 0, lines=["hello", "world"])
    jobs = [
        dataclasses.replace(ok_job, script=ok_job.script + f"# {canary}\n"),
        fake_job(shared_tmp / "bad", keys[1], 7),
        BatchJob(
            keys[2], "default/killed", "#!/bin/bash\nkill -9 $$\n", shared_tmp / "killed", SMALL
        ),
    ]
    ids = slurm_backend.submit(jobs)
    assert len(set(ids)) == 3
    states = wait(slurm_backend, ids)

    ok, bad, killed = (states[i] for i in ids)
    assert (ok.phase, ok.reason, ok.exit_code) == (JobPhase.SUCCEEDED, "Completed", 0)
    assert (bad.phase, bad.reason, bad.exit_code) == (JobPhase.FAILED, "Error", 7)
    assert (killed.phase, killed.exit_code) == (JobPhase.FAILED, 137)
    assert ok.started_at is not None
    assert ok.finished_at is not None

    pod, main, log = read_job_dir(slurm_backend.fetch(ids[0]))
    assert pod.phase == "Succeeded"
    assert main.state.terminated is not None
    assert main.state.terminated.exit_code == 0
    assert log == "hello\nworld\n"
    assert read_job_dir(shared_tmp / "bad")[1].state.terminated.exit_code == 7  # type: ignore[union-attr]
    # the job ran as the site's job user, in a directory handed to it
    job_uid = (shared_tmp / "ok" / "pod.json").stat().st_uid
    assert job_uid == (shared_tmp / "ok").stat().st_uid != 0
    assert (shared_tmp / "ok" / f"slurm-{ids[0]}.out").exists()
    shown = _scontrol(slurm, ids[0])
    assert f"Comment=flashlink:{keys[0]}" in shown
    assert f"JobName=default-pod-{keys[0][:8]}-{keys[0][:8]}" in shown
    assert f"UserId={slurm['SLURM_SUBMIT_USER']}(" in shown
    # the script went to sbatch on stdin: nothing of it (Secrets included) is on this disk
    for path in (shared_tmp / "ok").rglob("*"):
        assert not path.is_file() or canary not in path.read_text()


@pytest.mark.slurm
def test_one_squeue_per_poll_however_many_jobs(
    slurm_backend: SlurmBackend, shared_tmp: Path
) -> None:
    ids = slurm_backend.submit(
        [fake_job(shared_tmp / f"j{i}", str(uuid.uuid4())) for i in range(4)]
    )
    wait(slurm_backend, ids)
    before = slurm_backend.commands
    states = slurm_backend.poll(ids * 3)  # finished jobs stay in squeue for MinJobAge (300 s)
    assert slurm_backend.commands - before == 1
    assert {s.phase for s in states.values()} == {JobPhase.SUCCEEDED}


@pytest.mark.slurm
def test_pending_reason_then_cancel_is_idempotent(
    slurm_backend: SlurmBackend, shared_tmp: Path
) -> None:
    job = fake_job(
        shared_tmp / "later", str(uuid.uuid4()), options={FLAGS_ANNOTATION: "--begin=now+1hour"}
    )
    (job_id,) = slurm_backend.submit([job])
    state = wait(slurm_backend, [job_id], until=lambda s: s.reason == "BeginTime")[job_id]
    assert state.phase is JobPhase.PENDING
    assert "waiting for its begin time" in (state.message or "")

    slurm_backend.cancel(job_id)
    state = wait(slurm_backend, [job_id])[job_id]
    assert (state.phase, state.reason) == (JobPhase.FAILED, "Cancelled")
    slurm_backend.cancel(job_id)  # already ended: not an error
    slurm_backend.cancel("999999")  # never existed: not an error either


@pytest.mark.slurm
def test_a_running_job_is_cancelled_and_its_script_sees_the_signal(
    slurm_backend: SlurmBackend, shared_tmp: Path
) -> None:
    body = (
        "#!/bin/bash\ntrap 'echo got-term >term.txt; exit 143' TERM\n"
        "touch trapped\nsleep 300 & wait\n"
    )
    (job_id,) = slurm_backend.submit(
        [BatchJob(str(uuid.uuid4()), "d/sleep", body, shared_tmp, SMALL)]
    )
    deadline = time.monotonic() + 60
    while not (shared_tmp / "trapped").exists():  # RUNNING comes before the script starts
        assert time.monotonic() < deadline
        time.sleep(0.2)
    slurm_backend.cancel(job_id)
    state = wait(slurm_backend, [job_id])[job_id]
    assert (state.phase, state.reason) == (JobPhase.FAILED, "Cancelled")
    assert (shared_tmp / "term.txt").read_text() == "got-term\n"


@pytest.mark.slurm
def test_sacct_reports_the_real_exit_code(slurm_backend: SlurmBackend, shared_tmp: Path) -> None:
    # The path poll takes once a job has left squeue (MinJobAge later): sacct --parsable2,
    # because 22.05's sacct --json says exit code 0 for this job.
    (job_id,) = slurm_backend.submit([fake_job(shared_tmp, str(uuid.uuid4()), 7)])
    wait(slurm_backend, [job_id])
    deadline = time.monotonic() + 30
    while True:
        records, answered = slurm_backend._sacct([job_id])
        assert answered
        # sacct lags squeue by a moment, and its WorkDir comes a moment later still
        if job_id in records and records[job_id].work_dir:
            break
        assert time.monotonic() < deadline, records
        time.sleep(0.5)
    assert records[job_id].states == {"FAILED"}
    assert records[job_id].exit_code == 7
    assert records[job_id].work_dir == str(shared_tmp)


@pytest.mark.slurm
def test_an_id_slurm_never_knew_is_reported_lost_after_the_grace(slurm: Service) -> None:
    backend = SlurmBackend("hpc", slurm_config(slurm, lost_after_seconds=0.5))
    assert backend.poll(["987654"]) == {}
    time.sleep(0.6)
    state = backend.poll(["987654", "not-an-id"])
    assert list(state) == ["987654"]
    assert (state["987654"].phase, state["987654"].reason) == (JobPhase.UNKNOWN, "Lost")
    assert "sacct has no record" in (state["987654"].message or "")


@pytest.mark.slurm
def test_without_accounting_no_sacct_is_run_and_the_message_says_why(slurm: Service) -> None:
    backend = SlurmBackend("hpc", slurm_config(slurm, accounting=False, lost_after_seconds=0))
    state = backend.poll(["987655"])["987655"]
    assert backend.commands == 1
    assert "accounting (sacct) is disabled" in (state.message or "")


@pytest.mark.slurm
def test_a_refused_job_cancels_the_rest_of_its_batch(slurm: Service, shared_tmp: Path) -> None:
    # one sbatch at a time, so the good job is surely queued before the bad one is refused
    backend = SlurmBackend("hpc", slurm_config(slurm, submit_concurrency=1))
    good = fake_job(shared_tmp / "good", str(uuid.uuid4()), sleep=60)
    bad = fake_job(
        shared_tmp / "bad",
        str(uuid.uuid4()),
        options={FLAGS_ANNOTATION: "--partition=nosuchpartition"},
    )
    with pytest.raises(SubmitError, match=r"sbatch refused.*(?i:invalid partition)"):
        backend.submit([good, bad])
    env = {**os.environ, "SLURM_CONF": slurm["SLURM_CONF"]}
    out = subprocess.run(
        ["squeue", "-h", "-o", "%k %T", "--states=all"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert f"flashlink:{good.key} CANCELLED" in out


@pytest.mark.slurm
def test_squeue_looks_for_known_keys_once_and_never_adopts_a_cancelled_job(
    slurm: Service, shared_tmp: Path
) -> None:
    config = slurm_config(slurm, sbatch_flags=("--hold",), submit_concurrency=1)
    first = SlurmBackend("hpc", config)
    old = fake_job(shared_tmp / "old", str(uuid.uuid4()))
    (old_id,) = first.submit([old])
    # a new plugin process (after a crash): its first submit asks squeue, then only sbatch
    backend = SlurmBackend("hpc", config)
    new = [fake_job(shared_tmp / f"n{i}", str(uuid.uuid4())) for i in range(2)]
    before = backend.commands
    ids = backend.submit([old, new[0]])
    assert ids[0] == old_id
    assert backend.commands - before == 2  # squeue + one sbatch
    before = backend.commands
    assert backend.submit([new[1]]) != ids[1:]
    assert backend.submit([new[0]]) == ids[1:]  # known: the same job, no command at all
    assert backend.commands - before == 1
    # the good job of a refused batch is cancelled; submitted again, it is a new job
    good = fake_job(shared_tmp / "good", str(uuid.uuid4()))
    bad = fake_job(shared_tmp / "bad", str(uuid.uuid4()), options={FLAGS_ANNOTATION: "-p nope"})
    with pytest.raises(SubmitError):
        backend.submit([good, bad])
    (again,) = SlurmBackend("hpc", config).submit([good])  # squeue sees it CANCELLED
    (again2,) = backend.submit([good])
    assert again != again2  # neither adopted the cancelled job (nor each other's: no squeue)
    backend.cancel(old_id)
    assert backend.submit([old]) != [old_id]  # nor one it cancelled itself
    scancel = ["scancel", "--user", slurm["SLURM_SUBMIT_USER"]]
    subprocess.run(scancel, env={**os.environ, "SLURM_CONF": slurm["SLURM_CONF"]}, check=True)


@pytest.mark.slurm
def test_invalid_annotations_fail_before_anything_is_submitted(
    slurm_backend: SlurmBackend, shared_tmp: Path
) -> None:
    jobs = [
        fake_job(shared_tmp / "a", str(uuid.uuid4())),
        fake_job(shared_tmp / "b", str(uuid.uuid4()), options={FLAGS_ANNOTATION: "--uid=0"}),
    ]
    before = slurm_backend.commands
    with pytest.raises(SubmitError, match="--uid may not be set"):
        slurm_backend.submit(jobs)
    assert slurm_backend.commands == before
    assert not (shared_tmp / "a").exists()


@pytest.mark.slurm
def test_an_unreachable_slurmctld_is_unavailable_and_the_backend_recovers(
    slurm: Service, tmp_path: Path
) -> None:
    conf = tmp_path / "slurm.conf"
    good = Path(slurm["SLURM_CONF"]).read_text()
    # a port nobody listens on: what a client sees while slurmctld is down. The client retries
    # for ~9 s per call with the default MessageTimeout (10 s), ~1 s with 2 (measured).
    broken = re.sub(r"(?m)^SlurmctldPort=\d+", "SlurmctldPort=9", good)
    conf.write_text(broken + "MessageTimeout=2\n")
    backend = SlurmBackend("hpc", slurm_config(slurm, slurm_conf=str(conf)))
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="Slurm is not answering"):
        backend.poll(["1"])
    assert time.monotonic() - t0 < 10
    with pytest.raises(BackendUnavailableError, match="Slurm is not answering"):
        backend.submit([fake_job(tmp_path / "job", str(uuid.uuid4()))])
    conf.write_text(good)
    assert backend.poll(["987656"]) == {}  # answered (nothing known yet, within the grace)


@pytest.mark.slurm
def test_capacity_counts_the_partitions_usable_nodes(slurm: Service) -> None:
    capacity = SlurmBackend("hpc", slurm_config(slurm)).capacity()
    assert capacity.cpu >= 1
    assert capacity.memory_bytes > 100 * 1024**2
    elsewhere = SlurmBackend("hpc", slurm_config(slurm, partition="nosuch")).capacity()
    assert (elsewhere.cpu, elsewhere.memory_bytes) == (0, 0)
