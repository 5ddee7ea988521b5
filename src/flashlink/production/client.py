"""A client of the interLink plugin HTTP API (docs/plugin.md), as interLink itself calls it."""

from __future__ import annotations

__all__ = ["PluginClient", "create_body", "pod_phase"]

from collections.abc import Sequence
from typing import Any

import httpx

from flashlink.production.errors import PluginCallError


def create_body(pod: dict[str, Any], secrets: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The ``/create`` body for ``pod``: each container entry carries the ``secrets`` it reads
    with ``envFrom.secretRef``, as interLink attaches a container's Secrets."""
    spec = pod["spec"]
    by_name = {s["metadata"]["name"]: s for s in secrets}
    entries = []
    for c in spec.get("initContainers", []) + spec["containers"]:
        refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
        entries.append(
            {
                "name": c["name"],
                "configMaps": [],
                "secrets": [by_name[r] for r in refs if r in by_name],
                "projectedvolumemaps": None,
                "emptyDirs": None,
            }
        )
    return {"pod": pod, "container": entries}


def pod_phase(status: dict[str, Any]) -> str:
    """Pending, Running, Succeeded or Failed from one ``/status`` entry."""
    every = list(status.get("initContainers") or []) + list(status.get("containers") or [])
    if every and all("terminated" in c.get("state", {}) for c in every):
        ok = all(c["state"]["terminated"].get("exitCode") == 0 for c in every)
        return "Succeeded" if ok else "Failed"
    if any(
        "terminated" in c.get("state", {}) and c["state"]["terminated"].get("exitCode")
        for c in every
    ):
        return "Failed"  # an init container failed: the later ones never start
    if any("running" in c.get("state", {}) for c in every):
        return "Running"
    return "Pending"


class PluginClient:
    """``/create``, ``/status``, ``/getLogs``, ``/delete`` with errors naming the call."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 120) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any) -> httpx.Response:
        try:
            answer = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise PluginCallError(
                f"{method} {self.url}{path} failed: {exc}; is the plugin running?"
            ) from exc
        if answer.status_code != 200:
            raise PluginCallError(
                f"{method} {self.url}{path} answered {answer.status_code}: {answer.text[:500]}"
            )
        return answer

    def create(self, pod: dict[str, Any], secrets: Sequence[dict[str, Any]] = ()) -> None:
        """Create one pod with the Secrets its containers read."""
        self._call("POST", "/create", create_body(pod, secrets))

    def status(self, pods: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Statuses by pod UID, in one call whatever the number of pods."""
        if not pods:
            return {}
        answer = self._call("GET", "/status", pods).json()
        return {s["UID"]: s for s in answer or []}

    def logs(self, pod: dict[str, Any], container: str) -> str:
        meta = pod["metadata"]
        body = {
            "Namespace": meta["namespace"],
            "PodUID": meta["uid"],
            "PodName": meta["name"],
            "ContainerName": container,
            "Opts": {"Timestamps": True},
        }
        return self._call("GET", "/getLogs", body).text

    def delete(self, pod: dict[str, Any]) -> None:
        self._call("POST", "/delete", pod)
