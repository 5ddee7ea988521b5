"""No string from a Pod is ever executed as shell code, and every one arrives byte-exact.

Hypothesis renders Pods with arbitrary text in names, labels, annotations, commands, args, env
names and values, working directories, mount paths, ConfigMap keys and values, and runs each
script with bash. The "runtime" is a capture program (``argv_capture.py``, written below) that
records the argv and environment bash hands it and the files in every bound volume: that is
exactly the boundary this property is about. Canary fragments (``$(touch …)``, backticks,
quote-breaking) would create a file if any string were evaluated. A second test sends
generated strings through the real Apptainer, whose environment injection re-evaluates values.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flashlink.jobscript import InvalidPodError, UnsupportedError, parse_config, render
from flashlink.jobscript.env import expand

from ._pods import config_map, container, request
from .conftest import IMAGE

CAPTURE = r"""
import base64, json, os, sys
from pathlib import Path
out = Path(os.environ["CAPTURE_DIR"]) / f"{os.getpid()}.json"
argv = sys.argv[1:]
volumes = {}
i = 0
while i < len(argv):
    if argv[i] in ("--volume", "--bind"):
        src, dst = argv[i + 1].split(":")[:2]
        files = {}
        root = Path(src)
        for p in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if p.is_file():
                rel = str(p.relative_to(root)) if p != root else "."
                files[rel] = base64.b64encode(p.read_bytes()).decode()
        volumes[dst] = files
        i += 2
    else:
        i += 1
env = {k.decode("utf-8", "surrogateescape"): base64.b64encode(v).decode()
       for k, v in os.environb.items()}
env_file = ""
if "--env-file" in argv:
    env_file = Path(argv[argv.index("--env-file") + 1]).read_text()
out.write_text(json.dumps({"argv": argv, "env": env, "volumes": volumes, "env_file": env_file}))
"""

CANARIES = [
    "$(touch {c})",
    "`touch {c}`",
    "'; touch {c}; '",
    '"; touch {c}; "',
    "\ntouch {c}\n",
    "$(touch {c}",
    "\\'; touch {c} #",
    "${{IFS}}touch${{IFS}}{c}",
]

_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)


def _nasty(canary: str) -> st.SearchStrategy[str]:
    fragments = st.sampled_from([c.format(c=canary) for c in CANARIES])
    return st.one_of(
        _text, st.lists(st.one_of(_text, fragments), min_size=1, max_size=4).map("".join)
    )


@st.composite
def _pods(draw: st.DrawFn, canary: str) -> dict[str, Any]:
    nasty = _nasty(canary)
    key = nasty.filter(lambda k: k not in ("", ".", "..") and "/" not in k)
    env_name = nasty.filter(lambda n: n != "" and "=" not in n)
    return {
        "name": draw(nasty),
        "namespace": draw(nasty),
        "label": draw(nasty),
        "annotation": draw(nasty),
        "command": draw(st.lists(nasty, min_size=1, max_size=3)),
        "args": draw(st.lists(nasty, max_size=3)),
        "env": draw(st.dictionaries(env_name, nasty, max_size=4)),
        "workdir": "/" + draw(nasty.filter(lambda w: ":" not in w)),
        "mount": "/mnt/" + draw(nasty.filter(lambda m: ":" not in m and "," not in m)),
        "files": draw(
            st.dictionaries(
                key, st.one_of(nasty.map(str.encode), st.binary(max_size=40)), max_size=3
            )
        ),
    }


def _render(spec: dict[str, Any], capture: Path) -> Any:
    from flashlink.kube import parse_pod

    pod = parse_pod(
        {
            "metadata": {
                "name": spec["name"],
                "namespace": spec["namespace"],
                "uid": "u",
                "labels": {"l": spec["label"]},
                "annotations": {"a": spec["annotation"]},
            },
            "spec": {
                "containers": [
                    container(
                        command=spec["command"],
                        args=spec["args"],
                        workingDir=spec["workdir"],
                        env=[{"name": k, "value": v} for k, v in spec["env"].items()],
                        volumeMounts=[{"name": "cfg", "mountPath": spec["mount"]}],
                    )
                ],
                "volumes": [{"name": "cfg", "configMap": {"name": "cm"}}],
            },
        }
    )
    cm = config_map("cm", binary=spec["files"])
    config = parse_config(
        {
            "runtime": "podman",
            "podman": {"executable": str(capture)},
            "images": {"registry_fallback": False},
        }
    )
    return render(request(pod, config_maps=(cm,)), config)


@pytest.fixture
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("capture") / "argv_capture.py"
    path.write_text(f"#!{sys.executable}\n{CAPTURE}")
    path.chmod(0o755)
    return path


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_pod_strings_are_data_never_code(
    data: st.DataObject, capture: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    run_dir.mkdir()
    canary = run_dir / "CANARY"
    spec = data.draw(_pods(str(canary)))
    path = run_dir / "job.sh"
    path.write_text(_render(spec, capture).text)
    proc = subprocess.run(
        ["bash", str(path)],
        cwd=run_dir,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "FLASHLINK_JOB_DIR": str(run_dir), "CAPTURE_DIR": str(run_dir)},
    )
    assert not canary.exists(), "a Pod string was executed"
    assert proc.returncode == 0, proc.stderr.decode()
    (record_path,) = run_dir.glob("[0-9]*.json")
    record = json.loads(record_path.read_text())
    argv: list[str] = record["argv"]
    env = {k: base64.b64decode(v).decode() for k, v in record["env"].items()}
    expanded: dict[str, str] = {}
    for name, value in spec["env"].items():
        expanded[name] = expand(value, expanded)
    # everything arrived exactly: env values, command (as --entrypoint JSON), args, workdir
    file_entries = record["env_file"].split("\n")  # Podman reads it line by line
    for name, value in expanded.items():
        assert f"{name}={value}" in argv or f"{name}={value}" in file_entries
    assert json.loads(argv[argv.index("--entrypoint") + 1]) == [
        expand(c, expanded) for c in spec["command"]
    ]
    image = argv.index(IMAGE)
    assert argv[image + 1 :] == [expand(a, expanded) for a in spec["args"]]
    assert argv[argv.index("--workdir") + 1] == os.path.normpath(spec["workdir"])
    files = record["volumes"][os.path.normpath(spec["mount"])]
    assert {k: base64.b64decode(v) for k, v in files.items()} == spec["files"]
    assert "FL_POD_NAME" not in env  # script variables stay in the script


def test_nul_is_refused_with_the_field_named(capture: Path) -> None:
    spec = {
        "name": "p",
        "namespace": "n",
        "label": "l",
        "annotation": "a",
        "command": ["a\x00b"],
        "args": [],
        "env": {},
        "workdir": "/",
        "mount": "/m",
        "files": {},
    }
    with pytest.raises(
        InvalidPodError, match=r"spec.containers\[0\].command\[0\]: contains a NUL byte"
    ):
        _render(spec, capture)


_env_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40
)


@pytest.mark.apptainer
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(
        st.one_of(
            _env_text,
            st.sampled_from(["\\", "$HOME", "`id`", '"', "\\$", "$(id)", "\\\n", "\x81a", "\x9f"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_apptainer_environment_arrives_byte_exact(
    values: list[str], apptainer: Any, shared_tmp: Path
) -> None:
    # Apptainer evaluates injected values as double-quoted shell text; the renderer undoes that.
    from flashlink.kube import parse_pod

    names = [f"V{i}" for i in range(len(values))]
    script = 'printf "%s\\0" ' + " ".join(f'"${n}"' for n in names)
    pod = parse_pod(
        {
            "metadata": {"name": "p", "uid": "u"},
            "spec": {
                "containers": [
                    container(
                        command=["sh", "-c", script],
                        env=[
                            {"name": n, "value": v.replace("$", "$$")}
                            for n, v in zip(names, values, strict=True)
                        ],
                    )
                ]
            },
        }
    )
    if any("\x80" in v or "\x81" in v for v in values):  # refused when rendering
        with pytest.raises(UnsupportedError, match="U\\+0080"):
            render(pod)
        return
    config = parse_config(
        {
            "apptainer": {"executable": apptainer["APPTAINER"]},
            "images": {"overrides": {IMAGE: apptainer["TEST_IMAGE_SIF"]}},
        }
    )
    run_dir = shared_tmp / f"a{len(list(shared_tmp.iterdir()))}"
    run_dir.mkdir()
    (run_dir / "job.sh").write_text(render(pod, config).text)
    proc = subprocess.run(
        ["bash", "job.sh"], cwd=run_dir, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    log = (run_dir / "containers/main/log").read_bytes()
    assert log.split(b"\0")[:-1] == [v.encode() for v in values]
