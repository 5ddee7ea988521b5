"""A whole production from request to merged ntuple: cost per event and the driver's share.

    .venv/bin/python benchmarks/production_gun.py [--events 1000000] [--events-per-job 50000]
        [--simulation flash|detailed] [--kind gun|pythia] [--json benchmarks/results/production.json]

Runs ``flashlink.production.Production`` against the plugin embedded in this process (local
site, this machine's CPUs), real Apptainer and the CI payload SIF (``./dev setup payload``)
with this installation bound in, and reports:

- wall time, events/s and events/s/core (cores = the CPUs lent to the local site);
- container seconds per event (each container runs one process on its one CPU: the CPU-time
  upper bound the jobs were given) and bytes per event (all job outputs, and the ntuple);
- the driver's submission and bookkeeping time (every plugin call, the journal, logs, done
  records and the merge) as a share of the wall time (target: under 5 %);
- the driver's peak RSS, embedded plugin included (target: under 1 GB).

Issue 9's targets: 1,000,000 gun events (B+ -> J/psi K+) in under 10 minutes on 2 cores with
the flash simulation; seed figures to compare: ~8.6 CPU-s and ~0.8 MB per full-Pythia event,
~4 kB per gun event.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from flashlink.production import (
    EmbeddedPlugin,
    PayloadSettings,
    PluginClient,
    Production,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--events-per-job", type=int, default=50_000)
    parser.add_argument("--simulation", choices=("flash", "detailed"), default="flash")
    parser.add_argument("--kind", choices=("gun", "pythia"), default="gun")
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
            "reference": {"events": 0},
            "retries": 0,
            "image": IMAGE,
        }
    )
    _, command, binds = software_binds()
    sif = CACHE / "payload" / "payload.sif"
    apptainer = CACHE / "apptainer" / "bin" / "apptainer"
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
        snap = production.run()
        t_merge = time.perf_counter()
        client.close()
    wall = time.perf_counter() - t0
    record = json.loads((out / "provenance.json").read_text())
    calls = sum(client.seconds.values())
    merge = time.perf_counter() - t_merge  # finalize ran inside run(); this is the shutdown
    result = {
        "events": args.events,
        "jobs": request.n_jobs,
        "simulation": args.simulation,
        "kind": args.kind,
        "cores": args.cpus,
        "failed": snap.failed,
        "wall_s": round(wall, 1),
        "events_per_s": round(args.events / wall, 1),
        "events_per_s_per_core": round(args.events / wall / args.cpus, 1),
        "container_s_per_event": record["seconds_per_event"],
        "bytes_per_event": record["bytes_per_event"],
        "ntuple_bytes_per_event": record["ntuple_bytes_per_event"],
        "plugin_call_s": {k: round(v, 2) for k, v in client.seconds.items()},
        "driver_cpu_s": round(time.process_time() - driver_cpu0, 2),
        "plugin_calls_share": round(calls / wall, 4),
        "shutdown_s": round(merge, 2),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "output": str(out),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
