"""Checks a Pod must pass before it becomes a script: Kubernetes' own rules that a batch node
relies on, plus the paths and names the script uses as files.

Kubernetes' API server enforces most of these already, but a plugin must not assume it: Pods
also come from files (``flashlink jobscript render pod.yaml``) and from older interLink
versions. Each error names the field by its Pod path and says what would be valid.
"""

from __future__ import annotations

__all__ = ["container_path", "safe_relative_path", "text", "validate_pod"]

import posixpath
import re

from flashlink.jobscript._shell import check_text
from flashlink.jobscript.errors import InvalidPodError, UnsupportedError
from flashlink.kube import Container, Pod

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def text(value: str, where: str) -> str:
    """``value`` if the script can carry it byte-exact, else :class:`InvalidPodError`."""
    try:
        return check_text(value, where)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise InvalidPodError(field, message) from None


def safe_relative_path(path: str, where: str) -> str:
    """A relative path that stays inside its volume: not absolute, no ``..`` component."""
    text(path, where)
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts:
        raise InvalidPodError(
            where,
            f"{path!r} must be a relative path inside the volume (not absolute, no '..' "
            "component), e.g. 'conf/app.yaml'",
        )
    normal = posixpath.normpath(path)
    if normal == ".":
        raise InvalidPodError(where, f"{path!r} names the volume itself, not a path inside it")
    return normal


def container_path(path: str, where: str) -> str:
    """An absolute path in the container, without ':' (Kubernetes and the runtimes forbid it)."""
    text(path, where)
    if not path.startswith("/") or ":" in path:
        raise InvalidPodError(where, f"{path!r} must be an absolute path without ':', e.g. '/data'")
    return posixpath.normpath(path)


def _dns_label(name: str, where: str, what: str) -> None:
    if not _DNS_LABEL.fullmatch(name):
        raise InvalidPodError(
            where,
            f"{name!r} is not a valid {what} name: use at most 63 lower-case letters, digits "
            "and '-', starting and ending with a letter or digit (RFC 1123 label)",
        )


def _check_container(container: Container, where: str, volumes: set[str], init: bool) -> None:
    if not container.image:
        raise InvalidPodError(
            f"{where}.image", "every container needs an image, e.g. 'busybox:1.36'"
        )
    text(container.image, f"{where}.image")
    for attr in ("command", "args"):
        for j, item in enumerate(getattr(container, attr) or ()):
            text(item, f"{where}.{attr}[{j}]")
    if container.working_dir:
        container_path(container.working_dir, f"{where}.workingDir")
    if init and container.restart_policy == "Always":
        raise UnsupportedError(
            f"{where}.restartPolicy",
            "sidecar init containers (restartPolicy: Always) are not supported on batch nodes; "
            "make it a regular container",
        )
    security = container.security_context
    if security is not None and security.privileged:
        raise UnsupportedError(
            f"{where}.securityContext.privileged",
            "privileged containers cannot run on a batch node; remove privileged: true",
        )
    seen: set[str] = set()
    for j, mount in enumerate(container.volume_mounts):
        here = f"{where}.volumeMounts[{j}]"
        if mount.name not in volumes:
            known = ", ".join(sorted(volumes)) or "none"
            raise InvalidPodError(
                f"{here}.name", f"no volume named {mount.name!r} in spec.volumes (volumes: {known})"
            )
        target = container_path(mount.mount_path, f"{here}.mountPath")
        if target in seen:
            raise InvalidPodError(f"{here}.mountPath", f"{target!r} is mounted twice")
        seen.add(target)
        if mount.sub_path and mount.sub_path_expr:
            raise InvalidPodError(here, "subPath and subPathExpr are mutually exclusive")
        if mount.sub_path:
            safe_relative_path(mount.sub_path, f"{here}.subPath")


def validate_pod(pod: Pod) -> None:
    """Raise the first problem that would make the Pod's script wrong or half-working."""
    spec = pod.spec
    if not spec.containers:
        raise InvalidPodError(
            "spec.containers", "a Pod needs at least one container (the list is empty or missing)"
        )
    volumes: set[str] = set()
    for i, volume in enumerate(spec.volumes):
        _dns_label(volume.name, f"spec.volumes[{i}].name", "volume")
        if volume.name in volumes:
            raise InvalidPodError(
                f"spec.volumes[{i}].name", f"volume {volume.name!r} is defined twice"
            )
        volumes.add(volume.name)
    names: set[str] = set()
    groups = (("initContainers", spec.init_containers), ("containers", spec.containers))
    for group, containers in groups:
        for i, container in enumerate(containers):
            where = f"spec.{group}[{i}]"
            _dns_label(container.name, f"{where}.name", "container")
            if container.name in names:
                raise InvalidPodError(
                    f"{where}.name",
                    f"container name {container.name!r} is used twice (names are unique across "
                    "initContainers and containers)",
                )
            names.add(container.name)
            _check_container(container, where, volumes, init=group == "initContainers")
    if spec.active_deadline_seconds is not None and spec.active_deadline_seconds <= 0:
        raise InvalidPodError("spec.activeDeadlineSeconds", "must be a positive number of seconds")
