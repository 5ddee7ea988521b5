"""Flash-simulation speed against the reference detailed simulation, on the same events.

    .venv/bin/python benchmarks/flash_chain.py [--quick] [--json PATH]

What it measures (the machine is shared, so every speed-up is a ratio of two timings taken in
the same process on the same events, interleaved, which cancels most of the load):

* flash throughput in particles/s on one core (numba - the default -, onnxruntime and
  numpy backends, one thread each), by wall clock and by the process's CPU time (the machine
  is shared: CPU time is what one core would give without the other tenants), and on both
  cores (two worker processes, each simulating its own copies of the events);
  "particles" are the tracked generator particles, the same denominator as the reference;
  the flash chain gets the generated events in batches of 2,000 events (repeated with new
  event ids when fewer were generated), the size of a production's chunks;
* the per-model cost breakdown of the chain (ns per input particle);
* the speed-up per particle over the detailed simulation, without and with the generator time
  (Pythia full events and a particle gun: with the generator, Amdahl's law caps it);
* peak memory (VmHWM of a fresh process) of ``run_flash`` streaming 1x and 10x a number
  of events with the same chunk size: bounded memory means the same peak (not ru_maxrss:
  Linux carries the parent's high-water mark into a child across exec, so a child of this
  process reported this process's 1.2 GB);
* the training time of the shipped model set (read from its chain.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from flashlink.sim.detector.pipeline import DetailedSimulation
from flashlink.sim.flash import FlashChain, default_model_dir
from flashlink.sim.generation import (
    COLUMNS,
    EventChunk,
    concat_chunks,
    generate,
    parse_generator_config,
)

SAMPLES = {
    "bbbar 13.6 TeV (Pythia)": ({"mode": "bbbar"}, 30, 2),
    "minbias 13.6 TeV (Pythia)": ({"mode": "minbias"}, 60, 2),
    "gun Bu2JpsiK": ({"mode": "gun", "channel": "Bu2JpsiK"}, 1500, 40),
}


def _generate(raw: dict[str, Any], n: int, seed: int) -> tuple[EventChunk, float]:
    t0 = time.perf_counter()
    chunk = concat_chunks(list(generate(parse_generator_config(raw), n, seed, 5000)))
    return chunk, time.perf_counter() - t0


#: events per flash call: a production flashes chunks of 2,000 events (the CLI's default), and
#: a 30-event batch of b-bbar events (~1,000 tracks, a few dozen per PID species) measured the
#: per-call overheads more than the models (115k against 180k particles/s, same set and events)
FLASH_BATCH_EVENTS = 2000


def _tile(chunk: EventChunk, min_events: int) -> EventChunk:
    """The chunk's events repeated (new event ids) up to at least ``min_events``: the same
    generated events, flashed in a batch of the size a production uses."""
    copies = max(1, -(-min_events // max(chunk.n_events, 1)))
    if copies == 1:
        return chunk
    ids = chunk["event_id"]
    span = int(ids.max()) + 1 if len(ids) else 1
    parts = []
    for c in range(copies):
        columns = {k: chunk[k] for k in COLUMNS}
        columns["event_id"] = ids + c * span
        parts.append(EventChunk.from_columns(columns))
    return concat_chunks(parts)


def _flash_rate(
    chain: FlashChain, chunk: EventChunk, repeat: int, cpu: list[float] | None = None
) -> tuple[float, int, int]:
    """(seconds, particles, events) of flash simulations of the chunk's events, batched by
    :func:`_tile` and repeated about ``repeat`` times the chunk; the CPU seconds are added
    to ``cpu[0]``."""
    batch = _tile(chunk, FLASH_BATCH_EVENTS)
    runs = max(1, round(repeat * chunk.n_events / batch.n_events))
    chain.simulate(batch, np.random.default_rng(0))  # warm-up: sessions, caches, compilation
    n0 = chain.counts["particles"]
    t0, c0 = time.perf_counter(), time.process_time()
    for r in range(runs):
        chain.simulate(batch, np.random.default_rng(r + 1))
    if cpu is not None:
        cpu[0] += time.process_time() - c0
    return time.perf_counter() - t0, chain.counts["particles"] - n0, runs * batch.n_events


def _worker(args: tuple[str, int, int, int, str]) -> tuple[float, int]:
    raw_json, n, seed, repeat, family = args
    chunk, _ = _generate(json.loads(raw_json), n, seed)
    chain = FlashChain(threads=1, family=family)
    dt, particles, _ = _flash_rate(chain, chunk, repeat)
    return dt, particles


def speed(quick: bool) -> dict[str, Any]:  # noqa: PLR0915 - one measurement table
    out: dict[str, Any] = {}
    for name, (raw, size, reps) in SAMPLES.items():
        n, repeat = (max(5, size // 5), max(2, reps // 4)) if quick else (size, reps)
        chunk, t_gen = _generate(raw, n, 7)
        # the shipped selection (flows where they validated better) on both backends, and the
        # all-MLP alternative (--family mlp), the fastest chain the set can run
        chains = {
            "numba": FlashChain(backend="numba", threads=1),
            "onnx": FlashChain(backend="onnx", threads=1),
            "numpy": FlashChain(backend="numpy", threads=1),
            "numba_mlp": FlashChain(backend="numba", threads=1, family="mlp"),
        }
        detailed = DetailedSimulation.from_file(None, 7)
        # interleave: flash, detailed, flash, so that both see the same machine load
        t_flash: dict[str, float] = dict.fromkeys(chains, 0.0)
        cpu_flash = {backend: [0.0] for backend in chains}
        particles: dict[str, int] = dict.fromkeys(chains, 0)
        flashed_events: dict[str, int] = dict.fromkeys(chains, 0)
        t_det = cpu_det = 0.0
        for _ in range(2):
            for backend, chain in chains.items():
                dt, k, ev = _flash_rate(chain, chunk, max(1, repeat // 2), cpu_flash[backend])
                t_flash[backend] += dt
                particles[backend] += k
                flashed_events[backend] += ev
            t0, c0 = time.perf_counter(), time.process_time()
            detailed.process(chunk)
            t_det += time.perf_counter() - t0
            cpu_det += time.process_time() - c0
        det_particles = detailed.counts["particles"]
        flash_particles = len(chunk["pid"][(chunk["status"] == 1)])  # for the record only
        per_particle_det = t_det / det_particles
        row: dict[str, Any] = {
            "events": chunk.n_events,
            "tracked_particles_per_event": particles["numba"] / flashed_events["numba"],
            "flash_batch_events": _tile(chunk, FLASH_BATCH_EVENTS).n_events,
            "final_state_per_event": flash_particles / chunk.n_events,
            "generator_s_per_event": t_gen / chunk.n_events,
            "detailed_s_per_particle": per_particle_det,
            "detailed_cpu_s_per_particle": cpu_det / det_particles,
        }
        for backend in chains:
            per_particle = t_flash[backend] / particles[backend]
            row[f"flash_{backend}_particles_per_s"] = 1.0 / per_particle
            row[f"speedup_{backend}_per_particle"] = per_particle_det / per_particle
            row[f"flash_{backend}_cpu_particles_per_s"] = particles[backend] / cpu_flash[backend][0]
        # with the generator: cost per event of generation + simulation
        per_event_gen = t_gen / chunk.n_events
        tracked = particles["numba"] / flashed_events["numba"]
        flash_event = tracked / row["flash_numba_particles_per_s"]
        det_event = t_det / (2 * chunk.n_events)
        row["speedup_with_generator"] = (per_event_gen + det_event) / (per_event_gen + flash_event)
        mlp_event = tracked / row["flash_numba_mlp_particles_per_s"]
        row["speedup_mlp_with_generator"] = (per_event_gen + det_event) / (
            per_event_gen + mlp_event
        )
        row["generator_share_of_flash_chain"] = per_event_gen / (per_event_gen + flash_event)
        timing = chains["numba"].timing
        total = chains["numba"].counts["particles"]
        row["breakdown_ns_per_particle"] = {k: 1e9 * v / total for k, v in timing.items()}
        row["families"] = {m: model.family for m, model in chains["numba"].models.items()}
        out[name] = row
        print(
            f"{name:<26} flash {row['flash_numba_particles_per_s']:>9,.0f}/s numba "
            f"(CPU time {row['flash_numba_cpu_particles_per_s']:>9,.0f}/s) "
            f"{row['flash_onnx_particles_per_s']:>9,.0f}/s onnx "
            f"{row['flash_numpy_particles_per_s']:>9,.0f}/s numpy "
            f"{row['flash_numba_mlp_particles_per_s']:>11,.0f}/s all-MLP | detailed "
            f"{1e3 * per_particle_det:.2f} ms/particle | speed-up "
            f"{row['speedup_numba_per_particle']:,.0f}x, with generator "
            f"{row['speedup_with_generator']:.1f}x (all-MLP "
            f"{row['speedup_numba_mlp_per_particle']:,.0f}x"
            f", {row['speedup_mlp_with_generator']:.1f}x)"
        )
    # both cores: two processes on bbbar events, against one process in the same run
    raw, n, repeat = SAMPLES["bbbar 13.6 TeV (Pythia)"]
    if quick:
        n, repeat = 6, 2
    ctx = mp.get_context("spawn")
    for family in ("auto", "mlp"):
        args = (json.dumps(raw), n, 11, repeat, family)
        with ctx.Pool(1) as pool:
            one = pool.map(_worker, [args])
        single = sum(p for _, p in one) / sum(t for t, _ in one)
        with ctx.Pool(2) as pool:
            two = pool.map(_worker, [args, (args[0], n, 12, repeat, family)])
        both = sum(p for _, p in two) / max(t for t, _ in two)
        out[f"cores_{family}"] = {
            "one_process_particles_per_s": single,
            "two_processes_particles_per_s": both,
            "scaling": both / single,
        }
        print(
            f"both cores ({family}): {both:,.0f} particles/s "
            f"({both / single:.2f}x one core {single:,.0f}/s)"
        )
    return out


_STREAM = """
import sys
from flashlink.sim.flash import run_flash
from flashlink.sim.io import iter_events
events, out, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
chain = run_flash(iter_events(events, chunk), out, seed=1)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(chain.counts["particles"], int(hwm.split()[1]))  # kB, this process's own peak
"""


def streaming(quick: bool) -> dict[str, Any]:
    from flashlink.sim.io import ParquetSink  # noqa: PLC0415

    base, chunk = (4000, 1000) if quick else (20000, 2000)
    out: dict[str, Any] = {"chunk_events": chunk}
    cfg = parse_generator_config({"mode": "gun", "channel": "Bu2JpsiK"})
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (1, 10):
            events = f"{tmp}/events_{factor}.parquet"
            with ParquetSink(events) as sink:
                for c in generate(cfg, factor * base, factor, chunk):
                    sink.write(c.columns)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", _STREAM, events, f"{tmp}/flash_{factor}", str(chunk)],
                capture_output=True,
                text=True,
                check=True,
                timeout=3600,
            )
            particles, rss = (int(v) for v in proc.stdout.split()[-2:])
            dt = time.perf_counter() - t0
            out[f"events_{factor}x"] = factor * base
            out[f"peak_rss_mb_{factor}x"] = rss / 1024
            out[f"particles_per_s_with_io_{factor}x"] = particles / dt
            print(
                f"streaming {factor * base} events (chunks of {chunk}): peak RSS "
                f"{rss / 1024:.0f} MB, {particles / dt:,.0f} particles/s incl. startup + I/O"
            )
    return out


def training() -> dict[str, Any]:
    chain = json.loads((default_model_dir() / "chain.json").read_text())
    return {
        "shipped_training_s": chain["training_seconds"],
        "per_model": {k: v["seconds"] for k, v in chain["summary"].items()},
        "families": {k: v["family"] for k, v in chain["summary"].items()},
        "dataset_sha256": chain["dataset_sha256"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small samples (a smoke run)")
    parser.add_argument("--json", default="benchmarks/results/flash_chain.json")
    args = parser.parse_args()
    results = {
        "load_average_start": os.getloadavg(),
        "speed": speed(args.quick),
        "streaming": streaming(args.quick),
        "training": training(),
        "load_average_end": os.getloadavg(),
        "benchmark_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()
