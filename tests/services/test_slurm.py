"""Smoke tests of the real Slurm cluster, including containers inside batch jobs."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from servicekit import Service
from servicekit.containers import CI_USER, exec_argv
from servicekit.slurm import sbatch, wait_for_job

pytestmark = pytest.mark.slurm


def test_job_runs_as_the_submitting_user_and_its_output_is_read(
    slurm: Service, shared_tmp: Path
) -> None:
    job = sbatch(
        slurm, "#!/bin/bash\nid -un\necho out-$SLURM_JOB_ID\n", workdir=shared_tmp, user=CI_USER
    )
    record = wait_for_job(slurm, job)
    assert record.state == "COMPLETED"
    assert (shared_tmp / f"job-{job}.out").read_text().split() == [CI_USER, f"out-{job}"]


def test_failing_job_reports_its_exit_code(slurm: Service, shared_tmp: Path) -> None:
    job = sbatch(slurm, "#!/bin/bash\necho bad >&2\nexit 7\n", workdir=shared_tmp, user=CI_USER)
    record = wait_for_job(slurm, job)
    assert record.state == "FAILED"
    assert record.exit_code == 7


def test_squeue_json_lists_a_pending_job_and_scancel_cancels_it(
    slurm: Service, shared_tmp: Path
) -> None:
    job = sbatch(slurm, "#!/bin/bash\nsleep 300\n", workdir=shared_tmp, user=CI_USER)
    env = {"SLURM_CONF": slurm["SLURM_CONF"], "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        ["squeue", "--json", "-j", str(job)], capture_output=True, text=True, env=env, check=True
    )
    assert f'"job_id": {job}' in out.stdout
    subprocess.run(["scancel", str(job)], env=env, check=True, timeout=30)
    assert wait_for_job(slurm, job).state == "CANCELLED"


@pytest.mark.parametrize(
    "runtime",
    [
        pytest.param("apptainer", marks=pytest.mark.apptainer),
        pytest.param("podman", marks=pytest.mark.podman),
        pytest.param("bwrap", marks=pytest.mark.bwrap),
    ],
)
@pytest.mark.parametrize("user", ["root", CI_USER])
def test_container_runs_inside_a_slurm_job(
    request: pytest.FixtureRequest, slurm: Service, shared_tmp: Path, runtime: str, user: str
) -> None:
    container: Service = request.getfixturevalue(runtime)
    # The container writes into a bind-mounted host directory and prints from the image's busybox.
    inner = exec_argv(
        container,
        [
            "/bin/sh",
            "-c",
            f"echo in-image-{runtime} > {shared_tmp}/mark; cat /etc/passwd | head -n1",
        ],
        binds=[shared_tmp],
    )
    script = "#!/bin/bash\nset -e\n" + shlex.join(inner) + "\n"
    job = sbatch(slurm, script, workdir=shared_tmp, user=None if user == "root" else user)
    record = wait_for_job(slurm, job, timeout=180)
    out = (shared_tmp / f"job-{job}.out").read_text()
    assert record.state == "COMPLETED", out
    assert (shared_tmp / "mark").read_text().strip() == f"in-image-{runtime}"
    assert out.strip().endswith("root:x:0:0:root:/root:/bin/sh"), out
