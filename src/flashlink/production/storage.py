"""Where a production's outputs and its state live, and how S3 credentials reach its jobs.

The **outputs** (chunks, merged ntuple, report, provenance) go to the request's ``output``: a
directory or ``s3://bucket/prefix``. The **state** (the journal, ``done.json`` markers, the
containers' logs, the embedded plugin's database) lives in a local directory, the same one as
the outputs for a directory output (the layout of :mod:`flashlink.production.journal`), and for
an S3 output in ``--state-dir`` or by default
``$XDG_STATE_HOME/flashlink/productions/<name>-<hash of the output URL>``: an object store has
no atomic append or rename, and the journal is fsynced line by line so that a kill loses
nothing.

Jobs of an S3 production get the endpoint and the credentials the Kubernetes way: a Secret
(:func:`s3_secret`) built from the driver's own AWS variables and sent with each ``/create``
(the ``secrets`` of every container entry, as interLink attaches them), which the Pod's
containers read with ``envFrom.secretRef``. The values are never in the Pod, the journal, the
logs or a command line.
"""

from __future__ import annotations

__all__ = [
    "S3_ENV",
    "Outputs",
    "is_s3",
    "s3_secret",
    "s3_secret_name",
    "state_root",
]

import base64
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flashlink.production.errors import ProductionError
from flashlink.production.request import ProductionRequest

S3_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)
"""What botocore (under s3fs) reads, in the driver and in the jobs alike."""
_REQUIRED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def is_s3(request: ProductionRequest) -> bool:
    return request.output.startswith("s3://")


def state_root(request: ProductionRequest, state_dir: Path | None = None) -> Path:
    """The local directory of the production's journal, markers and logs."""
    if state_dir is not None:
        return state_dir.expanduser().resolve()
    if not is_s3(request):
        return Path(request.output)
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(request.output.encode()).hexdigest()[:12]
    return base / "flashlink" / "productions" / f"{request.name}-{digest}"


def s3_secret_name(request: ProductionRequest) -> str:
    """The Secret the Pods of an S3 production read their AWS variables from."""
    return f"{request.name}-s3"


def s3_secret(request: ProductionRequest, environ: Mapping[str, str]) -> dict[str, Any]:
    """The v1 Secret with the driver's AWS variables (:data:`S3_ENV`) for the jobs."""
    missing = [k for k in _REQUIRED if not environ.get(k)]
    if missing:
        raise ProductionError(
            f"output {request.output}: the jobs write to S3 with the driver's credentials, but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; export "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, for a non-AWS store, AWS_ENDPOINT_URL"
        )
    data = {k: base64.b64encode(environ[k].encode()).decode() for k in S3_ENV if environ.get(k)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": s3_secret_name(request), "namespace": "flashlink"},
        "type": "Opaque",
        "data": data,
    }


class Outputs:
    """The output location, a directory or an S3 prefix, through one small interface."""

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")
        self.remote = "://" in location
        self._fs: Any = None

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import fsspec  # noqa: PLC0415 - only when an output is read

            try:
                # no listings cache: jobs on other machines write while the driver looks
                self._fs = fsspec.filesystem(
                    self.location.split("://", 1)[0] if self.remote else "file",
                    use_listings_cache=False,
                    skip_instance_cache=True,
                )
            except ImportError as exc:
                raise ProductionError(
                    f"output {self.location}: {exc}; install s3fs (pip install 'flashlink[s3]')"
                ) from exc
        return self._fs

    def url(self, *parts: str) -> str:
        return "/".join([self.location, *parts])

    def _path(self, url: str) -> str:
        return url.split("://", 1)[1] if self.remote else url

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every file under ``prefix`` (a URL of :meth:`url`) by its path relative to it."""
        root = self._path(prefix).rstrip("/")
        try:
            found = self.fs.find(root, detail=True)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ProductionError(f"cannot list {prefix}: {exc}") from exc
        return {
            str(path)[len(root) + 1 :]: int(info.get("size") or 0)
            for path, info in found.items()
            if info.get("type") != "directory"
        }

    def exists(self, url: str) -> bool:
        try:
            return bool(self.fs.exists(self._path(url)))
        except OSError as exc:
            raise ProductionError(f"cannot check {url}: {exc}") from exc

    @contextmanager
    def local_copy(self, url: str) -> Iterator[Path]:
        """A local file with the contents of ``url`` (the file itself for a directory output)."""
        if not self.remote:
            yield Path(url)
            return
        with tempfile.TemporaryDirectory(prefix="flashlink-merge-") as tmp:
            target = Path(tmp) / Path(self._path(url)).name
            try:
                self.fs.get_file(self._path(url), str(target))
            except FileNotFoundError as exc:
                raise ProductionError(f"{url} is missing; re-run the production") from exc
            except OSError as exc:
                raise ProductionError(f"cannot read {url}: {exc}") from exc
            yield target

    def put(self, local: Path, url: str) -> None:
        """Store a finished local file at ``url`` (a rename for a directory output)."""
        if not self.remote:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(local), url)
            return
        try:
            self.fs.put_file(str(local), self._path(url))
        except OSError as exc:
            raise ProductionError(f"cannot write {url}: {exc}") from exc
        local.unlink()

    def size(self, url: str) -> int:
        try:
            return int(self.fs.size(self._path(url)))
        except OSError as exc:
            raise ProductionError(f"cannot read the size of {url}: {exc}") from exc
