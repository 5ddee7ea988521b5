"""The local backend: job scripts run as detached sub-processes of this machine.

The embedded default (and the way to run everything on a laptop). Jobs run in submission order
while their CPU and memory requests fit in what :class:`LocalConfig` grants; the rest wait in a
queue and report ``pending``/``Queued``. Each job is ``bash job.sh`` in its job directory, in a
session of its own (``setsid``), so it outlives the plugin: stopping or killing the plugin
leaves jobs running, and a new :class:`LocalBackend` on the same ``state_dir`` adopts them again.

Every job has a record ``STATE_DIR/jobs/ID.json`` (replaced atomically at each transition):
key, job directory, requests, and once started its pid, the process start time (field 22 of
``/proc/PID/stat``, clock ticks since boot) and the boot id. A pid alone is not an identity
(pids are reused); pid + start time + boot id is. A job adopted after a restart is no longer
our child, so its exit code comes from the ``pod.json`` its script writes at the end (see
:mod:`flashlink.jobscript.state`); a job that vanished without writing one is reported
``failed`` with reason ``Lost``.

A scheduler thread (woken by submit and cancel, else every ``tick_seconds``) reaps exits, starts
queued jobs that fit, and turns an overdue cancel into SIGKILL of the job's process group.
:meth:`LocalBackend.poll` never touches a process: it is one pass over the in-memory records.
"""

from __future__ import annotations

__all__ = ["LocalBackend", "LocalConfig"]

import contextlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flashlink.backends.base import BatchJob, Capacity, JobPhase, JobState
from flashlink.backends.errors import InvalidSiteConfigError, JobNotFoundError, SubmitError
from flashlink.jobscript import parse_pod_record
from flashlink.kube import parse_quantity

_log = logging.getLogger(__name__)

SCRIPT = "job.sh"
OUTPUT = "local.out"  # the script's own stdout and stderr
_RECORD_VERSION = 1


class LocalConfig(BaseModel):
    """``[sites.NAME.backend]`` of a ``kind = "local"`` site: what this machine lends to jobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float | None = Field(
        default=None,
        gt=0,
        description="CPUs the running jobs may request together; default: all here",
    )
    memory: str | None = Field(
        default=None,
        description="memory the running jobs may request together, a Kubernetes quantity "
        "(8Gi); default: this machine's total",
    )
    max_running: int | None = Field(
        default=None, ge=1, description="at most this many jobs run at once, whatever they request"
    )
    pods: int = Field(
        default=1000, ge=1, description="pods advertised to Kubernetes (queued ones count as well)"
    )
    accelerators: dict[str, int] = Field(
        default_factory=dict,
        description="devices lent to jobs, e.g. {'nvidia.com/gpu' = 1}; jobs asking for more wait",
    )
    default_cpu: float = Field(
        default=1.0, gt=0, description="CPUs a job that requests none counts for in the limit"
    )
    kill_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="after a cancel's SIGTERM, SIGKILL the job's process group once this has "
        "passed (the script itself gives each container its grace period first)",
    )
    forget_after_seconds: float = Field(
        default=7 * 86_400.0,
        ge=0,
        description="records of jobs that ended this long ago are deleted (the plugin forgets "
        "deleted pods after its retention_seconds, one day by default)",
    )
    shell: str = Field(default="bash", description="the shell that runs job scripts")
    env: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables for every job"
    )
    state_dir: Path | None = Field(
        default=None,
        description="where the job records are kept; the plugin sets STATE_DIR/sites/NAME; "
        "default $XDG_STATE_HOME/flashlink/local/NAME",
    )
    tick_seconds: float = Field(
        default=0.2, gt=0, le=10, description="how often the scheduler looks at running jobs"
    )

    @field_validator("memory")
    @classmethod
    def _memory_is_a_quantity(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quantity(value)  # raises a ValueError naming the accepted forms
        return value


Status = Literal["queued", "running", "exited", "cancelled", "lost"]


@dataclass
class _Record:
    """One job, as kept in memory and in ``jobs/ID.json``."""

    id: str
    key: str
    name: str
    job_dir: str
    cpu: float
    memory: int
    gpus: dict[str, int]
    submitted_ns: int
    status: Status = "queued"
    pid: int | None = None
    start_ticks: int | None = None
    boot_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    cancel_at: float | None = None  # wall clock (time.time) of the cancel's SIGTERM
    version: int = _RECORD_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> _Record:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # pragma: no cover - every Linux has it
        return ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) is in parentheses and may hold spaces or ')': split after the last one
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _default_state_dir(name: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "flashlink" / "local" / name


def _write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


class LocalBackend:
    """Runs job scripts on this machine (see the module docstring)."""

    def __init__(self, name: str, config: LocalConfig | None = None) -> None:
        self.name = name
        self.config = config or LocalConfig()
        cpus = self.config.cpus if self.config.cpus is not None else float(os.cpu_count() or 1)
        memory = (
            int(parse_quantity(self.config.memory))
            if self.config.memory is not None
            else _machine_memory()
        )
        self._cpus, self._memory = cpus, memory
        self._state_dir = self.config.state_dir or _default_state_dir(name)
        self._records_dir = self._state_dir / "jobs"
        try:
            self._records_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise InvalidSiteConfigError(
                f"site {name!r}: cannot create the local backend's state directory "
                f"{self._records_dir}: {exc.strerror}; set state_dir to a writable directory"
            ) from exc
        self._boot = _boot_id()
        self._lock = threading.Condition()
        self._jobs: dict[str, _Record] = {}
        self._by_key: dict[str, str] = {}
        self._queue: list[str] = []  # ids in submission order
        self._live: dict[str, _Record] = {}  # running jobs: what the scheduler looks at
        self._states: dict[str, JobState] = {}  # poll's answers, until a record changes
        self._pruned_at = 0.0
        self._load()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"flashlink-local-{name}", daemon=True
        )
        self._thread.start()

    # --- the Backend protocol -----------------------------------------------------------------

    @property
    def kind(self) -> str:
        return "local"

    def submit(self, jobs: Sequence[BatchJob]) -> list[str]:
        """Queue the jobs; a job whose key is already known returns its existing id.

        The plugin calls submit again for a job whose outcome a crash kept it from recording;
        the key makes that safe.
        """
        wanted = [self._requests(job) for job in jobs]  # all checks first: all or nothing
        ids: list[str] = []
        with self._lock:
            for job, (cpu, memory, gpus) in zip(jobs, wanted, strict=True):
                known = self._by_key.get(job.key)
                if known is not None:
                    ids.append(known)
                    continue
                record = _Record(
                    id=uuid.uuid4().hex[:16],
                    key=job.key,
                    name=job.name,
                    job_dir=str(job.job_dir),
                    cpu=cpu,
                    memory=memory,
                    gpus=gpus,
                    submitted_ns=time.time_ns(),
                )
                self._prepare_dir(job)
                self._save(record)
                self._jobs[record.id] = record
                self._by_key[job.key] = record.id
                self._queue.append(record.id)
                ids.append(record.id)
            self._lock.notify_all()
        return ids

    def poll(self, ids: Sequence[str]) -> dict[str, JobState]:
        with self._lock:
            out: dict[str, JobState] = {}
            for i in ids:
                state = self._states.get(i)
                if state is None:
                    record = self._jobs.get(i)
                    if record is None:
                        continue
                    state = self._states[i] = self._state(record)
                out[i] = state
            return out

    def cancel(self, backend_id: str) -> None:
        with self._lock:
            record = self._jobs.get(backend_id)
            if record is None:
                raise JobNotFoundError(
                    f"site {self.name!r} has no local job {backend_id!r} "
                    f"(its records are in {self._records_dir})"
                )
            if record.status == "queued":
                self._queue.remove(record.id)
                self._finish(
                    record,
                    "cancelled",
                    exit_code=None,
                    reason="Cancelled",
                    message="cancelled while queued",
                )
            elif record.status == "running" and record.cancel_at is None:
                record.cancel_at = time.time()
                self._save(record)
                self._signal(record, signal.SIGTERM, group=False)
            self._lock.notify_all()

    def fetch(self, backend_id: str) -> Path:
        with self._lock:
            record = self._jobs.get(backend_id)
        if record is None:
            raise JobNotFoundError(f"site {self.name!r} has no local job {backend_id!r}")
        return Path(record.job_dir)

    def capacity(self) -> Capacity:
        return Capacity(
            cpu=self._cpus,
            memory_bytes=self._memory,
            pods=self.config.pods,
            accelerators=dict(self.config.accelerators),
        )

    def describe(self) -> dict[str, Any]:
        """What ``/system-info`` shows about this site."""
        with self._lock:
            counts: dict[str, int] = {}
            for record in self._jobs.values():
                counts[record.status] = counts.get(record.status, 0) + 1
            used_cpu, used_memory, _, _ = self._used()
        return {
            "kind": "local",
            "state_dir": str(self._state_dir),
            "shell": self.config.shell,
            "jobs": counts,
            "cpu_in_use": used_cpu,
            "memory_in_use": used_memory,
        }

    def close(self) -> None:
        """Stop the scheduler thread; running jobs keep running (a new backend adopts them)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    # --- submission -----------------------------------------------------------------------------

    def _requests(self, job: BatchJob) -> tuple[float, int, dict[str, int]]:
        res = job.resources
        cpu = float(res.cpu) if res.cpu is not None and res.cpu > 0 else self.config.default_cpu
        memory = res.memory_bytes or 0
        gpus = {k: v for k, v in res.gpus.items() if v > 0}
        where = f"pod {job.name} ({job.key})"
        if cpu > self._cpus:
            raise SubmitError(
                f"{where} requests {Decimal(str(cpu)).normalize()} CPUs but site {self.name!r} "
                f"lends {self._cpus:g}; lower the request or raise cpus in its configuration"
            )
        if memory > self._memory:
            raise SubmitError(
                f"{where} requests {memory} bytes of memory but site {self.name!r} lends "
                f"{self._memory}; lower the request or raise memory in its configuration"
            )
        for device, count in gpus.items():
            have = self.config.accelerators.get(device, 0)
            if count > have:
                raise SubmitError(
                    f"{where} requests {count} {device} but site {self.name!r} lends {have}; "
                    "set accelerators in its configuration or send the pod to another site"
                )
        return cpu, memory, gpus

    def _prepare_dir(self, job: BatchJob) -> None:
        mode = 0o700 if job.contains_secrets else 0o755
        try:
            job.job_dir.mkdir(parents=True, exist_ok=True, mode=mode)
            job.job_dir.chmod(mode)
            _write_atomic(
                job.job_dir / SCRIPT, job.script, 0o700 if job.contains_secrets else 0o755
            )
        except OSError as exc:
            raise SubmitError(
                f"cannot write the job script of {job.name} into {job.job_dir}: {exc.strerror}"
            ) from exc

    # --- records ----------------------------------------------------------------------------

    def _save(self, record: _Record) -> None:
        self._states.pop(record.id, None)  # every change of a record goes through here
        _write_atomic(self._records_dir / f"{record.id}.json", record.to_json())

    def _load(self) -> None:
        """Read every record; adopt running jobs whose process is still the same one."""
        records = []
        for path in sorted(self._records_dir.glob("*.json")):
            try:
                records.append(_Record.from_json(path.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                _log.warning(
                    "local site %s: skipping unreadable job record %s: %s", self.name, path, exc
                )
        for record in sorted(records, key=lambda r: r.submitted_ns):
            self._jobs[record.id] = record
            self._by_key[record.key] = record.id
            if record.status == "queued":
                self._queue.append(record.id)
            elif record.status == "running":
                self._live[record.id] = record
        self._reap()  # before anyone polls: jobs that ended while no backend watched
        adopted = sum(r.status == "running" for r in records)
        if records:
            _log.info(
                "local site %s: %d job records, %d running jobs adopted, %d queued",
                self.name,
                len(records),
                adopted,
                len(self._queue),
            )

    def _process(self, record: _Record) -> str | None:
        """The state letter of the job's process (``Z``: exited, not reaped), None if gone."""
        if record.pid is None or record.boot_id != self._boot:
            return None
        stat = _proc_stat(record.pid)
        if stat is None or stat[1] != record.start_ticks:
            return None  # gone, or the pid now belongs to another process
        return stat[0]

    def _alive(self, record: _Record) -> bool:
        state = self._process(record)
        return state is not None and state not in "ZX"

    def _ended_elsewhere(self, record: _Record) -> None:
        """A job that ended while it was not our child: its script's pod.json has the end."""
        try:
            pod = parse_pod_record((Path(record.job_dir) / "pod.json").read_text())
        except (OSError, ValueError):
            pod = None
        if pod is not None and pod.phase in ("Succeeded", "Failed") and pod.exit_code is not None:
            status: Status = "cancelled" if record.cancel_at is not None else "exited"
            finished = pod.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ") if pod.finished_at else None
            self._finish(
                record,
                status,
                exit_code=pod.exit_code,
                reason=pod.reason,
                message=None,
                finished_at=finished,
            )
        else:
            self._finish(
                record,
                "lost",
                exit_code=None,
                reason="Lost",
                message="the job's process ended without its script recording the end "
                "(killed with SIGKILL, or the machine rebooted)",
            )

    def _finish(
        self,
        record: _Record,
        status: Status,
        *,
        exit_code: int | None,
        reason: str | None,
        message: str | None,
        finished_at: str | None = None,
    ) -> None:
        record.status = status
        record.exit_code = exit_code
        record.reason = reason
        record.message = message
        record.finished_at = finished_at or _now()
        self._live.pop(record.id, None)
        self._save(record)

    def _state(self, record: _Record) -> JobState:
        started, finished = _parse_time(record.started_at), _parse_time(record.finished_at)
        if record.status == "queued":
            # No queue position in the message: it would change every pod's status whenever
            # one job starts, and make the plugin rewrite thousands of rows per poll.
            return JobState(
                record.id,
                JobPhase.PENDING,
                reason="Queued",
                message=f"in the queue of local site {self.name!r} until {record.cpu:g} of its "
                f"{self._cpus:g} CPUs are free",
            )
        if record.status == "running":
            return JobState(record.id, JobPhase.RUNNING, started_at=started)
        if record.status == "exited" and record.exit_code == 0:
            return JobState(
                record.id, JobPhase.SUCCEEDED, exit_code=0, started_at=started, finished_at=finished
            )
        return JobState(
            record.id,
            JobPhase.FAILED,
            reason=(
                "Cancelled"
                if record.status == "cancelled"
                else record.reason or ("Lost" if record.status == "lost" else "Error")
            ),
            message=record.message,
            exit_code=record.exit_code,
            started_at=started,
            finished_at=finished,
        )

    # --- the scheduler thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                try:
                    self._reap()
                    self._escalate()
                    self._start_fitting()
                    self._prune()
                except Exception:  # keep scheduling: one broken job must not stop all
                    _log.exception("local site %s: scheduler pass failed", self.name)
                self._lock.wait(self.config.tick_seconds)

    def _used(self) -> tuple[float, int, dict[str, int], int]:
        """(CPUs, memory, devices, jobs) of the running jobs."""
        cpu, memory, running = 0.0, 0, 0
        gpus: dict[str, int] = {}
        for record in self._running():
            running += 1
            cpu += record.cpu
            memory += record.memory
            for device, n in record.gpus.items():
                gpus[device] = gpus.get(device, 0) + n
        return cpu, memory, gpus, running

    def _running(self) -> list[_Record]:
        return list(self._live.values())

    def _fits(self, record: _Record, used: tuple[float, int, dict[str, int], int]) -> bool:
        cpu, memory, gpus, running = used
        if self.config.max_running is not None and running >= self.config.max_running:
            return False
        if cpu + record.cpu > self._cpus + 1e-9 or memory + record.memory > self._memory:
            return False
        return all(
            gpus.get(d, 0) + n <= self.config.accelerators.get(d, 0) for d, n in record.gpus.items()
        )

    def _start_fitting(self) -> None:
        # Strict submission order: a large job at the head is not overtaken forever.
        while self._queue:
            record = self._jobs[self._queue[0]]
            if not self._fits(record, self._used()):
                return
            self._queue.pop(0)
            self._start(record)

    def _start(self, record: _Record) -> None:
        job_dir = Path(record.job_dir)
        env = dict(os.environ)
        env.update(self.config.env)
        env["FLASHLINK_JOB_DIR"] = str(job_dir)
        shell = self.config.shell
        # posix_spawn, not subprocess: the job is reaped by _reap with waitpid (or, after a
        # restart, by init), and no Popen object may reap or warn about it behind our back.
        # `cd` then `exec`: the job runs in its directory and keeps the pid we record.
        argv = [shell, "-c", 'cd -- "$0" || exit 127; exec "$@"', str(job_dir), shell, SCRIPT]
        try:
            out = os.open(job_dir / OUTPUT, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                pid = os.posix_spawnp(
                    shell,
                    argv,
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_DUP2, out, 1),
                        (os.POSIX_SPAWN_DUP2, out, 2),
                        (os.POSIX_SPAWN_CLOSE, out),
                    ],
                    setsid=True,  # its own session and process group: outlives the plugin
                    # Python ignores SIGPIPE (and SIGXFSZ); a job must get the defaults back
                    setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
                )
            finally:
                os.close(out)
        except OSError as exc:
            self._finish(
                record,
                "exited",
                exit_code=127,
                reason="ContainerCannotRun",
                message=f"cannot start {shell} {job_dir / SCRIPT}: {exc}",
            )
            return
        stat = _proc_stat(pid)
        record.pid = pid
        record.start_ticks = stat[1] if stat else None
        record.boot_id = self._boot
        record.started_at = _now()
        record.status = "running"
        self._live[record.id] = record
        self._save(record)

    def _reap(self) -> None:
        for record in self._running():
            state = self._process(record)
            if state is None:
                self._ended_elsewhere(record)
                continue
            assert record.pid is not None
            try:
                exited = os.waitid(os.P_PID, record.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # adopted after a restart: init reaps it, not us
                if state in "ZX":
                    self._ended_elsewhere(record)
                continue
            if exited is None:
                continue  # still running
            # Not reaped yet, so its process group id cannot have been reused: whatever the
            # job left behind in its group (a killed script's children) goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGKILL)
            _, wait_status = os.waitpid(record.pid, 0)
            rc = os.waitstatus_to_exitcode(wait_status)
            code = rc if rc >= 0 else 128 - rc  # killed by signal N: 128+N, as a shell says
            status: Status = "cancelled" if record.cancel_at is not None else "exited"
            reason, message = self._reason_of(record, rc)
            self._finish(record, status, exit_code=code, reason=reason, message=message)

    def _prune(self) -> None:
        """Forget jobs that ended more than ``forget_after_seconds`` ago (once a minute)."""
        now = time.time()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        cutoff = datetime.fromtimestamp(now - self.config.forget_after_seconds, UTC)
        for record in list(self._jobs.values()):
            finished = _parse_time(record.finished_at)
            if record.status in ("queued", "running") or finished is None or finished > cutoff:
                continue
            (self._records_dir / f"{record.id}.json").unlink(missing_ok=True)
            del self._jobs[record.id]
            self._states.pop(record.id, None)
            if self._by_key.get(record.key) == record.id:
                del self._by_key[record.key]

    def _reason_of(self, record: _Record, rc: int) -> tuple[str | None, str | None]:
        """(reason, message) of an exit: the script's own pod.json says it best."""
        try:
            pod = parse_pod_record((Path(record.job_dir) / "pod.json").read_text())
        except (OSError, ValueError):
            pod = None
        if pod is not None and pod.phase in ("Succeeded", "Failed"):
            return pod.reason, None
        if rc < 0:
            name = signal.Signals(-rc).name
            return "Killed", f"the job script was killed by {name} before it recorded its end"
        if rc == 0:
            return None, None
        return "Error", f"the job script exited with {rc} before it recorded its end; see {OUTPUT}"

    def _escalate(self) -> None:
        deadline = time.time() - self.config.kill_after_seconds
        for record in self._running():
            if record.cancel_at is not None and record.cancel_at <= deadline:
                self._signal(record, signal.SIGKILL, group=True)

    def _signal(self, record: _Record, sig: signal.Signals, group: bool) -> None:
        if record.pid is None or not self._alive(record):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(record.pid, sig)  # the session leader's pid is its group id
            else:
                os.kill(record.pid, sig)

    # --- for tests and tools ------------------------------------------------------------------

    def find(self, key: str) -> str | None:
        """The id of the job submitted with ``key``, if any."""
        with self._lock:
            return self._by_key.get(key)

    def records(self) -> Mapping[str, Mapping[str, Any]]:
        """A snapshot of every job record (what ``jobs/ID.json`` holds), by id."""
        with self._lock:
            return {i: json.loads(r.to_json()) for i, r in self._jobs.items()}
