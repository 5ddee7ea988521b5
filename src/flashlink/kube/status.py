"""``v1.ContainerStatus``: what interLink reads back for every container of a Pod.

Exactly one of ``waiting``, ``running`` and ``terminated`` is set in a state. Timestamps are
RFC 3339 in UTC with second precision, as Kubernetes writes them (``2026-11-22T10:00:00Z``).
"""

from __future__ import annotations

__all__ = [
    "ContainerState",
    "ContainerStateRunning",
    "ContainerStateTerminated",
    "ContainerStateWaiting",
    "ContainerStatus",
]

from datetime import UTC, datetime

from pydantic import Field, field_serializer

from flashlink.kube._base import KubeModel


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class ContainerStateWaiting(KubeModel):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(KubeModel):
    started_at: datetime | None = None

    @field_serializer("started_at")
    def _ser_started(self, value: datetime | None) -> str | None:
        return _rfc3339(value)


class ContainerStateTerminated(KubeModel):
    exit_code: int
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    container_id: str | None = Field(default=None, alias="containerID")

    @field_serializer("started_at", "finished_at")
    def _ser_times(self, value: datetime | None) -> str | None:
        return _rfc3339(value)


class ContainerState(KubeModel):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(KubeModel):
    name: str
    state: ContainerState = Field(default_factory=ContainerState)
    last_state: ContainerState | None = None
    ready: bool = False
    restart_count: int = 0
    image: str = ""
    image_id: str = Field(default="", alias="imageID")
    started: bool | None = None
    container_id: str | None = Field(default=None, alias="containerID")
