"""Cost of the reference detailed simulation per particle and per event, its resolutions, and
its peak memory when streaming a sample ten times larger than the chunk.

    .venv/bin/python benchmarks/sim_detailed.py [--scale 1.0] [--chunk 20] [--json PATH]

"particles" are the transported generator particles (charged, long-lived, forward, p > 0.2 GeV)
plus decay-in-flight daughters; the flash models must beat the cost per particle by >= 1000x.
Peak memory is the maximum resident set size of a fresh subprocess (its VmHWM: ru_maxrss would
carry this process's own high-water mark into the child across exec).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from flashlink.sim.detector.geometry import load_geometry
from flashlink.sim.detector.pipeline import DetailedSimulation
from flashlink.sim.generation import concat_chunks, generate, parse_generator_config

SAMPLES = {
    "gun Bu2JpsiK": ({"mode": "gun", "channel": "Bu2JpsiK"}, 1000),
    "gun pi 2-100 GeV": (
        {"mode": "gun", "channel": "pi", "spectrum": {"kind": "log_p", "p_min": 2, "p_max": 100}},
        2000,
    ),
    "minbias 13.6 TeV": ({"mode": "minbias"}, 60),
    "bbbar 13.6 TeV": ({"mode": "bbbar"}, 40),
}


def _robust(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if len(x) else float("nan")


def cost(scale: float) -> dict[str, dict[str, float]]:
    out = {}
    print(
        f"{'sample':<18} {'events':>6} {'particles':>9} {'tracks':>7} {'ms/event':>9} "
        f"{'ms/particle':>11} {'transport':>9} {'reco':>6} {'ghosts':>7}"
    )
    for name, (raw, size) in SAMPLES.items():
        n = max(5, int(size * scale))
        chunk = concat_chunks(list(generate(parse_generator_config(raw), n, 1, 500)))
        sim = DetailedSimulation(load_geometry(), 1)
        t0 = time.perf_counter()
        tables = [sim.process(chunk)]
        dt = time.perf_counter() - t0
        tracks = tables[0]["tracks"]
        c = sim.counts
        row = {
            "events": c["events"],
            "particles": c["particles"],
            "tracks": c["tracks"],
            "ms_per_event": 1e3 * dt / c["events"],
            "ms_per_particle": 1e3 * dt / max(c["particles"], 1),
            "transport_s": sim.timing["transport"],
            "reconstruction_s": sim.timing["reconstruction"],
            "ghost_rate": float(tracks["ghost"].mean()) if c["tracks"] else 0.0,
        }
        good = (tracks["ghost"] == 0) & (tracks["type"] == 1) & (tracks["chi2ndof"] < 5)
        if good.sum() > 20:
            p_true = 1 / np.abs(tracks["true_qop"][good])
            row["dp_over_p_core"] = _robust(tracks["p"][good] / p_true - 1)
            row["ip_x_core_um"] = 1e3 * _robust((tracks["x"] - tracks["true_x"])[good])
            row["pull_qop_std"] = float(
                np.std((tracks["qop"] - tracks["true_qop"])[good] / np.sqrt(tracks["cov_44"][good]))
            )
        particles = tables[0]["particles"]
        recble = (particles["n_velo"] >= 3) & (particles["n_t"] >= 9) & (particles["p"] > 2)
        if recble.sum() > 20:
            row["long_efficiency"] = float(np.mean(particles["reco_type"][recble] == 1))
        out[name] = row
        print(
            f"{name:<18} {row['events']:>6} {row['particles']:>9} {row['tracks']:>7} "
            f"{row['ms_per_event']:>9.1f} {row['ms_per_particle']:>11.2f} "
            f"{row['transport_s']:>9.1f} {row['reconstruction_s']:>6.1f} {row['ghost_rate']:>7.3f}"
        )
    return out


_STREAM = """
import sys
from flashlink.sim.generation import generate, parse_generator_config
from flashlink.sim.detector.pipeline import run_detailed
n, chunk, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cfg = parse_generator_config({"mode": "minbias"})
run_detailed(generate(cfg, n, 7, chunk), out, seed=7)
print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]))
"""


def streaming(chunk: int) -> dict[str, float]:
    """Peak RSS (MB) for one chunk and for ten chunks of min-bias events."""
    out = {}
    for factor in (1, 10):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", _STREAM, str(factor * chunk), str(chunk), tmp],
                capture_output=True,
                text=True,
                check=True,
                timeout=3600,
            )
            peak_mb = int(proc.stdout.split()[-1]) / 1024
            out[f"peak_rss_mb_{factor}x_chunk"] = peak_mb
            out[f"seconds_{factor}x_chunk"] = time.perf_counter() - t0
            print(
                f"streaming {factor * chunk:>5} min-bias events in chunks of {chunk}: "
                f"peak RSS {peak_mb:.0f} MB, {time.perf_counter() - t0:.0f} s"
            )
    out["chunk_events"] = chunk
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the sample sizes")
    parser.add_argument("--chunk", type=int, default=20, help="chunk size of the streaming test")
    parser.add_argument("--json", default="benchmarks/results/sim_detailed.json")
    args = parser.parse_args()
    results = {
        "cost": cost(args.scale),
        "streaming": streaming(args.chunk),
        "benchmark_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()
