"""Run a production through the plugin API: submit, follow, retry, merge, record provenance.

The driver is the workflow engine of the rules generate -> flash -> ntuple (one Pod per chunk,
see :mod:`flashlink.production.pods`), the reference/validation Pod and the merge. It talks to
the plugin only over HTTP, exactly as interLink does, and keeps its state in a local state
directory (:mod:`flashlink.production.journal`; the output directory itself, or for an S3 output
the one of :func:`~flashlink.production.storage.state_root`), so killing it and running it
again redoes only what is missing.
"""

from __future__ import annotations

__all__ = ["Production", "Snapshot", "Task"]

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flashlink.production.client import PluginClient, pod_phase
from flashlink.production.errors import PluginCallError, ProductionError
from flashlink.production.journal import Journal
from flashlink.production.pods import (
    Job,
    PayloadSettings,
    build_job_pod,
    build_reference_pod,
    plan_jobs,
)
from flashlink.production.request import ProductionRequest
from flashlink.production.storage import Outputs, s3_secret, state_root


@dataclass
class Task:
    """A job or the reference: how to build the Pod of attempt N, where its outputs go
    (``output``, a path or URL prefix) and where its state is (``directory``: done.json and
    the attempts' logs; the same place for a directory output)."""

    key: str
    events: int
    directory: Path
    output: str
    build: Callable[[int], dict[str, Any]]

    @property
    def done_file(self) -> Path:
        return self.directory / "done.json"


@dataclass
class Snapshot:
    """What the progress display shows."""

    total: int
    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    events_total: int = 0
    events_done: int = 0
    started: float = field(default_factory=time.monotonic)
    events_at_start: int = 0

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        produced = self.events_done - self.events_at_start
        return produced / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.rate
        return (self.events_total - self.events_done) / rate if rate > 0 else None


def _seconds(state: dict[str, Any]) -> float | None:
    t = state.get("terminated") or {}
    try:
        start = datetime.fromisoformat(str(t["startedAt"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(t["finishedAt"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return (end - start).total_seconds()


def _exit_codes(status: dict[str, Any]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for c in list(status.get("initContainers") or []) + list(status.get("containers") or []):
        t = c.get("state", {}).get("terminated")
        out[c["name"]] = t.get("exitCode") if t else None
    return out


def _job_pod(
    request: ProductionRequest, job: Job, payload: PayloadSettings, attempt: int
) -> dict[str, Any]:
    return build_job_pod(request, job, attempt, payload)


class Production:
    """One production request on one plugin; :meth:`run` until every task ends."""

    def __init__(
        self,
        request: ProductionRequest,
        client: PluginClient,
        payload: PayloadSettings,
        *,
        poll_interval: float = 1.0,
        state_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``state_dir``: where the journal, markers and logs go (default: the output directory,
        or for an S3 output :func:`~flashlink.production.storage.state_root`); ``environ``:
        where an S3 production takes the AWS variables its jobs get as a Secret."""
        self.request = request
        self.client = client
        self.payload = payload
        self.poll_interval = poll_interval
        self.outputs = Outputs(request.output)
        self.state = state_root(request, state_dir)
        self.journal = Journal(self.state)
        self._environ = environ
        self._secrets: list[dict[str, Any]] | None = None
        self.tasks = self._tasks()

    @property
    def secrets(self) -> list[dict[str, Any]]:
        """The Secrets sent with every ``/create`` (the S3 credentials of an S3 output);
        built when first needed, so ``cancel`` and ``status`` need no credentials."""
        if self._secrets is None:
            environ = os.environ if self._environ is None else self._environ
            self._secrets = [s3_secret(self.request, environ)] if self.outputs.remote else []
        return self._secrets

    def _tasks(self) -> list[Task]:
        r, p = self.request, self.payload
        tasks = [
            Task(
                job.key,
                job.events,
                self.state / "jobs" / job.key,
                job.directory,
                functools.partial(_job_pod, r, job, p),
            )
            for job in plan_jobs(r)
        ]
        if r.reference.events > 0:
            # First: the reference Pod (generate, detailed, flash, validate) is the longest
            # task, and sites start jobs roughly in submission order; submitted last it ran
            # alone at the end of the 1M-event benchmark for ~3 minutes (longest first).
            tasks.insert(
                0,
                Task(
                    "reference",
                    0,
                    self.state / "reference",
                    self.outputs.url("reference"),
                    lambda attempt: build_reference_pod(r, attempt, p),
                ),
            )
        return tasks

    def snapshot(self) -> Snapshot:
        snap = Snapshot(total=len(self.tasks))
        for t in self.tasks:
            snap.events_total += t.events
            if t.done_file.exists():
                snap.done += 1
                snap.events_done += t.events
        snap.pending = snap.total - snap.done
        return snap

    def run(self, on_update: Callable[[Snapshot], None] | None = None) -> Snapshot:
        """Submit what is missing, follow it, retry failures; returns the final counts.
        Refuses (:class:`ProductionError`) while another driver runs the same production."""
        _ = self.secrets  # no credentials for an S3 output: fail before any submission
        with self.journal.driving():
            return self._run(on_update)

    def _run(self, on_update: Callable[[Snapshot], None] | None) -> Snapshot:
        snap = self.snapshot()
        snap.events_at_start = snap.events_done
        todo = {t.key: t for t in self.tasks if not t.done_file.exists()}
        active: dict[str, tuple[Task, int, dict[str, Any]]] = {}  # uid -> task, attempt, pod
        self.journal.append("run", todo=sorted(todo), request=self.request.model_dump())
        self._adopt(todo, active)
        for key, task in todo.items():
            if not any(t.key == key for t, _, _ in active.values()):
                self._submit(task, self.journal.attempts(key) + 1, active)
        failed: list[str] = []
        while active:
            statuses = self.client.status([pod for _, _, pod in active.values()])
            snap.running = 0
            for uid, (task, attempt, pod) in list(active.items()):
                status = statuses.get(uid)
                phase = pod_phase(status) if status else "Pending"
                if phase == "Running":
                    snap.running += 1
                if phase not in ("Succeeded", "Failed"):
                    continue
                assert status is not None
                del active[uid]
                self._finish(task, attempt, pod, status, phase)
                if phase == "Succeeded":
                    snap.done += 1
                    snap.events_done += task.events
                elif attempt <= self.request.retries:
                    self._submit(task, attempt + 1, active)
                else:
                    failed.append(task.key)
                    snap.failed += 1
            snap.pending = snap.total - snap.done - snap.failed - snap.running
            if on_update is not None:
                on_update(snap)
            if active:
                time.sleep(self.poll_interval)
        if not failed:
            self.finalize()
        return snap

    def _adopt(
        self, todo: dict[str, Task], active: dict[str, tuple[Task, int, dict[str, Any]]]
    ) -> None:
        """Attempts a previous run submitted and never saw end: follow them if the plugin has
        them, else they are lost and a new attempt runs."""
        opened = [e for k, e in self.journal.open_attempts().items() if k in todo]
        pods = [todo[e["key"]].build(e["attempt"]) for e in opened]
        try:
            known = self.client.status(pods)
        except PluginCallError:
            known = {}
        for e, pod in zip(opened, pods, strict=True):
            if pod["metadata"]["uid"] in known:
                active[pod["metadata"]["uid"]] = (todo[e["key"]], e["attempt"], pod)
            else:
                self.journal.append("end", key=e["key"], attempt=e["attempt"], phase="Lost")

    def _submit(
        self, task: Task, attempt: int, active: dict[str, tuple[Task, int, dict[str, Any]]]
    ) -> None:
        pod = task.build(attempt)
        self.journal.append(
            "submit",
            key=task.key,
            attempt=attempt,
            name=pod["metadata"]["name"],
            uid=pod["metadata"]["uid"],
        )
        self.client.create(pod, self.secrets)
        active[pod["metadata"]["uid"]] = (task, attempt, pod)

    def _finish(
        self, task: Task, attempt: int, pod: dict[str, Any], status: dict[str, Any], phase: str
    ) -> None:
        """Keep the logs of every container, record the end, write done.json on success."""
        attempt_dir = task.directory / f"a{attempt}"
        logs = attempt_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        spec = pod["spec"]
        every = list(status.get("initContainers") or []) + list(status.get("containers") or [])
        ran = {
            c["name"]
            for c in every
            if (c.get("state", {}).get("terminated") or {}).get("startedAt")
        }
        for c in spec.get("initContainers", []) + spec["containers"]:
            (logs / f"{c['name']}.log").write_text(self._logs(pod, c["name"], c["name"] in ran))
        seconds = {c["name"]: _seconds(c.get("state", {})) for c in every}
        codes = _exit_codes(status)
        self.journal.append("end", key=task.key, attempt=attempt, phase=phase, exit_codes=codes)
        with contextlib.suppress(PluginCallError):  # the plugin forgets it after its retention
            self.client.delete(pod)
        if phase != "Succeeded":
            return
        # what the attempt wrote (the logs beside it, for a directory output, are not output)
        files = {
            name: size
            for name, size in self.outputs.sizes(f"{task.output}/a{attempt}").items()
            if name.split("/", 1)[0] != "logs"
        }
        record = {
            "key": task.key,
            "attempt": attempt,
            "events": task.events,
            "pod": pod["metadata"]["name"],
            "container_seconds": seconds,
            "bytes": sum(files.values()),
            "ntuple_bytes": files.get("ntuple.root", 0),
            "args": {
                c["name"]: c["args"] for c in spec.get("initContainers", []) + spec["containers"]
            },
        }
        tmp = task.done_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(task.done_file)

    def _logs(self, pod: dict[str, Any], container: str, ran: bool) -> str:
        """A container's log; a container that ran and printed nothing is asked again a few
        times, since an empty answer was seen once in ~10 runs under load right after the pod
        ended (a failing step always prints its error)."""
        for _ in range(6 if ran else 1):
            try:
                text = self.client.logs(pod, container)
            except PluginCallError as exc:
                return f"(logs not available: {exc})\n"
            if text:
                return text
            time.sleep(0.5)
        return text

    def done_records(self) -> list[dict[str, Any]]:
        return [json.loads(t.done_file.read_text()) for t in self.tasks if t.done_file.exists()]

    def finalize(self) -> dict[str, Any]:
        """Merge the chunks and write provenance.json (idempotent)."""
        from flashlink.production.outputs import merge_ntuples, provenance  # noqa: PLC0415

        records = self.done_records()
        chunks = [
            self.outputs.url("jobs", r["key"], f"a{r['attempt']}", "ntuple.root")
            for r in records
            if r["key"] != "reference"
        ]
        # merged in the state directory (the output directory itself, or a local one for S3:
        # uproot writes a seekable local file), then renamed or uploaded whole
        self.state.mkdir(parents=True, exist_ok=True)
        local = self.state / "ntuple.root.merging"
        candidates = merge_ntuples(chunks, local, self.outputs)
        merged = self.outputs.url("ntuple.root")
        merged_bytes = local.stat().st_size
        self.outputs.put(local, merged)
        record = provenance(
            self.request, records, merged, candidates, self.journal, merged_bytes=merged_bytes
        )
        text = self.state / "provenance.json.writing"
        text.write_text(json.dumps(record, indent=2, default=str))
        self.outputs.put(text, self.outputs.url("provenance.json"))
        return record

    def cancel(self) -> int:
        """Delete every attempt the journal has open; the number deleted. Every open attempt
        is tried; if the plugin refused some, :class:`ProductionError` names them after the
        others are cancelled (they stay open in the journal, so cancel can be run again)."""
        n = 0
        failed: list[str] = []
        todo = {t.key: t for t in self.tasks}
        for key, e in self.journal.open_attempts().items():
            if key not in todo:
                continue
            pod = todo[key].build(e["attempt"])
            try:
                self.client.delete(pod)
            except PluginCallError as exc:
                failed.append(f"{pod['metadata']['name']} ({exc})")
                continue
            self.journal.append("end", key=key, attempt=e["attempt"], phase="Cancelled")
            n += 1
        if failed:
            raise ProductionError(
                f"cancelled {n} pod(s); the plugin did not delete {len(failed)}: "
                + "; ".join(failed)
                + " - run cancel again when the plugin answers"
            )
        return n
