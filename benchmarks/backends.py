"""Batch backends: submission throughput and the cost of a poll, on the real schedulers.

    .venv/bin/python benchmarks/backends.py [--jobs 500] [--json benchmarks/results/backends.json]

Starts the Slurm cluster and the HTCondor pool of ``ci/services`` (their own run directory,
stopped at the end) and submits ``--jobs`` held jobs (they never run, so only submission is
measured; they are removed afterwards):

1. Slurm: ``SlurmBackend.submit`` of all jobs (one ``sbatch`` each, plus one ``squeue`` to
   find keys already queued) versus plain ``sbatch --hold`` in a bash loop. Target (issue 5):
   backend overhead under 10 %.
2. HTCondor: ``HTCondorBackend.submit`` of all jobs (one schedd transaction) versus one
   ``condor_submit`` per job (the CLI inside the pool's root, as the submit user) and versus one
   ``Schedd.submit`` call per job. Target: at least 5x faster than ``condor_submit`` per job.
3. Poll cost for 1, 10, 100 and all ids: scheduler commands per poll (target: constant, 1)
   and wall time.

Ratios matter more than absolute times: the machine has 2 cores and other work may run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from flashlink.backends import Backend, BatchJob  # noqa: E402
from flashlink.backends.htcondor import HTCondorBackend, HTCondorConfig  # noqa: E402
from flashlink.backends.slurm import SlurmBackend, SlurmConfig  # noqa: E402
from flashlink.jobscript import Resources  # noqa: E402
from servicekit import Service, start  # noqa: E402
from servicekit._service import WORK  # noqa: E402

SCRIPT = "#!/bin/bash\necho never runs\n"
SMALL = Resources(memory_bytes=64 * 1024**2)


def _jobs(base: Path, n: int, tag: str) -> list[BatchJob]:
    return [
        BatchJob(str(uuid.uuid4()), f"bench/{tag}-{i}", SCRIPT, base / f"{tag}-{i}", SMALL)
        for i in range(n)
    ]


def _poll_cost(backend: Backend, ids: list[str], counter: Any) -> list[dict[str, float]]:
    out = []
    for n in sorted({1, 10, 100, len(ids)}):
        if n > len(ids):
            continue
        before = counter()
        t0 = time.perf_counter()
        states = backend.poll(ids[:n])
        seconds = time.perf_counter() - t0
        assert len(states) == n, f"poll of {n} ids answered {len(states)}"
        out.append({"ids": n, "commands": counter() - before, "seconds": seconds})
    return out


def bench_slurm(svc: Service, base: Path, n: int) -> dict[str, Any]:
    env = {**os.environ, "SLURM_CONF": svc["SLURM_CONF"]}
    config = SlurmConfig(slurm_conf=svc["SLURM_CONF"], sbatch_flags=("--hold",))
    backend = SlurmBackend("bench", config)
    jobs = _jobs(base, n, "slurm")
    t0 = time.perf_counter()
    ids = backend.submit(jobs)
    backend_s = time.perf_counter() - t0
    polls = _poll_cost(backend, ids, lambda: backend.commands)
    script = base / "plain.sh"
    script.write_text(SCRIPT)
    loop = (
        f"cd {base} && for i in $(seq {n}); do "
        f"sbatch --parsable --hold --mem=64M -o /dev/null {script} >/dev/null || exit 1; done"
    )
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", loop], env=env, check=True)
    plain_s = time.perf_counter() - t0
    subprocess.run(["scancel", "--user=root"], env=env, check=True)
    return {
        "jobs": n,
        "backend_submit_s": backend_s,
        "plain_sbatch_loop_s": plain_s,
        "backend_jobs_per_s": n / backend_s,
        "overhead_pct": 100 * (backend_s - plain_s) / plain_s,
        "polls": polls,
    }


def _condor_submit_loop(svc: Service, base: Path, n: int) -> float:
    """``condor_submit`` once per job, as the submit user, inside the pool's root."""
    user = svc["HTCONDOR_SUBMIT_USER"]
    pool = Path(svc["HTCONDOR_POOL_CONFIG"])
    master = (pool.parent / "condor_master.pid").read_text().strip()
    work = base / "cli"
    work.mkdir()
    os.chown(work, 2000, 2000)
    (work / "job.sub").write_text(
        "executable = /bin/true\nhold = true\nshould_transfer_files = YES\n"
        "request_memory = 64\nqueue\n"
    )
    loop = (
        f"cd {work} && for i in $(seq {n}); do "
        "condor_submit -terse job.sub >/dev/null || exit 1; done"
    )
    argv = [
        "nsenter", "-t", master, "-m", "-r",
        "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", f"CONDOR_CONFIG={pool}",
        "runuser", "-u", user, "--", "bash", "-c", loop,
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - t0


def bench_htcondor(svc: Service, base: Path, n: int) -> dict[str, Any]:
    token_dir = str(Path(svc["HTCONDOR_TOKENS"]) / "root")
    config = HTCondorConfig(
        condor_config=svc["CONDOR_CONFIG"],
        token_dir=token_dir,
        job_user=svc["HTCONDOR_SUBMIT_USER"],
        submit_commands={"hold": "true"},
    )
    backend = HTCondorBackend("bench", config)
    backend.poll(["1.0"])  # locate the schedd and authenticate before timing
    jobs = _jobs(base, n, "batch")
    t0 = time.perf_counter()
    ids = backend.submit(jobs)
    batch_s = time.perf_counter() - t0
    polls = _poll_cost(backend, ids, lambda: backend.commands)

    one_by_one = _jobs(base, min(n, 100), "single")
    t0 = time.perf_counter()
    for job in one_by_one:
        backend.submit([job])
    single_s = (time.perf_counter() - t0) * n / len(one_by_one)

    cli_n = min(n, 100)
    cli_s = _condor_submit_loop(svc, base, cli_n) * n / cli_n
    import htcondor2  # noqa: PLC0415 - loaded with the backend's config

    schedd = backend._schedd
    with backend._session():
        schedd.act(htcondor2.JobAction.Remove, "true")
    return {
        "jobs": n,
        "backend_batch_submit_s": batch_s,
        "backend_jobs_per_s": n / batch_s,
        "backend_one_call_per_job_s": single_s,
        "condor_submit_per_job_s": cli_s,
        "speedup_vs_condor_submit": cli_s / batch_s,
        "speedup_vs_one_call_per_job": single_s / batch_s,
        "extrapolated_from": {"one_call_per_job": len(one_by_one), "condor_submit": cli_n},
        "polls": polls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    run = Path(tempfile.mkdtemp(prefix="bench-backends-", dir=WORK / "run"))
    run.chmod(0o755)  # the job user reaches munge's socket below it
    base = Path(tempfile.mkdtemp(prefix="bench-backends-", dir=WORK / "work"))
    base.chmod(0o1777)
    results: dict[str, Any] = {"load_average_before": os.getloadavg()[0]}
    services = []
    try:
        slurm = start("slurm", run / "slurm")
        services.append(slurm)
        results["slurm"] = bench_slurm(slurm, base, args.jobs)
        print(json.dumps({"slurm": results["slurm"]}, indent=2), flush=True)
        condor = start("htcondor", run / "htcondor")
        services.append(condor)
        results["htcondor"] = bench_htcondor(condor, base, args.jobs)
        print(json.dumps({"htcondor": results["htcondor"]}, indent=2), flush=True)
    finally:
        for svc in services:
            svc.stop()
        subprocess.run(["rm", "-rf", str(base), str(run)], check=False)
    results["load_average_after"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
