"""Productions offloaded to the real Slurm cluster and the real HTCondor pool.

The Pods go through the plugin's ``slurm`` or ``htcondor`` site and run as the scheduler's
unprivileged user under Apptainer with the payload SIF and this installation bound in
read-only (the HTCondor pool's own root sees the checkout through ci/services/htcondor.sh).
Outputs go to a shared directory or to the real S3 server (SeaweedFS), whose endpoint and
credentials reach the jobs only as a Kubernetes Secret sent with ``/create``.
"""

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

from flashlink.production import (
    EmbeddedPlugin,
    Journal,
    Outputs,
    PayloadSettings,
    PluginClient,
    Production,
    parse_request,
    software_binds,
)
from servicekit import Service
from servicekit.s3 import aws_env, new_bucket

IMAGE = "ghcr.io/flashlink/payload:latest"
FLASHLINK = Path(sys.executable).parent / "flashlink"
pytestmark = [pytest.mark.apptainer, pytest.mark.payload]


def _backend(service: Service) -> dict[str, Any]:
    if service.name == "slurm":
        return {
            "slurm_conf": service["SLURM_CONF"],
            "partition": service["SLURM_PARTITION"],
            "job_user": service["SLURM_SUBMIT_USER"],
        }
    return {
        "condor_config": service["CONDOR_CONFIG"],
        "token_dir": str(Path(service["HTCONDOR_TOKENS"]) / "root"),
        "job_user": service["HTCONDOR_SUBMIT_USER"],
        # the smallest interval: the running containers' states come back in these snapshots
        "transfer_interval_seconds": 5,
    }


def _software() -> tuple[str, tuple[str, ...]]:
    _, command, binds = software_binds()
    for bind in binds:  # the batch jobs run as another user, who must reach the software
        closed = [str(p) for p in (Path(bind), *Path(bind).parents) if not p.stat().st_mode & 1]
        if closed:
            pytest.skip(f"this installation ({bind}) is not searchable by other users: {closed}")
    return command, binds


def _shared_dir(path: Path) -> Path:
    path.mkdir(mode=0o1777)
    path.chmod(0o1777)  # the jobs run as the scheduler's user, not as the driver's
    return path


def _plugin(
    service: Service, payload: Service, shared: Path, binds: tuple[str, ...], *extra: str
) -> EmbeddedPlugin:
    site = {
        "kind": service.name,
        "jobs_dir": str(_shared_dir(shared / "jobs")),
        "backend": _backend(service),
    }
    return EmbeddedPlugin(
        shared / "plugin",
        runtime="apptainer",
        executable=payload.env["APPTAINER"],
        image_overrides={IMAGE: payload.env["PAYLOAD_SIF"]},
        host_paths=[*extra, *binds],
        sites={"batch": site},
    )


def _request(name: str, output: str, events: int, **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "event": {"kind": "gun", "channel": "Bu2JpsiK"},
        "events": events,
        "events_per_job": 100,
        # the same generate -> simulate -> ntuple chain as flash, without a model set
        "simulation": "detailed",
        "output": output,
        "site": "batch",
        "reference": {"events": 0},
        "retries": 0,
        "resources": {"cpu": "1", "memory": "1Gi"},
        "image": IMAGE,
        **changes,
    }


def _entries(outputs: Outputs, url: str) -> int:
    import uproot

    with outputs.local_copy(url) as path, uproot.open(path) as f:
        return int(f["DecayTree"].num_entries)


def _holders(root: Path, secret: str) -> list[Path]:
    """Files under ``root`` that contain ``secret`` (unreadable ones, the batch user's, skipped:
    root reads everything here, so none are)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if secret.encode() in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def _check_secret_kept(secret: str, *roots: Path) -> None:
    """The S3 secret key is in no log, journal, record or Pod; only in the job scripts the
    plugin renders (the Secret's values are part of the job, as with every interLink plugin),
    and those are readable by their owner only."""
    for root in roots:
        for path in _holders(root, secret):
            assert path.name == "job.sh", f"the S3 secret key leaked into {path}"
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"


@pytest.mark.parametrize(
    ("kind", "storage"),
    [
        pytest.param("slurm", "directory", marks=pytest.mark.slurm, id="slurm-directory"),
        pytest.param(
            "htcondor", "s3", marks=[pytest.mark.htcondor, pytest.mark.s3], id="htcondor-s3"
        ),
    ],
)
def test_production_on_batch_site(  # noqa: PLR0917 - fixtures
    kind: str,
    storage: str,
    payload: Service,
    shared_tmp: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service: Service = request.getfixturevalue(kind)
    command, binds = _software()
    secret = ""
    if storage == "s3":
        s3: Service = request.getfixturevalue("s3")
        for key, value in aws_env(s3).items():  # the driver's own S3 settings (merge, provenance)
            monkeypatch.setenv(key, value)
        secret = s3["S3_SECRET_KEY"]
        output = f"s3://{new_bucket(s3, 'prod')}/bu2jpsik"
        extra: tuple[str, ...] = ()
    else:
        output = str(_shared_dir(shared_tmp / "prod"))
        extra = (output,)
    # on the HTCondor pool with S3 outputs the reference Pod runs too (generate, detailed,
    # flash with the shipped models, validate): the report is made on a batch node and uploaded
    reference = {"events": 60 if storage == "s3" else 0}
    production_request = parse_request(
        _request(f"bu2jpsik-{kind}", output, 200, reference=reference)
    )
    state = shared_tmp / "state"
    with _plugin(service, payload, shared_tmp, binds, *extra) as url:
        client = PluginClient(url)
        try:
            production = Production(
                production_request,
                client,
                PayloadSettings(command=command, binds=binds),
                poll_interval=1,
                state_dir=state if storage == "s3" else None,
            )
            snap = production.run()
        finally:
            client.close()
    root = state if storage == "s3" else Path(output)
    logs = sorted(root.glob("jobs/*/a1/logs/*.log"))
    assert snap.failed == 0, [p.read_text()[-800:] for p in logs]
    assert snap.done == 2 + (reference["events"] > 0)
    outputs = Outputs(output)
    chunks = [_entries(outputs, f"{output}/jobs/j000{i}/a1/ntuple.root") for i in (0, 1)]
    merged = _entries(outputs, f"{output}/ntuple.root")
    assert merged == sum(chunks) > 100  # most B+ -> J/psi K+ events give a candidate
    with outputs.local_copy(f"{output}/provenance.json") as path:
        record = json.loads(path.read_text())
    submissions = 2 + (reference["events"] > 0)  # the reference Pod is one more submission
    assert (record["events"], record["candidates"], record["submissions"]) == (
        200,
        merged,
        submissions,
    )
    assert record["merged_ntuple"] == f"{output}/ntuple.root"
    assert all(j["bytes"] > 0 for j in record["jobs"])
    assert "100 events in" in (root / "jobs/j0000/a1/logs/generate.log").read_text()
    if reference["events"]:
        report = f"{output}/reference/a1/report"
        with outputs.local_copy(f"{report}/metrics.json") as path:
            metrics = json.loads(path.read_text())
        assert set(metrics["models"]) >= {"resolution", "covariance", "track_type"}
        assert metrics["mass_peak"]["ref"]["matched"] > 10
        assert "checks" in metrics["summary"]
        with outputs.local_copy(f"{report}/index.html") as path:
            assert "Done-criteria" in path.read_text()
        assert record["report"] == f"{report}/index.html"
    if storage == "s3":
        assert not list(shared_tmp.glob("**/ntuple.root"))  # no output landed on a disk
        keys = sorted(outputs.sizes(output))
        assert [k for k in keys if not k.startswith("reference/")] == sorted(
            [f"jobs/j000{i}/a1/{f}" for i in (0, 1) for f in _CHUNK_FILES]
            + ["ntuple.root", "provenance.json"]
        )
        assert {
            f"reference/a1/{f}"
            for f in (
                "events.parquet",
                "detailed/tracks.parquet",
                "flash/tracks.parquet",
                "report/index.html",
                "report/metrics.json",
            )
        } <= set(keys)
        _check_secret_kept(secret, shared_tmp)
    else:
        owners = {p.stat().st_uid for p in Path(output).glob("jobs/*/a1/ntuple.root")}
        assert owners == {2000}  # written by the batch system's user inside the batch job


_CHUNK_FILES = [
    "events.parquet",
    "flash/neutrals.parquet",
    "flash/particles.parquet",
    "flash/pvs.parquet",
    "flash/tracks.parquet",
    "ntuple.root",
]


def _slurm_job_names(slurm: Service, production: str) -> list[str]:
    """Every batch job the cluster ran for ``production`` (Slurm's accounting)."""
    answer = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "--format=JobName", "-S", "now-2hours"],
        env={**os.environ, "SLURM_CONF": slurm["SLURM_CONF"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    return [n for n in answer.stdout.split() if production in n]


@pytest.fixture
def driver_env(s3: Service, payload: Service) -> dict[str, str]:
    env = {**os.environ, **aws_env(s3), "COLUMNS": "120"}
    env["PATH"] = f"{Path(payload.env['APPTAINER']).parent}:{env['PATH']}"
    return env


@pytest.mark.slurm
@pytest.mark.s3
def test_killed_driver_resumes_on_slurm_with_s3_outputs(  # noqa: PLR0917 - fixtures
    slurm: Service,
    s3: Service,
    payload: Service,
    shared_tmp: Path,
    driver_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGKILL the driver (``flashlink production run --plugin URL``) while the jobs run on
    Slurm; the re-run adopts the running ones, submits nothing twice and merges them all."""
    for key, value in aws_env(s3).items():
        monkeypatch.setenv(key, value)
    _, binds = _software()
    output = f"s3://{new_bucket(s3, 'prod')}/resume"
    name = f"resume-{os.getpid() % 100000}"
    request_file = shared_tmp / "request.yaml"
    request_file.write_text(yaml.safe_dump(_request(name, output, 300)))
    state = shared_tmp / "state"
    with _plugin(slurm, payload, shared_tmp, binds) as url:
        run = [str(FLASHLINK), "production", "run", str(request_file), "--plugin", url]
        run += ["--state-dir", str(state), "--poll-interval", "0.5"]
        driver = subprocess.Popen(
            run, env=driver_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 240
            while not list(state.glob("jobs/*/done.json")):
                assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
                assert time.monotonic() < deadline, "no job finished in 240 s"
                time.sleep(0.2)
        finally:
            driver.send_signal(signal.SIGKILL)  # a crash: no cleanup, the jobs keep running
            driver.wait(timeout=30)
            if driver.stderr:
                driver.stderr.close()
        done_before = len(list(state.glob("jobs/*/done.json")))
        assert done_before < 3  # killed mid-way: the cluster has 2 CPUs for 3 one-CPU jobs
        again = subprocess.run(
            run, env=driver_env, capture_output=True, text=True, timeout=400, check=False
        )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"merged ntuple: {output}/ntuple.root" in again.stdout
    journal = Journal(state)
    runs = [e for e in journal.entries() if e["event"] == "run"]
    assert len(runs) == 2
    assert len(runs[1]["todo"]) == 3 - done_before  # finished chunks are not redone
    # each job submitted once (the unfinished ones adopted), and ended once, successfully
    assert journal.submissions() == 3, journal.entries()
    ends = [(e["key"], e["phase"]) for e in journal.entries() if e["event"] == "end"]
    assert sorted(ends) == [(f"j000{i}", "Succeeded") for i in range(3)]
    assert len(_slurm_job_names(slurm, name)) == 3  # one batch job per pod: none lost, none twice
    outputs = Outputs(output)
    chunks = [_entries(outputs, f"{output}/jobs/j000{i}/a1/ntuple.root") for i in range(3)]
    with outputs.local_copy(f"{output}/provenance.json") as path:
        record = json.loads(path.read_text())
    merged = _entries(outputs, f"{output}/ntuple.root")
    assert merged == sum(chunks) == record["candidates"] > 150
    assert record["events"] == 300
    assert sorted(j["key"] for j in record["jobs"]) == ["j0000", "j0001", "j0002"]
    _check_secret_kept(s3["S3_SECRET_KEY"], shared_tmp)
