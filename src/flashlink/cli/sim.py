"""``flashlink sim``: generate events, run the reference detailed simulation, make ntuples.

Heavy modules (numpy, pyarrow, Pythia) are imported inside the commands, so ``flashlink
--help`` stays fast.
"""

from __future__ import annotations

__all__ = ["app"]

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from flashlink.errors import FlashlinkError

if TYPE_CHECKING:
    from flashlink.sim.generation.events import EventChunk

app = typer.Typer(
    name="sim",
    help="Flash-simulation payload: Pythia generation, reference detailed simulation, ntuples.",
    no_args_is_help=True,
)
_out = Console()
_err = Console(stderr=True)

_Events = Annotated[int, typer.Option("--events", "-n", min=1, help="number of events")]
_Seed = Annotated[int, typer.Option("--seed", min=0, help="random seed (same seed, same output)")]
_Chunk = Annotated[
    int, typer.Option("--chunk-size", min=1, help="events per chunk (bounds the memory)")
]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_err,
        transient=False,
    )


def _fail(exc: FlashlinkError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


def _is_hepmc(url: str) -> bool:
    return url.endswith((".hepmc", ".hepmc3", ".hepmc2"))


@app.command()
def generate(
    output: Annotated[
        str, typer.Argument(help="events file: .parquet (path or s3:// URL) or .hepmc3")
    ],
    *,
    events: _Events = 1000,
    seed: _Seed = 1,
    chunk_size: _Chunk = 1000,
    mode: Annotated[str, typer.Option(help="gun, minbias or bbbar")] = "gun",
    channel: Annotated[
        str, typer.Option(help="gun channel: Bu2JpsiK, Bd2Kpi, Dst2D0pi, pi, K, p, mu, e")
    ] = "Bu2JpsiK",
    spectrum: Annotated[str, typer.Option(help="gun spectrum: pt_exp or log_p")] = "pt_exp",
    p_min: Annotated[float, typer.Option(help="log_p spectrum: lowest p (GeV)")] = 2.0,
    p_max: Annotated[float, typer.Option(help="log_p spectrum: highest p (GeV)")] = 200.0,
    eta_min: Annotated[float, typer.Option(help="gun: lowest pseudorapidity")] = 2.0,
    eta_max: Annotated[float, typer.Option(help="gun: highest pseudorapidity")] = 5.0,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML file with the generator config (overrides the options above)"),
    ] = None,
) -> None:
    """Generate events with Pythia 8 (full pp events or a particle gun) and store them."""
    from flashlink.sim.generation import generate as run_generation  # noqa: PLC0415
    from flashlink.sim.generation import parse_generator_config, write_hepmc  # noqa: PLC0415
    from flashlink.sim.io import ParquetSink  # noqa: PLC0415

    try:
        if config is not None:
            try:
                raw = yaml.safe_load(config.read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise typer.BadParameter(f"cannot read {config}: {exc}") from exc
        elif mode == "gun":
            raw = {
                "mode": "gun",
                "channel": channel,
                "eta_min": eta_min,
                "eta_max": eta_max,
                "spectrum": {"kind": spectrum},
            }
            if spectrum == "log_p":
                raw["spectrum"].update({"p_min": p_min, "p_max": p_max})
        else:
            raw = {"mode": mode}
        cfg = parse_generator_config(raw)
        t0 = time.perf_counter()
        with _progress() as bar:
            task = bar.add_task(f"generating {cfg.mode}", total=events)

            def chunks() -> Iterator[EventChunk]:
                for chunk in run_generation(cfg, events, seed, chunk_size):
                    bar.advance(task, chunk.n_events)
                    yield chunk

            if _is_hepmc(output):
                write_hepmc(output, chunks())
            else:
                meta = {"generator": cfg.model_dump(), "seed": seed, "events": events}
                with ParquetSink(output, meta) as sink:
                    for chunk in chunks():
                        sink.write(chunk.columns)
        dt = time.perf_counter() - t0
        _out.print(f"{events} events in {dt:.1f} s ({events / dt:.0f} events/s) -> {output}")
    except FlashlinkError as exc:
        raise _fail(exc) from exc


def _input_events(url: str, chunk_size: int, limit: int | None) -> Iterator[EventChunk]:
    from flashlink.sim.generation import iter_hepmc  # noqa: PLC0415
    from flashlink.sim.io import iter_events  # noqa: PLC0415

    source = iter_hepmc(url, chunk_size) if _is_hepmc(url) else iter_events(url, chunk_size)
    done = 0
    for whole in source:
        chunk = whole
        if limit is not None and done + whole.n_events > limit:
            keep = whole.event_ids[: limit - done]
            chunk = whole.select_events(_isin(whole.columns["event_id"], keep))
        done += chunk.n_events
        yield chunk
        if limit is not None and done >= limit:
            return


def _isin(values: Any, wanted: Any) -> Any:
    import numpy as np  # noqa: PLC0415

    return np.isin(values, wanted)


@app.command()
def detailed(
    input_url: Annotated[str, typer.Argument(help="events: .parquet (path or URL) or HepMC3")],
    output: Annotated[str, typer.Argument(help="output directory or URL prefix")],
    *,
    seed: _Seed = 1,
    chunk_size: _Chunk = 200,
    events: Annotated[
        int | None, typer.Option("--events", "-n", min=1, help="process only the first N events")
    ] = None,
    geometry: Annotated[Path | None, typer.Option(help="geometry TOML (default: shipped)")] = None,
) -> None:
    """Reference detailed simulation + reconstruction: writes tracks, particles, pvs and
    neutrals tables as Parquet (the training data and truth of the flash models)."""
    from flashlink.sim.detector.pipeline import run_detailed  # noqa: PLC0415

    try:
        t0 = time.perf_counter()
        with _progress() as bar:
            task = bar.add_task("simulating", total=events)
            sim = run_detailed(
                _input_events(input_url, chunk_size, events),
                output,
                seed=seed,
                geometry=geometry,
                metadata={"input": input_url},
                progress=lambda n: bar.advance(task, n),
            )
        dt = time.perf_counter() - t0
        n_ev, n_part = sim.counts["events"], sim.counts["particles"]
        _out.print(
            f"{n_ev} events, {n_part} particles, {sim.counts['tracks']} tracks in {dt:.1f} s: "
            f"{1e3 * dt / max(n_ev, 1):.1f} ms/event, {1e3 * dt / max(n_part, 1):.2f} ms/particle "
            f"-> {output}"
        )
    except FlashlinkError as exc:
        raise _fail(exc) from exc


@app.command()
def ntuple(
    input_dir: Annotated[str, typer.Argument(help="output directory of 'flashlink sim detailed'")],
    output: Annotated[str, typer.Argument(help="output stem: writes <stem>.root / <stem>.parquet")],
    *,
    decay: Annotated[str, typer.Option(help="Bu2JpsiK, Bd2Kpi or Dst2D0pi")] = "Bu2JpsiK",
    formats: Annotated[str, typer.Option("--format", help="root, parquet or root,parquet")] = (
        "root,parquet"
    ),
    busy: Annotated[bool, typer.Option(help="apply p/pt/isMuon cuts (full events)")] = False,
) -> None:
    """Build signal candidates (vertex fit, mass, IP/FD chi2, PID, truth) into an ntuple."""
    from flashlink.sim.ntuple import make_ntuple  # noqa: PLC0415

    try:
        with _progress() as bar:
            task = bar.add_task(f"{decay} candidates", total=None)
            n = make_ntuple(
                input_dir,
                output,
                decay,
                formats=tuple(f.strip() for f in formats.split(",")),
                busy=busy,
                progress=lambda k: bar.advance(task, k),
            )
        _out.print(f"{n} candidates -> {output}.{{{formats}}}")
    except FlashlinkError as exc:
        raise _fail(exc) from exc
