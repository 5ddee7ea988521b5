"""The production's bookkeeping on its output directory: what makes it resumable.

Layout under the output directory::

    .flashlink/journal.jsonl     one line per submission and per end of an attempt
    .flashlink/driver.lock       held (flock) by the one driver running the production
    .flashlink/plugin/           the embedded plugin's state (its jobs survive a driver crash)
    jobs/j0003/a1/               one attempt: events, flash output, ntuple.root, logs/
    jobs/j0003/done.json         written last, after the attempt succeeded: the job is done
    reference/a1/report/         the validation report; reference/done.json
    ntuple.root                  the merged ntuple; provenance.json

A job is done when its ``done.json`` exists, and only then, so a re-run redoes exactly the jobs
without one (and adopts the attempts the plugin still runs).
"""

from __future__ import annotations

__all__ = ["Journal"]

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flashlink.production.errors import ProductionError


class Journal:
    """Append-only JSON lines; each line is flushed and fsynced (a kill loses nothing)."""

    def __init__(self, output: Path) -> None:
        self.dir = output / ".flashlink"
        self.path = self.dir / "journal.jsonl"

    def append(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "time": time.time(), **fields}, sort_keys=True)
        self.dir.mkdir(parents=True, exist_ok=True)  # reading (status) creates nothing
        with self.path.open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    @contextlib.contextmanager
    def driving(self) -> Iterator[None]:
        """Hold the production's driver lock: a second driver of the same production would
        adopt the first one's attempts, submit the same Pods again and write to the same job
        directories (their names follow from the request), so it is refused. The lock is an
        ``flock`` on ``.flashlink/driver.lock``: the kernel releases it when the driver exits,
        killed or not, so a crash never leaves a stale lock behind."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "driver.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise ProductionError(
                    f"this production is already being run by another driver (process "
                    f"{holder}, lock {path}): wait for it to finish, follow it with "
                    "'flashlink production status', or stop it with 'flashlink production "
                    "cancel'"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
        return out

    def open_attempts(self) -> dict[str, dict[str, Any]]:
        """The last submission of each task that has no recorded end."""
        last: dict[str, dict[str, Any]] = {}
        for e in self.entries():
            if e["event"] == "submit":
                last[e["key"]] = e
            elif e["event"] == "end" and last.get(e["key"], {}).get("attempt") == e["attempt"]:
                last.pop(e["key"], None)
        return last

    def attempts(self, key: str) -> int:
        """How many attempts of a task were submitted so far."""
        return sum(1 for e in self.entries() if e["event"] == "submit" and e["key"] == key)

    def submissions(self) -> int:
        return sum(1 for e in self.entries() if e["event"] == "submit")
