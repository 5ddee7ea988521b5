"""Fixtures of the plugin tests: a real ``flashlink plugin serve`` per container runtime."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plugin.support import PluginClient, PluginProcess, free_port, render_section, to_toml
from servicekit import Service


def runtime_params() -> list[Any]:
    return [pytest.param(n, marks=getattr(pytest.mark, n), id=n) for n in ("apptainer", "podman")]


@dataclass
class Running:
    """A plugin process, its client and its directories."""

    process: PluginProcess
    client: PluginClient
    state_dir: Path
    sync_dir: Path
    runtime: str

    def records(self) -> list[dict[str, Any]]:
        """The local backend's job records (what it ran, once each)."""
        jobs = self.state_dir / "sites" / "local" / "jobs"
        return [json.loads(p.read_text()) for p in sorted(jobs.glob("*.json"))]


def plugin_config(state_dir: Path, svc: Service, sync_dir: Path, **extra: Any) -> dict[str, Any]:
    render = render_section(svc)
    # Pods of the tests may mount the sync directory (a hostPath) to wait for the test's signal
    render["volumes"] = {"host_path_prefixes": [str(sync_dir)]}
    config: dict[str, Any] = {
        "state_dir": str(state_dir),
        "reconcile_interval": 0.3,
        "log_poll_seconds": 0.1,
        "render": render,
        "taints": [{"key": "virtual-node.interlink/no-schedule", "value": "true"}],
        "sites": {"local": {"kind": "local", "backend": {"cpus": 16, "kill_after_seconds": 10}}},
    }
    config.update(extra)
    return config


def drain(state_dir: Path) -> None:
    """Last resort after a test: no job of this plugin may outlive it."""
    for path in (state_dir / "sites").glob("*/jobs/*.json"):
        record = json.loads(path.read_text())
        if record.get("status") == "running" and record.get("pid"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record["pid"], signal.SIGKILL)


def start_plugin(
    tmp: Path, svc: Service, name: str = "plugin", **extra: Any
) -> tuple[PluginProcess, Path, Path]:
    state_dir = tmp / "state"
    sync_dir = tmp / "sync"
    sync_dir.mkdir(parents=True, exist_ok=True)
    config = tmp / f"{name}.toml"
    config.write_text(to_toml(plugin_config(state_dir, svc, sync_dir, **extra)))
    process = PluginProcess(config, free_port(), tmp / f"{name}.log")
    process.start()
    return process, state_dir, sync_dir


@pytest.fixture(scope="module", params=runtime_params())
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A plugin serving on the local site, whose jobs run the test image with the runtime."""
    svc = request.getfixturevalue(request.param)
    assert isinstance(svc, Service)
    tmp = tmp_path_factory.mktemp(f"plugin-{svc.name}")
    process, state_dir, sync_dir = start_plugin(tmp, svc)
    client = PluginClient(process.url)
    try:
        yield Running(process, client, state_dir, sync_dir, svc.name)
    finally:
        client.close()
        process.stop()
        time.sleep(0.2)
        drain(state_dir)
