"""Productions end to end: the real plugin on the local backend, real Apptainer, the payload
SIF with this installation bound in (ci/services/payload.sh). The driver runs as users run it,
``flashlink production run`` in a subprocess, so it can be killed and run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from flashlink.production import Journal
from servicekit import Service

pytestmark = [pytest.mark.apptainer, pytest.mark.payload]
FLASHLINK = Path(sys.executable).parent / "flashlink"
IMAGE = "ghcr.io/flashlink/payload:latest"


def _request(out: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "bu2jpsik-ci",
        "event": {"kind": "gun", "channel": "Bu2JpsiK"},
        "events": 200,
        "events_per_job": 100,
        # the detailed simulation here (resumption, retries, cancel), so both simulation steps
        # run in CI; test_flash.py runs the default, flash, with the validation report
        "simulation": "detailed",
        "seed": 1000,
        "output": str(out / "prod"),
        "reference": {"events": 0},
        "retries": 1,
        "resources": {"cpu": "1", "memory": "1Gi"},
        "image": IMAGE,
    }
    data.update(changes)
    return data


def _cmd(payload: Service, command: str, request: Path) -> list[str]:
    args = [str(FLASHLINK), "production", command, str(request)]
    if command == "run":
        args += ["--image-map", f"{IMAGE}={payload.env['PAYLOAD_SIF']}", "--poll-interval", "0.5"]
    return args


def _env(payload: Service) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(payload.env['APPTAINER']).parent}:{env['PATH']}"
    env["COLUMNS"] = "120"
    return env


def _write(tmp: Path, data: dict[str, Any]) -> Path:
    path = tmp / "request.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _entries(tree: Any) -> int:
    return int(tree.num_entries)


def test_production_runs_merges_and_records(payload: Service, shared_tmp: Path) -> None:
    import uproot

    request = _write(shared_tmp, _request(shared_tmp))
    run = subprocess.run(
        _cmd(payload, "run", request),
        env=_env(payload),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = shared_tmp / "prod"
    assert f"merged ntuple: {out}/ntuple.root" in run.stdout
    chunks = sorted(out.glob("jobs/j*/a1/ntuple.root"))
    assert len(chunks) == 2
    per_chunk = []
    for chunk in chunks:
        with uproot.open(chunk) as f:
            per_chunk.append(_entries(f["DecayTree"]))
    with uproot.open(out / "ntuple.root") as f:
        merged = _entries(f["DecayTree"])
        masses = f["DecayTree"]["B_M"].array(library="np")
    assert merged == sum(per_chunk) > 50  # most B+ -> J/psi K+ events give a candidate
    assert 5.0 < float(masses.mean()) < 5.6  # around the B+ mass, 5.279 GeV
    record = json.loads((out / "provenance.json").read_text())
    assert record["events"] == 200
    assert record["candidates"] == merged
    assert record["submissions"] == 2
    assert [j["seed"] for j in record["jobs"]] == [1000, 1001]
    assert record["bytes_per_event"] > 0
    assert all(
        set(j["container_seconds"]) == {"generate", "detailed", "ntuple"} for j in record["jobs"]
    )
    assert "100 events in" in (out / "jobs/j0000/a1/logs/generate.log").read_text()
    # nothing left to do: a re-run submits nothing and keeps the outputs
    again = subprocess.run(
        _cmd(payload, "run", request),
        env=_env(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert Journal(out).submissions() == 2
    status = subprocess.run(
        _cmd(payload, "status", request), capture_output=True, text=True, timeout=60, check=False
    )
    assert "2/2 done; 2 submissions" in status.stdout


def test_killed_driver_resumes_without_resubmitting(payload: Service, shared_tmp: Path) -> None:
    request = _write(shared_tmp, _request(shared_tmp, events=300))
    out = shared_tmp / "prod"
    driver = subprocess.Popen(
        _cmd(payload, "run", request),
        env=_env(payload),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("jobs/*/done.json")):
            assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
            assert time.monotonic() < deadline, "no job finished in 240 s"
            time.sleep(0.2)
        # a second driver of the same production is refused while the first one runs
        second = subprocess.run(
            _cmd(payload, "run", request),
            env=_env(payload),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        said = " ".join((second.stdout + second.stderr).split())
        assert second.returncode == 2, said
        assert f"already being run by another driver (process {driver.pid}," in said
    finally:
        driver.send_signal(signal.SIGKILL)  # a crash: no cleanup, jobs keep running
        driver.wait(timeout=30)
        if driver.stderr:
            driver.stderr.close()
    done_before = len(list(out.glob("jobs/*/done.json")))
    assert done_before < 3
    run = subprocess.run(
        _cmd(payload, "run", request),
        env=_env(payload),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(list(out.glob("jobs/*/done.json"))) == 3
    journal = Journal(out)
    # each job submitted exactly once: the unfinished ones were adopted, not submitted again
    assert journal.submissions() == 3, journal.entries()
    runs = [e for e in journal.entries() if e["event"] == "run"]
    assert len(runs) == 2  # the refused driver wrote nothing; the killed one left no lock
    assert len(runs[1]["todo"]) == 3 - done_before
    assert json.loads((out / "provenance.json").read_text())["events"] == 300


def test_failing_job_is_retried_and_its_logs_kept(payload: Service, shared_tmp: Path) -> None:
    models = shared_tmp / "no-models"
    models.mkdir()
    data = _request(
        shared_tmp, events=20, events_per_job=20, simulation="flash", models=str(models), retries=1
    )
    request = _write(shared_tmp, data)
    run = subprocess.run(
        _cmd(payload, "run", request),
        env=_env(payload),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 job(s) failed after 1 retries" in run.stderr
    out = shared_tmp / "prod"
    for attempt in ("a1", "a2"):
        log = (out / "jobs/j0000" / attempt / "logs/flash.log").read_text()
        job_logs = [p.read_text() for p in out.glob(".flashlink/plugin/jobs/*/*/job.log")]
        # the flash step names the missing model manifest
        assert "chain.json" in log, (Journal(out).entries(), job_logs)
        assert (out / "jobs/j0000" / attempt / "events.parquet").exists()
    ends = [e for e in Journal(out).entries() if e["event"] == "end"]
    assert [(e["attempt"], e["phase"], e["exit_codes"]["generate"]) for e in ends] == [
        (1, "Failed", 0),
        (2, "Failed", 0),
    ]
    assert not (out / "jobs/j0000/done.json").exists()
    assert not (out / "ntuple.root").exists()


def _running_steps(out: Path) -> int:
    """Processes of this production's steps (``flashlink sim ...`` with the output path)."""
    n = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        n += "\0sim\0" in cmdline and str(out) in cmdline
    return n


def test_cancel_stops_the_running_jobs(payload: Service, shared_tmp: Path) -> None:
    request = _write(shared_tmp, _request(shared_tmp, events=4000, events_per_job=2000))
    out = shared_tmp / "prod"
    driver = subprocess.Popen(
        _cmd(payload, "run", request),
        env=_env(payload),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _running_steps(out) < 2:
            assert time.monotonic() < deadline, "the jobs did not start in 120 s"
            time.sleep(0.2)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    cancel = subprocess.run(
        _cmd(payload, "cancel", request),
        env=_env(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cancel.returncode == 0, cancel.stderr
    assert "cancelled 2 pod(s)" in cancel.stdout
    deadline = time.monotonic() + 30
    while _running_steps(out):
        assert time.monotonic() < deadline, "steps still running 30 s after the cancel"
        time.sleep(0.2)
    status = subprocess.run(
        _cmd(payload, "status", request), capture_output=True, text=True, timeout=60, check=False
    )
    assert status.stdout.count("cancelled") == 2, status.stdout
