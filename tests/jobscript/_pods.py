"""Small builders for test Pods (plain dicts in, parsed models out)."""

from __future__ import annotations

import base64
from typing import Any

from flashlink.kube import ConfigMap, Pod, RetrievedPodData, Secret, parse_pod

UID = "11111111-1111-4111-8111-111111111111"


def container(name: str = "main", image: str = "flashlink-test", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **fields}


def pod(
    *containers: dict[str, Any],
    init: tuple[dict[str, Any], ...] = (),
    volumes: tuple[dict[str, Any], ...] = (),
    name: str = "hello",
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> Pod:
    return parse_pod(
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": UID,
                "labels": {"app": "demo"},
                "annotations": annotations or {},
            },
            "spec": {
                "containers": list(containers) or [container()],
                "initContainers": list(init),
                "volumes": list(volumes),
                "restartPolicy": "Never",
                **spec,
            },
        }
    )


def config_map(
    name: str, data: dict[str, str] | None = None, binary: dict[str, bytes] | None = None
) -> ConfigMap:
    return ConfigMap.model_validate(
        {
            "metadata": {"name": name},
            "data": data or {},
            "binaryData": {k: base64.b64encode(v).decode() for k, v in (binary or {}).items()},
        }
    )


def secret(name: str, data: dict[str, bytes]) -> Secret:
    return Secret.model_validate(
        {
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
    )


def request(
    the_pod: Pod,
    config_maps: tuple[ConfigMap, ...] = (),
    secrets: tuple[Secret, ...] = (),
    projected: tuple[ConfigMap, ...] = (),
) -> RetrievedPodData:
    req = RetrievedPodData.from_pod(the_pod, list(config_maps), list(secrets))
    if projected:
        req.container[-1].projected_volume_maps = list(projected)
    return req


def flat(script: str) -> str:
    """The script with its continuation lines joined (the renderer wraps long commands)."""
    return script.replace(" \\\n        ", " ")
