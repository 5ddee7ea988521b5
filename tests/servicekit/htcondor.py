"""Helpers for tests that use the real HTCondor pool of ``ci/services/htcondor.sh``.

The pool runs in a Debian trixie root (HTCondor 23.x); tests talk to it with the host-side
``htcondor2`` bindings (PyPI ``htcondor`` 25.x) and IDTOKENS. Two ways to submit, both as the
unprivileged ``flashci`` user (HTCondor refuses jobs owned by root):

- **as root** (what the flashlink plugin does in CI): the client reads the token for identity
  ``flashci@localdomain`` from ``tokens/root/token``. A client only accepts a token file owned by
  its own uid, which is why the reference notes found root "could not authenticate": root was
  given flashci's file. The schedd then owns the job as ``flashci``.
- **as flashci** through :func:`run_as_submit_user` (``runuser`` + the project's venv, which is
  made from Debian's ``/usr/bin/python3`` and so readable by other users).
"""

from __future__ import annotations

__all__ = ["JobTimeoutError", "condor_arguments", "run_as_submit_user", "wait_for_job"]

import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from servicekit._service import Service

# JobStatus values (HTCondor manual, "Job ClassAd Attributes").
_HELD = 5
_COMPLETED = 4


class JobTimeoutError(RuntimeError):
    """A job did not leave the queue in time, or was held."""


def condor_arguments(argv: Sequence[str]) -> str:
    """Quote ``argv`` in the submit language's "new" syntax for ``arguments``.

    The whole value is wrapped in double quotes; each argument in single quotes, with ``'``
    written as ``''`` and ``"`` as ``""``. The old syntax splits on spaces, so
    ``-c 'a; b'`` reached the job as three words (reference §2, pitfall 3).
    """
    words = []
    for arg in argv:
        if "\n" in arg:
            raise ValueError(f"HTCondor arguments cannot contain a newline: {arg!r}")
        words.append("'" + arg.replace("'", "''").replace('"', '""') + "'")
    return '"' + " ".join(words) + '"'


def wait_for_job(schedd: Any, cluster: int, *, timeout: float = 120.0) -> Any:
    """Wait until ``cluster`` leaves the queue and return its history ClassAd.

    Raises JobTimeoutError naming the last JobStatus (and the HoldReason when held): a held job
    never finishes by itself, so waiting on it would only hide why.
    """
    constraint = f"ClusterId == {int(cluster)}"
    deadline = time.monotonic() + timeout
    last: list[Any] = []
    while time.monotonic() < deadline:
        last = schedd.query(constraint=constraint, projection=["JobStatus", "HoldReason"])
        if not last:
            break
        if last[0].get("JobStatus") == _HELD:
            raise JobTimeoutError(f"job {cluster} was held: {last[0].get('HoldReason')}")
        time.sleep(0.3)
    else:
        status = last[0].get("JobStatus") if last else "unknown"
        raise JobTimeoutError(
            f"job {cluster} still queued after {timeout:.0f} s (JobStatus {status})"
        )
    projection = ["ClusterId", "JobStatus", "ExitCode", "ExitBySignal", "Owner"]
    # The history file is written as the job leaves the queue; poll briefly for the record.
    while time.monotonic() < deadline:
        ads = list(schedd.history(constraint=constraint, projection=projection, match=1))
        if ads:
            if ads[0].get("JobStatus") != _COMPLETED:
                raise JobTimeoutError(
                    f"job {cluster} left the queue but did not complete: {ads[0]}"
                )
            return ads[0]
        time.sleep(0.3)
    raise JobTimeoutError(f"job {cluster} left the queue but has no history record")


def run_as_submit_user(
    service: Service,
    code: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 180.0,
) -> subprocess.CompletedProcess[str]:
    """Run the Python ``code`` as the pool's submit user with the project's interpreter.

    The child gets the pool's client settings (CONDOR_CONFIG) plus ``env``; its uid picks the
    token directory ``tokens/<user>`` through ``$(USERNAME)`` in the client config.
    """
    user = service["HTCONDOR_SUBMIT_USER"]
    child_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": f"/home/{user}",
        "CONDOR_CONFIG": service["CONDOR_CONFIG"],
        **(env or {}),
    }
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise FileNotFoundError(
                "runuser (util-linux) is not on PATH; it runs code as another user"
            )
        command = [runuser, "-u", user, "--", sys.executable, "-c", code]
    elif pwd.getpwuid(os.geteuid()).pw_name == user:
        command = [sys.executable, "-c", code]
    else:
        raise PermissionError(
            f"running code as {user!r} needs root (runuser); uid is {os.geteuid()}"
        )
    return subprocess.run(
        command,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
