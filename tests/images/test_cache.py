"""The cache over real stores and real Apptainer builds: one build per entry, whatever happens."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flashlink.images.app import create_app
from flashlink.images.cache import Failed, ImageCache, Lookup, Pending, Ready
from flashlink.images.errors import BusyError, InvalidReferenceError, SourceError
from flashlink.images.sources import file_sha256
from flashlink.images.store import ObjectStore
from flashlink.images.tokens import TokenAuthority
from images.conftest import STORE_KINDS, builds, new_bucket_name, s3_store
from servicekit import Service

pytestmark = pytest.mark.apptainer

REF = "test.local/busybox:1"


def _ready(cache: ImageCache, reference: str = REF, timeout: float = 60) -> Ready:
    deadline = time.monotonic() + timeout
    while True:
        found = cache.lookup(reference)
        if isinstance(found, Ready):
            assert cache.wait_idle(timeout), "the build did not finish after committing"
            return found
        assert isinstance(found, Pending), found
        assert time.monotonic() < deadline, f"{reference} not built in {timeout} s"
        time.sleep(0.05)


def test_first_lookup_schedules_one_build_then_serves_it(
    store: ObjectStore, make_cache: Callable[..., ImageCache], rootfs: Path, apptainer: Service
) -> None:
    cache = make_cache(store, {"test.local/*": f"dir:{rootfs}"})
    first = cache.lookup(REF)
    assert isinstance(first, Pending)
    assert first.body.state in ("queued", "building")
    assert first.body.reference == REF
    ready = _ready(cache)
    meta = ready.meta
    assert meta.reference == REF
    assert meta.source == f"dir:{rootfs}"
    assert meta.source_digest is not None
    assert meta.source_digest.startswith("sha256:")
    assert meta.object_key.startswith(
        f"images/test.local/busybox/1/{meta.source_digest.replace(':', '-')}/"
    )
    assert builds(cache) == 1
    info = store.head(meta.object_key)
    assert info is not None
    assert info.size == meta.size
    if isinstance(ready.location, Path):  # the directory store streams its file
        assert file_sha256(ready.location) == meta.sha256
        out = subprocess.run(
            [apptainer["APPTAINER"], "exec", str(ready.location), "cat", "/.flashlink-image-id"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == (rootfs / ".flashlink-image-id").read_text().strip()
    else:
        assert "X-Amz-Signature=" in ready.location
    # a new cache on the same store (a restart) serves it without building
    restarted = make_cache(store, {"test.local/*": f"dir:{rootfs}"})
    again = restarted.lookup(REF)
    assert isinstance(again, Ready)
    assert again.meta == meta
    assert builds(restarted) == 0


def _storm(caches: list[ImageCache], n: int) -> list[Lookup]:
    barrier = threading.Barrier(n)

    def ask(i: int) -> Lookup:
        barrier.wait()
        return caches[i % len(caches)].lookup(REF)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(ask, range(n)))


def test_fifty_concurrent_lookups_build_once(
    store: ObjectStore, make_cache: Callable[..., ImageCache], rootfs: Path
) -> None:
    cache = make_cache(store, {"test.local/*": f"dir:{rootfs}"}, workers=4)
    answers = _storm([cache], 50)
    assert all(isinstance(a, Pending | Ready) for a in answers)
    assert cache.wait_idle(60)
    _ready(cache)
    assert builds(cache) == 1
    assert len([o for o in store.list("images/") if o.key.endswith(".sif")]) == 1


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_two_replicas_sharing_a_store_build_once(
    make_store: Callable[[str], ObjectStore],
    make_cache: Callable[..., ImageCache],
    rootfs: Path,
    kind: str,
) -> None:
    rules = {"test.local/*": f"dir:{rootfs}"}
    # separate store objects (separate clients/connection pools), one bucket/directory
    replicas = [make_cache(make_store(kind), rules, owner=f"replica-{i}") for i in range(2)]
    answers = _storm(replicas, 40)
    owners = {a.body.owner for a in answers if isinstance(a, Pending)}
    assert owners <= {"replica-0", "replica-1"}
    for replica in replicas:
        assert replica.wait_idle(60)
    # the replica that lost the lease may still see it held for a moment
    metas = [_ready(r).meta for r in replicas]
    assert metas[0] == metas[1]
    assert builds(replicas[0]) + builds(replicas[1]) == 1


def test_a_moved_tag_rebuilds_and_an_unchanged_one_does_not(
    store: ObjectStore, make_cache: Callable[..., ImageCache], rootfs: Path
) -> None:
    cache = make_cache(store, {"test.local/*": f"dir:{rootfs}"})
    old = _ready(cache).meta
    assert isinstance(cache.lookup(REF), Ready)
    assert builds(cache) == 1
    (rootfs / "etc" / "release").write_text("2\n")  # the "tag" now points at new content
    moved = cache.lookup(REF)
    assert isinstance(moved, Pending)
    new = _ready(cache).meta
    assert new.source_digest != old.source_digest
    assert new.sha256 != old.sha256
    assert builds(cache) == 2


def test_a_failed_build_is_reported_then_retried_after_the_backoff(
    store: ObjectStore, make_cache: Callable[..., ImageCache], tmp_path: Path, rootfs: Path
) -> None:
    archive = tmp_path / "broken.tar"
    archive.write_bytes(b"this is not an OCI archive")
    cache = make_cache(store, {"test.local/*": f"oci-archive:{archive}"}, failure_ttl=1.5)
    assert isinstance(cache.lookup(REF), Pending)
    assert cache.wait_idle(60)
    failed = cache.lookup(REF)
    assert isinstance(failed, Failed)
    assert "apptainer build of oci-archive:" in failed.body.message
    assert "failed (exit" in failed.body.message
    assert failed.body.retry_at == pytest.approx(failed.body.failed_at + 1.5)
    assert isinstance(cache.lookup(REF), Failed)  # cached: no new build inside the back-off
    assert builds(cache, "failure") == 1
    time.sleep(max(0.0, failed.body.retry_at - time.time()) + 0.1)
    assert isinstance(cache.lookup(REF), Pending)  # retried
    assert cache.wait_idle(60)
    assert isinstance(cache.lookup(REF), Failed)
    assert builds(cache, "failure") == 2


@pytest.mark.podman
def test_podman_images_and_oci_archives_build(
    store: ObjectStore, make_cache: Callable[..., ImageCache], podman: Service, tmp_path: Path
) -> None:
    image = podman["TEST_IMAGE_PODMAN"]
    archive = tmp_path / "image.tar"
    subprocess.run(
        [podman["PODMAN"], "save", "--format", "oci-archive", "-o", str(archive), image],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    rules = {"localhost/*": "podman:{reference}", "archive.local/*": f"oci-archive:{archive}"}
    cache = make_cache(store, rules, podman=podman["PODMAN"], workers=2)
    from_podman = _ready(cache, image).meta
    assert from_podman.source == f"podman:{image}"
    assert from_podman.source_digest is not None
    from_archive = _ready(cache, "archive.local/img:1").meta
    assert from_archive.source_digest == "sha256:" + file_sha256(archive)
    assert builds(cache) == 2


def test_bad_references_sources_and_a_full_queue_are_refused(
    make_store: Callable[[str], ObjectStore], make_cache: Callable[..., ImageCache], rootfs: Path
) -> None:
    cache = make_cache(
        make_store("directory"), {"test.local/*": f"dir:{rootfs}"}, max_pending=1, workers=1
    )
    with pytest.raises(InvalidReferenceError, match="Bad"):
        cache.lookup("test.local/Bad:1")
    with pytest.raises(SourceError, match=r"no source for docker\.io/library/busybox:latest"):
        cache.lookup("busybox")
    assert isinstance(cache.lookup(REF), Pending)
    with pytest.raises(BusyError, match="max_pending = 1"):
        cache.lookup("test.local/other:2")
    assert cache.wait_idle(60)


def test_eviction_by_size_and_age_removes_metadata_first(
    store: ObjectStore, make_cache: Callable[..., ImageCache], rootfs: Path
) -> None:
    cache = make_cache(store, {"test.local/*": f"dir:{rootfs}"}, meta_ttl=0)
    first = _ready(cache, "test.local/a:1").meta
    second = _ready(cache, "test.local/b:1").meta
    assert cache.evict(max_total_bytes=first.size + second.size) == []
    removed = cache.evict(max_total_bytes=second.size)  # the older one goes
    assert removed == [first.object_key.rsplit("/", 1)[0] + "/meta.json", first.object_key]
    assert store.head(first.object_key) is None
    assert isinstance(cache.lookup("test.local/b:1"), Ready)
    assert isinstance(cache.lookup("test.local/a:1"), Pending)  # rebuilt on demand
    rebuilt = _ready(cache, "test.local/a:1").meta
    assert rebuilt.object_key != first.object_key
    time.sleep(0.05)
    removed = cache.evict(max_age=0.01)
    assert {k for k in removed if k.endswith(".sif")} == {second.object_key, rebuilt.object_key}
    assert not [o for o in store.list("images/") if o.key.endswith((".sif", "meta.json"))]


@pytest.mark.s3
def test_a_store_that_refuses_writes_fails_builds_with_its_message(
    s3: Service, make_cache: Callable[..., ImageCache], rootfs: Path
) -> None:
    bucket = new_bucket_name()
    s3_store(s3, bucket)  # created with the writer's credentials
    reader = s3_store(
        s3,
        bucket,
        access_key=s3["S3_READONLY_ACCESS_KEY"],
        secret_key=s3["S3_READONLY_SECRET_KEY"],
        create_bucket=False,
    )
    cache = make_cache(reader, {"test.local/*": f"dir:{rootfs}"}, failure_ttl=60)
    assert isinstance(cache.lookup(REF), Pending)
    assert cache.wait_idle(60)
    failed = cache.lookup(REF)
    assert isinstance(failed, Failed)
    assert "AccessDenied" in failed.body.message
    assert builds(cache) == 0


def test_the_service_evicts_in_the_background(
    make_store: Callable[[str], ObjectStore], make_cache: Callable[..., ImageCache], rootfs: Path
) -> None:
    store = make_store("directory")
    cache = make_cache(store, {"test.local/*": f"dir:{rootfs}"}, meta_ttl=0)
    meta = _ready(cache).meta
    app = create_app(cache, TokenAuthority("m" * 32), eviction=(0.01, None, 0.1))

    async def serve_a_while() -> None:
        # the app's lifespan starts the eviction loop and stops it on exit
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 10
            while store.head(meta.object_key) is not None:
                assert time.monotonic() < deadline, "not evicted within 10 s"
                await asyncio.sleep(0.05)

    asyncio.run(serve_a_while())
    assert cache.metrics.registry.get_sample_value("flashlink_images_evicted_total") == 2
