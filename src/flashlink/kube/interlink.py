"""The interLink plugin messages, with their exact (and inconsistent) JSON keys.

Ground truth is interLink's Go types (``pkg/interlink/types.go``), not its OpenAPI file, see
``reference/interlink-contract.md``: ``configMaps`` but ``projectedvolumemaps``; ``PodUID`` and
``PodJID``; ``UID``/``JID`` in a status; ``Bytes`` (not ``LimitBytes``) in log options; an unset
``SinceTime`` arrives as ``0001-01-01T00:00:00Z``. ``/create`` bodies come as one object
(interLink >= 0.5) or as a one-element array (<= 0.4); :func:`parse_create_request` takes both.
"""

from __future__ import annotations

__all__ = [
    "Accelerator",
    "CreateStruct",
    "LogOpts",
    "LogStruct",
    "PingResources",
    "PingResponse",
    "PodStatus",
    "RetrievedContainer",
    "RetrievedPodData",
    "ScriptBuildConfig",
    "Taint",
    "parse_create_request",
    "parse_log_request",
]

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, Field, field_validator

from flashlink.kube._base import KubeModel, NullableList, parse_as
from flashlink.kube.errors import InvalidObjectError
from flashlink.kube.objects import ConfigMap, Secret
from flashlink.kube.pod import Pod
from flashlink.kube.status import ContainerStatus


class RetrievedContainer(KubeModel):
    """What interLink fetched for one container: the objects its volumes mount."""

    name: str
    config_maps: NullableList[ConfigMap] = Field(default_factory=list, alias="configMaps")
    secrets: NullableList[Secret] = Field(default_factory=list)
    projected_volume_maps: NullableList[ConfigMap] = Field(
        default_factory=list, alias="projectedvolumemaps"
    )
    empty_dirs: NullableList[str] = Field(default_factory=list, alias="emptyDirs")


class ScriptBuildConfig(KubeModel):
    """interLink's ``jobConfig`` (sent only with a JobScriptBuilder); kept, not interpreted."""

    singularity_hub_proxy: dict[str, Any] | None = Field(default=None, alias="SingularityHubProxy")
    apptainer_options: dict[str, Any] | None = Field(default=None, alias="ApptainerOptions")
    volumes: dict[str, Any] | None = Field(default=None, alias="Volumes")


class RetrievedPodData(KubeModel):
    """The ``/create`` request: the Pod and, per container, its ConfigMaps/Secrets/projections."""

    pod: Pod
    container: NullableList[RetrievedContainer] = Field(default_factory=list)
    job_config: ScriptBuildConfig | None = Field(default=None, alias="jobConfig")
    job_script: str | None = Field(default=None, alias="jobScript")

    def config_maps(self) -> dict[str, ConfigMap]:
        """Every attached ConfigMap by name (interLink repeats one per container that mounts it)."""
        out: dict[str, ConfigMap] = {}
        for entry in self.container:
            for item in entry.config_maps:
                out.setdefault(item.metadata.name, item)
        return out

    def secrets(self) -> dict[str, Secret]:
        """Every attached Secret by name."""
        out: dict[str, Secret] = {}
        for entry in self.container:
            for item in entry.secrets:
                out.setdefault(item.metadata.name, item)
        return out

    def projected_volume_maps(self) -> dict[str, ConfigMap]:
        """interLink's pre-rendered projected/downwardAPI volumes, by **volume** name."""
        out: dict[str, ConfigMap] = {}
        for entry in self.container:
            for item in entry.projected_volume_maps:
                out.setdefault(item.metadata.name, item)
        return out

    @classmethod
    def from_pod(
        cls,
        pod: Pod,
        config_maps: list[ConfigMap] | tuple[ConfigMap, ...] = (),
        secrets: list[Secret] | tuple[Secret, ...] = (),
    ) -> RetrievedPodData:
        """A request as interLink would build it for ``pod`` with these objects available."""
        names = [c.name for c in pod.spec.init_containers + pod.spec.containers]
        entries = [RetrievedContainer(name=name) for name in names]
        if entries:
            entries[0] = RetrievedContainer(
                name=names[0], configMaps=list(config_maps), secrets=list(secrets)
            )
        return cls(pod=pod, container=entries)


class CreateStruct(KubeModel):
    """The ``/create`` answer."""

    pod_uid: str = Field(alias="PodUID")
    pod_jid: str = Field(alias="PodJID")


class PodStatus(KubeModel):
    """One element of the ``/status`` answer (interLink's type, not ``v1.PodStatus``)."""

    name: str
    uid: str = Field(alias="UID")
    namespace: str
    jid: str = Field(default="", alias="JID")
    containers: NullableList[ContainerStatus] = Field(default_factory=list)
    init_containers: NullableList[ContainerStatus] = Field(
        default_factory=list, alias="initContainers"
    )


_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


class LogOpts(KubeModel):
    """``/getLogs`` options; zero values mean "not set", as in Go."""

    tail: int = Field(default=0, alias="Tail")
    limit_bytes: int = Field(
        default=0,
        validation_alias=AliasChoices("Bytes", "LimitBytes", "limit_bytes"),
        serialization_alias="Bytes",
    )
    timestamps: bool = Field(default=False, alias="Timestamps")
    follow: bool = Field(default=False, alias="Follow")
    previous: bool = Field(default=False, alias="Previous")
    since_seconds: int = Field(default=0, alias="SinceSeconds")
    since_time: datetime | None = Field(default=None, alias="SinceTime")

    @field_validator("since_time", mode="before")
    @classmethod
    def _zero_time_is_unset(cls, value: object) -> object:
        if value in (None, "", _GO_ZERO_TIME):
            return None
        return value


class LogStruct(KubeModel):
    """The ``/getLogs`` request."""

    namespace: str = Field(alias="Namespace")
    pod_uid: str = Field(alias="PodUID")
    pod_name: str = Field(alias="PodName")
    container_name: str = Field(alias="ContainerName")
    opts: LogOpts = Field(default_factory=LogOpts, alias="Opts")


class Accelerator(KubeModel):
    resource_type: str
    available: str


class PingResources(KubeModel):
    cpu: str | None = None
    memory: str | None = None
    pods: str | None = None
    accelerators: NullableList[Accelerator] = Field(default_factory=list)


class Taint(KubeModel):
    key: str
    value: str = ""
    effect: str


class PingResponse(KubeModel):
    """The optional answer to the ping (``GET /status`` with ``[]``), read by interLink >= 0.6.2."""

    status: str = "ok"
    resources: PingResources | None = None
    taints: NullableList[Taint] = Field(default_factory=list)


def parse_create_request(body: Any) -> RetrievedPodData:
    """Read a ``/create`` body in either shape: one object, or an array holding exactly one."""
    if isinstance(body, list):
        if len(body) != 1:
            raise InvalidObjectError(
                "create request",
                [f"(top level): an array body must hold exactly one pod request, got {len(body)}"],
            )
        body = body[0]
    if not isinstance(body, dict):
        kind = type(body).__name__
        raise InvalidObjectError(
            "create request",
            [f"(top level): expected an object with 'pod' and 'container', got {kind}"],
        )
    request: RetrievedPodData = parse_as(RetrievedPodData, body, "create request")
    return request


def parse_log_request(body: Any) -> LogStruct:
    """Read a ``/getLogs`` body."""
    request: LogStruct = parse_as(LogStruct, body, "log request")
    return request
