"""The image cache: reference -> cached SIF, or one build scheduled for it.

Objects, all under ``images/<registry>/<repository>/<tag or @digest>/<source digest>/`` (the
*entry*; ``unresolved`` when the source digest is unknown), so metadata sits next to the SIF and
any number of replicas can share one bucket::

    <build id>.sif   the SIF, uploaded whole (a PUT or a completed multipart upload is atomic)
    meta.json        written after the SIF with If-None-Match: its presence means "complete"
    lease.json       the build lease (flashlink.images.lease): one builder per entry
    failed.json      the last failure, served as 502 until its retry_at, then retried

Exactly one build per entry: inside a replica, a dict of in-flight entries under a lock; across
replicas, the lease (create-only PUT). The builder re-checks ``meta.json`` after taking the
lease, so a replica that arrives just after another one finished does not build again.
"""

from __future__ import annotations

__all__ = ["CacheSettings", "Failed", "ImageCache", "Lookup", "Pending", "Ready"]

import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from flashlink.images.builders import Builder
from flashlink.images.errors import (
    BuildError,
    BusyError,
    ImagesError,
    ObjectNotFoundError,
    StoreError,
)
from flashlink.images.lease import Lease
from flashlink.images.metrics import Metrics
from flashlink.images.models import BuildFailure, BuildPending, ImageMeta
from flashlink.images.reference import ImageReference
from flashlink.images.sources import Source, SourceResolver, file_sha256
from flashlink.images.store import Location, ObjectInfo, ObjectStore

_log = logging.getLogger(__name__)
PREFIX = "images/"
# A SIF starts with a 32-byte launch script, then the magic (sylabs/sif, pkg/sif/sif.go).
_SIF_MAGIC_OFFSET = 32
_SIF_MAGIC = b"SIF_MAGIC"


@dataclass(frozen=True)
class CacheSettings:
    """Behaviour of the cache (the service's [build] and [store] settings feed it)."""

    workers: int = 2
    max_pending: int = 100
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    lease_ttl: float = 60.0
    failure_ttl: float = 300.0
    presign_expiry: int = 600
    meta_ttl: float = 30.0
    retry_after: int = 2
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    )


@dataclass(frozen=True)
class Ready:
    meta: ImageMeta
    location: Location


@dataclass(frozen=True)
class Pending:
    body: BuildPending


@dataclass(frozen=True)
class Failed:
    body: BuildFailure


Lookup = Ready | Pending | Failed


@dataclass(frozen=True)
class _Entry:
    ref: ImageReference
    source: Source
    digest: str | None

    @property
    def base(self) -> str:
        digest = self.digest.replace(":", "-") if self.digest else "unresolved"
        return f"{PREFIX}{self.ref.storage_path}/{digest}"

    @property
    def meta_key(self) -> str:
        return self.base + "/meta.json"

    @property
    def lease_key(self) -> str:
        return self.base + "/lease.json"

    @property
    def failed_key(self) -> str:
        return self.base + "/failed.json"


@dataclass
class _Task:
    state: str
    since: float


class ImageCache:
    """Answers lookups and runs builds on a bounded pool of worker threads."""

    def __init__(
        self,
        store: ObjectStore,
        builder: Builder,
        resolver: SourceResolver,
        settings: CacheSettings | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.builder = builder
        self.resolver = resolver
        self.settings = settings or CacheSettings()
        self.metrics = metrics or Metrics()
        self.settings.workdir.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="image-build")
        self._lock = threading.Lock()
        self._inflight: dict[str, _Task] = {}
        self._meta: dict[str, tuple[float, ImageMeta]] = {}
        # failures also kept here: a store that refuses writes cannot record them
        self._failures: dict[str, BuildFailure] = {}

    @property
    def owner(self) -> str:
        return self.settings.owner

    def in_flight(self) -> int:
        with self._lock:
            return len(self._inflight)

    # -- lookups ---------------------------------------------------------------------------

    def lookup(self, reference: str) -> Lookup:
        """Ready (with where to read it), Pending (a build is queued/running) or Failed.

        Raises InvalidReferenceError, SourceError (no source for it), BusyError.
        """
        ref = ImageReference.parse(reference)
        source = self.resolver.source_for(ref)
        entry = _Entry(ref, source, self.resolver.digest(ref, source))
        meta = self._read_meta(entry.meta_key)
        if meta is not None:
            self.metrics.hits.inc()
            return Ready(meta, self.store.locate(meta.object_key, self.settings.presign_expiry))
        self.metrics.misses.inc()
        now = time.time()
        failure = self._read_failure(entry)
        if failure is not None and failure.retry_at > now:
            self.metrics.failures_served.inc()
            return Failed(failure)
        with self._lock:
            task = self._inflight.get(entry.base)
        if task is None:
            held = Lease.read(self.store, entry.lease_key)
            if held is not None and held[0].expires_at > now and held[0].owner != self.owner:
                return self._pending(ref, "building", held[0].acquired_at, held[0].owner)
            task = self._submit(entry)
        return self._pending(ref, task.state, task.since, self.owner)

    def lookup_cached(self, reference: str) -> Ready | None:
        """The answer for an entry this replica has fresh in memory, else None; no I/O.

        The service answers hits from the event loop with this (no thread hop), and sends
        everything else to :meth:`lookup` in a worker thread.
        """
        try:
            ref = ImageReference.parse(reference)
            source = self.resolver.source_for(ref)
        except ImagesError:
            return None
        found, digest = self.resolver.cached_digest(ref, source)
        if not found:
            return None
        key = _Entry(ref, source, digest).meta_key
        with self._lock:
            cached = self._meta.get(key)
        if cached is None or time.monotonic() - cached[0] >= self.settings.meta_ttl:
            return None
        meta = cached[1]
        self.metrics.hits.inc()
        return Ready(meta, self.store.locate(meta.object_key, self.settings.presign_expiry))

    def _pending(self, ref: ImageReference, state: str, since: float, owner: str) -> Pending:
        body = BuildPending(
            state="building" if state == "building" else "queued",
            reference=str(ref),
            since=since,
            owner=owner,
            retry_after=self.settings.retry_after,
        )
        return Pending(body)

    def _read_meta(self, key: str) -> ImageMeta | None:
        now = time.monotonic()
        with self._lock:
            cached = self._meta.get(key)
        if cached is not None and now - cached[0] < self.settings.meta_ttl:
            return cached[1]
        try:
            data, _ = self.store.get_bytes(key)
        except ObjectNotFoundError:
            return None
        try:
            meta = ImageMeta.model_validate_json(data)
        except ValidationError as exc:
            raise StoreError(
                f"{key} in {self.store.describe()} is not valid metadata: {exc}"
            ) from exc
        with self._lock:
            if len(self._meta) > 10_000:  # bound memory; a re-read costs one GET
                self._meta.clear()
            self._meta[key] = (now, meta)
        return meta

    def _read_failure(self, entry: _Entry) -> BuildFailure | None:
        with self._lock:
            local = self._failures.get(entry.base)
        try:
            data, _ = self.store.get_bytes(entry.failed_key)
            stored = BuildFailure.model_validate_json(data)
        except (ObjectNotFoundError, ValidationError):
            stored = None
        found = [f for f in (local, stored) if f is not None]
        return max(found, key=lambda f: f.retry_at) if found else None

    # -- builds ----------------------------------------------------------------------------

    def _submit(self, entry: _Entry) -> _Task:
        with self._lock:
            task = self._inflight.get(entry.base)
            if task is not None:
                return task
            if len(self._inflight) >= self.settings.max_pending:
                raise BusyError(
                    f"{len(self._inflight)} builds are already queued or running "
                    f"(build.max_pending = {self.settings.max_pending}); retry later"
                )
            task = _Task(state="queued", since=time.time())
            self._inflight[entry.base] = task
            self.metrics.builds_in_flight.set(len(self._inflight))
        self._pool.submit(self._run, entry, task)
        return task

    def _run(self, entry: _Entry, task: _Task) -> None:
        try:
            try:
                lease = Lease.acquire(
                    self.store, entry.lease_key, owner=self.owner, ttl=self.settings.lease_ttl
                )
            except StoreError as exc:  # e.g. a store that refuses conditional writes
                self._record_failure(entry, exc)
                return
            if lease is None:
                return  # another replica builds it; lookups report its lease
            with lease:
                if self.store.head(entry.meta_key) is not None:
                    return  # finished by another replica just before we took the lease
                task.state, task.since = "building", time.time()
                self._build(entry)
        except Exception:  # a worker thread must not die silently; lookups retry
            _log.exception("build of %s failed unexpectedly", entry.ref)
        finally:
            with self._lock:
                self._inflight.pop(entry.base, None)
                self.metrics.builds_in_flight.set(len(self._inflight))

    def _record_failure(self, entry: _Entry, exc: Exception) -> None:
        self.metrics.builds.labels("failure").inc()
        now = time.time()
        failure = BuildFailure(
            reference=str(entry.ref),
            message=str(exc),
            failed_at=now,
            retry_at=now + self.settings.failure_ttl,
        )
        _log.warning("build of %s failed: %s", entry.ref, exc)
        with self._lock:
            self._failures[entry.base] = failure
        try:
            self.store.put_bytes(entry.failed_key, failure.model_dump_json().encode())
        except StoreError as store_exc:
            _log.error("could not record the failure of %s: %s", entry.ref, store_exc)

    def _build(self, entry: _Entry) -> None:
        t0 = time.monotonic()
        build_id = f"{int(time.time())}-{secrets.token_hex(4)}"
        workdir = Path(tempfile.mkdtemp(prefix="build-", dir=self.settings.workdir))
        try:
            output = workdir / "image.sif"
            self.builder.build(entry.source, output, workdir)
            _check_sif(output, entry.source)
            sha256 = file_sha256(output)
            sif_key = f"{entry.base}/{build_id}.sif"
            info = self.store.put_file(sif_key, output, sha256=sha256)
            meta = ImageMeta(
                reference=str(entry.ref),
                source=entry.source.uri,
                source_digest=entry.digest,
                sha256=sha256,
                size=info.size,
                built_at=time.time(),
                build_seconds=round(time.monotonic() - t0, 3),
                builder=self.builder.name,
                object_key=sif_key,
            )
            committed = self.store.put_bytes(
                entry.meta_key, meta.model_dump_json().encode(), if_none_match=True
            )
            # counted before any further I/O: whoever sees meta.json then sees the build counted
            self.metrics.builds.labels("success").inc()
            self.metrics.build_seconds.observe(time.monotonic() - t0)
            if committed is None:  # our lease was lost and another build committed first
                self.store.delete(sif_key)
            self.store.delete(entry.failed_key)
            with self._lock:
                self._failures.pop(entry.base, None)
            _log.info("built %s from %s in %.1f s", entry.ref, entry.source.uri, meta.build_seconds)
        except (ImagesError, OSError) as exc:
            self._record_failure(entry, exc)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def wait_idle(self, timeout: float) -> bool:
        """True when no build is queued or running (waits up to ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while self.in_flight():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- eviction --------------------------------------------------------------------------

    def evict(
        self, *, max_age: float | None = None, max_total_bytes: int | None = None
    ) -> list[str]:
        """Remove entries built more than ``max_age`` s ago, then the oldest until the total
        size is at most ``max_total_bytes``; also SIFs no metadata points to (crashed or lost
        builds) once they are older than two lease periods. Returns the removed keys.

        A presigned URL handed out before its entry was evicted then answers 404.
        """
        now = time.time()
        groups: dict[str, list[ObjectInfo]] = defaultdict(list)
        for info in self.store.list(PREFIX):
            groups[info.key.rsplit("/", 1)[0]].append(info)
        live: list[tuple[float, str, ImageMeta]] = []
        removed: list[str] = []
        for base, objects in groups.items():
            names = {o.key.rsplit("/", 1)[1]: o for o in objects}
            meta = self._read_meta(base + "/meta.json") if "meta.json" in names else None
            if meta is not None:
                live.append((meta.built_at, base, meta))
            for name, info in names.items():
                stray = name.endswith(".sif") and (meta is None or meta.object_key != info.key)
                if stray and now - info.modified > 2 * self.settings.lease_ttl:
                    self.store.delete(info.key)
                    removed.append(info.key)
        live.sort(key=lambda item: item[0])
        total = sum(meta.size for _, _, meta in live)
        for built_at, base, meta in live:
            too_old = max_age is not None and now - built_at > max_age
            too_big = max_total_bytes is not None and total > max_total_bytes
            if not (too_old or too_big):
                continue
            # metadata first: from then on nobody is sent to the SIF we delete next
            self.store.delete(base + "/meta.json")
            self.store.delete(meta.object_key)
            self.store.delete(base + "/failed.json")
            with self._lock:
                self._meta.pop(base + "/meta.json", None)
            total -= meta.size
            removed += [base + "/meta.json", meta.object_key]
        self.metrics.evicted.inc(len(removed))
        return removed


def _check_sif(path: Path, source: Source) -> None:
    with path.open("rb") as fh:
        fh.seek(_SIF_MAGIC_OFFSET)
        magic = fh.read(len(_SIF_MAGIC))
    if magic != _SIF_MAGIC:
        raise BuildError(
            f"the build of {source.uri} produced {path.name} without the SIF magic at byte "
            f"{_SIF_MAGIC_OFFSET}: not a SIF"
        )
