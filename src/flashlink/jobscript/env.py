"""A container's environment exactly as the kubelet would build it, resolved at render time.

Order and precedence follow the kubelet (``pkg/kubelet/kubelet_pods.go``,
``makeEnvironmentVariables``): ``envFrom`` sources first, in order, each key optionally prefixed;
then ``env`` entries in order, a later entry replacing an earlier one of the same name. Literal
``value``s may reference earlier variables as ``$(NAME)``, expanded with Kubernetes' rules
(``third_party/forked/golang/expansion``): ``$$`` is a literal ``$``, an unknown ``$(NAME)`` is
left as written, values from ``valueFrom``/``envFrom`` are never expanded. ``command`` and
``args`` are expanded the same way against the final environment.

Everything here is known when the job is rendered (the Pod, its ConfigMaps and Secrets), so the
script carries finished values; the node never evaluates a user string.
"""

from __future__ import annotations

__all__ = ["ObjectStore", "expand", "field_value", "resolve_env", "resource_value"]

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from flashlink.jobscript.errors import InvalidPodError, MissingObjectError, UnsupportedError
from flashlink.kube import (
    ConfigMap,
    ConfigMapEnvSource,
    Container,
    EnvVar,
    ObjectFieldSelector,
    Pod,
    ResourceFieldSelector,
    Secret,
    SecretEnvSource,
    parse_quantity,
)


@dataclass(frozen=True)
class ObjectStore:
    """The ConfigMaps and Secrets available to the Pod, by name, with their decoded files."""

    config_maps: Mapping[str, ConfigMap] = field(default_factory=dict)
    secrets: Mapping[str, Secret] = field(default_factory=dict)

    def lookup(self, kind: str, name: str) -> dict[str, bytes] | None:
        source: Mapping[str, ConfigMap] | Mapping[str, Secret]
        source = self.config_maps if kind == "ConfigMap" else self.secrets
        obj = source.get(name)
        return None if obj is None else obj.files()


# `$$`, `$(NAME)`, or `$` and the next character (taken literally, as Kubernetes does; an
# unterminated `$(` thus yields "$(" and scanning goes on after the parenthesis).
_REFERENCE = re.compile(r"\$(?:(\$)|\(([^)]*)\)|(.))", re.DOTALL)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` -> ``$``, unknown references kept as written."""
    if "$" not in text:
        return text  # most values: nothing to expand

    def one(match: re.Match[str]) -> str:
        if match[1] is not None:
            return "$"
        if match[2] is not None:
            return env.get(match[2], match[0])
        return match[0]

    return _REFERENCE.sub(one, text)


_LABEL_REF = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]\Z", re.DOTALL)
_POD_IP_ANNOTATION = "interlink.eu/pod-ip"


def field_value(pod: Pod, selector: ObjectFieldSelector, where: str) -> str:
    """The value of a downward-API ``fieldRef`` for this Pod."""
    path = selector.field_path
    meta = pod.metadata
    status = pod.status
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.node_name or "",
        "spec.serviceAccountName": pod.spec.service_account_name or "",
        "status.hostIP": (status.host_ip if status else None) or "",
        "status.hostIPs": (status.host_ip if status else None) or "",
        "status.podIP": meta.annotations.get(_POD_IP_ANNOTATION)
        or (status.pod_ip if status else None)
        or "",
    }
    simple["status.podIPs"] = simple["status.podIP"]
    if path in simple:
        return simple[path]
    match = _LABEL_REF.match(path)
    if match:
        table = meta.labels if match[1] == "labels" else meta.annotations
        return table.get(match[2], "")
    raise UnsupportedError(
        f"{where}.fieldRef.fieldPath",
        f"{path!r} is not a downward-API field; supported: {', '.join(sorted(simple))}, "
        "metadata.labels['KEY'], metadata.annotations['KEY']",
    )


_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def resource_value(
    pod: Pod, container: Container, selector: ResourceFieldSelector, where: str
) -> str:
    """A ``resourceFieldRef`` value: the request or limit divided by ``divisor``, rounded up.

    Kubernetes substitutes the node's allocatable amount for an unset limit; a batch job gets
    what the backend requests for the Pod, so the request stands in for an unset limit, and
    a resource with neither is an error rather than a guess.
    """
    target = container
    if selector.container_name:
        by_name = {c.name: c for c in pod.spec.init_containers + pod.spec.containers}
        if selector.container_name not in by_name:
            raise InvalidPodError(
                f"{where}.resourceFieldRef.containerName",
                f"no container named {selector.container_name!r}; containers: "
                f"{', '.join(sorted(by_name))}",
            )
        target = by_name[selector.container_name]
    kind, _, resource = selector.resource.partition(".")
    if kind not in ("limits", "requests") or resource not in _RESOURCES:
        raise UnsupportedError(
            f"{where}.resourceFieldRef.resource",
            f"{selector.resource!r} is not supported; use limits.* or requests.* of "
            f"{', '.join(_RESOURCES)}",
        )
    table = target.resources.limits if kind == "limits" else target.resources.requests
    text = table.get(resource) or target.resources.requests.get(resource)
    if text is None:
        raise UnsupportedError(
            f"{where}.resourceFieldRef",
            f"container {target.name!r} sets neither limits.{resource} nor requests.{resource}; "
            "a batch node has no allocatable amount to substitute, so set one of them",
        )
    try:
        amount = parse_quantity(text)
        divisor = parse_quantity(selector.divisor) if selector.divisor else Decimal(1)
    except ValueError as exc:
        raise InvalidPodError(f"{where}.resourceFieldRef", str(exc)) from exc
    if divisor <= 0:
        raise InvalidPodError(f"{where}.resourceFieldRef.divisor", "must be positive")
    return str((amount / divisor).to_integral_value(rounding=ROUND_CEILING))


def _key_value(
    store: ObjectStore, kind: str, name: str, key: str, *, optional: bool, where: str
) -> str | None:
    files = store.lookup(kind, name)
    if files is None:
        if optional:
            return None
        raise MissingObjectError(
            where,
            f"{kind} {name!r} was not supplied; interLink attaches only the {kind}s that a "
            f"volume mounts (with the CLI, pass it with --{kind.lower()})",
        )
    if key not in files:
        if optional:
            return None
        raise MissingObjectError(
            where, f"{kind} {name!r} has no key {key!r}; its keys: {', '.join(sorted(files))}"
        )
    try:
        return files[key].decode()
    except UnicodeDecodeError as exc:
        raise InvalidPodError(
            where, f"{kind} {name!r} key {key!r} is binary; an environment value must be text"
        ) from exc


def resolve_env(pod: Pod, container: Container, store: ObjectStore, where: str) -> dict[str, str]:
    """The container's environment, in definition order (a dict keeps the first position)."""
    env: dict[str, str] = {}
    for i, source in enumerate(container.env_from):
        here = f"{where}.envFrom[{i}]"
        ref: ConfigMapEnvSource | SecretEnvSource
        if source.config_map_ref is not None:
            ref, kind = source.config_map_ref, "ConfigMap"
        elif source.secret_ref is not None:
            ref, kind = source.secret_ref, "Secret"
        else:
            raise InvalidPodError(here, "needs configMapRef or secretRef")
        files = store.lookup(kind, ref.name)
        if files is None:
            if ref.optional:
                continue
            raise MissingObjectError(
                here, f"{kind} {ref.name!r} was not supplied (pass it with --{kind.lower()})"
            )
        for key, data in files.items():
            name = source.prefix + key
            if not name or "=" in name:
                continue  # the kubelet skips keys that are not variable names
            try:
                env[name] = data.decode()
            except UnicodeDecodeError:
                continue  # likewise binary values: they cannot be environment text
    for i, var in enumerate(container.env):
        here = f"{where}.env[{i}]"
        if not var.name or "=" in var.name:
            raise InvalidPodError(
                f"{here}.name", f"{var.name!r} is not an environment variable name (no '=')"
            )
        value = _env_value(pod, container, store, var, env=env, here=here)
        if value is not None:
            env.pop(var.name, None)
            env[var.name] = value
    return env


def _env_value(
    pod: Pod,
    container: Container,
    store: ObjectStore,
    var: EnvVar,
    *,
    env: Mapping[str, str],
    here: str,
) -> str | None:
    source = var.value_from
    if source is None:
        return expand(var.value or "", env)
    if source.field_ref is not None:
        return field_value(pod, source.field_ref, f"{here}.valueFrom")
    if source.resource_field_ref is not None:
        return resource_value(pod, container, source.resource_field_ref, f"{here}.valueFrom")
    if source.config_map_key_ref is not None:
        ref = source.config_map_key_ref
        where = f"{here}.valueFrom.configMapKeyRef"
        return _key_value(
            store, "ConfigMap", ref.name, ref.key, optional=bool(ref.optional), where=where
        )
    if source.secret_key_ref is not None:
        ref2 = source.secret_key_ref
        where = f"{here}.valueFrom.secretKeyRef"
        return _key_value(
            store, "Secret", ref2.name, ref2.key, optional=bool(ref2.optional), where=where
        )
    raise InvalidPodError(
        f"{here}.valueFrom",
        "needs one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef",
    )
