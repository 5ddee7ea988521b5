"""Helpers of the plugin tests: Pods as interLink sends them, a real plugin process, a client.

``PluginProcess`` runs ``flashlink plugin serve`` (the real command, uvicorn on a free loopback
port) with a config file written by the test; ``PluginClient`` sends exactly the requests the
interLink API server sends (GET with JSON bodies for /status and /getLogs, POST for /create and
/delete) and reads the answers as the virtual kubelet would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
from fastapi import FastAPI

from flashlink.kube import PodSpec
from flashlink.plugin import Plugin, PluginConfig, make_server
from servicekit import Service

IMAGE = "busybox:1.36"
FLASHLINK = Path(sys.executable).with_name("flashlink")
# what pod(**spec) may set: the PodSpec fields flashlink reads, but those pod() takes itself
_SPEC_FIELDS = {f.alias or n for n, f in PodSpec.model_fields.items()} - {
    "containers",
    "initContainers",
    "volumes",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def render_section(svc: Service) -> dict[str, Any]:
    """The ``[render]`` table that runs IMAGE as the test image of the service's runtime."""
    if svc.name == "apptainer":
        return {
            "runtime": "apptainer",
            "apptainer": {"executable": svc["APPTAINER"]},
            "images": {"overrides": {IMAGE: svc["TEST_IMAGE_SIF"]}},
        }
    return {
        "runtime": "podman",
        "podman": {"executable": svc["PODMAN"]},
        "images": {"overrides": {IMAGE: svc["TEST_IMAGE_PODMAN"]}},
    }


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer (inline tables below the top level are enough for these configs)."""
    return "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in data.items()) + "\n"


def uid(n: int, salt: int = 0) -> str:
    return f"{n:08x}-{salt:04x}-4000-8000-000000000000"


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": ["sh", "-c", script], **extra}


def pod(
    uid_: str,
    name: str,
    containers: Sequence[dict[str, Any]],
    *,
    init: Sequence[dict[str, Any]] = (),
    volumes: Sequence[dict[str, Any]] = (),
    annotations: Mapping[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Pod as the virtual kubelet sends it (metadata, spec, status).

    ``spec`` sets more PodSpec fields by their JSON names (``activeDeadlineSeconds=60``); a
    name flashlink does not read is refused rather than dropped, so a typo cannot make a test
    pass without the field it meant to send.
    """
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        raise TypeError(
            f"pod(): unknown PodSpec field(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(_SPEC_FIELDS))}"
        )
    made: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid_,
            "annotations": dict(annotations or {}),
            "labels": {"app": name},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "initContainers": list(init),
            "containers": list(containers),
            "volumes": list(volumes),
            "tolerations": [
                {"key": "virtual-node.interlink/no-schedule", "operator": "Exists"},
            ],
        },
        "status": {"phase": "Pending"},
    }
    made["spec"].update(spec)
    return made


def create_request(
    pod_: dict[str, Any],
    config_maps: Sequence[dict[str, Any]] = (),
    secrets: Sequence[dict[str, Any]] = (),
    projected: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """interLink's RetrievedPodData: one entry per init container then container; the objects
    are attached to every container, as interLink does for each container that mounts them."""
    names = [c["name"] for c in pod_["spec"]["initContainers"] + pod_["spec"]["containers"]]
    return {
        "pod": pod_,
        "container": [
            {
                "name": n,
                "configMaps": list(config_maps) or None,
                "secrets": list(secrets) or None,
                "projectedvolumemaps": list(projected) or None,
                "emptyDirs": None,
            }
            for n in names
        ],
    }


def vk_phase(status: Mapping[str, Any]) -> str:
    """The pod phase interLink's virtual kubelet derives from one PodStatus (execute.go)."""
    every = list(status.get("initContainers") or []) + list(status.get("containers") or [])
    if all("terminated" in c["state"] for c in every):
        codes = [c["state"]["terminated"]["exitCode"] for c in every]
        return "Succeeded" if all(code == 0 for code in codes) else "Failed"
    if any("running" in c["state"] for c in status.get("containers") or []):
        return "Running"
    return "Pending"


def state_of(status: Mapping[str, Any], name: str) -> dict[str, Any]:
    for c in list(status.get("initContainers") or []) + list(status.get("containers") or []):
        if c["name"] == name:
            state: dict[str, Any] = c["state"]
            return state
    raise KeyError(f"no container {name!r} in {status}")


class PluginClient:
    """The requests interLink's API server sends to a plugin."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, timeout=120, headers=headers)

    def close(self) -> None:
        self.http.close()

    def create(self, request: Any) -> httpx.Response:
        return self.http.post("/create", json=request)

    def status_raw(self, pods: Any) -> httpx.Response:
        return self.http.request("GET", "/status", json=pods)

    def status(self, pod_: dict[str, Any]) -> dict[str, Any] | None:
        r = self.status_raw([pod_])
        assert r.status_code == 200, r.text
        answer = r.json()
        assert isinstance(answer, list)
        if not answer:
            return None
        assert len(answer) == 1
        one: dict[str, Any] = answer[0]
        return one

    def wait(
        self,
        pod_: dict[str, Any],
        done: Callable[[dict[str, Any]], bool],
        timeout: float = 60,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status(pod_)
            if last is not None and done(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"pod {pod_['metadata']['name']} did not get there: {last}")

    def finished(self, pod_: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        return self.wait(pod_, lambda s: vk_phase(s) in ("Succeeded", "Failed"), timeout)

    def logs(self, pod_: dict[str, Any], name: str, **opts: Any) -> httpx.Response:
        body = {
            "Namespace": pod_["metadata"]["namespace"],
            "PodUID": pod_["metadata"]["uid"],
            "PodName": pod_["metadata"]["name"],
            "ContainerName": name,
            "Opts": {
                "Tail": 0,
                "Bytes": 0,
                "Timestamps": False,
                "Follow": False,
                "Previous": False,
                "SinceSeconds": 0,
                "SinceTime": "0001-01-01T00:00:00Z",
                **opts,
            },
        }
        return self.http.request("GET", "/getLogs", json=body)

    def delete(self, pod_: dict[str, Any]) -> httpx.Response:
        return self.http.post("/delete", json=pod_)


class PluginProcess:
    """``flashlink plugin serve`` in a process of its own, stopped (or killed) by pid."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if k != "FLASHLINK_PLUGIN_TOKENS"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(FLASHLINK),
                    "plugin",
                    "serve",
                    "--config",
                    str(self.config),
                    "--port",
                    str(self.port),
                    "--log-level",
                    "info",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the plugin exited ({self.proc.returncode}):\n{self.output()}"
                )
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the plugin did not answer /healthz in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None


@contextmanager
def serving(config: PluginConfig) -> Iterator[tuple[httpx.Client, Plugin]]:
    """The plugin of ``config`` served by uvicorn in a thread of this process, on a free port."""
    port = free_port()
    config = config.model_copy(update={"server": config.server.model_copy(update={"port": port})})
    server = make_server(config)
    plugin = cast(FastAPI, server.config.app).state.plugin
    assert isinstance(plugin, Plugin)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the plugin server stopped while starting"
        assert time.monotonic() < deadline, "the plugin server did not start in 30 s"
        time.sleep(0.02)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        yield client, plugin
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)
