"""What ``sbatch`` receives for one job: the site configuration and a pure script builder.

The submission is the job script itself with ``#SBATCH`` directives inserted after its
``#!`` line, given to ``sbatch --parsable`` on stdin. Everything about the job is therefore in
the script Slurm stores (``scontrol write batch_script ID`` shows it, a person can resubmit it
by hand), and nothing reaches a shell: each directive is a single whitespace-free token that
sbatch parses itself. User flags (the ``slurm-job.vk.io/flags`` annotation, as interLink's
Slurm plugin names it) are checked against an allow-list and a strict character set, so an
annotation can neither add a line to the script nor pick options such as ``--uid``,
``--export`` or ``--output`` that change who runs the job or where it writes.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_ALLOWED_FLAGS",
    "FLAGS_ANNOTATION",
    "SlurmConfig",
    "directives",
    "job_name",
    "options_of",
    "parse_flags",
    "submission_script",
]

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flashlink.backends._batch import time_limit
from flashlink.backends.base import BatchJob
from flashlink.backends.errors import SubmitError
from flashlink.jobscript import Resources

FLAGS_ANNOTATION = "slurm-job.vk.io/flags"

#: Long options a Pod may set through its annotation: placement and scheduling only.
#: Left out on purpose: account (billing is the site's choice), job-name/comment/chdir/output/
#: error/export/uid/gid (flashlink's own bookkeeping and isolation), array/wrap/hold/wait
#: (they change what a "job" is).
DEFAULT_ALLOWED_FLAGS: tuple[str, ...] = (
    "begin",
    "constraint",
    "contiguous",
    "cpus-per-gpu",
    "cpus-per-task",
    "deadline",
    "dependency",
    "exclude",
    "exclusive",
    "gpus",
    "gpus-per-node",
    "gpus-per-task",
    "gres",
    "hint",
    "licenses",
    "mail-type",
    "mail-user",
    "mem",
    "mem-per-cpu",
    "mem-per-gpu",
    "nice",
    "no-requeue",
    "nodelist",
    "nodes",
    "ntasks",
    "ntasks-per-node",
    "partition",
    "prefer",
    "qos",
    "requeue",
    "reservation",
    "signal",
    "switches",
    "threads-per-core",
    "time",
    "time-min",
    "tmp",
    "wckey",
)

#: sbatch's short options and their long names (``man sbatch``).
_SHORT = {
    "A": "account",
    "C": "constraint",
    "D": "chdir",
    "G": "gpus",
    "H": "hold",
    "J": "job-name",
    "L": "licenses",
    "N": "nodes",
    "W": "wait",
    "a": "array",
    "b": "begin",
    "c": "cpus-per-task",
    "d": "dependency",
    "e": "error",
    "i": "input",
    "n": "ntasks",
    "o": "output",
    "p": "partition",
    "q": "qos",
    "t": "time",
    "w": "nodelist",
    "x": "exclude",
}

#: Options that take no value; ``exclusive`` takes an optional one (``--exclusive=user``).
_NO_VALUE = frozenset({"contiguous", "no-requeue", "requeue", "overcommit", "spread-job"})
_OPTIONAL_VALUE = frozenset({"exclusive"})

#: What a flag value may contain: enough for node lists (``n[01-04]``), constraints
#: (``a100&ib``), times (``1-00:00:00``), gres (``gpu:a100:2``) and mail addresses; no
#: whitespace, quotes, backslashes, ``$`` or backticks.
_VALUE = re.compile(r"[A-Za-z0-9_.,:=/@%+*!&|()\[\]{}^~-]{1,512}")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")
_PATH = re.compile(r"/[A-Za-z0-9_.,:=/@+~-]*")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MIB = 1024 * 1024


class SlurmConfig(BaseModel):
    """``[sites.<name>]`` with ``kind = "slurm"``: a Slurm cluster reached through its CLI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = Field(default=None, description="--partition for every job")
    account: str | None = Field(default=None, description="--account for every job (billing)")
    qos: str | None = Field(default=None, description="--qos for every job")
    slurm_conf: str | None = Field(
        default=None, description="SLURM_CONF for the CLI tools (default: the tools' own default)"
    )
    bin_dir: str | None = Field(
        default=None,
        description="directory holding sbatch, squeue, sacct, scancel, sinfo (default PATH)",
    )
    job_user: str | None = Field(
        default=None,
        description="when the plugin runs as root: run jobs as this user (sbatch --uid) and "
        "create job directories owned by it",
    )
    accounting: bool | None = Field(
        default=None,
        description="whether sacct works (slurmdbd); None = find out on first use. Without it, "
        "a job that left squeue (after MinJobAge) is reported Lost",
    )
    allowed_flags: tuple[str, ...] = Field(
        default=DEFAULT_ALLOWED_FLAGS,
        description=f"long sbatch options a Pod may set with the {FLAGS_ANNOTATION} annotation",
    )
    sbatch_flags: tuple[str, ...] = Field(
        default=(), description="extra sbatch options for every job, e.g. ['--constraint=ib']"
    )
    gres: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu": "gpu", "amd.com/gpu": "gpu"},
        description="Kubernetes GPU resource name -> Slurm gres name (--gres=NAME:COUNT)",
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="variables the job gets (--export=K=V,...); default --export=NONE: the "
        "user's login environment, never the plugin's",
    )
    walltime_margin_seconds: int = Field(
        default=60,
        ge=0,
        description="added to activeDeadlineSeconds for --time, so the job script's own "
        "deadline handling records the containers' end before Slurm kills the job",
    )
    default_walltime_seconds: int | None = Field(
        default=None,
        gt=0,
        description="--time for Pods without activeDeadlineSeconds (None: site default)",
    )
    submit_concurrency: int = Field(
        default=4,
        ge=1,
        le=32,
        description="sbatch calls run at once by one submit (each mostly waits for slurmctld)",
    )
    command_timeout_seconds: float = Field(
        default=30.0, gt=0, description="timeout of each sbatch/squeue/sacct/scancel call"
    )
    lost_after_seconds: float = Field(
        default=60.0,
        ge=0,
        description="how long a job may be missing from both squeue and sacct before it is "
        "reported Lost (covers the moment between the two)",
    )
    max_pods: int = Field(default=1000, gt=0, description="pods the virtual node advertises")

    @field_validator("partition", "account", "qos", "job_user")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not _VALUE.fullmatch(value):
            raise ValueError(f"{value!r} must be one word of letters, digits and ._-:")
        return value

    @field_validator("allowed_flags")
    @classmethod
    def _flag_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a long sbatch option name (write 'time', not '--time')"
                )
        return value

    @field_validator("sbatch_flags")
    @classmethod
    def _site_flags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for flag in value:
            _check_token(flag, "sbatch_flags")
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not an environment variable name")
            if "," in val or not _VALUE.fullmatch(val):
                raise ValueError(
                    f"the value of {key} ({val!r}) must be one word without commas, spaces "
                    "or quotes (sbatch --export cannot carry them)"
                )
        return value


def _check_token(flag: str, where: str) -> None:
    name, eq, value = flag.partition("=")
    if not name.startswith("--") or not _NAME.fullmatch(name[2:]):
        raise ValueError(f"{where}: {flag!r} must look like --name=value or --name")
    if eq and not _VALUE.fullmatch(value):
        raise ValueError(f"{where}: the value in {flag!r} has characters sbatch cannot take")


def parse_flags(text: str, allowed: Sequence[str] = DEFAULT_ALLOWED_FLAGS) -> list[str]:
    """The annotation's flags as normalised ``--name=value`` (or ``--name``) tokens.

    Accepts what users write on an sbatch command line (``-p gpu -t 30 --mem=4G``); raises
    :class:`SubmitError` naming the first offending word and what would be valid.
    """
    where = f"annotation {FLAGS_ANNOTATION}"
    try:
        words = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise SubmitError(f"{where}: cannot split {text[:200]!r} into words: {exc}") from exc
    allowed_set = frozenset(allowed)
    out: list[str] = []
    i = 0
    while i < len(words):
        name, inline = _option(words[i], where, allowed_set)
        i += 1
        if name in _NO_VALUE:
            if inline is not None:
                raise SubmitError(f"{where}: --{name} takes no value, got {words[i - 1]!r}")
            out.append(f"--{name}")
            continue
        if inline is None and name not in _OPTIONAL_VALUE:
            if i >= len(words) or words[i].startswith("-"):
                raise SubmitError(f"{where}: --{name} needs a value")
            inline = words[i]
            i += 1
        if inline is None:
            out.append(f"--{name}")
            continue
        if not _VALUE.fullmatch(inline):
            raise SubmitError(
                f"{where}: the value of --{name} ({inline[:100]!r}) may only hold letters, "
                "digits and _.,:=/@%+*!&|()[]{}^~- (no spaces, quotes, $ or backslashes)"
            )
        out.append(f"--{name}={inline}")
    return out


def _option(word: str, where: str, allowed: frozenset[str]) -> tuple[str, str | None]:
    """(long name, inline value or None) of one option word, checked against ``allowed``."""
    inline: str | None
    if word.startswith("--"):
        name, eq, rest = word[2:].partition("=")
        inline = rest if eq else None
    elif word.startswith("-") and len(word) >= 2:
        letter = word[1]
        if letter not in _SHORT:
            raise SubmitError(
                f"{where}: unknown short option -{letter} in {word!r}; use the long form "
                f"(--name=value); allowed: {', '.join(sorted(allowed))}"
            )
        name = _SHORT[letter]
        inline = word[2:].removeprefix("=") or None
    else:
        raise SubmitError(
            f"{where}: {word!r} is not an option; flags look like --name=value or -x value"
        )
    if not _NAME.fullmatch(name):
        raise SubmitError(f"{where}: {word!r} is not a valid option name")
    if name not in allowed:
        raise SubmitError(
            f"{where}: --{name} may not be set by a Pod on this site; allowed: "
            f"{', '.join(sorted(allowed))}"
        )
    return name, inline


def job_name(name: str, key: str) -> str:
    """A Slurm job name from the caller's name (``namespace/pod``) and the Pod UID."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:100] or "pod"
    short = re.sub(r"[^A-Za-z0-9]", "", key)[:8]
    return f"{safe}-{short}" if short else safe


def _mib(amount: int) -> int:
    return max(1, math.ceil(amount / _MIB))


def _minutes(seconds: int) -> int:
    return max(1, math.ceil(seconds / 60))


def _resource_options(res: Resources, config: SlurmConfig) -> list[str]:
    out = []
    if res.cpu_cores:
        out.append(f"--cpus-per-task={res.cpu_cores}")
    if res.memory_bytes:
        out.append(f"--mem={_mib(res.memory_bytes)}M")
    if res.ephemeral_storage_bytes:
        out.append(f"--tmp={_mib(res.ephemeral_storage_bytes)}M")
    gres: dict[str, int] = {}
    for resource, count in sorted(res.gpus.items()):
        if resource not in config.gres:
            raise SubmitError(
                f"the Pod asks for {count} {resource}, which this Slurm site does not map to "
                f"a gres; known: {', '.join(sorted(config.gres)) or 'none'} (site setting gres)"
            )
        gres[config.gres[resource]] = gres.get(config.gres[resource], 0) + count
    if gres:
        out.append("--gres=" + ",".join(f"{name}:{count}" for name, count in gres.items()))
    limit = time_limit(res.walltime_seconds, config.walltime_margin_seconds)
    if limit is not None:
        out.append(f"--time={_minutes(limit)}")
    elif config.default_walltime_seconds is not None:
        out.append(f"--time={_minutes(config.default_walltime_seconds)}")
    return out


def directives(
    job: BatchJob,
    config: SlurmConfig,
    *,
    run_as: tuple[str, str] | None = None,
) -> list[str]:
    """The ``#SBATCH`` options for ``job``: bookkeeping, resources, site settings, user flags.

    Later options win in sbatch, so the order is: flashlink's own, the Pod's resources, the
    site's fixed settings, then the Pod's annotation (only allow-listed options).
    """
    if not _KEY.fullmatch(job.key):
        raise SubmitError(f"job key {job.key!r} must be letters, digits and ._:- (a Pod UID)")
    job_dir = str(job.job_dir)
    if not _PATH.fullmatch(job_dir) or not PurePosixPath(job_dir).is_absolute():
        raise SubmitError(
            f"job directory {job_dir!r} must be an absolute path of letters, digits and "
            "._,:=/@+~- (Slurm expands % in file names and #SBATCH lines split on spaces)"
        )
    out = [
        f"--job-name={job_name(job.name, job.key)}",
        f"--comment=flashlink:{job.key}",
        f"--chdir={job_dir}",
        f"--output={job_dir}/slurm-%j.out",
        "--nodes=1",
        "--ntasks=1",
    ]
    if config.environment:
        out.append("--export=" + ",".join(f"{k}={v}" for k, v in config.environment.items()))
    else:
        # sbatch's default (ALL) copies the plugin's own environment, tokens included, into
        # every job; NONE gives the job the user's login environment (measured: a variable
        # set in the submitting shell did not reach the job).
        out.append("--export=NONE")
    if run_as is not None:
        # both: with --uid alone the job kept root's group (measured: gid=0(root))
        out += [f"--uid={run_as[0]}", f"--gid={run_as[1]}"]
    out += _resource_options(job.resources, config)
    for option in ("partition", "account", "qos"):
        value = getattr(config, option)
        if value is not None:
            out.append(f"--{option}={value}")
    out += config.sbatch_flags
    text = job.options.get(FLAGS_ANNOTATION)
    if text:
        out += parse_flags(text, config.allowed_flags)
    return out


def submission_script(script: str, options: Sequence[str]) -> str:
    """``script`` with one ``#SBATCH`` line per option after its ``#!`` line."""
    for option in options:
        if not option.startswith("--") or any(c.isspace() for c in option):
            raise SubmitError(f"internal: {option!r} is not a single --option token")
    block = "".join(f"#SBATCH {option}\n" for option in options)
    if script.startswith("#!"):
        first, newline, rest = script.partition("\n")
        return f"{first}\n{block}{rest if newline else ''}"
    return f"#!/bin/bash\n{block}{script}"


def options_of(script: str) -> Mapping[str, str]:
    """The ``#SBATCH`` options at the head of a submission (for tests and debugging)."""
    found: dict[str, str] = {}
    for line in script.splitlines()[1:]:
        if not line.startswith("#SBATCH "):
            break
        name, _, value = line[len("#SBATCH ") :].partition("=")
        found[name] = value
    return found
