"""Pod volume sources: the kinds flashlink turns into directories on a batch node.

Every kind Kubernetes has is accepted on input (unknown ones such as ``nfs`` or ``csi`` stay in
the model's extra fields); :attr:`Volume.kind` says which one a volume is, so the job-script
renderer can support some and name the others in a clear error.
"""

from __future__ import annotations

__all__ = [
    "ConfigMapProjection",
    "ConfigMapVolumeSource",
    "DownwardAPIProjection",
    "DownwardAPIVolumeFile",
    "DownwardAPIVolumeSource",
    "EmptyDirVolumeSource",
    "HostPathVolumeSource",
    "KeyToPath",
    "PersistentVolumeClaimVolumeSource",
    "ProjectedVolumeSource",
    "SecretProjection",
    "SecretVolumeSource",
    "ServiceAccountTokenProjection",
    "Volume",
    "VolumeProjection",
]

from pydantic import Field

from flashlink.kube._base import KubeModel, NullableList
from flashlink.kube.quantity import Quantity
from flashlink.kube.refs import ObjectFieldSelector, ResourceFieldSelector


class KeyToPath(KubeModel):
    """One ``items`` entry: the file ``path`` (relative) that holds ``key``, optionally its mode."""

    key: str
    path: str
    mode: int | None = None


class ConfigMapVolumeSource(KubeModel):
    name: str = ""
    items: NullableList[KeyToPath] = Field(default_factory=list)
    default_mode: int | None = None
    optional: bool | None = None


class SecretVolumeSource(KubeModel):
    secret_name: str = ""
    items: NullableList[KeyToPath] = Field(default_factory=list)
    default_mode: int | None = None
    optional: bool | None = None


class EmptyDirVolumeSource(KubeModel):
    medium: str = ""
    size_limit: Quantity | None = None


class HostPathVolumeSource(KubeModel):
    path: str
    type: str = ""


class PersistentVolumeClaimVolumeSource(KubeModel):
    claim_name: str
    read_only: bool = False


class DownwardAPIVolumeFile(KubeModel):
    path: str
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    mode: int | None = None


class DownwardAPIVolumeSource(KubeModel):
    items: NullableList[DownwardAPIVolumeFile] = Field(default_factory=list)
    default_mode: int | None = None


class DownwardAPIProjection(KubeModel):
    items: NullableList[DownwardAPIVolumeFile] = Field(default_factory=list)


class ConfigMapProjection(KubeModel):
    name: str = ""
    items: NullableList[KeyToPath] = Field(default_factory=list)
    optional: bool | None = None


class SecretProjection(KubeModel):
    name: str = ""
    items: NullableList[KeyToPath] = Field(default_factory=list)
    optional: bool | None = None


class ServiceAccountTokenProjection(KubeModel):
    path: str
    audience: str | None = None
    expiration_seconds: int | None = None


class VolumeProjection(KubeModel):
    config_map: ConfigMapProjection | None = None
    secret: SecretProjection | None = None
    downward_api: DownwardAPIProjection | None = Field(default=None, alias="downwardAPI")
    service_account_token: ServiceAccountTokenProjection | None = None


class ProjectedVolumeSource(KubeModel):
    sources: NullableList[VolumeProjection] = Field(default_factory=list)
    default_mode: int | None = None


# The wire key of each typed source, in the order Kubernetes documents them.
_TYPED_KINDS = (
    ("emptyDir", "empty_dir"),
    ("configMap", "config_map"),
    ("secret", "secret"),
    ("projected", "projected"),
    ("downwardAPI", "downward_api"),
    ("hostPath", "host_path"),
    ("persistentVolumeClaim", "persistent_volume_claim"),
)


class Volume(KubeModel):
    """A ``spec.volumes[]`` entry; exactly one source is expected to be set."""

    name: str
    empty_dir: EmptyDirVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    downward_api: DownwardAPIVolumeSource | None = Field(default=None, alias="downwardAPI")
    host_path: HostPathVolumeSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None

    @property
    def kind(self) -> str:
        """The wire name of the source (``emptyDir``, ``nfs``, ...), or ``""`` when none is set."""
        for wire, attr in _TYPED_KINDS:
            if getattr(self, attr) is not None:
                return wire
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, dict):
                return key
        return ""
