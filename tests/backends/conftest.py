"""Backends built on the real test services (see tests/conftest.py for the services)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flashlink.backends.htcondor import HTCondorBackend, HTCondorConfig
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


def condor_config(htcondor: Service, **overrides: object) -> HTCondorConfig:
    """A site on the test pool; root submits with the submit user's token (see servicekit)."""
    data: dict[str, object] = {
        "condor_config": htcondor["CONDOR_CONFIG"],
        "token_dir": str(Path(htcondor["HTCONDOR_TOKENS"]) / "root"),
        "job_user": htcondor["HTCONDOR_SUBMIT_USER"],
        **overrides,
    }
    return HTCondorConfig.model_validate(data)


@pytest.fixture
def slurm_backend(slurm: Service) -> Iterator[SlurmBackend]:
    backend = SlurmBackend("hpc", slurm_config(slurm))
    yield backend
    backend.close()


@pytest.fixture
def condor_backend(htcondor: Service) -> Iterator[HTCondorBackend]:
    backend = HTCondorBackend("htc", condor_config(htcondor))
    yield backend
    backend.close()
