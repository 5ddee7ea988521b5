"""Submission: pods that arrive together reach the backend in one ``submit`` call.

One thread per site takes every pod queued while the previous call ran (up to
``submit_batch``), so a burst of ``/create`` requests becomes one scheduler transaction where the
scheduler has them (one HTCondor schedd transaction, one pass of the local queue) without
delaying a lone pod. The store is updated by this thread, before the waiting request is
answered, so a pod accepted by the backend is recorded even when its client gave up.
"""

from __future__ import annotations

__all__ = ["PendingJob", "Submitter", "job_from_dict", "job_to_dict"]

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from flashlink.backends import BackendUnavailableError, BatchJob, SubmitError
from flashlink.jobscript import Resources
from flashlink.plugin.metrics import MeteredBackend
from flashlink.plugin.status import PodInfo, phase_of, rejected_status, status_json, waiting_status
from flashlink.plugin.store import Store

_log = logging.getLogger(__name__)


def job_to_dict(job: BatchJob) -> dict[str, Any]:
    """A BatchJob as JSON-ready data (kept in the store until the backend accepts it)."""
    res = job.resources
    return {
        "key": job.key,
        "name": job.name,
        "script": job.script,
        "job_dir": str(job.job_dir),
        "resources": {
            "cpu": str(res.cpu) if res.cpu is not None else None,
            "memory_bytes": res.memory_bytes,
            "ephemeral_storage_bytes": res.ephemeral_storage_bytes,
            "gpus": dict(res.gpus),
            "walltime_seconds": res.walltime_seconds,
        },
        "options": dict(job.options),
        "contains_secrets": job.contains_secrets,
    }


def job_from_dict(data: dict[str, Any]) -> BatchJob:
    res = data["resources"]
    return BatchJob(
        key=data["key"],
        name=data["name"],
        script=data["script"],
        job_dir=Path(data["job_dir"]),
        resources=Resources(
            cpu=Decimal(res["cpu"]) if res["cpu"] is not None else None,
            memory_bytes=res["memory_bytes"],
            ephemeral_storage_bytes=res["ephemeral_storage_bytes"],
            gpus=res["gpus"],
            walltime_seconds=res["walltime_seconds"],
        ),
        options=data["options"],
        contains_secrets=data["contains_secrets"],
    )


@dataclass
class PendingJob:
    """A pod waiting for its site's backend to accept it."""

    info: PodInfo
    job: BatchJob
    future: Future[str]


class Submitter:
    """The submission thread of one site."""

    def __init__(
        self,
        site: str,
        backend: MeteredBackend,
        store: Store,
        batch: int,
        on_accepted: Callable[[str, str], None] | None = None,
    ) -> None:
        self.site = site
        self.backend = backend
        self.store = store
        self.batch = batch
        self.on_accepted = on_accepted
        self._queue: queue.Queue[PendingJob | None] = queue.Queue()
        self._thread = threading.Thread(
            target=self._run, name=f"flashlink-submit-{site}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.ident is None:
            return  # never started
        self._queue.put(None)
        self._thread.join(timeout=60)

    def submit(self, info: PodInfo, job: BatchJob) -> Future[str]:
        """Queue ``job``; the future gives its backend id or the backend's error."""
        future: Future[str] = Future()
        self._queue.put(PendingJob(info, job, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = [first]
            stop = False
            while len(items) < self.batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                items.append(item)
            try:
                self._submit(items)
            except Exception as exc:  # a bug must not leave requests waiting forever
                _log.exception("site %s: submission of %d pods failed", self.site, len(items))
                for item in items:
                    self._reject(item, exc, "SubmitFailed")
            if stop:
                return

    def _submit(self, items: list[PendingJob]) -> None:
        try:
            ids = self.backend.submit([item.job for item in items])
        except SubmitError as exc:
            if len(items) > 1:  # find the pod the backend refuses; submit the others
                for item in items:
                    self._submit([item])
                return
            self._reject(items[0], exc, "SubmitFailed")
            return
        except BackendUnavailableError as exc:
            for item in items:
                self._reject(item, exc, "SiteUnavailable")
            return
        accepted = []
        for item, backend_id in zip(items, ids, strict=True):
            info = PodInfo(
                item.info.uid,
                item.info.name,
                item.info.namespace,
                item.info.init,
                item.info.main,
                jid=backend_id,
            )
            status = waiting_status(info, "Submitted", f"submitted to site {self.site}")
            accepted.append((item.info.uid, backend_id, status_json(status)))
        self.store.submitted(accepted)
        for item, backend_id in zip(items, ids, strict=True):
            if self.on_accepted is not None:
                self.on_accepted(item.info.uid, backend_id)
            with contextlib.suppress(InvalidStateError):  # the waiter may have given up
                item.future.set_result(backend_id)

    def _reject(self, item: PendingJob, exc: Exception, reason: str) -> None:
        message = f"site {self.site} did not accept the pod: {exc}"
        status = rejected_status(item.info, reason, message)
        self.store.rejected(item.info.uid, message, status_json(status), phase_of(status))
        with contextlib.suppress(InvalidStateError):
            item.future.set_exception(exc)
