"""Session fixtures for the real test services.

A test that needs a service asks for the fixture of that name (``slurm``, ``htcondor``, ``s3``,
...) and carries the marker of the same name, so ``-m 'not htcondor'`` deselects it. A service
that is not set up skips its tests locally with a one-line reason, and **fails** them when
``CI=true``: in CI nothing may pass by being skipped.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicekit import SERVICES, Service, ServiceUnavailableError, start
from servicekit._service import WORK

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_started: dict[str, Service] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for name in SERVICES:
            if name in fixtures and item.get_closest_marker(name) is None:
                raise pytest.UsageError(
                    f"{item.nodeid} uses the {name!r} service fixture without "
                    f"@pytest.mark.{name}; add the marker so the test can be selected by service"
                )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _started:
        terminalreporter.section("test services")
        for name, svc in sorted(_started.items()):
            terminalreporter.write_line(
                f"{name:10s} started in {svc.start_seconds:5.1f} s  ({svc.rundir})"
            )


@pytest.fixture(scope="session")
def service_rundir() -> Iterator[Path]:
    """One run directory per session, outside /tmp (see ci/lib.sh), removed at the end."""
    base = WORK / "run"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"session-{os.getpid()}-{int(time.time())}"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _service(name: str, rundir: Path) -> Iterator[Service]:
    try:
        svc = start(name, rundir / name)
    except ServiceUnavailableError as exc:
        if IN_CI:
            pytest.fail(f"service {name} is required in CI: {exc}", pytrace=False)
        pytest.skip(str(exc).splitlines()[0])
    _started[name] = svc
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def slurm(service_rundir: Path) -> Iterator[Service]:
    yield from _service("slurm", service_rundir)


@pytest.fixture(scope="session")
def htcondor(service_rundir: Path) -> Iterator[Service]:
    yield from _service("htcondor", service_rundir)


@pytest.fixture(scope="session")
def apptainer(service_rundir: Path) -> Iterator[Service]:
    yield from _service("apptainer", service_rundir)


@pytest.fixture(scope="session")
def payload(service_rundir: Path) -> Iterator[Service]:
    yield from _service("payload", service_rundir)


@pytest.fixture(scope="session")
def podman(service_rundir: Path) -> Iterator[Service]:
    yield from _service("podman", service_rundir)


@pytest.fixture(scope="session")
def bwrap(service_rundir: Path) -> Iterator[Service]:
    yield from _service("bwrap", service_rundir)


@pytest.fixture(scope="session")
def s3(service_rundir: Path) -> Iterator[Service]:
    yield from _service("s3", service_rundir)


@pytest.fixture(scope="session")
def redis(service_rundir: Path) -> Iterator[Service]:
    yield from _service("redis", service_rundir)


@pytest.fixture
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch directory that batch jobs, the unprivileged CI user and service roots all see."""
    base = WORK / "work"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"t-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir(mode=0o777)
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
