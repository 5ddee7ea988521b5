"""The bash fetch function of job scripts, run with real curl against the real service."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flashlink.images.client import ImagesClient
from flashlink.images.jobside import fetch_function
from images._serve import MASTER, ServeProcess
from images.conftest import StartService
from servicekit import Service

REF = "test.local/busybox:1"
SHELLCHECK = Path(sys.executable).with_name("shellcheck")


def _fetch(
    script: Path, url: str, token: str, ref: str, cache: Path
) -> subprocess.CompletedProcess[str]:
    command = f"source {shlex.quote(str(script))}; flashlink_fetch_image " + shlex.join(
        [url, token, ref, str(cache), "60"]
    )
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_function_passes_shellcheck(tmp_path: Path) -> None:
    script = tmp_path / "fetch.sh"
    script.write_text("#!/bin/bash\n" + fetch_function())
    result = subprocess.run(
        [SHELLCHECK, "-s", "bash", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.apptainer
@pytest.mark.s3
def test_jobs_fetch_through_the_service_once_and_run_the_sif(
    start_service: StartService, apptainer: Service, s3: Service, tmp_path: Path
) -> None:
    del s3
    service: ServeProcess = start_service()
    with ImagesClient(service.url) as client:
        token = client.mint_token(MASTER, ttl_seconds=600).token
    script = tmp_path / "fetch.sh"
    script.write_text(fetch_function())
    cache = tmp_path / "node-cache"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _fetch(script, service.url, token, REF, cache), range(8)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    paths = {r.stdout.strip() for r in results}
    assert len(paths) == 1
    sif = Path(paths.pop())
    assert sif.name == hashlib.sha256(sif.read_bytes()).hexdigest() + ".sif"
    assert service.metric("flashlink_images_request_seconds_count", status="307") == 1
    out = subprocess.run(
        [apptainer["APPTAINER"], "exec", str(sif), "/entrypoint.sh", "from-cache"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "entrypoint: from-cache"

    refused = _fetch(script, service.url, "bad-token", REF, cache)
    assert refused.returncode == 1
    assert "HTTP 401" in refused.stderr
    down = _fetch(script, "http://127.0.0.1:9", token, REF, cache)  # nothing listens: fall back
    assert down.returncode == 1
    assert "HTTP 000" in down.stderr
