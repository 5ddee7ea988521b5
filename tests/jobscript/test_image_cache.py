"""A Pod whose image comes through the flashlink image cache (``flashlink images serve``).

The service is the real one (started by the images tests' fixture, directory store, building
the busybox test rootfs into a SIF); the job script fetches the SIF once into the node cache
and runs it with the real Apptainer; a second job reuses the cached file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flashlink.images.client import ImagesClient
from flashlink.jobscript import parse_config, render
from images._serve import MASTER
from images.conftest import StartService, rootfs, start_service  # noqa: F401 - fixtures
from servicekit import Service

from ._pods import container, pod

REF = "test.local/busybox:1"


@pytest.mark.apptainer
def test_image_from_the_cache_once_per_node(
    start_service: StartService,  # noqa: F811
    apptainer: Service,
    shared_tmp: Path,
) -> None:
    service = start_service(store="directory")
    with ImagesClient(service.url) as client:
        token = client.mint_token(MASTER, ttl_seconds=600).token
    node_cache = shared_tmp / "sif-cache"
    config = parse_config(
        {
            "apptainer": {"executable": apptainer["APPTAINER"]},
            "images": {
                "cache_url": service.url,
                "node_cache_dir": str(node_cache),
                "registry_fallback": False,
            },
        }
    )
    # a SIF built from a plain root filesystem has no runscript: name the command
    job = render(pod(container(image=REF, command=["/entrypoint.sh", "from", "the cache"])), config)
    assert job.contains_secrets is False  # the token travels in the environment, not the text
    seen = []
    for run in ("first", "second"):
        job_dir = shared_tmp / run
        job_dir.mkdir()
        (job_dir / "job.sh").write_text(job.text)
        proc = subprocess.run(
            ["bash", "job.sh"],
            cwd=job_dir,
            capture_output=True,
            text=True,
            timeout=180,
            env={"PATH": "/usr/bin:/bin", "FLASHLINK_IMAGES_TOKEN": token},
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert (job_dir / "containers/main/log").read_text() == "entrypoint: from the cache\n"
        (sif,) = node_cache.glob("*.sif")
        seen.append((sif, sif.stat().st_ino, sif.stat().st_mtime_ns))
    # the second job used the first one's file: a new download would be renamed into place
    assert seen[0] == seen[1]


@pytest.mark.apptainer
def test_a_refused_token_is_a_clear_image_error(
    start_service: StartService,  # noqa: F811
    apptainer: Service,
    shared_tmp: Path,
) -> None:
    service = start_service(store="directory")
    config = parse_config(
        {
            "apptainer": {"executable": apptainer["APPTAINER"]},
            "images": {
                "cache_url": service.url,
                "cache_token": "not-a-token",
                "node_cache_dir": str(shared_tmp / "c"),
                "registry_fallback": False,
            },
        }
    )
    job = render(pod(container(image=REF)), config)
    assert job.contains_secrets  # an embedded token makes the script secret
    (shared_tmp / "job.sh").write_text(job.text)
    proc = subprocess.run(
        ["bash", "job.sh"], cwd=shared_tmp, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 128
    assert '"reason":"ErrImagePull"' in (shared_tmp / "containers/main/state.json").read_text()
    assert "HTTP 401" in (shared_tmp / "job.log").read_text()
