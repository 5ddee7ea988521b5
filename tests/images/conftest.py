"""Fixtures of the image cache tests: stores over a directory and the real S3 server."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flashlink.images.builders import ApptainerBuilder
from flashlink.images.cache import CacheSettings, ImageCache
from flashlink.images.sources import SourceResolver, SourceRule
from flashlink.images.store import DirectoryStore, ObjectStore, S3Store
from images._serve import ServeProcess, write_config
from servicekit import Service

StartService = Callable[..., ServeProcess]
STORE_KINDS = ["directory", pytest.param("s3", marks=pytest.mark.s3)]


def new_bucket_name() -> str:
    return f"images-{time.monotonic_ns()}"


def s3_store(s3: Service, bucket: str, **overrides: object) -> S3Store:
    kwargs: dict[str, object] = {
        "bucket": bucket,
        "prefix": "cache",
        "endpoint_url": s3["S3_ENDPOINT"],
        "region": s3["S3_REGION"],
        "access_key": s3["S3_ACCESS_KEY"],
        "secret_key": s3["S3_SECRET_KEY"],
        "create_bucket": True,
    }
    kwargs.update(overrides)
    return S3Store(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], ObjectStore]:
    """``make_store(kind)``: a fresh store; two calls with one kind share the same storage."""
    bucket = new_bucket_name()

    def make(kind: str) -> ObjectStore:
        if kind == "directory":
            return DirectoryStore(tmp_path / "store")
        s3: Service = request.getfixturevalue("s3")
        return s3_store(s3, bucket)

    return make


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, make_store: Callable[[str], ObjectStore]) -> ObjectStore:
    kind: str = request.param
    return make_store(kind)


def builds(cache: ImageCache, result: str = "success") -> float:
    """How many builds of ``result`` this cache ran (from its Prometheus registry)."""
    value = cache.metrics.registry.get_sample_value(
        "flashlink_images_builds_total", {"result": result}
    )
    return value or 0.0


@pytest.fixture
def rootfs(apptainer: Service, tmp_path: Path) -> Path:
    """A private copy of the busybox test rootfs: tests change it to move a "tag"."""
    target = tmp_path / "rootfs"
    shutil.copytree(apptainer["TEST_IMAGE_DIR"], target, symlinks=True)
    return target


@pytest.fixture
def make_cache(apptainer: Service, tmp_path: Path) -> Iterator[Callable[..., ImageCache]]:
    """``make_cache(store, rules={pattern: source}, podman=..., **CacheSettings)``."""
    made: list[ImageCache] = []

    def make(
        store: ObjectStore,
        rules: dict[str, str] | None = None,
        podman: str = "podman",
        **settings: Any,
    ) -> ImageCache:
        resolver = SourceResolver(
            [SourceRule(k, v) for k, v in (rules or {}).items()],
            allow_registry=False,
            podman=[podman],
            digest_ttl=settings.pop("digest_ttl", 0.0),
        )
        builder = ApptainerBuilder(apptainer=[apptainer["APPTAINER"]], podman=[podman])
        settings.setdefault("workdir", tmp_path / "work")
        settings.setdefault("retry_after", 1)
        cache = ImageCache(store, builder, resolver, CacheSettings(**settings))
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def start_service(
    request: pytest.FixtureRequest, apptainer: Service, tmp_path: Path, rootfs: Path
) -> Iterator[StartService]:
    """``start_service(store="s3"|"directory", **build)``: a running service; stopped at the end.

    Two calls with the same ``name`` share the config (a restart, or a second replica)."""
    started: list[ServeProcess] = []
    bucket = new_bucket_name()

    def start(store: str = "s3", name: str = "svc", rules: dict[str, str] | None = None,
              **build: object) -> ServeProcess:  # fmt: skip
        if store == "s3":
            s3: Service = request.getfixturevalue("s3")
            store_section: dict[str, object] = {
                "kind": "s3",
                "bucket": bucket,
                "endpoint_url": s3["S3_ENDPOINT"],
                # what jobs reach; signed for "localhost", so a URL for another host fails
                "public_endpoint_url": s3["S3_ENDPOINT"].replace("127.0.0.1", "localhost"),
                "region": s3["S3_REGION"],
                "access_key": s3["S3_ACCESS_KEY"],
                "secret_key": s3["S3_SECRET_KEY"],
                "create_bucket": True,
            }
        else:
            store_section = {"kind": "directory", "path": tmp_path / "store"}
        config = write_config(
            tmp_path / f"{name}.toml",
            {
                "store": store_section,
                "build": {
                    "apptainer": apptainer["APPTAINER"],
                    "workdir": tmp_path / "work",
                    "retry_after": 1,
                    "allow_registry": False,
                    "digest_ttl": 0,
                    **build,
                },
            },
            rules if rules is not None else {"test.local/*": f"dir:{rootfs}"},
        )
        service = ServeProcess(config, tmp_path / f"{name}.log").start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
