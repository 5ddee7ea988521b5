"""Training tables from the reference detailed simulation's output (data preparation).

:func:`build_training_table` reads ``particles.parquet`` and ``tracks.parquet`` of one or more
``flashlink sim detailed`` output directories, joins every tracked particle to the track that
found it (``event_id``, ``track_key``) and computes, per particle, the inputs of every model
(:mod:`~flashlink.sim.flash.features`) and the targets (acceptance, track type, residuals,
covariance, PID). Rows of non-reconstructed particles carry NaN targets for the track models.

Ghost tracks (no generator particle behind them) are not modelled: like Lamarr, the flash chain
makes one track per reconstructed particle; the reference ghost rate is 0 for particle guns and
1-3% in full events (benchmarks/results/sim_detailed.json).

The table's SHA-256 (:func:`table_hash`) goes into every model manifest, so a model names the
exact data it was trained on. Events are split into training and validation sets by a hash of
(source, event), which is stable when more files are added.
"""

from __future__ import annotations

__all__ = [
    "build_training_table",
    "read_table",
    "rows_of",
    "split_mask",
    "table_hash",
    "write_table",
]

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.errors import EventFormatError
from flashlink.sim.flash.errors import TrainingError
from flashlink.sim.flash.features import (
    BASE_FEATURES,
    SPECIES,
    accepted,
    base_features,
    true_cpa_z,
)
from flashlink.sim.flash.models import (
    COV_PAIRS,
    PID_OUTPUTS,
    RESOLUTION_OUTPUTS,
    TYPE_FLAGS,
    ModelSpec,
)
from flashlink.sim.io import ParquetSink, iter_tables

Table = dict[str, npt.NDArray[Any]]


def _read(url: str) -> Table:
    parts = list(iter_tables(url))
    if not parts:
        raise EventFormatError(f"{url} has no rows")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _one_source(directory: str, source: int) -> Table:
    base = directory.rstrip("/")
    particles = _read(f"{base}/particles.parquet")
    tracks = _read(f"{base}/tracks.parquet")
    n = len(particles["pid"])
    out: Table = {"source": np.full(n, source, np.int64)}
    out["event_id"] = particles["event_id"].astype(np.int64)
    out["pid"] = particles["pid"].astype(np.int64)
    feats = base_features(particles)
    for k, name in enumerate(BASE_FEATURES):
        out[name] = feats[:, k]
    reco_type = particles["reco_type"].astype(np.int64)
    if "n_velo" in particles:
        out["accepted"] = accepted(particles).astype(np.int64)
    else:  # a flash output: particles outside the acceptance and unreconstructed look alike
        out["accepted"] = (reco_type > 0).astype(np.int64)
    out["reco_type"] = reco_type
    for k, flag in enumerate(TYPE_FLAGS):
        out[flag] = (reco_type == k + 1).astype(np.float32)
    # join particle -> its track by (event_id, key)
    stride = int(max(tracks["key"].max(initial=0), particles["track_key"].max(initial=0))) + 1
    t_code = tracks["event_id"].astype(np.int64) * stride + tracks["key"].astype(np.int64)
    p_code = out["event_id"] * stride + particles["track_key"].astype(np.int64)
    order = np.argsort(t_code)
    pos = np.clip(np.searchsorted(t_code[order], p_code), 0, max(len(t_code) - 1, 0))
    row = order[pos] if len(t_code) else np.zeros(n, np.int64)
    reco = reco_type > 0
    if len(t_code) and not np.array_equal(t_code[row[reco]], p_code[reco]):
        raise EventFormatError(f"{base}: a reconstructed particle's track_key has no track")

    def track(name: str) -> npt.NDArray[np.float64]:
        col = np.full(n, np.nan)
        if len(t_code):
            col[reco] = tracks[name][row[reco]]
        return col

    z_true = true_cpa_z(particles)
    tx_true = particles["px"] / particles["pz"]
    ty_true = particles["py"] / particles["pz"]
    z = track("z")
    x_true = particles["ox"] + tx_true * (z - particles["oz"])
    y_true = particles["oy"] + ty_true * (z - particles["oz"])
    qop_true = particles["charge"] / particles["p"]
    targets = {
        "dx": track("x") - x_true,
        "dy": track("y") - y_true,
        "dz": z - z_true,
        "dtx": track("tx") - tx_true,
        "dty": track("ty") - ty_true,
        "dqop": track("qop") / qop_true - 1.0,
        "chi2ndof": track("chi2ndof"),
        "n_velo": track("n_velo"),
        "n_ut": track("n_ut"),
        "n_t": track("n_t"),
    }
    assert tuple(targets) == RESOLUTION_OUTPUTS
    out.update(targets)
    var = [track(f"cov_{i}{i}") for i in range(5)]
    for i in range(5):
        out[f"log_var_{i}"] = np.log(np.maximum(var[i], 1e-30))
    for i, j in COV_PAIRS:
        out[f"rho_{i}{j}"] = track(f"cov_{i}{j}") / np.sqrt(np.maximum(var[i] * var[j], 1e-60))
    out["is_muon"] = track("is_muon")
    out["log_n_tracks"] = np.log1p(track("n_tracks_event"))
    for name in PID_OUTPUTS:
        out[name] = track(name)
    return out


def build_training_table(directories: Sequence[str]) -> Table:
    """One row per tracked particle of all ``directories`` (outputs of ``sim detailed``, or of
    ``sim flash``: the validation builds the same table from both and compares it)."""
    if not directories:
        raise EventFormatError("no detailed-simulation directory given to build a training set")
    parts = [_one_source(d, k) for k, d in enumerate(directories)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def rows_of(spec: ModelSpec, table: Table) -> npt.NDArray[np.bool_]:
    if spec.rows == "all":
        return np.ones(len(table["pid"]), bool)
    if spec.rows == "accepted":
        out: npt.NDArray[np.bool_] = np.asarray(table["accepted"] == 1)
        return out
    reco: npt.NDArray[np.bool_] = np.asarray(table["reco_type"] > 0)
    if spec.rows == "reconstructed":
        return reco
    if spec.rows.startswith("species:"):
        code = SPECIES[spec.rows.split(":", 1)[1]]
        species: npt.NDArray[np.bool_] = reco & (np.abs(table["pid"]) == code)
        return species
    raise TrainingError(f"model {spec.name}: rows {spec.rows!r} is unknown")


def split_mask(table: Table, validation_fraction: float = 0.2) -> npt.NDArray[np.bool_]:
    """True for validation rows: whole events, chosen by a hash of (source, event_id)."""
    code = table["source"].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + table[
        "event_id"
    ].astype(np.uint64)
    code ^= code >> np.uint64(31)
    code *= np.uint64(0xBF58476D1CE4E5B9)
    code ^= code >> np.uint64(29)
    frac = (code % np.uint64(10_000)).astype(np.float64) / 10_000
    out: npt.NDArray[np.bool_] = frac < validation_fraction
    return out


def table_hash(table: Table) -> str:
    """SHA-256 over the column names, dtypes and bytes, in sorted column order."""
    h = hashlib.sha256()
    for name in sorted(table):
        col = np.ascontiguousarray(table[name])
        h.update(name.encode())
        h.update(str(col.dtype).encode())
        h.update(col.tobytes())
    return h.hexdigest()


def write_table(table: Table, url: str, metadata: dict[str, Any] | None = None) -> None:
    with ParquetSink(url, {"sha256": table_hash(table), **(metadata or {})}) as sink:
        sink.write(table)


def read_table(url: str) -> Table:
    return _read(url)
