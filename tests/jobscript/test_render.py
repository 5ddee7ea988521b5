"""The renderer as a pure function: deterministic, bash-correct, and the runtimes' command lines."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flashlink.jobscript import JobScript, RenderConfig, parse_config, render

from ._pods import config_map, container, flat, pod, request, secret

SHELLCHECK = Path(sys.executable).with_name("shellcheck")


def _busy_pod() -> Any:
    """One Pod using most features, for the whole-script checks below."""
    return pod(
        container(
            "a",
            command=["sh", "-c"],
            args=["echo $(X) 'q' \"$Y\" `x`"],
            workingDir="/tmp",
            env=[{"name": "X", "value": "x"}, {"name": "Y", "value": "$HOME\n`id`"}],
            resources={"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": 1}},
            volumeMounts=[
                {"name": "e", "mountPath": "/e"},
                {"name": "c", "mountPath": "/c", "readOnly": True},
                {"name": "s", "mountPath": "/s/f", "subPath": "f"},
                {"name": "m", "mountPath": "/m", "subPath": "sub"},
            ],
        ),
        container(
            "b",
            args=["one", "two words"],
            securityContext={"runAsUser": 1000, "readOnlyRootFilesystem": True},
            volumeMounts=[{"name": "f", "mountPath": "/f"}],
        ),
        init=(container("i", command=["true"], volumeMounts=[{"name": "e", "mountPath": "/e"}]),),
        volumes=(
            {"name": "e", "emptyDir": {}},
            {"name": "m", "emptyDir": {"medium": "Memory"}},
            {"name": "c", "configMap": {"name": "cm"}},
            {"name": "s", "secret": {"secretName": "sec"}},
            {"name": "f", "emptyDir": {}},
        ),
        annotations={"fuse.vk.io/f": "rclone mount2 x: $MOUNT_POINT"},
        activeDeadlineSeconds=60,
        terminationGracePeriodSeconds=5,
    )


def _busy() -> Any:
    return request(
        _busy_pod(),
        config_maps=(config_map("cm", {"k": "v"}),),
        secrets=(secret("sec", {"f": b"x"}),),
    )


RUNTIMES = ["apptainer", "podman"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_same_input_same_bytes(runtime: str) -> None:
    config = parse_config({"runtime": runtime})
    first, second = render(_busy(), config), render(_busy(), config)
    assert first == second
    assert isinstance(first, JobScript)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("timestamps", [False, True])
def test_scripts_pass_shellcheck(runtime: str, timestamps: bool) -> None:
    config = parse_config({"runtime": runtime, "timestamp_logs": timestamps})
    for req in (_busy(), request(pod())):
        proc = subprocess.run(
            [str(SHELLCHECK), "--shell=bash", "--severity=warning", "--format=gcc", "-"],
            input=render(req, config).text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_syntax_and_refusal_to_run_under_sh(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(render(_busy()).text)
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    proc = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert "needs bash" in proc.stderr
    assert list(tmp_path.iterdir()) == [script]  # it did nothing else


def test_job_script_fields() -> None:
    js = render(_busy())
    assert (js.pod_name, js.namespace, js.runtime) == ("hello", "default", "apptainer")
    assert (js.init_containers, js.containers) == (("i",), ("a", "b"))
    assert js.outputs == (
        "job.log",
        "pod.json",
        "containers/i/state.json",
        "containers/i/log",
        "containers/a/state.json",
        "containers/a/log",
        "containers/b/state.json",
        "containers/b/log",
        "volumes/f.log",
    )
    assert js.contains_secrets
    assert js.resources.walltime_seconds == 60
    assert "FL_GRACE=5" in js.text
    assert "FL_DEADLINE=60" in js.text


def _command_line(text: str, name: str) -> list[str]:
    start = flat(text).index(f"\n    fl_run {name} ")
    end = flat(text).index("\n}", start)
    return shlex.split(flat(text)[start:end])[2:]


def _locals(text: str, name: str) -> dict[str, str]:
    """The ``local -x NAME=value`` declarations of container ``name``'s function."""
    body = flat(text)
    end = body.index(f"\n    fl_run {name} ")
    start = body.rindex("() {", 0, end)
    found = {}
    for words_ in (shlex.split(line) for line in body[start:end].split("\n    local -x ")[1:]):
        key, _, value = words_[0].partition("=")
        found[key] = value
    return found


def test_apptainer_command_line() -> None:
    text = render(
        _busy(),
        parse_config(
            {"apptainer": {"executable": "/opt/apptainer", "userns": True, "cache_dir": "/cache"}}
        ),
    ).text
    a = _command_line(text, "a")
    assert a[:2] == ["${FL_RUNTIME}", "exec"]
    assert not [w for w in a if "APPTAINER" in w]  # values never on a command line (ps)
    local = _locals(text, "a")
    assert local["APPTAINERENV_X"] == "x"
    assert local["APPTAINERENV_Y"] == "\\$HOME\n\\`id\\`"  # undoes Apptainer's evaluation
    assert local["APPTAINER_CACHEDIR"] == "/cache"
    for flag in ("--userns", "--containall", "--cleanenv", "--nv"):
        assert flag in a
    assert a[a.index("--pwd") + 1] == "/tmp"
    assert "${FL_SCRATCH}/volumes/0:/e" in a
    assert "${FL_SCRATCH}/volumes/2:/c:ro" in a
    assert "${FL_SCRATCH}/volumes/3/f:/s/f:ro" in a
    assert "${FL_SUB_3}:/m" in a
    assert a[-4:] == ["${FL_IMAGE}", "sh", "-c", "echo x 'q' \"$Y\" `x`"]
    b = _command_line(text, "b")
    assert b[b.index("${FL_RUNTIME}") + 1] == "run"  # no command: the image's runscript
    assert b[-3:] == ["${FL_IMAGE}", "one", "two words"]
    assert "${FL_SCRATCH}/fuse/4:/f" in b
    assert "FL_RUNTIME=/opt/apptainer" in text


def test_podman_command_line() -> None:
    text = render(
        _busy(),
        parse_config({"runtime": "podman", "podman": {"extra_flags": ["--log-level=warn"]}}),
    ).text
    a = _command_line(text, "a")
    assert a[:3] == ["${FL_RUNTIME}", "run", "--rm"]
    assert json.loads(a[a.index("--entrypoint") + 1]) == ["sh", "-c"]
    assert a[a.index("--workdir") + 1] == "/tmp"
    assert "Y=$HOME\n`id`" in a
    assert "--cpus=1" in a
    assert f"--memory={1024**3}b" in a
    assert a[a.index("--device") + 1] == "nvidia.com/gpu=all"
    assert "--log-level=warn" in a
    assert a[-2:] == ["${FL_IMAGE}", "echo x 'q' \"$Y\" `x`"]  # args follow the image
    b = _command_line(text, "b")
    assert "--entrypoint" not in b  # args only: the image's entrypoint gets them
    assert b[b.index("--user") + 1] == "1000"
    assert "--read-only" in b
    assert b[-3:] == ["${FL_IMAGE}", "one", "two words"]


@pytest.mark.parametrize(
    ("image", "policy", "pull"),
    [
        ("busybox", None, "always"),
        ("busybox:latest", None, "always"),
        ("busybox:1.36", None, "missing"),
        ("busybox:1.36", "Always", "always"),
        ("busybox", "Never", "never"),
        ("r.io/x@sha256:ab", None, "missing"),
    ],
)
def test_podman_pull_policy_follows_kubernetes(image: str, policy: str | None, pull: str) -> None:
    fields: dict[str, Any] = {"imagePullPolicy": policy} if policy else {}
    text = render(pod(container(image=image, **fields)), RenderConfig(runtime="podman")).text
    assert f"FL_PULL={pull};" in text


def test_image_resolution_order_for_apptainer() -> None:
    config = parse_config(
        {
            "images": {
                "overrides": {"busybox:1.36": "/sif/bb.sif"},
                "image_dir": "/images",
                "cvmfs_unpacked": "/cvmfs/unpacked.cern.ch",
            }
        }
    )
    text = render(
        pod(container(image="busybox:1.36"), container("b", image="ghcr.io/o/x")), config
    ).text
    candidates = [
        line.split()[3] for line in text.splitlines() if line.strip().startswith("if [ -e ")
    ]
    assert candidates == [
        "/sif/bb.sif",
        "/images/busybox_1.36.sif",
        "/images/busybox_1.36",
        "/cvmfs/unpacked.cern.ch/registry.hub.docker.com/library/busybox:1.36",
        "/images/ghcr.io_o_x.sif",
        "/images/ghcr.io_o_x",
        "/images/ghcr.io_o_x_latest.sif",
        "/images/ghcr.io_o_x_latest",
        "/cvmfs/unpacked.cern.ch/ghcr.io/o/x:latest",
    ]
    assert "FL_IMAGE=docker://busybox:1.36; return 0" in text
    offline = parse_config({"images": {"registry_fallback": False}})
    assert "docker://" not in render(pod(), offline).text


def test_pod_strings_never_reach_comments_unquoted() -> None:
    p = pod(name="x\n" + "touch /tmp/pwned #")
    text = render(p).text
    assert "FL_POD_NAME='x\ntouch /tmp/pwned #'" in text


def test_script_with_the_image_cache_passes_shellcheck() -> None:
    config = parse_config(
        {"images": {"cache_url": "https://images.example:8080", "cache_token": "t"}}
    )
    text = render(_busy(), config).text
    assert "flashlink_fetch_image() {" in text
    proc = subprocess.run(
        [str(SHELLCHECK), "--shell=bash", "--severity=warning", "--format=gcc", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
