"""The ``ObjectStore`` protocol: the few operations the image cache needs from its storage.

Two implementations meet the same contract (tests run it over both): a local directory (the
embedded default) and S3 (any endpoint). The cache relies on four properties, all of which hold
for S3 since 2024 and are checked against SeaweedFS by the tests:

1. **atomic objects**: a PUT (or a completed multipart upload) becomes visible whole or not at
   all, so readers never see a partial SIF;
2. **strong read-after-write consistency**: after a PUT or DELETE returns, every reader sees it;
3. **create-only writes** (``If-None-Match: *``) fail with 412 when the key exists: two
   replicas racing for a build lease cannot both win;
4. **compare-and-swap** (``If-Match: <etag>`` on PUT and DELETE): a lease is renewed, taken over
   or released only by whoever holds the version read last.
"""

from __future__ import annotations

__all__ = ["Location", "ObjectInfo", "ObjectStore"]

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

# Where a reader gets an object's bytes: a URL it may fetch itself, or a local file to stream.
Location = str | Path


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or HEAD tells about one object."""

    key: str
    size: int
    etag: str  # an opaque version token, for if_match
    modified: float  # seconds since the epoch


@runtime_checkable
class ObjectStore(Protocol):
    """Keys are ``/``-separated relative paths of ``[A-Za-z0-9._:@-]`` components."""

    def describe(self) -> str:
        """A one-line description for logs and /healthz (no secrets)."""
        ...

    def check(self) -> None:
        """Raise :class:`StoreError` when the store cannot be used (bucket missing, denied)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or None when there is none."""
        ...

    def get_bytes(self, key: str) -> tuple[bytes, ObjectInfo]:
        """A small object's content and info; :class:`ObjectNotFoundError` when missing."""
        ...

    def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> ObjectInfo | None:
        """Write a small object atomically; None when the precondition failed.

        ``if_none_match``: only create (fails if the key exists). ``if_match``: only replace the
        version with this etag (fails if it changed or vanished).
        """
        ...

    def put_file(self, key: str, path: Path, *, sha256: str) -> ObjectInfo:
        """Upload a (large) file atomically, streaming it; the store verifies it in transit."""
        ...

    def delete(self, key: str, *, if_match: str | None = None) -> bool:
        """Delete; False when ``if_match`` was given and the version differs (or is gone)."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``."""
        ...

    def locate(self, key: str, expires_seconds: int) -> Location:
        """Where a client reads the object: a presigned URL, or a local file to stream."""
        ...
