"""Columnar files at local paths or fsspec URLs (``s3://bucket/key`` needs ``s3fs``).

S3 settings come from the standard AWS variables that botocore (under s3fs) reads:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` (MinIO, Ceph, SeaweedFS),
``AWS_DEFAULT_REGION``; a production passes them to its jobs as a Kubernetes Secret.

Writers that need a seekable local file or a directory (ROOT via uproot, HepMC3, the HTML
report, a model set) go through :func:`local_input` and :func:`staged_output`, which copy
between a URL and a local temporary place; plain paths pass through untouched.

Tables are dicts of equal-length 1-D numpy arrays. A writer appends one Parquet row group per
chunk, so a reader streams a file chunk by chunk and memory stays bounded by the chunk size.
:func:`iter_events` never splits an event across chunks, whatever row groups the file has.
"""

from __future__ import annotations

__all__ = [
    "ParquetSink",
    "is_url",
    "iter_events",
    "iter_tables",
    "local_input",
    "open_url",
    "read_metadata",
    "staged_output",
]

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import fsspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from flashlink.sim.errors import EventFormatError, MissingDependencyError, StorageError
from flashlink.sim.generation.events import COLUMNS, EventChunk

Table = dict[str, npt.NDArray[Any]]


def is_url(location: str) -> bool:
    """True for an fsspec URL (``s3://...``), False for a local path."""
    return "://" in location


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise MissingDependencyError(
            f"cannot use {url!r}: {exc}; for s3:// URLs install s3fs (pip install 'flashlink[s3]')"
        ) from exc
    except ValueError as exc:
        raise StorageError(f"{url!r} is not a usable URL: {exc}") from exc
    return fs, str(path)


@contextlib.contextmanager
def local_input(location: str) -> Iterator[str]:
    """A local path with the contents of ``location`` (a file or a directory), for readers
    that need one; a URL is downloaded to a temporary place removed afterwards."""
    if not is_url(location):
        yield location
        return
    fs, path = _filesystem(location)
    with tempfile.TemporaryDirectory(prefix="flashlink-in-") as tmp:
        target = Path(tmp) / (Path(path.rstrip("/")).name or "input")
        try:
            if fs.isdir(path):
                fs.get(path.rstrip("/") + "/", str(target), recursive=True)
            else:
                fs.get(path, str(target))
        except FileNotFoundError as exc:
            raise StorageError(f"cannot read {location!r}: it does not exist") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {location!r}: {exc}") from exc
        if not target.exists():
            raise StorageError(f"cannot read {location!r}: it does not exist (or is empty)")
        yield str(target)


@contextlib.contextmanager
def staged_output(location: str, *, directory: bool) -> Iterator[str]:
    """A local path to write ``location`` at: itself for a path, else a temporary file or
    directory uploaded to the URL when the block ends without an error (nothing is uploaded
    after a failure, so a reader never sees half an output)."""
    if not is_url(location):
        yield location
        return
    fs, path = _filesystem(location)
    tmp = tempfile.mkdtemp(prefix="flashlink-out-")
    try:
        local = Path(tmp) / (Path(path.rstrip("/")).name or "output")
        if directory:
            local.mkdir()
        yield str(local)
        try:
            if directory:
                for item in sorted(p for p in local.rglob("*") if p.is_file()):
                    fs.put_file(str(item), f"{path.rstrip('/')}/{item.relative_to(local)}")
            elif local.exists():
                fs.put_file(str(local), path)
        except OSError as exc:
            raise StorageError(f"cannot write {location!r}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_url(url: str, mode: str) -> IO[bytes]:
    """Open a local path or fsspec URL for binary reading or writing; errors name the URL."""
    try:
        if "://" not in url and "w" in mode:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
        handle: IO[bytes] = fsspec.open(url, mode).open()
    except ImportError as exc:
        raise MissingDependencyError(
            f"cannot open {url!r}: {exc}; for s3:// URLs install s3fs (pip install s3fs)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise StorageError(
            f"cannot open {url!r} for {'writing' if 'w' in mode else 'reading'}: {exc}"
        ) from exc
    return handle


class ParquetSink:
    """Append chunks of a table to one Parquet file, one row group per chunk."""

    def __init__(self, url: str, metadata: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self._metadata = {"flashlink": json.dumps(dict(metadata or {}), default=str)}
        self._handle: IO[bytes] | None = None
        self._writer: Any = None
        self.rows = 0

    def write(self, table: Mapping[str, npt.NDArray[Any]]) -> None:
        arrow = pa.table({k: np.asarray(v) for k, v in table.items()})
        if self._writer is None:
            schema = arrow.schema.with_metadata(self._metadata)
            self._handle = open_url(self.url, "wb")
            self._writer = pq.ParquetWriter(self._handle, schema, compression="zstd")
        try:
            self._writer.write_table(arrow.replace_schema_metadata(self._writer.schema.metadata))
        except (ValueError, pa.ArrowInvalid) as exc:
            raise EventFormatError(f"chunk does not match the schema of {self.url}: {exc}") from exc
        self.rows += arrow.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._handle is not None:
            self._handle.close()
        self._writer = self._handle = None

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _parquet_file(url: str) -> tuple[Any, IO[bytes]]:
    handle = open_url(url, "rb")
    try:
        return pq.ParquetFile(handle), handle
    except (pa.ArrowInvalid, OSError) as exc:
        handle.close()
        raise EventFormatError(f"{url} is not a Parquet file: {exc}") from exc


def read_metadata(url: str) -> dict[str, Any]:
    """The flashlink metadata (config, seed, versions) stored in a file's schema."""
    pf, handle = _parquet_file(url)
    with handle:
        raw = (pf.schema_arrow.metadata or {}).get(b"flashlink", b"{}")
    value: dict[str, Any] = json.loads(raw)
    return value


def iter_tables(
    url: str, columns: list[str] | None = None, batch_rows: int = 200_000
) -> Iterator[Table]:
    """Stream a Parquet file as tables of at most ``batch_rows`` rows."""
    pf, handle = _parquet_file(url)
    with handle:
        names = set(pf.schema_arrow.names)
        missing = [c for c in columns or [] if c not in names]
        if missing:
            raise EventFormatError(f"{url} has no columns {missing}; it has {sorted(names)}")
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            yield {
                name: batch.column(name).to_numpy(zero_copy_only=False)
                for name in batch.schema.names
            }


def iter_events(url: str, chunk_events: int = 1000) -> Iterator[EventChunk]:
    """Stream an event file as chunks of at most ``chunk_events`` whole events."""
    if chunk_events < 1:
        raise StorageError(f"chunk_events must be >= 1, got {chunk_events}")
    pending: list[Table] = []
    pending_events = 0
    for table in iter_tables(url, list(COLUMNS), batch_rows=50_000):
        pending.append(table)
        # an event may continue from the previous batch: count the distinct ids of all pending
        pending_events = len(np.unique(np.concatenate([t["event_id"] for t in pending])))
        while pending_events > chunk_events:
            merged = {k: np.concatenate([t[k] for t in pending]) for k in COLUMNS}
            event_ids = merged["event_id"]
            bounds = np.flatnonzero(np.r_[True, event_ids[1:] != event_ids[:-1]])
            cut = bounds[chunk_events]
            yield EventChunk.from_columns({k: v[:cut] for k, v in merged.items()})
            rest = {k: v[cut:] for k, v in merged.items()}
            pending = [rest]
            pending_events = len(np.unique(rest["event_id"]))
    if pending:
        merged = {k: np.concatenate([t[k] for t in pending]) for k in COLUMNS}
        if len(merged["event_id"]):
            yield EventChunk.from_columns(merged)
