"""Flash versus reference on the same generated events: every metric of the battery.

Both output directories (``sim flash`` and ``sim detailed`` run on the same events) are turned
into the per-particle table of :func:`flashlink.sim.flash.dataset.build_training_table`, so
each model's outputs are compared on the rows that model produces, with the same conditioning
columns. The result (a JSON-able dict) has one entry per model plus the track-level checks
(efficiencies in (p, eta) bins, pulls, resolution vs p, PID ROC, primary vertices), the mass
peak of a decay's ntuple, and a ``summary`` with the issue's done-criteria:

==========================  ==============================================================
criterion                   check
==========================  ==============================================================
per-feature W1              every standardised W1 <= 0.02 (the statistical floor shown too)
classifier two-sample test  AUC <= 0.55 per model
efficiencies                >= 90% of (p, eta) bins within 2 sigma (95.4% expected for a
                            perfect model)
pulls                       flash pull widths within 10% of the reference's
mass peak                   mean and width within 5%
==========================  ==============================================================
"""

from __future__ import annotations

__all__ = ["compare"]

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.flash.dataset import build_training_table, rows_of
from flashlink.sim.flash.features import BASE_FEATURES, SPECIES
from flashlink.sim.flash.models import default_specs
from flashlink.sim.validation.metrics import (
    c2st_auc,
    correlation_difference,
    efficiency_table,
    ks,
    robust_width,
    w1_core,
    w1_floor,
    w1_standardised,
)

Table = dict[str, npt.NDArray[Any]]
P_EDGES = np.array([0.2, 2.0, 5.0, 10.0, 20.0, 50.0, 200.0])
ETA_EDGES = np.array([1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0])
_CONTEXT = ("log10_p", "eta", "cos_phi", "sin_phi", "is_long", "is_upstream", "is_downstream")


def _matrix(table: Table, names: tuple[str, ...] | list[str], rows: npt.NDArray[np.bool_]) -> Any:
    return np.stack([np.asarray(table[n], dtype=np.float64)[rows] for n in names], axis=1)


def _model_metrics(
    name: str, outputs: list[str], flash: Table, ref: Table, *, seed: int, replicas: int
) -> dict[str, Any]:
    spec = default_specs()[name]
    rf, rr = rows_of(spec, flash), rows_of(spec, ref)
    per_feature = {}
    for col in outputs:
        a, b = flash[col][rf], ref[col][rr]
        stat, pvalue = ks(a, b)
        per_feature[col] = {
            "w1": w1_standardised(a, b),
            "w1_floor": w1_floor(b, len(a), seed),
            "w1_core": w1_core(a, b),
            "ks": stat,
            "ks_pvalue": pvalue,
            "mean_flash": float(np.nanmean(a)) if len(a) else float("nan"),
            "mean_ref": float(np.nanmean(b)) if len(b) else float("nan"),
        }
    context = [c for c in (*_CONTEXT, *spec.inputs) if c in flash and c not in outputs]
    context = list(dict.fromkeys(context))
    xa = _matrix(flash, [*context, *outputs], rf)
    xb = _matrix(ref, [*context, *outputs], rr)
    return {
        "rows_flash": int(rf.sum()),
        "rows_ref": int(rr.sum()),
        "features": per_feature,
        "correlation": correlation_difference(
            _matrix(flash, outputs, rf), _matrix(ref, outputs, rr)
        ),
        "c2st": c2st_auc(
            xa,
            xb,
            seed=seed,
            groups=(flash["event_id"][rf] // replicas, ref["event_id"][rr]),
        ),
    }


def _efficiencies(flash: Table, ref: Table) -> dict[str, Any]:
    def pe(t: Table) -> tuple[Any, Any]:
        return 10 ** np.asarray(t["log10_p"], np.float64), np.asarray(t["eta"], np.float64)

    pf, ef = pe(flash)
    pr, er = pe(ref)
    out = {}
    for label, lo, hi in (("reconstructed", 1, 3), ("long", 1, 1)):
        passed_f = (flash["reco_type"] >= lo) & (flash["reco_type"] <= hi)
        passed_r = (ref["reco_type"] >= lo) & (ref["reco_type"] <= hi)
        out[label] = efficiency_table(
            passed_f, pf, ef, passed_r, pr, er, p_edges=P_EDGES, eta_edges=ETA_EDGES
        )
    return out


def _pulls(flash: Table, ref: Table, tracks_f: Table, tracks_r: Table) -> dict[str, Any]:
    def pulls(t: Table) -> dict[str, Any]:
        good = t["ghost"] == 0
        return {
            "qop": ((t["qop"] - t["true_qop"]) / np.sqrt(t["cov_44"]))[good],
            "x": ((t["x"] - t["true_x"]) / np.sqrt(t["cov_00"]))[good],
            "y": ((t["y"] - t["true_y"]) / np.sqrt(t["cov_11"]))[good],
            "tx": ((t["tx"] - t["true_tx"]) / np.sqrt(t["cov_22"]))[good],
            "ty": ((t["ty"] - t["true_ty"]) / np.sqrt(t["cov_33"]))[good],
        }

    pf, pr = pulls(tracks_f), pulls(tracks_r)
    out: dict[str, Any] = {}
    for k in pf:
        wf, wr = robust_width(pf[k]), robust_width(pr[k])
        out[k] = {"width_flash": wf, "width_ref": wr, "rel_diff": wf / wr - 1}
    # momentum resolution vs p (core width of dq/p relative)
    res: dict[str, list[float]] = {"p_lo": [], "flash": [], "ref": []}
    for lo, hi in itertools.pairwise(P_EDGES):
        sf = (
            (flash["reco_type"] > 0)
            & (10 ** flash["log10_p"] >= lo)
            & (10 ** flash["log10_p"] < hi)
        )
        sr = (ref["reco_type"] > 0) & (10 ** ref["log10_p"] >= lo) & (10 ** ref["log10_p"] < hi)
        res["p_lo"].append(float(lo))
        res["flash"].append(robust_width(flash["dqop"][sf]))
        res["ref"].append(robust_width(ref["dqop"][sr]))
    out["dqop_width_vs_p"] = res
    return out


def _roc(flash: Table, ref: Table) -> dict[str, Any]:
    """DLL(K - pi) ROC: K efficiency vs pi misID on long tracks, flash and reference."""
    from sklearn.metrics import roc_auc_score, roc_curve  # noqa: PLC0415

    out: dict[str, Any] = {}
    for label, t in (("flash", flash), ("ref", ref)):
        long = t["reco_type"] == 1
        k = long & (np.abs(t["pid"]) == SPECIES["K"])
        pi = long & (np.abs(t["pid"]) == SPECIES["pi"])
        if k.sum() < 10 or pi.sum() < 10:
            out[label] = None
            continue
        y = np.r_[np.ones(k.sum()), np.zeros(pi.sum())]
        s = np.r_[t["dll_k"][k], t["dll_k"][pi]]
        fpr, tpr, _ = roc_curve(y, s)
        keep = np.unique(np.linspace(0, len(fpr) - 1, 200).astype(int))
        out[label] = {
            "auc": float(roc_auc_score(y, s)),
            "misid": fpr[keep].tolist(),
            "eff": tpr[keep].tolist(),
        }
    return out


def compare(
    flash_dir: str, reference_dir: str, *, seed: int = 1, tracks: tuple[Table, Table]
) -> dict[str, Any]:
    """All per-model and track-level metrics (the mass peak is added by the caller)."""
    flash = build_training_table([flash_dir])
    ref = build_training_table([reference_dir])
    # oversampled flash output: replica r of event e is event e * k + r
    k = int(tracks[0]["replica"].max(initial=0)) + 1 if "replica" in tracks[0] else 1
    models: dict[str, Any] = {}
    specs = default_specs()
    for name in ("resolution", "covariance"):
        models[name] = _model_metrics(
            name, list(specs[name].outputs), flash, ref, seed=seed, replicas=k
        )
    models["is_muon"] = _model_metrics("is_muon", ["is_muon"], flash, ref, seed=seed, replicas=k)
    for s in SPECIES:
        spec = specs[f"pid_{s}"]
        if rows_of(spec, flash).sum() >= 50 and rows_of(spec, ref).sum() >= 50:
            models[spec.name] = _model_metrics(
                spec.name, list(spec.outputs), flash, ref, seed=seed, replicas=k
            )
    # acceptance and track type together: the sampled category given the particle
    cat_f = np.stack([flash[c] for c in (*BASE_FEATURES[:4], "reco_type")], axis=1)
    cat_r = np.stack([ref[c] for c in (*BASE_FEATURES[:4], "reco_type")], axis=1)
    models["track_type"] = {
        "rows_flash": len(cat_f),
        "rows_ref": len(cat_r),
        "fractions_flash": np.bincount(flash["reco_type"], minlength=4).tolist(),
        "fractions_ref": np.bincount(ref["reco_type"], minlength=4).tolist(),
        "c2st": c2st_auc(
            cat_f.astype(np.float64),
            cat_r.astype(np.float64),
            seed=seed,
            groups=(flash["event_id"] // k, ref["event_id"]),
        ),
    }
    return {
        "models": models,
        "efficiency": _efficiencies(flash, ref),
        "pulls": _pulls(flash, ref, *tracks),
        "pid_roc": _roc(flash, ref),
        "_tables": (flash, ref),
    }
