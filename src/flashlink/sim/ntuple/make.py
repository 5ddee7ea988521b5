"""Stream a detailed-simulation output directory into a candidate ntuple."""

from __future__ import annotations

__all__ = ["make_ntuple"]

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from flashlink.sim.errors import SimConfigError
from flashlink.sim.io import iter_tables
from flashlink.sim.ntuple.candidates import DECAYS, build_candidates
from flashlink.sim.ntuple.writer import NtupleWriter


class _Following:
    """Reads a second table (sorted by event_id, as the simulation writes it) in step with the
    tracks, so that only the rows of the current chunk of events are in memory."""

    def __init__(self, tables: Iterator[dict[str, Any]]) -> None:
        self._tables = tables
        self._buffer: dict[str, Any] | None = None
        self._done = False

    def upto(self, last_event: int) -> dict[str, Any]:
        while not self._done and (
            self._buffer is None or self._buffer["event_id"][-1:].max(initial=-1) <= last_event
        ):
            table = next(self._tables, None)
            if table is None:
                self._done = True
                break
            if self._buffer is None:
                self._buffer = table
            else:
                self._buffer = {k: np.concatenate([self._buffer[k], v]) for k, v in table.items()}
        if self._buffer is None:
            return {}
        take = self._buffer["event_id"] <= last_event
        out = {k: v[take] for k, v in self._buffer.items()}
        self._buffer = {k: v[~take] for k, v in self._buffer.items()}
        return out


def make_ntuple(
    input_dir: str,
    output_stem: str,
    decay: str,
    *,
    formats: tuple[str, ...] = ("root", "parquet"),
    busy: bool = False,
    chunk_rows: int = 100_000,
    run_number: int = 0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Build ``decay`` candidates from ``<input_dir>/tracks.parquet`` and ``pvs.parquet``;
    write ``<output_stem>.root`` / ``.parquet``; return the number of candidates.

    Tracks and vertices are read in chunks of whole events (cut at an event boundary), so
    memory does not grow with the file. ``run_number`` fills the ``runNumber`` branch: event
    numbers restart in every production job, (runNumber, eventNumber) is unique."""
    if not 0 <= run_number < 2**31:
        raise SimConfigError(f"run_number {run_number} is not valid: an integer in [0, 2**31)")
    if decay not in DECAYS:
        raise SimConfigError(f"decay {decay!r} is unknown; valid decays: {sorted(DECAYS)}")
    spec = DECAYS[decay]
    base = input_dir.rstrip("/")
    pv_stream = _Following(iter_tables(f"{base}/pvs.parquet", batch_rows=chunk_rows))
    pending: dict[str, Any] | None = None
    with NtupleWriter(output_stem, formats, {"decay": decay, "input": input_dir}) as writer:
        for batch in iter_tables(f"{base}/tracks.parquet", batch_rows=chunk_rows):
            table = batch
            if pending is not None:
                table = {k: np.concatenate([pending[k], v]) for k, v in batch.items()}
            ids = table["event_id"]
            if len(ids) == 0:
                continue
            last = ids[-1]
            done = ids != last
            pending = {k: v[~done] for k, v in table.items()}
            current = {k: v[done] for k, v in table.items()}
            pvs = pv_stream.upto(int(current["event_id"].max()))
            writer.write(_numbered(build_candidates(spec, current, pvs, busy=busy), run_number))
            if progress is not None:
                progress(len(np.unique(current["event_id"])))
        if pending is not None and len(pending["event_id"]):
            pvs = pv_stream.upto(int(pending["event_id"].max()))
            writer.write(_numbered(build_candidates(spec, pending, pvs, busy=busy), run_number))
            if progress is not None:
                progress(1)
        return writer.entries


def _numbered(candidates: dict[str, Any], run_number: int) -> dict[str, Any]:
    """``runNumber`` first, as in LHCb's tuples (every branch is float64: exact below 2**53)."""
    n = len(candidates["eventNumber"])
    return {"runNumber": np.full(n, float(run_number)), **candidates}
