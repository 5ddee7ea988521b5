"""``flashlink jobscript``: render a Pod into its job script, or run it here.

A POD file is a Pod manifest (YAML or JSON), an interLink create request (JSON, with ``pod`` and
``container``, as an object or a one-element array), or a multi-document YAML holding a Pod with
the ConfigMaps and Secrets it uses. ``--configmap``/``--secret`` files add more objects.
"""

from __future__ import annotations

__all__ = ["app"]

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from flashlink.errors import FlashlinkError
from flashlink.jobscript import (
    RenderConfig,
    container_log,
    container_state,
    parse_config,
    parse_state,
    render,
)
from flashlink.kube import (
    ConfigMap,
    InvalidObjectError,
    RetrievedContainer,
    RetrievedPodData,
    Secret,
    parse_config_map,
    parse_create_request,
    parse_pod,
    parse_secret,
)

app = typer.Typer(
    name="jobscript",
    help="Turn a Kubernetes Pod into a self-contained bash job script (Apptainer or Podman).",
    no_args_is_help=True,
)
_err = Console(stderr=True)
_out = Console()


class _UsageError(FlashlinkError):
    pass


def _documents(path: Path) -> list[Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise _UsageError(f"{path} is neither YAML nor JSON: {exc}") from exc


def _split(docs: list[Any]) -> tuple[list[ConfigMap], list[Secret], list[Any]]:
    config_maps: list[ConfigMap] = []
    secrets: list[Secret] = []
    rest: list[Any] = []
    for doc in docs:
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind == "ConfigMap":
            config_maps.append(parse_config_map(doc))
        elif kind == "Secret":
            secrets.append(parse_secret(doc))
        else:
            rest.append(doc)
    return config_maps, secrets, rest


def load_request(
    pod_file: Path, configmaps: list[Path] | None = None, secrets: list[Path] | None = None
) -> RetrievedPodData:
    """The create request that POD and the object files describe."""
    config_maps, secret_objs, rest = _split(_documents(pod_file))
    for path in [*(configmaps or []), *(secrets or [])]:
        more_cms, more_secrets, other = _split(_documents(path))
        if other:
            raise _UsageError(f"{path} holds a document that is neither a ConfigMap nor a Secret")
        config_maps += more_cms
        secret_objs += more_secrets
    if len(rest) != 1:
        raise _UsageError(
            f"{pod_file} holds {len(rest)} documents besides ConfigMaps and Secrets; expected "
            "exactly one Pod (or interLink create request)"
        )
    body = rest[0]
    if isinstance(body, list) or (isinstance(body, dict) and "pod" in body):
        request = parse_create_request(body)
    else:
        request = RetrievedPodData.from_pod(parse_pod(body))
    if not request.container:
        request.container = [RetrievedContainer(name="")]
    entry = request.container[0]
    entry.config_maps = [*entry.config_maps, *config_maps]
    entry.secrets = [*entry.secrets, *secret_objs]
    return request


def load_config(
    config_file: Path | None, runtime: str | None, executable: str | None, images: list[str]
) -> RenderConfig:
    """The build configuration: the TOML file, then the command-line overrides."""
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text())
        except OSError as exc:
            raise _UsageError(f"cannot read {config_file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise _UsageError(f"{config_file} is not valid TOML: {exc}") from exc
    if runtime is not None:
        data["runtime"] = runtime
    if executable is not None:
        name = data.get("runtime", "apptainer")
        data.setdefault(name, {})["executable"] = executable
    for item in images:
        ref, sep, local = item.partition("=")
        if not sep or not ref or not local:
            raise _UsageError(
                f"--image {item!r}: expected REFERENCE=LOCAL, e.g. busybox=/sif/bb.sif"
            )
        data.setdefault("images", {}).setdefault("overrides", {})[ref] = local
    return parse_config(data)


def _fail(exc: Exception) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(2)


PodArg = Annotated[
    Path, typer.Argument(help="Pod manifest (YAML/JSON) or interLink create request")
]
ConfigMapOpt = Annotated[
    list[Path], typer.Option("--configmap", help="ConfigMap file (repeatable)")
]
SecretOpt = Annotated[list[Path], typer.Option("--secret", help="Secret file (repeatable)")]
RuntimeOpt = Annotated[
    str | None, typer.Option("--runtime", help="apptainer or podman (overrides the config)")
]
ExecutableOpt = Annotated[
    str | None, typer.Option("--runtime-executable", help="path of the runtime command")
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="build configuration (TOML)")]
ImageOpt = Annotated[
    list[str], typer.Option("--image", help="REF=LOCAL image override (repeatable)")
]


@app.command("render")
def render_command(  # noqa: PLR0917 - typer maps each parameter to an option
    pod: PodArg,
    configmap: ConfigMapOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    secret: SecretOpt = [],  # noqa: B006
    runtime: RuntimeOpt = None,
    runtime_executable: ExecutableOpt = None,
    config: ConfigOpt = None,
    image: ImageOpt = [],  # noqa: B006
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write here")] = None,
    resources: Annotated[
        bool, typer.Option("--resources", help="print what to request (JSON) on stderr")
    ] = False,
) -> None:
    """Print the job script of POD (nothing is run)."""
    try:
        request = load_request(pod, configmap, secret)
        job = render(request, load_config(config, runtime, runtime_executable, image))
    except (FlashlinkError, InvalidObjectError) as exc:
        raise _fail(exc) from None
    if output is None:
        sys.stdout.write(job.text)
    else:
        output.write_text(job.text)
        output.chmod(0o700 if job.contains_secrets else 0o755)
    if resources:
        r = job.resources
        summary = {
            "cpu": str(r.cpu) if r.cpu is not None else None,
            "memory_bytes": r.memory_bytes,
            "gpus": dict(r.gpus),
            "walltime_seconds": r.walltime_seconds,
            "outputs": list(job.outputs),
        }
        print(json.dumps(summary), file=sys.stderr)


def _states(job_dir: Path, names: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            status = parse_state((job_dir / container_state(name)).read_text())
        except (OSError, FlashlinkError):
            continue
        state = status.state
        if state.terminated is not None:
            t = state.terminated
            out[name] = f"terminated (exit {t.exit_code}, {t.reason})"
        elif state.running is not None:
            out[name] = "running"
        elif state.waiting is not None:
            out[name] = f"waiting ({state.waiting.reason})"
    return out


@app.command("run")
def run_command(  # noqa: PLR0917 - typer maps each parameter to an option
    pod: PodArg,
    configmap: ConfigMapOpt = [],  # noqa: B006
    secret: SecretOpt = [],  # noqa: B006
    runtime: RuntimeOpt = None,
    runtime_executable: ExecutableOpt = None,
    config: ConfigOpt = None,
    image: ImageOpt = [],  # noqa: B006
    job_dir: Annotated[
        Path | None, typer.Option("--job-dir", help="where logs and states go (default: new dir)")
    ] = None,
) -> None:
    """Run POD here with its job script, printing the container states as they change."""
    try:
        request = load_request(pod, configmap, secret)
        job = render(request, load_config(config, runtime, runtime_executable, image))
    except (FlashlinkError, InvalidObjectError) as exc:
        raise _fail(exc) from None
    if job_dir is None:
        job_dir = Path.cwd() / f"flashlink-{job.pod_name or 'pod'}-{int(time.time())}"
    job_dir = job_dir.resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    script = job_dir / "job.sh"
    script.write_text(job.text)
    script.chmod(0o700)
    names = job.init_containers + job.containers
    env = {**os.environ, "FLASHLINK_JOB_DIR": str(job_dir)}
    _err.print(f"running {job.namespace}/{job.pod_name} in {job_dir}", highlight=False)
    proc = subprocess.Popen(["bash", str(script)], cwd=job_dir, env=env, start_new_session=True)
    seen: dict[str, str] = {}
    while True:
        try:
            done = proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            done = None
        except KeyboardInterrupt:
            # the script stops its containers (SIGTERM, then SIGKILL after the grace period)
            proc.send_signal(signal.SIGTERM)
            continue
        for name, text in _states(job_dir, names).items():
            if seen.get(name) != text:
                seen[name] = text
                _out.print(f"{name}: {text}", highlight=False)
        if done is not None:
            break
    for name in names:
        _err.print(f"log of {name}: {job_dir / container_log(name)}", highlight=False)
    raise typer.Exit(proc.returncode)
