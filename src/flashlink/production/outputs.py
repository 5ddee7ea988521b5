"""The production's final outputs: the merged ntuple and the provenance record."""

from __future__ import annotations

__all__ = ["merge_ntuples", "model_hashes", "provenance", "report_path"]

import hashlib
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flashlink
from flashlink.production.errors import ProductionError
from flashlink.production.journal import Journal
from flashlink.production.request import ProductionRequest
from flashlink.production.storage import Outputs

TREE = "DecayTree"


def merge_ntuples(
    chunks: Sequence[Path | str], merged: Path, outputs: Outputs | None = None
) -> int:
    """Concatenate the chunks' ``DecayTree`` into one local file, one chunk in memory at a
    time; the number of candidates. Chunks are paths, or URLs read through ``outputs`` (one
    chunk downloaded at a time). Written to a temporary name and renamed, so a kill never
    leaves a half-merged file that looks finished."""
    import numpy as np  # noqa: PLC0415 - heavy, only when merging
    import uproot  # noqa: PLC0415

    tmp = merged.with_name(merged.name + ".tmp")
    n = 0
    types: dict[str, Any] | None = None
    # ZSTD(1) as the chunks (flashlink.sim.ntuple.writer): ZLIB made the merge of 1M gun
    # events 21 s, 6 % of the production's wall time
    with uproot.recreate(tmp, compression=uproot.ZSTD(1)) as out:
        for chunk in chunks:
            if outputs is None or not outputs.remote:
                path = Path(chunk)
                if not path.exists():
                    raise ProductionError(
                        f"the ntuple chunk {path} is missing; re-run the production"
                    )
                arrays = _read_tree(path, str(chunk))
            else:
                with outputs.local_copy(str(chunk)) as path:
                    arrays = _read_tree(path, str(chunk))
            if types is None:
                types = {k: v.dtype for k, v in arrays.items()}
                out.mktree(TREE, types)
            rows = len(next(iter(arrays.values()))) if arrays else 0
            if rows:
                out[TREE].extend({k: np.asarray(v) for k, v in arrays.items()})
            n += rows
    tmp.replace(merged)
    return n


def _read_tree(path: Path, name: str) -> dict[str, Any]:
    import uproot  # noqa: PLC0415

    with uproot.open(path) as f:
        if TREE not in f:
            raise ProductionError(f"{name} has no {TREE} tree")
        arrays: dict[str, Any] = f[TREE].arrays(library="np")
    return arrays


def model_hashes(request: ProductionRequest) -> dict[str, str]:
    """sha256 of every file of the model set the flash step used."""
    if request.simulation != "flash":
        return {}
    if request.models == "shipped":
        try:
            from flashlink.sim.flash.chain import default_model_dir  # noqa: PLC0415
        except ImportError:
            return {}
        root = Path(str(default_model_dir()))
    else:
        root = Path(request.models)
    if not root.is_dir():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def report_path(output: Path | str, records: list[dict[str, Any]]) -> str | None:
    """Where the validation report of the production is (a path or an s3:// URL)."""
    for r in records:
        if r["key"] == "reference":
            return f"{str(output).rstrip('/')}/reference/a{r['attempt']}/report/index.html"
    return None


def provenance(
    request: ProductionRequest,
    records: list[dict[str, Any]],
    merged: str,
    candidates: int,
    journal: Journal,
    *,
    merged_bytes: int,
) -> dict[str, Any]:
    """What was run, with which software, models and seeds, and what it cost; ``merged`` is
    the merged ntuple's path or URL."""
    jobs = [r for r in records if r["key"] != "reference"]
    events = sum(r["events"] for r in jobs)
    seconds = sum(sum(v for v in r["container_seconds"].values() if v) for r in jobs)
    total_bytes = sum(r["bytes"] for r in jobs)
    return {
        "request": request.model_dump(),
        "flashlink_version": flashlink.__version__,
        "python": platform.python_version(),
        "model_hashes": model_hashes(request),
        "jobs": [
            {
                "key": r["key"],
                "attempt": r["attempt"],
                "events": r["events"],
                "seed": request.seed + int(r["key"][1:]),
                "pod": r["pod"],
                "container_seconds": r["container_seconds"],
                "bytes": r["bytes"],
            }
            for r in jobs
        ],
        "submissions": journal.submissions(),
        "events": events,
        "candidates": candidates,
        "merged_ntuple": merged,
        "merged_ntuple_bytes": merged_bytes,
        "report": report_path(request.output, records) or "",
        # Containers run one process on the one CPU they request (OMP_NUM_THREADS=1), so their
        # wall time is the CPU time they were given: an upper bound of the CPU they used.
        "job_seconds_total": seconds,
        "seconds_per_event": seconds / events if events else None,
        "bytes_per_event": total_bytes / events if events else None,
        "ntuple_bytes_per_event": merged_bytes / events if events else None,
    }
