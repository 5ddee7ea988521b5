"""What the backend must request: Kubernetes' effective Pod request, limits first."""

from __future__ import annotations

from decimal import Decimal

from flashlink.jobscript import render
from flashlink.jobscript.resources import pod_resources

from ._pods import container, pod


def test_sum_of_containers_against_max_of_init_containers() -> None:
    p = pod(
        container(
            "a", resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1"}}
        ),
        container(
            "b", resources={"requests": {"cpu": "250m", "memory": "512Mi", "nvidia.com/gpu": "1"}}
        ),
        init=(
            container(
                "i",
                resources={"requests": {"cpu": "2", "memory": "256Mi", "ephemeral-storage": "1Gi"}},
            ),
        ),
        activeDeadlineSeconds=3600,
    )
    r = pod_resources(p)
    assert r.cpu == Decimal(2)  # max(1 + 0.25, 2)
    assert r.cpu_cores == 2
    assert r.memory_bytes == 1536 * 1024**2  # 1Gi + 512Mi > 256Mi
    assert r.ephemeral_storage_bytes == 1024**3
    assert dict(r.gpus) == {"nvidia.com/gpu": 1}
    assert r.gpu_count == 1
    assert r.walltime_seconds == 3600


def test_nothing_requested_means_backend_defaults() -> None:
    r = render(pod()).resources
    assert (r.cpu, r.memory_bytes, r.gpu_count, r.walltime_seconds) == (None, None, 0, None)
    assert r.cpu_cores is None


def test_fractional_cpus_round_up_to_whole_cores() -> None:
    r = pod_resources(pod(container(resources={"requests": {"cpu": "1100m"}})))
    assert (r.cpu, r.cpu_cores) == (Decimal("1.100"), 2)
