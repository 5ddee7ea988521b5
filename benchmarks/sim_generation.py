"""Generation speed of every generator mode (events/s on one core), printed and saved as JSON.

    .venv/bin/python benchmarks/sim_generation.py [--scale 1.0] [--json PATH]

Targets (reference/flash-simulation.md, measured with bare Pythia on this machine): particle gun
~1e4 events/s, min-bias ~200 events/s, b-bbar ~100 events/s. Ours includes the conversion to
columns (vertex graph, one row per particle), so it is somewhat slower for full events.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from flashlink.sim.generation import PythiaGenerator, parse_generator_config

MODES = {
    "gun Bu2JpsiK": ({"mode": "gun", "channel": "Bu2JpsiK"}, 20000),
    "gun Bd2Kpi": ({"mode": "gun", "channel": "Bd2Kpi"}, 20000),
    "gun Dst2D0pi": ({"mode": "gun", "channel": "Dst2D0pi"}, 20000),
    "gun pi (log p)": ({"mode": "gun", "channel": "pi", "spectrum": {"kind": "log_p"}}, 20000),
    "minbias 13.6 TeV": ({"mode": "minbias"}, 300),
    "bbbar 13.6 TeV": ({"mode": "bbbar"}, 200),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the event counts")
    parser.add_argument("--json", default="benchmarks/results/sim_generation.json")
    args = parser.parse_args()
    results = {}
    print(f"{'mode':<20} {'events':>7} {'init s':>7} {'events/s':>10} {'rows/event':>11}")
    for name, (raw, size) in MODES.items():
        n = max(10, int(size * args.scale))
        t0 = time.perf_counter()
        gen = PythiaGenerator(parse_generator_config(raw), seed=1)
        t1 = time.perf_counter()
        rows = sum(len(chunk) for chunk in gen.chunks(n, 1000))
        t2 = time.perf_counter()
        rate = n / (t2 - t1)
        results[name] = {
            "events": n,
            "init_s": t1 - t0,
            "events_per_s": rate,
            "rows_per_event": rows / n,
        }
        print(f"{name:<20} {n:>7} {t1 - t0:>7.2f} {rate:>10.0f} {rows / n:>11.1f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()
