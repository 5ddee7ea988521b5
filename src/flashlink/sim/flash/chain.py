"""The flash simulation chain: generator events in, reconstructed tables out (numpy only).

:class:`FlashChain` applies the exported models (:mod:`~flashlink.sim.flash.runtime`) to whole
chunks of events at once, columnar, like SQLamarr's SQL batches:

1. the tracked generator particles (:func:`~flashlink.sim.flash.features.select_tracked`);
2. acceptance, then the track type sampled from the classifier's probabilities with one
   uniform number per particle (Lamarr's ``random_category``);
3. resolution -> covariance (conditioned on the resolution's chi2/ndof and hits) -> isMuon ->
   per-species PID (conditioned on isMuon and the event's reconstructed track multiplicity);
4. the primary vertex smeared with the fitted n-dependent resolution (:mod:`.pv`).

The output has the reference's ``tracks``, ``particles`` and ``pvs`` columns
(:data:`flashlink.sim.detector.pipeline.OUTPUT_TABLES`), so ``flashlink sim ntuple`` reads
either; truth columns come from the generator record. Ghost tracks and neutrals are not
generated (documented in docs/flash.md).

**Oversampling** (CMS FlashSim): with ``oversample=k`` every generated event is simulated k
times with independent noise. Replica r of event e is written as event ``e * k + r`` with the
columns ``gen_event_id = e`` and ``replica = r``, so that candidates never mix replicas and
an analysis can group the correlated replicas of one generated event.

Each chunk's random stream is ``numpy.random.default_rng([seed, chunk_index, replica])``:
the same seed and chunking give identical output.
"""

from __future__ import annotations

__all__ = ["FlashChain", "default_model_dir", "parse_families", "run_flash"]

import json
import time
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.flash.errors import ModelFormatError
from flashlink.sim.flash.features import (
    SPECIES,
    base_features,
    event_runs,
    select_tracked,
    species_index,
)
from flashlink.sim.flash.models import CHAIN, COV_PAIRS
from flashlink.sim.flash.pv import smear_pvs
from flashlink.sim.flash.runtime import FlashModel
from flashlink.sim.generation.events import EventChunk
from flashlink.sim.io import ParquetSink

Table = dict[str, npt.NDArray[Any]]
F32 = npt.NDArray[np.float32]
_BATCH = 8192  # rows per model call: measured fastest for onnxruntime on 32-64 wide layers


def default_model_dir() -> Path:
    """The pretrained model set shipped inside the package."""
    return Path(str(resources.files("flashlink.sim.flash") / "pretrained"))


def parse_families(family: str) -> dict[str, str]:
    """``auto``, ``mlp``, ``flow`` for every model, or ``model=family,...`` (others ``auto``)."""
    families = {"auto", "mlp", "flow"}
    if family in families:
        return dict.fromkeys(CHAIN, family)
    choice = dict.fromkeys(CHAIN, "auto")
    for item in family.split(","):
        model, sep, fam = (part.strip() for part in item.partition("="))
        if not sep or model not in CHAIN or fam not in families:
            raise ModelFormatError(
                f"family {family!r} is invalid: use auto, mlp, flow, or model=family pairs "
                f"separated by commas, models from {list(CHAIN)}, families auto, mlp, flow"
            )
        choice[model] = fam
    return choice


def _batched(fn: Callable[[F32], F32], x: F32) -> F32:
    if len(x) <= _BATCH:
        return fn(x)
    return np.concatenate([fn(x[k : k + _BATCH]) for k in range(0, len(x), _BATCH)])


class FlashChain:
    """The exported model set of a directory, applied chunk by chunk."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        backend: str = "auto",
        threads: int = 1,
        family: str = "auto",
    ) -> None:
        """``family``: ``auto`` uses each model's family chosen by the validation; ``mlp`` or
        ``flow`` uses that family wherever the set has it (``<model>/alternatives/``);
        ``covariance=mlp,pid_K=mlp`` chooses per model (the others stay ``auto``)."""
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        try:
            self.config: dict[str, Any] = json.loads((self.model_dir / "chain.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFormatError(
                f"{self.model_dir} is not a flash model set (chain.json: {exc}); train one with "
                "'flashlink sim train' or omit --models to use the shipped set"
            ) from exc
        missing = [m for m in CHAIN if m not in self.config.get("models", [])]
        if missing:
            raise ModelFormatError(f"model set {self.model_dir} lacks the models {missing}")
        if not self.config.get("pv"):
            raise ModelFormatError(f"model set {self.model_dir} has no PV smearing parameters")
        choice = parse_families(family)
        self.models = {}
        for m in CHAIN:
            path = self.model_dir / m
            alternative = path / "alternatives" / choice[m]
            if choice[m] != "auto" and alternative.exists():
                path = alternative
            self.models[m] = FlashModel(path, backend, threads)
        self.timing: dict[str, float] = dict.fromkeys((*CHAIN, "features", "assemble"), 0.0)
        self.counts = {"events": 0, "particles": 0, "tracks": 0}

    def _sample(self, name: str, x: F32, rng: np.random.Generator) -> npt.NDArray[np.float64]:
        t0 = time.perf_counter()
        model = self.models[name]
        z = _batched(lambda b: model.sample_normal(b, rng), x)
        out = model.to_targets(z)
        self.timing[name] += time.perf_counter() - t0
        return out

    def _proba(self, name: str, x: F32) -> F32:
        t0 = time.perf_counter()
        out = _batched(self.models[name].probabilities, x)
        self.timing[name] += time.perf_counter() - t0
        return out

    def simulate(self, chunk: EventChunk, rng: np.random.Generator) -> dict[str, Table]:
        """One flash simulation of a chunk: tracks, particles and pvs tables."""
        t0 = time.perf_counter()
        parts = select_tracked(chunk)
        x = base_features(parts)
        n = len(x)
        self.timing["features"] += time.perf_counter() - t0
        accepted = rng.random(n) < self._proba("acceptance", x)[:, 1]
        rtype = np.zeros(n, np.int64)
        if accepted.any():
            probs = self._proba("track_type", x[accepted])
            u = rng.random(len(probs))
            rtype[accepted] = (u[:, None] > np.cumsum(probs, axis=1)[:, :-1]).sum(axis=1)
        reco = np.flatnonzero(rtype > 0)
        flags = (rtype[reco, None] == np.arange(1, 4)[None, :]).astype(np.float32)
        xr = np.concatenate([x[reco], flags], axis=1)
        res = self._sample("resolution", xr, rng)
        res[:, 7:10] = np.maximum(res[:, 7:10], 0)
        chi2ndof = np.maximum(res[:, 6], 0.0)
        cov = self._sample(
            "covariance",
            np.concatenate([xr, chi2ndof[:, None], res[:, 7:10]], axis=1).astype(np.float32),
            rng,
        )
        t1 = time.perf_counter()
        ev = parts["event_id"][reco]
        _, counts = event_runs(ev)
        n_tracks = np.repeat(counts, counts)
        log_n = np.log1p(n_tracks).astype(np.float32)[:, None]
        self.timing["assemble"] += time.perf_counter() - t1
        p_mu = self._proba("is_muon", np.concatenate([xr, log_n], axis=1))[:, 1]
        is_mu = (rng.random(len(reco)) < p_mu).astype(np.int64)
        pid_in = np.concatenate([xr, is_mu[:, None].astype(np.float32), log_n], axis=1)
        pid_out = np.zeros((len(reco), 7))
        species = species_index(parts["pid"][reco])
        for k, name in enumerate(SPECIES):
            rows = np.flatnonzero(species == k)
            if len(rows):
                pid_out[rows] = self._sample(f"pid_{name}", pid_in[rows], rng)
        t2 = time.perf_counter()
        tables = self._assemble(
            chunk,
            parts,
            rtype=rtype,
            reco=reco,
            res=res,
            cov=cov,
            is_mu=is_mu,
            pid_out=pid_out,
            n_tracks=n_tracks,
            rng=rng,
        )
        self.timing["assemble"] += time.perf_counter() - t2
        self.counts["events"] += chunk.n_events
        self.counts["particles"] += n
        self.counts["tracks"] += len(reco)
        return tables

    def _assemble(
        self,
        chunk: EventChunk,
        parts: Table,
        *,
        rtype: npt.NDArray[np.int64],
        reco: npt.NDArray[np.int64],
        res: npt.NDArray[np.float64],
        cov: npt.NDArray[np.float64],
        is_mu: npt.NDArray[np.int64],
        pid_out: npt.NDArray[np.float64],
        n_tracks: npt.NDArray[np.int64],
        rng: np.random.Generator,
    ) -> dict[str, Table]:
        sel = {k: v[reco] for k, v in parts.items()}
        ttx, tty = sel["px"] / sel["pz"], sel["py"] / sel["pz"]
        t2 = np.maximum(ttx**2 + tty**2, 1e-8)
        z_cpa = sel["oz"] - np.clip((sel["ox"] * ttx + sel["oy"] * tty) / t2, -200.0, 200.0)
        z = z_cpa + res[:, 2]
        true_x = sel["ox"] + ttx * (z - sel["oz"])
        true_y = sel["oy"] + tty * (z - sel["oz"])
        true_qop = sel["charge"] / sel["p"]
        qop = true_qop * (1.0 + res[:, 5])
        qop = np.where(qop == 0, true_qop, qop)
        tx, ty = ttx + res[:, 3], tty + res[:, 4]
        p = 1.0 / np.abs(qop)
        pz = p / np.sqrt(1 + tx**2 + ty**2)
        px, py = tx * pz, ty * pz
        pt = np.hypot(px, py)
        n_velo, n_ut, n_t = (res[:, 7 + k].astype(np.int64) for k in range(3))
        ndof = np.maximum(2 * n_velo + n_ut + n_t - 5, 1)
        chi2ndof = np.maximum(res[:, 6], 0.0)
        ev = sel["event_id"]
        starts, lengths = event_runs(ev)
        key = np.arange(len(ev)) - np.repeat(starts, lengths)
        tracks: Table = {
            "event_id": ev,
            "key": key.astype(np.int64),
            "type": rtype[reco],
            "x": true_x + res[:, 0],
            "y": true_y + res[:, 1],
            "z": z,
            "tx": tx,
            "ty": ty,
            "qop": qop,
        }
        var = np.exp(cov[:, :5])
        sig = np.sqrt(var)
        for i in range(5):
            for j in range(i, 5):
                if i == j:
                    tracks[f"cov_{i}{j}"] = var[:, i]
                else:
                    rho = np.clip(cov[:, 5 + COV_PAIRS.index((i, j))], -0.999, 0.999)
                    tracks[f"cov_{i}{j}"] = rho * sig[:, i] * sig[:, j]
        calo_e = np.maximum(pid_out[:, 6], 0.0)
        tracks.update(
            {
                "chi2": chi2ndof * ndof,
                "ndof": ndof,
                "chi2ndof": chi2ndof,
                "p": p,
                "pt": pt,
                "eta": np.arcsinh(pz / np.maximum(pt, 1e-9)),
                "phi": np.arctan2(py, px),
                "charge": np.sign(qop).astype(np.int64),
                "n_velo": n_velo,
                "n_ut": n_ut,
                "n_t": n_t,
                "ghost": np.zeros(len(reco), np.int64),
                "purity": np.ones(len(reco)),
                "mc_index": sel["gen_index"],
                "mc_pid": sel["pid"],
                "true_x": true_x,
                "true_y": true_y,
                "true_tx": ttx,
                "true_ty": tty,
                "true_qop": true_qop,
                "rich_photons": np.maximum(pid_out[:, 4], 0).astype(np.int64),
                "dll_e": pid_out[:, 0],
                "dll_mu": pid_out[:, 1],
                "dll_k": pid_out[:, 2],
                "dll_p": pid_out[:, 3],
                "is_muon": is_mu,
                "n_muon_stations": np.clip(pid_out[:, 5], 0, 4).astype(np.int64),
                "calo_e": calo_e,
                "e_over_p": calo_e / p,
                "n_tracks_event": n_tracks.astype(np.int64),
                "mc_mother": sel["mother"],
                "mc_gmother": sel["gmother"],
            }
        )
        track_key = np.full(len(rtype), -1, np.int64)
        track_key[reco] = tracks["key"]
        # reconstructed tracks of each particle's event
        is_reco = np.zeros(len(rtype), np.int64)
        is_reco[reco] = 1
        p_starts, p_lengths = event_runs(parts["event_id"])
        n_tracks_all = (
            np.repeat(np.add.reduceat(is_reco, p_starts), p_lengths)
            if len(p_starts)
            else np.zeros(0, np.int64)
        )
        particles: Table = {
            k: parts[k]
            for k in ("event_id", "gen_index", "pid", "ox", "oy", "oz", "px", "py", "pz", "p")
        }
        particles.update(
            {
                "charge": parts["charge"].astype(np.int64),
                "eta": parts["eta"],
                "phi": parts["phi"],
                "reco_type": rtype,
                "track_key": track_key,
                "n_tracks_event": n_tracks_all,
            }
        )
        pvs = self._pvs(chunk, tracks, rng)
        return {"tracks": tracks, "particles": particles, "pvs": pvs}

    def _pvs(self, chunk: EventChunk, tracks: Table, rng: np.random.Generator) -> Table:
        offsets = chunk.offsets()
        first = offsets[:-1]
        truth = np.stack([chunk["vx"][first], chunk["vy"][first], chunk["vz"][first]], axis=1)
        ids = chunk["event_id"][first].astype(np.int64)
        # vertex tracks: VELO tracks (long, upstream) starting at the primary vertex
        row = np.searchsorted(ids, tracks["event_id"])
        near = (
            np.isin(tracks["type"], (1, 2))
            & (np.abs(tracks["true_x"] - truth[row, 0]) < 1.0)
            & (np.abs(tracks["true_y"] - truth[row, 1]) < 1.0)
        )
        n = np.bincount(row[near], minlength=len(ids)).astype(np.int64)
        return smear_pvs(self.config["pv"], ids, truth, n, rng)

    def process(
        self, chunk: EventChunk, seed: int, chunk_index: int, oversample: int = 1
    ) -> dict[str, Table]:
        """``oversample`` independent simulations of the chunk, replicas marked."""
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        replicas = []
        for r in range(oversample):
            tables = self.simulate(chunk, np.random.default_rng([seed, chunk_index, r]))
            for table in tables.values():
                table["gen_event_id"] = table["event_id"].copy()
                table["event_id"] = table["event_id"] * oversample + r
                table["replica"] = np.full(len(table["event_id"]), r, np.int64)
            replicas.append(tables)
        if oversample == 1:
            return replicas[0]
        out = {}
        for name in replicas[0]:
            merged = {k: np.concatenate([t[name][k] for t in replicas]) for k in replicas[0][name]}
            order = np.argsort(merged["event_id"], kind="stable")
            out[name] = {k: v[order] for k, v in merged.items()}
        return out


def run_flash(
    chunks: Iterable[EventChunk],
    output: str,
    *,
    seed: int,
    model_dir: str | Path | None = None,
    oversample: int = 1,
    backend: str = "auto",
    family: str = "auto",
    metadata: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> FlashChain:
    """Flash-simulate ``chunks``; write ``<output>/{tracks,particles,pvs}.parquet``."""
    chain = FlashChain(model_dir, backend, family=family)
    meta = {
        "seed": seed,
        "oversample": oversample,
        "models": str(chain.model_dir),
        "families": {m: model.family for m, model in chain.models.items()},
        "dataset_sha256": chain.config.get("dataset_sha256"),
        **(metadata or {}),
    }
    base = output.rstrip("/")
    sinks = {
        name: ParquetSink(f"{base}/{name}.parquet", meta) for name in ("tracks", "particles", "pvs")
    }
    try:
        for index, chunk in enumerate(chunks):
            for name, table in chain.process(chunk, seed, index, oversample).items():
                sinks[name].write(table)
            if progress is not None:
                progress(chunk.n_events)
    finally:
        for sink in sinks.values():
            sink.close()
    return chain
