"""The simulation commands read and write ``s3://`` URLs on the real S3 server (SeaweedFS).

The commands run as a job runs them, ``flashlink sim ...`` in a subprocess, with the S3
endpoint and credentials only in the standard AWS variables of its environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flashlink.sim.errors import StorageError
from flashlink.sim.io import iter_tables, local_input, staged_output
from servicekit import Service
from servicekit.s3 import aws_env, client, new_bucket

pytestmark = pytest.mark.s3
FLASHLINK = Path(sys.executable).parent / "flashlink"


@pytest.fixture
def bucket(s3: Service, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in aws_env(s3).items():
        monkeypatch.setenv(key, value)
    return new_bucket(s3, "sim")


def _keys(s3: Service, bucket: str, prefix: str = "") -> dict[str, int]:
    listed = client(s3).list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o["Size"] for o in listed}


def _sim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # cwd: a command that took the URL for a path would leave an "s3:" directory there
    return subprocess.run(
        [str(FLASHLINK), "sim", *args],
        env={**os.environ, "COLUMNS": "300"},  # error messages on one line
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_generate_simulate_ntuple_on_s3(s3: Service, bucket: str, tmp_path: Path) -> None:
    import uproot

    base = f"s3://{bucket}/chain"
    steps = [
        ("generate", f"{base}/events.hepmc3", "--events", "30", "--seed", "3"),
        ("generate", f"{base}/events.parquet", "--events", "30", "--seed", "3"),
        ("detailed", f"{base}/events.hepmc3", f"{base}/from-hepmc", "--seed", "3"),
        ("detailed", f"{base}/events.parquet", f"{base}/detailed", "--seed", "3"),
        ("ntuple", f"{base}/detailed", f"{base}/ntuple", "--format", "root,parquet"),
        # the report is a directory written locally and uploaded (a sample against itself:
        # only the I/O is under test here; --no-plots keeps it to ~15 CPU-s)
        ("validate", f"{base}/detailed", f"{base}/detailed", f"{base}/report", "--no-plots"),
    ]
    for step in steps:
        done = _sim(*step, cwd=tmp_path)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    assert not list(tmp_path.iterdir())  # nothing written locally
    keys = _keys(s3, bucket, "chain/")
    for name in ("events.hepmc3", "events.parquet", "ntuple.root", "ntuple.parquet"):
        assert keys.get(f"chain/{name}", 0) > 0, keys
    assert keys.get("chain/report/index.html", 0) > 0, keys
    assert keys.get("chain/report/metrics.json", 0) > 0, keys
    for table in ("tracks", "particles", "pvs"):
        assert keys.get(f"chain/detailed/{table}.parquet", 0) > 0, keys
    # the same events through HepMC3 and Parquet: the same number of generated particles
    n = {
        src: sum(len(t["pid"]) for t in iter_tables(f"{base}/{src}/particles.parquet"))
        for src in ("detailed", "from-hepmc")
    }
    assert n["detailed"] == n["from-hepmc"] > 0
    with local_input(f"{base}/ntuple.root") as local, uproot.open(local) as f:
        entries = f["DecayTree"].num_entries
    rows = sum(len(next(iter(t.values()))) for t in iter_tables(f"{base}/ntuple.parquet"))
    assert entries == rows > 15  # most B+ -> J/psi K+ gun events give a candidate


def test_staged_output_uploads_only_a_finished_directory(s3: Service, bucket: str) -> None:
    url = f"s3://{bucket}/report"
    seen: list[Path] = []

    def failing_writer() -> None:
        with staged_output(url, directory=True) as local:
            seen.append(Path(local))
            (Path(local) / "half.html").write_text("<p>")
            raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="the writer failed"):
        failing_writer()
    assert _keys(s3, bucket, "report") == {}
    assert not seen[0].exists()  # the temporary copy is gone either way
    with staged_output(url, directory=True) as local:
        (Path(local) / "plots").mkdir()
        (Path(local) / "plots" / "a.png").write_bytes(b"png")
        (Path(local) / "index.html").write_text("<html>")
    assert _keys(s3, bucket, "report") == {"report/index.html": 6, "report/plots/a.png": 3}
    with local_input(url) as copy:
        assert (Path(copy) / "plots" / "a.png").read_bytes() == b"png"


def test_missing_and_bad_urls_name_the_url(s3: Service, bucket: str, tmp_path: Path) -> None:
    missing = f"s3://{bucket}/nothing/here.hepmc3"
    with pytest.raises(StorageError, match=r"nothing/here\.hepmc3.*does not exist"):
        local_input(missing).__enter__()
    done = _sim("detailed", missing, f"s3://{bucket}/out", cwd=tmp_path)
    assert done.returncode == 2
    assert "nothing/here.hepmc3" in done.stderr
    done = _sim("detailed", f"s3://{bucket}/no.parquet", f"s3://{bucket}/out", cwd=tmp_path)
    assert done.returncode == 2
    assert f"s3://{bucket}/no.parquet" in done.stderr
    done = _sim("train", str(tmp_path), "--out", f"s3://{bucket}/models", cwd=tmp_path)
    assert done.returncode == 2
    assert "training writes a local model-set directory" in done.stderr
