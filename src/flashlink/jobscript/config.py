"""The build configuration: how a node runs containers (a TOML file, or defaults).

In the spirit of interLink's ``ScriptBuildConfig``: which runtime and its executable and flags,
where the scratch area and caches are, how image references map to local images, which host
paths a Pod may mount. Every field has a description, used by ``--help`` and the docs. Unknown
keys are errors (a typo in a TOML file must not silently fall back to a default)::

    runtime = "apptainer"

    [apptainer]
    executable = "/usr/bin/apptainer"
    userns = true

    [images]
    image_dir = "/shared/sif"
    overrides = { "busybox:1.36" = "/shared/sif/busybox.sif" }

    [volumes]
    host_path_prefixes = ["/data"]
    persistent_volume_claims = { "datasets" = "/shared/datasets" }

Paths given here are the paths on the node that runs the job, used at run time; rendering never
looks at this machine's filesystem.
"""

from __future__ import annotations

__all__ = [
    "ApptainerConfig",
    "ImagesConfig",
    "PodmanConfig",
    "RenderConfig",
    "VolumesConfig",
    "parse_config",
]

import tomllib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flashlink.jobscript.errors import InvalidConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApptainerConfig(_Section):
    """``[apptainer]``: Apptainer/Singularity, the runtime of HPC and HTC sites."""

    executable: str = Field(
        default="apptainer", description="apptainer or singularity command or path"
    )
    userns: bool = Field(default=False, description="--userns: run in a user namespace (no setuid)")
    fakeroot: bool = Field(default=False, description="--fakeroot for every container")
    containall: bool = Field(
        default=True,
        description="--containall: private /tmp, PID and IPC namespaces, clean environment, "
        "as a Kubernetes container has",
    )
    cleanenv: bool = Field(
        default=True, description="--cleanenv: the host environment does not leak in"
    )
    no_home: bool = Field(default=False, description="--no-home: do not mount the home directory")
    no_init: bool = Field(default=False, description="--no-init: no shim init process as PID 1")
    no_privs: bool = Field(default=False, description="--no-privs: drop all privileges")
    writable_tmpfs: bool = Field(
        default=False, description="--writable-tmpfs: a writable image overlay"
    )
    unsquash: bool = Field(
        default=False, description="--unsquash: extract SIFs instead of mounting them"
    )
    nvidia: Literal["auto", "always", "never"] = Field(
        default="auto", description="--nv: auto = when a container asks for nvidia.com/gpu"
    )
    rocm: Literal["auto", "always", "never"] = Field(
        default="auto", description="--rocm: auto = when a container asks for amd.com/gpu"
    )
    cache_dir: str | None = Field(
        default=None, description="APPTAINER_CACHEDIR for docker:// pulls"
    )
    extra_flags: tuple[str, ...] = Field(default=(), description="more flags for every exec/run")


class PodmanConfig(_Section):
    """``[podman]``: Podman, for nodes without Apptainer."""

    executable: str = Field(default="podman", description="podman command or path")
    network: str = Field(
        default="host",
        description="--network; host keeps Kubernetes' shared localhost between the containers",
    )
    init: bool = Field(
        default=False, description="--init: a tiny init as PID 1 forwards SIGTERM (needs catatonit)"
    )
    enforce_limits: bool = Field(
        default=True, description="pass limits.cpu/memory as --cpus/--memory"
    )
    gpu_device: str = Field(
        default="nvidia.com/gpu=all",
        description="CDI device given with --device when GPUs are asked for",
    )
    extra_flags: tuple[str, ...] = Field(default=(), description="more flags for every podman run")


class ImagesConfig(_Section):
    """``[images]``: where an image reference is found on the node, tried in this order."""

    overrides: dict[str, str] = Field(
        default_factory=dict,
        description="image reference -> local image (SIF file or directory for Apptainer, "
        "another reference for Podman); tried first",
    )
    image_dir: str | None = Field(
        default=None, description="directory of pre-built SIFs named like busybox_1.36.sif"
    )
    cvmfs_unpacked: str | None = Field(
        default=None,
        description="root of an unpacked-images CVMFS repository, e.g. /cvmfs/unpacked.cern.ch",
    )
    cache_url: str | None = Field(
        default=None,
        description="the flashlink image cache (flashlink images serve), tried after the local "
        "sources: each node downloads an image once into node_cache_dir (Apptainer only)",
    )
    cache_token: str | None = Field(
        default=None,
        description="client token for the image cache, embedded in the script; better passed "
        "at run time as FLASHLINK_IMAGES_TOKEN",
    )
    node_cache_dir: str | None = Field(
        default=None,
        description="where the jobs of a node keep cached SIFs (shared, flock-protected); "
        "default <scratch area>/flashlink-sif-cache; FLASHLINK_IMAGES_CACHE overrides it",
    )
    cache_wait_seconds: int = Field(
        default=600, gt=0, description="how long a job waits for the cache to build an image"
    )
    registry_fallback: bool = Field(
        default=True,
        description="finally use docker://IMAGE (Apptainer) or pull the reference (Podman)",
    )


class VolumesConfig(_Section):
    """``[volumes]``: the node's scratch area and which host paths Pods may use."""

    scratch_area: str | None = Field(
        default=None,
        description="node-local directory for per-job scratch (emptyDirs, ConfigMap and Secret "
        "files); default $TMPDIR or /tmp at run time; FLASHLINK_SCRATCH overrides it",
    )
    memory_dir: str = Field(
        default="/dev/shm",  # noqa: S108 - the node's memory-backed tmpfs, not a temp file
        description="memory-backed directory for emptyDir medium: Memory",
    )
    cvmfs_root: str = Field(default="/cvmfs", description="where CVMFS repositories are mounted")
    host_path_prefixes: tuple[str, ...] = Field(
        default=(), description="hostPath volumes are allowed only under these directories"
    )
    persistent_volume_claims: dict[str, str] = Field(
        default_factory=dict, description="claimName -> host directory that stands for it"
    )
    fuse_timeout_seconds: float = Field(
        default=30.0, gt=0, description="how long a fuse.vk.io mount script may take to mount"
    )


class RenderConfig(_Section):
    """Everything :func:`flashlink.jobscript.render` needs besides the Pod."""

    runtime: Literal["apptainer", "podman"] = Field(
        default="apptainer", description="container runtime"
    )
    apptainer: ApptainerConfig = Field(default_factory=ApptainerConfig)
    podman: PodmanConfig = Field(default_factory=PodmanConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    volumes: VolumesConfig = Field(default_factory=VolumesConfig)
    timestamp_logs: bool = Field(
        default=False, description="prefix every log line with an RFC 3339 UTC timestamp"
    )
    default_grace_seconds: int = Field(
        default=30, ge=0, description="SIGTERM-to-SIGKILL grace when the Pod sets none"
    )


def parse_config(data: dict[str, Any] | str) -> RenderConfig:
    """A :class:`RenderConfig` from TOML text or a decoded mapping; errors name the key."""
    if isinstance(data, str):
        try:
            data = tomllib.loads(data)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidConfigError("config", f"is not valid TOML: {exc}") from exc
    try:
        return RenderConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InvalidConfigError(
            where, f"{first['msg']}, got {first.get('input')!r}{more}"
        ) from exc
