"""The HTTP layer: interLink's plugin endpoints on FastAPI, and the status code of every error.

interLink sends ``GET`` requests **with a JSON body** (``/status``, ``/getLogs``), so the body
is read from the raw request, decoded once, and handed to :class:`~flashlink.plugin.service.
Plugin`. Success is always exactly 200 (interLink treats 201/204 as errors). Errors are plain
text (interLink shows the body to the user as the pod's failure message):

=====  =========================================================================
400    malformed JSON, a body of the wrong shape, an invalid Pod (the field is named)
401    missing or wrong bearer token (no detail)
404    /getLogs for an unknown pod or container
413    body larger than ``server.max_body_bytes``
422    the backend refused the job (quota, a request it cannot hold)
502    the backend answered with an error it did not classify
503    the backend is unreachable, or the submission is still in progress (retry)
=====  =========================================================================

A pure-ASGI gate in front of FastAPI counts and times every request, checks the token and reads
the body with its size limit (a ``BaseHTTPMiddleware`` would cost ~100 us per request).
"""

from __future__ import annotations

__all__ = ["create_app"]

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flashlink.backends import BackendError, BackendUnavailableError, SubmitError
from flashlink.jobscript import JobScriptError
from flashlink.kube import InvalidObjectError
from flashlink.plugin.config import PluginConfig
from flashlink.plugin.errors import BadRequestError, NotFoundError, UnavailableError
from flashlink.plugin.metrics import Metrics
from flashlink.plugin.service import Plugin

_log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ENDPOINTS = frozenset(
    {"/create", "/status", "/delete", "/getLogs", "/healthz", "/system-info", "/metrics"}
)


async def _plain(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Gate:
    """Metrics, bearer-token check and bounded body reading for every HTTP request.

    ``GET /status`` is answered here, without FastAPI's routing, request and response objects:
    interLink sends one per pod every few seconds, and this path serves ~2x more of them per
    CPU second than a FastAPI endpoint (benchmarks/plugin_scale.py).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        tokens: tuple[str, ...],
        open_paths: tuple[str, ...],
        max_body: int,
        status: Callable[[object], bytes] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tokens = tuple(t.encode() for t in tokens)
        self.open_paths = frozenset(open_paths)
        self.max_body = max_body
        self.status = status
        # labelled children looked up once, not per request
        self._seconds = {e: metrics.request_seconds.labels(e) for e in (*ENDPOINTS, "other")}
        self._counts: dict[tuple[str, int], Any] = {}

    def _count(self, endpoint: str, code: int, seconds: float) -> None:
        counter = self._counts.get((endpoint, code))
        if counter is None:
            counter = self._counts[endpoint, code] = self.metrics.requests.labels(
                endpoint, str(code)
            )
        counter.inc()
        self._seconds[endpoint].observe(seconds)

    async def _status(self, send: Send, body: bytes) -> None:
        try:
            answer = self.status(_decode(body)) if self.status is not None else b""
        except BadRequestError as exc:
            await _plain(send, 400, str(exc), [])
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                token = token.strip()
                # compare with every token (no early exit): the time says nothing about which
                matches = [hmac.compare_digest(token, t) for t in self.tokens]
                return any(matches)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        code = 500
        t0 = time.perf_counter()

        async def counted(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            if self.tokens and path not in self.open_paths and not self._authorized(scope):
                await _plain(counted, 401, "unauthorized", [(b"www-authenticate", b"Bearer")])
                return
            body = await self._body(scope, receive)
            if body is None:
                await _plain(counted, 413, f"request body larger than {self.max_body} bytes", [])
                return
            if path == "/status" and scope["method"] == "GET" and self.status is not None:
                await self._status(counted, body)
                return
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # after the body: wait for the disconnect

            await self.app(scope, replay, counted)
        finally:
            self._count(endpoint, code, time.perf_counter() - t0)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _decode(raw: bytes) -> object:
    if not raw.strip():
        raise BadRequestError("(top level): the request has no JSON body")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequestError(f"(top level): the body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequestError("(top level): the JSON body is nested too deeply") from None


def _error(status: int, exc: Exception) -> PlainTextResponse:
    return PlainTextResponse(str(exc), status_code=status)


def create_app(config: PluginConfig | None = None, plugin: Plugin | None = None) -> FastAPI:
    """The FastAPI application of a plugin (built from ``config`` unless ``plugin`` is given).

    The plugin's threads start and stop with the application's lifespan.
    """
    if plugin is None:
        plugin = Plugin(config or PluginConfig())
    service = plugin
    tokens = service.config.auth.tokens()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="flashlink interLink plugin",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.plugin = service

    app.add_exception_handler(BadRequestError, lambda _, e: _error(400, e))
    app.add_exception_handler(InvalidObjectError, lambda _, e: _error(400, e))
    app.add_exception_handler(JobScriptError, lambda _, e: _error(400, e))
    app.add_exception_handler(NotFoundError, lambda _, e: _error(404, e))
    app.add_exception_handler(SubmitError, lambda _, e: _error(422, e))
    app.add_exception_handler(UnavailableError, lambda _, e: _error(503, e))
    app.add_exception_handler(BackendUnavailableError, lambda _, e: _error(503, e))
    app.add_exception_handler(BackendError, lambda _, e: _error(502, e))

    @app.post("/create")
    async def create(request: Request) -> Response:
        answer = await service.create(_decode(await request.body()))
        return Response(answer.model_dump_json(by_alias=True), media_type="application/json")

    @app.post("/delete")
    async def delete(request: Request) -> Response:
        return PlainTextResponse(await service.delete(_decode(await request.body())))

    @app.get("/getLogs")
    async def get_logs(request: Request) -> Response:
        chunks = await service.logs(_decode(await request.body()))
        return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")

    @app.get("/healthz")
    async def healthz() -> Response:
        if service.healthy():
            return PlainTextResponse("ok")
        return PlainTextResponse("reconciler stopped", status_code=503)

    @app.get("/system-info")
    async def system_info() -> Response:
        return JSONResponse(service.system_info())

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        Gate,
        metrics=service.metrics,
        tokens=tokens,
        open_paths=service.config.auth.open_paths,
        max_body=service.config.server.max_body_bytes,
        status=service.status,
    )
    if tokens:
        _log.info("bearer-token authentication on (%d tokens)", len(tokens))
    return app
