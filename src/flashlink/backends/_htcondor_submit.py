"""What the schedd receives for a batch of jobs: site configuration and pure builders.

One :class:`~htcondor2.Submit` description per **group** of jobs whose submit commands have
the same keys, with every per-job value an item variable (``$(flv3)``), so the whole group
is one ``Schedd.submit(..., itemdata=...)`` call: one cluster, one schedd transaction, however
many jobs (htcondor2 has no multi-call transactions; itemdata is how one call queues many).
Jobs from the same production carry the same annotations, so they form one group.

Each job runs :func:`wrapper_script` (the executable), which runs the job script with its job
directory in ``out/`` of the scratch directory; ``transfer_output_files = out/`` (trailing
slash: the directory's *contents*, measured) brings the job directory back into the job's
initial directory on exit. ``out/`` always exists, so a job that dies early is not held for a
missing output file, which naming the entries one by one would do (measured: hold code 12,
"reading from file .../volumes: No such file or directory").
"""

from __future__ import annotations

__all__ = [
    "DEADLINE_HOLD_REASON",
    "DEADLINE_HOLD_SUBCODE",
    "DEFAULT_ALLOWED_COMMANDS",
    "EXECUTABLE",
    "PROGRESS_FILE",
    "SCRIPT",
    "SUBMIT_ANNOTATION",
    "CapacityConfig",
    "HTCondorConfig",
    "job_commands",
    "parse_submit_commands",
    "submit_groups",
    "wrapper_script",
]

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flashlink.backends._batch import time_limit
from flashlink.backends.base import BatchJob
from flashlink.backends.errors import SubmitError

SUBMIT_ANNOTATION = "htcondor-job.vk.io/submit"
#: HoldReasonSubCode of flashlink's deadline hold: HoldReasonCode 3 ("job policy") when the
#: shadow's periodic_hold holds the job, 1 ("user request") when the plugin holds it itself
DEADLINE_HOLD_SUBCODE = 4747
#: HoldReason of both deadline holds
DEADLINE_HOLD_REASON = (
    "flashlink: the Pod ran past its activeDeadlineSeconds (plus the site margin)"
)
SCRIPT = "job.sh"
EXECUTABLE = "flashlink-wrapper.sh"
PROGRESS_FILE = ".flashlink-progress.tar.gz"

#: Submit commands a Pod may add: matchmaking, retries and GPU properties. Left out on purpose:
#: accounting_group (billing is the site's), and everything flashlink sets itself (executable,
#: transfer, environment, request_cpus/memory/gpus, periodic_hold for the deadline, ...).
DEFAULT_ALLOWED_COMMANDS: tuple[str, ...] = (
    "concurrency_limits",
    "gpus_maximum_capability",
    "gpus_minimum_capability",
    "gpus_minimum_memory",
    "job_max_vacate_time",
    "max_retries",
    "periodic_release",
    "periodic_remove",
    "priority",
    "rank",
    "request_disk",
    "require_gpus",
    "requirements",
    "retry_until",
)

#: Commands whose value is a ClassAd expression, parsed before submission.
_EXPRESSIONS = frozenset(
    {
        "periodic_hold",
        "periodic_release",
        "periodic_remove",
        "rank",
        "require_gpus",
        "requirements",
        "retry_until",
    }
)

#: Job attributes a ``+Name``/``MY.Name`` command may not set: identity, files, resources,
#: status and flashlink's own bookkeeping.
_PROTECTED_ATTRS = frozenset(
    {
        "args",
        "arguments",
        "cmd",
        "clusterid",
        "environment",
        "env",
        "err",
        "in",
        "iwd",
        "jobbatchname",
        "jobprio",
        "jobstatus",
        "jobuniverse",
        "leavejobinqueue",
        "nice_user",
        "out",
        "owner",
        "procid",
        "qdate",
        "user",
        "userlog",
        "wantioproxy",
    }
)
_PROTECTED_PREFIXES = (
    "accounting",
    "completion",
    "exit",
    "flashlink",
    "hold",
    "remote",
    "remove",
    "request",
    "stage",
    "transfer",
    "x509",
)
_COMMAND = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_ATTRIBUTE = re.compile(r"(?:\+|MY\.|My\.|my\.)([A-Za-z_][A-Za-z0-9_]{0,63})")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_VALUE = re.compile(r"[^\s'\"$\x00-\x1f]*")
_PATH = re.compile(r"/[A-Za-z0-9_.,:=/@+~-]*")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_MIB = 1024 * 1024


class CapacityConfig(BaseModel):
    """A site's advertised capacity when it cannot be queried (an HTCondor CE shows none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: float = Field(gt=0, description="CPUs")
    memory_bytes: int = Field(gt=0, description="memory in bytes")
    gpus: int = Field(default=0, ge=0, description="nvidia.com/gpu")


class HTCondorConfig(BaseModel):
    """``[sites.<name>]`` with ``kind = "htcondor"``: a schedd reached with htcondor2."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    condor_config: str | None = Field(
        default=None,
        description="CONDOR_CONFIG for the bindings (process-wide: every HTCondor site of one "
        "plugin shares it; per-site settings go in the fields below)",
    )
    collector: str | None = Field(
        default=None, description="collector host[:port] (an HTCondor CE: ce.example.org:9619)"
    )
    schedd_name: str | None = Field(
        default=None, description="the schedd's Name in the collector (default: the only schedd)"
    )
    token_dir: str | None = Field(
        default=None,
        description="IDTOKENS directory (SEC_TOKEN_DIRECTORY); files owned by this uid",
    )
    scitoken_file: str | None = Field(
        default=None,
        description="SciToken/WLCG bearer token file (SCITOKENS_FILE), refreshed by you",
    )
    auth_methods: tuple[str, ...] = Field(
        default=(),
        description="SEC_CLIENT_AUTHENTICATION_METHODS, e.g. ['SCITOKENS'] or ['IDTOKENS']",
    )
    settings: dict[str, str] = Field(
        default_factory=dict, description="more HTCondor configuration values for this site"
    )
    spool: bool = Field(
        default=False,
        description="ship inputs to the schedd's spool and retrieve outputs (a remote CE "
        "without a shared filesystem); false: the schedd reads and writes the job directory",
    )
    job_user: str | None = Field(
        default=None,
        description="when the plugin runs as root: local user owning the job directories "
        "(the identity of the token), which the schedd writes into as that user",
    )
    transfer_interval_seconds: int | None = Field(
        default=None,
        ge=5,
        description="push a snapshot of the job directory back every N s while the job runs "
        "(condor_chirp; needs spool = false)",
    )
    chirp: str = Field(
        default="/usr/libexec/condor/condor_chirp", description="condor_chirp on the execute nodes"
    )
    environment: dict[str, str] = Field(
        default_factory=lambda: {"PATH": "/usr/local/bin:/usr/bin:/bin"},
        description="the job's environment (vanilla jobs get no PATH otherwise)",
    )
    submit_commands: dict[str, str] = Field(
        default_factory=dict,
        description="site submit commands for every job, e.g. {'+AccountingGroup': '\"cms\"'}",
    )
    allowed_submit_commands: tuple[str, ...] = Field(
        default=DEFAULT_ALLOWED_COMMANDS,
        description=f"commands a Pod may add with the {SUBMIT_ANNOTATION} annotation",
    )
    allow_custom_attributes: bool = Field(
        default=True,
        description="whether a Pod may set its own +Attribute (not flashlink's or HTCondor's)",
    )
    default_memory_bytes: int = Field(
        default=2 * 1024**3, gt=0, description="request_memory of Pods that set none"
    )
    walltime_margin_seconds: int = Field(
        default=60,
        ge=0,
        description="added to activeDeadlineSeconds for the job's deadline hold (a backstop: "
        "the job script enforces the deadline itself)",
    )
    fail_held_after_seconds: float | None = Field(
        default=None,
        gt=0,
        description="report a job held this long as failed (None: pending forever)",
    )
    lost_after_seconds: float = Field(
        default=60.0,
        ge=0,
        description="how long a job may be missing from both queue and history before it is "
        "reported Lost (the history record is written just after the job leaves the queue)",
    )
    capacity: CapacityConfig | None = Field(
        default=None,
        description="advertised capacity; None: sum the pool's slots from the collector",
    )
    max_pods: int = Field(default=1000, gt=0, description="pods the virtual node advertises")

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not _ENV_NAME.fullmatch(key) or not _ENV_VALUE.fullmatch(val):
                raise ValueError(
                    f"{key}={val!r}: names are identifiers, values hold no spaces, quotes or $"
                )
        return value

    @field_validator("submit_commands")
    @classmethod
    def _site_commands(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if any(c in val for c in "\n\r\x1f\x00") or not key.strip():
                raise ValueError(f"submit command {key!r} = {val!r} must be one line")
        return value

    @model_validator(mode="after")
    def _periodic_needs_shared_dir(self) -> Self:
        if self.transfer_interval_seconds is not None and self.spool:
            raise ValueError(
                "transfer_interval_seconds needs spool = false: with spool, what a job pushes "
                "stays in the remote schedd's spool until the job ends"
            )
        return self


def _expression(value: str, where: str) -> None:
    try:
        import classad2  # noqa: PLC0415 - part of the optional htcondor bindings
    except ImportError:  # pragma: no cover - the HTCondor backend needs the bindings anyway
        raise SubmitError(f"{where}: pip install htcondor to validate expressions") from None
    try:
        classad2.ExprTree(value)
    except Exception as exc:  # classad2.ClassAdException, not importable on its own
        raise SubmitError(f"{where}: {value!r} is not a ClassAd expression ({exc})") from None


def _check_value(key: str, value: str, where: str) -> None:
    if not value:
        raise SubmitError(f"{where}: {key} has an empty value")
    if "$" in value:
        # The submit language expands $(...) and $ENV(...) on the submitting host: a value
        # could read the plugin's own settings or environment.
        raise SubmitError(f"{where}: {key} = {value[:100]!r} may not contain '$' (macros)")
    if len(value) > 4096 or any(ord(c) < 32 and c != "\t" for c in value):
        raise SubmitError(f"{where}: the value of {key} must be one line of up to 4096 characters")


def parse_submit_commands(
    text: str,
    allowed: Sequence[str] = DEFAULT_ALLOWED_COMMANDS,
    *,
    custom_attributes: bool = True,
) -> dict[str, str]:
    """The annotation's ``key = value`` lines, checked; raises :class:`SubmitError`."""
    where = f"annotation {SUBMIT_ANNOTATION}"
    allowed_set = {a.lower() for a in allowed}
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        here = f"{where} line {number}"
        if not eq:
            raise SubmitError(f"{here}: {line[:100]!r} is not 'command = value'")
        attribute = _ATTRIBUTE.fullmatch(key)
        if attribute:
            name = attribute.group(1)
            lowered = name.lower()
            if not custom_attributes:
                raise SubmitError(f"{here}: this site does not let Pods set job attributes")
            if lowered in _PROTECTED_ATTRS or lowered.startswith(_PROTECTED_PREFIXES):
                raise SubmitError(
                    f"{here}: the job attribute {name} is set by flashlink or HTCondor"
                )
            _check_value(key, value, here)
            _expression(value, here)
            out[f"MY.{name}"] = value
            continue
        if not _COMMAND.fullmatch(key) or key.lower() not in allowed_set:
            raise SubmitError(
                f"{here}: {key!r} may not be set by a Pod on this site; allowed: "
                f"{', '.join(sorted(allowed_set))}, and +Attribute for custom job attributes"
            )
        _check_value(key, value, here)
        if key.lower() in _EXPRESSIONS:
            _expression(value, here)
        out[key.lower()] = value
    return out


def _condor_environment(env: Mapping[str, str]) -> str:
    # new syntax: the whole value in double quotes, pairs separated by spaces; values were
    # checked to hold no spaces or quotes
    return '"' + " ".join(f"{k}={v}" for k, v in env.items()) + '"'


def job_commands(job: BatchJob, config: HTCondorConfig) -> dict[str, str]:
    """Every submit command that differs between jobs, for ``job`` (values, not macros)."""
    if not _KEY.fullmatch(job.key):
        raise SubmitError(f"job key {job.key!r} must be letters, digits and ._:- (a Pod UID)")
    job_dir = str(job.job_dir)
    if not _PATH.fullmatch(job_dir):
        raise SubmitError(
            f"job directory {job_dir!r} must be an absolute path of letters, digits and "
            "._,:=/@+~- (it is written into the submit description)"
        )
    res = job.resources
    memory = res.memory_bytes or config.default_memory_bytes
    batch_name = re.sub(r"[^A-Za-z0-9._/-]+", "-", job.name)[:200] or "pod"
    commands = {
        "executable": f"{job_dir}/{EXECUTABLE}",
        "transfer_input_files": f"{job_dir}/{SCRIPT}",
        "initialdir": job_dir,
        "request_cpus": str(res.cpu_cores or 1),
        "request_memory": str(max(1, math.ceil(memory / _MIB))),
        "request_gpus": str(res.gpu_count),
        "+JobBatchName": f'"{batch_name}"',
        "MY.FlashlinkKey": f'"{job.key}"',
        "MY.FlashlinkSecretScript": "true" if job.contains_secrets else "false",
    }
    if res.ephemeral_storage_bytes:
        commands["request_disk"] = str(max(1, math.ceil(res.ephemeral_storage_bytes / 1024)))
    limit = time_limit(res.walltime_seconds, config.walltime_margin_seconds)
    if limit is not None:
        # The job script enforces activeDeadlineSeconds itself; for a pod that does not stop,
        # the plugin holds the job once its poll sees it past FlashlinkDeadline
        # (_htcondor_states.past_deadline, the same test), and this periodic_hold is the
        # backstop while no plugin polls: the shadow evaluates it for a running job (measured
        # on 23.9: ~8 s after the start, then every PERIODIC_EXPR_INTERVAL and at each starter
        # update). Not allowed_execute_duration: measured on 23.9, it never holds a job that
        # has transfer_output_files set (held after 16 s without, still running after 60 s).
        commands["MY.FlashlinkDeadline"] = str(limit)
        commands["periodic_hold"] = (
            "JobStatus == 2 && time() - JobCurrentStartExecutingDate > FlashlinkDeadline"
        )
        commands["periodic_hold_reason"] = f'"{DEADLINE_HOLD_REASON}"'
        commands["periodic_hold_subcode"] = str(DEADLINE_HOLD_SUBCODE)
    text = job.options.get(SUBMIT_ANNOTATION)
    if text:
        commands.update(
            parse_submit_commands(
                text,
                config.allowed_submit_commands,
                custom_attributes=config.allow_custom_attributes,
            )
        )
    return commands


def static_commands(config: HTCondorConfig) -> dict[str, str]:
    """The submit commands every job of the site shares."""
    commands = {
        "universe": "vanilla",
        "output": "condor.out",
        "error": "condor.err",
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "transfer_output_files": "out/",
        "transfer_executable": "true",
        "getenv": "false",
    }
    if config.environment:
        commands["environment"] = _condor_environment(config.environment)
    if config.transfer_interval_seconds is not None:
        commands["+WantIOProxy"] = "true"
    commands.update(config.submit_commands)
    return commands


@dataclass(frozen=True)
class SubmitGroup:
    """Jobs that go to the schedd in one ``submit()``: their indexes, description, items."""

    indexes: tuple[int, ...]
    description: dict[str, str]
    items: tuple[dict[str, str], ...]


def submit_groups(
    per_job: Sequence[Mapping[str, str]], static: Mapping[str, str]
) -> list[SubmitGroup]:
    """Group jobs by the keys of their commands; each group becomes one description."""
    by_keys: dict[tuple[str, ...], list[int]] = {}
    for index, commands in enumerate(per_job):
        for key, value in commands.items():
            if any(c in value for c in "\n\r\x1f"):
                raise SubmitError(f"the value of {key} must be one line, got {value[:100]!r}")
        by_keys.setdefault(tuple(sorted(commands)), []).append(index)
    groups = []
    for keys, indexes in by_keys.items():
        # "flv3", not "fl_3": the queue statement's parser rejects item names with a digit
        # after an underscore (measured with 25.x bindings: "Invalid Queue count expression")
        names = {key: f"flv{n}" for n, key in enumerate(keys)}
        description = dict(static)
        description.update({key: f"$({name})" for key, name in names.items()})
        items = tuple({names[k]: per_job[i][k] for k in keys} for i in indexes)
        groups.append(SubmitGroup(tuple(indexes), description, items))
    return groups


def wrapper_script(interval: int | None, chirp: str) -> str:
    """The job's executable: runs ``job.sh`` with its job directory in ``./out``.

    With ``interval``, it also pushes ``out/`` as one compressed tar file to the job's initial
    directory every ``interval`` seconds with ``condor_chirp put`` (chirp has no mkdir, so the
    tree travels as one file; a truncated gzip fails to open, so a reader never sees half a
    snapshot). On a normal exit the snapshot is removed: the output transfer brings the final
    directory. When the job is removed (SIGTERM), the job script records the end and the
    wrapper pushes one last snapshot, as no output transfer follows a removal.
    """
    if not _PATH.fullmatch(chirp):
        raise SubmitError(f"chirp path {chirp!r} must be an absolute path without spaces")
    every = int(interval or 0)
    return f"""#!/bin/bash
# flashlink HTCondor wrapper: runs {SCRIPT} with its job directory in ./out, which HTCondor
# transfers back on exit (transfer_output_files = out/).
mkdir -p out || exit 1
export FLASHLINK_JOB_DIR="$PWD/out"
interval={every}
chirp={chirp}
push() {{
    tar -czf .fl-progress.tmp -C out . 2>/dev/null \\
        && "$chirp" put .fl-progress.tmp {PROGRESS_FILE} >/dev/null 2>&1
}}
bash ./{SCRIPT} &
job=$!
signalled=0
trap 'signalled=1; kill -TERM "$job" 2>/dev/null' TERM INT HUP
pusher=
if [ "$interval" -gt 0 ]; then
    ( trap - TERM; while sleep "$interval"; do push; done ) &
    pusher=$!
fi
while :; do
    wait "$job"
    rc=$?
    kill -0 "$job" 2>/dev/null || break
done
if [ -n "$pusher" ]; then
    kill "$pusher" 2>/dev/null
    wait "$pusher" 2>/dev/null
    if [ "$signalled" = 1 ]; then push; else "$chirp" remove {PROGRESS_FILE} >/dev/null 2>&1; fi
fi
exit "$rc"
"""
