"""Stream a detailed-simulation output directory into a candidate ntuple."""

from __future__ import annotations

__all__ = ["make_ntuple"]

from collections.abc import Callable
from typing import Any

import numpy as np

from flashlink.sim.errors import SimConfigError
from flashlink.sim.io import iter_tables
from flashlink.sim.ntuple.candidates import DECAYS, build_candidates
from flashlink.sim.ntuple.writer import NtupleWriter


def make_ntuple(
    input_dir: str,
    output_stem: str,
    decay: str,
    *,
    formats: tuple[str, ...] = ("root", "parquet"),
    busy: bool = False,
    chunk_rows: int = 100_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Build ``decay`` candidates from ``<input_dir>/tracks.parquet`` and ``pvs.parquet``;
    write ``<output_stem>.root`` / ``.parquet``; return the number of candidates.

    Tracks are read in chunks of whole events (a chunk is cut at an event boundary)."""
    if decay not in DECAYS:
        raise SimConfigError(f"decay {decay!r} is unknown; valid decays: {sorted(DECAYS)}")
    spec = DECAYS[decay]
    base = input_dir.rstrip("/")
    pvs_all = list(iter_tables(f"{base}/pvs.parquet"))
    pvs = {k: np.concatenate([t[k] for t in pvs_all]) for k in pvs_all[0]} if pvs_all else {}
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
            writer.write(build_candidates(spec, current, pvs, busy=busy))
            if progress is not None:
                progress(len(np.unique(current["event_id"])))
        if pending is not None and len(pending["event_id"]):
            writer.write(build_candidates(spec, pending, pvs, busy=busy))
            if progress is not None:
                progress(1)
        return writer.entries
