"""The production as a Snakemake 9 workflow: the generated Snakefile, and the ``flashlink``
executor plugin submitting each Snakemake job as a Pod to the real plugin (local backend,
Apptainer, the payload SIF with this installation bound in)."""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from flashlink.production import EmbeddedPlugin, PayloadSettings, parse_request, software_binds
from flashlink.production.snakemake import snakefile_text, snakemake_job_pod, write_snakefile
from servicekit import Service

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
IMAGE = "ghcr.io/flashlink/payload:latest"


def _request(out: Path, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "smk-ci",
        "event": {"kind": "gun", "channel": "Bu2JpsiK"},
        "events": 60,
        "events_per_job": 30,
        "simulation": "detailed",
        "seed": 5,
        "output": str(out),
        "reference": {"events": 0},
        "image": IMAGE,
    }
    data.update(changes)
    return data


def test_snakefile_dry_run(tmp_path: Path) -> None:
    """Snakemake itself parses the workflow and plans 2 x (generate, simulate, ntuple) + merge."""
    request = parse_request(
        _request(tmp_path / "out", reference={"events": 50}, simulation="flash", models="/m/o'dd")
    )
    text = snakefile_text(request, PayloadSettings())
    shells = [
        ast.literal_eval(line.split("shell: ", 1)[1])
        for line in text.splitlines()
        if line.startswith("    shell: ")
    ]
    simulate = next(cmd for cmd in shells if " sim flash " in cmd)
    assert "/m/o'dd" in shlex.split(simulate)  # a quote in a value stays quoted data
    path = write_snakefile(request, PayloadSettings())
    dry = subprocess.run(
        [str(SNAKEMAKE), "-n", "-d", str(path.parent), "-s", str(path), "--cores", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    for rule, count in (
        ("generate", 2),
        ("simulate", 2),
        ("ntuple", 2),
        ("merge", 1),
        ("reference", 1),
        ("validate", 1),
    ):
        assert f"{rule}" in dry.stdout
        assert any(line.split() == [rule, str(count)] for line in dry.stdout.splitlines()), (
            dry.stdout
        )


def test_job_pod_is_schema_valid() -> None:
    pod = snakemake_job_pod(
        name="smk-generate-1",
        command="python -m snakemake ...",
        image=IMAGE,
        workdir="/data/w",
        binds=("/sw", "/data/w"),
        site="cnaf",
        cpus=2,
        mem_mb=1500,
    )
    container = pod["spec"]["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "1500Mi"}
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/data/w", "/sw"]
    assert pod["spec"]["tolerations"][0]["value"] == "cnaf"


@pytest.mark.apptainer
@pytest.mark.payload
def test_executor_plugin_runs_the_workflow(payload: Service, shared_tmp: Path) -> None:
    import uproot

    out = shared_tmp / "smk"
    request = parse_request(_request(out))
    _, command, binds = software_binds()
    path = write_snakefile(request, PayloadSettings(command=command, binds=binds))
    with EmbeddedPlugin(
        shared_tmp / "plugin",
        runtime="apptainer",
        executable=payload.env["APPTAINER"],
        image_overrides={IMAGE: payload.env["PAYLOAD_SIF"]},
        host_paths=[str(out), *binds],
    ) as url:
        run = subprocess.run(
            [
                str(SNAKEMAKE),
                "-d",
                str(out),
                "-s",
                str(path),
                "--executor",
                "flashlink",
                "--flashlink-url",
                url,
                "--flashlink-image",
                IMAGE,
                "--flashlink-bind",
                ":".join(binds),
                "--jobs",
                "4",
                "--seconds-between-status-checks",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    logs = sorted(p.name for p in (out / ".snakemake" / "flashlink_logs").iterdir())
    assert len(logs) == 6  # generate, simulate, ntuple for each of the 2 chunks: one Pod each
    with uproot.open(out / "smk" / "ntuple.root") as merged:
        total = merged["DecayTree"].num_entries
    parts = 0
    for job in ("j0000", "j0001"):
        with uproot.open(out / "smk" / job / "ntuple.root") as f:
            parts += f["DecayTree"].num_entries
    assert total == parts > 10
