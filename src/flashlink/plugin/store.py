"""The plugin's state: one SQLite database in WAL mode, one row per pod.

A row holds what ``/status`` answers (the ``PodStatus`` JSON, precomputed by the reconciler),
so a status request is a primary-key lookup and a string join: it never waits for a backend.
WAL lets the request thread read while the reconciler and submitter threads write; each thread
has its own connection. ``synchronous=NORMAL`` survives a crash of the plugin process (what a
restart must survive) and costs about 20 us per commit instead of an fsync; a power loss may
drop the last transactions, which at worst re-submits a pod whose submission was not yet
answered (the backend deduplicates by pod UID).

Row life cycle (``state``)::

    submitting --backend accepted--> active --job ended--> done
        |                                                    ^
        +--backend refused / unreachable--> rejected --------+ (a /create retry re-submits)

``deleted_at`` is set by ``/delete`` in any state; ``cancel_pending`` says the backend has not
yet confirmed the cancel (the reconciler retries it).
"""

from __future__ import annotations

__all__ = ["ActiveRow", "PodRow", "StatusUpdate", "Store"]

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pods (
    uid            TEXT PRIMARY KEY,
    namespace      TEXT NOT NULL,
    name           TEXT NOT NULL,
    site           TEXT NOT NULL,
    state          TEXT NOT NULL,
    backend_id     TEXT,
    job_dir        TEXT NOT NULL,
    containers     TEXT NOT NULL,
    phase          TEXT NOT NULL,
    status         TEXT NOT NULL,
    job            TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    misses         INTEGER NOT NULL DEFAULT 0,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    finished_at    REAL,
    deleted_at     REAL,
    cancel_pending INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS pods_site_state ON pods (site, state);
CREATE INDEX IF NOT EXISTS pods_cancel ON pods (site) WHERE cancel_pending = 1;
CREATE INDEX IF NOT EXISTS pods_deleted ON pods (site, deleted_at) WHERE deleted_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
SCHEMA_VERSION = "1"

_COLUMNS = (
    "uid, namespace, name, site, state, backend_id, job_dir, containers, phase, status, job, "
    "attempts, last_error, misses, created_at, updated_at, finished_at, deleted_at, "
    "cancel_pending"
)


@dataclass(frozen=True)
class PodRow:
    """One pod as the store keeps it.

    ``containers`` is ``{"init": [[name, image], ...], "main": [...]}``; ``job`` is what the
    submitter needs to (re-)submit a pod that is still ``submitting`` (script, resources,
    options), dropped once the backend has accepted it.
    """

    uid: str
    namespace: str
    name: str
    site: str
    state: str
    backend_id: str | None
    job_dir: str
    containers: dict[str, list[list[str]]]
    phase: str
    status: str
    job: dict[str, Any] | None
    attempts: int
    last_error: str | None
    misses: int
    created_at: float
    updated_at: float
    finished_at: float | None
    deleted_at: float | None
    cancel_pending: bool

    @classmethod
    def from_sql(cls, row: Sequence[Any]) -> PodRow:
        values = list(row)
        values[7] = json.loads(values[7])
        values[10] = json.loads(values[10]) if values[10] else None
        values[18] = bool(values[18])
        return cls(*values)

    def names(self, group: str) -> list[str]:
        return [name for name, _ in self.containers[group]]


@dataclass(frozen=True)
class ActiveRow:
    """The columns the reconciler reads of every active pod at every pass."""

    uid: str
    backend_id: str
    misses: int
    phase: str


@dataclass(frozen=True)
class StatusUpdate:
    """What one reconcile pass learned about one pod (``status`` None: unchanged)."""

    uid: str
    status: str | None
    phase: str
    state: str
    misses: int = 0
    finished_at: float | None = None


class Store:
    """Thread-safe access to the SQLite state (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        conn = self._conn()
        with conn:
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )
        path.chmod(0o600)  # it holds job scripts (with Secrets) while they are submitted

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._guard:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._guard:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- reads ----------------------------------------------------------------------------

    def statuses(self, uids: Sequence[str]) -> dict[str, str]:
        """The stored ``PodStatus`` JSON of each known uid (the /status fast path)."""
        conn = self._conn()
        if len(uids) == 1:
            row = conn.execute("SELECT status FROM pods WHERE uid = ?", (uids[0],)).fetchone()
            return {uids[0]: row[0]} if row else {}
        out: dict[str, str] = {}
        for i in range(0, len(uids), 500):  # SQLite's bound-parameter limit is 999 here
            chunk = uids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for uid, status in conn.execute(
                f"SELECT uid, status FROM pods WHERE uid IN ({marks})",  # noqa: S608 - only '?'s
                chunk,
            ):
                out[uid] = status
        return out

    def get(self, uid: str) -> PodRow | None:
        query = f"SELECT {_COLUMNS} FROM pods WHERE uid = ?"  # noqa: S608 - constant columns
        row = self._conn().execute(query, (uid,)).fetchone()
        return PodRow.from_sql(row) if row else None

    def rows(self, site: str, states: Iterable[str]) -> list[PodRow]:
        wanted = list(states)
        marks = ",".join("?" * len(wanted))
        cur = self._conn().execute(
            f"SELECT {_COLUMNS} FROM pods WHERE site = ? AND state IN ({marks})"  # noqa: S608
            " ORDER BY created_at",
            (site, *wanted),
        )
        return [PodRow.from_sql(r) for r in cur]

    def active(self, site: str) -> list[ActiveRow]:
        cur = self._conn().execute(
            "SELECT uid, backend_id, misses, phase FROM pods WHERE site = ? AND state = 'active'",
            (site,),
        )
        return [ActiveRow(*r) for r in cur]

    def cancels_pending(self, site: str) -> list[PodRow]:
        cur = self._conn().execute(
            f"SELECT {_COLUMNS} FROM pods WHERE site = ? AND cancel_pending = 1",  # noqa: S608
            (site,),
        )
        return [PodRow.from_sql(r) for r in cur]

    def expired(self, site: str, before: float) -> list[PodRow]:
        """Deleted pods that ended before ``before``: to be forgotten."""
        cur = self._conn().execute(
            f"SELECT {_COLUMNS} FROM pods WHERE site = ? AND deleted_at IS NOT NULL"  # noqa: S608
            " AND cancel_pending = 0 AND state IN ('done', 'rejected')"
            " AND COALESCE(finished_at, deleted_at) < ?",
            (site, before),
        )
        return [PodRow.from_sql(r) for r in cur]

    def counts(self) -> dict[tuple[str, str], int]:
        """Pods per (site, phase), deleted ones excluded."""
        cur = self._conn().execute(
            "SELECT site, phase, COUNT(*) FROM pods WHERE deleted_at IS NULL GROUP BY site, phase"
        )
        return {(site, phase): n for site, phase, n in cur}

    # --- writes ---------------------------------------------------------------------------

    def insert(
        self,
        *,
        uid: str,
        namespace: str,
        name: str,
        site: str,
        job_dir: str,
        containers: dict[str, list[list[str]]],
        phase: str,
        status: str,
        job: dict[str, Any],
    ) -> bool:
        """Add a pod in state ``submitting``; False when the uid is already known."""
        now = time.time()
        cur = self._conn().execute(
            "INSERT OR IGNORE INTO pods (uid, namespace, name, site, state, job_dir, containers,"
            " phase, status, job, attempts, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'submitting', ?, ?, ?, ?, ?, 1, ?, ?)",
            (
                uid,
                namespace,
                name,
                site,
                job_dir,
                json.dumps(containers),
                phase,
                status,
                json.dumps(job),
                now,
                now,
            ),
        )
        return cur.rowcount == 1

    def resubmit(self, uid: str, status: str, phase: str, job: dict[str, Any]) -> bool:
        """A rejected pod goes back to ``submitting`` (a retried /create); False if not rejected."""
        cur = self._conn().execute(
            "UPDATE pods SET state = 'submitting', status = ?, phase = ?, job = ?,"
            " attempts = attempts + 1, last_error = NULL, finished_at = NULL, updated_at = ?"
            " WHERE uid = ? AND state = 'rejected'",
            (status, phase, json.dumps(job), time.time(), uid),
        )
        return cur.rowcount == 1

    def submitted(self, accepted: Sequence[tuple[str, str, str]]) -> None:
        """(uid, backend id, status JSON) of pods the backend accepted, in one transaction."""
        now = time.time()
        conn = self._conn()
        with _transaction(conn):
            conn.executemany(
                "UPDATE pods SET state = 'active', backend_id = ?, status = ?, job = NULL,"
                " misses = 0, updated_at = ? WHERE uid = ? AND state = 'submitting'",
                [(backend_id, status, now, uid) for uid, backend_id, status in accepted],
            )

    def rejected(self, uid: str, error: str, status: str, phase: str) -> None:
        now = time.time()
        self._conn().execute(
            "UPDATE pods SET state = 'rejected', last_error = ?, status = ?, phase = ?, job = NULL,"
            " finished_at = ?, updated_at = ? WHERE uid = ? AND state = 'submitting'",
            (error, status, phase, now, now, uid),
        )

    def update(self, updates: Sequence[StatusUpdate]) -> None:
        """Store what a reconcile pass learned, in one transaction."""
        if not updates:
            return
        now = time.time()
        conn = self._conn()
        with _transaction(conn):
            conn.executemany(
                "UPDATE pods SET status = ?, phase = ?, state = ?, misses = ?,"
                " finished_at = COALESCE(?, finished_at), updated_at = ?"
                " WHERE uid = ? AND state = 'active'",
                [
                    (u.status, u.phase, u.state, u.misses, u.finished_at, now, u.uid)
                    for u in updates
                    if u.status is not None
                ],
            )
            conn.executemany(
                "UPDATE pods SET misses = ?, updated_at = ? WHERE uid = ? AND state = 'active'",
                [(u.misses, now, u.uid) for u in updates if u.status is None],
            )

    def mark_deleted(self, uid: str, cancel_pending: bool) -> None:
        self._conn().execute(
            "UPDATE pods SET deleted_at = COALESCE(deleted_at, ?), cancel_pending = ?,"
            " updated_at = ? WHERE uid = ?",
            (time.time(), int(cancel_pending), time.time(), uid),
        )

    def cancel_done(self, uid: str) -> None:
        self._conn().execute(
            "UPDATE pods SET cancel_pending = 0, updated_at = ? WHERE uid = ?", (time.time(), uid)
        )

    def forget(self, uids: Sequence[str]) -> None:
        conn = self._conn()
        with _transaction(conn):
            conn.executemany("DELETE FROM pods WHERE uid = ?", [(u,) for u in uids])


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
