"""The root ``flashlink`` typer application; each part adds its own sub-command group."""

from __future__ import annotations

import platform

import typer
from rich.console import Console

import flashlink
from flashlink.cli.demo import demo
from flashlink.cli.images import app as images_app
from flashlink.cli.jobscript import app as jobscript_app
from flashlink.cli.plugin import app as plugin_app
from flashlink.cli.production import app as production_app
from flashlink.cli.sim import app as sim_app

app = typer.Typer(
    name="flashlink",
    help="Run flash-simulation productions and offload them to HTCondor and Slurm via interLink.",
    no_args_is_help=True,
    add_completion=False,
)

_console = Console()
app.add_typer(jobscript_app)
app.add_typer(images_app)
app.add_typer(sim_app)
app.add_typer(plugin_app)
app.add_typer(production_app)
# the README's main job: a small production here (the plugin-only walk-through: plugin demo)
app.command("demo")(demo)


@app.callback()
def _root() -> None:
    """Flash-simulation productions offloaded to batch systems through interLink."""


@app.command()
def version() -> None:
    """Print the flashlink version and the Python it runs on."""
    _console.print(
        f"flashlink {flashlink.__version__} "
        f"(Python {platform.python_version()}, {platform.system()} {platform.machine()})"
    )


def main() -> None:
    """Console-script entry point."""
    app()
