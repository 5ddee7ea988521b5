"""The commands: `flashlink plugin serve|config|demo` (demo: one sample Pod through the plugin)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plugin.support import FLASHLINK
from servicekit import Service

HEAVY = ("torch", "numpy", "pyarrow", "awkward", "uproot", "pythia8mc", "zuko", "htcondor2")


def _flashlink(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLASHLINK), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def test_serving_imports_nothing_heavy(tmp_path: Path) -> None:
    code = f"""
import sys
from flashlink.cli import app
from flashlink.plugin import make_server, parse_plugin_config
make_server(parse_plugin_config({{"state_dir": {str(tmp_path)!r}}}))
print([m for m in {HEAVY!r} if m in sys.modules])
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_config_prints_every_default_and_applies_the_options(tmp_path: Path) -> None:
    config = tmp_path / "plugin.toml"
    config.write_text(
        '[sites.cnaf]\nkind = "local"\n[sites.cnaf.backend]\ncpus = 4\n'
        '[sites.t1]\nkind = "local"\n[sites.t1.render]\nruntime = "apptainer"\n'
    )
    out = _flashlink(
        "plugin",
        "config",
        "--config",
        str(config),
        "--runtime",
        "podman",
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["state_dir"] == str(tmp_path / "s")
    assert data["default_site"] is None  # two sites, none named local: pods must choose
    assert data["sites"]["cnaf"]["backend"] == {"cpus": 4}
    # --runtime wins over the file, for every site
    assert {r["runtime"] for r in data["resolved_render"].values()} == {"podman"}
    assert data["resolved_render"]["cnaf"]["timestamp_logs"] is True


def test_a_bad_config_is_one_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "plugin.toml"
    config.write_text('[sites.a]\nkind = "pbs"\n')
    out = _flashlink("plugin", "serve", "--config", str(config))
    assert out.returncode == 2
    assert "unknown site kind 'pbs'; valid kinds: htcondor, local, slurm" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "runtime",
    [
        pytest.param("apptainer", marks=pytest.mark.apptainer),
        pytest.param("podman", marks=pytest.mark.podman),
    ],
)
def test_the_demo_runs_a_pod_through_the_plugin(
    request: pytest.FixtureRequest, runtime: str
) -> None:
    svc = request.getfixturevalue(runtime)
    assert isinstance(svc, Service)
    env = dict(os.environ)
    env["PATH"] = f"{Path(svc[runtime.upper()]).parent}:{env['PATH']}"
    out = _flashlink("plugin", "demo", "--runtime", runtime, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "POST /create   -> 200" in text
    assert "pod Succeeded" in text
    for line in ("done", "events: 1000", "seed: 42", "flow: maf"):
        assert line in text  # the containers' logs, through /getLogs
    assert "POST /delete   -> 200" in text


@pytest.mark.parametrize("runtime", ["apptainer", "podman"])
def test_the_demo_names_the_missing_runtime_and_the_setup_command(
    runtime: str, tmp_path: Path
) -> None:
    env = dict(os.environ)
    env["PATH"] = str(FLASHLINK.parent)  # the venv only: no apptainer, no podman
    env["FLASHLINK_CI_CACHE"] = str(tmp_path)  # and no CI-installed wrapper
    out = _flashlink("plugin", "demo", "--runtime", runtime, env=env, timeout=120)
    assert out.returncode == 2
    assert f"{runtime} is not installed here: run `./dev setup {runtime}`" in " ".join(
        out.stderr.split()
    )
