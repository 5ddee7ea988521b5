"""The report's figures (matplotlib, Agg backend, mplhep's LHCb style).

One PNG per topic: per-model output histograms with flash/reference ratio panels,
efficiencies vs p and eta with Clopper-Pearson errors, pull distributions and the momentum
resolution vs p, the PID ROC curve, the mass peak, correlation-matrix differences and the
oversampling study. Returns ``(title, file name)`` pairs for the HTML page.
"""

from __future__ import annotations

__all__ = ["make_plots"]

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.flash.dataset import rows_of
from flashlink.sim.flash.models import default_specs

Table = dict[str, npt.NDArray[Any]]


def _setup() -> Any:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import mplhep  # noqa: PLC0415

    plt.style.use(mplhep.style.LHCb2)
    # the LHCb style is made for single large plots: shrink text and ticks for panel grids
    plt.rcParams.update(
        {
            "font.size": 8,
            "axes.titlesize": 8,
            "axes.labelsize": 8,
            "xtick.labelsize": 6,
            "ytick.labelsize": 6,
            "legend.fontsize": 6,
            "xtick.major.size": 3,
            "ytick.major.size": 3,
            "xtick.minor.size": 1.5,
            "ytick.minor.size": 1.5,
            "figure.dpi": 80,
        }
    )
    return plt


def _hist_panel(fig: Any, gs: Any, a: Any, b: Any, title: str) -> None:
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return
    # the central 98% of the reference: residuals have tails (decays in flight, failed fits)
    # that would squeeze the core into one bin; integers get one bin per value
    lo, hi = np.percentile(b, [1, 99])
    integer = bool(np.all(b == np.round(b))) and hi - lo <= 60
    if integer:
        edges = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5)
    else:
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, 41)
    ha, _ = np.histogram(a, edges)
    hb, _ = np.histogram(b, edges)
    na, nb = ha / max(ha.sum(), 1), hb / max(hb.sum(), 1)
    top = fig.add_subplot(gs[0])
    bottom = fig.add_subplot(gs[1], sharex=top)
    centers = 0.5 * (edges[1:] + edges[:-1])
    top.stairs(nb, edges, label="reference", color="black")
    top.stairs(na, edges, label="flash", color="tab:red")
    top.set_title(title)
    top.tick_params(labelbottom=False)
    top.legend(fontsize=6)
    both = (ha > 0) & (hb > 0)
    ratio = na[both] / nb[both]
    err = ratio * np.sqrt(1 / ha[both] + 1 / hb[both])
    bottom.errorbar(centers[both], ratio, yerr=err, fmt=".", ms=2, color="tab:red")
    bottom.axhline(1, color="black", lw=0.5)
    bottom.set_ylim(0.5, 1.5)
    bottom.set_ylabel("flash/ref", fontsize=6)


def _model_figure(
    plt: Any, name: str, *, cols: list[str], flash: Table, ref: Table, path: Path
) -> None:
    spec = default_specs()[name]
    rf, rr = rows_of(spec, flash), rows_of(spec, ref)
    ncol = min(5, len(cols))
    nrow = (len(cols) + ncol - 1) // ncol
    fig = plt.figure(figsize=(3.0 * ncol, 2.8 * nrow))
    outer = fig.add_gridspec(nrow, ncol, hspace=0.45, wspace=0.35)
    for k, col in enumerate(cols):
        inner = outer[k // ncol, k % ncol].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
        _hist_panel(fig, inner, flash[col][rf], ref[col][rr], col)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _efficiency_figure(plt: Any, flash: Table, ref: Table, out: Path, edges: Any) -> str:
    from flashlink.sim.validation.metrics import clopper_pearson  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, t, color in (("reference", ref, "black"), ("flash", flash, "tab:red")):
        p = 10 ** np.asarray(t["log10_p"], np.float64)
        eta = np.asarray(t["eta"], np.float64)
        reco = t["reco_type"] > 0
        for ax, var, bins, xl in zip(axes, (p, eta), edges, ("p [GeV]", "eta"), strict=True):
            tot, _ = np.histogram(var, bins)
            ok, _ = np.histogram(var[reco], bins)
            filled = tot > 0
            ok, tot = ok[filled], tot[filled]
            lo, hi = clopper_pearson(ok, tot)
            eff = ok / tot
            centers = (0.5 * (bins[1:] + bins[:-1]))[filled]
            yerr = [eff - lo, hi - eff]
            ax.errorbar(centers, eff, yerr=yerr, fmt="o", ms=3, label=label, color=color)
            ax.set_xlabel(xl)
            ax.set_ylabel("reconstruction efficiency")
    axes[0].set_xscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "efficiency.png")
    plt.close(fig)
    return "efficiency.png"


def _resolution_figure(plt: Any, res: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(res["p_lo"], res["ref"], "o-", color="black", label="reference")
    ax.plot(res["p_lo"], res["flash"], "s--", color="tab:red", label="flash")
    ax.set_xscale("log")
    ax.set_xlabel("p lower bin edge [GeV]")
    ax.set_ylabel("core width of d(q/p)/(q/p)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "resolution.png")
    plt.close(fig)
    return "resolution.png"


def _roc_figure(plt: Any, roc: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for label, color in (("ref", "black"), ("flash", "tab:red")):
        misid = np.maximum(roc[label]["misid"], 1e-4)
        text = f"{label} (AUC {roc[label]['auc']:.3f})"
        ax.plot(roc[label]["eff"], misid, color=color, label=text)
    ax.set_yscale("log")
    ax.set_xlabel("K efficiency")
    ax.set_ylabel("pi misID")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pid_roc.png")
    plt.close(fig)
    return "pid_roc.png"


def _mass_figure(plt: Any, mass: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    mean, width = mass["ref"]["mean"], mass["ref"]["width"]
    edges = np.linspace(mean - 6 * width, mean + 6 * width, 41)
    for label, color in (("ref", "black"), ("flash", "tab:red")):
        h, _ = np.histogram(mass[label]["mass"], edges)
        text = f"{label} ({mass[label]['matched']})"
        ax.stairs(h / max(h.sum(), 1), edges, color=color, label=text)
    ax.set_xlabel(f"{mass['decay']} mass [GeV]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "mass.png")
    plt.close(fig)
    return "mass.png"


def _oversampling_figure(plt: Any, over: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    m = np.asarray(over["m"])
    ax.plot(m, over["error"], "o-", label="bootstrap over generated events")
    ax.plot(m, over["naive"], "s--", label="naive (replicas independent)")
    ax.plot(m, over["error"][0] / np.sqrt(m), ":", label="1/sqrt(m)")
    ax.set_xlabel("replicas m")
    ax.set_ylabel("error of the mean yield per event")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "oversampling.png")
    plt.close(fig)
    return "oversampling.png"


def make_plots(
    result: dict[str, Any],
    tables: tuple[Table, Table],
    out: Path,
    *,
    p_edges: Any,
    eta_edges: Any,
) -> list[tuple[str, str]]:
    plt = _setup()
    flash, ref = tables
    figures: list[tuple[str, str]] = []
    for name, info in result["models"].items():
        cols = list(info.get("features", {}))
        if cols:
            fname = f"model_{name}.png"
            _model_figure(plt, name, cols=cols, flash=flash, ref=ref, path=out / fname)
            figures.append((f"{name}: outputs, flash vs reference", fname))
    fname = _efficiency_figure(plt, flash, ref, out, (p_edges, eta_edges))
    figures.append(("tracking efficiency (Clopper-Pearson 68% intervals)", fname))
    fname = _resolution_figure(plt, result["pulls"]["dqop_width_vs_p"], out)
    figures.append(("momentum resolution vs p", fname))
    roc = result["pid_roc"]
    if roc.get("flash") and roc.get("ref"):
        figures.append(("DLL(K-pi) ROC on long tracks", _roc_figure(plt, roc, out)))
    mass = result.get("mass_peak")
    if mass and mass["ref"]["matched"] and mass["flash"]["matched"]:
        figures.append(("mass peak of truth-matched candidates", _mass_figure(plt, mass, out)))
    over = result.get("oversampling")
    if over:
        title = "oversampling: statistical error vs replicas"
        figures.append((title, _oversampling_figure(plt, over, out)))
    return figures
