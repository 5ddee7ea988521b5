"""``flashlink production run|status|cancel``: a production request through the plugin API."""

from __future__ import annotations

__all__ = ["app"]

import os
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from flashlink.cli.plugin_demo import find_runtime
from flashlink.errors import FlashlinkError

app = typer.Typer(name="production", help="Run flash-simulation productions.", no_args_is_help=True)
_out = Console(soft_wrap=True)
_err = Console(stderr=True)

_Request = Annotated[Path, typer.Argument(help="the production request (YAML)", dir_okay=False)]
_Plugin = Annotated[
    str | None,
    typer.Option(help="URL of a running plugin; default: start one here on the local site"),
]
_StateDir = Annotated[
    Path | None,
    typer.Option(
        help="local directory of the journal, job markers and logs (default: the output "
        "directory; for s3:// outputs $XDG_STATE_HOME/flashlink/productions/NAME-HASH)"
    ),
]


def payload_sif() -> Path:
    """The CI payload image of ci/services/payload.sh (python3 only; software bound in)."""
    cache = Path(os.environ.get("FLASHLINK_CI_CACHE", "/var/cache/flashlink-ci"))
    return cache / "payload" / "payload.sif"


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def _table(snap: object) -> Table:
    from flashlink.production import Snapshot  # noqa: PLC0415

    assert isinstance(snap, Snapshot)
    table = Table(title="production", box=None, header_style="bold", padding=(0, 2))
    for column in ("pending", "running", "done", "failed", "events", "rate", "ETA"):
        table.add_column(column, justify="right")
    table.add_row(
        str(snap.pending),
        f"[cyan]{snap.running}",
        f"[green]{snap.done}",
        f"[red]{snap.failed}" if snap.failed else "0",
        f"{snap.events_done:,}/{snap.events_total:,}",
        f"{snap.rate:,.1f} ev/s",
        _fmt_eta(snap.eta),
    )
    return table


def _image_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        ref, sep, local = item.partition("=")
        if not sep or not ref or not local:
            raise typer.BadParameter(f"--image-map {item!r}: expected REF=LOCAL")
        out[ref] = local
    return out


@app.command()
def run(
    request_file: _Request,
    *,
    plugin: _Plugin = None,
    token_env: Annotated[str, typer.Option(help="env variable with the plugin's bearer token")] = (
        "FLASHLINK_PLUGIN_TOKEN"  # noqa: S107 - the name of a variable, not a token
    ),
    runtime: Annotated[str, typer.Option(help="embedded plugin: apptainer or podman")] = (
        "apptainer"
    ),
    image_map: Annotated[
        list[str] | None,
        typer.Option("--image-map", help="REF=LOCAL: run the payload image from a local SIF"),
    ] = None,
    flashlink_command: Annotated[
        str | None,
        typer.Option(
            help="flashlink inside the image (default: from the software bind, or "
            "'flashlink' with --no-bind-software)"
        ),
    ] = None,
    bind_software: Annotated[
        bool, typer.Option(help="bind this installation read-only into the jobs (CVMFS-like)")
    ] = True,
    cpus: Annotated[float | None, typer.Option(help="embedded plugin: CPUs lent to jobs")] = None,
    poll_interval: Annotated[float, typer.Option(help="seconds between /status calls")] = 1.0,
    state_dir: _StateDir = None,
) -> None:
    """Run (or resume) a production: only the jobs without outputs are submitted."""
    from flashlink.production import (  # noqa: PLC0415
        EmbeddedPlugin,
        PayloadSettings,
        PluginClient,
        Production,
        load_request,
        report_path,
        software_binds,
        state_root,
    )

    try:
        request = load_request(request_file)
        state = state_root(request, state_dir)
        outputs_dir = [] if "://" in request.output else [request.output]
        venv_cmd, binds = "flashlink", tuple[str, ...]()
        if bind_software:
            _, venv_cmd, binds = software_binds()
        payload = PayloadSettings(command=flashlink_command or venv_cmd, binds=binds)
        embedded: AbstractContextManager[str]
        if plugin is None:
            executable = find_runtime(runtime)
            if executable is None:
                raise typer.BadParameter(
                    f"{runtime} is not installed: run `./dev setup {runtime}` or give --plugin URL"
                )
            overrides = _image_map(image_map or [])
            if not overrides and payload_sif().is_file():
                overrides = {request.image: str(payload_sif())}
            if not overrides:
                _err.print(
                    f"[yellow]note:[/yellow] no local payload image: the jobs pull {request.image} "
                    "from its registry; `./dev setup payload` builds one here, or give "
                    "--image-map REF=/path/to.sif",
                    highlight=False,
                )
            embedded = EmbeddedPlugin(
                state / ".flashlink" / "plugin",
                runtime=runtime,
                executable=executable,
                image_overrides=overrides,
                host_paths=[*outputs_dir, *binds],
                cpus=cpus,
            )
        else:
            embedded = nullcontext(plugin)
        for directory in [state, *map(Path, outputs_dir)]:
            directory.mkdir(parents=True, exist_ok=True)
        with embedded as url:
            client = PluginClient(url, token=os.environ.get(token_env))
            try:
                production = Production(
                    request, client, payload, poll_interval=poll_interval, state_dir=state
                )
                _out.print(
                    f"[bold]{request.name}[/bold]: {request.events:,} events in "
                    f"{request.n_jobs} jobs on site {request.site} via {url}"
                )
                with Live(
                    _table(production.snapshot()), console=_out, refresh_per_second=4
                ) as live:
                    snap = production.run(lambda s: live.update(_table(s)))
                _out.line()  # Live leaves the cursor after the table when not on a terminal
            finally:
                client.close()
        if snap.failed:
            _err.print(
                f"[red]{snap.failed} job(s) failed after {request.retries} retries; "
                f"logs under {state}/jobs/*/a*/logs; re-run to retry them"
            )
            raise typer.Exit(1)
        records = production.done_records()
        _out.print(f"merged ntuple: {request.output}/ntuple.root", highlight=False)
        report = report_path(request.output, records)
        if report is not None:
            _out.print(f"validation report: {report}", highlight=False)
        _out.print(f"provenance: {request.output}/provenance.json", highlight=False)
    except FlashlinkError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def status(request_file: _Request, state_dir: _StateDir = None) -> None:
    """Jobs done, failed and in flight, from the state directory (no plugin needed)."""
    from flashlink.production import Journal, load_request, plan_jobs, state_root  # noqa: PLC0415

    try:
        request = load_request(request_file)
    except FlashlinkError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    root = state_root(request, state_dir)
    journal = Journal(root)
    opened = journal.open_attempts()
    last_end = {e["key"]: e["phase"] for e in journal.entries() if e["event"] == "end"}
    table = Table(box=None, header_style="bold")
    for column in ("job", "events", "state", "attempts"):
        table.add_column(column)
    keys = [(j.key, j.events, root / "jobs" / j.key) for j in plan_jobs(request)]
    if request.reference.events:
        keys.append(("reference", request.reference.events, root / "reference"))
    done = 0
    for key, events, directory in keys:
        if (directory / "done.json").exists():
            state, done = "[green]done", done + 1
        elif key in opened:
            state = "[cyan]submitted"
        else:
            phase = last_end.get(key, "Lost")  # Failed, Lost or Cancelled
            state = "pending" if not journal.attempts(key) else f"[red]{phase.lower()}"
        table.add_row(key, f"{events:,}", state, str(journal.attempts(key)))
    _out.print(table)
    _out.print(f"{done}/{len(keys)} done; {journal.submissions()} submissions")


@app.command()
def cancel(
    request_file: _Request,
    plugin: _Plugin = None,
    runtime: Annotated[str, typer.Option(help="embedded plugin: apptainer or podman")] = (
        "apptainer"
    ),
    token_env: Annotated[str, typer.Option(help="env variable with the bearer token")] = (
        "FLASHLINK_PLUGIN_TOKEN"  # noqa: S107 - the name of a variable, not a token
    ),
    state_dir: _StateDir = None,
) -> None:
    """Delete the production's running pods (outputs already done stay)."""
    from flashlink.production import (  # noqa: PLC0415
        EmbeddedPlugin,
        PayloadSettings,
        PluginClient,
        Production,
        load_request,
        software_binds,
        state_root,
    )

    try:
        request = load_request(request_file)
        state = state_root(request, state_dir)
        _, cmd, binds = software_binds()
        embedded: AbstractContextManager[str] = (
            nullcontext(plugin)
            if plugin
            else EmbeddedPlugin(
                state / ".flashlink" / "plugin",
                runtime=runtime,
                executable=find_runtime(runtime) or runtime,
                image_overrides={},
                host_paths=[*([] if "://" in request.output else [request.output]), *binds],
            )
        )
        with embedded as url:
            client = PluginClient(url, token=os.environ.get(token_env))
            try:
                n = Production(
                    request, client, PayloadSettings(cmd, binds), state_dir=state
                ).cancel()
            finally:
                client.close()
        _out.print(f"cancelled {n} pod(s)")
    except FlashlinkError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def snakefile(
    request_file: _Request,
    *,
    plugin: Annotated[str, typer.Option(help="URL of the plugin the executor submits to")] = (
        "http://127.0.0.1:4000"
    ),
    bind_software: Annotated[
        bool, typer.Option(help="bind this installation read-only into the jobs (CVMFS-like)")
    ] = True,
) -> None:
    """Write the production's Snakefile (workdir: the output) and print how to run it."""
    import shlex  # noqa: PLC0415

    from flashlink.production import PayloadSettings, load_request, software_binds  # noqa: PLC0415
    from flashlink.production.snakemake import write_snakefile  # noqa: PLC0415

    try:
        request = load_request(request_file)
    except FlashlinkError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    cmd, binds = "flashlink", tuple[str, ...]()
    if bind_software:
        _, cmd, binds = software_binds()
    path = write_snakefile(request, PayloadSettings(command=cmd, binds=binds))
    run = [
        "snakemake",
        "-d",
        request.output,
        "-s",
        str(path),
        "--executor",
        "flashlink",
        "--flashlink-url",
        plugin,
        "--flashlink-image",
        request.image,
        "--flashlink-site",
        request.site,
        "--jobs",
        str(max(1, request.n_jobs * 3)),
    ]
    if binds:
        run += ["--flashlink-bind", ":".join(binds)]
    _out.print(f"wrote {path}\nrun it with:\n  {shlex.join(run)}", highlight=False)
