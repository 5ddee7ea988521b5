from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CI_SERVICES = REPO / "ci" / "services"
WORK = Path(os.environ.get("FLASHLINK_CI_WORK", "/srv/flashlink-ci"))

# Every service a test can ask for; each is also a pytest marker of the same name.
SERVICES = ("apptainer", "bwrap", "htcondor", "payload", "podman", "redis", "s3", "slurm")


class ServiceUnavailableError(RuntimeError):
    """The service is not installed here, or failed to start."""


@dataclass
class Service:
    """A started service: its run directory and the client settings its script wrote."""

    name: str
    rundir: Path
    env: dict[str, str]
    start_seconds: float
    stopped: bool = field(default=False)

    def __getitem__(self, key: str) -> str:
        try:
            return self.env[key]
        except KeyError:
            raise KeyError(
                f"{self.name} service has no setting {key!r}; it has {sorted(self.env)}"
            ) from None

    def stop(self) -> None:
        if not self.stopped:
            _run(self.name, "stop", str(self.rundir), timeout=120)
            self.stopped = True


def _script(name: str) -> Path:
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    return CI_SERVICES / f"{name}.sh"


def _run(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(_script(name)), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def check(name: str) -> str | None:
    """None when the service is installed and usable here, else the one-line reason."""
    proc = _run(name, "check", timeout=60)
    if proc.returncode == 0:
        return None
    reason = (proc.stdout + proc.stderr).strip().splitlines()
    return f"{name}: {reason[-1] if reason else 'not installed'} (install: ./dev setup {name})"


def _parse_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        key, _, value = line.partition("=")
        words = shlex.split(value)
        env[key] = words[0] if words else ""
    return env


def start(name: str, rundir: Path) -> Service:
    """Start the service with its script; raise ServiceUnavailableError with the script's log."""
    reason = check(name)
    if reason is not None:
        raise ServiceUnavailableError(reason)
    rundir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    proc = _run(name, "start", str(rundir), timeout=300)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        _run(name, "stop", str(rundir), timeout=120)
        raise ServiceUnavailableError(
            f"{name} failed to start (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return Service(name, rundir, _parse_env(rundir / "env"), elapsed)
