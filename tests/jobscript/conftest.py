"""Fixtures that run rendered job scripts for real, with bash, under Apptainer and Podman."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flashlink.jobscript import (
    JobScript,
    PodRecord,
    RenderConfig,
    container_log,
    container_state,
    parse_config,
    parse_pod_record,
    parse_state,
    render,
)
from flashlink.kube import ContainerStatus, Pod, RetrievedPodData
from servicekit import Service

IMAGE = "flashlink-test"
VENV_BIN = str(Path(sys.executable).parent)


@dataclass
class Finished:
    """What a job left in its job directory."""

    rc: int
    job_dir: Path
    job: JobScript
    stderr: str = ""
    states: dict[str, ContainerStatus] = field(default_factory=dict)
    logs: dict[str, bytes] = field(default_factory=dict)
    pod: PodRecord | None = None

    def exit_code(self, name: str) -> int | None:
        terminated = self.states[name].state.terminated
        return None if terminated is None else terminated.exit_code

    def reason(self, name: str) -> str | None:
        terminated = self.states[name].state.terminated
        return None if terminated is None else terminated.reason

    def text(self, name: str) -> str:
        return self.logs[name].decode()

    @property
    def job_log(self) -> str:
        return (self.job_dir / "job.log").read_text()


def read_states(job_dir: Path, names: tuple[str, ...]) -> dict[str, ContainerStatus]:
    out = {}
    for name in names:
        path = job_dir / container_state(name)
        if path.exists():
            out[name] = parse_state(path.read_text())
    return out


@dataclass
class Runner:
    """Renders a Pod for one runtime and runs the script with bash, as a batch node would."""

    name: str
    config: RenderConfig
    base: Path
    counter: int = 0

    def with_config(self, **changes: Any) -> RenderConfig:
        data = self.config.model_dump()
        for key, value in changes.items():
            if isinstance(value, dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value
        return parse_config(data)

    def start(
        self,
        request: RetrievedPodData | Pod,
        config: RenderConfig | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[subprocess.Popen[str], JobScript, Path]:
        job = render(request, config or self.config)
        self.counter += 1
        job_dir = self.base / f"job{self.counter}-{self.name}"
        job_dir.mkdir(mode=0o755)
        (job_dir / "job.sh").write_text(job.text)
        environ = {
            **os.environ,
            "FLASHLINK_JOB_DIR": str(job_dir),
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            **(env or {}),
        }
        proc = subprocess.Popen(
            ["bash", str(job_dir / "job.sh")],
            cwd=job_dir,
            env=environ,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        return proc, job, job_dir

    def finish(
        self, proc: subprocess.Popen[str], job: JobScript, job_dir: Path, timeout: float = 60
    ) -> Finished:
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
            pytest.fail(f"the job script did not end within {timeout} s:\n{stderr}")
        names = job.init_containers + job.containers
        record = job_dir / "pod.json"
        return Finished(
            rc=proc.returncode,
            job_dir=job_dir,
            job=job,
            stderr=stderr,
            states=read_states(job_dir, names),
            logs={
                n: (job_dir / container_log(n)).read_bytes()
                for n in names
                if (job_dir / container_log(n)).exists()
            },
            pod=parse_pod_record(record.read_text()) if record.exists() else None,
        )

    def run(
        self,
        request: RetrievedPodData | Pod,
        config: RenderConfig | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Finished:
        return self.finish(*self.start(request, config, env), timeout=timeout)


def read_text(path: Path) -> str:
    """The file's text, or "" while the job has not written it yet."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _config(name: str, service: Service) -> RenderConfig:
    if name == "apptainer":
        return parse_config(
            {
                "runtime": "apptainer",
                "apptainer": {"executable": service["APPTAINER"]},
                "images": {
                    "overrides": {IMAGE: service["TEST_IMAGE_SIF"]},
                    "registry_fallback": False,
                },
            }
        )
    return parse_config(
        {
            "runtime": "podman",
            # rootless-safe and enough for every test: nothing here needs the network
            "podman": {"executable": service["PODMAN"], "network": "none"},
            "images": {
                "overrides": {IMAGE: service["TEST_IMAGE_PODMAN"]},
                "registry_fallback": False,
            },
        }
    )


RUNTIME_PARAMS = [
    pytest.param("apptainer", marks=pytest.mark.apptainer, id="apptainer"),
    pytest.param("podman", marks=pytest.mark.podman, id="podman"),
]


@pytest.fixture(params=RUNTIME_PARAMS)
def runner(request: pytest.FixtureRequest, shared_tmp: Path) -> Runner:
    service = request.getfixturevalue(request.param)
    assert isinstance(service, Service)
    return Runner(request.param, _config(request.param, service), shared_tmp)
