"""The HTCondor backend: job scripts submitted to a schedd through the ``htcondor2`` bindings.

No CLI parsing: queries return ClassAds, submissions are one call per group of jobs. Per call,
what the schedd sees:

- ``submit(jobs)``: the job script and :func:`~._htcondor_submit.wrapper_script` are written
  to each job directory, then **one** ``Schedd.submit`` per group of jobs with the same submit
  keys (normally one for the whole batch: one cluster, one transaction); with ``spool = true``
  also one ``Schedd.spool`` per group (inputs sent to the remote schedd, so the job directory
  need not be visible to it). If a group is refused, the groups already queued are removed.
- ``poll(ids)``: **one** ``Schedd.query`` over the ids' clusters, plus **one**
  ``Schedd.history`` for the ids no longer queued. Missing from both for
  ``lost_after_seconds``: ``UNKNOWN``/``Lost``. Running jobs past their ``FlashlinkDeadline``
  are held in **one** ``Schedd.act(Hold)`` (subcode ``DEADLINE_HOLD_SUBCODE``) and reported
  failed ``DeadlineExceeded`` at once: the reconciler's poll is what makes a deadline exact,
  the submit description's ``periodic_hold`` is the backstop while no plugin polls.
- ``cancel(id)``: ``Schedd.act(Remove)``; a job no longer queued is not an error.
- ``fetch(id)``: the job directory. Without spool the schedd's output transfer has already
  written it; with ``transfer_interval_seconds`` the latest snapshot pushed by the running job
  is unpacked into it first. With spool, a finished job's outputs are retrieved
  (``Schedd.retrieve``) on the first fetch, after which the schedd lets the job leave.
- ``capacity()``: the configured capacity, or one collector query summing the slots.

The bindings' configuration is process-wide, so each call takes a module lock and applies this
site's settings (token directory, SciToken file, authentication methods) to
``htcondor2.param`` for its duration; several sites can then live in one plugin.
"""

from __future__ import annotations

__all__ = ["HTCondorBackend", "HTCondorConfig"]

import gzip
import io
import logging
import os
import re
import tarfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from flashlink.backends._batch import JobUser, LostTracker, prepare_job_dir, resolve_user
from flashlink.backends._htcondor_states import (
    PROJECTION,
    ad_to_dict,
    deadline_held,
    job_id,
    past_deadline,
    to_job_state,
)
from flashlink.backends._htcondor_submit import (
    DEADLINE_HOLD_REASON,
    DEADLINE_HOLD_SUBCODE,
    EXECUTABLE,
    PROGRESS_FILE,
    SCRIPT,
    CapacityConfig,
    HTCondorConfig,
    SubmitGroup,
    job_commands,
    static_commands,
    submit_groups,
    wrapper_script,
)
from flashlink.backends.base import BatchJob, Capacity, JobPhase, JobState
from flashlink.backends.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidSiteConfigError,
    JobNotFoundError,
    SubmitError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_LOCK = threading.RLock()  # htcondor2.param is process-wide
_ID = re.compile(r"(\d+)\.(\d+)")
_COMPLETED = 4
#: An HTCondorException that means "could not reach or authenticate", not "refused the job".
_UNREACHABLE = re.compile(
    r"connect|locate|authenticat|SECMAN|timed out|timeout|communicat|refused|"
    r"Unable to find|No such|not reachable",
    re.IGNORECASE,
)
_HISTORY_PAIRS = 200  # past this many ids, ask history by cluster instead of by (cluster, proc)


def _bindings() -> ModuleType:
    try:
        import htcondor2  # noqa: PLC0415 - optional dependency, imported on use
    except ImportError as exc:
        raise InvalidSiteConfigError(
            "the HTCondor backend needs the htcondor Python bindings: "
            "pip install 'flashlink[htcondor]'"
        ) from exc
    module: ModuleType = htcondor2
    return module


class HTCondorBackend:
    """A schedd (local, or remote through a collector, e.g. an HTCondor CE)."""

    def __init__(self, name: str, config: HTCondorConfig) -> None:
        self.name = name
        self.config = config
        self._h = _bindings()
        if config.condor_config:
            with _LOCK:
                if os.environ.get("CONDOR_CONFIG") != config.condor_config:
                    os.environ["CONDOR_CONFIG"] = config.condor_config
                    self._h.reload_config()  # the bindings read CONDOR_CONFIG at import
        self._params = dict(config.settings)
        if config.token_dir:
            self._params["SEC_TOKEN_DIRECTORY"] = config.token_dir
        if config.scitoken_file:
            self._params["SCITOKENS_FILE"] = config.scitoken_file
        methods = config.auth_methods or (
            ("SCITOKENS",) if config.scitoken_file else ("IDTOKENS",) if config.token_dir else ()
        )
        if methods:
            self._params["SEC_CLIENT_AUTHENTICATION_METHODS"] = ",".join(methods)
        self._user: JobUser | None = (
            resolve_user(config.job_user, name) if config.job_user else None
        )
        self._wrapper = wrapper_script(config.transfer_interval_seconds, config.chirp)
        self._schedd: Any = None
        self._dirs: dict[str, Path] = {}
        self._extracted: dict[str, int] = {}
        self._retrievable: set[str] = set()  # spool: finished, outputs still on the schedd
        self._lost = LostTracker(config.lost_after_seconds)
        self.commands = 0  # schedd/collector calls so far (benchmarks, tests)
        # FlashlinkKey -> job id of the jobs the schedd holds for us: one query on the first
        # submit (jobs of an earlier plugin process), then kept by the submissions
        self._keys: dict[str, str] | None = None
        # keys of a submission that failed without an answer: they may be queued, so the
        # next submit of one of them queries the schedd again
        self._doubtful: set[str] = set()

    @property
    def kind(self) -> str:
        return "htcondor"

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[None]:
        param = self._h.param
        with _LOCK:
            saved = {key: param.get(key) for key in self._params}
            for key, value in self._params.items():
                param[key] = value
            try:
                yield
            finally:
                for key, old in saved.items():
                    if old is None:
                        param.pop(key, None)
                    else:
                        param[key] = old

    def _unavailable(self, what: str, exc: Exception) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"site {self.name!r}: HTCondor did not answer {what}: {exc}; will retry"
        )

    def _connect(self) -> Any:
        h = self._h
        self.commands += 1
        collector = h.Collector(self.config.collector) if self.config.collector else h.Collector()
        if self.config.schedd_name:
            # locate() answers None, not an error, for a name the collector does not know
            # (measured), and Schedd(None) would silently pick the local schedd
            location = collector.locate(h.DaemonType.Schedd, self.config.schedd_name)
            if location is None:
                raise BackendUnavailableError(
                    f"site {self.name!r}: the collector advertises no schedd named "
                    f"{self.config.schedd_name!r} (down, or a wrong schedd_name)"
                )
            return h.Schedd(location)
        ads = collector.query(h.AdType.Schedd, projection=["Name", "MyAddress", "CondorVersion"])
        if len(ads) > 1:
            names = ", ".join(sorted(str(ad.get("Name")) for ad in ads))
            raise InvalidSiteConfigError(
                f"site {self.name!r}: the collector knows several schedds ({names}); "
                "set schedd_name"
            )
        if not ads:
            raise BackendUnavailableError(
                f"site {self.name!r}: the collector advertises no schedd (is it down?)"
            )
        return h.Schedd(ads[0])

    def _call(self, what: str, action: Callable[[Any], T], *, retry: bool = True) -> T:
        """Run ``action(schedd)`` with this site's settings.

        A failure drops the cached schedd address (a restarted schedd gets a new shared-port
        name) and, when ``retry``, tries once more after locating it again. Submissions do not
        retry: the first attempt may have queued the jobs before failing.
        """
        attempts = 2 if retry else 1
        with self._session():
            for attempt in range(1, attempts + 1):
                try:
                    if self._schedd is None:
                        self._schedd = self._connect()
                    self.commands += 1
                    return action(self._schedd)
                except self._h.HTCondorException as exc:
                    self._schedd = None
                    if attempt < attempts:
                        continue
                    if retry or _UNREACHABLE.search(str(exc)):
                        raise self._unavailable(what, exc) from exc
                    raise SubmitError(f"site {self.name!r}: {what} was refused: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # --- submit -----------------------------------------------------------------------------

    def _write_files(self, job: BatchJob) -> None:
        prepare_job_dir(job.job_dir, self._user)
        owner = self._user if os.geteuid() == 0 else None
        for name, text, mode in (
            (SCRIPT, job.script, 0o700 if job.contains_secrets else 0o755),
            (EXECUTABLE, self._wrapper, 0o755),
        ):
            path = job.job_dir / name
            try:
                path.unlink(missing_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                if owner is not None:
                    os.chown(path, owner.uid, owner.gid)
            except OSError as exc:
                raise SubmitError(f"cannot write {path}: {exc}") from exc

    def _submit_group(self, description: dict[str, str], items: Sequence[dict[str, str]]) -> Any:
        def action(schedd: Any) -> Any:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = schedd.submit(
                    self._h.Submit(description), itemdata=iter(items), spool=self.config.spool
                )
            for warning in caught:
                log.info("site %s: submit: %s", self.name, warning.message)
            if self.config.spool:
                self.commands += 1
                schedd.spool(result)
            return result

        return self._call("the submission", action, retry=False)

    def _existing(self, keys: set[str]) -> dict[str, str]:
        """Key -> id of the jobs among ``keys`` that the schedd already holds (see submit)."""
        if self._keys is not None and not keys & self._doubtful:
            return {k: self._keys[k] for k in keys if k in self._keys}
        found = self._queued_keys()
        self._keys = {**(self._keys or {}), **found}
        self._doubtful -= keys
        return {k: found[k] for k in keys if k in found}

    def _queued_keys(self) -> dict[str, str]:
        """Ids of the queued jobs that carry a ``FlashlinkKey`` (one query); removed jobs are
        not adopted: the plugin removes only pods it deleted and the rest of a failed batch,
        which it then submits again."""
        ads = self._call(
            "the queue query",
            lambda s: s.query(
                constraint="FlashlinkKey =!= undefined && JobStatus =!= 3",
                projection=["ClusterId", "ProcId", "FlashlinkKey"],
            ),
        )
        found = {}
        for ad in ads:
            plain = ad_to_dict(ad)
            jid = job_id(plain)
            if jid is not None and isinstance(plain.get("FlashlinkKey"), str):
                found[plain["FlashlinkKey"]] = jid
        return found

    def submit(self, jobs: Sequence[BatchJob]) -> list[str]:
        """Submit ``jobs``; a job whose key is already queued returns that job's id.

        The plugin submits again a job whose id a crash kept it from recording: the first
        submit of a backend, and the next one after a submission that got no answer, query
        the schedd for the ``FlashlinkKey`` attributes and return a queued job instead of
        running it twice. Other submits are one ``Schedd.submit``: a query per call cost
        more than the submission with 600 jobs queued (an ``identicalMember`` constraint is
        evaluated against every job in the queue), and interLink creates one pod at a time.
        """
        if not jobs:
            return []
        per_job = [job_commands(job, self.config) for job in jobs]  # all checks first
        existing = self._existing({job.key for job in jobs})
        ids: list[str | None] = [existing.get(job.key) for job in jobs]
        seen = set(existing)
        todo: list[int] = []  # the jobs to queue now: new keys, each once
        for index, job in enumerate(jobs):
            if job.key not in seen:
                seen.add(job.key)
                todo.append(index)
        queued_now = set(todo)
        groups = submit_groups([per_job[i] for i in todo], static_commands(self.config))
        for i in todo:
            self._write_files(jobs[i])
        for index, queued in self._submit_all(groups, [jobs[i].key for i in todo]).items():
            ids[todo[index]] = queued
        by_key = {jobs[i].key: ids[i] for i in todo}
        if self._keys is not None:
            self._keys.update((k, v) for k, v in by_key.items() if v is not None)
        out = []
        for index, job in enumerate(jobs):
            jid = ids[index] or by_key[job.key]  # a key twice in one batch: one job
            assert jid is not None
            out.append(jid)
            self._dirs.setdefault(jid, job.job_dir)
            if self.config.spool and job.contains_secrets and index in queued_now:
                # the schedd holds its own copy now; keep no Secret on this disk
                (job.job_dir / SCRIPT).unlink(missing_ok=True)
        return out

    def _submit_all(self, groups: Sequence[SubmitGroup], keys: Sequence[str]) -> dict[int, str]:
        """Queue every group (one transaction each): index in ``keys`` -> job id; all or
        nothing (the clusters already queued are removed when a later group fails)."""
        ids: dict[int, str] = {}
        clusters: list[int] = []
        try:
            for group in groups:
                try:
                    result = self._submit_group(group.description, group.items)
                except BackendUnavailableError:
                    self._doubtful.update(keys[i] for i in group.indexes)
                    raise
                cluster, first = int(result.cluster()), int(result.first_proc())
                clusters.append(cluster)
                for offset, index in enumerate(group.indexes):
                    ids[index] = f"{cluster}.{first + offset}"
        except BaseException:
            for cluster in clusters:
                try:
                    self._remove_cluster(cluster)
                except BackendError as exc:
                    log.warning(
                        "could not remove cluster %s after a failed batch: %s", cluster, exc
                    )
            raise
        return ids

    def _remove_cluster(self, cluster: int) -> None:
        def action(schedd: Any) -> Any:
            return schedd.act(self._h.JobAction.Remove, cluster, reason="flashlink batch failed")

        self._call("the removal", action)

    # --- poll -------------------------------------------------------------------------------

    def _history(self, missing: Sequence[str]) -> tuple[dict[str, dict[str, Any]], bool]:
        pairs = [_ID.fullmatch(i) for i in missing]
        if len(missing) <= _HISTORY_PAIRS:
            constraint = " || ".join(
                f"(ClusterId == {m.group(1)} && ProcId == {m.group(2)})" for m in pairs if m
            )
            match = len(missing)
        else:
            clusters = sorted({m.group(1) for m in pairs if m})
            constraint = f"member(ClusterId, {{{', '.join(clusters)}}})"
            match = -1
        try:
            ads = self._call(
                "the history query",
                lambda s: s.history(
                    constraint=constraint, projection=list(PROJECTION), match=match
                ),
            )
        except BackendUnavailableError as exc:
            log.warning("site %s: history unavailable, trying again next poll: %s", self.name, exc)
            return {}, False
        wanted = set(missing)
        out = {}
        for ad in ads:
            plain = ad_to_dict(ad)
            jid = job_id(plain)
            if jid in wanted and jid not in out:
                out[jid] = plain
        return out, True

    def poll(self, ids: Sequence[str]) -> dict[str, JobState]:
        wanted = [i for i in dict.fromkeys(ids) if _ID.fullmatch(i)]
        if not wanted:
            return {}
        clusters = sorted({i.split(".")[0] for i in wanted}, key=int)
        constraint = f"member(ClusterId, {{{', '.join(clusters)}}})"
        ads = self._call(
            "the queue query", lambda s: s.query(constraint=constraint, projection=list(PROJECTION))
        )
        found: dict[str, dict[str, Any]] = {}
        for ad in ads:
            plain = ad_to_dict(ad)
            jid = job_id(plain)
            if jid is not None:
                found[jid] = plain
        found = {i: found[i] for i in wanted if i in found}
        missing = [i for i in wanted if i not in found]
        answered = True
        if missing:
            history, answered = self._history(missing)
            found.update(history)
        now = time.time()
        overdue = [jid for jid, ad in found.items() if past_deadline(ad, now)]
        for jid in self._hold_overdue(overdue):
            found[jid] = deadline_held(found[jid], now)
        states = {}
        for jid, ad in found.items():
            state = to_job_state(ad, now=now, fail_held_after=self.config.fail_held_after_seconds)
            states[jid] = state
            self._note(jid, ad, state)
        self._lost.seen(found)
        gone = [i for i in wanted if i not in found]
        if gone and answered:
            for jid in self._lost.lost(gone):
                states[jid] = JobState(
                    jid,
                    JobPhase.UNKNOWN,
                    "Lost",
                    f"HTCondor job {jid} is neither in the schedd's queue nor in its history; "
                    "the job directory holds whatever came back",
                )
        return states

    def _hold_overdue(self, ids: Sequence[str]) -> list[str]:
        """Hold the running jobs past their deadline (one call); the ids now held.

        The bindings pass a hold subcode only as ``reason=(text, subcode)`` (a plain string
        reason is dropped); the schedd records HoldReasonCode 1 and that subcode. Holding a
        job already held is not an error (``TotalAlreadyDone``), so a poll that races the
        ``periodic_hold`` backstop, or a second plugin, does no harm. When not every job was
        held (one left the queue meanwhile), the next poll reads what happened to each.
        """
        if not ids:
            return []
        reason = (DEADLINE_HOLD_REASON, DEADLINE_HOLD_SUBCODE)
        try:
            result = self._call(
                "the deadline hold",
                lambda s: s.act(self._h.JobAction.Hold, list(ids), reason=reason),
            )
        except BackendError as exc:
            log.warning(
                "site %s: could not hold jobs %s past their deadline, trying again next poll "
                "(periodic_hold is the backstop): %s",
                self.name,
                ", ".join(ids),
                exc,
            )
            return []
        counts = dict(result or {})
        held = _number(counts.get("TotalSuccess")) + _number(counts.get("TotalAlreadyDone"))
        log.info(
            "site %s: held jobs %s past their activeDeadlineSeconds: %s",
            self.name,
            ", ".join(ids),
            counts,
        )
        return list(ids) if held == len(ids) else []

    def _note(self, jid: str, ad: dict[str, Any], state: JobState) -> None:
        """Remember where the job's directory is and what ``fetch`` must do for it."""
        if isinstance(ad.get("Iwd"), str):
            self._dirs.setdefault(jid, Path(ad["Iwd"]))
        finished = state.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED)
        waiting = not isinstance(ad.get("StageOutFinish"), int)
        if self.config.spool and ad.get("JobStatus") == _COMPLETED and waiting:
            self._retrievable.add(jid)
        if finished and ad.get("FlashlinkSecretScript"):
            self._forget_secret(jid)

    def _forget_secret(self, jid: str) -> None:
        job_dir = self._dirs.get(jid)
        if job_dir is not None and not self.config.spool:
            # the job has left the execute node for good: no rerun will need the script
            (job_dir / SCRIPT).unlink(missing_ok=True)

    # --- cancel / fetch / capacity ----------------------------------------------------------

    def cancel(self, backend_id: str) -> None:
        if not _ID.fullmatch(backend_id):
            raise JobNotFoundError(f"{backend_id!r} is not an HTCondor job id (cluster.proc)")
        if self._keys is not None:  # as the query in submit: a removed job is not adopted
            # list(): a C-level copy, safe against the submitter thread adding keys meanwhile
            for key in [k for k, v in list(self._keys.items()) if v == backend_id]:
                self._keys.pop(key, None)
        result = self._call(
            "the removal",
            lambda s: s.act(self._h.JobAction.Remove, [backend_id], reason="deleted by flashlink"),
        )
        log.info("site %s: remove %s: %s", self.name, backend_id, dict(result or {}))

    def _job_dir(self, backend_id: str) -> Path:
        known = self._dirs.get(backend_id)
        if known is None and _ID.fullmatch(backend_id):
            self.poll([backend_id])
            known = self._dirs.get(backend_id)
        if known is None:
            raise JobNotFoundError(
                f"site {self.name!r}: HTCondor job {backend_id!r} is unknown to the schedd"
            )
        return known

    def _retrieve(self, backend_id: str) -> None:
        """Bring a finished spooled job's outputs back, once: only jobs the last poll saw
        completed and not yet retrieved, so a fetch of a running job costs no schedd call."""
        if backend_id not in self._retrievable:
            return
        self._call("the output retrieval", lambda s: s.retrieve(backend_id))
        # after this the schedd sets StageOutFinish and lets the job leave the queue
        self._retrievable.discard(backend_id)

    def _unpack_progress(self, backend_id: str, job_dir: Path) -> None:
        path = job_dir / PROGRESS_FILE
        try:
            stamp = path.stat().st_mtime_ns
            if self._extracted.get(backend_id) == stamp:
                return
            # decompress fully first: a snapshot still being written fails here, whole
            data = gzip.decompress(path.read_bytes())
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                _extract(archive, job_dir)
        except FileNotFoundError:
            return
        except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile) as exc:
            log.debug("site %s: snapshot of %s not readable yet: %s", self.name, backend_id, exc)
            return
        self._extracted[backend_id] = stamp

    def fetch(self, backend_id: str) -> Path:
        job_dir = self._job_dir(backend_id)
        if self.config.spool:
            self._retrieve(backend_id)
        elif self.config.transfer_interval_seconds is not None:
            self._unpack_progress(backend_id, job_dir)
        return job_dir

    def capacity(self) -> Capacity:
        fixed = self.config.capacity
        if fixed is not None:
            return _fixed_capacity(fixed, self.config.max_pods)
        h = self._h
        with self._session():
            try:
                self.commands += 1
                collector = (
                    h.Collector(self.config.collector) if self.config.collector else h.Collector()
                )
                ads = collector.query(
                    h.AdType.Startd,
                    projection=[
                        "Cpus",
                        "Memory",
                        "GPUs",
                        "TotalSlotCpus",
                        "TotalSlotMemory",
                        "TotalSlotGPUs",
                        "PartitionableSlot",
                        "DynamicSlot",
                    ],
                )
            except h.HTCondorException as exc:
                raise self._unavailable("the collector query", exc) from exc
        cpus = memory_mb = gpus = 0.0
        for ad in ads:
            plain = {k: ad.get(k) for k in ("PartitionableSlot", "DynamicSlot")}
            if plain["DynamicSlot"] is True:
                continue  # counted in its partitionable parent's totals
            total = plain["PartitionableSlot"] is True
            cpus += _number(ad.get("TotalSlotCpus" if total else "Cpus"))
            memory_mb += _number(ad.get("TotalSlotMemory" if total else "Memory"))
            gpus += _number(ad.get("TotalSlotGPUs" if total else "GPUs"))
        return Capacity(
            cpu=cpus,
            memory_bytes=int(memory_mb) * 1024 * 1024,
            pods=self.config.max_pods,
            accelerators={"nvidia.com/gpu": int(gpus)} if gpus else {},
        )

    def describe(self) -> dict[str, Any]:
        """What ``/system-info`` shows about this site (no schedd call)."""
        return {
            "kind": "htcondor",
            "collector": self.config.collector or self._h.param.get("COLLECTOR_HOST"),
            "schedd": self.config.schedd_name,
            "spool": self.config.spool,
            "transfer_interval_seconds": self.config.transfer_interval_seconds,
            "auth_methods": self._params.get("SEC_CLIENT_AUTHENTICATION_METHODS"),
            "commands": self.commands,
        }

    def close(self) -> None:
        self._schedd = None


def _extract(archive: tarfile.TarFile, target: Path) -> None:
    """Unpack regular files and directories only, never outside ``target``.

    By hand: Debian 12's Python 3.11.2 predates ``extractall(filter="data")``. The archive
    comes from a job, i.e. from the user: links, devices and absolute or ``..`` paths are
    skipped. Files are replaced atomically, so a reader never sees half a log.
    """
    root = target.resolve()
    info = root.stat()
    # as root, hand every file to the job directory's owner: the schedd's final output
    # transfer writes as the job's user and must be able to replace them (measured: hold
    # "writing to file .../containers/main/log: (errno 13) Permission denied")
    owner = (info.st_uid, info.st_gid) if os.geteuid() == 0 else None
    for member in archive.getmembers():
        relative = Path(member.name)
        if relative.is_absolute() or ".." in relative.parts:
            continue
        dest = (root / relative).resolve()
        if dest != root and root not in dest.parents:
            continue
        if member.isdir():
            dest.mkdir(parents=True, exist_ok=True)
            if owner is not None:
                os.chown(dest, *owner)
        elif member.isfile():
            source = archive.extractfile(member)
            if source is None:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            partial = dest.with_name(f".{dest.name}.flashlink-partial")
            partial.write_bytes(source.read())
            partial.chmod(0o755 if member.mode & 0o111 else 0o644)
            if owner is not None:
                os.chown(partial, *owner)
            partial.replace(dest)


def _number(value: Any) -> float:
    # not bool, and not classad2's Undefined (an IntEnum)
    if type(value) in (int, float):
        return float(value)
    return 0.0


def _fixed_capacity(fixed: CapacityConfig, pods: int) -> Capacity:
    return Capacity(
        cpu=fixed.cpu,
        memory_bytes=fixed.memory_bytes,
        pods=pods,
        accelerators={"nvidia.com/gpu": fixed.gpus} if fixed.gpus else {},
    )
