"""The subset of a Kubernetes ``v1.Pod`` that flashlink reads: what is needed to run it elsewhere.

Fields flashlink does not model (probes, ports, affinity, ...) are kept verbatim in each model's
extra fields, so a Pod read from interLink and written back is unchanged.
"""

from __future__ import annotations

__all__ = [
    "Container",
    "EnvFromSource",
    "EnvVar",
    "EnvVarSource",
    "ObjectMeta",
    "Pod",
    "PodSecurityContext",
    "PodSpec",
    "ResourceRequirements",
    "SecurityContext",
    "Toleration",
    "V1PodStatus",
    "VolumeMount",
    "parse_pod",
]

from typing import Any, Literal

from pydantic import Field

from flashlink.kube._base import KubeModel, NullableDict, NullableList, parse_as
from flashlink.kube.errors import InvalidObjectError
from flashlink.kube.quantity import Quantity
from flashlink.kube.refs import (
    ConfigMapEnvSource,
    ConfigMapKeySelector,
    ObjectFieldSelector,
    ResourceFieldSelector,
    SecretEnvSource,
    SecretKeySelector,
)
from flashlink.kube.status import ContainerStatus
from flashlink.kube.volumes import Volume


class ObjectMeta(KubeModel):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    generate_name: str | None = None
    labels: NullableDict[str] = Field(default_factory=dict)
    annotations: NullableDict[str] = Field(default_factory=dict)


class EnvVarSource(KubeModel):
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None
    secret_key_ref: SecretKeySelector | None = None


class EnvVar(KubeModel):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class EnvFromSource(KubeModel):
    prefix: str = ""
    config_map_ref: ConfigMapEnvSource | None = None
    secret_ref: SecretEnvSource | None = None


class VolumeMount(KubeModel):
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""
    sub_path_expr: str = ""
    mount_propagation: str | None = None


class ResourceRequirements(KubeModel):
    limits: NullableDict[Quantity] = Field(default_factory=dict)
    requests: NullableDict[Quantity] = Field(default_factory=dict)


class SecurityContext(KubeModel):
    """The container security settings a batch node can honour (others are kept, not applied)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    privileged: bool | None = None
    allow_privilege_escalation: bool | None = None


class PodSecurityContext(KubeModel):
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    fs_group: int | None = None


class Container(KubeModel):
    name: str
    image: str | None = None
    command: NullableList[str] | None = None
    args: NullableList[str] | None = None
    working_dir: str | None = None
    env: NullableList[EnvVar] = Field(default_factory=list)
    env_from: NullableList[EnvFromSource] = Field(default_factory=list)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    volume_mounts: NullableList[VolumeMount] = Field(default_factory=list)
    security_context: SecurityContext | None = None
    image_pull_policy: str | None = None
    restart_policy: str | None = None  # only on init containers: "Always" makes a sidecar


class Toleration(KubeModel):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class PodSpec(KubeModel):
    containers: NullableList[Container] = Field(default_factory=list)
    init_containers: NullableList[Container] = Field(default_factory=list)
    volumes: NullableList[Volume] = Field(default_factory=list)
    restart_policy: str | None = None
    active_deadline_seconds: int | None = None
    termination_grace_period_seconds: int | None = None
    tolerations: NullableList[Toleration] = Field(default_factory=list)
    node_selector: NullableDict[str] = Field(default_factory=dict)
    node_name: str | None = None
    service_account_name: str | None = None
    hostname: str | None = None
    security_context: PodSecurityContext | None = None


class V1PodStatus(KubeModel):
    """``v1.Pod.status`` (the Kubernetes one; interLink's own answer is :class:`PodStatus`)."""

    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")
    pod_ip: str | None = Field(default=None, alias="podIP")
    start_time: str | None = None
    container_statuses: NullableList[ContainerStatus] = Field(default_factory=list)
    init_container_statuses: NullableList[ContainerStatus] = Field(default_factory=list)


class Pod(KubeModel):
    api_version: str = "v1"
    kind: Literal["Pod"] = "Pod"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec = Field(default_factory=PodSpec)
    status: V1PodStatus | None = None


def parse_pod(data: Any) -> Pod:
    """Read a Pod from a decoded JSON/YAML document; errors name each bad field by its path."""
    if not isinstance(data, dict):
        raise InvalidObjectError(
            "Pod", [f"(top level): expected a mapping, got {type(data).__name__}"]
        )
    kind = data.get("kind", "Pod")
    if kind != "Pod":
        raise InvalidObjectError("Pod", [f"kind: expected 'Pod', got {kind!r}"])
    pod: Pod = parse_as(Pod, data, "Pod")
    return pod
