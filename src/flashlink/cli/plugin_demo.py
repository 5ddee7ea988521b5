"""``flashlink plugin demo``: the plugin on this machine, and one Pod through it as interLink
sends it (``flashlink demo`` is the production demo, :mod:`flashlink.cli.demo`).

Starts the plugin (local backend) on a free loopback port, POSTs a sample Pod from
``examples/pods/`` to ``/create`` with its ConfigMaps attached per container (interLink's
``RetrievedPodData``), follows ``GET /status`` until the pod ends, prints every container's log
from ``GET /getLogs``, deletes the pod and stops. On a machine without a registry, the test
image of ``ci/services/image.sh`` (busybox) stands in for the Pod's images.
"""

from __future__ import annotations

__all__ = ["DemoError", "demo", "find_runtime", "load_pod_file", "local_test_image"]

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table

from flashlink.errors import FlashlinkError

_out = Console(soft_wrap=True)  # long paths stay on one line, whatever the terminal
_err = Console(stderr=True)
_EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "pods"
_DEFAULT_POD = _EXAMPLES / "init-and-volumes.yaml"


class DemoError(FlashlinkError):
    """The demo cannot run here (missing runtime, bad option); the message says what to do."""


def _ci_cache() -> Path:
    return Path(os.environ.get("FLASHLINK_CI_CACHE", "/var/cache/flashlink-ci"))


def find_runtime(name: str) -> str | None:
    """The runtime's command: on PATH, or the one ``./dev setup NAME`` installs."""
    found = shutil.which(name)
    if found:
        return found
    if name == "apptainer":
        wrapper = _ci_cache() / "apptainer" / "bin" / "apptainer"
        if os.access(wrapper, os.X_OK):
            return str(wrapper)
    return None


def local_test_image(runtime: str, executable: str) -> str | None:
    """The local test image of ``ci/services/image.sh`` for ``runtime``, if it is there."""
    if runtime == "apptainer":
        sif = _ci_cache() / "apptainer" / "images" / "flashlink-test.sif"
        return str(sif) if sif.is_file() else None
    ref = "localhost/flashlink-test:latest"
    try:
        found = subprocess.run(
            [executable, "image", "exists", ref], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return ref if found.returncode == 0 else None


def _mounted(pod: dict[str, Any], container: dict[str, Any], kind: str, key: str) -> set[str]:
    """Names of the ConfigMaps (kind=configMap) or Secrets a container mounts."""
    volumes = {v.get("name"): v for v in pod.get("spec", {}).get("volumes") or []}
    names = set()
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount.get("name"), {})
        source = volume.get(kind)
        if isinstance(source, dict) and source.get(key):
            names.add(source[key])
        for projection in (volume.get("projected") or {}).get("sources") or []:
            inner = projection.get(kind)
            if isinstance(inner, dict) and inner.get("name"):
                names.add(inner["name"])
    return names


def load_pod_file(path: Path) -> dict[str, Any]:
    """A Pod manifest (with its ConfigMaps/Secrets in the same file) as interLink's create
    request: one ``container`` entry per init container then container, each with the objects
    it mounts, and a fresh UID as Kubernetes would give it."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise DemoError(f"cannot read the pod file {path}: {exc}") from exc
    pods = [d for d in docs if isinstance(d, dict) and d.get("kind", "Pod") == "Pod"]
    if len(pods) != 1:
        raise DemoError(f"{path}: expected exactly one Pod, found {len(pods)}")
    pod = pods[0]
    objects = {
        kind: {
            d["metadata"]["name"]: d for d in docs if isinstance(d, dict) and d.get("kind") == kind
        }
        for kind in ("ConfigMap", "Secret")
    }
    pod.setdefault("metadata", {})["uid"] = str(uuid.uuid4())
    pod["metadata"].setdefault("namespace", "default")
    pod.setdefault("status", {"phase": "Pending"})
    spec = pod.setdefault("spec", {})
    entries = []
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        config_maps = sorted(_mounted(pod, c, "configMap", "name"))
        secrets = sorted(_mounted(pod, c, "secret", "secretName"))
        entries.append(
            {
                "name": c.get("name"),
                "configMaps": [
                    objects["ConfigMap"][n] for n in config_maps if n in objects["ConfigMap"]
                ],
                "secrets": [objects["Secret"][n] for n in secrets if n in objects["Secret"]],
                "projectedvolumemaps": None,
                "emptyDirs": None,
            }
        )
    return {"pod": pod, "container": entries}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _state_text(state: dict[str, Any]) -> tuple[str, str]:
    if "terminated" in state:
        t = state["terminated"]
        style = "green" if t.get("exitCode") == 0 else "red"
        return f"[{style}]terminated[/{style}]", f"{t.get('reason', '')} (exit {t.get('exitCode')})"
    if "running" in state:
        return "[cyan]running[/cyan]", f"since {state['running'].get('startedAt', '?')}"
    waiting = state.get("waiting", {})
    return "[yellow]waiting[/yellow]", waiting.get("reason", "")


def _phase(status: dict[str, Any]) -> str:
    every = status["initContainers"] + status["containers"]
    if all("terminated" in c["state"] for c in every):
        ok = all(c["state"]["terminated"]["exitCode"] == 0 for c in every)
        return "Succeeded" if ok else "Failed"
    if any("running" in c["state"] for c in status["containers"]):
        return "Running"
    return "Pending"


def _table(status: dict[str, Any] | None, elapsed: float) -> Group:
    table = Table(box=None, padding=(0, 2), header_style="bold")
    for column in ("container", "", "state", "detail"):
        table.add_column(column)
    phase = "Pending"
    if status is not None:
        phase = _phase(status)
        for kind, group in (("init", status["initContainers"]), ("main", status["containers"])):
            for c in group:
                state, detail = _state_text(c["state"])
                table.add_row(c["name"], kind, state, detail)
    spinner = Spinner("dots", text=f" GET /status   pod {phase}  ({elapsed:4.1f} s)")
    return Group(spinner, table)


def _image_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        ref, sep, local = item.partition("=")
        if not sep or not ref or not local:
            raise DemoError(
                f"--image-map {item!r}: expected REF=LOCAL, e.g. busybox:1.36=/images/busybox.sif"
            )
        out[ref] = local
    return out


def _serve(config: Any) -> tuple[Any, threading.Thread]:
    from flashlink.plugin import make_server  # noqa: PLC0415 - the web stack, only here

    server = make_server(config, log_level="error")
    thread = threading.Thread(target=server.run, name="flashlink-plugin-demo", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DemoError("the plugin did not start; run `flashlink plugin serve` to see why")
        time.sleep(0.02)
    return server, thread


def _missing(runtime: str) -> DemoError:
    other = "podman" if runtime == "apptainer" else "apptainer"
    how = " (Apptainer from a Debian sid root, about a minute)" if runtime == "apptainer" else ""
    return DemoError(
        f"{runtime} is not installed here: run `./dev setup {runtime}` (as root) to install "
        f"it{how}, or choose the other runtime with --runtime {other}"
    )


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def _overrides(
    runtime: str, executable: str, images: list[str], image_map: list[str]
) -> tuple[dict[str, str], str]:
    """Image overrides and a note for the user: explicit ones, else the CI test image."""
    overrides = _image_map(image_map)
    if overrides:
        return overrides, ""
    local = local_test_image(runtime, executable)
    if local is None:
        return {}, ""
    note = " (the busybox test image of ci/services/image.sh; --image-map to choose)"
    return dict.fromkeys(images, local), note


def _describe(
    runtime: str,
    executable: str,
    *,
    pod_file: Path,
    request: dict[str, Any],
    overrides: dict[str, str],
    note: str,
) -> None:
    pod = request["pod"]
    meta, spec = pod["metadata"], pod["spec"]
    n_init, n_main = len(spec.get("initContainers") or []), len(spec.get("containers") or [])
    objects = {
        o["metadata"]["name"] for e in request["container"] for o in e["configMaps"] + e["secrets"]
    }
    _out.print(
        "[bold]flashlink plugin demo[/bold]: the interLink plugin on this machine's local backend"
    )
    _out.print(f"  runtime  {runtime} ({executable})", highlight=False)
    for ref in sorted({c.get("image", "") for c in _containers(pod)}):
        local = overrides.get(ref, "pulled from its registry")
        _out.print(f"  image    {ref} -> {local}{note}", highlight=False)
    _out.print(
        f"  pod      {pod_file}: {meta['namespace']}/{meta['name']} ({n_init} init containers, "
        f"{n_main} containers, {len(objects)} ConfigMaps/Secrets)",
        highlight=False,
    )


def _follow(http: httpx.Client, pod: dict[str, Any], timeout: float) -> str:
    """GET /status until the pod ends, shown live; its phase."""
    t0 = time.monotonic()
    status: dict[str, Any] | None = None
    with Live(_table(None, 0), console=_out, refresh_per_second=8, transient=True) as live:
        while time.monotonic() - t0 < timeout:
            answer = http.request("GET", "/status", json=[pod]).json()
            status = answer[0] if answer else None
            live.update(_table(status, time.monotonic() - t0))
            if status is not None and _phase(status) in ("Succeeded", "Failed"):
                break
            time.sleep(0.25)
    elapsed = time.monotonic() - t0
    phase = _phase(status) if status else "unknown"
    _out.print(_table(status, elapsed).renderables[1])
    color = "green" if phase == "Succeeded" else "red"
    _out.print(f"GET /status    -> pod [{color}]{phase}[/{color}] after {elapsed:.1f} s")
    return phase


def _print_logs(http: httpx.Client, pod: dict[str, Any]) -> None:
    meta = pod["metadata"]
    for c in _containers(pod):
        body = {
            "Namespace": meta["namespace"],
            "PodUID": meta["uid"],
            "PodName": meta["name"],
            "ContainerName": c["name"],
            "Opts": {"Timestamps": False},
        }
        log = http.request("GET", "/getLogs", json=body)
        panel = Panel(
            log.text.rstrip("\n") or "(no output)",
            title=f"GET /getLogs {c['name']}",
            title_align="left",
            expand=False,
        )
        _out.print(panel, highlight=False)


def _run(runtime: str, pod_file: Path, image_map: list[str], timeout: float, keep: bool) -> int:
    from flashlink.plugin import parse_plugin_config  # noqa: PLC0415 - the web stack, only here

    executable = find_runtime(runtime)
    if executable is None:
        raise _missing(runtime)
    request = load_pod_file(pod_file)
    pod = request["pod"]
    images = sorted({c.get("image", "") for c in _containers(pod)})
    overrides, note = _overrides(runtime, executable, images, image_map)
    _describe(
        runtime, executable, pod_file=pod_file, request=request, overrides=overrides, note=note
    )
    state_dir = Path(tempfile.mkdtemp(prefix="flashlink-plugin-demo-"))
    port = _free_port()
    render: dict[str, Any] = {"runtime": runtime, runtime: {"executable": executable}}
    if overrides:
        render["images"] = {"overrides": overrides}
    config = parse_plugin_config(
        {
            "state_dir": str(state_dir),
            "reconcile_interval": 0.5,
            "server": {"host": "127.0.0.1", "port": port},
            "auth": {"tokens_env": None},
            "render": render,
        }
    )
    server, thread = _serve(config)
    _out.print(f"  plugin   http://127.0.0.1:{port}  (state in {state_dir})", highlight=False)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        r = http.post("/create", json=request)
        _out.print(f"\nPOST /create   -> {r.status_code} {r.text}", highlight=False)
        if r.status_code != 200:
            return 1
        phase = _follow(http, pod, timeout)
        _print_logs(http, pod)
        r = http.post("/delete", json=pod)
        _out.print(f"POST /delete   -> {r.status_code} {r.text}", highlight=False)
        return 0 if phase == "Succeeded" else 1
    finally:
        http.close()
        server.should_exit = True
        thread.join(timeout=30)
        if keep:
            _out.print(f"state kept in {state_dir}", highlight=False)
        else:
            shutil.rmtree(state_dir, ignore_errors=True)


def demo(
    runtime: Annotated[
        str, typer.Option(help="container runtime of the jobs: apptainer or podman")
    ] = "apptainer",
    image_map: Annotated[
        list[str] | None,
        typer.Option(
            "--image-map",
            help="REF=LOCAL: run image REF from LOCAL (SIF or local "
            "image); default: the CI test image stands in for every image, if present",
        ),
    ] = None,
    pod: Annotated[
        Path, typer.Option(help="the Pod (YAML with its ConfigMaps/Secrets)", dir_okay=False)
    ] = _DEFAULT_POD,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pod to end")] = 300,
    keep: Annotated[bool, typer.Option(help="keep the plugin's state directory")] = False,
) -> None:
    """Run a sample Pod through the interLink plugin here: create, status, logs, delete."""
    if runtime not in ("apptainer", "podman"):
        _err.print(
            f"[red]error:[/red] --runtime {runtime!r}: use apptainer or podman", highlight=False
        )
        raise typer.Exit(2)
    try:
        code = _run(runtime, pod, image_map or [], timeout, keep)
    except FlashlinkError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    raise typer.Exit(code)
