"""A flash production end to end, the default kind: the shipped models in the jobs, a reference
sample simulated in detail beside them, the merged ntuple and the validation report.

Real plugin on the local backend, real Apptainer with the payload SIF and this installation
bound in (ci/services/payload.sh), ``flashlink production run`` in a subprocess as users run it.
The report's bounds are those tests/sim/validation/test_report.py asserts on a sample of the
same size (500 gun events), loosened where this reference has one flash replica instead of two.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from flashlink.cli.demo import summarize_report
from servicekit import Service
from servicekit._service import WORK

pytestmark = [pytest.mark.apptainer, pytest.mark.payload]
FLASHLINK = Path(sys.executable).parent / "flashlink"
IMAGE = "ghcr.io/flashlink/payload:latest"
EVENTS, PER_JOB, REFERENCE = 400, 200, 500


def _run(payload: Service, request: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(payload.env['APPTAINER']).parent}:{env['PATH']}"
    env["COLUMNS"] = "200"
    return subprocess.run(
        [
            str(FLASHLINK),
            "production",
            "run",
            str(request),
            "--image-map",
            f"{IMAGE}={payload.env['PAYLOAD_SIF']}",
            "--poll-interval",
            "0.5",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def production(payload: Service) -> Iterator[tuple[Path, str]]:
    """One flash production shared by the tests below (~2 minutes on 2 busy cores)."""
    # shared_tmp is per test: the same kind of directory (seen by jobs), for the module
    out = WORK / "work" / f"flash-{os.getpid()}-{time.monotonic_ns()}"
    out.mkdir(parents=True, mode=0o777)
    request = out / "request.yaml"
    # no `simulation:` field: flash is the default, and `models:` defaults to the shipped set
    data: dict[str, Any] = {
        "name": "bu2jpsik-flash",
        "event": {"kind": "gun", "channel": "Bu2JpsiK"},
        "events": EVENTS,
        "events_per_job": PER_JOB,
        "seed": 2000,
        "output": str(out / "prod"),
        "reference": {"events": REFERENCE},
        "retries": 1,
        "resources": {"cpu": "1", "memory": "2Gi"},
        "image": IMAGE,
    }
    request.write_text(yaml.safe_dump(data))
    result = _run(payload, request)
    assert result.returncode == 0, result.stdout + result.stderr
    yield out / "prod", result.stdout
    shutil.rmtree(out, ignore_errors=True)


def test_flash_is_what_the_jobs_ran(production: tuple[Path, str]) -> None:
    out, _ = production
    record = json.loads((out / "provenance.json").read_text())
    assert record["request"]["simulation"] == "flash"
    assert record["request"]["models"] == "shipped"
    assert all(
        set(j["container_seconds"]) == {"generate", "flash", "ntuple"} for j in record["jobs"]
    )
    # the shipped set's manifests are hashed into the provenance
    assert len(record["model_hashes"]["chain.json"]) == 64
    # the flash step's outputs, read by the ntuple step: every generated event flash-simulated
    import pyarrow.parquet as pq

    for job in ("j0000", "j0001"):
        pvs = pq.read_table(out / f"jobs/{job}/a1/flash/pvs.parquet", columns=["event_id"])
        assert pvs.num_rows == PER_JOB, (job, pvs.num_rows)  # one primary vertex per event


def test_merged_ntuple_counts(production: tuple[Path, str]) -> None:
    import uproot

    out, stdout = production
    assert f"merged ntuple: {out}/ntuple.root" in stdout
    per_chunk, distinct = [], 0
    for index, chunk in enumerate(sorted(out.glob("jobs/j*/a1/ntuple.root"))):
        with uproot.open(chunk) as f:
            numbers = f["DecayTree"]["eventNumber"].array(library="np")
            runs = f["DecayTree"]["runNumber"].array(library="np")
        # every candidate comes from one of the chunk's own events, numbered by its job
        assert numbers.min() >= 0
        assert numbers.max() < PER_JOB, (chunk, numbers.max())
        assert set(runs.tolist()) == {index + 1}, chunk
        per_chunk.append(len(numbers))
        distinct += len(np.unique(numbers))
    assert len(per_chunk) == EVENTS // PER_JOB
    with uproot.open(out / "ntuple.root") as f:
        tree = f["DecayTree"]
        merged = int(tree.num_entries)
        masses = tree["B_M"].array(library="np")
        matched = tree["B_TRUEMATCH"].array(library="np").astype(bool)
        run_event = np.stack([tree[b].array(library="np") for b in ("runNumber", "eventNumber")])
    # eventNumber restarts in every job: alone it merges events of different jobs, with
    # runNumber every event with a candidate stays one event of the merged ntuple
    assert len({tuple(c) for c in run_event.T.tolist()}) == distinct
    assert len(np.unique(run_event[1])) < distinct
    assert set(np.unique(run_event[0]).tolist()) == set(range(1, EVENTS // PER_JOB + 1))
    record = json.loads((out / "provenance.json").read_text())
    assert record["events"] == EVENTS
    assert merged == sum(per_chunk) == record["candidates"]
    # the flash models reconstruct most signal decays: ~0.8 candidates per gun event measured
    # (1,636 in 2,000 events), half of them the true combination
    assert 0.5 * EVENTS < merged < 1.5 * EVENTS
    assert 0.3 * EVENTS < int(matched.sum()) <= EVENTS
    assert abs(float(np.median(masses[matched])) - 5.279) < 0.01  # the B+ mass, GeV


def test_report_exists_and_its_metrics_are_sane(production: tuple[Path, str]) -> None:
    out, stdout = production
    report = out / "reference/a1/report"
    assert f"validation report: {report}/index.html" in stdout
    page = (report / "index.html").read_text()
    assert "Done-criteria" in page
    for png in ("model_resolution.png", "efficiency.png", "mass.png"):
        assert png in page
        assert (report / png).stat().st_size > 5000
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["label"] == "bu2jpsik-flash"
    # the bounds of tests/sim/validation/test_report.py (a 500-event sample)
    for name, info in metrics["models"].items():
        for col, m in info.get("features", {}).items():
            assert m["w1_core"] < max(0.15, 4 * m["w1_floor"]), (name, col, m)
            assert m["ks"] < 0.2, (name, col, m)
    aucs = {name: info["c2st"]["auc"] for name, info in metrics["models"].items()}
    for name in ("track_type", "is_muon"):
        if name in aucs:
            assert aucs[name] < 0.6, aucs
    assert all(a < 0.92 for a in aucs.values() if math.isfinite(a)), aucs
    assert metrics["efficiency"]["reconstructed"]["within_2sigma"] >= 0.6
    for k in ("qop", "x", "tx"):
        assert abs(metrics["pulls"][k]["rel_diff"]) < 0.3, metrics["pulls"][k]
    mass = metrics["mass_peak"]
    # one flash replica (not two): ~180 truth-matched candidates on each side
    assert mass["flash"]["matched"] > 100, mass
    assert mass["ref"]["matched"] > 100, mass
    assert abs(mass["mean_rel_diff"]) < 0.002
    assert abs(mass["width_rel_diff"]) < 0.3


def test_the_demo_summary_reads_the_report(production: tuple[Path, str]) -> None:
    # what `flashlink demo` prints after the paths: the report's numbers, in words
    out, _ = production
    metrics = json.loads((out / "reference/a1/report/metrics.json").read_text())
    lines = {line.split("  ")[0]: line for line in summarize_report(metrics)}
    assert set(lines) == {
        "B mass peak",
        "efficiency",
        "distributions",
        "pull widths",
        "strict checks",
    }
    mass = metrics["mass_peak"]
    assert f"({mass['flash']['matched']} candidates)" in lines["B mass peak"]
    assert (
        f"width {100 * mass['width_rel_diff']:+.1f} % +- {100 * mass['width_rel_diff_err']:.1f} %"
        in lines["B mass peak"]
    )
    features = [m for i in metrics["models"].values() for m in i.get("features", {}).values()]
    assert f" of {len(features)} model outputs" in lines["distributions"]
    assert metrics["summary"]["checks"] in lines["strict checks"]
