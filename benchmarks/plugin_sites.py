"""Submission through the plugin's HTTP path to the real Slurm and HTCondor (issue 5's target).

    .venv/bin/python benchmarks/plugin_sites.py [--pods 500] [--clients 16] [--interval 1]
        [--only slurm|htcondor] [--json benchmarks/results/plugin_sites.json]

Starts the Slurm cluster and the HTCondor pool of ``ci/services`` (their own run directories,
stopped at the end) and, for each, the plugin (``flashlink.plugin`` served by uvicorn on a
loopback port, in this process so the backend's scheduler-command counter can be read) with
that one site. The pods' jobs are submitted held (``sbatch --hold``, ``hold = true``): only
submission and polling are measured, nothing runs. Per scheduler:

1. scheduler commands per reconcile interval with 1, 10 and 100 pods tracked, then after each
   timed run below (the counter of the backend over the plugin's poll counter, capacity
   calls excluded by a long ``info_interval``). Target: constant;
2. ``--pods`` pods POSTed to ``/create`` by ``--clients`` concurrent clients (interLink's
   virtual kubelet creates pods from concurrent workers), then ``--pods`` more by one client,
   one request after the other. A ``/create`` answers once the scheduler accepted the job;
3. the baseline, in the same invocation: Slurm, ``sbatch --hold`` of the plugin's own
   rendered job script (read back with ``scontrol write batch_script``) in a bash loop, target
   plugin overhead < 10 %; HTCondor, one ``condor_submit`` per pod (the CLI in the pool's root
   as the submit user, 100 of them, scaled to ``--pods``), target plugin >= 5x faster.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

import httpx  # noqa: E402

from backends import _condor_submit_loop  # noqa: E402
from flashlink.plugin import Plugin, parse_plugin_config  # noqa: E402
from plugin.sites_support import backend_table  # noqa: E402
from plugin.support import container, create_request, pod, serving, uid  # noqa: E402
from servicekit import Service, start  # noqa: E402
from servicekit._service import WORK  # noqa: E402

RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}}


def _config(svc: Service, state: Path, jobs: Path, interval: float) -> dict[str, Any]:
    backend = backend_table(svc)
    if svc.name == "slurm":
        backend["sbatch_flags"] = ["--hold"]
        backend["command_timeout_seconds"] = 60
    else:
        backend["submit_commands"] = {"hold": "true"}
        backend.pop("transfer_interval_seconds")
    return {
        "state_dir": str(state),
        "reconcile_interval": interval,
        "info_interval": 3600,  # capacity calls would blur the commands per interval
        "create_timeout": 600,
        "render": {"runtime": "apptainer"},  # never runs: jobs stay held
        "sites": {svc.name: {"kind": svc.name, "jobs_dir": str(jobs), "backend": backend}},
    }


class _Bench:
    def __init__(self, client: httpx.Client, plugin: Plugin, site: str) -> None:
        self.client = client
        self.plugin = plugin
        self.site = site
        self.backend: Any = plugin.sites[site].backend
        self.created = 0
        self.ids: list[str] = []

    def _sample(self, name: str) -> float:
        labels = {"site": self.site, "call": "poll"}
        return self.plugin.metrics.registry.get_sample_value(name, labels) or 0.0

    def _polls(self) -> float:
        return self._sample("flashlink_plugin_backend_calls_total")

    def _one(self, n: int) -> str:
        p = pod(uid(n, 0xBE), f"bench-{n}", [container("main", "echo never runs")])
        p["spec"]["containers"][0]["resources"] = RESOURCES
        r = self.client.post("/create", json=create_request(p))
        if r.status_code != 200:
            raise RuntimeError(f"/create answered {r.status_code}: {r.text}")
        jid: str = r.json()["PodJID"]
        return jid

    def create(self, n: int, clients: int) -> float:
        """Create ``n`` more pods with ``clients`` concurrent clients; the wall time."""
        numbers = range(self.created, self.created + n)
        self.created += n
        t0 = time.perf_counter()
        if clients == 1:
            ids = [self._one(i) for i in numbers]
        else:
            with ThreadPoolExecutor(clients) as pool:
                ids = list(pool.map(self._one, numbers))
        seconds = time.perf_counter() - t0
        self.ids += ids
        return seconds

    def commands_per_interval(self, intervals: int) -> dict[str, float]:
        """Scheduler commands per reconcile pass, over ``intervals`` passes, and the mean
        duration of the backend's poll call in them."""
        p0 = self._polls()
        while self._polls() - p0 < 1:  # start at a pass boundary
            time.sleep(0.05)
        p0, c0 = self._polls(), self.backend.commands
        s0 = self._sample("flashlink_plugin_backend_call_seconds_sum")
        t0 = time.perf_counter()
        while self._polls() - p0 < intervals:
            time.sleep(0.05)
        passes, commands = self._polls() - p0, self.backend.commands - c0
        poll_s = self._sample("flashlink_plugin_backend_call_seconds_sum") - s0
        return {
            "pods": self.created,
            "passes": passes,
            "commands": commands,
            "per_interval": commands / passes,
            "interval_seconds": (time.perf_counter() - t0) / passes,
            "poll_seconds": poll_s / passes,
        }


def _plain_sbatch(svc: Service, base: Path, script_of: str, n: int) -> float:
    env = {**os.environ, "SLURM_CONF": svc["SLURM_CONF"]}
    script = base / "plain.sh"
    out = subprocess.run(
        ["scontrol", "write", "batch_script", script_of, str(script)],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if not script.exists():
        raise RuntimeError(f"scontrol wrote no script: {out.stdout}{out.stderr}")
    work = base / "plain"
    work.mkdir()
    # root, as the plugin: the script's #SBATCH lines (--uid/--gid of the job user, resources,
    # directories) are the plugin's own, so both submit the same job the same way
    loop = (
        f"cd {work} && for i in $(seq {n}); do "
        f"sbatch --parsable --hold <{script} >/dev/null || exit 1; done"
    )
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", loop], env=env, check=True)
    return time.perf_counter() - t0


def bench(svc: Service, base: Path, pods: int, clients: int, interval: float) -> dict[str, Any]:
    state, jobs = base / f"{svc.name}-state", base / f"{svc.name}-jobs"
    jobs.mkdir(mode=0o777)
    jobs.chmod(0o777)
    config = parse_plugin_config(_config(svc, state, jobs, interval))
    result: dict[str, Any] = {"pods": pods, "clients": clients, "reconcile_interval": interval}
    passes = max(2, min(4, round(8 / interval)))
    with serving(config) as (client, plugin):
        b = _Bench(client, plugin, svc.name)
        per_interval = []
        for total in (1, 10, 100):
            b.create(total - b.created, 1)
            per_interval.append(b.commands_per_interval(passes))
        concurrent_s = b.create(pods, clients)
        per_interval.append(b.commands_per_interval(passes))
        sequential_s = b.create(pods, 1)
        per_interval.append(b.commands_per_interval(passes))
        if len(set(b.ids)) != b.created:
            raise RuntimeError(f"{b.created} pods got {len(set(b.ids))} distinct jobs")
        result |= {
            "plugin_concurrent_s": concurrent_s,
            "plugin_concurrent_pods_per_s": pods / concurrent_s,
            "plugin_sequential_s": sequential_s,
            "plugin_sequential_pods_per_s": pods / sequential_s,
            "commands_per_interval": per_interval,
        }
        first_id = b.ids[0]
    if svc.name == "slurm":
        plain = _plain_sbatch(svc, base, first_id, pods)
        result |= {
            "plain_sbatch_loop_s": plain,
            "overhead_concurrent_pct": 100 * (concurrent_s - plain) / plain,
            "overhead_sequential_pct": 100 * (sequential_s - plain) / plain,
        }
    else:
        cli_n = min(pods, 100)
        cli = _condor_submit_loop(svc, base, cli_n) * pods / cli_n
        result |= {
            "condor_submit_per_pod_s": cli,
            "condor_submit_extrapolated_from": cli_n,
            "speedup_concurrent": cli / concurrent_s,
            "speedup_sequential": cli / sequential_s,
        }
    return result


def _table(results: dict[str, Any]) -> str:
    rows = [
        "| site | plugin, concurrent | plugin, one at a time | baseline | ratio (conc. / seq.) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("slurm", "htcondor"):
        r = results.get(name)
        if not r:
            continue
        if name == "slurm":
            base = f"sbatch loop {r['plain_sbatch_loop_s']:.1f} s"
            ratio = (
                f"overhead {r['overhead_concurrent_pct']:+.0f} % / "
                f"{r['overhead_sequential_pct']:+.0f} %"
            )
        else:
            base = f"condor_submit per pod {r['condor_submit_per_pod_s']:.1f} s"
            ratio = f"{r['speedup_concurrent']:.1f}x / {r['speedup_sequential']:.1f}x faster"
        rows.append(
            f"| {name} | {r['plugin_concurrent_s']:.1f} s ({r['clients']} clients) "
            f"| {r['plugin_sequential_s']:.1f} s | {base} | {ratio} |"
        )
    rows += [
        "",
        "| site | pods tracked -> scheduler commands per reconcile interval |",
        "| --- | --- |",
    ]
    for name in ("slurm", "htcondor"):
        r = results.get(name)
        if r:
            cells = ", ".join(
                f"{c['pods']}: {c['per_interval']:.2f} ({c['poll_seconds']:.2f} s)"
                for c in r["commands_per_interval"]
            )
            rows.append(f"| {name} | {cells} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--interval", type=float, default=1.0, help="the site's reconcile interval (seconds)"
    )
    parser.add_argument("--only", choices=["slurm", "htcondor"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    run = Path(tempfile.mkdtemp(prefix="bench-sites-", dir=WORK / "run"))
    run.chmod(0o755)  # the job user reaches munge's socket below it
    base = Path(tempfile.mkdtemp(prefix="bench-sites-", dir=WORK / "work"))
    base.chmod(0o1777)
    results: dict[str, Any] = {"load_average_before": os.getloadavg()[0]}
    try:
        for name in ("slurm", "htcondor"):
            if args.only and name != args.only:
                continue
            svc = start(name, run / name)
            try:
                results[name] = bench(svc, base, args.pods, args.clients, args.interval)
            finally:
                svc.stop()
            print(json.dumps({name: results[name]}, indent=2), flush=True)
    finally:
        subprocess.run(["rm", "-rf", str(base), str(run)], check=False)
    results["load_average_after"] = os.getloadavg()[0]
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
