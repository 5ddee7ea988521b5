"""The HTTP service (FastAPI): image lookups, token minting, health and metrics.

::

    GET  /v1/images/{reference}       307 -> presigned URL (S3) | 200 SIF stream (directory)
                                      202 {state, since, owner, retry_after} + Retry-After
                                      400 invalid reference | 404 no source | 401 bad token
                                      502 {state: failed, message, retry_at} | 503 queue full
    GET  /v1/images/{reference}/meta  200 ImageMeta, else the same 202/4xx/502 as above
    POST /v1/tokens                   master token in X-Token -> {token, expires_at, ...}
    GET  /healthz                     200 {status, store, builds_in_flight, owner}
    GET  /metrics                     Prometheus text format

A reference ends with its tag or digest (``.../img:1.0``, ``.../img@sha256:...``); an untagged
reference whose last component is ``meta`` must be written with ``:latest``.

Handlers are plain ``def``: the store calls block (boto3), so Starlette runs them in its thread
pool and the event loop stays free.
"""

from __future__ import annotations

__all__ = ["create_app"]

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from flashlink.images.cache import Failed, ImageCache, Lookup, Pending, Ready
from flashlink.images.errors import (
    BusyError,
    InvalidReferenceError,
    SourceError,
    StoreError,
    TokenError,
)
from flashlink.images.eviction import EvictionLoop
from flashlink.images.models import ImageMeta, TokenRequest, TokenResponse
from flashlink.images.tokens import TokenAuthority


def _error(status: int, error: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def _meta_headers(meta: ImageMeta) -> dict[str, str]:
    headers = {"X-Image-Sha256": meta.sha256, "X-Image-Size": str(meta.size)}
    if meta.source_digest:
        headers["X-Image-Source-Digest"] = meta.source_digest
    return headers


class _Service:
    """The handlers; plain methods so each is short and testable on its own."""

    def __init__(
        self, cache: ImageCache, authority: TokenAuthority, default_token_ttl: float
    ) -> None:
        self.cache = cache
        self.authority = authority
        self.metrics = cache.metrics
        self.default_token_ttl = default_token_ttl

    def _authorize(self, token: str | None) -> JSONResponse | None:
        try:
            self.authority.verify(token)
        except TokenError as exc:
            self.metrics.auth_failures.inc()
            return _error(401, "unauthorized", str(exc), **{"WWW-Authenticate": "X-Token"})
        return None

    def _lookup(self, reference: str) -> Lookup | JSONResponse:
        try:
            return self.cache.lookup(reference)
        except InvalidReferenceError as exc:
            return _error(400, "invalid_reference", str(exc))
        except SourceError as exc:
            return _error(404, "no_source", str(exc))
        except BusyError as exc:
            return _error(503, "busy", str(exc), **{"Retry-After": "10"})
        except StoreError as exc:
            return _error(503, "store_unavailable", str(exc), **{"Retry-After": "10"})

    @staticmethod
    def _not_ready(found: Pending | Failed) -> JSONResponse:
        if isinstance(found, Pending):
            headers = {"Retry-After": str(found.body.retry_after)}
            return JSONResponse(found.body.model_dump(), status_code=202, headers=headers)
        return JSONResponse(found.body.model_dump(), status_code=502)

    def healthz(self) -> dict[str, object]:
        return {
            "status": "ok",
            "store": self.cache.store.describe(),
            "builds_in_flight": self.cache.in_flight(),
            "owner": self.cache.owner,
        }

    def prometheus(self) -> Response:
        return Response(
            self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def mint(
        self,
        body: TokenRequest | None = None,
        x_token: Annotated[str | None, Header()] = None,
    ) -> Response:
        if x_token is None or not self.authority.is_master(x_token):
            self.metrics.auth_failures.inc()
            return _error(401, "unauthorized", "minting a client token needs the master token")
        request = body or TokenRequest()
        try:
            token = self.authority.mint(
                ttl=request.ttl_seconds or self.default_token_ttl, subject=request.subject
            )
        except TokenError as exc:
            return _error(400, "invalid_token_request", str(exc))
        claims = self.authority.verify(token)
        self.metrics.tokens_minted.inc()
        answer = TokenResponse(
            token=token,
            expires_at=claims.expires_at or 0.0,
            scope=claims.scope,
            subject=claims.subject,
        )
        return JSONResponse(answer.model_dump())

    def image_meta(
        self, reference: str, x_token: Annotated[str | None, Header()] = None
    ) -> Response:
        refused = self._authorize(x_token)
        if refused is not None:
            return refused
        found = self._lookup(reference)
        if isinstance(found, JSONResponse):
            return found
        if isinstance(found, Ready):
            return JSONResponse(found.meta.model_dump(), headers=_meta_headers(found.meta))
        return self._not_ready(found)

    async def image(
        self, reference: str, x_token: Annotated[str | None, Header()] = None
    ) -> Response:
        t0 = time.perf_counter()
        refused = self._authorize(x_token)
        answer: Response
        if refused is not None:
            answer = refused
        else:
            # A hit known in memory is answered on the event loop (~1 ms of CPU: token check
            # and presigning); anything that may touch the store goes to a worker thread.
            # Measured with 32 concurrent clients: 171 requests/s when every request took a
            # thread hop, see benchmarks/images_cache.py for the number with this path.
            ready = self.cache.lookup_cached(reference)
            if ready is not None:
                answer = self._ready(ready)
            else:
                answer = await run_in_threadpool(self._image, reference)
        self.metrics.request_seconds.labels(str(answer.status_code)).observe(
            time.perf_counter() - t0
        )
        return answer

    def _image(self, reference: str) -> Response:
        found = self._lookup(reference)
        if isinstance(found, JSONResponse):
            return found
        if not isinstance(found, Ready):
            return self._not_ready(found)
        return self._ready(found)

    def _ready(self, found: Ready) -> Response:
        headers = _meta_headers(found.meta)
        if isinstance(found.location, Path):
            self.metrics.bytes_served.labels("stream").inc(found.meta.size)
            # FileResponse streams in 64 KiB chunks: memory does not grow with the image
            return FileResponse(
                found.location,
                media_type="application/octet-stream",
                filename=Path(found.meta.object_key).name,
                headers=headers,
            )
        self.metrics.bytes_served.labels("redirect").inc(found.meta.size)
        return RedirectResponse(found.location, status_code=307, headers=headers)


def create_app(
    cache: ImageCache,
    authority: TokenAuthority,
    *,
    default_token_ttl: float = 3600.0,
    eviction: tuple[float | None, int | None, float] | None = None,
) -> FastAPI:
    """The service for ``cache``; ``eviction`` = (max_age, max_total_bytes, interval)."""
    service = _Service(cache, authority, default_token_ttl)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        del app
        loop = None
        if eviction is not None and (eviction[0] is not None or eviction[1] is not None):
            loop = EvictionLoop(
                cache, max_age=eviction[0], max_total_bytes=eviction[1], interval=eviction[2]
            )
            loop.start()
        try:
            yield
        finally:
            if loop is not None:
                loop.stop()
            cache.close()

    app = FastAPI(title="flashlink image cache", version="1", lifespan=lifespan)
    app.get("/healthz")(service.healthz)
    app.get("/metrics")(service.prometheus)
    app.post("/v1/tokens", response_model=TokenResponse)(service.mint)
    # /meta first: the plain route's {reference:path} would swallow ".../meta"
    app.get("/v1/images/{reference:path}/meta")(service.image_meta)
    app.get("/v1/images/{reference:path}")(service.image)
    return app
