"""Submit to the test Slurm cluster through its CLI and wait for accounting to record the end."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from servicekit._service import Service

__all__ = ["TERMINAL", "JobEnd", "sbatch", "wait_for_job"]

TERMINAL = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}
)


def _env(service: Service) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": service["SLURM_CONF"]}


def sbatch(
    service: Service,
    script: str,
    *,
    workdir: Path,
    user: str | None = None,
    extra: Sequence[str] = (),
) -> int:
    """Submit ``script`` (a bash script text) and return the job id."""
    argv = ["sbatch", "--parsable", "-D", str(workdir), "-o", "job-%j.out", *extra]
    if user is not None:
        argv = ["runuser", "-u", user, "--", "env", f"SLURM_CONF={service['SLURM_CONF']}", *argv]
    proc = subprocess.run(
        argv,
        input=script,
        capture_output=True,
        text=True,
        env=_env(service),
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip()}")
    return int(proc.stdout.strip().split(";")[0])


@dataclass(frozen=True)
class JobEnd:
    """How a job ended according to Slurm accounting."""

    state: str
    exit_code: int
    signal: int


def wait_for_job(service: Service, job_id: int, timeout: float = 120) -> JobEnd:
    """Poll sacct until the job is in a terminal state.

    sacct lags squeue by a moment (a job that just left squeue may still read RUNNING), so the
    end is taken from accounting, not from the job's absence in the queue. ``--parsable2``, not
    ``--json``: Slurm 22.05's JSON reports exit_code 0 for a batch job that exited 7 (measured
    here: ``sacct --parsable2`` said ``FAILED|7:0`` for the same job).
    """
    deadline = time.monotonic() + timeout
    last = "unknown"
    while time.monotonic() < deadline:
        proc = subprocess.run(
            ["sacct", "-j", str(job_id), "-X", "-n", "--parsable2", "-o", "JobID,State,ExitCode"],
            capture_output=True,
            text=True,
            env=_env(service),
            timeout=60,
            check=True,
        )
        for line in proc.stdout.splitlines():
            jid, state, code = line.split("|")
            if jid == str(job_id):
                last = state.split()[0]  # "CANCELLED by 2000" -> CANCELLED
                if last in TERMINAL:
                    exit_code, signal = (int(x) for x in code.split(":"))
                    return JobEnd(last, exit_code, signal)
        time.sleep(0.5)
    raise TimeoutError(f"Slurm job {job_id} still {last} after {timeout} s")
