"""References from a Pod to data elsewhere (``valueFrom``, ``envFrom``, the downward API)."""

from __future__ import annotations

__all__ = [
    "ConfigMapEnvSource",
    "ConfigMapKeySelector",
    "ObjectFieldSelector",
    "ResourceFieldSelector",
    "SecretEnvSource",
    "SecretKeySelector",
]

from flashlink.kube._base import KubeModel
from flashlink.kube.quantity import Quantity


class ObjectFieldSelector(KubeModel):
    """``fieldRef``: a field of the Pod, e.g. ``metadata.name`` or ``metadata.labels['app']``."""

    field_path: str
    api_version: str | None = None


class ResourceFieldSelector(KubeModel):
    """``resourceFieldRef``: a container's request or limit (``limits.cpu``) over ``divisor``."""

    resource: str
    container_name: str | None = None
    divisor: Quantity | None = None


class ConfigMapKeySelector(KubeModel):
    name: str = ""
    key: str
    optional: bool | None = None


class SecretKeySelector(KubeModel):
    name: str = ""
    key: str
    optional: bool | None = None


class ConfigMapEnvSource(KubeModel):
    name: str = ""
    optional: bool | None = None


class SecretEnvSource(KubeModel):
    name: str = ""
    optional: bool | None = None
