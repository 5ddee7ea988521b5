"""Backends built on the real test services (see tests/conftest.py for the services)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flashlink.backends.slurm import SlurmBackend, SlurmConfig
from servicekit import Service


def slurm_config(slurm: Service, **overrides: object) -> SlurmConfig:
    """A site on the test cluster; jobs run as its unprivileged user."""
    data: dict[str, object] = {
        "slurm_conf": slurm["SLURM_CONF"],
        "partition": slurm["SLURM_PARTITION"],
        "job_user": slurm["SLURM_SUBMIT_USER"],
        **overrides,
    }
    return SlurmConfig.model_validate(data)


@pytest.fixture
def slurm_backend(slurm: Service) -> Iterator[SlurmBackend]:
    backend = SlurmBackend("hpc", slurm_config(slurm))
    yield backend
    backend.close()
