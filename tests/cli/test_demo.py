"""``flashlink demo``, the README's main command, as a newcomer runs it: a small flash
production on the local backend ending with the paths of the ntuple and the report, and the
clear errors when something it needs is missing (the single-Pod walk-through, ``flashlink
plugin demo``, is tested in tests/plugin/test_cli.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from servicekit import Service

FLASHLINK = Path(sys.executable).parent / "flashlink"


def _demo(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLASHLINK), "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines on narrow terminals


def test_without_the_payload_image_it_names_the_setup_command(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = str(FLASHLINK.parent)  # no apptainer on the PATH
    env["FLASHLINK_CI_CACHE"] = str(tmp_path)  # and no CI-installed wrapper nor payload SIF
    out = _demo("--output", str(tmp_path / "out"), env=env, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "run `./dev setup payload`" in _flat(out.stderr)
    assert f"{tmp_path}/payload/payload.sif" in _flat(out.stderr)
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events", "0"], "Invalid value for '--events'"),
        (["--events", "10", "--events-per-job", "20"], "--events-per-job 20 is larger than"),
    ],
)
def test_bad_options_are_refused(args: list[str], message: str, tmp_path: Path) -> None:
    env = dict(os.environ, COLUMNS="200")
    out = _demo(*args, "--output", str(tmp_path / "out"), env=env, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in _flat(out.stderr), out.stderr


@pytest.mark.apptainer
@pytest.mark.payload
def test_the_demo_produces_an_ntuple_and_resumes(payload: Service, shared_tmp: Path) -> None:
    import uproot

    env = dict(os.environ, COLUMNS="200")
    env["PATH"] = f"{Path(payload.env['APPTAINER']).parent}:{env['PATH']}"
    # the demo finds the payload SIF where ./dev setup payload puts it: <cache>/payload/
    env["FLASHLINK_CI_CACHE"] = str(Path(payload.env["PAYLOAD_SIF"]).parents[1])
    out_dir = shared_tmp / "demo"
    # CI size: 400 events in 2 jobs and no reference sample, whose report (the long pole, ~1
    # minute) tests/production/test_flash.py checks along with the demo's summary of it
    args = ["--events", "400", "--events-per-job", "200", "--reference", "0"]
    run = _demo(*args, "--output", str(out_dir), env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    text = run.stdout
    assert "400 particle-gun B+ -> J/psi K+ events, flash simulation" in text
    assert f"merged ntuple: {out_dir}/ntuple.root" in text
    assert "no validation report: --reference 0" in text
    request = yaml.safe_load((out_dir / "request.yaml").read_text())
    assert request["simulation"] == "flash"
    record = json.loads((out_dir / "provenance.json").read_text())
    assert record["events"] == 400
    assert [j["events"] for j in record["jobs"]] == [200, 200]
    with uproot.open(out_dir / "ntuple.root") as f:
        entries = int(f["DecayTree"].num_entries)
    assert entries == record["candidates"] > 200  # ~0.8 candidates per event measured

    # the same demo again resumes it: nothing left to run, the same paths
    again = _demo(*args, "--output", str(out_dir), env=env, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"merged ntuple: {out_dir}/ntuple.root" in again.stdout
    journal = (out_dir / ".flashlink/journal.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["event"] == "submit" for line in journal) == 2

    # other options on the same directory would mix two productions: refused
    other = _demo(
        "--events", "900", "--reference", "0", "--output", str(out_dir), env=env, timeout=120
    )
    assert other.returncode == 2
    assert "holds a demo with another request" in _flat(other.stderr)
