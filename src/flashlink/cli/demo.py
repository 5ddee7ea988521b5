"""``flashlink demo``: the README's main job, a small flash-simulation production on this machine.

It writes a production request (particle-gun B+ -> J/psi K+ events, the flash simulation with
the shipped model set, a reference sample simulated in detail for the validation report) and
runs it exactly as ``flashlink production run`` does with the embedded defaults: the interLink
plugin in this process on the local backend, Apptainer with the payload image of ``./dev setup
payload``, this installation bound into the jobs read-only, outputs in a directory. It ends with
the paths of the merged ntuple, the HTML report and the provenance, then reads the report's
``metrics.json`` back and says in a few lines whether the flash simulation agrees with the
reference (README, "What the report means").

The single-Pod walk-through of the plugin API is ``flashlink plugin demo``.
"""

from __future__ import annotations

__all__ = ["demo", "demo_request", "summarize_report"]

import json
import math
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from flashlink.cli.plugin_demo import find_runtime
from flashlink.cli.production import payload_sif, run
from flashlink.errors import FlashlinkError

_out = Console(soft_wrap=True)  # paths stay whole on one line, whatever the terminal
_err = Console(stderr=True, soft_wrap=True)

DEMO_EVENTS = 50_000
"""Half the issue's example (100,000): "a few minutes" on 2 cores. The time goes to the ntuple
step (~3-4 CPU-ms per candidate, ~0.8 candidates per event; generation and flash take ~0.5
CPU-ms per event): ~2-3 minutes on 2 idle cores; 100,000 events took 13.5 min while other
work kept the load average at 6-12 (README, "Two commands")."""
DEMO_REFERENCE = 1000
"""Reference events: ~2,000 tracks and ~360 truth-matched B candidates (measured: 410 and 72
per 200 events), so W1 floors near 0.04 and a statistical error of ~5 % on the mass-width
comparison; 200 events left floors of ~0.09 and the width at +/- 18 %."""


def demo_request(
    output: Path, events: int, *, events_per_job: int | None, reference: int
) -> dict[str, Any]:
    """The demo's production request (what ``request.yaml`` in the output directory holds)."""
    # Four chunks by default: two run at once on a 2-core machine and each pays ~15 s of fixed
    # cost (three container and Python start-ups), under 10 % of a 25,000-event chunk.
    per_job = events_per_job or max(1, -(-events // 4))
    return {
        "name": "demo-bu2jpsik",
        "event": {"kind": "gun", "channel": "Bu2JpsiK"},
        "events": events,
        "events_per_job": min(per_job, events),
        "simulation": "flash",
        "oversampling": 1,
        "seed": 1,
        "models": "shipped",
        "site": "local",
        "resources": {"cpu": "1", "memory": "2Gi"},
        "output": str(output),
        "reference": {"events": reference},
        "retries": 1,
    }


def _check_output(out: Path, request_file: Path, data: dict[str, Any]) -> None:
    """An output directory is new, empty, or the same demo's (re-running it resumes it)."""
    if not any(out.iterdir()):
        return
    if not request_file.is_file():
        raise FlashlinkError(
            f"--output {out} is not empty and holds no demo request.yaml: give a new or empty "
            "directory"
        )
    previous = yaml.safe_load(request_file.read_text())
    if previous != data:
        raise FlashlinkError(
            f"--output {out} holds a demo with another request ({request_file}); its finished "
            "jobs would be mixed with this one's: give a new directory, or the same options "
            "to resume it"
        )


def _fmt(value: Any, spec: str) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return format(value, spec)
    return "n/a"


def _percent(value: Any) -> Any:
    return 100 * value if isinstance(value, int | float) else None


def summarize_report(metrics: dict[str, Any]) -> list[str]:
    """A few lines from a report's ``metrics.json``: the numbers that say whether the flash
    simulation agrees with the reference at this sample size (README, "What the report means").
    """
    lines = []
    mass = metrics.get("mass_peak") or {}
    if mass.get("flash") and mass.get("ref"):
        f, r = mass["flash"], mass["ref"]
        lines.append(
            f"B mass peak     flash {_fmt(f['mean'], '.4f')} GeV, width "
            f"{_fmt(1000 * f['width'], '.1f')} MeV ({f['matched']} candidates)  vs  reference "
            f"{_fmt(r['mean'], '.4f')} GeV, {_fmt(1000 * r['width'], '.1f')} MeV "
            f"({r['matched']}): mean {_fmt(100 * mass['mean_rel_diff'], '+.2f')} %, width "
            f"{_fmt(100 * mass['width_rel_diff'], '+.1f')} % "
            f"+- {_fmt(_percent(mass.get('width_rel_diff_err')), '.1f')} % (statistical)"
        )
    eff = (metrics.get("efficiency") or {}).get("reconstructed") or {}
    if "within_2sigma" in eff:
        lines.append(
            f"efficiency      {_fmt(100 * eff['within_2sigma'], '.0f')} % of the (p, eta) bins "
            "agree within 2 sigma"
        )
    features = [
        m
        for info in (metrics.get("models") or {}).values()
        for m in (info.get("features") or {}).values()
    ]
    if features:
        # the report's own rule (flashlink.sim.validation.report): above 0.02 and 2x the floor
        near = sum(1 for m in features if m["w1"] <= max(0.02, 2 * m["w1_floor"]))
        lines.append(
            f"distributions   {near} of {len(features)} model outputs with W1 within twice its "
            "statistical floor (the W1 between two halves of the reference)"
        )
    pulls = metrics.get("pulls") or {}
    diffs = {k: v["rel_diff"] for k, v in pulls.items() if isinstance(v, dict) and "rel_diff" in v}
    if diffs:
        worst = max(diffs, key=lambda k: abs(diffs[k]))
        lines.append(
            f"pull widths     worst {worst} {_fmt(100 * diffs[worst], '+.1f')} % "
            "(flash vs reference track-parameter pulls)"
        )
    verdict = (metrics.get("summary") or {}).get("checks")
    if verdict:
        floors = sorted(m["w1_floor"] for m in features if math.isfinite(m["w1_floor"]))
        floor = floors[len(floors) // 2] if floors else math.nan
        why = (
            f"; the median W1 floor of this sample is {floor:.3f}, so W1 <= 0.02 cannot pass"
            if floor > 0.02
            else ""
        )
        lines.append(
            f"strict checks   {verdict} (issue 9's fixed targets{why}; docs/flash.md "
            "'Results' has them on large samples)"
        )
    return lines


def demo(
    *,
    events: Annotated[
        int, typer.Option(min=1, help="particle-gun B+ -> J/psi K+ events to produce")
    ] = DEMO_EVENTS,
    events_per_job: Annotated[
        int | None, typer.Option(min=1, help="events per job (default: a quarter of --events)")
    ] = None,
    reference: Annotated[
        int,
        typer.Option(min=0, help="events simulated in detail for the validation report (0: none)"),
    ] = DEMO_REFERENCE,
    output: Annotated[
        Path | None,
        typer.Option(
            file_okay=False, help="output directory (default: a new /var/tmp/flashlink-demo-*)"
        ),
    ] = None,
) -> None:
    """Run a small flash-simulation production here and show where its ntuple and report are.

    The local backend, Apptainer with the payload image of `./dev setup payload`, the shipped
    flash models; `flashlink production run` with a request of your own does the same at any
    size and on Slurm or HTCondor sites.
    """
    if events_per_job is not None and events_per_job > events:
        _err.print(
            f"[red]error:[/red] --events-per-job {events_per_job:,} is larger than --events "
            f"{events:,}; give at most {events:,}",
            highlight=False,
        )
        raise typer.Exit(2)
    if find_runtime("apptainer") is None or not payload_sif().is_file():
        _err.print(
            "[red]error:[/red] the demo's jobs run under Apptainer with the payload image "
            f"{payload_sif()}, which is not here: run `./dev setup payload` (as root; it installs "
            "Apptainer too, about 3 minutes the first time) or simply `./dev demo`",
            highlight=False,
        )
        raise typer.Exit(2)
    # /var/tmp, not /tmp: the outputs (~2 kB per event) outlive a reboot and a tmpfs /tmp
    out = (output or Path(tempfile.mkdtemp(prefix="flashlink-demo-", dir="/var/tmp"))).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        request_file = out / "request.yaml"
        data = demo_request(out, events, events_per_job=events_per_job, reference=reference)
        _check_output(out, request_file, data)
        request_file.write_text(yaml.safe_dump(data, sort_keys=False))
    except OSError as exc:
        _err.print(f"[red]error:[/red] --output {out}: {exc.strerror}", highlight=False)
        raise typer.Exit(2) from None
    except FlashlinkError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    _out.print(
        f"[bold]flashlink demo[/bold]: {events:,} particle-gun B+ -> J/psi K+ events, flash "
        f"simulation (shipped models), {reference:,} reference events for the report\n"
        f"request: {request_file}",
        highlight=False,
    )
    run(
        request_file,
        plugin=None,
        token_env="FLASHLINK_PLUGIN_TOKEN",  # noqa: S106 - the name of a variable
        runtime="apptainer",
        image_map=None,
        flashlink_command=None,
        bind_software=True,
        cpus=None,
        poll_interval=1.0,
    )
    report = json.loads((out / "provenance.json").read_text()).get("report")
    if not report:
        _out.print("no validation report: --reference 0", highlight=False)
        return
    metrics_file = Path(report).with_name("metrics.json")
    _out.print(f"\n[bold]report summary[/bold] ({metrics_file}):", highlight=False)
    for line in summarize_report(json.loads(metrics_file.read_text())):
        _out.print(f"  {line}", highlight=False)
    _out.print("what each number means: README.md, 'What the report means'", highlight=False)
