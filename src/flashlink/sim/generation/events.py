"""The columnar event record: one row per generated particle, events as runs of ``event_id``.

A chunk holds whole events. Columns (units GeV, mm, mm/c like Pythia and HepMC3):

================  =======  ===============================================================
column            dtype    meaning
================  =======  ===============================================================
``event_id``      int64    event number, unique within a file
``index``         int32    particle position in its event (0-based, dense)
``pid``           int32    PDG id
``status``        int32    HepMC status (1 final state, 2 decayed, 4 beam, other generator)
``px,py,pz,e,m``  float64  4-momentum and generated mass
``vx,vy,vz,vt``   float64  production vertex position and time
``mother``        int32    index of the first incoming particle of the production vertex, -1
``prod_vertex``   int32    production vertex number k (HepMC id -k), 0 for none (beams)
``end_vertex``    int32    end (decay) vertex number, 0 for none (stable)
================  =======  ===============================================================

The vertex numbers make the graph exact, so a HepMC3 round trip reproduces every column.
"""

from __future__ import annotations

__all__ = ["COLUMNS", "EventChunk", "concat_chunks"]

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.errors import EventFormatError

#: column name -> numpy dtype, in file order
COLUMNS: dict[str, type[np.generic]] = {
    "event_id": np.int64,
    "index": np.int32,
    "pid": np.int32,
    "status": np.int32,
    "px": np.float64,
    "py": np.float64,
    "pz": np.float64,
    "e": np.float64,
    "m": np.float64,
    "vx": np.float64,
    "vy": np.float64,
    "vz": np.float64,
    "vt": np.float64,
    "mother": np.int32,
    "prod_vertex": np.int32,
    "end_vertex": np.int32,
}


@dataclass(frozen=True)
class EventChunk:
    """Whole events as flat numpy columns (see the module docstring for the schema)."""

    columns: dict[str, npt.NDArray[Any]]

    @classmethod
    def from_columns(cls, columns: Mapping[str, npt.ArrayLike]) -> EventChunk:
        """Check names, dtypes and lengths; raise :class:`EventFormatError` naming the problem."""
        missing = [name for name in COLUMNS if name not in columns]
        if missing:
            raise EventFormatError(
                f"event columns {missing} are missing; an event table needs {list(COLUMNS)}"
            )
        out = {name: np.ascontiguousarray(columns[name], dtype=dt) for name, dt in COLUMNS.items()}
        lengths = {name: len(col) for name, col in out.items()}
        if len(set(lengths.values())) > 1:
            raise EventFormatError(f"event columns have different lengths: {lengths}")
        ids = out["event_id"]
        if len(ids) > 1 and np.any(np.diff(ids) < 0):
            raise EventFormatError("event_id must be sorted so that every event is one run of rows")
        return cls(out)

    def __len__(self) -> int:
        return len(self.columns["event_id"])

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.columns[name]

    @property
    def event_ids(self) -> npt.NDArray[np.int64]:
        """The distinct event numbers, in order."""
        ids: npt.NDArray[np.int64] = np.asarray(self.columns["event_id"], dtype=np.int64)
        return np.unique(ids)

    @property
    def n_events(self) -> int:
        return len(self.event_ids)

    def offsets(self) -> npt.NDArray[np.int64]:
        """Row offsets of the events: event k is rows ``offsets[k]:offsets[k+1]``."""
        ids = self.columns["event_id"]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0)
        out: npt.NDArray[np.int64] = np.append(starts, len(ids)).astype(np.int64)
        return out

    def select_events(self, mask_rows: npt.NDArray[np.bool_]) -> EventChunk:
        """Rows where ``mask_rows`` is true (caller keeps events whole)."""
        return EventChunk({k: v[mask_rows] for k, v in self.columns.items()})


def concat_chunks(chunks: Sequence[EventChunk]) -> EventChunk:
    """Concatenate chunks (their event ids must not overlap)."""
    if not chunks:
        return EventChunk.from_columns({k: np.zeros(0, dt) for k, dt in COLUMNS.items()})
    return EventChunk.from_columns({k: np.concatenate([c[k] for c in chunks]) for k in COLUMNS})
