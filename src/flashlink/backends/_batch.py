"""Helpers the batch backends (Slurm, HTCondor) share: job directories, users, lost jobs,
time limits."""

from __future__ import annotations

__all__ = ["JobUser", "LostTracker", "prepare_job_dir", "resolve_user", "time_limit"]

import grp
import os
import pwd
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flashlink.backends.errors import InvalidSiteConfigError, SubmitError


@dataclass(frozen=True)
class JobUser:
    """A local account jobs run as, resolved once when the site is configured."""

    name: str
    uid: int
    gid: int
    group: str


def resolve_user(name: str, site: str) -> JobUser:
    """The account ``name`` on this host, or an :class:`InvalidSiteConfigError`."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise InvalidSiteConfigError(
            f"site {site!r}: job_user {name!r} does not exist on this host; create it or "
            "remove job_user"
        ) from None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    return JobUser(name, entry.pw_uid, entry.pw_gid, group)


def prepare_job_dir(path: Path, owner: JobUser | None) -> None:
    """Create the job directory; hand it to ``owner`` when we are root and one is set.

    The batch system writes into it as the job's user (Slurm's output file, HTCondor's
    output transfer), so a root plugin submitting for another user must give it away.
    """
    if not path.is_absolute():
        raise SubmitError(f"job directory {str(path)!r} must be an absolute path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if owner is not None and os.geteuid() == 0:
            os.chown(path, owner.uid, owner.gid)
    except OSError as exc:
        raise SubmitError(f"cannot prepare the job directory {path}: {exc}") from exc


def time_limit(walltime_seconds: int | None, margin_seconds: int) -> int | None:
    """The seconds a site lets a job run: the Pod's activeDeadlineSeconds plus the site's
    ``walltime_margin_seconds`` (None: the Pod has no deadline).

    The job script ends its pod at the deadline itself (``DeadlineExceeded``); the margin gives
    it the time to record that before the scheduler steps in for a pod that does not stop:
    Slurm with ``--time`` (TIMEOUT), HTCondor with the plugin's deadline hold and the
    ``periodic_hold`` backstop (both read ``FlashlinkDeadline``).
    """
    if walltime_seconds is None:
        return None
    return walltime_seconds + margin_seconds


class LostTracker:
    """When a job is missing from every place a scheduler records it, for how long.

    A job can be briefly in neither (between leaving the queue and appearing in the history
    or accounting), so a job is declared lost only after ``grace`` seconds of absence.
    """

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    def seen(self, ids: Iterable[str]) -> None:
        with self._lock:
            for job_id in ids:
                self._since.pop(job_id, None)

    def lost(self, ids: Iterable[str], now: float | None = None) -> list[str]:
        """Record ``ids`` as missing now; return those missing for longer than the grace."""
        now = time.monotonic() if now is None else now
        out = []
        with self._lock:
            for job_id in ids:
                first = self._since.setdefault(job_id, now)
                if now - first >= self._grace:
                    out.append(job_id)
        return out
