"""``flashlink sim``: generate events, run the reference detailed simulation, train and run the
flash models, make ntuples, validate.

Heavy modules (numpy, pyarrow, Pythia, torch) are imported inside the commands, so ``flashlink
--help`` stays fast and never imports torch.
"""

from __future__ import annotations

__all__ = ["app"]

import time
from collections.abc import Iterator
from contextlib import nullcontext
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
    help="Flash-simulation payload: Pythia generation, reference detailed simulation, flash "
    "models (train, flash, validate), ntuples.",
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
    from flashlink.sim.io import ParquetSink, staged_output  # noqa: PLC0415

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
                # pyhepmc writes local files only: an s3:// HepMC3 file is uploaded when whole
                with staged_output(output, directory=False) as local:
                    write_hepmc(local, chunks())
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
    from flashlink.sim.io import iter_events  # noqa: PLC0415

    source = _hepmc_events(url, chunk_size) if _is_hepmc(url) else iter_events(url, chunk_size)
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


def _hepmc_events(url: str, chunk_size: int) -> Iterator[EventChunk]:
    from flashlink.sim.generation import iter_hepmc  # noqa: PLC0415
    from flashlink.sim.io import local_input  # noqa: PLC0415

    # pyhepmc reads local files only: an s3:// HepMC3 file is downloaded first
    with local_input(url) as local:
        yield from iter_hepmc(local, chunk_size)


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
    run_number: Annotated[
        int, typer.Option(min=0, max=2**31 - 1, help="runNumber branch (a production's job)")
    ] = 0,
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
                run_number=run_number,
                progress=lambda k: bar.advance(task, k),
            )
        _out.print(f"{n} candidates -> {output}.{{{formats}}}")
    except FlashlinkError as exc:
        raise _fail(exc) from exc


@app.command()
def train(
    inputs: Annotated[
        list[str], typer.Argument(help="output directories of 'flashlink sim detailed'")
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="model-set directory to write")],
    *,
    seed: _Seed = 1,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda:N")] = "auto",
    resume: Annotated[bool, typer.Option(help="continue from checkpoints in --out")] = True,
    epoch_scale: Annotated[
        float, typer.Option(min=0.001, help="multiply every model's epochs (quick runs < 1)")
    ] = 1.0,
    only: Annotated[
        str | None, typer.Option(help="comma-separated models to train (default: all)")
    ] = None,
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads (0: torch default)")] = 0,
    mlflow_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else local)"),
    ] = None,
    save_table: Annotated[
        str | None, typer.Option(help="also write the prepared training table (Parquet)")
    ] = None,
) -> None:
    """Train the flash models on reference samples; export them (ONNX + numpy + manifest)."""
    from flashlink.sim.errors import StorageError  # noqa: PLC0415
    from flashlink.sim.flash.errors import require  # noqa: PLC0415

    try:
        if "://" in out:
            # training resumes from checkpoints in --out and logs metrics there as it goes
            raise StorageError(
                f"--out {out!r}: training writes a local model-set directory; give a path and "
                "copy the finished set to object storage (flash reads --models s3://...)"
            )
        require("torch")
        require("zuko")
        from flashlink.sim.flash.dataset import build_training_table, write_table  # noqa: PLC0415
        from flashlink.sim.flash.tracking import Tracker  # noqa: PLC0415
        from flashlink.sim.flash.train import TrainOptions, train_all  # noqa: PLC0415
        from flashlink.sim.io import iter_tables  # noqa: PLC0415

        t0 = time.perf_counter()
        table = build_training_table(inputs)
        if save_table:
            write_table(table, save_table, {"inputs": inputs})
        pv_parts = [t for d in inputs for t in iter_tables(f"{d.rstrip('/')}/pvs.parquet")]
        pvs = {k: _concat([t[k] for t in pv_parts]) for k in pv_parts[0]}
        options = TrainOptions(
            seed=seed,
            device=device,
            resume=resume,
            epoch_scale=epoch_scale,
            only=tuple(m.strip() for m in only.split(",")) if only else (),
            threads=threads,
        )
        _out.print(f"training set: {len(table['pid'])} particles from {len(inputs)} samples")
        with _progress() as bar:
            tasks: dict[str, Any] = {}

            def progress(label: str, epoch: int, epochs: int, loss: float) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=epochs)
                bar.update(tasks[label], completed=epoch, description=f"{label} {loss:.4f}")

            chain = train_all(
                table,
                out,
                options,
                pvs=pvs,
                tracker=Tracker.create(Path(out) / "tracking", mlflow_uri),
                progress=progress,
            )
        for name, info in chain["summary"].items():
            _out.print(f"{name:<12} {info['family']:<5} {info['seconds']:7.1f} s")
        _out.print(f"trained in {time.perf_counter() - t0:.0f} s -> {out}")
    except FlashlinkError as exc:
        raise _fail(exc) from exc


def _concat(parts: list[Any]) -> Any:
    import numpy as np  # noqa: PLC0415

    return np.concatenate(parts)


@app.command()
def flash(
    input_url: Annotated[str, typer.Argument(help="events: .parquet (path or URL) or HepMC3")],
    output: Annotated[str, typer.Argument(help="output directory or URL prefix")],
    *,
    seed: _Seed = 1,
    chunk_size: _Chunk = 2000,
    events: Annotated[
        int | None, typer.Option("--events", "-n", min=1, help="process only the first N events")
    ] = None,
    models: Annotated[
        str | None, typer.Option(help="model-set directory (default: the shipped set)")
    ] = None,
    oversample: Annotated[
        int, typer.Option(min=1, help="simulate each event k times (replicas are marked)")
    ] = 1,
    backend: Annotated[
        str, typer.Option(help="auto (numba if installed, else onnx), numba, onnx or numpy")
    ] = "auto",
    family: Annotated[
        str,
        typer.Option(
            help="generators: auto (chosen by validation), mlp (fastest), flow, or per model "
            "(e.g. covariance=mlp)"
        ),
    ] = "auto",
) -> None:
    """Flash simulation: the trained models turn generator particles into reconstructed
    tracks, particles and pvs tables (the columns of 'sim detailed')."""
    from flashlink.sim.flash.chain import run_flash  # noqa: PLC0415
    from flashlink.sim.io import local_input  # noqa: PLC0415

    try:
        t0 = time.perf_counter()
        with (
            _progress() as bar,
            # the models load from local files: an s3:// model set is downloaded first
            local_input(models) if models else nullcontext(None) as model_dir,
        ):
            task = bar.add_task("flash simulating", total=events)
            chain = run_flash(
                _input_events(input_url, chunk_size, events),
                output,
                seed=seed,
                model_dir=model_dir,
                oversample=oversample,
                backend=backend,
                family=family,
                metadata={"input": input_url},
                progress=lambda n: bar.advance(task, n),
            )
        dt = time.perf_counter() - t0
        c = chain.counts
        _out.print(
            f"{c['events']} events, {c['particles']} particles, {c['tracks']} tracks in "
            f"{dt:.1f} s: {c['particles'] / max(dt, 1e-9):,.0f} particles/s (I/O included) "
            f"-> {output}"
        )
    except FlashlinkError as exc:
        raise _fail(exc) from exc


@app.command()
def validate(
    flash_dir: Annotated[str, typer.Argument(help="output directory of 'flashlink sim flash'")],
    reference_dir: Annotated[str, typer.Argument(help="output of 'sim detailed' (same events)")],
    report: Annotated[str, typer.Argument(help="report directory: index.html, metrics.json")],
    *,
    label: Annotated[str, typer.Option(help="sample name shown in the report")] = "sample",
    decay: Annotated[
        str | None, typer.Option(help="also compare this decay's mass peak (e.g. Bu2JpsiK)")
    ] = None,
    busy: Annotated[bool, typer.Option(help="full events: busy-event ntuple cuts")] = False,
    plots: Annotated[bool, typer.Option(help="draw the report's figures")] = True,
    seed: _Seed = 1,
) -> None:
    """Compare flash and reference outputs: metrics JSON and an HTML report with plots."""
    from flashlink.sim.io import staged_output  # noqa: PLC0415
    from flashlink.sim.validation import validate_samples  # noqa: PLC0415

    try:
        # the report (HTML, plots, metrics) is written to a directory: for an s3:// report it
        # is made locally and uploaded when complete
        with _progress() as bar, staged_output(report, directory=True) as report_dir:
            task = bar.add_task("validating", total=None)
            result = validate_samples(
                flash_dir,
                reference_dir,
                report_dir,
                label=label,
                decay=decay,
                busy=busy,
                seed=seed,
                plots=plots,
            )
            bar.update(task, completed=1, total=1)
        summary = result["summary"]
        for key, value in summary.items():
            _out.print(f"{key:<34} {value}")
        _out.print(f"-> {report}/index.html, {report}/metrics.json")
    except FlashlinkError as exc:
        raise _fail(exc) from exc
