"""A whole production from request to merged ntuple: cost per event and the driver's share.

    .venv/bin/python benchmarks/production_gun.py [--events 1000000] [--events-per-job 50000]
        [--simulation flash|detailed] [--kind gun|pythia] [--reference 1000]
        [--json benchmarks/results/production_gun_flash.json]

Runs ``flashlink.production.Production`` against the plugin embedded in this process (local
site, this machine's CPUs), real Apptainer and the CI payload SIF (``./dev setup payload``)
with this installation bound in, and reports:

- wall time, events/s and events/s/core (cores = the CPUs lent to the local site);
- container seconds per event (each container runs one process on its one CPU: the CPU-time
  upper bound the jobs were given) and bytes per event (all job outputs, and the ntuple);
- the driver's submission and bookkeeping time (every plugin call, the journal, logs, done
  records and the merge) as a share of the wall time (target: under 5 %);
- the driver's peak RSS, embedded plugin included (target: under 1 GB);
- where the time goes: each step's container seconds per event (generate, flash or detailed,
  ntuple), the CPU seconds of the jobs' processes (``RUSAGE_CHILDREN`` of this process: the
  local backend's job scripts are its children and are waited for), the time to submit
  everything and the time from the last job's end to the merged ntuple;
- the load average before and after (the machine is shared: other work slows the jobs).

Issue 9's targets: 1,000,000 gun events (B+ -> J/psi K+) in under 10 minutes on 2 cores with
the flash simulation; seed figures to compare: ~8.6 CPU-s and ~0.8 MB per full-Pythia event,
~4 kB per gun event.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from flashlink.production import (
    EmbeddedPlugin,
    PayloadSettings,
    PluginClient,
    Production,
    ProductionError,
    parse_request,
    software_binds,
)

IMAGE = "ghcr.io/flashlink/payload:latest"
CACHE = Path(os.environ.get("FLASHLINK_CI_CACHE", "/var/cache/flashlink-ci"))


class TimedClient(PluginClient):
    """The plugin client, with the time spent in each call summed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.seconds: dict[str, float] = {}

    def _call(self, method: str, path: str, body: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return super()._call(method, path, body)
        finally:
            self.seconds[path] = self.seconds.get(path, 0.0) + time.perf_counter() - t0


SEEDS = {
    # issue 9's seed figures: the flagship's productions before flashlink
    "pythia": {"cpu_s_per_event": 8.6, "bytes_per_event": 0.8e6},
    "gun": {"bytes_per_event": 4e3},
}


def _step_seconds(records: list[dict[str, Any]], events: int) -> dict[str, float]:
    steps: dict[str, float] = {}
    for r in records:
        for name, seconds in r["container_seconds"].items():
            steps[name] = steps.get(name, 0.0) + (seconds or 0.0)
    return {k: round(v / max(events, 1), 6) for k, v in steps.items()}


def _journal_times(out: Path, complete: bool) -> dict[str, float]:
    entries = [json.loads(line) for line in (out / ".flashlink" / "journal.jsonl").open()]
    start = min(e["time"] for e in entries if e["event"] == "run")
    submits = [e["time"] for e in entries if e["event"] == "submit"]
    ends = [
        e["time"]
        for e in entries
        if e["event"] == "end" and e["key"] != "reference" and e.get("phase") == "Succeeded"
    ]
    last = max(ends) if ends and complete else math.nan
    return {"start": start, "all_submitted": max(submits), "last_job_end": last}


def main() -> None:  # noqa: PLR0915 - one measurement, many numbers
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--events-per-job", type=int, default=50_000)
    parser.add_argument("--simulation", choices=("flash", "detailed"), default="flash")
    parser.add_argument("--kind", choices=("gun", "pythia"), default="gun")
    parser.add_argument("--reference", type=int, default=1000, help="reference events (report)")
    parser.add_argument("--cpus", type=float, default=float(os.cpu_count() or 1))
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    out = args.output or Path(tempfile.mkdtemp(prefix="flashlink-bench-", dir="/var/tmp"))
    event = {"kind": "gun", "channel": "Bu2JpsiK"}
    if args.kind == "pythia":
        event = {"kind": "pythia", "process": "bbbar", "channel": "Bu2JpsiK"}
    request = parse_request(
        {
            "name": "bench",
            "event": event,
            "events": args.events,
            "events_per_job": args.events_per_job,
            "simulation": args.simulation,
            "output": str(out),
            "reference": {"events": args.reference},
            "resources": {"cpu": "1", "memory": "2Gi"},
            "retries": 0,
            "image": IMAGE,
        }
    )
    _, command, binds = software_binds()
    sif = CACHE / "payload" / "payload.sif"
    apptainer = CACHE / "apptainer" / "bin" / "apptainer"
    # SIGINT and SIGTERM end the run cleanly (below); a shell's `cmd &` starts Python with
    # SIGINT ignored, so the handlers are set here rather than inherited
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    load_before = os.getloadavg()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with EmbeddedPlugin(
        out / ".flashlink" / "plugin",
        runtime="apptainer",
        executable=str(apptainer),
        image_overrides={IMAGE: str(sif)},
        host_paths=[str(out), *binds],
        cpus=args.cpus,
    ) as url:
        client = TimedClient(url)
        production = Production(
            request, client, PayloadSettings(command=command, binds=binds), poll_interval=1
        )
        driver_cpu0 = time.process_time()
        complete = True
        try:
            snap = production.run()
        except KeyboardInterrupt:
            # Ctrl-C, SIGINT or SIGTERM (a run that would outlast the machine's time slot): stop
            # the jobs still running and report the finished ones (per-event figures hold)
            complete = False
            snap = production.snapshot()
            try:
                print(f"interrupted: {production.cancel()} running job(s) cancelled", flush=True)
            except ProductionError as exc:  # the plugin stopped first: say which jobs remain
                print(f"interrupted: {exc}", flush=True)
        t_return = time.time()
        t_merge = time.perf_counter()
        records = production.done_records()
        client.close()
    wall = time.perf_counter() - t0
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_after = os.getloadavg()
    jobs = [r for r in records if r["key"] != "reference"]
    done_events = sum(r["events"] for r in jobs)
    record = (
        json.loads((out / "provenance.json").read_text())
        if complete
        else {
            "seconds_per_event": round(
                sum(sum(v or 0 for v in r["container_seconds"].values()) for r in jobs)
                / max(done_events, 1),
                6,
            ),
            "bytes_per_event": sum(r["bytes"] for r in jobs) / max(done_events, 1),
            "ntuple_bytes_per_event": sum(r["ntuple_bytes"] for r in jobs) / max(done_events, 1),
            "candidates": None,
        }
    )
    times = _journal_times(out, complete)
    calls = sum(client.seconds.values())
    driver_cpu = time.process_time() - driver_cpu0
    shutdown = time.perf_counter() - t_merge  # finalize ran inside run(); this is the shutdown
    job_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    seed = SEEDS[args.kind]
    result = {
        "complete": complete,
        "events": args.events,
        "events_done": done_events,
        "jobs": request.n_jobs,
        "jobs_done": len(jobs),
        "events_per_job": args.events_per_job,
        "reference_events": args.reference,
        "simulation": args.simulation,
        "kind": args.kind,
        "cores": args.cpus,
        "failed": snap.failed,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "wall_s": round(wall, 1),
        "events_per_s": round(done_events / wall, 1),
        "events_per_s_per_core": round(done_events / wall / args.cpus, 1),
        "container_s_per_event": record["seconds_per_event"],
        "container_s_per_event_by_step": _step_seconds(jobs, done_events),
        # every process the jobs ran (reference included), measured by the kernel
        "jobs_cpu_s": round(job_cpu, 1),
        "jobs_cpu_s_per_event": round(job_cpu / max(done_events, 1), 6),
        "bytes_per_event": record["bytes_per_event"],
        "ntuple_bytes_per_event": record["ntuple_bytes_per_event"],
        "candidates": record["candidates"],
        "plugin_call_s": {k: round(v, 2) for k, v in client.seconds.items()},
        "plugin_calls_share": round(calls / wall, 4),
        "driver_cpu_s": round(driver_cpu, 2),
        # the driver's own work (plugin calls, journal, logs, merge; embedded plugin included)
        "driver_cpu_share": round(driver_cpu / wall, 4),
        "all_submitted_after_s": round(times["all_submitted"] - times["start"], 2),
        "last_job_end_to_merged_s": (
            round(t_return - times["last_job_end"], 2) if complete else None
        ),
        "reference_container_s": next(
            (
                r["container_seconds"]
                for r in [json.loads(p.read_text()) for p in out.glob("**/reference/done.json")]
            ),
            None,
        ),
        "shutdown_s": round(shutdown, 2),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "seed_figures": seed,
        "output": str(out),
    }
    print(json.dumps(result, indent=2))
    _table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _table(r: dict[str, Any]) -> None:
    seed = r["seed_figures"]
    rows = [
        (
            "events, jobs",
            f"{r['events']:,} in {r['jobs']} x {r['events_per_job']:,}"
            + ("" if r["complete"] else f" (interrupted: {r['events_done']:,} done)"),
            "",
        ),
        ("wall (target < 600 s for 1M gun)", f"{r['wall_s']:.0f} s", ""),
        ("events/s/core", f"{r['events_per_s_per_core']:,.1f}", ""),
        (
            "CPU-s/event (kernel; container wall)",
            f"{r['jobs_cpu_s_per_event']:.5f}; {r['container_s_per_event']:.5f}",
            f"{seed['cpu_s_per_event']}" if "cpu_s_per_event" in seed else "-",
        ),
        (
            "bytes/event (all / ntuple)",
            f"{r['bytes_per_event']:,.0f} / {r['ntuple_bytes_per_event']:,.0f}",
            f"{seed['bytes_per_event']:,.0f}",
        ),
        ("by step, container s/event", json.dumps(r["container_s_per_event_by_step"]), ""),
        ("plugin calls (target < 5 %)", f"{100 * r['plugin_calls_share']:.2f} % of wall", ""),
        ("driver CPU", f"{r['driver_cpu_s']:.1f} s ({100 * r['driver_cpu_share']:.2f} %)", ""),
        ("last job end -> merged", f"{r['last_job_end_to_merged_s']} s", ""),
        ("driver peak RSS (target < 1 GB)", f"{r['driver_peak_rss_mb']} MB", ""),
        (
            "load average before / after",
            f"{r['load_average_before']} / {r['load_average_after']}",
            "",
        ),
    ]
    print(f"\n{r['kind']} {r['simulation']}: measured vs seed figure")
    for name, value, ref in rows:
        print(f"  {name:38s} {value:40s} {ref}")


if __name__ == "__main__":
    main()
