"""Run one batch-system command: argument list, timeout, captured output, typed errors.

Every CLI call a backend makes goes through :func:`run`, so they all share the same rules: no
shell (user data reaches the tool only as argv elements or stdin), a timeout, the tool's stderr
in the error message, and a clear split between "the tool could not be run or did not answer
in time" (:class:`~flashlink.backends.errors.BackendUnavailableError`, worth retrying) and
"the tool ran and said no" (:class:`CommandError`, which the caller classifies by its stderr).
"""

from __future__ import annotations

__all__ = ["CommandError", "CommandResult", "run"]

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flashlink.backends.errors import BackendError, BackendUnavailableError


@dataclass(frozen=True)
class CommandResult:
    """What a command printed, and how long it took (for logs and benchmarks)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class CommandError(BackendError):
    """The command ran and exited non-zero; ``stderr`` says why."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        self.returncode = result.returncode
        self.stderr = result.stderr.strip()
        super().__init__(
            f"{_show(result.argv)} exited {result.returncode}: "
            f"{self.stderr[-2000:] or '(no error output)'}"
        )


def _show(argv: Sequence[str]) -> str:
    shown = " ".join(argv[:4])
    return f"`{shown}{' ...' if len(argv) > 4 else ''}`"


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> CommandResult:
    """Run ``argv`` and return its output.

    Raises :class:`BackendUnavailableError` when the program is missing or does not finish
    within ``timeout`` seconds, and :class:`CommandError` when it exits non-zero (unless
    ``check`` is false).
    """
    if not argv:
        raise ValueError("run() needs a command; got an empty argument list")
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BackendUnavailableError(
            f"{argv[0]!r} was not found: install the batch system's client tools on this "
            "host or set the site's bin_dir to where they are"
        ) from exc
    except PermissionError as exc:
        raise BackendUnavailableError(f"{argv[0]!r} cannot be executed: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendUnavailableError(
            f"{_show(argv)} did not finish within {timeout:g} s; the batch system may be "
            "overloaded or down (raise the site's command_timeout_seconds if it is just slow)"
        ) from exc
    result = CommandResult(
        argv=tuple(argv),
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
        seconds=time.monotonic() - t0,
    )
    if check and proc.returncode != 0:
        raise CommandError(result)
    return result
