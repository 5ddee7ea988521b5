"""The reconciler: one thread per site keeps the store's pod statuses current.

Every ``reconcile_interval`` it polls the backend **once** for all the site's active jobs
(``poll_batch`` ids per call at most), reads the state records of the jobs that run or just
ended (a ``stat`` per record; a record is re-read only when it changed), and writes the pods
whose status changed in one transaction. It also retries cancels the backend has not confirmed,
forgets deleted pods after the retention time, and refreshes the site's capacity for the ping.
``/status`` only ever reads what this thread wrote.
"""

from __future__ import annotations

__all__ = ["Reconciler", "SiteHealth"]

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flashlink.backends import (
    BackendError,
    BackendUnavailableError,
    Capacity,
    JobNotFoundError,
    JobPhase,
    JobState,
)
from flashlink.jobscript import container_state, parse_state
from flashlink.kube import ContainerStatus
from flashlink.plugin.config import PluginConfig
from flashlink.plugin.metrics import MeteredBackend, Metrics
from flashlink.plugin.sites import Site
from flashlink.plugin.status import PodInfo, phase_of, pod_status, status_json, waiting_status
from flashlink.plugin.store import ActiveRow, PodRow, StatusUpdate, Store

_log = logging.getLogger(__name__)
_FINAL = (JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.UNKNOWN)
_RESYNC_SECONDS = 60.0  # the in-memory active set is re-read from the store this often


@dataclass
class SiteHealth:
    """What the last passes learned about a site (for the ping and /system-info)."""

    last_ok: float | None = None  # wall clock of the last complete pass
    last_error: str | None = None
    capacity: Capacity | None = None
    info: dict[str, Any] = field(default_factory=dict)
    info_at: float = 0.0
    active: int = 0


def info_of(row: PodRow) -> PodInfo:
    return PodInfo(
        uid=row.uid,
        name=row.name,
        namespace=row.namespace,
        init=[(n, i) for n, i in row.containers["init"]],
        main=[(n, i) for n, i in row.containers["main"]],
        jid=row.backend_id or "",
    )


@dataclass(frozen=True)
class _Known:
    info: PodInfo
    job_dir: Path
    names: list[str]


class _Records:
    """Container state records of one job directory, re-parsed only when a file changed."""

    def __init__(self) -> None:
        self.stamps: tuple[tuple[int, int], ...] = ()
        self.records: dict[str, ContainerStatus] = {}

    def read(self, job_dir: Path, names: list[str]) -> tuple[dict[str, ContainerStatus], bool]:
        stamps = []
        for name in names:
            try:
                st = os.stat(job_dir / container_state(name))
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((0, -1))
        key = tuple(stamps)
        if key == self.stamps:
            return self.records, False
        records: dict[str, ContainerStatus] = {}
        for name, (_, size) in zip(names, stamps, strict=True):
            if size < 0:
                continue
            try:
                records[name] = parse_state((job_dir / container_state(name)).read_text())
            except (OSError, ValueError) as exc:
                _log.warning("unreadable state record of %s in %s: %s", name, job_dir, exc)
        self.stamps, self.records = key, records
        return records, True


class Reconciler:
    """The reconcile thread of one site."""

    def __init__(
        self,
        site: Site,
        backend: MeteredBackend,
        store: Store,
        config: PluginConfig,
        metrics: Metrics,
    ) -> None:
        self.site = site
        self.backend = backend
        self.store = store
        self.config = config
        self.metrics = metrics
        self.health = SiteHealth()
        self.passes = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pods: dict[str, _Known] = {}
        self._records: dict[str, _Records] = {}
        self._seen: dict[str, object] = {}
        # The active pods, kept here between passes (read from the store once a minute, and
        # told by the submitter about new ones): at 10,000 pods re-reading them all from SQLite
        # at every pass cost more than the rest of the pass.
        self._active: dict[str, ActiveRow] = {}
        self._arrivals: list[ActiveRow] = []
        self._arrivals_lock = threading.Lock()
        self._synced_at = -float("inf")
        self._thread = threading.Thread(
            target=self._run, name=f"flashlink-reconcile-{site.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=60)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def track(self, uid: str, backend_id: str) -> None:
        """A pod the backend has just accepted (called after the store recorded it)."""
        with self._arrivals_lock:
            self._arrivals.append(ActiveRow(uid, backend_id, 0, "Pending"))

    def _active_rows(self) -> list[ActiveRow]:
        now = time.monotonic()
        if now - self._synced_at > _RESYNC_SECONDS:
            with self._arrivals_lock:
                self._arrivals = []  # cleared first: a later arrival is in the store read below
            self._active = {row.uid: row for row in self.store.active(self.site.name)}
            self._synced_at = now
        else:
            with self._arrivals_lock:
                arrivals, self._arrivals = self._arrivals, []
            for row in arrivals:
                self._active.setdefault(row.uid, row)
        return list(self._active.values())

    def wake(self) -> None:
        """Run a pass now (e.g. right after a submission), not at the next interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.run_once()
            except Exception:  # the thread must survive anything one pass meets
                _log.exception("site %s: reconcile pass failed", self.site.name)
            elapsed = time.monotonic() - t0
            self._wake.wait(max(0.0, self.site.reconcile_interval - elapsed))
            self._wake.clear()

    # --- one pass ---------------------------------------------------------------------------

    def run_once(self) -> None:
        t0 = time.perf_counter()
        self._refresh_info()
        ok = self._poll_active()
        self._retry_cancels()
        self._expire()
        if ok:
            self.health.last_ok = time.time()
            self.health.last_error = None
        self.passes += 1
        self.metrics.reconcile_seconds.labels(self.site.name).observe(time.perf_counter() - t0)

    def _refresh_info(self) -> None:
        now = time.monotonic()
        if (
            self.health.capacity is not None
            and now - self.health.info_at < self.config.info_interval
        ):
            return
        try:
            self.health.capacity = self.backend.capacity()
            self.health.info = self.backend.describe()
            self.health.info_at = now
        except BackendError as exc:
            self.health.last_error = str(exc)

    def _known(self, uid: str) -> _Known | None:
        """What never changes about an active pod, read from the store once."""
        known = self._pods.get(uid)
        if known is None:
            row = self.store.get(uid)
            if row is None:
                return None
            known = self._pods[uid] = _Known(
                info=info_of(row),
                job_dir=Path(row.job_dir),
                names=[*row.names("init"), *row.names("main")],
            )
        return known

    def _poll_active(self) -> bool:
        rows = self._active_rows()
        self.health.active = len(rows)
        live = {row.uid for row in rows}
        for cache in (self._pods, self._records, self._seen):
            for uid in [u for u in cache if u not in live]:
                del cache[uid]
        if not rows:
            return True
        ids = [row.backend_id for row in rows]
        states: dict[str, JobState] = {}
        try:
            for i in range(0, len(ids), self.config.poll_batch):
                states.update(self.backend.poll(ids[i : i + self.config.poll_batch]))
        except BackendError as exc:
            self._unreachable(rows, exc)
            return False
        updates = []
        for i, row in enumerate(rows):
            if i % 512 == 511:
                time.sleep(0)  # let the request thread have the GIL: /status p99 depends on it
            update = self._update(row, states)
            if update is not None:
                updates.append(update)
        self.store.update(updates)
        for u in updates:
            if u.state == "done":
                self._active.pop(u.uid, None)
            else:
                old = self._active[u.uid]
                self._active[u.uid] = ActiveRow(u.uid, old.backend_id, u.misses, u.phase)
        return True

    def _unreachable(self, rows: list[ActiveRow], exc: BackendError) -> None:
        """Pods not yet running say why they still wait; running ones keep their state."""
        self.health.last_error = f"{type(exc).__name__}: {exc}"
        _log.warning("site %s: poll failed: %s", self.site.name, exc)
        reason = "SiteUnavailable" if isinstance(exc, BackendUnavailableError) else "SiteError"
        message = f"site {self.site.name}: {exc}"
        updates = []
        for row in rows:
            known = self._known(row.uid)
            if row.phase != "Pending" or known is None:
                continue
            seen = (reason, message)
            if self._seen.get(row.uid) == seen:
                continue
            self._seen[row.uid] = seen
            text = status_json(waiting_status(known.info, reason, message))
            updates.append(StatusUpdate(row.uid, text, "Pending", "active", row.misses))
        self.store.update(updates)

    def _update(self, row: ActiveRow, states: dict[str, JobState]) -> StatusUpdate | None:
        job = states.get(row.backend_id)
        misses = 0
        if job is None:
            misses = row.misses + 1
            if misses < self.config.lost_after:
                return StatusUpdate(row.uid, None, row.phase, "active", misses)
            job = JobState(
                row.backend_id,
                JobPhase.UNKNOWN,
                reason="Lost",
                message=f"job {row.backend_id} is no longer known to site {self.site.name} "
                "and recorded no end",
            )
        final = job.phase in _FINAL
        stamps: tuple[tuple[int, int], ...] = ()
        pending = job.phase is JobPhase.PENDING and misses == row.misses
        if pending and self._seen.get(row.uid) == (job, stamps):
            return None  # the common case with thousands of queued pods: nothing to read
        known = self._known(row.uid)
        if known is None:
            return None  # forgotten meanwhile
        records: dict[str, ContainerStatus] = {}
        if job.phase is not JobPhase.PENDING:
            reader = self._records.setdefault(row.uid, _Records())
            records, _ = reader.read(self._job_dir(row, known, job), known.names)
            stamps = reader.stamps
        seen = (job, stamps)
        if not final and misses == row.misses and self._seen.get(row.uid) == seen:
            return None  # nothing changed since the last pass
        self._seen[row.uid] = seen
        status = pod_status(known.info, job, records)
        return StatusUpdate(
            row.uid,
            status_json(status),
            phase_of(status),
            "done" if final else "active",
            misses,
            finished_at=time.time() if final else None,
        )

    def _job_dir(self, row: ActiveRow, known: _Known, job: JobState) -> Path:
        """Where the job's files are. A remote site's backend may have to bring them back
        first (HTCondor unpacks the snapshot a running job pushed, retrieves spooled outputs
        at the end): ``fetch`` is called for running and ended jobs of non-local sites."""
        if self.site.kind == "local" or job.phase is JobPhase.PENDING:
            return known.job_dir
        try:
            return self.backend.fetch(row.backend_id)
        except BackendError as exc:
            _log.warning("site %s: fetch of job %s failed: %s", self.site.name, row.backend_id, exc)
            return known.job_dir

    def _retry_cancels(self) -> None:
        for row in self.store.cancels_pending(self.site.name):
            if row.backend_id is None:
                if row.state in ("rejected", "done"):
                    self.store.cancel_done(row.uid)
                continue  # still submitting: cancelled once the backend has accepted it
            try:
                self.backend.cancel(row.backend_id)
            except JobNotFoundError:
                pass
            except BackendError as exc:
                _log.warning(
                    "site %s: cancel of job %s failed (will retry): %s",
                    self.site.name,
                    row.backend_id,
                    exc,
                )
                continue
            self.store.cancel_done(row.uid)

    def _expire(self) -> None:
        rows = self.store.expired(self.site.name, time.time() - self.config.retention_seconds)
        if not rows:
            return
        root = self.site.jobs_dir.resolve()
        for row in rows:
            job_dir = Path(row.job_dir).resolve()
            if job_dir.is_relative_to(root) and job_dir != root:
                shutil.rmtree(job_dir, ignore_errors=True)
        self.store.forget([row.uid for row in rows])
        _log.info("site %s: forgot %d deleted pods", self.site.name, len(rows))
