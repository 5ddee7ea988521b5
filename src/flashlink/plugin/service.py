"""The plugin's behaviour behind the HTTP layer: create, status, delete, logs, ping, info.

:class:`Plugin` owns the store, the sites with their submitter and reconciler threads, and the
metrics; :mod:`flashlink.plugin.app` only decodes requests and maps errors to status codes.
Bodies arrive as decoded JSON (any shape: it is checked here, and each error names the field).
"""

from __future__ import annotations

__all__ = ["Plugin"]

import asyncio
import json
import logging
import platform
import re
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio.to_thread

import flashlink
from flashlink.backends import BackendUnavailableError, BatchJob, JobNotFoundError
from flashlink.jobscript import container_log, container_state, parse_state, render
from flashlink.kube import (
    Accelerator,
    CreateStruct,
    PingResources,
    PingResponse,
    Taint,
    format_cpu,
    parse_create_request,
    parse_log_request,
)
from flashlink.plugin.config import PluginConfig
from flashlink.plugin.errors import BadRequestError, NotFoundError, UnavailableError
from flashlink.plugin.logs import LogCursor, log_options
from flashlink.plugin.metrics import MeteredBackend, Metrics
from flashlink.plugin.reconciler import Reconciler, info_of
from flashlink.plugin.sites import Site, build_sites, select_site
from flashlink.plugin.status import PodInfo, phase_of, status_json, waiting_status
from flashlink.plugin.store import PodRow, Store
from flashlink.plugin.submitter import Submitter, job_from_dict, job_to_dict

_log = logging.getLogger(__name__)
# Kubernetes UIDs are UUIDs; anything else must at least be a safe directory name.
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _text(value: object, where: str) -> str:
    """``value`` as a string that UTF-8 can carry (JSON may hold lone surrogates)."""
    if not isinstance(value, str):
        raise BadRequestError(f"{where}: expected a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequestError(f"{where}: not valid Unicode text ({exc.reason})") from None
    return value


def _pod_uid(pod: object, where: str) -> str:
    """The UID of a Pod object as sent to /status and /delete (only what is needed is read)."""
    if not isinstance(pod, dict):
        raise BadRequestError(f"{where}: expected a Pod object, got {type(pod).__name__}")
    meta = pod.get("metadata")
    if not isinstance(meta, dict):
        raise BadRequestError(f"{where}.metadata: expected an object with the pod's uid")
    uid = _text(meta.get("uid"), f"{where}.metadata.uid")
    if not uid:
        raise BadRequestError(f"{where}.metadata.uid: must not be empty")
    return uid


def _quantity_memory(n: int) -> str:
    return f"{n // 1024}Ki" if n % 1024 == 0 else str(n)


class Plugin:
    """One plugin instance: sites, store, threads (see the module docstring)."""

    def __init__(self, config: PluginConfig) -> None:
        self.config = config
        self.state_dir = config.resolved_state_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.metrics = Metrics()
        self.store = Store(self.state_dir / "plugin.db")
        self.sites: dict[str, Site] = build_sites(config, self.state_dir)
        self.backends = {
            name: MeteredBackend(name, site.backend, self.metrics)
            for name, site in self.sites.items()
        }
        self.reconcilers = {
            name: Reconciler(site, self.backends[name], self.store, config, self.metrics)
            for name, site in self.sites.items()
        }
        self.submitters = {
            name: Submitter(
                name,
                self.backends[name],
                self.store,
                config.submit_batch,
                on_accepted=self.reconcilers[name].track,
            )
            for name in self.sites
        }
        self.default_site = config.default()
        self.started_at = time.time()
        self._inflight: dict[str, Future[str]] = {}
        self._running = False
        self.metrics.watch_store(self.store.counts, self.lags)

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        for submitter in self.submitters.values():
            submitter.start()
        self._recover()
        for reconciler in self.reconcilers.values():
            reconciler.start()
        self._running = True
        _log.info(
            "plugin started: state in %s, sites %s (default %s)",
            self.state_dir,
            ", ".join(f"{n} ({s.kind})" for n, s in self.sites.items()),
            self.default_site,
        )

    def stop(self) -> None:
        """Stop the threads and close the backends; jobs keep running (they are re-adopted)."""
        self._running = False
        for reconciler in self.reconcilers.values():
            reconciler.stop()
        for submitter in self.submitters.values():
            submitter.stop()
        for backend in self.backends.values():
            backend.close()
        self.store.close()

    def _recover(self) -> None:
        """Pods whose submission a crash interrupted: submit again (backends dedupe by UID)."""
        for name in self.sites:
            for row in self.store.rows(name, ["submitting"]):
                if row.job is None:
                    continue
                _log.info(
                    "resubmitting pod %s/%s (%s) after a restart", row.namespace, row.name, row.uid
                )
                self._track(
                    row.uid, self.submitters[name].submit(info_of(row), job_from_dict(row.job))
                )

    def _track(self, uid: str, future: Future[str]) -> Future[str]:
        self._inflight[uid] = future
        future.add_done_callback(lambda _: self._inflight.pop(uid, None))
        return future

    def healthy(self) -> bool:
        return self._running and all(r.alive for r in self.reconcilers.values())

    def lags(self) -> dict[str, float]:
        now = time.time()
        return {
            name: now - (r.health.last_ok or self.started_at)
            for name, r in self.reconcilers.items()
        }

    # --- /create ------------------------------------------------------------------------------

    async def create(self, body: object) -> CreateStruct:
        request = parse_create_request(body)
        pod = request.pod
        meta = pod.metadata
        uid = _text(meta.uid, "pod.metadata.uid")
        if not _UID.fullmatch(uid):
            raise BadRequestError(
                f"pod.metadata.uid: {uid!r} is not a Kubernetes UID (e.g. "
                "'11111111-1111-4111-8111-111111111111')"
            )
        row = self.store.get(uid)
        if row is not None and (row.state != "rejected" or row.deleted_at is not None):
            return await self._answer(row)
        site = self.sites[
            select_site(pod, list(self.sites), self.default_site, self.config.site_key)
        ]
        script = await anyio.to_thread.run_sync(render, request, site.render)
        info = PodInfo(
            uid=uid,
            name=meta.name,
            namespace=meta.namespace,
            init=[(c.name, c.image or "") for c in pod.spec.init_containers],
            main=[(c.name, c.image or "") for c in pod.spec.containers],
        )
        job = BatchJob(
            key=uid,
            name=f"{meta.namespace}-{meta.name}",
            script=script.text,
            job_dir=site.jobs_dir / uid,
            resources=script.resources,
            options=dict(meta.annotations),
            contains_secrets=script.contains_secrets,
        )
        status = waiting_status(info, "Submitting", f"being submitted to site {site.name}")
        text, phase, data = status_json(status), phase_of(status), job_to_dict(job)
        # No await since the store.get above may have let another create of this uid in: check
        # again, and insert without awaiting in between (requests run on one event loop).
        row = self.store.get(uid)
        if row is None:
            self.store.insert(
                uid=uid,
                namespace=meta.namespace,
                name=meta.name,
                site=site.name,
                job_dir=str(job.job_dir),
                containers={
                    "init": [list(c) for c in info.init],
                    "main": [list(c) for c in info.main],
                },
                phase=phase,
                status=text,
                job=data,
            )
        elif row.state != "rejected" or not self.store.resubmit(uid, text, phase, data):
            return await self._answer(row)
        future = self._track(uid, self.submitters[site.name].submit(info, job))
        return await self._wait(uid, future)

    async def _answer(self, row: PodRow) -> CreateStruct:
        """The answer to a repeated /create: never a second submission."""
        if row.state in ("active", "done") and row.backend_id:
            return CreateStruct(PodUID=row.uid, PodJID=row.backend_id)
        future = self._inflight.get(row.uid)
        if row.state == "submitting" and future is not None:
            return await self._wait(row.uid, future)
        if row.state == "rejected":
            raise BadRequestError(
                f"pod {row.namespace}/{row.name} ({row.uid}) was deleted after site {row.site} "
                f"refused it: {row.last_error}"
            )
        raise UnavailableError(
            f"pod {row.namespace}/{row.name} ({row.uid}) is still being submitted to site "
            f"{row.site}; retry /create with the same pod"
        )

    async def _wait(self, uid: str, future: Future[str]) -> CreateStruct:
        waiter = asyncio.wrap_future(future)
        # asyncio.wait, not wait_for: a timeout must not cancel the submission itself
        done, _ = await asyncio.wait({waiter}, timeout=self.config.create_timeout)
        if not done:
            raise UnavailableError(
                f"the site has not accepted pod {uid} within {self.config.create_timeout:g} s; "
                "it is still being submitted: retry /create with the same pod"
            )
        backend_id = waiter.result()  # raises the backend's error
        # No reconciler wake-up here: at 100 creates/s it would run back-to-back passes; the
        # pod says "Submitted" until the next interval.
        return CreateStruct(PodUID=uid, PodJID=backend_id)

    # --- /status --------------------------------------------------------------------------

    def status(self, body: object) -> bytes:
        """The stored statuses of the known pods among ``body`` (a JSON array of Pods)."""
        if not isinstance(body, list):
            raise BadRequestError(
                f"(top level): the /status body must be a JSON array of Pods, got "
                f"{type(body).__name__}"
            )
        if not body:
            return self.ping().model_dump_json(by_alias=True, exclude_none=True).encode()
        uids = list(dict.fromkeys(_pod_uid(pod, f"[{i}]") for i, pod in enumerate(body)))
        found = self.store.statuses(uids)
        return ("[" + ",".join(found[u] for u in uids if u in found) + "]").encode()

    def ping(self) -> PingResponse:
        """The answer to ``GET /status []``: every site's capacity summed, the taints."""
        known = [r.health.capacity for r in self.reconcilers.values() if r.health.capacity]
        resources = None
        if known:
            accelerators: dict[str, int] = {}
            for cap in known:
                for kind, n in cap.accelerators.items():
                    accelerators[kind] = accelerators.get(kind, 0) + n
            resources = PingResources(
                cpu=format_cpu(sum((Decimal(str(c.cpu)) for c in known), Decimal(0))),
                memory=_quantity_memory(sum(c.memory_bytes for c in known)),
                pods=str(sum(c.pods for c in known)),
                accelerators=[
                    Accelerator(resource_type=k, available=str(v))
                    for k, v in sorted(accelerators.items())
                ],
            )
        taints = [Taint(key=t.key, value=t.value, effect=t.effect) for t in self.config.taints]
        return PingResponse(status="ok", resources=resources, taints=taints)

    # --- /delete ----------------------------------------------------------------------------

    async def delete(self, body: object) -> str:
        uid = _pod_uid(body, "(top level)")
        row = self.store.get(uid)
        if row is None:
            return f"pod {uid} is not known: nothing to delete"
        if row.deleted_at is not None and not row.cancel_pending:
            return f"pod {uid} was already deleted"
        live = row.state in ("submitting", "active")
        self.store.mark_deleted(uid, cancel_pending=live)
        reconciler = self.reconcilers[row.site]
        if row.state == "active" and row.backend_id:
            backend = self.backends[row.site]
            try:
                await anyio.to_thread.run_sync(backend.cancel, row.backend_id)
            except JobNotFoundError:
                pass
            except BackendUnavailableError as exc:
                reconciler.wake()
                raise UnavailableError(
                    f"site {row.site} could not cancel job {row.backend_id} now ({exc}); "
                    "the plugin keeps retrying"
                ) from exc
            self.store.cancel_done(uid)
        reconciler.wake()
        return f"pod {uid} deleted"

    # --- /getLogs ---------------------------------------------------------------------------

    async def logs(self, body: object) -> Iterator[bytes] | AsyncIterator[bytes]:
        request = parse_log_request(body)
        opts = request.opts
        uid = _text(request.pod_uid, "PodUID")
        container = _text(request.container_name, "ContainerName")
        row = self.store.get(uid)
        if row is None:
            raise NotFoundError(
                f"pod {request.namespace}/{request.pod_name} ({uid}) is not known to this plugin"
            )
        names = [*row.names("init"), *row.names("main")]
        if container not in names:
            raise NotFoundError(
                f"container {container!r} is not in pod {row.namespace}/{row.name}; "
                f"its containers: {', '.join(names)}"
            )
        if opts.previous:
            raise BadRequestError(
                f'previous terminated container "{container}" in pod "{row.name}" not found: '
                "containers of an offloaded pod are never restarted"
            )
        job_dir = await self._job_dir(row)
        cursor = LogCursor(job_dir / container_log(container), log_options(opts, time.time()))
        if opts.follow:
            return self._follow(cursor, uid, job_dir, container)
        return self._read_all(cursor)

    async def _job_dir(self, row: PodRow) -> Path:
        """The job directory, brought up to date by the backend where it has to copy it."""
        if row.backend_id is None or self.sites[row.site].kind == "local":
            return Path(row.job_dir)
        try:
            path: Path = await anyio.to_thread.run_sync(
                self.backends[row.site].fetch, row.backend_id
            )
        except Exception as exc:  # the stored directory still has what came back before
            _log.warning("fetch of job %s failed, reading %s: %s", row.backend_id, row.job_dir, exc)
            return Path(row.job_dir)
        return path

    @staticmethod
    def _read_all(cursor: LogCursor) -> Iterator[bytes]:
        while True:
            chunk = cursor.read(final=True)
            if not chunk:
                return
            yield chunk

    def _container_ended(self, uid: str, job_dir: Path, container: str) -> bool:
        try:
            record = parse_state((job_dir / container_state(container)).read_text())
        except (OSError, ValueError):
            record = None
        if record is not None and record.state.terminated is not None:
            return True
        row = self.store.get(uid)
        return row is None or row.state in ("done", "rejected")

    async def _follow(
        self, cursor: LogCursor, uid: str, job_dir: Path, container: str
    ) -> AsyncIterator[bytes]:
        while self._running:
            ended = self._container_ended(uid, job_dir, container)  # before reading: no loss
            chunk = cursor.read(final=ended)
            if chunk:
                yield chunk
            if cursor.exhausted or (ended and not chunk):
                return
            if not chunk:
                await asyncio.sleep(self.config.log_poll_seconds)

    # --- /system-info -----------------------------------------------------------------------

    def system_info(self) -> dict[str, Any]:
        now = time.time()
        sites: dict[str, Any] = {}
        for name, site in self.sites.items():
            health = self.reconcilers[name].health
            cap = health.capacity
            sites[name] = {
                "kind": site.kind,
                "runtime": site.render.runtime,
                "reachable": health.last_ok is not None and health.last_error is None,
                "error": health.last_error,
                "last_reconcile": (
                    datetime.fromtimestamp(health.last_ok, UTC).isoformat()
                    if health.last_ok
                    else None
                ),
                "reconcile_lag_seconds": round(now - (health.last_ok or self.started_at), 3),
                "active_jobs": health.active,
                "capacity": (
                    {
                        "cpu": cap.cpu,
                        "memory_bytes": cap.memory_bytes,
                        "pods": cap.pods,
                        "accelerators": dict(cap.accelerators),
                    }
                    if cap
                    else None
                ),
                "backend": health.info,
            }
        ok = all(s["reachable"] for s in sites.values())
        return {
            "status": "ok" if ok else "degraded",
            "flashlink": flashlink.__version__,
            "python": platform.python_version(),
            "started_at": datetime.fromtimestamp(self.started_at, UTC).isoformat(),
            "default_site": self.default_site,
            "site_key": self.config.site_key,
            "pods": {f"{s}/{p}": n for (s, p), n in sorted(self.store.counts().items())},
            "sites": sites,
        }


def dumps(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
