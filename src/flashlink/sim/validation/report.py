"""``flashlink sim validate``: metrics JSON and an HTML report with matplotlib + mplhep plots.

:func:`validate_samples` compares a flash output with the reference output of the same events
(:func:`~flashlink.sim.validation.compare.compare`), adds the mass peak of a decay's ntuple
(both directories go through ``make_ntuple``), the primary vertices and, when the flash
output has replicas, the oversampling study; then writes ``metrics.json``, the PNG plots and
``index.html`` into the report directory.
"""

from __future__ import annotations

__all__ = ["validate_samples"]

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.io import iter_tables
from flashlink.sim.validation.compare import ETA_EDGES, P_EDGES, compare
from flashlink.sim.validation.metrics import robust_width
from flashlink.sim.validation.oversampling import oversampling_study

Table = dict[str, npt.NDArray[Any]]
W1_MAX, AUC_MAX, EFF_FRACTION, PULL_REL, MASS_REL = 0.02, 0.55, 0.90, 0.10, 0.05


def _read(url: str) -> Table:
    parts = list(iter_tables(url))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def _bootstrap_errors(
    flash: npt.NDArray[np.float64], ref: npt.NDArray[np.float64], seed: int, n: int = 300
) -> tuple[float, float]:
    """Statistical errors of the mean and width relative differences: both candidate samples
    resampled independently ``n`` times. Conservative: flash and reference share the generated
    events, which correlates them and makes the true error of the difference smaller."""
    if len(flash) < 2 or len(ref) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means, widths = np.empty(n), np.empty(n)
    for i in range(n):
        f = flash[rng.integers(0, len(flash), len(flash))]
        r = ref[rng.integers(0, len(ref), len(ref))]
        means[i] = np.median(f) / np.median(r) - 1
        widths[i] = robust_width(f) / robust_width(r) - 1
    return float(np.std(means)), float(np.std(widths))


def _mass_peak(  # noqa: PLR0917 - both outputs, the report, the decay and its cuts
    flash_dir: str, ref_dir: str, out: Path, decay: str, busy: bool, seed: int = 1
) -> dict[str, Any]:
    from flashlink.sim.ntuple import make_ntuple  # noqa: PLC0415
    from flashlink.sim.ntuple.candidates import DECAYS  # noqa: PLC0415

    head = DECAYS[decay].head
    result: dict[str, Any] = {"decay": decay}
    for label, src in (("flash", flash_dir), ("ref", ref_dir)):
        stem = str(out / f"ntuple_{label}")
        make_ntuple(src, stem, decay, formats=("parquet",), busy=busy)
        table = _read(f"{stem}.parquet")
        matched = table.get(f"{head}_TRUEMATCH", np.zeros(0)) == 1
        mass = table.get(f"{head}_M", np.zeros(0))[matched]
        result[label] = {
            "candidates": len(matched),
            "matched": int(matched.sum()),
            "mean": float(np.median(mass)) if len(mass) else float("nan"),
            "width": robust_width(mass),
            "mass": mass.tolist(),
        }
    f, r = result["flash"], result["ref"]
    result["mean_rel_diff"] = f["mean"] / r["mean"] - 1 if r["matched"] else float("nan")
    result["width_rel_diff"] = f["width"] / r["width"] - 1 if r["matched"] else float("nan")
    result["mean_rel_diff_err"], result["width_rel_diff_err"] = _bootstrap_errors(
        np.asarray(f["mass"]), np.asarray(r["mass"]), seed
    )
    return result


def _pvs(flash_dir: str, ref_dir: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, src in (("flash", flash_dir), ("ref", ref_dir)):
        pv = _read(f"{src.rstrip('/')}/pvs.parquet")
        out[label] = {
            f"sigma_{a}": robust_width(pv[a] - pv[f"true_{a}"]) for a in ("x", "y", "z")
        } | {"fitted_fraction": float(np.mean(pv["source"] == 0))}
    return out


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    w1 = {
        f"{m}.{c}": v
        for m, info in result["models"].items()
        for c, v in info.get("features", {}).items()
    }
    worst = max(w1.items(), key=lambda kv: kv[1]["w1"]) if w1 else ("-", {"w1": float("nan")})
    n_bad = sum(v["w1"] > W1_MAX for v in w1.values())
    n_bad_floor = sum(v["w1"] > max(W1_MAX, 2 * v["w1_floor"]) for v in w1.values())
    aucs = {m: info["c2st"]["auc"] for m, info in result["models"].items()}
    worst_auc = max(aucs.items(), key=lambda kv: kv[1])
    eff = result["efficiency"]["reconstructed"]
    pulls = {
        k: v["rel_diff"]
        for k, v in result["pulls"].items()
        if isinstance(v, dict) and "rel_diff" in v
    }
    worst_pull = max(pulls.items(), key=lambda kv: abs(kv[1]))
    summary: dict[str, Any] = {
        "max_w1": f"{worst[1]['w1']:.4f} ({worst[0]}; floor {worst[1].get('w1_floor', 0):.4f})",
        "features_w1_above_0.02": f"{n_bad} of {len(w1)} ({n_bad_floor} also above 2x floor)",
        "max_c2st_auc": f"{worst_auc[1]:.3f} ({worst_auc[0]})",
        "eff_bins_within_2sigma": f"{eff['within_2sigma']:.2f} of {eff['bins']} bins",
        "max_pull_width_rel_diff": f"{worst_pull[1]:+.3f} ({worst_pull[0]})",
    }
    checks = {
        "w1": n_bad == 0,
        "auc": worst_auc[1] <= AUC_MAX,
        "efficiency": eff["within_2sigma"] >= EFF_FRACTION,
        "pulls": abs(worst_pull[1]) <= PULL_REL,
    }
    mass = result.get("mass_peak")
    if mass:
        summary["mass_mean_rel_diff"] = (
            f"{mass['mean_rel_diff']:+.4f} +- {mass['mean_rel_diff_err']:.4f}"
        )
        summary["mass_width_rel_diff"] = (
            f"{mass['width_rel_diff']:+.3f} +- {mass['width_rel_diff_err']:.3f} "
            f"({mass['flash']['matched']} flash / "
            f"{mass['ref']['matched']} ref candidates)"
        )
        checks["mass"] = (
            abs(mass["mean_rel_diff"]) <= MASS_REL and abs(mass["width_rel_diff"]) <= MASS_REL
        )
    summary["checks"] = ", ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in checks.items())
    result["checks"] = checks
    return summary


def validate_samples(
    flash_dir: str,
    reference_dir: str,
    report_dir: str,
    *,
    label: str = "sample",
    decay: str | None = None,
    busy: bool = False,
    seed: int = 1,
    plots: bool = True,
) -> dict[str, Any]:
    """Compare, write ``metrics.json`` + ``index.html`` + plots; return the metrics."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracks_f = _read(f"{flash_dir.rstrip('/')}/tracks.parquet")
    tracks_r = _read(f"{reference_dir.rstrip('/')}/tracks.parquet")
    result = compare(flash_dir, reference_dir, seed=seed, tracks=(tracks_f, tracks_r))
    tables = result.pop("_tables")
    result["label"] = label
    result["pvs"] = _pvs(flash_dir, reference_dir)
    if decay:
        result["mass_peak"] = _mass_peak(flash_dir, reference_dir, out, decay, busy, seed)
    if "replica" in tracks_f and int(tracks_f["replica"].max(initial=0)) > 0:
        pv_events = _read(f"{flash_dir.rstrip('/')}/pvs.parquet")["gen_event_id"]
        result["oversampling"] = oversampling_study(tracks_f, events=pv_events)
    result["summary"] = _summary(result)
    if plots:
        from flashlink.sim.validation.plots import make_plots  # noqa: PLC0415

        figures = make_plots(result, tables, out, p_edges=P_EDGES, eta_edges=ETA_EDGES)
    else:
        figures = []
    (out / "metrics.json").write_text(json.dumps(_jsonable(result), indent=1) + "\n")
    (out / "index.html").write_text(_html(result, figures))
    return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "mass"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _html(result: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in result["summary"].items()
    )
    model_rows = []
    for name, info in result["models"].items():
        for col, m in info.get("features", {}).items():
            flag = "bad" if m["w1"] > W1_MAX else ""
            model_rows.append(
                f"<tr class='{flag}'><td>{name}</td><td>{col}</td><td>{m['w1']:.4f}</td>"
                f"<td>{m['w1_floor']:.4f}</td><td>{m['ks']:.3f}</td>"
                f"<td>{info['c2st']['auc']:.3f} &plusmn; {info['c2st']['auc_err']:.3f}</td></tr>"
            )
    imgs = "".join(
        f"<h3>{html.escape(title)}</h3><img src='{html.escape(name)}' alt='{html.escape(title)}'>"
        for title, name in figures
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8">
<title>flashlink validation: {html.escape(result["label"])}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px}} tr.bad td{{background:#fdd}}
img{{max-width:100%}}</style>
</head><body>
<h1>Flash vs reference: {html.escape(result["label"])}</h1>
<h2>Done-criteria</h2><table>{rows}</table>
<p>W1 is in units of the reference standard deviation; its floor is the W1 between two halves
of the reference at the same sample size (no model can be shown better than that).</p>
<h2>Per-feature metrics</h2>
<table><tr><th>model</th><th>feature</th><th>W1</th><th>W1 floor</th><th>KS</th>
<th>C2ST AUC</th></tr>
{"".join(model_rows)}</table>
<h2>Plots</h2>{imgs}
<p>Machine-readable: <a href="metrics.json">metrics.json</a></p>
</body></html>
"""
