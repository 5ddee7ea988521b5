"""``flashlink plugin``: serve the interLink plugin, check or show its configuration."""

from __future__ import annotations

__all__ = ["app", "apply_overrides"]

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flashlink.cli.plugin_demo import demo as _pod_demo
from flashlink.errors import FlashlinkError

app = typer.Typer(
    name="plugin",
    help="The interLink plugin: Pods in, batch jobs out (local, Slurm, HTCondor sites).",
    no_args_is_help=True,
)
_err = Console(stderr=True)

_Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="FLASHLINK_PLUGIN_CONFIG",
        exists=True,
        dir_okay=False,
        help="plugin TOML file (see the README); without one: the local site on 127.0.0.1",
    ),
]
_StateDir = Annotated[
    Path | None,
    typer.Option(
        envvar="FLASHLINK_PLUGIN_STATE_DIR",
        file_okay=False,
        help="override state_dir: SQLite store, job directories, backend records",
    ),
]
_Runtime = Annotated[
    str | None,
    typer.Option(
        envvar="FLASHLINK_PLUGIN_RUNTIME",
        help="override the container runtime of every site: apptainer or podman",
    ),
]


def apply_overrides(
    data: dict[str, Any],
    *,
    host: str | None = None,
    port: int | None = None,
    socket: Path | None = None,
    state_dir: Path | None = None,
    runtime: str | None = None,
    image_map: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The configuration ``data`` (as a mapping) with command-line options applied."""
    out: dict[str, Any] = json.loads(json.dumps(data, default=str))
    server = out.setdefault("server", {})
    if host is not None:
        server["host"] = host
    if port is not None:
        server["port"] = port
        server["socket"] = None
    if socket is not None:
        server["socket"] = str(socket)
    if state_dir is not None:
        out["state_dir"] = str(state_dir)
    renders = [out.setdefault("render", {})]
    renders += [site.setdefault("render", {}) for site in out.get("sites", {}).values()]
    for render in renders:
        if runtime is not None and (render is renders[0] or "runtime" in render):
            render["runtime"] = runtime
        if image_map and (render is renders[0] or "images" in render):
            overrides = render.setdefault("images", {}).setdefault("overrides", {})
            overrides.update(image_map)
    return out


def _load(config: Path | None, **overrides: Any) -> Any:
    from flashlink.plugin.config import PluginConfig, load_config, parse_plugin_config  # noqa: PLC0415

    base: PluginConfig = load_config(config)
    return parse_plugin_config(apply_overrides(base.model_dump(mode="json"), **overrides))


def _fail(exc: FlashlinkError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(2)


@app.command()
def serve(  # noqa: PLR0917 - typer maps each parameter to an option
    config: _Config = None,
    host: Annotated[
        str | None, typer.Option(envvar="FLASHLINK_PLUGIN_HOST", help="override server.host")
    ] = None,
    port: Annotated[
        int | None, typer.Option(envvar="FLASHLINK_PLUGIN_PORT", help="override server.port")
    ] = None,
    socket: Annotated[
        Path | None,
        typer.Option(envvar="FLASHLINK_PLUGIN_SOCKET", help="serve on this unix socket instead"),
    ] = None,
    state_dir: _StateDir = None,
    runtime: _Runtime = None,
    log_level: Annotated[
        str, typer.Option(envvar="FLASHLINK_PLUGIN_LOG_LEVEL", help="debug, info, warning, error")
    ] = "info",
) -> None:
    """Serve the plugin API (FastAPI on uvicorn) until SIGINT/SIGTERM.

    Jobs keep running when the plugin stops; the next start re-adopts them.
    """
    from flashlink.plugin.server import make_server  # noqa: PLC0415 - only this command serves

    level = log_level.lower()
    if level not in ("debug", "info", "warning", "error"):
        raise _fail(FlashlinkError(f"--log-level {log_level!r}: use debug, info, warning or error"))
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = _load(
            config, host=host, port=port, socket=socket, state_dir=state_dir, runtime=runtime
        )
        server = make_server(settings, log_level=level)
    except FlashlinkError as exc:
        raise _fail(exc) from None
    where = (
        f"unix socket {settings.server.socket}"
        if settings.server.socket
        else f"http://{settings.server.host}:{settings.server.port}"
    )
    _err.print(
        f"flashlink plugin on {where}; state in {settings.resolved_state_dir()}; "
        f"sites: {', '.join(settings.site_names())}",
        highlight=False,
    )
    server.run()


@app.command("config")
def show_config(
    config: _Config = None,
    state_dir: _StateDir = None,
    runtime: _Runtime = None,
) -> None:
    """Check a configuration and print it (JSON) with every default filled in."""
    try:
        settings = _load(config, state_dir=state_dir, runtime=runtime)
        for site in settings.site_names():
            settings.render_config(site)
    except FlashlinkError as exc:
        raise _fail(exc) from None
    data = settings.model_dump(mode="json")
    data["state_dir"] = str(settings.resolved_state_dir())
    data["default_site"] = settings.default()
    data["resolved_render"] = {
        site: settings.render_config(site).model_dump(mode="json") for site in settings.site_names()
    }
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


# One sample Pod through the plugin as interLink sends it; `flashlink demo` is the production.
app.command("demo")(_pod_demo)
