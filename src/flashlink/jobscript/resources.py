"""What a backend must request for a Pod: CPUs, memory, GPUs, disk and wall time.

Kubernetes' effective Pod request (``k8s.io/component-helpers/resource``): for each resource,
the larger of the **sum** over the containers (they run together) and the **maximum** over
the init containers (they run one at a time, before). A batch slot is a hard allocation, so
each container counts with its limit when it sets one (it may use that much), else its request.
"""

from __future__ import annotations

__all__ = ["Resources", "container_amounts", "container_limits", "pod_resources"]

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from flashlink.jobscript.errors import InvalidPodError
from flashlink.kube import Container, Pod, parse_quantity

_CPU, _MEMORY, _DISK = "cpu", "memory", "ephemeral-storage"


@dataclass(frozen=True)
class Resources:
    """The allocation one job needs. ``None`` means the Pod does not say (backend default)."""

    cpu: Decimal | None = None
    memory_bytes: int | None = None
    ephemeral_storage_bytes: int | None = None
    gpus: Mapping[str, int] = field(default_factory=dict)
    walltime_seconds: int | None = None

    @property
    def cpu_cores(self) -> int | None:
        """Whole cores to ask a scheduler that counts only whole CPUs (rounded up)."""
        if self.cpu is None:
            return None
        return int(self.cpu.to_integral_value(rounding=ROUND_CEILING))

    @property
    def gpu_count(self) -> int:
        return sum(self.gpus.values())


def _is_gpu(resource: str) -> bool:
    # nvidia.com/gpu, amd.com/gpu, gpu.intel.com/i915: the device plugins' resource names
    return "/" in resource and "gpu" in resource


def _amounts(container: Container, where: str, kinds: tuple[str, ...]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for kind in kinds:
        table = getattr(container.resources, kind)
        for resource, quantity in table.items():
            try:
                out[resource] = parse_quantity(quantity)  # limits come second: they win
            except ValueError as exc:
                raise InvalidPodError(f"{where}.resources.{kind}.{resource}", str(exc)) from exc
    return out


def container_amounts(container: Container, where: str) -> dict[str, Decimal]:
    """Limit-or-request of every resource the container names, as exact numbers."""
    return _amounts(container, where, ("requests", "limits"))


def container_limits(container: Container, where: str) -> dict[str, Decimal]:
    """Only the limits (what a runtime may enforce), as exact numbers."""
    return _amounts(container, where, ("limits",))


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def pod_resources(pod: Pod) -> Resources:
    """The Pod's effective allocation (see the module docstring)."""
    mains = [
        container_amounts(c, f"spec.containers[{i}]") for i, c in enumerate(pod.spec.containers)
    ]
    inits = [
        container_amounts(c, f"spec.initContainers[{i}]")
        for i, c in enumerate(pod.spec.init_containers)
    ]
    names = sorted({name for amounts in mains + inits for name in amounts})
    total: dict[str, Decimal] = {}
    for name in names:
        summed = sum((a[name] for a in mains if name in a), Decimal(0))
        peak = max((a[name] for a in inits if name in a), default=Decimal(0))
        total[name] = max(summed, peak)
    gpus = {name: _ceil(value) for name, value in total.items() if _is_gpu(name) and value > 0}
    return Resources(
        cpu=total.get(_CPU),
        memory_bytes=_ceil(total[_MEMORY]) if _MEMORY in total else None,
        ephemeral_storage_bytes=_ceil(total[_DISK]) if _DISK in total else None,
        gpus=gpus,
        walltime_seconds=pod.spec.active_deadline_seconds,
    )
