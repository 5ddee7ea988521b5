"""Fixtures of the image cache tests: stores over a directory and the real S3 server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flashlink.images.store import DirectoryStore, ObjectStore, S3Store
from servicekit import Service

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
