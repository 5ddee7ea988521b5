"""Pure construction of a production's jobs and their Pods (no I/O, no clock).

One job = one Pod whose containers are the workflow's rules for one chunk of events, run in
order as Kubernetes runs init containers: ``generate`` -> ``flash`` (init containers), then
``ntuple``. One Pod per chunk instead of one per rule divides the submissions by three, and the
chunk's intermediate files stay on the worker's job directory until the ntuple is written.
The reference Pod generates a sample with the same generator settings, runs the detailed
simulation and the flash models on it, and writes the validation report.

Pods are built as :class:`flashlink.kube.Pod` models and checked by
:func:`check_pod_schema`, which refuses any key the Kubernetes v1 Pod schema (as modelled in
``flashlink.kube``) does not know, so a Pod here is what an interLink virtual node receives.
"""

from __future__ import annotations

__all__ = [
    "Job",
    "PayloadSettings",
    "build_job_pod",
    "build_reference_pod",
    "check_pod_schema",
    "plan_jobs",
]

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from flashlink.kube import Pod, parse_pod
from flashlink.production.errors import ProductionError
from flashlink.production.request import ProductionRequest
from flashlink.production.storage import is_s3, s3_secret_name

SITE_KEY = "pool.vk.io"
NAMESPACE = "flashlink"
_UID_NS = uuid.UUID("6f1c2f3e-8a1b-4f3c-9d55-0b1e2a7f4c10")


@dataclass(frozen=True)
class Job:
    """One chunk of events: its index, size, seed and output directory."""

    index: int
    events: int
    seed: int
    directory: str

    @property
    def key(self) -> str:
        return f"j{self.index:04d}"


@dataclass(frozen=True)
class PayloadSettings:
    """How the payload runs inside the job's container.

    ``command`` is the flashlink executable inside the image (``flashlink`` on the PATH of the
    site image; the venv's script when the software comes from ``binds``). ``binds`` are host
    directories mounted read-only at the same path (the CVMFS-like software bind)."""

    command: str = "flashlink"
    binds: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def plan_jobs(request: ProductionRequest) -> list[Job]:
    """The production split in jobs: job i has ``seed + i`` and the remainder goes last."""
    jobs = []
    left = request.events
    for i in range(request.n_jobs):
        n = min(request.events_per_job, left)
        left -= n
        jobs.append(Job(i, n, request.seed + i, f"{request.output}/jobs/j{i:04d}"))
    return jobs


def pod_uid(request: ProductionRequest, name: str) -> str:
    """Deterministic UID: a re-run creating the same attempt finds the plugin's existing job."""
    return str(uuid.uuid5(_UID_NS, f"{request.output}/{name}"))


def _generate_args(request: ProductionRequest, out: str, events: int, seed: int) -> list[str]:
    args = ["sim", "generate", out, "--events", str(events), "--seed", str(seed)]
    if request.event.kind == "gun":
        return [*args, "--mode", "gun", "--channel", request.event.channel]
    return [*args, "--mode", str(request.event.process)]


def _flash_args(request: ProductionRequest, events: str, out: str, seed: int, k: int) -> list[str]:
    args = ["sim", "flash", events, out, "--seed", str(seed), "--oversample", str(k)]
    if request.models != "shipped":
        args += ["--models", request.models]
    if request.family != "auto":
        args += ["--family", request.family]
    return args


def _simulation_step(
    request: ProductionRequest, events: str, out: str, seed: int
) -> tuple[str, list[str]]:
    if request.simulation == "detailed":
        return "detailed", ["sim", "detailed", events, out, "--seed", str(seed)]
    return "flash", _flash_args(request, events, out, seed, request.oversampling)


def _container(
    name: str,
    payload: PayloadSettings,
    args: list[str],
    request: ProductionRequest,
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    cpu = request.resources.cpu
    extra: dict[str, Any] = {}
    if is_s3(request):
        # the S3 endpoint and credentials: the Secret the driver sends with /create
        extra["envFrom"] = [{"secretRef": {"name": s3_secret_name(request)}}]
    env = {
        "MPLCONFIGDIR": "/tmp",  # noqa: S108 - matplotlib cache in the container
        "OMP_NUM_THREADS": "1",
        **payload.env,
    }
    return {
        "name": name,
        "image": request.image,
        "command": [payload.command],
        "args": args,
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        **extra,
        "resources": {
            "requests": {"cpu": cpu, "memory": request.resources.memory},
            "limits": {"cpu": cpu, "memory": request.resources.memory},
        },
        "volumeMounts": mounts,
    }


def _pod(  # noqa: PLR0917 - private, called twice
    request: ProductionRequest,
    name: str,
    kind: str,
    index: int | None,
    payload: PayloadSettings,
    steps: list[tuple[str, list[str]]],
) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if not is_s3(request):
        volumes.append(
            {"name": "output", "hostPath": {"path": request.output, "type": "DirectoryOrCreate"}}
        )
        mounts.append({"name": "output", "mountPath": request.output})
    for n, path in enumerate(payload.binds):
        volumes.append({"name": f"software-{n}", "hostPath": {"path": path, "type": "Directory"}})
        mounts.append({"name": f"software-{n}", "mountPath": path, "readOnly": True})
    labels = {"flashlink.io/production": request.name, "flashlink.io/kind": kind}
    if index is not None:
        labels["flashlink.io/job"] = str(index)
    containers = [_container(n, payload, a, request, mounts) for n, a in steps]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": pod_uid(request, name),
            "labels": labels,
        },
        "spec": {
            "restartPolicy": "Never",
            "initContainers": containers[:-1],
            "containers": containers[-1:],
            "volumes": volumes,
            "nodeSelector": {"kubernetes.io/role": "agent", SITE_KEY: request.site},
            "tolerations": [
                {
                    "key": SITE_KEY,
                    "operator": "Equal",
                    "value": request.site,
                    "effect": "NoSchedule",
                },
                {
                    "key": "virtual-node.interlink/no-schedule",
                    "operator": "Exists",
                    "effect": "NoSchedule",
                },
            ],
        },
        "status": {"phase": "Pending"},
    }
    check_pod_schema(pod)
    return pod


def build_job_pod(
    request: ProductionRequest, job: Job, attempt: int, payload: PayloadSettings
) -> dict[str, Any]:
    """The Pod of one attempt of a job; it writes ``<job dir>/a<attempt>/``."""
    out = f"{job.directory}/a{attempt}"
    steps = [
        ("generate", _generate_args(request, f"{out}/events.parquet", job.events, job.seed)),
        _simulation_step(request, f"{out}/events.parquet", f"{out}/flash", job.seed),
        (
            "ntuple",
            [
                "sim",
                "ntuple",
                f"{out}/flash",
                f"{out}/ntuple",
                "--decay",
                request.event.channel,
                "--format",
                "root",
                "--run-number",
                str(job.index + 1),
                *(["--busy"] if request.event.kind == "pythia" else []),
            ],
        ),
    ]
    name = f"{request.name}-{job.key}-a{attempt}"
    return _pod(request, name, "job", job.index, payload, steps)


def build_reference_pod(
    request: ProductionRequest, attempt: int, payload: PayloadSettings
) -> dict[str, Any]:
    """The Pod of the reference comparison: same generator, detailed vs flash, the report."""
    out = f"{request.output}/reference/a{attempt}"
    seed = request.seed + 10_000_000  # never one of the jobs' seeds (job i has seed + i)
    n = request.reference.events
    validate = [
        "sim",
        "validate",
        f"{out}/flash",
        f"{out}/detailed",
        f"{out}/report",
        "--label",
        request.name,
        "--decay",
        request.event.channel,
        "--seed",
        str(seed),
    ]
    if request.event.kind == "pythia":
        validate.append("--busy")
    steps = [
        ("generate", _generate_args(request, f"{out}/events.parquet", n, seed)),
        (
            "detailed",
            ["sim", "detailed", f"{out}/events.parquet", f"{out}/detailed", "--seed", str(seed)],
        ),
        ("flash", _flash_args(request, f"{out}/events.parquet", f"{out}/flash", seed, 1)),
        ("validate", validate),
    ]
    return _pod(request, f"{request.name}-reference-a{attempt}", "reference", None, payload, steps)


def _unknown(model: BaseModel, path: str) -> list[str]:
    found = [f"{path}.{k}" for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for n, item in enumerate(items):
            if isinstance(item, BaseModel):
                where = f"{path}.{name}[{n}]" if isinstance(value, list) else f"{path}.{name}"
                found += _unknown(item, where)
    return found


def check_pod_schema(pod: dict[str, Any]) -> Pod:
    """Parse with the Kubernetes models and refuse any field they do not know."""
    model = parse_pod(pod)
    unknown = _unknown(model, "pod")
    if unknown:
        raise ProductionError(f"the Pod has fields outside the v1 Pod schema: {unknown}")
    return model
