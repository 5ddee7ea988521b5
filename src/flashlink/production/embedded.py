"""The plugin on this machine for a production with no ``--plugin URL``: the local site.

Its state directory lives under the production's output (``.flashlink/plugin``), so after a
driver crash the next run starts the plugin on the same state, which adopts the jobs still
running, and the driver follows them instead of submitting them again.
"""

from __future__ import annotations

__all__ = ["EmbeddedPlugin", "software_binds"]

import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import flashlink
from flashlink.production.errors import ProductionError


def software_binds() -> tuple[str, str, tuple[str, ...]]:
    """The CVMFS-like software bind of this installation: (venv, flashlink command, binds).

    The job's container sees the venv and, for an editable install, the source tree at the
    same paths, read-only; the image brings Debian's Python 3.11 in ``/usr``. A venv made from
    another interpreter (pyenv, conda, a module system) links to it outside ``/usr``: its
    installation is bound too, else the venv's ``python`` would be a dangling link in the job."""
    venv = Path(sys.prefix)
    package = Path(flashlink.__file__).resolve().parent
    binds = {str(venv)}
    base = Path(sys.base_prefix)
    if base != venv and not base.is_relative_to("/usr"):
        binds.add(str(base))
    source = package.parents[1]  # src/ layout: <repo>/src/flashlink
    if not package.is_relative_to(venv):
        binds.add(str(source))
    # a bind inside another one is already visible
    kept = tuple(
        sorted(b for b in binds if not any(b != o and b.startswith(o + "/") for o in binds))
    )
    return str(venv), f"{venv}/bin/flashlink", kept


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedPlugin:
    """``with EmbeddedPlugin(...) as url:`` the plugin on a free loopback port."""

    def __init__(
        self,
        state_dir: Path,
        *,
        runtime: str,
        executable: str,
        image_overrides: dict[str, str],
        host_paths: list[str],
        cpus: float | None = None,
        reconcile_interval: float = 0.5,
        sites: dict[str, Any] | None = None,
    ) -> None:
        render: dict[str, Any] = {
            "runtime": runtime,
            runtime: {"executable": executable},
            "volumes": {"host_path_prefixes": sorted(set(host_paths))},
        }
        if image_overrides:
            render["images"] = {"overrides": image_overrides}
        backend: dict[str, Any] = {}
        if cpus is not None:
            backend["cpus"] = cpus
        self.settings: dict[str, Any] = {
            "state_dir": str(state_dir),
            "reconcile_interval": reconcile_interval,
            "server": {"host": "127.0.0.1", "port": 0},
            "auth": {"tokens_env": None},
            "render": render,
            # other sites (a [sites] table of docs/plugin.md), e.g. a Slurm cluster
            "sites": sites or {"local": {"kind": "local", "backend": backend}},
        }
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> str:
        from flashlink.plugin import make_server, parse_plugin_config  # noqa: PLC0415

        port = _free_port()
        self.settings["server"]["port"] = port
        Path(self.settings["state_dir"]).mkdir(parents=True, exist_ok=True)
        self._server = make_server(parse_plugin_config(self.settings), log_level="error")
        self._thread = threading.Thread(
            target=self._server.run, name="flashlink-production-plugin", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ProductionError(
                    "the embedded plugin did not start; run `flashlink plugin serve` to see why"
                )
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
