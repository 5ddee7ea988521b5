"""A small client of the image cache service, for job wrappers, the plugin and the CLI.

::

    with ImagesClient("http://images:8080", token=client_token) as client:
        path = client.fetch_cached("ghcr.io/org/img:1.0", Path("/scratch/sif-cache"))

``fetch_cached`` is what a job on a worker node does: under an ``flock`` per reference in a
node-local (or node-shared) cache directory, ask for the image's metadata (waiting through 202
answers as ``Retry-After`` says), and download only when no file with that sha256 is there yet, so
100 jobs on one node cause one download. Downloads stream to a temporary file while hashing,
are verified against the sha256 the service advertises, and are renamed into place.

The job-script side may do the same with curl (see docs/images.md); this module needs only httpx.
"""

from __future__ import annotations

__all__ = ["ImagesClient", "IssuedToken"]

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import httpx

from flashlink.images.errors import (
    ChecksumMismatchError,
    ImageBuildFailedError,
    ImageNotReadyError,
    ServiceError,
)
from flashlink.images.models import ImageMeta

_CHUNK = 1 << 20
_MAX_POLL = 30.0


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: float
    scope: str
    subject: str


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)
    return str(body)


class ImagesClient:
    """Talks to one service at ``url``; ``token`` (a client or the master token) for reads."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"X-Token": token} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._timeout = timeout
        # made on first use: an httpx.Client loads the CA bundle (86 ms here, measured), and
        # a job whose image is already in the node cache never downloads
        self._download_client: httpx.Client | None = None

    @property
    def _download(self) -> httpx.Client:
        # presigned URLs go to the object store: no service token on those requests
        if self._download_client is None:
            self._download_client = httpx.Client(timeout=self._timeout, follow_redirects=True)
        return self._download_client

    def close(self) -> None:
        self._http.close()
        if self._download_client is not None:
            self._download_client.close()

    def __enter__(self) -> ImagesClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- tokens ------------------------------------------------------------------------------

    def mint_token(
        self, master_token: str, *, ttl_seconds: float | None = None, subject: str = "client"
    ) -> IssuedToken:
        """A client token from the service (needs the master token)."""
        body: dict[str, object] = {"subject": subject}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        response = self._request("POST", "/v1/tokens", json=body, headers={"X-Token": master_token})
        if response.status_code != 200:
            raise ServiceError(
                f"minting a token at {self.url} failed: HTTP {response.status_code}: "
                f"{_message(response)}",
                response.status_code,
            )
        data = response.json()
        return IssuedToken(data["token"], data["expires_at"], data["scope"], data["subject"])

    # -- images ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach the image service at {self.url}: {exc}") from exc

    @staticmethod
    def _path(reference: str, suffix: str = "") -> str:
        return "/v1/images/" + quote(reference, safe="/:@") + suffix

    def _check(self, reference: str, response: httpx.Response) -> None:
        status = response.status_code
        if status == 502:
            raise ImageBuildFailedError(f"building {reference} failed: {_message(response)}")
        if status >= 400:
            raise ServiceError(
                f"GET {reference} from {self.url}: HTTP {status}: {_message(response)}", status
            )

    def meta(self, reference: str, *, wait: float = 0.0) -> ImageMeta:
        """The image's metadata; waits up to ``wait`` s while it is being built."""
        deadline = time.monotonic() + wait
        while True:
            response = self._request("GET", self._path(reference, "/meta"))
            self._check(reference, response)
            if response.status_code == 200:
                return ImageMeta.model_validate(response.json())
            self._pause(reference, response, deadline)

    def _pause(self, reference: str, response: httpx.Response, deadline: float) -> None:
        if response.status_code != 202:
            raise ServiceError(
                f"GET {reference}: unexpected HTTP {response.status_code}", response.status_code
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            state = response.json().get("state", "pending")
            raise ImageNotReadyError(f"{reference} is still {state} at {self.url}")
        retry_after = float(response.headers.get("Retry-After", "1"))
        time.sleep(max(0.05, min(retry_after, remaining, _MAX_POLL)))

    def fetch(self, reference: str, dest: Path, *, wait: float = 600.0) -> ImageMeta:
        """Download the SIF to ``dest`` (atomically, verified); waits up to ``wait`` s."""
        deadline = time.monotonic() + wait
        while True:
            with self._stream(self._path(reference)) as response:
                self._check(reference, response)
                if response.status_code == 202:
                    response.read()
                    self._pause(reference, response, deadline)
                    continue
                expected = response.headers.get("X-Image-Sha256")
                if response.status_code == 307:
                    location = response.headers["Location"]
                    with self._download.stream("GET", location) as body:
                        if body.status_code != 200:
                            raise ServiceError(
                                f"downloading {reference} from the object store: HTTP "
                                f"{body.status_code}: {body.read()[:300]!r}",
                                body.status_code,
                            )
                        _save(body.iter_bytes(_CHUNK), dest, expected, reference)
                else:
                    _save(response.iter_bytes(_CHUNK), dest, expected, reference)
            return self.meta(reference)

    @contextlib.contextmanager
    def _stream(self, path: str) -> Iterator[httpx.Response]:
        try:
            with self._http.stream("GET", path) as response:
                yield response
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach the image service at {self.url}: {exc}") from exc

    def fetch_cached(self, reference: str, cache_dir: Path, *, wait: float = 600.0) -> Path:
        """The SIF in ``cache_dir`` (named by its sha256), downloaded only if missing."""
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock_name = hashlib.sha256(reference.encode()).hexdigest()[:24]
        with (cache_dir / f".{lock_name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta = self.meta(reference, wait=wait)
            target = cache_dir / f"{meta.sha256}.sif"
            if target.is_file():
                return target
            got = self.fetch(reference, target, wait=wait)
            if got.sha256 != meta.sha256:  # rebuilt in between: name it by what we have
                final = cache_dir / f"{got.sha256}.sif"
                os.replace(target, final)
                return final
            return target


def _save(chunks: Iterator[bytes], dest: Path, expected: str | None, reference: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if expected and got != expected:
            raise ChecksumMismatchError(
                f"{reference}: downloaded sha256 {got} but the service advertised {expected}; "
                "the download was corrupted or the object replaced: try again"
            )
        tmp.chmod(0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
