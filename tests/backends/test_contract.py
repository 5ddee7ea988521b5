"""One contract, every backend: local, Slurm and HTCondor behave the same to the plugin.

Each test runs against the real thing (the local backend on this machine, the Slurm cluster and
the HTCondor pool of ci/services), with job scripts that keep a job directory as rendered
scripts do, and with a rendered Pod run under Apptainer inside the batch job.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flashlink.backends import Backend, BatchJob, JobPhase
from flashlink.backends.htcondor import HTCondorBackend
from flashlink.backends.local import LocalBackend, LocalConfig
from flashlink.backends.slurm import SlurmBackend
from flashlink.jobscript import parse_config, render
from flashlink.kube import Pod
from servicekit import Service

from ._jobs import fake_job, read_job_dir, wait
from .conftest import condor_config, slurm_config

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("slurm", marks=pytest.mark.slurm, id="slurm"),
    pytest.param("htcondor", marks=pytest.mark.htcondor, id="htcondor"),
]
# HTCondor starts a job 2-9 s after submission (negotiation cycle), Slurm and local in ~1 s
TIMEOUT = 180


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, shared_tmp: Path) -> Iterator[Backend]:
    made: Backend
    if request.param == "local":
        made = LocalBackend("here", LocalConfig(state_dir=shared_tmp / "local-state"))
    elif request.param == "slurm":
        made = SlurmBackend("hpc", slurm_config(request.getfixturevalue("slurm")))
    else:
        made = HTCondorBackend("htc", condor_config(request.getfixturevalue("htcondor")))
    yield made
    made.close()


def test_it_is_a_backend(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert backend.kind in ("local", "slurm", "htcondor")
    capacity = backend.capacity()
    assert capacity.cpu > 0
    assert capacity.memory_bytes > 0
    assert capacity.pods > 0
    assert backend.poll([]) == {}


def test_jobs_of_one_batch_run_and_report_their_end(backend: Backend, shared_tmp: Path) -> None:
    jobs = [
        fake_job(shared_tmp / "ok", str(uuid.uuid4()), 0, lines=["one", "two"]),
        fake_job(shared_tmp / "bad", str(uuid.uuid4()), 3, lines=["oops"]),
    ]
    ids = backend.submit(jobs)
    assert len(ids) == 2
    assert len(set(ids)) == 2
    states = wait(backend, ids, timeout=TIMEOUT)

    ok, bad = states[ids[0]], states[ids[1]]
    assert (ok.phase, ok.exit_code) == (JobPhase.SUCCEEDED, 0)
    assert (bad.phase, bad.exit_code) == (JobPhase.FAILED, 3)
    assert ok.backend_id == ids[0]
    for job, job_id, code, log in (
        (jobs[0], ids[0], 0, "one\ntwo\n"),
        (jobs[1], ids[1], 3, "oops\n"),
    ):
        job_dir = backend.fetch(job_id)
        assert job_dir == job.job_dir
        pod, main, text = read_job_dir(job_dir)
        assert pod.phase == ("Succeeded" if code == 0 else "Failed")
        assert main.state.terminated is not None
        assert main.state.terminated.exit_code == code
        assert text == log
    # a poll names each id once, whatever it is asked
    assert set(backend.poll([*ids, *ids])) == set(ids)


def test_submitting_a_known_key_again_returns_its_job(backend: Backend, shared_tmp: Path) -> None:
    # what the plugin does after a crash between submit and recording the id
    job = fake_job(shared_tmp, str(uuid.uuid4()), sleep=20)
    (first,) = backend.submit([job])
    (again,) = backend.submit([job])
    assert again == first
    backend.cancel(first)
    wait(backend, [first], timeout=TIMEOUT)


def test_a_running_job_is_cancelled_and_cancel_is_idempotent(
    backend: Backend, shared_tmp: Path
) -> None:
    (job_id,) = backend.submit([fake_job(shared_tmp, str(uuid.uuid4()), sleep=300)])
    wait(backend, [job_id], until=lambda s: s.phase is JobPhase.RUNNING, timeout=TIMEOUT)
    t0 = time.monotonic()
    backend.cancel(job_id)
    state = wait(backend, [job_id], timeout=TIMEOUT)[job_id]
    assert state.phase is JobPhase.FAILED
    assert state.reason in ("Cancelled", "Removed")
    assert time.monotonic() - t0 < 60
    backend.cancel(job_id)


BUSY_POD: dict[str, Any] = {
    "metadata": {"name": "flash", "namespace": "prod", "uid": "", "annotations": {}},
    "spec": {
        "restartPolicy": "Never",
        "initContainers": [
            {
                "name": "prepare",
                "image": "flashlink-test",
                "command": ["sh", "-c", "echo ready >/work/flag"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }
        ],
        "containers": [
            {
                "name": "main",
                "image": "flashlink-test",
                "command": ["sh", "-c", 'cat /work/flag; echo "pod $POD"; exit 3'],
                "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                "resources": {"requests": {"cpu": "1", "memory": "64Mi"}},
            }
        ],
        "volumes": [{"name": "work", "emptyDir": {}}],
    },
}


@pytest.mark.apptainer
def test_a_rendered_pod_runs_under_apptainer_in_the_job(
    backend: Backend, apptainer: Service, shared_tmp: Path
) -> None:
    # Inside HTCondor this runs in the pool's root as the job user: the Apptainer wrapper comes
    # from the read-only /var/cache/flashlink-ci bind and the scratch is the job's own /tmp.
    data = {**BUSY_POD, "metadata": {**BUSY_POD["metadata"], "uid": str(uuid.uuid4())}}
    pod = Pod.model_validate(data)
    config = parse_config(
        {
            "runtime": "apptainer",
            "apptainer": {"executable": apptainer["APPTAINER"]},
            "images": {
                "overrides": {"flashlink-test": apptainer["TEST_IMAGE_SIF"]},
                "registry_fallback": False,
            },
        }
    )
    script = render(pod, config)
    assert script.resources.cpu == Decimal(1)
    job = BatchJob(
        key=pod.metadata.uid,
        name="prod/flash",
        script=script.text,
        job_dir=shared_tmp / "pod",
        resources=script.resources,
        contains_secrets=script.contains_secrets,
    )
    (job_id,) = backend.submit([job])
    state = wait(backend, [job_id], timeout=TIMEOUT)[job_id]
    job_dir = backend.fetch(job_id)
    pod_record, main, log = read_job_dir(job_dir)
    assert (state.phase, state.exit_code) == (JobPhase.FAILED, 3), (job_dir / "job.log").read_text()
    assert pod_record.phase == "Failed"
    assert main.state.terminated is not None
    assert main.state.terminated.exit_code == 3
    assert log == "ready\npod flash\n"
    init = (job_dir / "containers/prepare/state.json").read_text()
    assert '"exitCode":0' in init
