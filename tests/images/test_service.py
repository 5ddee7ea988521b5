"""The service end to end: uvicorn on a free port, real S3 (SeaweedFS), real Apptainer builds.

No container registry is reachable from the test machines, so images come from local sources
(the busybox test rootfs, the Podman store); ``docker://`` builds are the same code path with a
different ``apptainer build`` argument.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from flashlink.images.client import ImagesClient
from flashlink.images.errors import ImageBuildFailedError, ServiceError
from images._serve import MASTER, ServeProcess
from images.conftest import StartService
from servicekit import Service

pytestmark = [pytest.mark.apptainer]

REF = "test.local/busybox:1"


def _token(service: ServeProcess, ttl: float = 600) -> str:
    with ImagesClient(service.url) as client:
        return client.mint_token(MASTER, ttl_seconds=ttl, subject="pod/test").token


@pytest.mark.s3
def test_a_job_gets_202_then_307_downloads_verifies_and_runs_the_sif(
    start_service: StartService, apptainer: Service, tmp_path: Path
) -> None:
    service = start_service()
    token = _token(service)
    first = httpx.get(f"{service.url}/v1/images/{REF}", headers={"X-Token": token})
    assert first.status_code == 202, first.text
    assert first.headers["Retry-After"] == "1"
    assert first.json()["state"] in ("queued", "building")
    assert first.json()["reference"] == REF

    with ImagesClient(service.url, token=token) as client:
        meta = client.fetch(REF, tmp_path / "job" / "image.sif", wait=60)
    sif = tmp_path / "job" / "image.sif"
    assert hashlib.sha256(sif.read_bytes()).hexdigest() == meta.sha256
    assert sif.stat().st_size == meta.size

    again = httpx.get(f"{service.url}/v1/images/{REF}", headers={"X-Token": token})
    assert again.status_code == 307
    location = again.headers["Location"]
    assert location.startswith(service_public_prefix(service))
    assert again.headers["X-Image-Sha256"] == meta.sha256
    assert httpx.get(location).content == sif.read_bytes()
    signature = location.rsplit("X-Amz-Signature=", 1)[1][:64]
    tampered = location.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    assert httpx.get(tampered).status_code == 403

    out = subprocess.run(
        [apptainer["APPTAINER"], "exec", str(sif), "/entrypoint.sh", "hello"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "entrypoint: hello"
    assert service.metric("flashlink_images_builds_total", result="success") == 1
    assert service.metric("flashlink_images_hits_total") >= 2


def service_public_prefix(service: ServeProcess) -> str:
    config = service.config.read_text()
    return config.split('public_endpoint_url = "', 1)[1].split('"', 1)[0] + "/"


@pytest.mark.s3
def test_fifty_concurrent_requests_and_a_second_replica_cause_one_build(
    start_service: StartService,
) -> None:
    replicas = [start_service(), start_service()]  # same bucket, two processes
    token = _token(replicas[0])

    async def storm() -> list[int]:
        async with httpx.AsyncClient(headers={"X-Token": token}, timeout=30) as client:
            answers = await asyncio.gather(
                *(client.get(f"{replicas[i % 2].url}/v1/images/{REF}") for i in range(50))
            )
        return [a.status_code for a in answers]

    statuses = asyncio.run(storm())
    assert set(statuses) <= {202, 307}, statuses
    assert statuses.count(202) >= 1
    with ImagesClient(replicas[1].url, token=token) as client:
        meta = client.meta(REF, wait=60)
    with ImagesClient(replicas[0].url, token=token) as client:
        assert client.meta(REF, wait=60) == meta
    total = sum(r.metric("flashlink_images_builds_total", result="success") for r in replicas)
    assert total == 1


@pytest.mark.s3
def test_bad_tokens_are_refused(start_service: StartService) -> None:
    service = start_service()
    url = f"{service.url}/v1/images/{REF}"
    token = _token(service, ttl=1)
    assert httpx.get(url).status_code == 401
    assert "missing token" in httpx.get(url).json()["message"]
    assert httpx.get(url, headers={"X-Token": "garbage"}).status_code == 401
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert httpx.get(url, headers={"X-Token": tampered}).status_code == 401
    # a client token cannot mint tokens
    minted = httpx.post(f"{service.url}/v1/tokens", headers={"X-Token": token}, json={})
    assert minted.status_code == 401
    assert httpx.get(url, headers={"X-Token": token}).status_code in (202, 307)
    time.sleep(2.1)  # exp has one-second granularity
    expired = httpx.get(url, headers={"X-Token": token})
    assert expired.status_code == 401
    assert "expired" in expired.json()["message"]
    assert service.metric("flashlink_images_auth_failures_total") == 6


@pytest.mark.s3
def test_a_restart_keeps_the_cache(start_service: StartService) -> None:
    service = start_service()
    token = _token(service)
    with ImagesClient(service.url, token=token) as client:
        meta = client.meta(REF, wait=60)
    service.stop()
    restarted = start_service()
    answer = httpx.get(f"{restarted.url}/v1/images/{REF}", headers={"X-Token": token})
    assert answer.status_code == 307  # the old token still works: same master token
    assert answer.headers["X-Image-Sha256"] == meta.sha256
    assert restarted.metric("flashlink_images_builds_total", result="success") == 0


def test_the_directory_store_streams_the_sif_and_answers_errors(
    start_service: StartService, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not an archive")
    rules = {"test.local/*": f"dir:{tmp_path / 'rootfs'}", "bad.local/*": f"oci-archive:{broken}"}
    service = start_service("directory", rules=rules, failure_ttl=60)
    token = _token(service)
    headers = {"X-Token": token}
    with ImagesClient(service.url, token=token) as client:
        meta = client.meta(REF, wait=60)
        answer = httpx.get(f"{service.url}/v1/images/{REF}", headers=headers)
        assert answer.status_code == 200
        assert answer.headers["X-Image-Sha256"] == meta.sha256
        assert hashlib.sha256(answer.content).hexdigest() == meta.sha256
        assert service.metric("flashlink_images_served_bytes_total", via="stream") == meta.size

        invalid = httpx.get(f"{service.url}/v1/images/test.local/Bad:1", headers=headers)
        assert invalid.status_code == 400
        assert "repository component 'Bad'" in invalid.json()["message"]
        unknown = httpx.get(f"{service.url}/v1/images/busybox:1.36", headers=headers)
        assert unknown.status_code == 404
        assert "no source for docker.io/library/busybox:1.36" in unknown.json()["message"]

        with pytest.raises(ImageBuildFailedError, match="apptainer build of oci-archive:"):
            client.meta("bad.local/img:1", wait=60)
        failed = httpx.get(f"{service.url}/v1/images/bad.local/img:1", headers=headers)
        assert failed.status_code == 502
        assert failed.json()["state"] == "failed"
        with (
            ImagesClient(service.url, token="nope") as stranger,
            pytest.raises(ServiceError, match="HTTP 401"),
        ):
            stranger.meta(REF)
    health = httpx.get(f"{service.url}/healthz").json()
    assert health["status"] == "ok"
    assert health["store"].startswith("directory ")


@pytest.mark.s3
def test_many_jobs_on_one_node_download_once(start_service: StartService, tmp_path: Path) -> None:
    service = start_service()
    token = _token(service)
    node_cache = tmp_path / "node-cache"

    def job(i: int) -> Path:
        del i
        with ImagesClient(service.url, token=token) as client:
            return client.fetch_cached(REF, node_cache, wait=60)

    with ThreadPoolExecutor(20) as pool:
        paths = set(pool.map(job, range(40)))
    assert len(paths) == 1
    (path,) = paths
    assert path.name == hashlib.sha256(path.read_bytes()).hexdigest() + ".sif"
    assert [p.name for p in node_cache.iterdir() if not p.name.startswith(".")] == [path.name]
    # one image download (the 307), forty metadata checks
    assert service.metric("flashlink_images_request_seconds_count", status="307") == 1
