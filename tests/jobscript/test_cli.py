"""``flashlink jobscript render|run``: the files it accepts and its errors (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flashlink.cli import app
from servicekit import Service

from ._pods import UID

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pods"
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "uid": UID},
    "spec": {
        "containers": [
            {
                "name": "main",
                "image": "busybox:1.36",
                "command": ["cat", "/c/k"],
                "volumeMounts": [{"name": "c", "mountPath": "/c"}],
            }
        ],
        "volumes": [{"name": "c", "configMap": {"name": "cm"}}],
    },
}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["jobscript", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_renders(example: str) -> None:
    code, out, err = _invoke("render", str(EXAMPLES / example))
    assert code == 0, err
    assert out.startswith("#!/bin/bash\n")


def test_pod_with_its_objects_in_one_file_or_in_separate_ones(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump_all([POD, CM]))
    pod, cm = tmp_path / "pod.json", tmp_path / "cm.yaml"
    pod.write_text(json.dumps(POD))
    cm.write_text(yaml.safe_dump(CM))
    first = _invoke("render", str(both))
    second = _invoke("render", str(pod), "--configmap", str(cm))
    assert first[0] == 0
    assert first[1] == second[1]


@pytest.mark.parametrize("shape", ["object", "array"])
def test_interlink_create_requests(tmp_path: Path, shape: str) -> None:
    body: object = {
        "pod": POD,
        "container": [
            {
                "name": "main",
                "configMaps": [CM],
                "secrets": None,
                "projectedvolumemaps": None,
                "emptyDirs": None,
            }
        ],
    }
    path = tmp_path / "create.json"
    path.write_text(json.dumps(body if shape == "object" else [body]))
    code, out, err = _invoke("render", str(path), "--runtime", "podman", "--resources")
    assert code == 0, err
    assert "FL_RUNTIME_NAME=podman" in out
    assert json.loads(err.strip().splitlines()[-1])["outputs"][0] == "job.log"


def test_options_reach_the_script(tmp_path: Path) -> None:
    config = tmp_path / "build.toml"
    config.write_text('[apptainer]\nuserns = true\n[volumes]\nscratch_area = "/scratch"\n')
    out_file = tmp_path / "job.sh"
    code, _, err = _invoke(
        "render",
        str(EXAMPLES / "hello.yaml"),
        "--config",
        str(config),
        "--runtime-executable",
        "/opt/bin/apptainer",
        "--image",
        "busybox:1.36=/sif/bb.sif",
        "-o",
        str(out_file),
    )
    assert code == 0, err
    text = out_file.read_text()
    for expected in (
        "FL_RUNTIME=/opt/bin/apptainer",
        "--userns",
        "FLASHLINK_SCRATCH:-/scratch",
        "/sif/bb.sif",
    ):
        assert expected in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["render", "/nonexistent/pod.yaml"], "cannot read /nonexistent/pod.yaml"),
        (
            ["render", "{pod}", "--runtime", "docker"],
            "runtime: Input should be 'apptainer' or 'podman'",
        ),
        (["render", "{pod}", "--image", "busybox"], "expected REFERENCE=LOCAL"),
        (["render", "{bad}"], "spec.containers[0].image: every container needs an image"),
        (["render", "{pod}"], "ConfigMap 'cm' was not supplied"),
        (["render", "{notyaml}"], "is neither YAML nor JSON"),
        (["render", "{two}"], "holds 2 documents besides ConfigMaps and Secrets"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    files = {
        "pod": json.dumps(POD),
        "bad": json.dumps({"spec": {"containers": [{"name": "main"}]}}),
        "notyaml": "spec: [unclosed",
        "two": yaml.safe_dump_all([POD, POD]),
    }
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    code, _, err = _invoke(
        *[a.format(**{k: str(tmp_path / f"{k}.yaml") for k in files}) for a in args]
    )
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err


@pytest.mark.apptainer
def test_run_prints_states_and_exits_with_the_pods_code(
    apptainer: Service, shared_tmp: Path
) -> None:
    pod = {
        **POD,
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "sleep 1; echo hi; exit 4"],
                }
            ]
        },
    }
    path = shared_tmp / "pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    code, out, err = _invoke(
        "run",
        str(path),
        "--runtime-executable",
        apptainer["APPTAINER"],
        "--image",
        f"busybox:1.36={apptainer['TEST_IMAGE_SIF']}",
        "--job-dir",
        str(shared_tmp / "job"),
    )
    assert code == 4, err
    assert "main: running" in out
    assert "main: terminated (exit 4, Error)" in out
    assert (shared_tmp / "job/containers/main/log").read_text() == "hi\n"
