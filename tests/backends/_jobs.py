"""Job scripts for backend tests that keep a job directory the way rendered scripts do.

They write ``pod.json``, ``containers/main/state.json`` and ``containers/main/log`` under
``$FLASHLINK_JOB_DIR`` (default: the working directory), so the tests read them back with
:mod:`flashlink.jobscript.state`'s real parsers. Rendered Pods run in the Apptainer tests.
"""

from __future__ import annotations

__all__ = ["FINAL", "SMALL", "fake_job", "read_job_dir", "script", "wait"]

import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path

from flashlink.backends import Backend, BatchJob, JobPhase, JobState
from flashlink.jobscript import (
    PodRecord,
    Resources,
    container_log,
    container_state,
    parse_pod_record,
    parse_state,
)
from flashlink.kube import ContainerStatus

FINAL = (JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.UNKNOWN)
SMALL = Resources(cpu=Decimal(1), memory_bytes=64 * 1024**2)


def script(exit_code: int = 0, *, lines: Sequence[str] = ("hello",), sleep: float = 0) -> str:
    """A bash job script that runs one pretend container ``main``."""
    echo = "\n".join(f'echo {shlex.quote(line)} >>"$d/containers/main/log"' for line in lines)
    phase = "Succeeded" if exit_code == 0 else "Failed"
    reason = "Completed" if exit_code == 0 else "Error"
    return f"""#!/bin/bash
d=${{FLASHLINK_JOB_DIR:-$PWD}}
mkdir -p "$d/containers/main"
now() {{ date -u +%Y-%m-%dT%H:%M:%SZ; }}
t0=$(now)
printf '{{"uid":"u","phase":"Running","startedAt":"%s"}}\\n' "$t0" >"$d/pod.json"
printf '{{"name":"main","state":"running","startedAt":"%s"}}\\n' "$t0" \\
    >"$d/containers/main/state.json"
: >"$d/containers/main/log"
{echo}
sleep {sleep:g}
t1=$(now)
end='"exitCode":{exit_code},"startedAt":"'$t0'","finishedAt":"'$t1'"'
printf '{{"name":"main","state":"terminated","reason":"{reason}",%s}}\n' "$end" \
    >"$d/containers/main/state.json"
printf '{{"uid":"u","phase":"{phase}",%s}}\n' "$end" >"$d/pod.json"
exit {exit_code}
"""


def fake_job(
    job_dir: Path,
    key: str,
    exit_code: int = 0,
    *,
    sleep: float = 0,
    lines: Sequence[str] = ("hello",),
    options: Mapping[str, str] | None = None,
    resources: Resources | None = None,
    contains_secrets: bool = False,
) -> BatchJob:
    return BatchJob(
        key=key,
        name=f"default/pod-{key[:8]}",
        script=script(exit_code, lines=lines, sleep=sleep),
        job_dir=job_dir,
        options=dict(options or {}),
        # small requests so that jobs run side by side (without --mem a Slurm job gets the
        # whole node's memory on the test cluster: measured, mem=21694M)
        resources=resources or SMALL,
        contains_secrets=contains_secrets,
    )


def read_job_dir(path: Path) -> tuple[PodRecord, ContainerStatus, str]:
    """(pod record, main's status, main's log) of a job directory."""
    pod = parse_pod_record((path / "pod.json").read_text())
    main = parse_state((path / container_state("main")).read_text())
    return pod, main, (path / container_log("main")).read_text()


def wait(
    backend: Backend,
    ids: Sequence[str],
    *,
    until: Callable[[JobState], bool] = lambda s: s.phase in FINAL,
    timeout: float = 120,
    interval: float = 0.5,
) -> dict[str, JobState]:
    """Poll until every id satisfies ``until``; return the last states."""
    deadline = time.monotonic() + timeout
    states: dict[str, JobState] = {}
    while time.monotonic() < deadline:
        states = backend.poll(ids)
        if all(i in states and until(states[i]) for i in ids):
            return states
        time.sleep(interval)
    shown = {i: (s.phase.value, s.reason, s.message) for i, s in states.items()}
    raise TimeoutError(f"jobs {list(ids)} not there after {timeout} s: {shown}")
