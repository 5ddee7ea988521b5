"""The Slurm backend: job scripts submitted with ``sbatch`` and followed with ``squeue``/``sacct``.

Through the CLI, not a library: pyslurm's only current release (25.11) refuses Slurm 22.05
(``RuntimeError: Slurm version mismatch``, measured), while the CLI is on every login node.

Per call, what the scheduler sees:

- ``submit(jobs)``: one ``sbatch --parsable`` per job, the script on stdin with ``#SBATCH``
  directives (:mod:`._slurm_submit`); nothing is written to the job directory but Slurm's
  output file, so Secrets in a script stay in slurmctld's state only. If one job of a batch
  is refused, the ones already submitted are cancelled and the error raised.
- ``poll(ids)``: **one** ``squeue --json`` (every job slurmctld holds), plus **one**
  ``sacct`` for the ids it no longer holds, when accounting exists. A job in neither for
  ``lost_after_seconds`` is reported ``UNKNOWN`` with reason ``Lost``.
- ``cancel(id)``: ``scancel``; a job that already ended or is unknown is not an error.
- ``fetch(id)``: the job directory itself (Slurm sites share the filesystem).
- ``capacity()``: one ``sinfo --json`` over the configured partition's usable nodes.
"""

from __future__ import annotations

__all__ = ["SlurmBackend", "SlurmConfig"]

import json
import logging
import os
import pwd
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from flashlink.backends._batch import JobUser, LostTracker, prepare_job_dir, resolve_user
from flashlink.backends._slurm_states import (
    SACCT_FIELDS,
    SlurmRecord,
    json_errors,
    parse_sacct,
    parse_squeue_json,
    to_job_state,
)
from flashlink.backends._slurm_submit import SlurmConfig, directives, submission_script
from flashlink.backends._subprocess import CommandError, CommandResult, run
from flashlink.backends.base import BatchJob, Capacity, JobPhase, JobState
from flashlink.backends.errors import (
    BackendError,
    BackendUnavailableError,
    JobNotFoundError,
    SubmitError,
)

log = logging.getLogger(__name__)

#: stderr of a Slurm tool that could not reach its daemon (slurmctld, slurmdbd, munged).
_UNREACHABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused|"
    r"Zero Bytes were transmitted|Communication connection failure|"
    r"Could not establish a configuration source|backup controller in standby|"
    r"Unable to contact slurmdbd|Problem talking to the database|"
    r"Munge encode failed|Unable to establish controller|Resource temporarily unavailable|"
    r"Transport endpoint is not connected|No route to host",
    re.IGNORECASE,
)
_NO_ACCOUNTING = re.compile(r"accounting storage is disabled", re.IGNORECASE)
_JOB_ID = re.compile(r"\d+")
_USABLE_NODE = frozenset({"idle", "mixed", "allocated", "completing", "planned", "reserved"})


class _Skipped(Exception):
    """A job not submitted because another one of its batch was refused."""


class SlurmBackend:
    """A Slurm cluster reached through its command-line tools (see the module docstring)."""

    def __init__(self, name: str, config: SlurmConfig) -> None:
        self.name = name
        self.config = config
        self._user: JobUser | None = (
            resolve_user(config.job_user, name) if config.job_user else None
        )
        self._accounting = config.accounting
        self._dirs: dict[str, Path] = {}
        self._lost = LostTracker(config.lost_after_seconds)
        self._lock = threading.Lock()
        self.commands = 0  # scheduler commands issued so far (benchmarks, tests)
        # flashlink key -> job id of the jobs Slurm holds for us: read by one squeue on the
        # first submit (jobs of an earlier plugin process), then kept by the submissions.
        self._keys: dict[str, str] | None = None
        # keys whose sbatch got no answer (timeout, slurmctld away): the job may exist, so
        # the next submit of one of them asks squeue again
        self._doubtful: set[str] = set()

    @property
    def kind(self) -> str:
        return "slurm"

    # --- plumbing ---------------------------------------------------------------------------

    def _tool(self, name: str) -> str:
        return str(Path(self.config.bin_dir) / name) if self.config.bin_dir else name

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        if self.config.slurm_conf:
            env["SLURM_CONF"] = self.config.slurm_conf
        elif "SLURM_CONF" in os.environ:
            env["SLURM_CONF"] = os.environ["SLURM_CONF"]
        env["SLURM_TIME_FORMAT"] = "%s"  # sacct prints epochs: no time-zone guessing
        env["LC_ALL"] = "C"
        return env

    def _run(self, tool: str, *args: str, stdin: str | None = None) -> CommandResult:
        with self._lock:
            self.commands += 1
        try:
            return run(
                [self._tool(tool), *args],
                timeout=self.config.command_timeout_seconds,
                stdin=stdin,
                env=self._env(),
            )
        except CommandError as exc:
            if _UNREACHABLE.search(exc.stderr):
                raise BackendUnavailableError(
                    f"site {self.name!r}: Slurm is not answering ({tool}: {exc.stderr[-500:]}); "
                    "will retry"
                ) from exc
            raise

    def _query_user(self) -> str:
        if self._user is not None:
            return self._user.name
        return pwd.getpwuid(os.geteuid()).pw_name

    # --- Backend ----------------------------------------------------------------------------

    def _sbatch(self, job: BatchJob, script: str, stop: threading.Event) -> str:
        if stop.is_set():  # another job of the batch was refused: do not start more
            raise _Skipped
        prepare_job_dir(job.job_dir, self._user)
        try:
            result = self._run("sbatch", "--parsable", stdin=script)
        except BackendUnavailableError:
            with self._lock:
                self._doubtful.add(job.key)
            raise
        except CommandError as exc:
            raise SubmitError(
                f"site {self.name!r}: sbatch refused job {job.name} ({job.key}): "
                f"{exc.stderr[-1000:]}"
            ) from exc
        job_id = result.stdout.strip().split(";")[0]
        if not _JOB_ID.fullmatch(job_id):
            raise BackendError(
                f"site {self.name!r}: sbatch --parsable printed {result.stdout!r}, not a job id"
            )
        with self._lock:
            self._dirs[job_id] = job.job_dir
        return job_id

    def submit(self, jobs: Sequence[BatchJob]) -> list[str]:
        """Submit ``jobs``; a job whose key Slurm already holds returns that job's id.

        The plugin submits again a job whose id a crash kept it from recording: the first
        submit of a backend, and the next one after an sbatch that got no answer, ask squeue
        for the ``flashlink:<key>`` comments and return a queued job instead of running it
        twice. Other submits ask nothing but sbatch: one squeue per call cost as much as the
        sbatch itself with 100 jobs queued and grew with the queue (measured: 23 ms vs 18 ms;
        ~100 ms with 1,000 held jobs), and interLink sends its creates one pod at a time.
        ``submit_concurrency`` sbatch calls run at once: each mostly waits for slurmctld.
        """
        if not jobs:
            return []
        run_as = None
        if self._user is not None and os.geteuid() == 0:
            run_as = (self._user.name, self._user.group)
        scripts = []
        for job in jobs:  # build everything first: a bad job fails the batch before sbatch
            options = directives(job, self.config, run_as=run_as)
            scripts.append(submission_script(job.script, options))
        existing = self._existing(jobs)
        todo: dict[str, int] = {}  # new keys, each once -> index of its first job
        for index, job in enumerate(jobs):
            if job.key not in existing and job.key not in todo:
                todo[job.key] = index
        submitted: dict[str, str] = {}
        failures: list[BaseException] = []
        stop = threading.Event()
        workers = max(1, min(self.config.submit_concurrency, len(todo)))
        with ThreadPoolExecutor(workers, thread_name_prefix=f"sbatch-{self.name}") as pool:
            futures = {
                pool.submit(self._sbatch, jobs[i], scripts[i], stop): key for key, i in todo.items()
            }
            for future in as_completed(futures):
                try:
                    submitted[futures[future]] = future.result()
                except _Skipped:
                    pass
                except BaseException as exc:  # re-raised below, after the cleanup
                    stop.set()
                    failures.append(exc)
        if failures:
            for job_id in submitted.values():  # all or nothing
                try:
                    self.cancel(job_id)
                except BackendError as exc:
                    log.warning("could not cancel job %s after a failed batch: %s", job_id, exc)
            raise failures[0]
        with self._lock:
            if self._keys is not None:
                self._keys.update(submitted)
        return [existing.get(job.key) or submitted[job.key] for job in jobs]

    def _existing(self, jobs: Sequence[BatchJob]) -> dict[str, str]:
        """Key -> id of the jobs of ``jobs`` that Slurm already holds (see ``submit``)."""
        keys = {job.key for job in jobs}
        with self._lock:
            known = self._keys
            if known is not None and not keys & self._doubtful:
                return {k: known[k] for k in keys if k in known}
        found = {
            record.comment.removeprefix("flashlink:"): job_id
            for job_id, record in self._squeue().items()
            # a cancelled job is not adopted: the plugin cancels only pods it deleted, or the
            # rest of a batch one of whose jobs was refused, which it then submits again
            if record.comment
            and record.comment.startswith("flashlink:")
            and "CANCELLED" not in record.states
        }
        with self._lock:
            self._keys = {**(self._keys or {}), **found}
            self._doubtful -= keys
        return {k: found[k] for k in keys if k in found}

    def _squeue(self) -> dict[str, SlurmRecord]:
        # --user/--states narrow the answer on releases that honour them with --json;
        # 22.05 ignores both (and -j) and lists every job, so ids are filtered here.
        result = self._run("squeue", "--json", f"--user={self._query_user()}", "--states=all")
        try:
            return parse_squeue_json(result.stdout)
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(
                f"site {self.name!r}: Slurm is not answering ({exc}); will retry"
            ) from exc

    def _sacct(self, ids: Sequence[str]) -> tuple[dict[str, SlurmRecord], bool]:
        """Records of ``ids`` from accounting, and whether sacct answered at all.

        No answer this time (slurmdbd down) must not make jobs Lost; no accounting at all
        (measured: "Slurm accounting storage is disabled") is remembered and is an answer.
        """
        if self._accounting is False or not ids:
            return {}, True
        args = ["-X", "-n", "--parsable2", "-o", ",".join(SACCT_FIELDS), "-j", ",".join(ids)]
        try:
            result = self._run("sacct", *args)
        except CommandError as exc:
            if _NO_ACCOUNTING.search(exc.stderr):
                log.info("site %s: Slurm has no accounting; finished jobs become Lost", self.name)
                self._accounting = False
                return {}, True
            log.warning("site %s: sacct failed, trying again next poll: %s", self.name, exc)
            return {}, False
        except BackendUnavailableError as exc:
            log.warning("site %s: sacct unavailable, trying again next poll: %s", self.name, exc)
            return {}, False
        self._accounting = True
        return parse_sacct(result.stdout), True

    def poll(self, ids: Sequence[str]) -> dict[str, JobState]:
        wanted = [i for i in dict.fromkeys(ids) if _JOB_ID.fullmatch(i)]
        if not wanted:
            return {}
        queue = self._squeue()
        found: dict[str, SlurmRecord] = {i: queue[i] for i in wanted if i in queue}
        accounted, answered = self._sacct([i for i in wanted if i not in found])
        found.update({i: accounted[i] for i in wanted if i not in found and i in accounted})
        states = {job_id: to_job_state(record) for job_id, record in found.items()}
        with self._lock:
            for job_id, record in found.items():
                if record.work_dir:
                    self._dirs.setdefault(job_id, Path(record.work_dir))
        self._lost.seen(found)
        gone = [i for i in wanted if i not in found]
        if gone and answered:
            why = (
                "sacct has no record of it either"
                if self._accounting
                else "accounting (sacct) is disabled on this cluster, so its end was not recorded"
            )
            for job_id in self._lost.lost(gone):
                states[job_id] = JobState(
                    job_id,
                    JobPhase.UNKNOWN,
                    "Lost",
                    f"Slurm job {job_id} is no longer known to slurmctld and {why}; "
                    "the job directory holds whatever the job recorded",
                )
        return states

    def cancel(self, backend_id: str) -> None:
        if not _JOB_ID.fullmatch(backend_id):
            raise JobNotFoundError(f"{backend_id!r} is not a Slurm job id")
        with self._lock:  # as squeue's answer in submit: a cancelled job is not adopted
            if self._keys is not None:
                for key in [k for k, v in self._keys.items() if v == backend_id]:
                    del self._keys[key]
        try:
            self._run("scancel", backend_id)
        except CommandError as exc:
            # Measured on 22.05: scancel of a finished or unknown id exits 0 silently; other
            # releases say so on stderr and exit 1. Either way the job is not running.
            if re.search(r"Invalid job id|already completing or completed", exc.stderr):
                return
            raise BackendError(
                f"site {self.name!r}: scancel {backend_id} failed: {exc.stderr[-500:]}"
            ) from exc

    def fetch(self, backend_id: str) -> Path:
        with self._lock:
            known = self._dirs.get(backend_id)
        if known is not None:
            return known
        if _JOB_ID.fullmatch(backend_id):
            self.poll([backend_id])
            with self._lock:
                known = self._dirs.get(backend_id)
        if known is None:
            raise JobNotFoundError(
                f"site {self.name!r}: Slurm job {backend_id!r} is unknown to squeue and sacct"
            )
        return known

    def capacity(self) -> Capacity:
        result = self._run("sinfo", "--json")
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise BackendError(f"site {self.name!r}: sinfo --json printed no JSON") from exc
        if isinstance(data, dict) and data.get("errors"):  # exit 0 all the same (see squeue)
            raise BackendUnavailableError(
                f"site {self.name!r}: Slurm is not answering (sinfo: "
                f"{json_errors(data['errors'])}); will retry"
            )
        return _capacity(data, self.config)

    def describe(self) -> dict[str, Any]:
        """What ``/system-info`` shows about this site (no Slurm call)."""
        return {
            "kind": "slurm",
            "slurm_conf": self.config.slurm_conf or os.environ.get("SLURM_CONF"),
            "partition": self.config.partition,
            "accounting": self._accounting,
            "job_user": self.config.job_user,
            "commands": self.commands,
        }

    def close(self) -> None:
        """Nothing to release: every call is a separate process."""


def _node_gpus(gres: str) -> int:
    count = 0
    for item in gres.split(","):
        fields = re.sub(r"\(.*?\)", "", item).split(":")
        if fields[0] == "gpu" and len(fields) >= 2 and fields[-1].isdigit():
            count += int(fields[-1])
    return count


def _capacity(data: Any, config: SlurmConfig) -> Capacity:
    cpus = 0
    memory_mib = 0
    gpus = 0
    for node in data.get("nodes", []) if isinstance(data, dict) else []:
        partitions = node.get("partitions") or []
        if config.partition and config.partition not in partitions:
            continue
        state = node.get("state")
        names = {s.lower() for s in (state if isinstance(state, list) else [state]) if s}
        names |= {f.lower() for f in node.get("state_flags") or []}
        if not names & _USABLE_NODE or names & {"drain", "drained", "down", "fail"}:
            continue
        cpus += int(node.get("cpus") or 0)
        memory_mib += int(node.get("real_memory") or 0)
        gpus += _node_gpus(str(node.get("gres") or ""))
    accelerators = {"nvidia.com/gpu": gpus} if gpus else {}
    return Capacity(
        cpu=float(cpus),
        memory_bytes=memory_mib * 1024 * 1024,
        pods=config.max_pods,
        accelerators=accelerators,
    )
